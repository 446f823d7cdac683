"""Degraded mode: the state folder or the inbox refuses writes, and the daemon waits it out.

A storage fault (:mod:`certdrop.faults`) in any job leaves its drop claimed and
unacknowledged, logs ``daemon.degraded`` once (to stderr too when the status log is what
fails) and arms one retry timer with a growing delay (1 s, 2 s, 4 s ... at most
``MAX_BACKOFF``). The retry is a worker job that finishes every claimed drop, submits
the ones still in the inbox, rewrites status.json and flushes the log; when all of that
works, ``daemon.recovered`` says so, with how long it took. No restart is needed.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable

from certdrop.faults import StorageFault
from certdrop.store.eventlog import Logger

FIRST_BACKOFF = 1.0
MAX_BACKOFF = 30.0


class Degraded:
    """The fault state of one daemon run. ``report`` and ``cleared`` run on the worker;
    the timer thread only enqueues ``retry`` (through ``submit``)."""

    def __init__(self, log: Logger, submit: Callable[[], object]) -> None:
        self.log = log
        self.submit = submit
        self.fault: StorageFault | None = None
        self.since = 0.0  # monotonic
        self.faults = 0  # faults seen in this episode
        self._delay = FIRST_BACKOFF
        self._timer: threading.Timer | None = None
        self._lock = threading.Lock()
        self._armed = False
        self._stopped = False

    @property
    def active(self) -> bool:
        return self.fault is not None

    def report(self, fault: StorageFault) -> None:
        """A job hit ``fault``: say so once per episode, and make sure a retry comes."""
        self.faults += 1
        if self.fault is None:
            self.fault, self.since = fault, time.monotonic()
            self.log.error(
                "daemon.degraded",
                path=fault.path,
                errno=fault.name,
                detail=f"{fault}; drops stay claimed and are finished when it clears",
            )
        self._arm()

    def cleared(self) -> None:
        """A retry did everything it had to: the episode ends."""
        if self.fault is None:
            return
        fault, self.fault = self.fault, None
        self.log.info(
            "daemon.recovered",
            path=fault.path,
            errno=fault.name,
            seconds=round(time.monotonic() - self.since, 1),
            faults=self.faults,
        )
        self.faults = 0
        self._delay = FIRST_BACKOFF

    def _arm(self) -> None:
        with self._lock:
            if self._stopped or self._armed:
                return
            self._armed = True
            delay, self._delay = self._delay, min(self._delay * 2, MAX_BACKOFF)
            self._timer = threading.Timer(delay, self._fire)
            self._timer.name = "certdrop-retry"
            self._timer.daemon = True
            self._timer.start()

    def _fire(self) -> None:
        with self._lock:
            self._armed = False  # before the retry runs: a fault in it arms the next one
            if self._stopped:
                return
        self.submit()

    def stop(self) -> None:
        with self._lock:
            self._stopped = True
            timer = self._timer
        if timer is not None:
            timer.cancel()
            timer.join()
