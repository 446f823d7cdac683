"""Shared bench helpers: a daemon subprocess, a status-log tail, process figures."""

from __future__ import annotations

import json
import os
import signal
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))


class Daemon:
    def __init__(self, folder: Path, config: str = "") -> None:
        self.folder = folder
        self.inbox = folder / "inbox"
        self.state = folder / "state"
        self.config = folder / "certdrop.toml"
        self.config.write_text(f'inbox = "inbox"\nstate = "state"\n{config}')
        self.inbox.mkdir(parents=True, exist_ok=True)
        self.proc: subprocess.Popen[bytes] | None = None
        self.log_pos = 0
        self.backlog: list[dict[str, Any]] = []

    def start(self) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "certdrop", "--config", str(self.config), "run"],
            cwd=self.folder, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )
        self.wait_for(lambda e: e["event"] == "daemon.started", timeout=30)

    def stop(self) -> None:
        if self.proc is not None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(60)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
            self.proc = None

    def new_events(self) -> list[dict[str, Any]]:
        path = self.state / "status.log"
        try:
            with open(path, "rb") as f:
                f.seek(self.log_pos)
                data = f.read()
        except FileNotFoundError:
            return []
        end = data.rfind(b"\n") + 1
        self.log_pos += end
        return [json.loads(line) for line in data[:end].splitlines() if line]

    def wait_for(self, predicate, timeout: float = 60.0) -> dict[str, Any]:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            self.backlog.extend(self.new_events())
            while self.backlog:
                event = self.backlog.pop(0)
                if predicate(event):
                    return event
            time.sleep(0.0005)
        raise TimeoutError("event not seen")

    def cpu_seconds(self) -> float:
        assert self.proc is not None
        fields = Path(f"/proc/{self.proc.pid}/stat").read_text().rsplit(")", 1)[1].split()
        ticks = os.sysconf("SC_CLK_TCK")
        return (int(fields[11]) + int(fields[12])) / ticks

    def rss_mib(self) -> float:
        assert self.proc is not None
        for line in Path(f"/proc/{self.proc.pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
        return float("nan")


def percentile(values: list[float], p: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(p / 100 * (len(ordered) - 1)))]


def mean(values: list[float]) -> float:
    return statistics.fmean(values)
