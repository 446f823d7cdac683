"""A private Prometheus server on 127.0.0.1 (Debian's ``prometheus``) and ``promtool``."""

from __future__ import annotations

import json
import subprocess
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from support.process import LOOPBACK, Service, ServiceProcess, free_port, need


class Prometheus(Service):
    """A Prometheus that scrapes ``targets`` (job ``certdrop``) every second, with its
    own TSDB in ``workdir``; stopped by PID (SIGTERM, then SIGKILL) when the test ends."""

    def __init__(
        self, workdir: Path, targets: Sequence[str], rule_files: Sequence[Path] = ()
    ) -> None:
        self.workdir = workdir
        self.targets = list(targets)
        self.rule_files = list(rule_files)
        self.port = free_port()
        self.config = workdir / "prometheus.yml"
        self.process: ServiceProcess | None = None

    @property
    def url(self) -> str:
        return f"http://{LOOPBACK}:{self.port}"

    def config_text(self) -> str:
        # JSON is YAML: no YAML library needed to write it.
        return json.dumps(
            {
                "global": {"scrape_interval": "1s", "evaluation_interval": "1s"},
                "rule_files": [str(p) for p in self.rule_files],
                "scrape_configs": [
                    {
                        "job_name": "certdrop",
                        "scrape_timeout": "1s",
                        "static_configs": [{"targets": self.targets}],
                    }
                ],
            },
            indent=1,
        )

    def _start(self) -> None:
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.config.write_text(self.config_text())
        argv = [
            need("prometheus"),
            f"--config.file={self.config}",
            f"--storage.tsdb.path={self.workdir / 'data'}",
            f"--web.listen-address={LOOPBACK}:{self.port}",
        ]
        self.process = ServiceProcess("prometheus", argv, self.workdir / "prometheus.log")
        self.process.wait_until(self._ready, "/-/ready", timeout=30)

    def _ready(self) -> bool:
        try:
            with urllib.request.urlopen(f"{self.url}/-/ready", timeout=1) as resp:
                return bool(resp.status == 200)
        except (OSError, urllib.error.URLError):
            return False

    def stop(self) -> None:
        if self.process is not None:
            self.process.stop(grace=10)

    def api(self, path: str, **params: str) -> Any:
        """GET ``/api/v1/<path>``; the ``data`` of a successful answer."""
        query = urllib.parse.urlencode(params)
        with urllib.request.urlopen(f"{self.url}/api/v1/{path}?{query}", timeout=10) as resp:
            body = json.loads(resp.read())
        assert body["status"] == "success", body
        return body["data"]

    def query(self, expr: str) -> list[dict[str, Any]]:
        """An instant query's vector: [{"metric": {labels}, "value": [ts, "value"]}]."""
        data = self.api("query", query=expr)
        assert data["resultType"] == "vector", data
        return list(data["result"])

    def wait_for(self, expr: str, timeout: float = 30) -> list[dict[str, Any]]:
        """Poll ``expr`` until it returns something; fail with the targets' state if not."""
        deadline = time.monotonic() + timeout
        while True:
            result = self.query(expr)
            if result:
                return result
            if time.monotonic() > deadline:
                targets = self.api("targets")["activeTargets"]
                raise AssertionError(f"{expr} stayed empty for {timeout} s; targets: {targets}")
            time.sleep(0.25)


def promtool(*args: str | Path, cwd: Path | None = None) -> tuple[int, str]:
    """Run promtool; its exit code and output."""
    done = subprocess.run(
        [need("promtool"), *map(str, args)],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=cwd,
        check=False,
    )
    return done.returncode, done.stdout + done.stderr
