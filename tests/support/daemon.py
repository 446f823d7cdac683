"""`certdrop run` as a real subprocess on a temp inbox and state, and drop helpers."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent.parent


class RunningDaemon:
    """`certdrop run` as a real subprocess on a temp inbox and state."""

    def __init__(self, root: Path, config: str = "", env: dict[str, str] | None = None) -> None:
        self.root = root
        self.inbox = root / "inbox"
        self.state = root / "state"
        self.config_path = root / "certdrop.toml"
        if not self.config_path.exists() or config:
            self.config_path.write_text(f'inbox = "inbox"\nstate = "state"\n{config}')
        self.env = {**os.environ, **(env or {})}
        self.proc: subprocess.Popen[bytes] | None = None
        self._seen = 0
        # Runs in the child before exec (e.g. resource limits: tests/support/faults.py).
        self.preexec: Callable[[], None] | None = None
        # What runs `certdrop`: a test may put a script in front (fault injection).
        self.program = [sys.executable, "-m", "certdrop"]

    @property
    def log_path(self) -> Path:
        return self.state / "status.log"

    def start(self, timeout: float = 15) -> RunningDaemon:
        self._seen = len(self.events())
        self.stderr = open(self.root / "daemon.stderr", "ab")  # noqa: SIM115
        self.proc = subprocess.Popen(
            [*self.program, "--config", str(self.config_path), "run"],
            cwd=self.root,
            env=self.env,
            stdout=self.stderr,
            stderr=self.stderr,
            preexec_fn=self.preexec,  # only setrlimit; pytest runs no other thread then
        )
        self.wait_for("daemon.started", timeout=timeout, pid=self.proc.pid)
        return self

    def events(self) -> list[dict[str, Any]]:
        try:
            lines = self.log_path.read_text().splitlines()
        except FileNotFoundError:
            return []
        return [json.loads(line) for line in lines if line.strip()]

    def wait_for(
        self, event: str, timeout: float = 15, since_start: bool = True, **match: Any
    ) -> dict[str, Any]:
        """The first event named ``event`` with fields ``match`` (polls the log file)."""
        deadline = time.monotonic() + timeout
        while True:
            events = self.events()[self._seen if since_start else 0 :]
            for e in events:
                if e.get("event") == event and all(e.get(k) == v for k, v in match.items()):
                    return e
            if self.proc is not None and self.proc.poll() is not None:
                raise AssertionError(f"daemon exited ({self.proc.returncode}) before {event}")
            if time.monotonic() > deadline:
                names = [e.get("event") for e in events][-20:]
                raise AssertionError(f"no {event} {match} within {timeout}s; saw {names}")
            time.sleep(0.02)

    def results(self) -> dict[str, str]:
        """file -> drop result for every drop.* event so far."""
        return {
            e["file"]: e["event"].split(".", 1)[1]
            for e in self.events()
            if e["event"].startswith("drop.")
        }

    def cli(self, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        done = subprocess.run(
            [sys.executable, "-m", "certdrop", "--config", str(self.config_path), *args],
            cwd=self.root,
            env=self.env,
            capture_output=True,
            text=True,
            timeout=120,
        )
        if check and done.returncode != 0:
            raise AssertionError(f"certdrop {args} exited {done.returncode}: {done.stderr}")
        return done

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 15) -> int:
        if self.proc is None:
            return 0
        proc, self.proc = self.proc, None
        if proc.poll() is None:
            proc.send_signal(sig)
            try:
                proc.wait(timeout)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(5)
                raise AssertionError("daemon did not stop on SIGTERM") from None
        self.stderr.close()
        return proc.returncode

    def kill(self) -> None:
        if self.proc is not None:
            self.proc.kill()
            self.proc.wait(5)
            self.proc = None
            self.stderr.close()


def drop(inbox: Path, name: str, data: bytes) -> Path:
    """Write a drop the way cp does: create, write, close (one close event)."""
    path = inbox / name
    path.write_bytes(data)
    return path


def in_ci() -> bool:
    return os.environ.get("CI") == "true"


def signal_name(sig: int) -> str:
    return signal.Signals(sig).name
