"""The fleet's decision rules, pure: what wins, what to write, who renews. ``now`` is passed in.

The conflict rule (README "Fleet"):
- One certificate is one fingerprint. A certificate record is keyed by the sha256 of its
  DER, so two gateways that accept the same certificate write the same key; the first
  write stands and the second finds it done. A sealed key is likewise one per
  (key, recipient), a request one per key. None is ever overwritten by its like.
- A certificate deleted (``certdrop delete``) is withdrawn: a :class:`Withdrawal` goes
  under its key. A withdrawal and a certificate record for one key are decisions,
  stamped when they were made on their gateway (the entry recorded or deleted there,
  not when the outbox got through), and the later one wins: a gateway that comes back
  after days with an old certificate row in its outbox is superseded, a new drop of the
  same file after the withdrawal wins.
- Every other record is a decision, ordered by ``(at, by, bytes)``: the later stamp wins,
  a tie goes to the greater gateway name, and a tie of both (one gateway, one
  millisecond) to the greater canonical bytes. Every reader computes the same winner from
  the same records, so the fleet converges whatever order the writes arrive in.
- A gateway stamps a new decision after every decision it has seen for that key
  (:func:`stamp_after`), so a decision made after seeing another wins even when the
  deciding gateway's clock is behind.
- Between ``gw-b/admin-console`` and ``*/admin-console`` the later decision wins on gw-b.
  An unassignment is such a decision too: an assignment of no certificate.
"""

from __future__ import annotations

from collections.abc import Collection, Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Literal

from certdrop.errors import UserError
from certdrop.fleet.records import (
    ALL,
    Assignment,
    Certificate,
    Envelope,
    Lease,
    Request,
    SealedKey,
)

Action = Literal["write", "done", "superseded"]
LEASE_GRACE_MS = 60_000  # how far two gateways' clocks may disagree about a lease's end


def order(envelope: Envelope) -> tuple[int, str, bytes]:
    """The total order of decisions for one key (see the module docstring)."""
    return (envelope.at, envelope.by, envelope.message())


def stamp_after(now_ms: int, seen: Iterable[Envelope]) -> int:
    """The stamp for a new decision: now, or just after the latest one seen if that is later."""
    latest = max((e.at for e in seen), default=-1)
    return max(now_ms, latest + 1)


def publish_action(current: Envelope | None, mine: Envelope) -> Action:
    """What publishing ``mine`` over ``current`` (the verified record there now) means.

    "write": compare-and-swap it in; "done": it (or its equal) is there already;
    "superseded": a later decision is there, so mine is dropped, not forced in.
    """
    if current is None:
        return "write"
    if isinstance(mine.record, Certificate) and isinstance(current.record, Certificate):
        return "done"  # one fingerprint, one record: the first stands
    if isinstance(mine.record, Request | SealedKey):
        return "done"  # immutable: one fingerprint, one request per key, one sealed copy each
    if current.record == mine.record and current.stamp == mine.stamp:
        return "done"
    return "write" if order(mine) > order(current) else "superseded"


def decided_ms(queued: str) -> int | None:
    """An outbox row's ``queued`` (ISO 8601 UTC, to the second or the millisecond) as ms
    since the epoch: the stamp of the decision it carries; None when unreadable."""
    try:
        when = datetime.fromisoformat(queued)
    except ValueError:
        return None
    return None if when.tzinfo is None else int(when.timestamp() * 1000)


def withdrawal_action(
    withdrawal: Envelope, applied: tuple[int, str] | None, recorded_ms: int | None, wanted: bool
) -> Literal["applied", "newer", "keep", "delete"]:
    """What a gateway does with the fleet's winning withdrawal of a certificate it has.

    ``applied``: the stamp of the withdrawal it applied last for that certificate;
    ``recorded_ms``: when it recorded the certificate itself, if that is still waiting in
    its outbox (a drop here, not yet published); ``wanted``: a service here has it or
    should have it. Each withdrawal is applied once; a certificate recorded here after
    the withdrawal is a newer decision on its way to the engine; one a service here
    wants is kept (the service is not broken); else the copy here is deleted.
    """
    if applied == withdrawal.stamp:
        return "applied"
    if recorded_ms is not None and recorded_ms > withdrawal.at:
        return "newer"
    return "keep" if wanted else "delete"


