"""Fleet benchmark: one drop, every gateway, on a real 3-node NATS JetStream cluster.

    python bench/fleet.py [--rotations 10] [--sizes 10,30]

1. Single gateway (the baseline, same run): drop closed -> new certificate proven on its
   nginx (a handshake of ours sees it).
2. Three gateways, each with its own nginx: drop closed on A -> the new certificate
   proven on all three (p50, p95 of the last one), and on A alone.
3. N gateways without services: drop closed on one -> ``fleet.certificate_received`` on
   every other (p50 and the last), for each N, to show how it grows with N.
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

from common import percentile
from support.daemon import RunningDaemon, drop
from support.fleet import HOSTNAME, INTERMEDIATE, ROOT, Fleet, bundle, fleet_of, leaf, serves
from support.nginx import Nginx
from support.pkitools import ec_key, issue
from support.process import free_port


def until(ready, timeout: float = 120.0, step: float = 0.005) -> float:  # type: ignore[no-untyped-def]
    start = time.monotonic()
    while not ready():
        if time.monotonic() - start > timeout:
            raise SystemExit(f"timed out after {timeout} s")
        time.sleep(step)
    return time.monotonic() - start


def single_host(folder: Path, rotations: int) -> list[float]:
    live = folder / "live"
    live.mkdir(parents=True)
    first = issue("placeholder.fleet.test", ec_key(890), INTERMEDIATE)
    (live / "fullchain.pem").write_bytes(first.pem + INTERMEDIATE.pem)
    (live / "key.pem").write_bytes(first.key_pem())
    (live / "key.pem").chmod(0o600)
    (folder / "roots.pem").write_bytes(ROOT.pem)
    with Nginx(folder / "nginx", [(free_port(), live / "fullchain.pem", live / "key.pem")]) as nginx:
        config = (
            f'[trust]\nca_bundle = "{folder / "roots.pem"}"\n[services.admin-console]\n'
            f'role = "https"\nhostname = "{HOSTNAME}"\ncert_file = "{live}/fullchain.pem"\n'
            f'key_file = "{live}/key.pem"\nreload = {json.dumps(nginx.reload_argv())}\n'
            f'probe = "{nginx.urls[0]}"\n'
        )
        daemon = RunningDaemon(folder, config)
        daemon.start(timeout=30)
        try:
            times = []
            for i in range(rotations):
                cert = leaf(100 + i, HOSTNAME)
                start = time.monotonic()
                drop(daemon.inbox, f"r{i}.pem", bundle(cert))
                until(lambda c=cert: serves(nginx.urls[0], c.sha256))
                times.append(time.monotonic() - start)
            return times
        finally:
            daemon.stop()


def three_gateways(folder: Path, rotations: int) -> tuple[list[float], list[float]]:
    with fleet_of(folder, ["gw-a", "gw-b", "gw-c"]) as (_, gateways):
        a = gateways[0]
        on_a, on_all = [], []
        for i in range(rotations):
            cert = leaf(200 + i, HOSTNAME)
            start = time.monotonic()
            drop(a.daemon.inbox, f"r{i}.pem", bundle(cert))
            until(lambda c=cert: serves(a.url, c.sha256))
            on_a.append(time.monotonic() - start)
            for gw in gateways[1:]:
                until(lambda c=cert, g=gw: serves(g.url, c.sha256))
            on_all.append(time.monotonic() - start)
        return on_a, on_all


def received(gw_log: Path, sha256: str) -> bool:
    try:
        text = gw_log.read_text()
    except OSError:
        return False
    return sha256 in text and "fleet.certificate_received" in text


def n_gateways(folder: Path, n: int) -> list[float]:
    with Fleet(folder, heartbeat=10.0) as fleet:  # the default: N heartbeats a second cost
        names = [f"gw{i:03d}" for i in range(n)]
        first = fleet.gateway(names[0], console=False)
        first.daemon.wait_for("fleet.founder_pinned", timeout=60)
        rest = [fleet.gateway(name, console=False) for name in names[1:]]
        fleet.approved(first, *names[1:])
        for gw in rest:  # approval seen by each gateway: its own heartbeat is accepted
            gw.daemon.wait_for("fleet.founder_pinned", timeout=60)
        time.sleep(2)
        cert = leaf(300, f"n{n}.fleet.test")
        start = time.monotonic()
        drop(first.daemon.inbox, "one.pem", bundle(cert))
        arrived: dict[str, float] = {}
        while len(arrived) < len(rest):
            for gw in rest:
                if gw.name not in arrived and received(gw.daemon.log_path, cert.sha256):
                    arrived[gw.name] = time.monotonic() - start
            if time.monotonic() - start > 180:
                raise SystemExit(f"only {len(arrived)} of {len(rest)} received it")
            time.sleep(0.01)
        return sorted(arrived.values())


def ms(values: list[float], q: float) -> str:
    return f"{percentile(sorted(values), q) * 1000:.0f} ms"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rotations", type=int, default=10)
    parser.add_argument("--sizes", default="10,30")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="certdrop-bench-fleet-") as tmp:
        root = Path(tmp)
        base = single_host(root / "single", args.rotations)
        print(f"single gateway: drop -> proven  p50 {ms(base, 50)}  p95 {ms(base, 95)}")
        on_a, on_all = three_gateways(root / "three", args.rotations)
        print(f"3 gateways: drop on A -> proven on A      p50 {ms(on_a, 50)}  p95 {ms(on_a, 95)}")
        print(
            f"3 gateways: drop on A -> proven on all 3  p50 {ms(on_all, 50)}  p95 {ms(on_all, 95)}"
            f"  = {percentile(sorted(on_all), 50) / percentile(sorted(base), 50):.1f}x single"
        )
        for n in (int(s) for s in args.sizes.split(",") if s):
            times = n_gateways(root / f"n{n}", n)
            print(
                f"{n} gateways, no services: drop -> received on the other {n - 1}: "
                f"p50 {ms(times, 50)}, last {times[-1] * 1000:.0f} ms"
            )


if __name__ == "__main__":
    main()
