"""A private nginx instance on 127.0.0.1 (the HTTPS consoles)."""

from __future__ import annotations

import time
from pathlib import Path

from support.process import LOOPBACK, Service, ServiceProcess, need, port_open, run


class Nginx(Service):
    """A private nginx with one HTTPS server per (port, cert_file, key_file)."""

    def __init__(
        self, workdir: Path, servers: list[tuple[int, Path, Path]], *, worker_processes: int = 2
    ) -> None:
        self.workdir = workdir
        self.servers = list(servers)
        self.worker_processes = worker_processes
        self.conf = workdir / "nginx.conf"
        self.error_log = workdir / "error.log"
        self.pid_file = workdir / "nginx.pid"
        self.process: ServiceProcess | None = None
        self.startup_seconds = 0.0

    @property
    def urls(self) -> list[str]:
        """The probe URL of each server, in the order given."""
        return [f"https://{LOOPBACK}:{port}" for port, _, _ in self.servers]

    @property
    def pid(self) -> int:
        """The master's PID (nginx runs with ``daemon off``, so it is our child)."""
        assert self.process is not None, "nginx is not running"
        return self.process.pid

    def _argv(self, *extra: str) -> list[str]:
        paths = ["-c", str(self.conf), "-p", str(self.workdir), "-e", str(self.error_log)]
        return [need("nginx"), *extra, *paths]

    def reload_argv(self) -> list[str]:
        """The argv that reloads this instance (checks the config first; rc 1 if bad)."""
        return self._argv("-s", "reload")

    def reload(self) -> None:
        """Reload; raise RuntimeError (with nginx's message) if nginx refused."""
        run(self.reload_argv())

    def config_text(self) -> str:
        tmp = self.workdir / "tmp"
        servers = "".join(
            f"""
    server {{
        listen {LOOPBACK}:{port} ssl;
        ssl_certificate {cert};
        ssl_certificate_key {key};
        location / {{ return 200 "ok\\n"; }}
    }}"""
            for port, cert, key in self.servers
        )
        return f"""# certdrop test instance
daemon off;
master_process on;
worker_processes {self.worker_processes};
pid {self.pid_file};
error_log {self.error_log} notice;
events {{ worker_connections 128; }}
http {{
    access_log off;
    client_body_temp_path {tmp}/client_body;
    proxy_temp_path {tmp}/proxy;
    fastcgi_temp_path {tmp}/fastcgi;
    uwsgi_temp_path {tmp}/uwsgi;
    scgi_temp_path {tmp}/scgi;{servers}
}}
"""

    def _start(self) -> None:
        (self.workdir / "tmp").mkdir(parents=True, exist_ok=True)
        self.conf.write_text(self.config_text())
        run(self._argv("-t", "-q"))
        started = time.monotonic()
        self.process = ServiceProcess("nginx", self._argv(), self.workdir / "nginx.out")
        self.process.wait_until(
            lambda: all(port_open(p) for p, _, _ in self.servers), "all its ports open"
        )
        self.startup_seconds = time.monotonic() - started

    def stop(self) -> None:
        if self.process is not None:
            self.process.stop()  # SIGTERM: fast shutdown, the master stops its workers


# --------------------------------------------------------------------------- postfix
