"""Fleet mode inside ``certdrop run``: a daemon feature that joins this gateway to the fleet.

Threads: the engine's own (NATS), a ticker that only enqueues, and the worker, which
does everything that reads or writes the inventory (the one-writer rule). Watched
records reach the worker as jobs; what the worker publishes goes to the engine as a
coroutine whose result comes back as another job, so the worker never waits on NATS
except for a renewal lease (bounded by the engine's timeout).

With the engine unreachable nothing stops: drops, deploys and expiry checks go on, the
outbox keeps what must be published, ``fleet.disconnected`` is logged once and
``fleet.connected`` when it is back, then the outbox drains and the watches replay.
"""

from __future__ import annotations

import shlex
import threading
import time
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any, Protocol

from certdrop import __version__
from certdrop.clock import iso
from certdrop.config import FleetConfig
from certdrop.errors import UserError
from certdrop.fleet import apply, identity, publish, trust
from certdrop.fleet.engine import Engine, Settings
from certdrop.fleet.kv import Entry, Unavailable
from certdrop.fleet.records import (
    BUCKETS,
    Envelope,
    Heartbeat,
    Identity,
    Lease,
    Record,
    RecordError,
    decode,
)
from certdrop.fleet.rules import LEASE_GRACE_MS, LeaseAction, lease_action
from certdrop.fleet.view import FleetView
from certdrop.intake.pipeline import Intake
from certdrop.intake.work import Outcome
from certdrop.store import fleet as tables
from certdrop.store.context import Context

RESYNC_SECONDS = 300.0  # a full replay now and then: a safety net under the watches


class Jobs(Protocol):
    """The daemon's worker, as the fleet uses it."""

    def submit(self, name: str, fn: Callable[[], object]) -> object: ...
    def changed(self) -> None: ...
    def announce(self, outcome: Outcome) -> None: ...


def now_ms() -> int:
    return int(time.time() * 1000)


def _iso(ms: int) -> str:
    return iso(datetime.fromtimestamp(ms / 1000, UTC))


