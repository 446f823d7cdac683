"""The expiry watch inside ``certdrop run``: the scheduler, and the check it enqueues.

A :class:`~certdrop.renewal.ticker.Ticker` only enqueues: every
``expiry.check_interval_seconds`` of monotonic time, once at start-up and at each retry
time it submits :meth:`ExpiryCheck.check` to the daemon's one worker queue (no cron, no
systemd timer), so a step of the wall clock neither silences nor floods it. When the
clock steps, ``daemon.clock_jump`` is logged once, open renewals' retry times move with
it (their delays keep their length) and a check runs. The check, on the worker, reads
the wall clock afresh and, for each certificate in use:

1. emits ``expiry.warning`` / ``expiry.expired`` once per threshold (the ``warnings``
   table remembers them across restarts; :func:`certdrop.pki.expiry.assess` decides);
2. starts its renewal at the renewal point, or moves an open one on
   (:class:`certdrop.renewal.renewer.Renewer`);
3. says ``renewal.overdue`` once the last warning threshold is reached with the renewal
   still open.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime, timedelta
from typing import Any

from certdrop.clock import utc_now
from certdrop.intake.work import Outcome
from certdrop.pki import expiry
from certdrop.renewal.renewer import Jobs, Renewer
from certdrop.renewal.report import policy_of
from certdrop.renewal.ticker import Ticker
from certdrop.store import renewals as ledger
from certdrop.store.context import Context
from certdrop.store.renewals import InUse, Renewal


class ExpiryCheck:
    """The expiry watch of one running daemon, a daemon feature (its hooks are the
    ``on_*``/``after_*`` methods). ``on_start``/``on_stop`` run in the main thread, the
    ticker's calls in its own thread (they only enqueue), the rest on the worker."""

    def __init__(
        self,
        ctx: Context,
        jobs: Jobs,
        clock: Callable[[], datetime] = utc_now,
        *,
        may_renew: Callable[[str, str], bool] = lambda name, sha256: True,
    ) -> None:
        self.ctx = ctx
        # Fleet mode: only the holder of a certificate's renewal lease renews it.
        self.may_renew = may_renew
        self.jobs = jobs
        self.clock = clock
        self.ticker: Ticker | None = None
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
        ticker = Ticker(self.ctx.config.check_interval_seconds, self._tick, self._jumped)
        ticker.start()
        self.ticker = ticker
        self._tick()  # once at start-up, queued behind recovery and the drops found waiting

    def stop(self) -> None:
        """Stop the ticker (joining its thread), then end running commands."""
        if self.ticker is not None:
            self.ticker.stop()
        self.renewer.stop()

    def _tick(self) -> None:
        """Ticker thread: only enqueue."""
        self.jobs.submit("expiry check", self.check)

    def _jumped(self, delta: float) -> None:
        """Ticker thread: the wall clock stepped by ``delta`` seconds."""
        self.jobs.submit("clock jump", lambda: self.after_jump(delta))

    def wake_at(self, renewal: Renewal) -> None:
        """A one-off check when ``renewal`` may try again (the interval may be hours).
        The wall-time deadline becomes a monotonic delay now; the check re-reads it."""
        if self.ticker is None or renewal.next_attempt is None:
            return
        delay = (renewal.next_attempt - self.clock()).total_seconds()
        self.ticker.wake_in(f"retry {renewal.cert}", delay)

    # -- the worker -------------------------------------------------------------------------
    def after_reload(self) -> None:
        if self.ticker is not None:
            self.ticker.set_interval(self.ctx.config.check_interval_seconds)
        self.check()

    def after_jump(self, delta: float) -> None:
        """Say so once; move open renewals' retry times by the step; check at once."""
        moved = 0
        inventory = self.ctx.inventory
        with inventory.transaction():
            for renewal in ledger.renewals(inventory).values():
                if renewal.open and renewal.next_attempt is not None:
                    later = renewal.next_attempt + timedelta(seconds=delta)
                    ledger.save(inventory, renewal.but(next_attempt=later))
                    moved += 1
        self.ctx.log.warning(
            "daemon.clock_jump",
            seconds=round(delta, 1),
            renewals_moved=moved,
            detail="the wall clock was set "
            f"{'forward' if delta > 0 else 'back'} by {abs(delta):.0f} s; checks keep their "
            "rhythm and retry times moved with the clock",
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
            if renewal.state == "running" or self.may_renew(cert.name, cert.sha256):
                renewal = self.renewer.advance(renewal, now)
        elif found.renewal_due and self.may_renew(cert.name, cert.sha256):
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
