"""Degraded mode's bookkeeping: one event an episode, one retry armed at a time, a
growing delay, and recovery resetting all of it."""

from __future__ import annotations

import errno
import threading

import structlog
from structlog.testing import capture_logs

from certdrop.daemon import degraded as module
from certdrop.daemon.degraded import Degraded
from certdrop.faults import StorageFault

FULL = StorageFault("/state/inventory.sqlite3", errno.ENOSPC, "database or disk is full")


def make(fired: threading.Event) -> Degraded:
    return Degraded(structlog.get_logger(), fired.set)


def test_many_faults_log_one_degraded_and_arm_one_retry() -> None:
    """Five faults in a row: one daemon.degraded, one retry fired."""
    fired = threading.Event()
    state = make(fired)
    state._delay = 0.05  # the first retry comes soon
    with capture_logs() as logs:
        for _ in range(5):
            state.report(FULL)
    assert fired.wait(2)
    state.stop()
    assert [e["event"] for e in logs] == ["daemon.degraded"]
    assert logs[0]["errno"] == "ENOSPC" and logs[0]["path"] == FULL.path
    assert state.faults == 5


def test_recovery_logs_once_and_resets_the_delay() -> None:
    """cleared() after faults says daemon.recovered once; a second call says nothing."""
    fired = threading.Event()
    state = make(fired)
    with capture_logs() as logs:
        state.report(FULL)
        state.cleared()
        state.cleared()
    state.stop()
    assert [e["event"] for e in logs] == ["daemon.degraded", "daemon.recovered"]
    assert logs[1]["faults"] == 1 and not state.active
    assert state._delay == module.FIRST_BACKOFF


def test_the_delay_doubles_up_to_its_cap() -> None:
    """Each retry that fails again waits twice as long, at most MAX_BACKOFF."""
    state = make(threading.Event())
    delays = []
    for _ in range(8):
        delays.append(state._delay)
        state._armed = False  # as after each retry fired
        with capture_logs():
            state.report(FULL)
        assert state._timer is not None
        state._timer.cancel()
    state.stop()
    assert delays[:4] == [1.0, 2.0, 4.0, 8.0] and max(delays) == module.MAX_BACKOFF


def test_stopped_arms_nothing() -> None:
    """After stop no timer thread is left or started."""
    fired = threading.Event()
    state = make(fired)
    state.stop()
    with capture_logs():
        state.report(FULL)
    assert state._timer is None and not fired.is_set()
