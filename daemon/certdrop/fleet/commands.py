"""The fleet's commands: ``assign`` and ``unassign`` to GATEWAY/SERVICE or */SERVICE,
``fleet approve``, ``fleet revoke`` and ``fleet status``.

They run where the state is owned: in the daemon (its live view of the fleet) or, with
the daemon stopped, in the CLI's process through a short :func:`session` with the
engine. A decision is signed when it is made and queued in the outbox in the same
transaction as its local effect, so it is published even if the engine is away now.
"""

from __future__ import annotations

import contextlib
import queue
import time
from collections.abc import Callable, Iterator
from typing import Any, TypeVar

from certdrop.config import Config
from certdrop.errors import UserError
from certdrop.fleet.kv import EngineError
from certdrop.fleet.node import FleetNode, now_ms
from certdrop.fleet.records import (
    ALL,
    BUCKETS,
    Assignment,
    Envelope,
    Heartbeat,
    Member,
    SealedKey,
    ServiceState,
)
from certdrop.fleet.rules import held_keys, resolve_targets, stamp_after
from certdrop.fleet.trust import cascade
from certdrop.intake.work import Outcome
from certdrop.services import reconcile, release
from certdrop.store import fleet as tables
from certdrop.store.context import Context

T = TypeVar("T")


class _LocalJobs:
    """A worker for a CLI session: jobs run on the CLI's thread when it asks."""

    def __init__(self) -> None:
        self.queue: queue.Queue[Callable[[], object]] = queue.Queue()

    def submit(self, name: str, fn: Callable[[], object]) -> object:
        self.queue.put(fn)
        return None

    def changed(self) -> None:
        pass

    def announce(self, outcome: Outcome) -> None:
        pass

    def run(self, seconds: float) -> None:
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            try:
                fn = self.queue.get(timeout=0.2)
            except queue.Empty:
                continue
            fn()


READ_SECONDS = 15.0  # how long a CLI session may try for a complete view of the buckets


def _read_all(node: FleetNode, seconds: float) -> bool:
    """Read every bucket whole into the view; False when one could not be read in time.
    A bucket's read fails rather than come back short (a replica still catching up after
    a partition): it is tried again, so a command never works on a partial fleet as if
    it were whole (`fleet status` would leave gateways out, and say it was connected)."""
    deadline = time.monotonic() + seconds
    for bucket in BUCKETS:
        while True:
            try:
                node.view.update(node.engine.entries(bucket), node.reject)
                break
            except EngineError:
                if time.monotonic() > deadline:
                    return False
                time.sleep(0.2)
    return True


@contextlib.contextmanager
def session(ctx: Context, config: Config, wait: float = 5.0) -> Iterator[FleetNode]:
    """A fleet node for one CLI command: the engine's records read once, the outbox
    published before it ends (what cannot be published waits for ``certdrop run``)."""
    if config.fleet is None:
        raise UserError(f"{config.source} has no [fleet] table; fleet commands need one")
    jobs = _LocalJobs()
    node = FleetNode(ctx, jobs, config.fleet, intake=None)
    node.engine.start()
    try:
        node.connected_once = node.engine.wait_ready(wait) and _read_all(node, READ_SECONDS)
        node._said = node.connected_once
        if node.connected_once:
            node.view.recompute(node.reject)
        yield node
        if node.connected_once:
            node.publisher.drain()
            jobs.run(1.5)
    finally:
        node.engine.close()


def run(ctx: Context, command: Callable[[FleetNode], T]) -> T:
    """Run ``command`` with the daemon's node, or with a session when run in-process."""
    node: FleetNode | None = getattr(ctx, "fleet", None)
    if node is not None:
        return command(node)
    with session(ctx, ctx.config) as made:
        return command(made)


# -- assign / unassign ---------------------------------------------------------------------
UNASSIGNED = "(unassigned)"  # the name an unassignment carries (for people reading it)


def _known(ctx: Context, node: FleetNode) -> dict[str, set[str]]:
    """Each gateway's services as the fleet knows them (heartbeats, published service
    states); this gateway's from its config and inventory."""
    m = node.view.membership
    known: dict[str, set[str]] = {g: set() for g in (*m.approved, *m.pending)}
    for gateway, beat in node.view.heartbeats(None).items():
        if gateway in known and isinstance(beat.record, Heartbeat):
            known[gateway].update(beat.record.services)
    for env in node.view.services(None):
        if isinstance(env.record, ServiceState) and env.record.gateway in known:
            known[env.record.gateway].add(env.record.service)
    return known


