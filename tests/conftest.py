"""Shared fixtures: a real `certdrop run` subprocess, and a guard against leaked threads."""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from support.daemon import RunningDaemon


@pytest.fixture(autouse=True)
def no_thread_leaks() -> Iterator[None]:
    """Fail a test that leaves threads running (as watchdog's own suite does)."""
    before = set(threading.enumerate())
    yield
    deadline = time.monotonic() + 2
    while time.monotonic() < deadline:
        leaked = [t for t in threading.enumerate() if t not in before and t.is_alive()]
        if not leaked:
            return
        time.sleep(0.02)
    pytest.fail(f"threads leaked: {[t.name for t in leaked]}")


@pytest.fixture
def daemon_factory(tmp_path: Path) -> Iterator[Callable[..., RunningDaemon]]:
    """Start daemons on demand; every one is stopped by PID, even when the test fails."""
    started: list[RunningDaemon] = []

    def make(config: str = "", root: Path | None = None, **kw: Any) -> RunningDaemon:
        d = RunningDaemon(root or tmp_path, config, **kw)
        started.append(d)
        return d

    yield make
    for d in started:
        if d.proc is not None:
            d.kill()


@pytest.fixture
def daemon(daemon_factory: Callable[..., RunningDaemon]) -> RunningDaemon:
    """A running daemon with the default settings."""
    return daemon_factory().start()


@pytest.fixture(autouse=True)
def _no_umask_leak() -> Iterator[None]:
    old = os.umask(0o022)
    os.umask(old)
    yield
    os.umask(old)
