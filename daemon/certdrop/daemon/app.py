"""``certdrop run``: the daemon, composed where it starts and then run until told to stop.

:func:`serve` blocks the signals the daemon handles (before any thread starts, so every
thread inherits the mask), takes the state lock, opens the context, builds the worker and
the written-out feature list, and only then runs. ``run`` waits for signals with sigwait,
so no handler ever runs inside the worker's transactions.
"""

from __future__ import annotations

import json
import os
import signal
import threading
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from certdrop import __version__
from certdrop import config as configuration
from certdrop.clock import iso, utc_now
from certdrop.daemon import watcher
from certdrop.daemon.control import ControlServer
from certdrop.daemon.features import Feature, features
from certdrop.daemon.notify import notify, watchdog_interval
from certdrop.daemon.state import (
    LOCK_WAIT_SECONDS,
    Context,
    open_context,
    prepare_folders,
    share_state,
    state_gid,
    state_lock,
)
from certdrop.daemon.worker import Job, Worker
from certdrop.errors import UserError
from certdrop.files import remove_stale_temps
from certdrop.renewal.expiry_check import ExpiryCheck

# The watchdog stops pinging when one job has run longer than its own timeouts allow.
STALL_FLOOR_SECONDS = 600.0
HANDLED = frozenset({signal.SIGTERM, signal.SIGINT, signal.SIGHUP})


def serve(
    config: configuration.Config,
    config_path: Path | None,
    *,
    show: Callable[[str], None] | None = None,
) -> int:
    """Build the daemon from its parts and run it until SIGTERM or SIGINT. ``show``
    gets every status-log line too (``certdrop run`` on a terminal prints them)."""
    prepare_folders(config)
    signal.pthread_sigmask(signal.SIG_BLOCK, HANDLED)
    with state_lock(config.state, wait=LOCK_WAIT_SECONDS):  # a reader holds it a moment
        # Left by a kill -9 in the middle of a write; a reused PID would trip O_EXCL.
        for folder in (
            config.state,
            config.state / "deployed",
            config.outbox,
            config.inbox / "rejected",
        ):
            remove_stale_temps(folder)
        ctx, sink = open_context(config, echo=None, show=show)
        try:
            worker = Worker(ctx)
            built = features(ctx, worker)
            # `certdrop renew` through the control socket starts renewals with the expiry
            # check's own renewer, which tracks and stops their commands.
            ctx.renewer = next((f.renewer for f in built if isinstance(f, ExpiryCheck)), None)
            daemon = Daemon(ctx, worker, built, config_path=config_path)
            return daemon.run()
        finally:
            ctx.intake.close()
            ctx.inventory.close()
            sink.close()


def stall_seconds(config: configuration.Config) -> float:
    """How long one job may legitimately run: its renewal or reload and probe budgets."""
    services = config.services.values()
    deploy = sum(s.reload_timeout_seconds + s.probe_timeout_seconds for s in services)
    return STALL_FLOOR_SECONDS + config.renewal_timeout_seconds + 2 * deploy


