"""The renewal hand-off (the imperative shell around :mod:`certdrop.expiry`'s timing).

When :mod:`certdrop.renewal.expiry_check` finds a certificate in use at its renewal point, a
:class:`Renewer` makes a new key of the same type and size and a CSR with the same subject
and SANs (a ``requested`` entry that ``renews`` the certificate, its CSR in the outbox)
and runs ``renewal.command`` in its own thread; the result comes back to the worker as
another job, so the worker never waits for a CA. A failed command is retried with growing
delays. When the renewed certificate completes the request (intake, after a drop by the
command or a person), it is deployed to every service of the certificate it renews
(``deploy.assign``: files, reload, TLS proof, rollback), which leaves the old one
``unused``. The ``renewals`` table (:mod:`certdrop.store.renewals`) keeps one row a certificate,
so there is at most one open renewal per certificate, also across restarts.

Everything here runs on the worker, except :meth:`Renewer.stop` (the main thread) and the
commands (their own threads, which only submit their result).
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Callable
from datetime import datetime
from pathlib import Path
from typing import Any, Protocol

from cryptography import x509

from certdrop.clock import iso, utc_now
from certdrop.errors import CertdropError, UserError
from certdrop.files import atomic_write
from certdrop.intake.request import create_request, csr_path
from certdrop.intake.work import Outcome
from certdrop.pki import expiry, keys
from certdrop.pki.csr import fields_of_certificate
from certdrop.renewal import command as handoff
from certdrop.services import reconcile as deploy
from certdrop.store import renewals as ledger
from certdrop.store.context import Context
from certdrop.store.renewals import InUse, Renewal
from certdrop.store.rows import Entry


class Jobs(Protocol):
    """The daemon's one worker queue, as renewals use it."""

    def submit(self, name: str, fn: Callable[[], object]) -> object:
        """Run ``fn`` on the worker, after the jobs already queued."""

    def changed(self) -> None:
        """The inventory changed: status.json is rewritten once the queue is idle."""


