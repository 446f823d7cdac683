"""What this gateway knows of the fleet: every bucket's records, checked, in memory.

Fed by the engine's watches (on the worker) or by a one-off snapshot (a CLI command). A
record is decoded once per revision; one that is malformed or fails its signature check
is left out and reported once (``fleet.record_rejected``). Pure apart from the clock
the caller passes in; owned by one thread.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

from certdrop.fleet import trust
from certdrop.fleet.kv import Entry
from certdrop.fleet.records import (
    BUCKETS,
    Assignment,
    Certificate,
    Envelope,
    Founder,
    Heartbeat,
    Identity,
    Lease,
    Member,
    Record,
    RecordError,
    Request,
    SealedKey,
    ServiceState,
    Withdrawal,
    decode,
)
from certdrop.fleet.trust import Membership

Reject = Callable[[str, str, str, str], None]  # bucket, key, writer, reason


@dataclass
class FleetView:
    """The latest decoded record of every key, and the membership they imply."""

    founder_pin: Envelope | None = None  # the founder this gateway trusts (pinned locally)
    records: dict[str, dict[str, Envelope]] = field(
        default_factory=lambda: {b: {} for b in BUCKETS}
    )
    revisions: dict[tuple[str, str], int] = field(default_factory=dict)
    membership: Membership = trust.EMPTY
    withdrawn: set[str] = field(default_factory=set)  # key ids of requests deleted; applied
    _reported: set[tuple[str, str, int]] = field(default_factory=set)
    # (bucket, key) -> (revision, signer key, verdict): a record's signature is checked
    # once per revision and signer, not at every look (heartbeats arrive all the time).
    _verdicts: dict[tuple[str, str], tuple[int, str, str | None]] = field(default_factory=dict)

    def update(self, entries: Iterable[Entry], reject: Reject | None) -> set[str]:
        """Take watched entries; returns the buckets whose records changed (a heartbeat
        alone changes nothing anything depends on, so it is not counted)."""
        changed: set[str] = set()
        members_changed = False
        for e in entries:
            if self.revisions.get((e.bucket, e.key)) == e.revision and e.value is not None:
                continue
            self.revisions[(e.bucket, e.key)] = e.revision
            bucket = self.records.setdefault(e.bucket, {})
            if e.value is None:
                if bucket.pop(e.key, None) is not None:
                    changed.add(e.bucket)
                if e.bucket == Request.BUCKET and e.key.startswith("req."):
                    self.withdrawn.add(e.key.removeprefix("req."))  # also one never seen
                    changed.add(e.bucket)
                continue
            try:
                bucket[e.key] = decode(e.value, e.bucket, e.key)
            except RecordError as exc:
                bucket.pop(e.key, None)
                self._report(e.bucket, e.key, e.revision, "?", str(exc)[:300], reject)
                continue
            if e.bucket == "certdrop_gateways" and e.key.startswith("seen."):
                continue
            changed.add(e.bucket)
            members_changed |= e.bucket == "certdrop_gateways"
        if members_changed:
            self.recompute(reject)
        return changed

    def put_local(self, env: Envelope) -> None:
        """A record this gateway just wrote (or queued): seen here before it comes back."""
        bucket, key = env.record.BUCKET, env.record.kv_key()
        self.records.setdefault(bucket, {})[key] = env
        self._verdicts.pop((bucket, key), None)
        self.revisions.pop((bucket, key), None)  # the engine's next word on it is taken

    def recompute(self, reject: Reject | None) -> None:
        gateways = self.records.get("certdrop_gateways", {}).values()
        founder = self.founder_pin or self.fleet_founder()
        self.membership, refused = trust.membership(
            founder,
            [g for g in gateways if isinstance(g.record, Member)],
            [g for g in gateways if isinstance(g.record, Identity)],
        )
        for env, reason in refused:
            key = env.record.kv_key()
            rev = self.revisions.get((env.record.BUCKET, key), 0)
            self._report(env.record.BUCKET, key, rev, env.by, reason, reject)

    def fleet_founder(self) -> Envelope | None:
        """The founder record in the engine, if it is self-signed."""
        env = self.records.get("certdrop_gateways", {}).get("founder")
        if env is None or not isinstance(env.record, Founder) or trust.self_signed(env):
            return None
        return env

    def _report(
        self, bucket: str, key: str, rev: int, by: str, why: str, reject: Reject | None
    ) -> None:
        """Report a refused record once; ``reject`` None: a reader that only looks."""
        if reject is not None and (bucket, key, rev) not in self._reported:
            self._reported.add((bucket, key, rev))
            reject(bucket, key, by, why)

    def checked(self, kind: type[Record], reject: Reject | None) -> list[Envelope]:
        """The records of ``kind`` whose writers may write them (others reported once)."""
        found = []
        bucket = kind.BUCKET
        for key, env in self.records.get(bucket, {}).items():
            if not isinstance(env.record, kind):
                continue
            why = self._verdict(bucket, key, env)
            if why is None:
                found.append(env)
            else:
                self._report(bucket, key, self.revisions.get((bucket, key), 0), env.by, why, reject)
        return found

    def _verdict(self, bucket: str, key: str, env: Envelope) -> str | None:
        m = self.membership
        signer = m.approved.get(env.by) or m.pending.get(env.by)
        signer_key = signer.sign_key if signer is not None else ""
        rev = self.revisions.get((bucket, key), 0)
        cached = self._verdicts.get((bucket, key))
        if cached is not None and cached[:2] == (rev, signer_key):
            return cached[2]
        why = trust.check(env, m)
        self._verdicts[(bucket, key)] = (rev, signer_key, why)
        return why

    # -- typed views ------------------------------------------------------------------------
    def certificates(self, reject: Reject | None) -> dict[str, Envelope]:
        return {
            e.record.sha256: e
            for e in self.checked(Certificate, reject)
            if isinstance(e.record, Certificate)
        }

    def withdrawals(self, reject: Reject | None) -> dict[str, Envelope]:
        return {
            e.record.sha256: e
            for e in self.checked(Withdrawal, reject)
            if isinstance(e.record, Withdrawal)
        }

    def requests(self, reject: Reject | None) -> dict[str, Envelope]:
        return {
            e.record.key_id: e
            for e in self.checked(Request, reject)
            if isinstance(e.record, Request)
        }

    def sealed(self, reject: Reject | None) -> dict[tuple[str, str], Envelope]:
        return {
            (e.record.key_id, e.record.recipient): e
            for e in self.checked(SealedKey, reject)
            if isinstance(e.record, SealedKey)
        }

    def assignments(self, reject: Reject | None) -> list[Envelope]:
        return self.checked(Assignment, reject)

    def services(self, reject: Reject | None) -> list[Envelope]:
        return self.checked(ServiceState, reject)

    def heartbeats(self, reject: Reject | None) -> dict[str, Envelope]:
        return {
            e.record.gateway: e
            for e in self.checked(Heartbeat, reject)
            if isinstance(e.record, Heartbeat)
        }

    def lease(self, sha256: str, reject: Reject | None) -> Envelope | None:
        env = self.records.get("certdrop_leases", {}).get(sha256)
        if env is None or not isinstance(env.record, Lease):
            return None
        return env if self._verdict("certdrop_leases", sha256, env) is None else None

    def current(self, bucket: str, key: str) -> Envelope | None:
        """The decoded record there now, checked (for compare-and-swap decisions)."""
        env = self.records.get(bucket, {}).get(key)
        if env is None:
            return None
        if isinstance(env.record, Member | Founder | Identity):
            return env
        return env if trust.check(env, self.membership) is None else None
