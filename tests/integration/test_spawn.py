"""Operator commands start with a clean signal mask even though the daemon blocks signals."""

from __future__ import annotations

import contextlib
import os
import signal
import threading
import time
from pathlib import Path

from certdrop.services.reload import run_reload


def _blocked_mask(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("SigBlk:"):
            return int(line.split()[1], 16)
    raise AssertionError("no SigBlk line")


def test_a_daemon_started_by_a_reload_still_obeys_sigterm(tmp_path: Path):
    """A process left behind by a reload command has nothing blocked, so SIGTERM ends it."""
    pidfile = tmp_path / "pid"
    result: list[object] = []

    def reload_like_the_daemon() -> None:
        # The daemon's threads inherit SIGTERM/SIGINT/SIGHUP blocked from its main thread.
        signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGTERM, signal.SIGINT, signal.SIGHUP})
        result.append(run_reload(["sh", "-c", f"sleep 60 & echo $! > {pidfile}"], timeout=10))

    worker = threading.Thread(target=reload_like_the_daemon)
    worker.start()
    worker.join()
    pid = int(pidfile.read_text())
    try:
        assert result and result[0].ok  # type: ignore[attr-defined]
        assert _blocked_mask(pid) == 0
        os.kill(pid, signal.SIGTERM)
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline:
            state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] if Path(f"/proc/{pid}").exists() else "gone"
            if state in ("Z", "X", "gone"):
                break
            time.sleep(0.02)
        else:
            raise AssertionError("the left-behind process ignored SIGTERM")
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)


def test_a_reload_that_hangs_is_killed_at_its_timeout():
    """A reload running past its timeout is killed with its process group and reported."""
    started = time.monotonic()
    result = run_reload(["sleep", "30"], timeout=0.3)
    assert not result.ok and "did not finish within 0.3 s" in result.summary
    assert time.monotonic() - started < 5
