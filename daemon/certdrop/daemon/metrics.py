"""A Prometheus endpoint: ``[metrics] listen = "127.0.0.1:9810"`` (loopback only; off when
empty). ``GET /metrics`` answers in the text exposition format, written by hand.

The worker renders the page whenever it rewrites status.json (and once after start-up),
from that same snapshot plus the drop counts, and hands the bytes over; the HTTP thread
only serves the last bytes it was given. It never touches the inventory, so a scrape can
neither block the worker nor see a half-made change.

Names follow what x509-certificate-exporter and cert-manager users alert on::

    certdrop_certificate_expiration_timestamp_seconds{name,subject,issuer,status}
    certdrop_certificate_not_before_timestamp_seconds{name,subject,issuer,status}
    certdrop_drops_total{result}                 accepted | held | rejected, ever
    certdrop_service_state{service,state}        1 for the current state, 0 for the others
    certdrop_held_pieces                         pieces waiting for their partner
    certdrop_snapshot_timestamp_seconds          when these numbers were taken
"""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Mapping
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from certdrop.intake.work import Outcome
from certdrop.store import snapshot
from certdrop.store.context import Context

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
RESULTS = ("accepted", "held", "rejected")
SERVICE_STATES = ("ok", "pending", "failed")
CERT_LABELS = ("name", "subject", "issuer", "status")


def label(value: object) -> str:
    """A label value escaped as the exposition format wants (backslash, quote, newline)."""
    text = "" if value is None else str(value)
    return text.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


def _labels(pairs: Mapping[str, object]) -> str:
    return "{" + ",".join(f'{k}="{label(v)}"' for k, v in pairs.items()) + "}"


