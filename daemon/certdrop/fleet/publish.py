"""Publishing: the outbox drained to the engine by compare-and-swap, on the worker's terms.

The worker builds and signs records (it alone reads the inventory), hands them to the
engine as one coroutine, and takes the result back as a job: rows the engine now has
(or had, from a put that timed out but committed) leave the outbox; the rest wait for
the next drain. What to write is decided against the record there now with
:func:`certdrop.fleet.rules.publish_action`, so a stale decision never overwrites a
newer one and a repeat is a no-op.
"""

from __future__ import annotations

import concurrent.futures
import json
from collections.abc import Callable
from typing import TYPE_CHECKING

from certdrop.fleet import requests, trust
from certdrop.fleet.crypto import verify
from certdrop.fleet.kv import (
    Decision,
    EngineError,
    Entry,
    Unavailable,
    aget,
    delete,
    put_decided,
)
from certdrop.fleet.records import (
    Assignment,
    Certificate,
    Envelope,
    Founder,
    Identity,
    Lease,
    Member,
    Record,
    RecordError,
    ServiceState,
    Withdrawal,
    decode,
)
from certdrop.fleet.rules import (
    LEASE_GRACE_MS,
    decided_ms,
    lease_action,
    order,
    publish_action,
    stamp_after,
)
from certdrop.fleet.trust import Membership
from certdrop.store import fleet as tables

if TYPE_CHECKING:
    from certdrop.fleet.node import FleetNode

BATCH = 100


def _ascii(text: str, limit: int) -> str:
    return text.encode("ascii", "replace").decode()[:limit]