def effective_assignment(
    gateway: str, service: str, decisions: Iterable[Envelope]
) -> Envelope | None:
    """The decision in force for ``service`` on ``gateway``: the latest of those made for
    that gateway and those made for every gateway (``*``); None when there is none.
    A winner whose ``sha256`` is None means "unassigned"."""
    mine = [
        d
        for d in decisions
        if isinstance(d.record, Assignment)
        and d.record.service == service
        and d.record.gateway in (gateway, ALL)
    ]
    return max(mine, key=order, default=None)


@dataclass(frozen=True)
class LeaseAction:
    """What to do about a renewal lease: take it ("acquire", "take_over", "extend",
    "override") with ``expires``, or leave it to ``holder`` ("busy")."""

    kind: Literal["acquire", "extend", "take_over", "override", "busy"]
    holder: str
    expires: int


def lease_action(
    current: Envelope | None,
    me: str,
    now_ms: int,
    duration_ms: int,
    grace_ms: int,
    *,
    override: bool = False,
) -> LeaseAction:
    """Who runs the renewal hand-off now. A lease past its expiry plus ``grace_ms`` (room
    for clocks that disagree) is free; its holder may extend its own at any time.
    ``override`` (an operator's ``renew --take-over``): another gateway's live lease is
    taken from it ("override") instead of left to it."""
    ours = LeaseAction("acquire", me, now_ms + duration_ms)
    if current is None or not isinstance(current.record, Lease):
        return ours
    lease = current.record
    if lease.holder == me:
        return LeaseAction("extend", me, now_ms + duration_ms)
    if now_ms > lease.expires + grace_ms:
        return LeaseAction("take_over", me, now_ms + duration_ms)
    if override:
        return LeaseAction("override", me, now_ms + duration_ms)
    return LeaseAction("busy", lease.holder, lease.expires)


def resolve_targets(
    targets: Iterable[str], me: str, known: Mapping[str, Collection[str]]
) -> list[tuple[str, str]]:
    """``(gateway, service)`` for each SERVICE (this gateway), GATEWAY/SERVICE or
    */SERVICE, checked against ``known`` (each gateway's services as the fleet knows
    them, this one's from its config). Every unknown target is named in one UserError."""
    found: list[tuple[str, str]] = []
    problems: list[str] = []
    for target in targets:
        gateway, _, service = target.rpartition("/")
        gateway = gateway or me
        if gateway == ALL:
            if not any(service in services for services in known.values()):
                problems.append(f"no gateway of the fleet has a service named {service!r}")
        elif gateway not in known:
            problems.append(f"no gateway named {gateway!r} in the fleet")
        elif service not in known[gateway]:
            have = ", ".join(sorted(known[gateway])) or "none"
            problems.append(f"{gateway} has no service named {service!r} (it has: {have})")
        found.append((gateway, service))
    if problems:
        raise UserError("; ".join(dict.fromkeys(problems)) + "; `certdrop fleet status` lists them")
    return list(dict.fromkeys(found))


def keys_to_seal(
    key_ids: Iterable[str], recipients: Iterable[str], sealed: Iterable[tuple[str, str]]
) -> list[tuple[str, str]]:
    """(key_id, recipient) pairs still to seal: every key to every approved gateway.

    Approval is trust with the fleet's keys: any gateway may be assigned any certificate
    (``*/SERVICE``, hostname auto-assignment), so each one holds every key, sealed to it.
    """
    have = set(sealed)
    return sorted((k, r) for k in set(key_ids) for r in set(recipients) if (k, r) not in have)


def held_keys(recipient: str, sealed: Iterable[tuple[str, str]]) -> list[str]:
    """The key ids sealed to ``recipient`` (what ``fleet revoke`` reports it held)."""
    return sorted({k for k, r in sealed if r == recipient})


def stale_gateways(last_seen: Mapping[str, int], now_ms: int, after_ms: int) -> list[str]:
    """Gateways whose last heartbeat is older than ``after_ms``: "not seen for a while"."""
    return sorted(g for g, at in last_seen.items() if now_ms - at > after_ms)