def _epoch(iso: str | None) -> float | None:
    if not iso:
        return None
    try:
        moment = datetime.strptime(iso, "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=UTC)
    except ValueError:
        return None
    return moment.timestamp()


def render(snapshot: Mapping[str, Any], drops: Mapping[str, int], now: float) -> bytes:
    """The exposition text for a status snapshot and drop counts. Pure."""
    out: list[str] = []

    def family(name: str, kind: str, help_text: str, samples: list[tuple[str, float]]) -> None:
        out.append(f"# HELP {name} {help_text}")
        out.append(f"# TYPE {name} {kind}")
        out.extend(f"{name}{labels} {value:.17g}" for labels, value in samples)

    certs = [c for c in snapshot.get("certificates", []) if c.get("not_after")]
    for metric, field, text in (
        ("expiration", "not_after", "Unix time a certificate in the inventory expires (notAfter)."),
        ("not_before", "not_before", "Unix time a certificate in the inventory becomes valid."),
    ):
        samples = []
        for cert in certs:
            value = _epoch(cert.get(field))
            if value is not None:
                samples.append((_labels({k: cert.get(k) for k in CERT_LABELS}), value))
        family(f"certdrop_certificate_{metric}_timestamp_seconds", "gauge", text, samples)
    family(
        "certdrop_drops_total",
        "counter",
        "Drops that ended in each result since the state folder was made.",
        [(_labels({"result": r}), float(drops.get(r, 0))) for r in RESULTS],
    )
    family(
        "certdrop_service_state",
        "gauge",
        "1 for the state each configured service is in (ok, pending, failed), else 0.",
        [
            (_labels({"service": s["name"], "state": state}), float(s.get("state") == state))
            for s in snapshot.get("services", [])
            for state in SERVICE_STATES
        ],
    )
    family(
        "certdrop_held_pieces",
        "gauge",
        "Certificates and keys held while they wait for their partner.",
        [("", float(len(snapshot.get("held", []))))],
    )
    family(
        "certdrop_snapshot_timestamp_seconds",
        "gauge",
        "Unix time these numbers were taken from the inventory.",
        [("", now)],
    )
    return ("\n".join(out) + "\n").encode()


class Metrics:
    """The last rendered page, handed from the worker to the HTTP thread."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._page: bytes | None = None

    def publish(self, snapshot: Mapping[str, Any], drops: Mapping[str, int]) -> None:
        page = render(snapshot, drops, time.time())
        with self._lock:
            self._page = page

    def page(self) -> bytes | None:
        with self._lock:
            return self._page


class _Handler(BaseHTTPRequestHandler):
    server: _Server

    def do_GET(self) -> None:
        if self.path.split("?", 1)[0] != "/metrics":
            self._reply(404, b"certdrop serves /metrics only\n")
            return
        page = self.server.metrics.page()
        if page is None:
            self._reply(503, b"certdrop is starting; no snapshot yet\n")
        else:
            self._reply(200, page, CONTENT_TYPE)

    def _reply(self, code: int, body: bytes, kind: str = "text/plain; charset=utf-8") -> None:
        self.send_response(code)
        self.send_header("Content-Type", kind)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: Any) -> None:
        """No access log: scrapes every 15 s would drown the journal."""


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    metrics: Metrics


class _Server6(_Server):
    address_family = socket.AF_INET6


def _address(listen: str) -> tuple[socket.AddressFamily, str, int]:
    host, _, port = listen.rpartition(":")
    if host.startswith("["):
        return socket.AF_INET6, host.strip("[]"), int(port)
    return socket.AF_INET, "127.0.0.1" if host == "localhost" else host, int(port)


class Endpoint:
    """The HTTP server on ``listen`` in its own thread; ``stop`` ends both."""

    def __init__(self, listen: str, metrics: Metrics) -> None:
        family, host, port = _address(listen)
        server_class = _Server6 if family == socket.AF_INET6 else _Server
        self.server: _Server = server_class((host, port), _Handler)
        self.server.metrics = metrics
        self.listen = listen
        self.thread = threading.Thread(
            target=self.server.serve_forever, name="certdrop-metrics", daemon=True
        )
        self.thread.start()

    @property
    def port(self) -> int:
        return int(self.server.server_address[1])

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()
        self.thread.join(5)


class MetricsEndpoint:
    """The daemon feature: serve metrics when ``metrics.listen`` is set, and follow it
    across config reloads. Pages are rendered on the worker, served by the HTTP thread."""

    def __init__(self, ctx: Context) -> None:
        self.ctx = ctx
        self.metrics = Metrics()
        self.running: list[Endpoint] = []

    def _start(self, listen: str) -> None:
        if not listen:
            return
        try:
            self.running.append(Endpoint(listen, self.metrics))
        except OSError as exc:
            # Certificates matter more than their metrics: keep running, say why loudly.
            self.ctx.log.error(
                "metrics.failed",
                listen=listen,
                reason=f"cannot listen on {listen}: {exc.strerror or exc}",
                detail="fix metrics.listen (a free loopback port) and reload",
            )
            return
        self.ctx.log.info("metrics.started", listen=listen, url=f"http://{listen}/metrics")

    def _publish(self) -> None:
        if self.running:  # the whole snapshot costs memory: build it only to serve it
            ctx = self.ctx
            self.metrics.publish(
                snapshot.snapshot(ctx.config, ctx.inventory), ctx.inventory.drop_counts()
            )

    # -- feature hooks ------------------------------------------------------------------
    def on_start(self) -> None:
        self._start(self.ctx.config.metrics_listen)

    def on_stop(self) -> None:
        while self.running:
            self.running.pop().stop()

    def after_recover(self) -> None:
        self._publish()  # in the worker: the first numbers after start-up

    def after_drop(self, outcome: Outcome) -> None:
        pass

    def after_snapshot(self) -> None:
        self._publish()  # in the worker, right after status.json

    def after_reload(self) -> None:
        current = self.running[0].listen if self.running else ""
        if self.ctx.config.metrics_listen != current:
            self.on_stop()
            self._start(self.ctx.config.metrics_listen)
        self._publish()