class Daemon:
    """A running ``certdrop run``: the worker, the watcher, the control socket, the
    features, the signals and the systemd watchdog."""

    def __init__(
        self,
        ctx: Context,
        worker: Worker,
        features: Sequence[Feature],
        *,
        config_path: Path | None = None,
    ) -> None:
        self.ctx = ctx
        self.worker = worker
        self.features = tuple(features)
        worker.features = self.features
        self.config_path = config_path
        self.observer: threading.Thread | None = None
        self.inbox_id: tuple[int, int] | None = None  # (st_dev, st_ino) the watcher watches
        self.control: ControlServer | None = None
        self.started_at = utc_now()
        self.ready = threading.Event()  # set once the start-up reconcile has run

    @property
    def config(self) -> configuration.Config:
        return self.ctx.config

    def run(self) -> int:
        ctx, worker = self.ctx, self.worker
        config = ctx.config
        control = self.control = ControlServer(
            config.state / "control.sock",
            ctx,
            worker,
            {"health": self._health_request, "reload": self._reload_request},
            gid=state_gid(config),
        )
        control.start()
        # Everything is queued before the worker starts, so daemon.started (what is
        # watched, how many drops wait) is the first line, before any drop's.
        worker.submit("recover", self._recover)
        observer = self.observer = watcher.start(config.inbox, worker.submit_drop)
        inbox_stat = os.stat(config.inbox)
        self.inbox_id = (inbox_stat.st_dev, inbox_stat.st_ino)
        waiting = ctx.intake.pending()
        worker.submit_backlog(waiting)
        for feature in self.features:
            feature.on_start()
        # Logged once the watcher runs: a drop made after this line is never missed.
        ctx.log.info(
            "daemon.started",
            inbox=str(config.inbox),
            state=str(config.state),
            config=config.source,
            pid=os.getpid(),
            waiting=len(waiting),
            services=sorted(config.services),
        )
        worker.start()
        # READY=1 waits for the start-up reconcile: queued behind the recover job (whose
        # after_recover hooks reload and probe every service), so `systemctl start`
        # returns when the services were brought in line, as the unit promises.
        worker.submit("ready", self._ready)
        pinger = self._start_watchdog()
        sig: int = signal.SIGTERM
        try:
            while True:
                sig = signal.sigwait(HANDLED)
                if sig == signal.SIGHUP:
                    # Refusals are logged (daemon.reload_refused); `certdrop reload` is
                    # the way that answers.
                    self._begin_reload()
                    continue
                break
        finally:
            notify("STOPPING=1")
            pinger.set()
            observer.stop()
            for feature in self.features:
                feature.on_stop()
            worker.stop()
            observer.join(timeout=5)
            control.close()
            ctx.log.info("daemon.stopped", signal=signal.Signals(sig).name)
        return 0

    # -- on the worker --------------------------------------------------------------
    def _recover(self) -> None:
        if self.ctx.intake.recover():
            self.worker.changed()
        for feature in self.features:
            feature.after_recover()

    def _ready(self) -> None:
        self.ready.set()
        notify("READY=1")

    def _reload(self) -> str:
        """Re-read the config file; returns what took effect, raises UserError (logged as
        daemon.reload_refused) when the new file is refused and the old one stays."""
        try:
            new = configuration.load(self.config_path, Path.cwd())
            if (new.inbox, new.state) != (self.config.inbox, self.config.state):
                raise UserError("inbox and state cannot change on reload; restart certdrop")
        except UserError as exc:
            self.ctx.log.error(
                "daemon.reload_refused",
                reason=str(exc),
                detail="the previous configuration stays in force",
            )
            raise UserError(f"reload refused, the previous configuration stays: {exc}") from None
        self.ctx.config = new
        self.ctx.intake.reconfigure(new)
        share_state(new)
        if self.control is not None:
            self.control.share(state_gid(new))
        self.worker.changed()
        self.ctx.log.info("daemon.reloaded", config=new.source, services=sorted(new.services))
        for feature in self.features:
            feature.after_reload()
        services = ", ".join(sorted(new.services)) or "none"
        return f"reloaded {new.source} (services: {services})"

    def _begin_reload(self) -> Job:
        # RELOADING=1 at once, as Type=notify-reload wants; READY=1 when the job ended.
        notify(f"RELOADING=1\nMONOTONIC_USEC={time.monotonic_ns() // 1000}")
        return self.worker.submit("reload", self._reload_then_ready)

    def _reload_then_ready(self) -> str:
        try:
            return self._reload()
        finally:
            notify("READY=1")  # ends systemd's "reloading", whether it took or was refused

    # -- control requests (a control thread) ----------------------------------------
    def _reload_request(self, args: dict[str, Any]) -> str:
        """``certdrop reload``: reload on the worker and answer with the outcome."""
        job = self._begin_reload()
        job.done.wait()
        if job.error is not None:
            raise UserError(job.error)
        return str(job.result)

    def _health_request(self, args: dict[str, Any]) -> str:
        """``certdrop check --daemon``: answered here, not on the worker, so a stuck
        worker is reported rather than waited for."""
        return json.dumps(self.health_report())

    def health_report(self) -> dict[str, object]:
        problem = self.health()
        busy = self.worker.busy
        return {
            "healthy": problem is None,
            "problem": problem,
            "pid": os.getpid(),
            "version": __version__,
            "config": self.config.source,
            "started": iso(self.started_at),
            "ready": self.ready.is_set(),
            "queued": self.worker.queue.qsize(),
            "busy": None
            if busy is None
            else {"job": busy[0], "seconds": round(time.monotonic() - busy[1], 1)},
        }

    # -- the systemd watchdog -------------------------------------------------------
    def stall_seconds(self) -> float:
        return stall_seconds(self.config)

    def health(self) -> str | None:
        """None while the daemon does its job; else what is wrong (the watchdog goes quiet).

        A ping from a timer alone proves only that the process lives. This one vouches
        that the worker thread runs and is not stuck in one job beyond every timeout it
        has, and that the inbox watcher runs: otherwise drops would wait forever.
        """
        thread = self.worker.thread
        if thread is None or not thread.is_alive():
            return "the worker thread has stopped"
        observer = self.observer
        emitters = list(getattr(observer, "emitters", ()))
        if observer is None or not observer.is_alive() or not all(e.is_alive() for e in emitters):
            return "the inbox watcher has stopped"
        if self.inbox_id is not None:
            try:
                st = os.stat(self.config.inbox)
                same = (st.st_dev, st.st_ino) == self.inbox_id
            except OSError:
                same = False
            if not same:
                return f"the inbox {self.config.inbox} was removed or replaced; restart to watch it"
        busy = self.worker.busy
        if busy is not None and time.monotonic() - busy[1] > self.stall_seconds():
            return f"the job {busy[0]!r} has run for {time.monotonic() - busy[1]:.0f} s"
        return None

    def _start_watchdog(self) -> threading.Event:
        """Ping systemd every WATCHDOG_USEC / 2 while healthy; returns the stop event."""
        stop = threading.Event()
        interval = watchdog_interval(os.environ)
        if interval is None:
            return stop

        def ping() -> None:
            reported = None
            while not stop.wait(interval):
                problem = self.health()
                if problem is None:
                    notify("WATCHDOG=1")
                elif problem != reported:
                    self.ctx.log.error(
                        "daemon.unhealthy",
                        reason=problem,
                        detail="watchdog pings stopped; systemd will restart certdrop",
                    )
                    notify(f"STATUS=unhealthy: {problem}")
                reported = problem

        threading.Thread(target=ping, name="certdrop-watchdog", daemon=True).start()
        return stop
