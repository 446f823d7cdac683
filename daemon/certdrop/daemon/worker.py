"""The one worker: a queue of jobs drained by one thread, the only writer of the state.

watchdog, APScheduler, the control socket and renewal commands only enqueue. After each
drop the features' ``after_drop`` hooks run, in the order of the feature list; when the
queue goes idle (or a burst has deferred it ``SNAPSHOT_MAX_DELAY``), status.json is
rewritten and the ``after_snapshot`` hooks run.

No job ends the thread. A storage fault puts the daemon in degraded mode
(:mod:`certdrop.daemon.degraded`): the drop stays claimed and a retry job comes back for
it. Any other exception is logged as ``daemon.job_failed`` (naming the drop file), and a
drop always gets a final result (the pipeline rejects it ``processing_failed``).
"""

from __future__ import annotations

import os
import queue
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from certdrop.daemon.degraded import Degraded
from certdrop.daemon.state import Context, write_status_json
from certdrop.errors import CertdropError
from certdrop.faults import StorageFault, storage_fault

if TYPE_CHECKING:
    from certdrop.daemon.features import Feature
    from certdrop.intake.work import Outcome

SNAPSHOT_MAX_DELAY = 2.0  # seconds a burst may defer the status.json rewrite
# A file the start-up scan finds may still be written (no daemon saw it open): it waits
# until it has been unchanged this long, or until its close event comes first.
SETTLE_SECONDS = 2.0


@dataclass
class Job:
    name: str
    run: Callable[[], object]
    file: str = ""  # the drop a drop job is for
    done: threading.Event = field(default_factory=threading.Event)
    result: object = None
    error: str | None = None


class Worker:
    """The queue and the thread that drains it. ``features`` are set before ``start``."""

    def __init__(self, ctx: Context) -> None:
        self.ctx = ctx
        ctx.intake.later = self.resume_drop
        self.features: Sequence[Feature] = ()
        self.queue: queue.Queue[Job | None] = queue.Queue()
        self.stopping = threading.Event()
        self.busy: tuple[str, float] | None = None  # the job under way and its start
        self.thread: threading.Thread | None = None
        self._pending: set[str] = set()
        self._pending_lock = threading.Lock()
        self._dirty = False
        self._dirty_since = 0.0
        self.degraded = Degraded(ctx.log, lambda: self.submit("retry", self.retry))
        self._settle: threading.Timer | None = None
        self._settling: list[str] = []  # the names the settle timer will look at again
        self._settle_lock = threading.Lock()

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
        self.queue.put(Job("drop", lambda: self._drop(name), file=name))

    def submit_backlog(self, names: Sequence[str]) -> None:
        """Submit drops the start-up scan found, each once it has settled (SETTLE_SECONDS).

        One timer for the whole backlog (it was one thread a file: 551 seen), fired when
        the youngest file is old enough; a file's close event may submit it earlier.
        """
        now = time.time()
        waiting: list[str] = []
        wait = 0.0
        for name in names:
            try:
                age = now - os.lstat(self.ctx.config.inbox / name).st_ctime
            except FileNotFoundError:
                continue  # claimed already, or gone
            if age >= SETTLE_SECONDS:
                self.submit_drop(name)
            else:
                waiting.append(name)
                # At most SETTLE_SECONDS, whatever the wall clock did meanwhile.
                wait = max(wait, min(SETTLE_SECONDS - age, SETTLE_SECONDS))
        if not waiting:
            return
        with self._settle_lock:
            if self.stopping.is_set():
                return
            if self._settle is not None:
                self._settle.cancel()
            self._settling = [*self._settling, *waiting]
            timer = threading.Timer(wait, self._settled)
            timer.name = "certdrop-settle"
            timer.daemon = True
            self._settle = timer
            timer.start()

    def _settled(self) -> None:
        with self._settle_lock:
            names, self._settling, self._settle = self._settling, [], None
        self.submit_backlog(names)

    def submit_found(self, name: str) -> None:
        self.submit_backlog([name])

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
        with self._settle_lock:
            settle, self._settle = self._settle, None
        if settle is not None:
            settle.cancel()
        self.degraded.stop()
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
            except Exception as exc:  # noqa: BLE001 - the daemon must outlive any one job
                job.error = self._failed(job, exc)
            finally:
                self.busy = None
                job.done.set()
            if self._dirty and (
                self.queue.empty() or time.monotonic() - self._dirty_since > SNAPSHOT_MAX_DELAY
            ):
                self._snapshot_or_degrade()
        if self._dirty:
            self._snapshot_or_degrade()

    def _failed(self, job: Job, exc: Exception) -> str:
        """What a job's caller is told; a storage fault degrades, a bug is logged."""
        state = self.ctx.config.state
        fault = storage_fault(exc, str(state), str(state / "inventory.sqlite3"))
        if fault is not None:
            self.degraded.report(fault)
            return (
                f"certdrop cannot write its files now ({fault}); it retries by itself, "
                "run the command again once space is free or the file system is writable"
            )
        if isinstance(exc, CertdropError):
            return str(exc)
        self.ctx.log.error(
            "daemon.job_failed",
            job=job.name,
            **({"file": job.file} if job.file else {}),
            error=type(exc).__name__,
            detail=str(exc)[:200],
        )
        return f"internal error in {job.name}: {type(exc).__name__}"

    def _snapshot_or_degrade(self) -> None:
        try:
            self.write_snapshot()
        except Exception as exc:  # noqa: BLE001 - status.json waits for the retry then
            self._dirty = True
            self._failed(Job("snapshot", lambda: None), exc)

    def retry(self) -> None:
        """After a storage fault: finish every claimed drop, submit those still in the
        inbox, rewrite status.json, flush the log. Raises (and re-arms) while it fails."""
        if self.ctx.intake.recover():
            self.changed()
        for name in self.ctx.intake.pending():
            self.submit_drop(name)
        if self._dirty:
            self.write_snapshot()
        sink = self.ctx.sink
        if sink is not None and not sink.flush():
            fault = storage_fault(sink.fault or OSError(), str(sink.path))
            raise fault or StorageFault(str(sink.path), 5)
        self.degraded.cleared()

    def _drop(self, name: str) -> None:
        with self._pending_lock:
            self._pending.discard(name)
        self._after_drop(self.ctx.intake.process(name))

    def resume_drop(self, file: str, step: Callable[[], Outcome | None]) -> None:
        """Any thread: continue a drop on the worker (its opening in the child is done)."""
        self.queue.put(Job("drop", lambda: self._after_drop(step()), file=file))

    def _after_drop(self, outcome: Outcome | None) -> None:
        if outcome is not None:
            self.announce(outcome)

    def announce(self, outcome: Outcome) -> None:
        """Tell every feature what became of a drop (or of a certificate from the fleet)."""
        self.changed()
        for feature in self.features:
            feature.after_drop(outcome)

    def write_snapshot(self) -> None:
        self._dirty = False
        try:
            write_status_json(self.ctx.config, self.ctx.inventory)
        except BaseException:
            self._dirty = True  # written again at the next idle moment or retry
            raise
        for feature in self.features:
            feature.after_snapshot()  # in the worker: e.g. metrics refresh what they serve