class Publisher:
    def __init__(self, node: FleetNode) -> None:
        self.node = node
        self.busy = False  # one batch in flight at a time
        self.again = False  # asked to drain while busy: drain once more when done

    # -- deciding -----------------------------------------------------------------------
    def decider(
        self, mine: Envelope, *, override: bool = False
    ) -> Callable[[Entry | None], Decision]:
        membership = self.node.view.membership  # an immutable snapshot for the engine thread
        return lambda current: judge(
            None if current is None else current.value,
            mine,
            membership,
            _now_ms(),
            override=override,
        )

    # -- one record now or soon ---------------------------------------------------------------
    def send(self, env: Envelope, *, override: bool = False) -> concurrent.futures.Future[Decision]:
        """Publish ``env`` in the background (heartbeats, identities, sealed keys).
        ``override``: a lease taken over by an operator (``renew --take-over``)."""
        decide = self.decider(env, override=override)
        return self.node.engine.submit(
            lambda: put_decided(
                self.node.engine.kv(env.record.BUCKET),
                env.record.BUCKET,
                env.record.kv_key(),
                env.encode(),
                decide,
            )
        )

    def remove(self, bucket: str, key: str) -> None:
        """Delete ``bucket``/``key`` in the background (idempotent; retried by the caller)."""
        engine = self.node.engine
        engine.submit(lambda: delete(engine.kv(bucket), key))

    def send_now(self, env: Envelope, *, override: bool = False) -> Decision:
        """Publish ``env`` and wait (bounded): Unavailable when the engine cannot say."""
        try:
            wait = self.node.engine.settings.timeout * 2 + 2
            return self.send(env, override=override).result(wait)
        except concurrent.futures.TimeoutError:
            raise Unavailable("the fleet engine did not answer in time") from None

    def enrol(self) -> None:
        """On connecting: say who this gateway is; found the fleet if it has no founder."""
        node = self.node
        self.send(node.identity_record())
        if node.view.founder_pin is not None:
            return
        founder = node.sign(Founder(node.me, node.key.public.sign_key))
        engine = node.engine

        async def found() -> bytes | None:
            kv = engine.kv("certdrop_gateways")
            await put_decided(
                kv, "certdrop_gateways", "founder", founder.encode(), self.decider(founder)
            )
            there = await aget(kv, "certdrop_gateways", "founder")
            return None if there is None else there.value

        def pin(future: concurrent.futures.Future[bytes | None]) -> None:
            try:
                raw = future.result()
            except EngineError:
                return  # tried again at the next connection
            if raw is not None:
                node.jobs.submit("fleet founder", lambda: self._pin(raw))

        engine.submit(found).add_done_callback(pin)

    def _pin(self, raw: bytes) -> None:
        node = self.node
        if node.view.founder_pin is not None:
            return
        try:
            env = decode(raw, "certdrop_gateways", "founder")
        except RecordError as exc:
            node.reject("certdrop_gateways", "founder", "?", str(exc))
            return
        if trust.self_signed(env) is not None:
            node.reject("certdrop_gateways", "founder", env.by, "founder not self-signed")
            return
        node.pin_founder(raw)

    # -- the outbox ---------------------------------------------------------------------
    def drain(self) -> None:
        """Send what the outbox holds (on the worker); a no-op while not connected."""
        node = self.node
        if not node.engine.connected:
            return
        if self.busy:
            self.again = True
            return
        rows = tables.pending(node.ctx.inventory, BATCH)
        if not rows:
            return
        approved = node.me in node.view.membership.approved
        batch: list[tuple[int, Envelope | None, str, str]] = []
        skipped = []
        for row in rows:
            if row.kind == "record" and row.record is not None:
                bucket, _, key = row.ref.partition("/")
                env: Envelope | None = decode(row.record, bucket, key)
            elif row.kind == "delete":
                bucket, _, key = row.ref.partition("/")
                env = None
            else:
                env = self._build(row)
                if env is None:
                    skipped.append(row.id)  # gone since (renamed, deleted, unconfigured)
                    continue
                bucket, key = env.record.BUCKET, env.record.kv_key()
            if not approved and not (env is not None and isinstance(env.record, Member)):
                continue  # an unapproved gateway's records would be refused: they wait
            batch.append((row.id, env, bucket, key))
        if skipped:
            with node.ctx.inventory.transaction():
                tables.done(node.ctx.inventory, skipped)
        if not batch:
            return
        engine = node.engine
        decisions = {row_id: self.decider(env) for row_id, env, _, _ in batch if env is not None}

        async def publish_all() -> list[int]:
            sent = []
            for row_id, env, bucket, key in batch:
                try:
                    kv = engine.kv(bucket)
                    if env is None:
                        await delete(kv, key)
                    else:
                        await put_decided(kv, bucket, key, env.encode(), decisions[row_id])
                except Unavailable:
                    break  # the rest wait; what was sent is done
                except EngineError:
                    continue  # refused for good (too large, ...): left for the log below
                sent.append(row_id)
            return sent

        self.busy = True
        engine.submit(publish_all).add_done_callback(
            lambda f: node.jobs.submit("fleet published", lambda: self._published(f, len(batch)))
        )

    def _published(self, future: concurrent.futures.Future[list[int]], tried: int) -> None:
        self.busy = False
        try:
            sent = future.result()
        except Exception as exc:  # noqa: BLE001 - the rows stay and go with the next drain
            sent = []
            self.node.ctx.log.warning("fleet.publish_failed", detail=f"{type(exc).__name__}: {exc}")
        if sent:
            with self.node.ctx.inventory.transaction():
                tables.done(self.node.ctx.inventory, sent)
            self.node.ctx.log.debug("fleet.published", records=len(sent))
        if (sent and len(sent) == tried) or self.again:
            self.again = False
            self.drain()

    def _carry_decisions(self, old: str, new: str, name: str) -> None:
        """A renewal made here: the fleet's decisions for the old certificate now name the
        new one, so a gateway that joins later deploys the renewed certificate."""
        node = self.node
        queued = []
        for env in node.view.assignments(node.reject):
            record = env.record
            if isinstance(record, Assignment) and record.sha256 == old:
                renewed = Assignment(record.gateway, record.service, new, name[:128])
                queued.append(node.sign(renewed, stamp_after(_now_ms(), [env])))
        if queued:
            with node.ctx.inventory.transaction():
                for env in queued:
                    tables.queue_record(
                        node.ctx.inventory, env.record.BUCKET, env.record.kv_key(), env.encode()
                    )
                    record = env.record
                    assert isinstance(record, Assignment)
                    # Applied here already: the renewal's own hand-back deployed it.
                    if record.service in node.ctx.config.services:
                        tables.set_applied(node.ctx.inventory, record.service, env.at, env.by, new)
                    node.view.put_local(env)

    def _build(self, row: tables.Queued) -> Envelope | None:
        """The record for a trigger row, from the inventory as it is now."""
        node = self.node
        inv = node.ctx.inventory
        kind, ref = row.kind, row.ref
        if kind in ("certificate", "withdraw"):
            return self._decided(row)
        if kind == "request":
            wanted = requests.record_of(inv, ref)
            if wanted is None:
                return None
            record: Record = wanted
        elif kind == "service":
            service = node.ctx.config.services.get(ref)
            state = inv.service(ref)
            if service is None or state is None:
                return None
            desired = inv.entry(state.desired) if state.desired else None
            record = ServiceState(
                gateway=node.me,
                service=ref,
                role=service.role,
                desired=desired.sha256 if desired is not None else None,
                proven=state.deployed_sha256,
                state=state.state,
                detail=_ascii(state.detail, 500),
            )
        else:
            return None
        seen = node.view.records.get(record.BUCKET, {}).get(record.kv_key())
        return node.sign(record, stamp_after(_now_ms(), [seen] if seen else []))

    def _decided(self, row: tables.Queued) -> Envelope | None:
        """A certificate recorded or withdrawn here, stamped when that was decided (the
        row's ``queued``), not now: an old row must not outrank a later withdrawal."""
        node = self.node
        inv = node.ctx.inventory
        record: Record
        if row.kind == "withdraw":
            deleted = json.loads(row.record or b"{}")
            if inv.entry_by_sha256(row.ref) is not None:
                return None  # recorded again since (the trigger replaced the row, too)
            record = Withdrawal(row.ref, str(deleted.get("key_id")), str(deleted.get("name")))
        else:
            entry = inv.entry_by_sha256(row.ref)
            if entry is None or entry.cert_pem is None or entry.status == "requested":
                return None
            old = inv.entry(entry.renews) if entry.renews else None
            if old is not None and old.sha256:
                self._carry_decisions(old.sha256, entry.sha256 or row.ref, entry.name)
            record = Certificate(
                sha256=row.ref,
                name=entry.name,
                key_id=entry.key_id,
                cert_pem=entry.cert_pem.decode("ascii"),
                chain_pem=(entry.chain_pem or b"").decode("ascii"),
                renews=old.sha256 if old is not None else None,
            )
        env = node.sign(record, decided_ms(row.queued) or _now_ms())
        seen = node.view.current(record.BUCKET, row.ref)
        # A withdrawal, or a certificate over a withdrawal, is seen here at once, so no
        # apply pass before the engine echoes it undoes it (re-imports, or withdraws).
        over = isinstance(record, Withdrawal) or (
            seen is not None and isinstance(seen.record, Withdrawal)
        )
        if over and (seen is None or order(env) > order(seen)):
            node.view.put_local(env)
        return env