class Renewer:
    """The renewals of one running daemon. ``wake_at(renewal)`` asks for a check when a
    renewal may try again (the scheduler's business)."""

    def __init__(
        self,
        ctx: Context,
        jobs: Jobs,
        wake_at: Callable[[Renewal], None],
        clock: Callable[[], datetime] = utc_now,
    ) -> None:
        self.ctx = ctx
        self.jobs = jobs
        self.wake_at = wake_at
        self.clock = clock
        self._runs: dict[str, handoff.CommandRun] = {}  # certificate -> its running command
        self._lock = threading.Lock()  # guards _runs and _stopping (worker vs. main thread)
        self._stopping = False

    def stop(self) -> None:
        """Main thread, at stop: end running commands. Their results still reach the
        worker (on_stop comes before the queue's end) as interrupted attempts."""
        with self._lock:
            self._stopping = True
            runs = list(self._runs.values())
        for run in runs:
            run.stop()

    def after_recover(self) -> None:
        """A command the last run was running died with it: run it again now."""
        now = self.clock()
        inventory = self.ctx.inventory
        stale = [r for r in ledger.renewals(inventory).values() if r.state == "running"]
        if not stale:
            return
        with inventory.transaction():
            for r in stale:
                ledger.save(
                    inventory,
                    r.but(
                        state="pending",
                        next_attempt=now,
                        detail="certdrop stopped while renewal.command ran; it runs again",
                    ),
                )

    def after_drop(self, outcome: Outcome) -> None:
        """A drop that completed a renewal request hands the new certificate over."""
        inventory = self.ctx.inventory
        for name in outcome.recorded:
            entry = inventory.entry(name)
            if entry is None or not entry.renews or not _issued(entry):
                continue
            renewal = ledger.renewal(inventory, entry.renews)
            # While its command still runs, the hand-back waits for the command's result,
            # so the log tells command, then certificate, then deploy, in that order.
            if (
                renewal is not None
                and renewal.open
                and renewal.request == name
                and renewal.state != "running"
            ):
                self._hand_back(renewal, entry)

    def start(
        self, cert: InUse, found: expiry.Assessment, now: datetime, *, by: str = "expiry"
    ) -> Renewal:
        """Make the renewal request of ``cert`` and run ``renewal.command`` (if any).
        ``by``: ``expiry`` (the check found it due) or ``renew`` (the operator asked)."""
        ctx = self.ctx
        adopted = ledger.open_request_for(ctx.inventory, cert.name)
        renewal = Renewal(cert.name, adopted or "", "pending", 0, None, now, "")
        problem = None
        if adopted is not None:  # a crash came between its request and its row
            with ctx.inventory.transaction():
                ledger.save(ctx.inventory, renewal)
        else:
            try:
                renewal = self._make_request(renewal, now)
            except CertdropError as exc:
                problem = str(exc)
        ctx.log.info(
            "renewal.started",
            cert=cert.name,
            request=renewal.request or None,
            csr=str(self._csr_path(renewal.request)) if renewal.request else None,
            not_after=cert.not_after,
            renew_at=iso(found.renew_at),
            reason=(
                "asked for by `certdrop renew`"
                if by == "renew"
                else f"renew_before_days = {ctx.config.renew_before_days}"
                if ctx.config.renew_before_days > 0
                else "a third of its lifetime is left"
            ),
            services=list(cert.services),
            command=bool(ctx.config.renewal_command),
            by=by,
        )
        if problem is not None:
            return self._failed(renewal, problem, now, stage="request")
        if not ctx.config.renewal_command:
            return self._save(
                renewal.but(
                    detail=f"no renewal.command: send {self._csr_path(renewal.request)} to "
                    "your CA and drop the issued certificate into the inbox"
                )
            )
        return self.advance(renewal, now)

    def _make_request(self, renewal: Renewal, now: datetime) -> Renewal:
        """A new key and CSR like the certificate's; the row is saved with the entry."""
        ctx = self.ctx
        inventory = ctx.inventory
        entry = inventory.entry(renewal.cert)
        key_pem = inventory.key_pem(renewal.cert)
        if entry is None or entry.cert_pem is None or key_pem is None:
            raise UserError(f"{renewal.cert} has no certificate and key to renew")
        cert = x509.load_pem_x509_certificate(entry.cert_pem)
        # The old key only tells the type and size; create_request makes a new one.
        fields = fields_of_certificate(cert, keys.load_pem(key_pem))
        name = inventory.free_name(expiry.renewal_name(renewal.cert, now))
        made = renewal.but(request=name, detail="")
        create_request(
            inventory,
            ctx.log,
            ctx.config.outbox,
            name,
            fields,
            renews=renewal.cert,
            in_transaction=lambda: ledger.save(inventory, made),
        )
        self.jobs.changed()  # a new `requested` entry for status
        return made

    def advance(self, renewal: Renewal, now: datetime) -> Renewal:
        """Move an open renewal on: hand back an arrived certificate, or try again."""
        if renewal.state == "running":
            return renewal
        entry = self.ctx.inventory.entry(renewal.request) if renewal.request else None
        if entry is not None and _issued(entry):
            return self._hand_back(renewal, entry)
        if renewal.state != "pending" or not self.ctx.config.renewal_command:
            return renewal
        if renewal.next_attempt is not None and renewal.next_attempt > now:
            self.wake_at(renewal)  # after a restart, the one-off job is gone
            return renewal
        return self._attempt(renewal, now)

    def _attempt(self, renewal: Renewal, now: datetime) -> Renewal:
        ctx = self.ctx
        if not renewal.request or ctx.inventory.entry(renewal.request) is None:
            try:
                renewal = self._make_request(renewal, now)
            except CertdropError as exc:
                return self._failed(renewal, str(exc), now, stage="request")
        csr = self._csr_path(renewal.request)
        if not csr.exists():  # someone tidied the outbox: the command needs the file
            pem = ledger.csr_pem(ctx.inventory, renewal.request)
            if pem is not None:
                atomic_write(csr, pem, mode=0o644)
        argv = handoff.fill(
            ctx.config.renewal_command,
            {
                "csr": str(csr),
                "name": renewal.request,
                "inbox": str(ctx.config.inbox),
                "outbox": str(ctx.config.outbox),
            },
        )
        cert, request = renewal.cert, renewal.request

        def done(finished: handoff.Finished) -> None:  # the command's thread
            self.jobs.submit("renewal result", lambda: self._attempt_done(cert, request, finished))

        run = handoff.CommandRun(
            argv, ctx.config.renewal_timeout_seconds, done, name=f"certdrop-renewal {cert}"
        )
        if self._stopping:
            return renewal
        attempt = renewal.attempts + 1
        renewal = self._save(
            renewal.but(state="running", detail=f"renewal.command runs (attempt {attempt})")
        )
        ctx.log.info(
            "renewal.attempt", cert=cert, request=request, attempt=attempt, program=argv[0]
        )
        # Started under the lock: stop() either sees this run or prevents it. A run that
        # is prevented stays `running` in the state; the next start-up runs it again.
        with self._lock:
            if not self._stopping:
                self._runs[cert] = run
                run.start()
        return renewal

    def _attempt_done(self, cert: str, request: str, finished: handoff.Finished) -> None:
        with self._lock:
            self._runs.pop(cert, None)
        ctx = self.ctx
        now = self.clock()
        renewal = ledger.renewal(ctx.inventory, cert)
        if renewal is None or renewal.request != request or renewal.state != "running":
            return
        if finished.interrupted:
            self._save(renewal.but(state="pending", next_attempt=now, detail=finished.reason))
            return
        entry = ctx.inventory.entry(request)
        arrived = entry is not None and _issued(entry)
        if not (finished.ok or arrived):
            self._failed(renewal, finished.reason, now, stage="command", finished=finished)
            return
        waiting = "" if arrived else "; waiting for the certificate in the inbox"
        renewal = self._save(
            renewal.but(
                state="handed_off",
                detail=f"renewal.command finished at {iso(now)}{waiting}",
            )
        )
        (ctx.log.info if finished.ok else ctx.log.warning)(
            "renewal.handed_off",
            cert=cert,
            request=request,
            attempt=renewal.attempts + 1,
            exit_code=finished.exit_code,
            seconds=round(finished.seconds, 3),
            arrived=arrived,
            output=finished.output,
            **({"reason": finished.reason} if finished.reason else {}),
        )
        if arrived:
            assert entry is not None
            self._hand_back(renewal, entry)

    def _failed(
        self,
        renewal: Renewal,
        reason: str,
        now: datetime,
        *,
        stage: str,
        finished: handoff.Finished | None = None,
    ) -> Renewal:
        attempts = renewal.attempts + 1
        delay = expiry.retry_delay(attempts, self.ctx.config.renewal_retry_base_seconds)
        renewal = self._save(
            renewal.but(
                state="pending", attempts=attempts, next_attempt=now + delay, detail=reason
            ),
            failed=stage,
        )
        extra: dict[str, Any] = {}
        if finished is not None:
            extra = {
                "exit_code": finished.exit_code,
                "seconds": round(finished.seconds, 3),
                "output": finished.output,
            }
        self.ctx.log.warning(
            "renewal.failed",
            cert=renewal.cert,
            request=renewal.request or None,
            stage=stage,
            attempt=attempts,
            reason=reason,
            retry_in_seconds=round(delay.total_seconds(), 3),
            next_attempt=iso(renewal.next_attempt or now),
            **extra,
        )
        self.wake_at(renewal)
        return renewal

    def _hand_back(self, renewal: Renewal, entry: Entry) -> Renewal:
        """Deploy the renewed certificate to the old one's services; complete the renewal."""
        ctx = self.ctx
        services = [
            s for s in ledger.services_of(ctx.inventory, renewal.cert) if s in ctx.config.services
        ]
        try:
            results = deploy.assign(ctx, entry.name, services, by="renewal") if services else []
        except CertdropError as exc:
            detail = f"{entry.name} arrived but cannot be deployed: {exc}"
            if renewal.detail != detail:  # once per problem, not at every check
                ctx.log.error(
                    "renewal.failed",
                    cert=renewal.cert,
                    request=entry.name,
                    stage="deploy",
                    attempt=renewal.attempts + 1,
                    reason=detail,
                )
                return self._save(renewal.but(state="handed_off", detail=detail), failed="deploy")
            return self._save(renewal.but(state="handed_off", detail=detail))
        failed = [r for r in results if r.state != "ok"]
        detail = (
            f"{entry.name} replaced {renewal.cert} on {len(results)} service(s)"
            if not failed
            else f"{entry.name} is assigned, but {len(failed)} of {len(results)} service(s) "
            "did not take it (see service.failed); deploy retries at start-up and reload"
        )
        renewal = self._save(renewal.but(state="completed", next_attempt=None, detail=detail))
        with contextlib.suppress(OSError):  # answered: the CSR no longer waits for a CA
            self._csr_path(entry.name).unlink(missing_ok=True)
        (ctx.log.warning if failed else ctx.log.info)(
            "renewal.completed",
            cert=renewal.cert,
            request=entry.name,
            sha256=entry.sha256,
            not_after=entry.not_after,
            trusted=entry.trusted,
            services={r.service: r.state for r in results},
            detail=detail,
        )
        return renewal

    def cancel(self, renewal: Renewal) -> None:
        self._save(
            renewal.but(
                state="cancelled",
                next_attempt=None,
                detail=f"{renewal.cert} is no longer assigned to any service",
            )
        )
        self.ctx.log.info(
            "renewal.cancelled",
            cert=renewal.cert,
            request=renewal.request or None,
            detail=f"{renewal.cert} is no longer assigned to any service; the request "
            f"{renewal.request or '(none)'} stays in the inventory",
        )

    def _save(self, renewal: Renewal, *, failed: str | None = None) -> Renewal:
        """Store the renewal; ``failed`` names the stage of a failure to count with it."""
        with self.ctx.inventory.transaction():
            ledger.save(self.ctx.inventory, renewal)
            if failed is not None:
                ledger.count_failure(self.ctx.inventory, failed)
        self.jobs.changed()  # status.json is rewritten once the queue is idle
        return renewal

    def _csr_path(self, request: str) -> Path:
        return csr_path(self.ctx.config.outbox, request)

    def commands(self) -> list[handoff.CommandRun]:
        """The renewal commands running now (``certdrop renew`` without a daemon waits
        for them)."""
        with self._lock:
            return list(self._runs.values())


def _issued(entry: Entry) -> bool:
    """The request was answered: the entry now holds its certificate."""
    return entry.status != "requested" and entry.cert_pem is not None
