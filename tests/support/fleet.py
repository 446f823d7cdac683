"""A fleet on 127.0.0.1 for tests and the benchmark: a NATS cluster and N certdrop gateways,
each a real ``certdrop run`` with its own state and (optionally) its own nginx admin console.

Everything started here is stopped by PID when the ``Fleet`` context ends, failed test
or not. Certificates come from one test CA that every gateway trusts.
"""

from __future__ import annotations

import contextlib
import json
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives import serialization

from certdrop.services.probe import served_fingerprint
from support.daemon import RunningDaemon
from support.nats_cluster import NatsCluster
from support.nginx import Nginx
from support.pkitools import Issued, ec_key, issue, sign_csr
from support.process import free_port

ROOT = issue("Fleet Test Root", ec_key(700), ca=True)
INTERMEDIATE = issue("Fleet Test Intermediate", ec_key(701), ROOT, ca=True)
HOSTNAME = "console.fleet.test"


def leaf(slot: int, *names: str) -> Issued:
    return issue(names[0], ec_key(710 + slot), INTERMEDIATE, sans=names)


def answer(csr_pem: bytes) -> bytes:
    """The test CA's certificate for a CSR (PEM, without the chain)."""
    return sign_csr(csr_pem, INTERMEDIATE).public_bytes(serialization.Encoding.PEM)


def bundle(cert: Issued) -> bytes:
    return cert.pem + INTERMEDIATE.pem + cert.key_pem()


def wait(what: str, ready: Callable[[], bool], timeout: float = 30.0) -> float:
    start = time.monotonic()
    while not ready():
        if time.monotonic() - start > timeout:
            raise AssertionError(f"not within {timeout:g} s: {what}")
        time.sleep(0.1)
    return time.monotonic() - start


def serves(url: str, sha256: str) -> bool:
    try:
        return served_fingerprint(url, timeout=2) == sha256
    except Exception:
        return False


@dataclass
class Gateway:
    """One certdrop gateway of the fleet."""

    name: str
    root: Path
    daemon: RunningDaemon
    nginx: Nginx | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def url(self) -> str:
        assert self.nginx is not None
        return self.nginx.urls[0]

    def cli(self, *args: str, check: bool = True) -> Any:
        return self.daemon.cli(*args, check=check)

    def fleet_status(self) -> dict[str, Any]:
        return dict(json.loads(self.cli("fleet", "status", "--json").stdout))

    def status(self) -> dict[str, Any]:
        return dict(json.loads(self.cli("status", "--json").stdout))

    def has(self, sha256: str) -> bool:
        return any(c.get("sha256") == sha256 for c in self.status()["certificates"])

    def events(self, name: str) -> list[dict[str, Any]]:
        return [e for e in self.daemon.events() if e.get("event") == name]


class Fleet:
    """``size`` NATS nodes and gateways made on demand with :meth:`gateway`."""

    def __init__(self, root: Path, nats_nodes: int = 3, heartbeat: float = 1.0) -> None:
        self.root = root
        self.heartbeat = heartbeat  # tests: 1 s, so a failed publish retries fast
        self.cluster = NatsCluster(root / "nats", nats_nodes)
        self.gateways: list[Gateway] = []
        self.roots_pem = root / "roots.pem"
        self._stack = contextlib.ExitStack()

    def __enter__(self) -> Fleet:
        self.root.mkdir(parents=True, exist_ok=True)
        self.roots_pem.write_bytes(ROOT.pem)
        self._stack.enter_context(self.cluster)
        return self

    def __exit__(self, *exc: object) -> None:
        if exc[0] is not None:  # shown by pytest with the failure: what each gateway saw
            for gw in self.gateways:
                print(f"---- {gw.name} (last events)")
                for event in gw.daemon.events()[-25:]:
                    print(json.dumps(event)[:400])
                with contextlib.suppress(OSError):
                    print((gw.root / "daemon.stderr").read_text()[-2000:])
        try:
            for gw in self.gateways:
                with contextlib.suppress(Exception):
                    gw.daemon.kill()
        finally:
            self._stack.close()

    def gateway(
        self,
        name: str,
        *,
        console: bool = True,
        hostname: str = HOSTNAME,
        start: bool = True,
        extra_config: str = "",
        env: dict[str, str] | None = None,
    ) -> Gateway:
        folder = self.root / name
        folder.mkdir(parents=True, exist_ok=True)
        nginx = None
        services = ""
        if console:
            live = folder / "console"
            live.mkdir(exist_ok=True)
            first = issue("placeholder.fleet.test", ec_key(790), INTERMEDIATE)
            (live / "fullchain.pem").write_bytes(first.pem + INTERMEDIATE.pem)
            (live / "key.pem").write_bytes(first.key_pem())
            (live / "key.pem").chmod(0o600)
            nginx = Nginx(folder / "nginx", [(free_port(), live / "fullchain.pem", live / "key.pem")])
            self._stack.enter_context(nginx)
            services = (
                "[services.admin-console]\n"
                'role = "https"\n'
                f'hostname = "{hostname}"\n'
                f'cert_file = "{live}/fullchain.pem"\n'
                f'key_file = "{live}/key.pem"\n'
                f"reload = {json.dumps(nginx.reload_argv())}\n"
                f'probe = "{nginx.urls[0]}"\n'
                "probe_timeout_seconds = 5\n"
            )
        config = (
            f'{extra_config}[trust]\nca_bundle = "{self.roots_pem}"\n'
            f"[fleet]\nservers = {json.dumps(self.cluster.urls)}\n"
            f'gateway = "{name}"\nheartbeat_seconds = {self.heartbeat}\n'
            f"{services}"
        )
        gw = Gateway(name, folder, RunningDaemon(folder, config, env=env), nginx)
        self.gateways.append(gw)
        if start:
            gw.daemon.start(timeout=60)
            gw.daemon.wait_for("fleet.connected", timeout=30)
        return gw

    def approved(self, by: Gateway, *names: str) -> None:
        """Approve ``names`` from ``by`` and wait until ``by`` sees them all approved."""
        wanted = set(names)
        wait(f"{sorted(wanted)} asked to join", lambda: wanted <= set(_states(by)), 120)
        by.cli("fleet", "approve", *names)
        wait(
            f"{sorted(wanted)} approved",
            lambda: all(_states(by).get(n) == "approved" for n in wanted),
            120,
        )


def _states(gw: Gateway) -> dict[str, str]:
    return {str(g["gateway"]): str(g["approved"]) for g in gw.fleet_status()["gateways"]}


@contextlib.contextmanager
def fleet_of(
    root: Path, names: list[str], roots: bytes = b"", **options: Any
) -> Iterator[tuple[Fleet, list[Gateway]]]:
    """A fleet with gateways ``names``: the first founds it and approves the others.
    ``roots`` are trusted too (e.g. pebble's)."""
    with Fleet(root) as fleet:
        fleet.roots_pem.write_bytes(ROOT.pem + roots)
        first = fleet.gateway(names[0], **options)
        first.daemon.wait_for("fleet.founder_pinned", founder=names[0], timeout=30)
        rest = [fleet.gateway(n, **options) for n in names[1:]]
        for gw in rest:
            gw.daemon.wait_for("fleet.founder_pinned", founder=names[0], timeout=30)
        fleet.approved(first, *names[1:])
        yield fleet, [first, *rest]