def judge(
    current: bytes | None,
    mine: Envelope,
    membership: Membership,
    now_ms: int,
    *,
    override: bool = False,
) -> Decision:
    """Whether to write ``mine`` over the bytes stored under its key now. Pure.

    Garbage or a record that fails its check is replaced; a founder already there stands;
    someone else's live lease stands unless ``override`` (``renew --take-over``); otherwise
    :func:`rules.publish_action` decides.
    """
    if current is None:
        return "write"
    try:
        there = decode(current, mine.record.BUCKET, mine.record.kv_key())
    except RecordError:
        return "write"  # garbage under our key: replace it
    if isinstance(mine.record, Founder):
        return "done"  # the first founder stands
    record = there.record
    if isinstance(record, Member):
        signer = membership.signer(there.by)
        ok = signer is not None and verify(there, signer)
    elif isinstance(record, Identity | Founder):
        ok = trust.self_signed(there) is None
    else:
        ok = trust.check(there, membership) is None
    if ok and isinstance(record, Lease) and isinstance(mine.record, Lease):
        # A lease is not a later-wins decision: someone else's live lease stands (so two
        # gateways racing for it end with one holder).
        taken = lease_action(there, mine.by, now_ms, 0, LEASE_GRACE_MS, override=override)
        return "superseded" if taken.kind == "busy" else "write"
    return publish_action(there if ok else None, mine)


def _now_ms() -> int:
    from certdrop.fleet.node import now_ms

    return now_ms()
