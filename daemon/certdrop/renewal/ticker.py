"""A scheduler that keeps its rhythm when the wall clock steps.

The expiry check runs every ``expiry.check_interval_seconds`` and once more when a renewal
may be retried. Timers kept in wall time (as APScheduler's are) stop when an NTP step
sets the clock back: the next run is then hours or days away. This one waits on the
monotonic clock (``threading.Event.wait`` does), converts a one-off wall-time deadline to
a monotonic delay when it is set, and leaves every decision to the job it calls, which
reads the wall clock afresh each run.

It also notices steps: wall time minus monotonic time is constant while nobody sets the
clock (NTP slewing moves it by well under a millisecond a second), so a change of more
than ``JUMP_SECONDS`` between two wake-ups is a step, reported once through ``on_jump``.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable

JUMP_SECONDS = 2.0
# Wake at least this often to notice a step soon after it happens.
LOOK_SECONDS = 10.0


class Ticker:
    """Calls ``tick()`` every ``interval`` s and at one-off times, from its own thread;
    ``on_jump(delta)`` when the wall clock stepped by ``delta`` seconds."""

    def __init__(
        self,
        interval: float,
        tick: Callable[[], None],
        on_jump: Callable[[float], None],
        *,
        wall: Callable[[], float] = time.time,
        mono: Callable[[], float] = time.monotonic,
    ) -> None:
        self.interval = interval
        self.tick = tick
        self.on_jump = on_jump
        self.wall, self.mono = wall, mono
        self._lock = threading.Lock()
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._next = mono() + interval
        self._once: dict[str, float] = {}  # key -> monotonic due time
        self._offset = wall() - mono()
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name="certdrop-ticker", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._wake.set()
        if self._thread is not None:
            self._thread.join()

    def set_interval(self, seconds: float) -> None:
        with self._lock:
            self.interval = seconds
            self._next = self.mono() + seconds
        self._wake.set()

    def wake_in(self, key: str, seconds: float) -> None:
        """One extra tick ``seconds`` from now (a later call with ``key`` replaces it)."""
        with self._lock:
            self._once[key] = self.mono() + max(seconds, 0.0)
        self._wake.set()

    def _run(self) -> None:
        while not self._stop.is_set():
            with self._lock:
                due = min([self._next, *self._once.values()])
            self._wake.wait(min(max(due - self.mono(), 0.0), LOOK_SECONDS))
            self._wake.clear()
            if self._stop.is_set():
                return
            self._look_for_jump()
            now = self.mono()
            with self._lock:
                fire = now >= self._next
                if fire:
                    self._next = now + self.interval
                ripe = [k for k, at in self._once.items() if at <= now]
                for key in ripe:
                    del self._once[key]
            if fire or ripe:
                self.tick()

    def _look_for_jump(self) -> None:
        offset = self.wall() - self.mono()
        delta = offset - self._offset
        self._offset = offset
        if abs(delta) > JUMP_SECONDS:
            self.on_jump(delta)
