"""Who is in the fleet, and whether a record's writer was allowed to write it. Pure.

Trust starts at the founder (the first gateway of an empty fleet, which approves itself;
each gateway pins the founder it first saw). A gateway is approved when its current
``member`` record says "approved" and is signed by a gateway that is itself approved, so
every approval leads back to the founder. Revoking a gateway therefore also withdraws
the approvals it signed: a compromised gateway cannot leave friends behind. Those are
re-approved from another gateway. The founder is the root and cannot be revoked.

A record that fails its check is not an error to raise: it is ignored, and its reason is
returned so the shell logs ``fleet.record_rejected``.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

from certdrop.fleet.crypto import PublicIdentity, verify
from certdrop.fleet.records import (
    Envelope,
    Founder,
    Heartbeat,
    Identity,
    Lease,
    Member,
    ServiceState,
)


@dataclass(frozen=True)
class Membership:
    """The fleet as one reader sees it now."""

    founder: str | None
    approved: Mapping[str, PublicIdentity]  # gateway -> the key that was approved
    approved_by: Mapping[str, str]  # gateway -> who approved it (the founder: itself)
    revoked: Mapping[str, PublicIdentity] = field(default_factory=dict)
    pending: Mapping[str, PublicIdentity] = field(default_factory=dict)  # asked, not let in

    def signer(self, gateway: str) -> PublicIdentity | None:
        return self.approved.get(gateway)


EMPTY = Membership(founder=None, approved={}, approved_by={})


def self_signed(envelope: Envelope) -> str | None:
    """None when a founder or identity record is signed by the key it carries, for the
    gateway it names; else the reason it is not."""
    record = envelope.record
    if not isinstance(record, Founder | Identity):
        return "not a self-signed kind"
    if envelope.by != record.gateway:
        return f"written by {envelope.by} about {record.gateway}"
    if not verify(envelope, PublicIdentity(record.sign_key)):
        return "bad signature"
    return None


def membership(
    founder: Envelope | None,
    members: Iterable[Envelope],
    identities: Iterable[Envelope] = (),
) -> tuple[Membership, list[tuple[Envelope, str]]]:
    """The approved, revoked and pending gateways, and the records that were refused.

    ``founder`` is the founder record this gateway pinned (None: no fleet yet).
    """
    rejected: list[tuple[Envelope, str]] = []
    if founder is None or not isinstance(founder.record, Founder):
        return EMPTY, rejected
    if (reason := self_signed(founder)) is not None:
        return EMPTY, [(founder, f"founder: {reason}")]
    root = founder.record
    approved = {root.gateway: PublicIdentity(root.sign_key)}
    approved_by = {root.gateway: root.gateway}
    decisions = [m for m in members if isinstance(m.record, Member)]
    settled: set[int] = set()
    changed = True
    while changed:  # a fixpoint: an approval counts once its signer is approved
        changed = False
        for i, env in enumerate(decisions):
            record = env.record
            assert isinstance(record, Member)
            if i in settled or record.state != "approved" or record.gateway == root.gateway:
                continue
            signer = approved.get(env.by)
            if signer is not None and record.gateway not in approved and verify(env, signer):
                approved[record.gateway] = PublicIdentity(record.sign_key)
                approved_by[record.gateway] = env.by
                settled.add(i)
                changed = True
    revoked: dict[str, PublicIdentity] = {}
    for i, env in enumerate(decisions):
        record = env.record
        assert isinstance(record, Member)
        if i in settled:
            continue
        signer = approved.get(env.by)
        if signer is None or not verify(env, signer):
            why = f"member record for {record.gateway} not signed by an approved gateway"
            rejected.append((env, why))
        elif record.gateway == root.gateway:
            rejected.append((env, "the founder cannot be revoked"))
        elif record.state == "revoked":
            revoked[record.gateway] = PublicIdentity(record.sign_key)
    pending: dict[str, PublicIdentity] = {}
    for env in identities:
        record = env.record
        if not isinstance(record, Identity):
            continue
        if (reason := self_signed(env)) is not None:
            rejected.append((env, f"identity: {reason}"))
            continue
        known = approved.get(record.gateway) or revoked.get(record.gateway)
        if known is None or known.sign_key != record.sign_key:
            pending[record.gateway] = PublicIdentity(record.sign_key)
    return Membership(root.gateway, approved, approved_by, revoked, pending), rejected


def check(envelope: Envelope, fleet: Membership) -> str | None:
    """None when the writer of ``envelope`` may write it and signed it; else why not.

    Founder, identity and member records are judged by :func:`membership`; heartbeats are
    accepted from any gateway that signed with its own key (so a pending one is seen).
    """
    record = envelope.record
    if isinstance(record, Founder | Identity):
        return self_signed(envelope)
    if isinstance(record, Member):
        return "member records are judged by membership()"
    if isinstance(record, Heartbeat):
        return _check_heartbeat(envelope, record, fleet)
    if isinstance(record, ServiceState) and envelope.by != record.gateway:
        return f"{envelope.by} wrote about gateway {record.gateway}"
    if isinstance(record, Lease) and envelope.by != record.holder:
        return f"{envelope.by} wrote a lease held by {record.holder}"
    signer = fleet.signer(envelope.by)
    if signer is None:
        return f"{envelope.by} is not an approved gateway"
    if not verify(envelope, signer):
        return "bad signature"
    return None


def _check_heartbeat(envelope: Envelope, record: Heartbeat, fleet: Membership) -> str | None:
    if envelope.by != record.gateway:
        return f"{envelope.by} wrote about gateway {record.gateway}"
    key = fleet.approved.get(record.gateway) or fleet.pending.get(record.gateway)
    if key is None:
        return f"{record.gateway} has no identity in the fleet"
    return None if verify(envelope, key) else "bad signature"


def cascade(fleet: Membership, revoking: str) -> list[str]:
    """The gateways that lose approval when ``revoking`` is revoked: itself, then every
    gateway whose approvals lead back to it, in a stable order."""
    lost = [revoking]
    grew = True
    while grew:  # approvals chain: repeat until no more are lost
        grew = False
        for gateway, approver in sorted(fleet.approved_by.items()):
            if approver in lost and gateway not in lost and gateway != approver:
                lost.append(gateway)
                grew = True
    return lost
