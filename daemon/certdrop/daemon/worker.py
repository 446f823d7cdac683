"""The one worker: a queue of jobs drained by one thread, the only writer of the state.

watchdog, APScheduler, the control socket and renewal commands only enqueue. After each
drop the features' ``after_drop`` hooks run, in the order of the feature list; when the
queue goes idle (or a burst has deferred it ``SNAPSHOT_MAX_DELAY``), status.json is
rewritten and the ``after_snapshot`` hooks run.
"""

from __future__ import annotations

import os
import queue
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from certdrop.daemon.state import Context, write_status_json
from certdrop.errors import CertdropError

if TYPE_CHECKING:
    from certdrop.daemon.features import Feature

SNAPSHOT_MAX_DELAY = 2.0  # seconds a burst may defer the status.json rewrite
# A file the start-up scan finds may still be written (no daemon saw it open): it waits
# until it has been unchanged this long, or until its close event comes first.
SETTLE_SECONDS = 2.0


@dataclass
class Job:
    name: str
    run: Callable[[], object]
    done: threading.Event = field(default_factory=threading.Event)
    result: object = None
    error: str | None = None


class Worker:
    """The queue and the thread that drains it. ``features`` are set before ``start``."""

    def __init__(self, ctx: Context) -> None:
        self.ctx = ctx
        self.features: Sequence[Feature] = ()
        self.queue: queue.Queue[Job | None] = queue.Queue()
        self.stopping = threading.Event()
        self.busy: tuple[str, float] | None = None  # the job under way and its start
        self.thread: threading.Thread | None = None
        self._pending: set[str] = set()
        self._pending_lock = threading.Lock()
        self._dirty = False
        self._dirty_since = 0.0

    # -- producers (any thread) -----------------------------------------------------
    def submit(self, name: str, fn: Callable[[], object]) -> Job:
        job = Job(name, fn)
        self.queue.put(job)
        return job

    def submit_drop(self, name: str) -> None:
        with self._pending_lock:
            if name in self._pending:
                return
            self._pending.add(name)
        self.queue.put(Job("drop", lambda: self._drop(name)))

    def submit_found(self, name: str) -> None:
        """Submit a drop the start-up scan found, once it has settled (SETTLE_SECONDS)."""
        try:
            age = time.time() - os.lstat(self.ctx.config.inbox / name).st_ctime
        except FileNotFoundError:
            return  # claimed already, or gone
        if age >= SETTLE_SECONDS:
            self.submit_drop(name)
            return
        # Still being written, perhaps: its close event submits it; if none comes, this does.
        timer = threading.Timer(SETTLE_SECONDS - age, self.submit_found, (name,))
        timer.daemon = True
        timer.start()

    def changed(self) -> None:
        if not self._dirty:
            self._dirty, self._dirty_since = True, time.monotonic()

    # -- the thread -----------------------------------------------------------------
    def start(self) -> threading.Thread:
        self.thread = threading.Thread(target=self.work, name="certdrop-worker")
        self.thread.start()
        return self.thread

    def stop(self) -> None:
        """Finish the job under way, answer the queued ones, end the thread."""
        self.stopping.set()
        self.queue.put(None)
        if self.thread is not None:
            self.thread.join()

    def work(self) -> None:
        while True:
            job = self.queue.get()
            if job is None:
                break
            if self.stopping.is_set():
                # Finish only the job under way: queued drops stay in the inbox for the
                # next start, queued commands are told why they did not run.
                job.error = "certdrop is stopping; run the command again after it restarts"
                job.done.set()
                continue
            try:
                self.busy = (job.name, time.monotonic())
                job.result = job.run()
            except CertdropError as exc:
                job.error = str(exc)
            except Exception as exc:  # noqa: BLE001 - the daemon must outlive any one job
                job.error = f"internal error in {job.name}: {type(exc).__name__}"
                self.ctx.log.error(
                    "daemon.job_failed",
                    job=job.name,
                    error=type(exc).__name__,
                    detail=str(exc)[:200],
                )
            finally:
                self.busy = None
                job.done.set()
            if self._dirty and (
                self.queue.empty() or time.monotonic() - self._dirty_since > SNAPSHOT_MAX_DELAY
            ):
                self.write_snapshot()
        if self._dirty:
            self.write_snapshot()

    def _drop(self, name: str) -> None:
        with self._pending_lock:
            self._pending.discard(name)
        outcome = self.ctx.intake.process(name)
        if outcome is not None:
            self.changed()
            for feature in self.features:
                feature.after_drop(outcome)

    def write_snapshot(self) -> None:
        self._dirty = False
        write_status_json(self.ctx.config, self.ctx.inventory)
        for feature in self.features:
            feature.after_snapshot()  # in the worker: e.g. metrics refresh what they serve