def _targets(
    ctx: Context, node: FleetNode, targets: list[str], mine: set[str]
) -> list[tuple[str, str]]:
    """``(gateway, service)`` for each target, every one checked against the services the
    fleet knows (``mine`` for this gateway): a typo names nothing and decides nothing."""
    known = _known(ctx, node)
    known[node.me] = mine
    try:
        return resolve_targets(targets, node.me, known)
    except UserError as exc:
        if node.engine.connected or node.view.heartbeats(None):
            raise
        raise UserError(
            f"the fleet engine was not reached, so only this gateway's services are known: {exc}"
        ) from None


def _decisions(
    ctx: Context, node: FleetNode, pairs: list[tuple[str, str]], sha256: str | None, name: str
) -> tuple[list[Envelope], list[str]]:
    """The signed decisions for ``(gateway, service)`` pairs, and the local services
    among them (deployed or released here, now)."""
    if node.me not in node.view.membership.approved and node.view.membership.founder:
        raise UserError(f"{node.me} is not approved in the fleet yet; ask an approved gateway")
    decisions, local = [], []
    for gateway, service in pairs:
        if gateway == node.me or (gateway == ALL and service in ctx.config.services):
            local.append(service)
        record = Assignment(gateway, service, sha256, name[:128])
        seen = node.view.records["certdrop_assign"].get(record.kv_key())
        decisions.append(node.sign(record, stamp_after(now_ms(), [seen] if seen else [])))
    return decisions, sorted(set(local))


def _queuer(
    ctx: Context, node: FleetNode, decisions: list[Envelope], local: list[str]
) -> Callable[[], None]:
    """Queue ``decisions`` in the outbox and mark the local ones applied (run inside the
    transaction of their local effect)."""

    def queue_them() -> None:
        for env in decisions:
            tables.queue_record(ctx.inventory, env.record.BUCKET, env.record.kv_key(), env.encode())
            node.view.put_local(env)
            record = env.record
            assert isinstance(record, Assignment)
            if record.service in local:
                tables.set_applied(ctx.inventory, record.service, env.at, env.by, record.sha256)

    return queue_them


LocalEffect = Callable[[list[str], Callable[[], None]], list[dict[str, Any]]]


def _decide(
    ctx: Context,
    node: FleetNode,
    pairs: list[tuple[str, str]],
    sha256: str | None,
    name: str,
    local_effect: LocalEffect,
    what: str,
) -> list[dict[str, Any]]:
    """Sign a decision for each pair; apply the local ones now with ``local_effect``
    (which runs the queueing inside its own transaction), queue the rest, publish."""
    decisions, local = _decisions(ctx, node, pairs, sha256, name)
    queue_them = _queuer(ctx, node, decisions, local)
    if local:
        results = local_effect(local, queue_them)
    else:
        results = []
        with ctx.inventory.transaction():
            queue_them()
    results += _queued(node, decisions, what)
    node.publisher.drain()
    return results


def _queued(node: FleetNode, decisions: list[Envelope], what: str) -> list[dict[str, Any]]:
    """The result lines of the decisions for other gateways."""
    found = []
    for env in decisions:
        record = env.record
        assert isinstance(record, Assignment)
        if record.gateway != node.me:
            found.append(
                {
                    "service": f"{record.gateway}/{record.service}",
                    "certificate": None if record.sha256 is None else record.name,
                    "sha256": record.sha256,
                    "state": "queued",
                    "detail": f"decision queued for the fleet; each gateway {what} "
                    "(see `certdrop fleet status`)",
                    "changed": False,
                }
            )
    return found


def assign(ctx: Context, node: FleetNode, name: str, targets: list[str]) -> list[dict[str, Any]]:
    """Decide ``name`` for each target (SERVICE, GATEWAY/SERVICE, */SERVICE); deploy the
    local ones now and queue every decision for the fleet, in one transaction."""
    entry = ctx.inventory.entry(name)
    if entry is None or entry.sha256 is None:
        raise UserError(f"no certificate named {name!r}; `certdrop status` lists them")
    # Only a configured service of this gateway can be deployed to here.
    pairs = _targets(ctx, node, targets, set(ctx.config.services))

    def deploy(local: list[str], queue_them: Callable[[], None]) -> list[dict[str, Any]]:
        done = reconcile.assign(ctx, name, local, in_transaction=queue_them)
        return [r.to_json() for r in done]

    return _decide(ctx, node, pairs, entry.sha256, name, deploy, "deploys it and proves it")


