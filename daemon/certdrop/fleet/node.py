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

import threading
import time
from collections.abc import Callable
from typing import Any, Protocol

from certdrop import __version__
from certdrop.config import FleetConfig
from certdrop.fleet import apply, identity, publish
from certdrop.fleet.engine import Engine, Settings
from certdrop.fleet.kv import Entry, Unavailable
from certdrop.fleet.records import BUCKETS, Envelope, Heartbeat, Identity, Lease, Record, decode
from certdrop.fleet.rules import LEASE_GRACE_MS, lease_action
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

    # -- the renewal lease (ExpiryCheck asks before a hand-off) -------------------------------
    def may_renew(self, name: str, sha256: str) -> bool:
        """True when this gateway holds (or just took) the renewal lease of ``sha256``."""
        now = now_ms()
        current = self.view.lease(sha256, self.reject)
        action = lease_action(
            current, self.me, now, int(self.config.lease_seconds * 1000), LEASE_GRACE_MS
        )
        if action.kind == "busy":
            return False
        mine = self.sign(Lease(sha256, self.me, action.expires))
        try:
            outcome = self.publisher.send_now(mine)
        except Unavailable:
            # Working alone: only a lease this gateway still holds covers a renewal.
            held = current.record if current is not None else None
            return isinstance(held, Lease) and held.holder == self.me and held.expires > now
        if outcome == "superseded":
            return False
        self.view.put_local(mine)
        if action.kind != "extend":
            self.ctx.log.info(
                "fleet.lease_taken", cert=name, sha256=sha256, gateway=self.me, how=action.kind
            )
        return True

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