class FleetNode:
    """This gateway in the fleet: identity, engine, view, outbox, and what arrives."""

    def __init__(
        self, ctx: Context, jobs: Jobs, config: FleetConfig, intake: Intake | None
    ) -> None:
        self.ctx = ctx
        self.intake = intake  # None in a CLI session, which applies nothing
        self.jobs = jobs
        self.config = config
        self.me = config.gateway
        self.key, created = identity.load_or_create(config.identity)
        if created:
            ctx.log.info(
                "fleet.identity_created",
                gateway=self.me,
                file=str(config.identity),
                fingerprint=self.key.public.fingerprint,
            )
        self.view = FleetView()
        pinned = tables.pinned(ctx.inventory, "founder")
        if pinned is not None:
            self.view.founder_pin = decode(pinned, "certdrop_gateways", "founder")
        settings = Settings(
            servers=config.servers,
            name=f"certdrop {self.me}",
            tls_ca=config.tls_ca,
            tls_cert=config.tls_cert,
            tls_key=config.tls_key,
            creds=config.creds,
            replicas=config.replicas,
        )
        self.engine = Engine(settings, BUCKETS, self._on_connection)
        self.publisher = publish.Publisher(self)
        self.applier = apply.Applier(self)
        self._stop = threading.Event()
        self._ticker: threading.Thread | None = None
        self._said: bool | None = None  # what fleet.connected/disconnected said last
        self.connected_once = True  # a CLI session says whether it reached the engine
        self._pending_entries: list[Entry] = []
        self._entries_lock = threading.Lock()

    # -- feature hooks ----------------------------------------------------------------------
    def on_start(self) -> None:
        self.engine.start()
        for bucket in BUCKETS:
            self.engine.watch(bucket, self._on_entries)
        self._ticker = threading.Thread(target=self._tick, name="certdrop-fleet-tick", daemon=True)
        self._ticker.start()

    def on_stop(self) -> None:
        self._stop.set()
        if self._ticker is not None:
            self._ticker.join(5)
        self.engine.close()

    def after_recover(self) -> None:
        self.publisher.drain()

    def after_drop(self, outcome: Outcome) -> None:
        if outcome.recorded:
            self.publisher.drain()

    def after_reload(self) -> None:
        self.applier.assignments()

    def after_snapshot(self) -> None:
        self.publisher.drain()  # deploys and commands changed services: their rows wait

    # -- from other threads: only enqueue ----------------------------------------------------
    def _on_connection(self, up: bool, detail: str) -> None:  # engine thread
        self.jobs.submit("fleet connection", lambda: self._connection(up, detail))

    def _on_entries(self, batch: list[Entry]) -> None:  # engine thread
        with self._entries_lock:
            first = not self._pending_entries
            self._pending_entries.extend(batch)
        if first:  # one job takes everything that arrived until it runs
            self.jobs.submit("fleet changes", self._take_entries)

    def _tick(self) -> None:  # ticker thread
        last_resync = time.monotonic()
        while not self._stop.wait(self.config.heartbeat_seconds):
            self.jobs.submit("fleet heartbeat", self.heartbeat)
            if time.monotonic() - last_resync > RESYNC_SECONDS:
                last_resync = time.monotonic()
                self.engine.resync()

    # -- on the worker ----------------------------------------------------------------------
    def _connection(self, up: bool, detail: str) -> None:
        if up == self._said:
            return
        self._said = up
        if up:
            self.ctx.log.info("fleet.connected", gateway=self.me, servers=list(self.config.servers))
            self.publisher.enrol()
            self.heartbeat()
            self.publisher.drain()
        else:
            self.ctx.log.warning(
                "fleet.disconnected",
                gateway=self.me,
                servers=list(self.config.servers),
                detail=f"{detail}; working alone, changes wait in the outbox",
            )

    def _take_entries(self) -> None:
        with self._entries_lock:
            batch, self._pending_entries = self._pending_entries, []
        changed = self.view.update(batch, self.reject)
        if changed:
            self.applier.changed(changed)

    def reject(self, bucket: str, key: str, by: str, reason: str) -> None:
        self.ctx.log.warning(
            "fleet.record_rejected", bucket=bucket, kv_key=key, by=by, reason=reason
        )

    def sign(self, record: Record, at: int | None = None) -> Envelope:
        return self.key.sign(record, self.me, now_ms() if at is None else at)

    def heartbeat(self) -> None:
        """Say this gateway is alive; drain the outbox and apply again (retries)."""
        if not self.engine.connected:
            return
        services = tuple(sorted(self.ctx.config.services))
        self.publisher.send(self.sign(Heartbeat(self.me, __version__, services)))
        self.publisher.drain()
        # Sealing and applying are fire-and-forget towards the engine; doing them again
        # here (cheap: verdicts are cached) retries what an outage made fail.
        self.applier.changed(set(BUCKETS))

    def identity_record(self) -> Envelope:
        return self.sign(Identity(self.me, self.key.public.sign_key, __version__))

    def pin_founder(self, raw: bytes) -> None:
        env = decode(raw, "certdrop_gateways", "founder")
        with self.ctx.inventory.transaction():
            tables.pin(self.ctx.inventory, "founder", raw)
        self.view.founder_pin = env
        self.view.recompute(self.reject)
        self.ctx.log.info("fleet.founder_pinned", founder=env.by, gateway=self.me)
        self.applier.changed(set(BUCKETS))

    # -- the renewal lease (ExpiryCheck asks before a hand-off, `certdrop renew` too) --------
    def may_renew(self, name: str, sha256: str) -> bool:
        """True when this gateway holds (or just took) the renewal lease of ``sha256``."""
        now = now_ms()
        current = self.view.lease(sha256, self.reject)
        action = self._lease_action(current, now, override=False)
        if action.kind == "busy":
            return False
        try:
            return self._take_lease(name, sha256, action, current) == "write"
        except Unavailable:
            return self._holds(current, now)  # working alone: only a lease still held

    def claim_for_renew(self, name: str, sha256: str, *, take_over: bool) -> dict[str, Any]:
        """``certdrop renew NAME``: take the renewal lease as the expiry check would, or
        a UserError naming the holder and when its lease runs out. ``take_over``: a live
        lease of another gateway is taken from it, and an unreachable engine is no bar."""
        now = now_ms()
        try:  # the engine's record, not the view: a refusal must name the holder now
            current = self._read_lease(sha256)
            action = self._lease_action(current, now, override=take_over)
            if action.kind != "busy":
                if self._take_lease(name, sha256, action, current) == "write":
                    held = current.record if current is not None else None
                    taken = action.kind in ("override", "take_over") and isinstance(held, Lease)
                    return {
                        "how": action.kind,
                        "holder": self.me,
                        "expires": _iso(action.expires),
                        "previous": held.holder if taken and isinstance(held, Lease) else None,
                    }
                # Another gateway took it between the read and the write: name it.
                action = self._lease_action(self._read_lease(sha256), now_ms(), override=False)
        except Unavailable as exc:
            return self._claim_alone(name, sha256, now, take_over, str(exc))
        holder = action.holder if action.kind == "busy" else "another gateway"
        until = f" until {_iso(action.expires)}" if action.kind == "busy" else ""
        raise UserError(
            f"{holder} holds the fleet's renewal lease of {name!r}{until}: its renewals run "
            f"there; `certdrop renew {shlex.quote(name)} --take-over` takes the lease over "
            f"(if {holder} is renewing it now, that orders a certificate twice)"
        )

    def _lease_action(self, current: Envelope | None, now: int, *, override: bool) -> LeaseAction:
        duration = int(self.config.lease_seconds * 1000)
        return lease_action(current, self.me, now, duration, LEASE_GRACE_MS, override=override)

    def _take_lease(
        self, name: str, sha256: str, action: LeaseAction, current: Envelope | None
    ) -> str:
        """Publish this gateway's lease (Unavailable when the engine cannot say); returns
        the engine's decision: "write" when it is ours now, "superseded" when not."""
        mine = self.sign(Lease(sha256, self.me, action.expires))
        outcome = self.publisher.send_now(mine, override=action.kind == "override")
        if outcome == "superseded":
            return outcome
        self.view.put_local(mine)
        if action.kind == "override":
            held = current.record if current is not None else None
            self.ctx.log.warning(
                "fleet.lease_taken",
                cert=name,
                sha256=sha256,
                gateway=self.me,
                how="override",
                previous=held.holder if isinstance(held, Lease) else None,
                previous_expires=_iso(held.expires) if isinstance(held, Lease) else None,
            )
        elif action.kind != "extend":
            self.ctx.log.info(
                "fleet.lease_taken", cert=name, sha256=sha256, gateway=self.me, how=action.kind
            )
        return "write"

    def _read_lease(self, sha256: str) -> Envelope | None:
        """The lease of ``sha256`` in the engine now, if well-formed and rightly signed."""
        entry = self.engine.get(Lease.BUCKET, sha256)
        if entry is None or entry.value is None:
            return None
        try:
            env = decode(entry.value, Lease.BUCKET, sha256)
        except RecordError:
            return None
        return env if trust.check(env, self.view.membership) is None else None

    def _holds(self, current: Envelope | None, now: int) -> bool:
        held = current.record if current is not None else None
        return isinstance(held, Lease) and held.holder == self.me and held.expires > now

    def _claim_alone(
        self, name: str, sha256: str, now: int, take_over: bool, why: str
    ) -> dict[str, Any]:
        """The engine did not answer: a lease this gateway still holds covers the renewal;
        else only ``take_over`` lets it go on, unchecked."""
        current = self.view.lease(sha256, self.reject)
        if self._holds(current, now):
            assert current is not None and isinstance(current.record, Lease)
            expires = _iso(current.record.expires)
            return {"how": "held", "holder": self.me, "expires": expires, "previous": None}
        if not take_over:
            raise UserError(
                "the fleet engine is unreachable, so whether another gateway holds "
                f"the renewal lease of {name!r} is unknown; try again when it is back, or "
                f"`certdrop renew {shlex.quote(name)} --take-over` renews here without the "
                "lease (if another gateway is renewing it, that orders a certificate twice)"
            )
        self.ctx.log.warning(
            "fleet.lease_unchecked",
            cert=name,
            sha256=sha256,
            gateway=self.me,
            detail=f"renew --take-over with the fleet engine unreachable ({why}); "
            "renewing without the lease",
        )
        return {"how": "unchecked", "holder": None, "expires": None, "previous": None}

    def status_view(self) -> dict[str, Any]:
        from certdrop.fleet import status  # the command's module; cheap to import late

        return status.report(
            self.view,
            self.me,
            now_ms(),
            self.config.heartbeat_seconds,
            connected=bool(self._said),
            outbox=tables.count(self.ctx.inventory),
        )
