"""A real NATS JetStream cluster on 127.0.0.1 for the fleet tests (Debian's nats-server).

``NatsCluster(root, size=3)`` writes one config per node (free loopback ports, JetStream
stores under ``root``), starts every node, and waits until each says JetStream is ready on
its monitoring port. Single nodes are stopped, killed and started again by PID, and on
exit every node is stopped, even when the test failed. ``../shared/real-services.md`` has
the facts behind the config.
"""

from __future__ import annotations

import contextlib
import json
import signal
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from support.process import LOOPBACK, Service, ServiceProcess, free_port, need

READY_TIMEOUT = 30.0  # a node that rejoins replays its store; 3 s is usual here


@dataclass(frozen=True)
class NodePorts:
    client: int
    http: int
    cluster: int


class NatsNode:
    """One nats-server of the cluster: its config, store, ports and (when running) process."""

    def __init__(
        self, root: Path, name: str, ports: NodePorts, routes: list[str], extra: str = ""
    ) -> None:
        self.name = name
        self.ports = ports
        self.folder = root / name
        self.folder.mkdir(parents=True, exist_ok=True)
        self.store = self.folder / "js"
        self.config = self.folder / "nats.conf"
        route_list = ", ".join(routes)
        cluster = (  # one node alone runs JetStream unclustered
            f"cluster {{ name: certdrop-test, listen: {LOOPBACK}:{ports.cluster},\n"
            f"          routes: [{route_list}] }}\n"
            if len(routes) > 1
            else ""
        )
        self.config.write_text(
            f"server_name: {name}\n"
            f"listen: {LOOPBACK}:{ports.client}\n"
            f"http: {LOOPBACK}:{ports.http}\n"
            f'jetstream {{ store_dir: "{self.store}" }}\n'
            f"{cluster}{extra}"
        )
        self.process: ServiceProcess | None = None

    @property
    def url(self) -> str:
        return f"nats://{LOOPBACK}:{self.ports.client}"

    def running(self) -> bool:
        return self.process is not None and self.process.running()

    def start(self) -> None:
        binary = need("nats-server")
        self.process = ServiceProcess(
            f"nats-server {self.name}", [binary, "-c", str(self.config)], self.folder / "log"
        )

    def monitor(self, path: str) -> Any:
        """GET a monitoring endpoint and decode its JSON (None when it does not answer)."""
        url = f"http://{LOOPBACK}:{self.ports.http}{path}"
        try:
            with urllib.request.urlopen(url, timeout=2) as reply:
                return json.loads(reply.read())
        except urllib.error.HTTPError as exc:
            return json.loads(exc.read() or b"{}")
        except (OSError, ValueError):
            return None

    def healthy(self, js_only: bool = True) -> bool:
        query = "?js-enabled-only=true" if js_only else ""
        reply = self.monitor(f"/healthz{query}")
        return isinstance(reply, dict) and reply.get("status") == "ok"

    def wait_healthy(self, timeout: float = READY_TIMEOUT, js_only: bool = True) -> float:
        assert self.process is not None, f"{self.name} was not started"
        return self.process.wait_until(
            lambda: self.healthy(js_only), "JetStream ready (/healthz)", timeout
        )

    def stop(self, sig: int = signal.SIGTERM) -> None:
        """Stop the node (SIGTERM, SIGKILL after a grace); its store stays for a restart."""
        if self.process is not None:
            self.process.stop(sig=sig, grace=5.0)
            self.process = None

    def kill(self) -> None:
        """kill -9 the node: no goodbye to its peers, no flush of its store."""
        self.stop(sig=signal.SIGKILL)


class NatsCluster(Service):
    """``size`` nats-server nodes clustered on loopback; ``urls`` for a client."""

    def __init__(self, root: Path, size: int = 3, extra: str = "") -> None:
        """``extra`` is appended to every node's config (e.g. a ``tls {}`` block)."""
        ports = [NodePorts(free_port(), free_port(), free_port()) for _ in range(size)]
        routes = [f"nats-route://{LOOPBACK}:{p.cluster}" for p in ports]
        self.nodes = [NatsNode(root, f"n{i + 1}", p, routes, extra) for i, p in enumerate(ports)]

    @property
    def urls(self) -> list[str]:
        return [node.url for node in self.nodes]

    def _start(self) -> None:
        for node in self.nodes:
            node.start()
        for node in self.nodes:
            node.wait_healthy()
        if len(self.nodes) > 1:
            self.wait_meta_leader()

    def wait_meta_leader(self, timeout: float = READY_TIMEOUT) -> None:
        """Wait until the running nodes agree on a JetStream meta leader (buckets can be made)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.meta_leader() is not None:
                return
            time.sleep(0.1)
        raise RuntimeError(f"no JetStream meta leader within {timeout:g} s")

    def meta_leader(self) -> str | None:
        for node in self.nodes:
            if node.running():
                reply = node.monitor("/jsz")
                leader = ((reply or {}).get("meta_cluster") or {}).get("leader")
                if leader:
                    return str(leader)
        return None

    def node(self, name: str) -> NatsNode:
        return next(n for n in self.nodes if n.name == name)

    def stream_leader(self, stream: str) -> str | None:
        """The server name leading ``stream`` (a KV bucket B is stream KV_B), as a node says."""
        for node in self.nodes:
            if not node.running():
                continue
            reply = node.monitor("/jsz?accounts=true&streams=true")
            for account in (reply or {}).get("account_details") or []:
                for detail in account.get("stream_detail") or []:
                    if detail.get("name") == stream:
                        leader = (detail.get("cluster") or {}).get("leader")
                        if leader:
                            return str(leader)
        return None

    def store_files(self) -> list[Path]:
        """Every file in every node's JetStream store (for scanning what the engine holds)."""
        return sorted(p for node in self.nodes for p in node.store.rglob("*") if p.is_file())

    def stored_bytes(self) -> bytes:
        """What every node's JetStream store holds now, as one byte string. A running
        server removes its temporary files (``_test_*``) at any moment: one gone between
        listing and reading held nothing to scan."""
        found = []
        for path in self.store_files():
            with contextlib.suppress(FileNotFoundError):
                found.append(path.read_bytes())
        return b"".join(found)

    def stop(self) -> None:
        errors = []
        for node in self.nodes:
            try:
                node.stop()
            except Exception as exc:  # one node's failure must not leave the others running
                errors.append(f"{node.name}: {exc}")
        if errors:
            raise RuntimeError("; ".join(errors))
