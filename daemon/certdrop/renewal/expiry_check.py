"""The expiry watch inside ``certdrop run``: the scheduler, and the check it enqueues.

APScheduler only enqueues: every ``expiry.check_interval_seconds``, once at start-up and
at each retry time it submits :meth:`Watch.check` to the daemon's one worker queue (no
cron, no systemd timer). The check, on the worker, for each certificate in use:

1. emits ``expiry.warning`` / ``expiry.expired`` once per threshold (the ``warnings``
   table remembers them across restarts; :func:`certdrop.pki.expiry.assess` decides);
2. starts its renewal at the renewal point, or moves an open one on
   (:class:`certdrop.renewal.renewer.Renewer`);
3. says ``renewal.overdue`` once the last warning threshold is reached with the renewal
   still open.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from certdrop.clock import utc_now
from certdrop.intake.work import Outcome
from certdrop.pki import expiry
from certdrop.renewal.renewer import Jobs, Renewer
from certdrop.renewal.report import policy_of
from certdrop.store import renewals as ledger
from certdrop.store.context import Context
from certdrop.store.renewals import InUse, Renewal

if TYPE_CHECKING:
    from apscheduler.schedulers.background import BackgroundScheduler

CHECK_JOB = "expiry-check"


class ExpiryCheck:
    """The expiry watch of one running daemon, a daemon feature (its hooks are the
    ``on_*``/``after_*`` methods). ``on_start``/``on_stop`` run in the main thread, the
    scheduler's jobs in its own thread (they only enqueue), the rest on the worker."""

    def __init__(self, ctx: Context, jobs: Jobs, clock: Callable[[], datetime] = utc_now) -> None:
        self.ctx = ctx
        self.jobs = jobs
        self.clock = clock
        self.scheduler: BackgroundScheduler | None = None
        self.renewer = Renewer(ctx, jobs, self.wake_at, clock)

    # -- feature hooks ---------------------------------------------------------------------
    def on_start(self) -> None:
        self.start()

    def on_stop(self) -> None:
        self.stop()

    def after_recover(self) -> None:
        self.renewer.after_recover()

    def after_drop(self, outcome: Outcome) -> None:
        self.renewer.after_drop(outcome)

    def after_snapshot(self) -> None:
        pass

    # -- the main thread --------------------------------------------------------------------
    def start(self) -> None:
        # Imported here: every CLI command imports this module, only `run` schedules.
        from apscheduler.executors.pool import ThreadPoolExecutor
        from apscheduler.schedulers.background import BackgroundScheduler

        scheduler = BackgroundScheduler(
            timezone=UTC,
            executors={"default": ThreadPoolExecutor(1)},
            job_defaults={"coalesce": True, "max_instances": 1, "misfire_grace_time": None},
        )
        scheduler.add_job(
            self._tick, "interval", seconds=self.ctx.config.check_interval_seconds, id=CHECK_JOB
        )
        scheduler.start()
        self.scheduler = scheduler
        self._tick()  # once at start-up, queued behind recovery and the drops found waiting

    def stop(self) -> None:
        """Stop the scheduler (joining its threads), then end running commands."""
        if self.scheduler is not None:
            self.scheduler.shutdown(wait=True)
        self.renewer.stop()

    def _tick(self) -> None:
        """Scheduler thread: only enqueue."""
        self.jobs.submit("expiry check", self.check)

    def wake_at(self, renewal: Renewal) -> None:
        """A one-off check when ``renewal`` may try again (the interval may be hours)."""
        if self.scheduler is None or renewal.next_attempt is None:
            return
        with contextlib.suppress(Exception):  # shutting down: the next start-up retries
            self.scheduler.add_job(
                self._tick,
                "date",
                run_date=renewal.next_attempt,
                id=f"retry {renewal.cert}",
                replace_existing=True,
            )

    # -- the worker -------------------------------------------------------------------------
    def after_reload(self) -> None:
        if self.scheduler is not None:
            with contextlib.suppress(Exception):
                self.scheduler.reschedule_job(
                    CHECK_JOB, trigger="interval", seconds=self.ctx.config.check_interval_seconds
                )
        self.check()

    def check(self) -> None:
        """The expiry check: warnings, renewals due, retries, hand-backs, cancellations."""
        now = self.clock()
        ctx = self.ctx
        policy = policy_of(ctx.config)
        renewals = ledger.renewals(ctx.inventory)
        watched = ledger.in_use(ctx.inventory, ctx.config.services)
        for cert in watched:
            self._check_one(cert, renewals.get(cert.name), policy, now)
        desired = {c.name for c in watched if c.desired}
        for renewal in renewals.values():
            if renewal.open and renewal.state != "running" and renewal.cert not in desired:
                self.renewer.cancel(renewal)

    def _check_one(
        self, cert: InUse, renewal: Renewal | None, policy: expiry.Policy, now: datetime
    ) -> None:
        ctx = self.ctx
        found = expiry.assess(cert.lifetime, ledger.warned(ctx.inventory, cert.sha256), policy, now)
        quiet = [label for label in found.remember if label != expiry.OVERDUE]
        if quiet:
            with ctx.inventory.transaction():
                ledger.remember(ctx.inventory, cert.sha256, quiet, now)
        facts: dict[str, Any] = {
            "name": cert.name,
            "sha256": cert.sha256,
            "not_after": cert.not_after,
            "days_left": expiry.days(cert.lifetime.left(now)),
            "services": list(cert.services),
        }
        if found.warn is not None:
            ctx.log.warning("expiry.warning", threshold_days=found.warn, **facts)
        if found.expired:
            ctx.log.error("expiry.expired", **facts)
        if not cert.desired:
            return  # still served after a failed deploy, but no longer wanted: not renewed
        if renewal is not None and renewal.open:
            renewal = self.renewer.advance(renewal, now)
        elif found.renewal_due:
            renewal = self.renewer.start(cert, found, now)
        if found.overdue and renewal is not None and renewal.state != "completed":
            with ctx.inventory.transaction():
                ledger.remember(ctx.inventory, cert.sha256, [expiry.OVERDUE], now)
            ctx.log.error(
                "renewal.overdue",
                cert=cert.name,
                request=renewal.request or None,
                state=renewal.state,
                attempts=renewal.attempts,
                not_after=cert.not_after,
                days_left=facts["days_left"],
                detail=renewal.detail or "the renewed certificate has not arrived",
            )