def unassign(ctx: Context, node: FleetNode, targets: list[str]) -> list[dict[str, Any]]:
    """Unassign each target (SERVICE, GATEWAY/SERVICE, */SERVICE): an assignment of no
    certificate, under the same later-decision-wins rule. The local services are released
    now; every gateway releases its own when the decision reaches it."""
    pairs = _targets(ctx, node, targets, {*ctx.config.services, *ctx.inventory.services()})

    def let_go(local: list[str], queue_them: Callable[[], None]) -> list[dict[str, Any]]:
        return release.unassign(ctx, local, in_transaction=queue_them)

    what = "stops managing its service, leaving its files"
    return _decide(ctx, node, pairs, None, UNASSIGNED, let_go, what)


# -- approve / revoke ---------------------------------------------------------------------
def approve(ctx: Context, node: FleetNode, gateways: list[str]) -> str:
    """Approve every gateway named, or none: each must have asked to join (one already
    approved is said so and skipped). One transaction, one publish, however many."""
    m = node.view.membership
    if node.me not in m.approved:
        raise UserError(f"{node.me} is not approved itself, so it cannot approve others")
    unknown = [g for g in gateways if g not in m.pending and g not in m.approved]
    if unknown:
        raise UserError(
            f"no gateway {', '.join(map(repr, unknown))} asked to join, so none was approved; "
            "start certdrop there with this fleet's [fleet] servers first (`certdrop fleet "
            "status` lists who asked)"
        )
    lines, envelopes = [], []
    for gateway in dict.fromkeys(gateways):  # in the order given, each once
        key = m.pending.get(gateway)
        if key is None:
            lines.append(f"{gateway} is already approved (by {m.approved_by.get(gateway)})")
            continue
        envelopes.append(node.sign(Member(gateway, key.sign_key, "approved")))
        lines.append(
            f"approved {gateway} ({key.fingerprint}); this gateway seals the fleet's keys to "
            "it once the approval is published"
        )
    if envelopes:
        with ctx.inventory.transaction():
            for env in envelopes:
                tables.queue_record(
                    ctx.inventory, env.record.BUCKET, env.record.kv_key(), env.encode()
                )
        node.publisher.drain()
    return "\n".join(lines)


def revoke(ctx: Context, node: FleetNode, gateway: str) -> str:
    m = node.view.membership
    if node.me not in m.approved:
        raise UserError(f"{node.me} is not approved itself, so it cannot revoke others")
    if gateway == m.founder:
        raise UserError(
            f"{gateway} founded this fleet and is its root of trust; it cannot be revoked"
        )
    key = m.approved.get(gateway) or m.pending.get(gateway)
    if key is None:
        raise UserError(f"no gateway {gateway!r} in the fleet; `certdrop fleet status` lists them")
    sealed = node.view.sealed(node.reject)
    lost = cascade(m, gateway)
    held = held_keys(gateway, sealed)
    env = node.sign(Member(gateway, key.sign_key, "revoked"))
    with ctx.inventory.transaction():
        tables.queue_record(ctx.inventory, env.record.BUCKET, env.record.kv_key(), env.encode())
        for key_id in held:  # its sealed copies leave the engine (what it read, it has)
            tables.queue_delete(
                ctx.inventory, SealedKey.BUCKET, SealedKey(key_id, gateway, "").kv_key()
            )
    node.publisher.drain()
    certs = node.view.certificates(node.reject)
    names = sorted(
        f"{e.record.name} ({sha[:16]}...)"  # type: ignore[attr-defined]
        for sha, e in certs.items()
        if e.record.key_id in held  # type: ignore[attr-defined]
    )
    names += sorted(  # requests still open: their keys went to it as well
        f"{e.record.name} (request)"  # type: ignore[attr-defined]
        for kid, e in node.view.requests(node.reject).items()
        if kid in held and all(c.record.key_id != kid for c in certs.values())  # type: ignore[attr-defined]
    )
    text = f"revoked {gateway}; no key is sealed to it from now on.\n"
    text += f"It held {len(held)} key(s): {', '.join(names) or 'none'}.\n"
    if names:
        text += "Those keys may be in its copy: replace these certificates (new keys).\n"
    if len(lost) > 1:
        text += f"Approved through it, and so revoked too: {', '.join(lost[1:])}.\n"
    return text


def status(ctx: Context, node: FleetNode) -> dict[str, Any]:
    return node.status_view()
