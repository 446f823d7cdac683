"""The monotonic ticker: a wall-clock step neither stops nor floods its ticks, and is
reported once."""

from __future__ import annotations

import threading
import time

from certdrop.renewal.ticker import Ticker


class SteppedWall:
    """time.time() plus an offset a test sets (what an NTP step does)."""

    def __init__(self) -> None:
        self.offset = 0.0

    def __call__(self) -> float:
        return time.time() + self.offset


def run_for(ticker: Ticker, seconds: float) -> None:
    ticker.start()
    try:
        time.sleep(seconds)
    finally:
        ticker.stop()


def test_ticks_keep_their_rhythm_across_a_step_back_and_one_jump_is_reported() -> None:
    """Stepping the wall clock back a day leaves the 0.1 s rhythm alone; one jump."""
    wall = SteppedWall()
    ticks: list[float] = []
    jumps: list[float] = []
    ticker = Ticker(0.1, lambda: ticks.append(time.monotonic()), jumps.append, wall=wall)
    ticker.start()
    try:
        time.sleep(0.35)
        wall.offset = -86400.0
        time.sleep(0.6)
    finally:
        ticker.stop()
    after = [t for t in ticks if t > ticks[0] + 0.4]
    assert len(after) >= 3, ticks
    assert len(jumps) == 1 and -86401 < jumps[0] < -86399


def test_a_step_forward_is_reported_once_and_does_not_flood() -> None:
    """A day forward: one jump, and still one tick an interval (no catch-up burst)."""
    wall = SteppedWall()
    ticks: list[float] = []
    jumps: list[float] = []
    ticker = Ticker(0.2, lambda: ticks.append(time.monotonic()), jumps.append, wall=wall)
    ticker.start()
    try:
        time.sleep(0.3)
        wall.offset = 86400.0
        time.sleep(0.7)
    finally:
        ticker.stop()
    assert len(jumps) == 1 and jumps[0] > 86399
    assert len(ticks) <= 6, ticks


def test_one_off_wake_ups_fire_once_after_their_delay() -> None:
    """wake_in runs one extra tick; a second call with the same key replaces it."""
    fired = threading.Event()
    ticks: list[float] = []
    started = time.monotonic()

    def tick() -> None:
        ticks.append(time.monotonic() - started)
        fired.set()

    ticker = Ticker(3600, tick, lambda _: None)
    ticker.start()
    try:
        ticker.wake_in("retry", 5.0)
        ticker.wake_in("retry", 0.2)  # replaces the first
        assert fired.wait(3)
        time.sleep(0.4)
    finally:
        ticker.stop()
    assert len(ticks) == 1 and 0.15 < ticks[0] < 2


def test_small_drifts_are_not_jumps() -> None:
    """Wall and monotonic drifting by a second is slewing, not a step."""
    wall = SteppedWall()
    jumps: list[float] = []
    ticker = Ticker(0.05, lambda: None, jumps.append, wall=wall)
    ticker.start()
    try:
        for _ in range(5):
            wall.offset += 0.2
            time.sleep(0.06)
    finally:
        ticker.stop()
    assert jumps == []
