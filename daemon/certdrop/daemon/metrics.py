"""A Prometheus endpoint: ``[metrics] listen = "127.0.0.1:9810"`` (loopback only; off when
empty). ``GET /metrics`` answers through ``prometheus_client``, in the text format or, when
the scraper asks for it (Prometheus does), OpenMetrics.

The worker takes the numbers whenever it rewrites status.json (and once after start-up)
and hands them over as one frozen :class:`Numbers`; the HTTP thread's collector only
reads the last one it was given. It never touches the inventory, so a scrape can neither
block the worker nor see a half-made change. The daemon has registries of its own (no
global ``REGISTRY``): one for that collector, whose encoded page is kept per snapshot
(:class:`Pages`), one for the process and platform collectors, encoded every scrape.

Names follow Prometheus' conventions (base units in the name, ``_total`` for counters,
``_info`` for constant labels) and what x509-certificate-exporter users alert on::

    certdrop_certificate_expiration_timestamp_seconds{name,subject,issuer,status}
    certdrop_certificate_not_before_timestamp_seconds{name,subject,issuer,status}
    certdrop_certificate_renewal_timestamp_seconds{...}          when renewal starts
    certdrop_certificate_renewal_overdue_timestamp_seconds{...}  when it is overdue
    certdrop_certificate_trusted{...}             1: trusted (RFC 5280 path validation)
    certdrop_service_state{service,state}         1 for the current state, 0 for the others
    certdrop_service_ready{service}               1: proven to serve its desired certificate
    certdrop_drops_total{result,code}             accepted | held | rejected (by code), ever
    certdrop_renewal_failures_total{stage}        request | command | deploy, ever
    certdrop_held_pieces                          pieces waiting for their partner
    certdrop_snapshot_timestamp_seconds           when these numbers were taken
    certdrop_build_info{version}
    process_*, python_info
"""

from __future__ import annotations

import gzip
import socket
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from prometheus_client import CollectorRegistry, PlatformCollector, ProcessCollector
from prometheus_client.core import Metric
from prometheus_client.exposition import choose_encoder

from certdrop.daemon.fleet_metrics import fleet_families
from certdrop.daemon.metric_families import Numbers, families, numbers
from certdrop.intake.work import Outcome
from certdrop.renewal.report import policy_of
from certdrop.store import renewals as ledger
from certdrop.store import snapshot
from certdrop.store.context import Context

EOF = b"# EOF\n"  # OpenMetrics ends a page with it: once, after both parts


class SnapshotCollector:
    """A collector over the last :class:`Numbers` the worker handed over."""

    def __init__(self) -> None:
        self.numbers: Numbers | None = None  # replaced whole: no lock needed to read

    def publish(self, n: Numbers) -> None:
        self.numbers = n

    @property
    def ready(self) -> bool:
        return self.numbers is not None

    def collect(self) -> Iterator[Metric]:
        n = self.numbers
        if n is not None:
            yield from families(n)
            yield from n.extra


def registry_for(collector: SnapshotCollector) -> CollectorRegistry:
    """A registry of this daemon's own (no global REGISTRY) for its numbers."""
    registry = CollectorRegistry()
    registry.register(collector)
    return registry


def process_registry() -> CollectorRegistry:
    """A registry of this daemon's own for what changes at every scrape: its process
    (CPU, memory, file descriptors) and its Python."""
    registry = CollectorRegistry()
    ProcessCollector(registry=registry)
    PlatformCollector(registry=registry)
    return registry


class Pages:
    """The bodies a scrape gets. prometheus_client takes ~0.1 ms a certificate to encode
    the snapshot's families, so each format is encoded once per snapshot and kept until
    the worker hands over new numbers; the process and platform families are encoded
    at every scrape and appended."""

    def __init__(self, collector: SnapshotCollector) -> None:
        self.collector = collector
        self.snapshot = registry_for(collector)
        self.process = process_registry()
        self._lock = threading.Lock()
        self._for: Numbers | None = None
        self._cache: dict[str, bytes] = {}

    def render(self, accept: str) -> tuple[bytes, str]:
        """The body and its Content-Type for a scrape sending ``accept``."""
        encoder, content_type = choose_encoder(accept)
        with self._lock:  # one encoding at a time; concurrent scrapes share it
            if self._for is not self.collector.numbers:
                self._for, self._cache = self.collector.numbers, {}
            head = self._cache.get(content_type)
            if head is None:
                head = self._cache[content_type] = encoder(self.snapshot).removesuffix(EOF)
        return head + encoder(self.process), content_type


class _Handler(BaseHTTPRequestHandler):
    server: _Server

    def do_GET(self) -> None:
        if self.path.split("?", 1)[0] != "/metrics":
            self._reply(404, b"certdrop serves /metrics only\n")
            return
        if not self.server.collector.ready:
            self._reply(503, b"certdrop is starting; no snapshot yet\n")
            return
        body, content_type = self.server.pages.render(self.headers.get("Accept", ""))
        gzipped = "gzip" in self.headers.get("Accept-Encoding", "")
        self._reply(200, gzip.compress(body) if gzipped else body, content_type, gzipped)

    def _reply(
        self,
        code: int,
        body: bytes,
        kind: str = "text/plain; charset=utf-8",
        gzipped: bool = False,
    ) -> None:
        self.send_response(code)
        self.send_header("Content-Type", kind)
        if gzipped:
            self.send_header("Content-Encoding", "gzip")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: Any) -> None:
        """No access log: scrapes every 15 s would drown the journal."""


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    collector: SnapshotCollector
    pages: Pages


class _Server6(_Server):
    address_family = socket.AF_INET6


def _address(listen: str) -> tuple[socket.AddressFamily, str, int]:
    host, _, port = listen.rpartition(":")
    if host.startswith("["):
        return socket.AF_INET6, host.strip("[]"), int(port)
    return socket.AF_INET, "127.0.0.1" if host == "localhost" else host, int(port)


class Endpoint:
    """The HTTP server on ``listen`` in its own thread; ``stop`` ends both."""

    def __init__(self, listen: str, pages: Pages) -> None:
        family, host, port = _address(listen)
        server_class = _Server6 if family == socket.AF_INET6 else _Server
        self.server: _Server = server_class((host, port), _Handler)
        self.server.collector = pages.collector
        self.server.pages = pages
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
    across config reloads. Numbers are taken on the worker, served by the HTTP thread."""

    def __init__(self, ctx: Context, fleet: Callable[[], Mapping[str, Any]] | None = None) -> None:
        self.ctx = ctx
        self.fleet = fleet  # fleet mode: the fleet's report, served as its own families
        self.collector = SnapshotCollector()
        self.pages = Pages(self.collector)
        self.running: list[Endpoint] = []

    def _start(self, listen: str) -> None:
        if not listen:
            return
        try:
            self.running.append(Endpoint(listen, self.pages))
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
            self.collector.publish(
                numbers(
                    snapshot.snapshot(ctx.config, ctx.inventory),
                    ctx.inventory.drop_counts_by_code(),
                    ledger.failures(ctx.inventory),
                    policy_of(ctx.config),
                    time.time(),
                    fleet_families(self.fleet()) if self.fleet is not None else (),
                )
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
