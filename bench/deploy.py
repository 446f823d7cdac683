"""Deploy benchmark: from a drop's close to the new certificate proven on a real nginx.

    python bench/deploy.py [--rotations 20]

A running daemon has one https service with a ``hostname``; each rotation drops a newer
certificate for that name (leaf + intermediate + key), the daemon assigns it, writes the
files, runs ``nginx -s reload`` and probes until 4 handshakes in a row serve it. The time
is taken from the close of the drop file to the ``service.applied`` line in the status log,
and checked with a handshake of our own. Baseline in the same run: the bare
``nginx -s reload`` command, timed alone.
"""

from __future__ import annotations

import argparse
import datetime as dt
import statistics
import subprocess
import tempfile
import time
from pathlib import Path

from certdrop.services.probe import served_fingerprint
from common import Daemon, percentile
from support.nginx import Nginx
from support.pkitools import NOW, ec_key, issue
from support.process import free_port

HOST = "console.bench.test"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rotations", type=int, default=20)
    args = parser.parse_args()

    root = issue("Bench Deploy Root", ec_key(950), ca=True)
    inter = issue("Bench Deploy Intermediate", ec_key(951), root, ca=True)
    with tempfile.TemporaryDirectory(prefix="certdrop-bench-deploy-") as tmp:
        folder = Path(tmp)
        live = folder / "live"
        live.mkdir()
        first = issue(HOST, ec_key(960), inter, sans=[HOST])
        (live / "fullchain.pem").write_bytes(first.pem + inter.pem)
        (live / "key.pem").write_bytes(first.key_pem())
        (live / "key.pem").chmod(0o600)
        (folder / "roots.pem").write_bytes(root.pem)
        servers = [(free_port(), live / "fullchain.pem", live / "key.pem")]
        with Nginx(folder / "nginx", servers) as nginx:
            url = nginx.urls[0]
            reload = nginx.reload_argv()
            (folder / "certdrop").mkdir()
            daemon = Daemon(
                folder / "certdrop",
                f"""[trust]
ca_bundle = "{folder / "roots.pem"}"
[services.console]
role = "https"
hostname = "{HOST}"
cert_file = "{live / "fullchain.pem"}"
key_file = "{live / "key.pem"}"
reload = {list(reload)!r}
probe = "{url}"
""".replace("'", '"'),
            )
            daemon.start()
            try:
                latencies, inside, reloads = [], [], []
                for i in range(args.rotations):
                    leaf = issue(
                        HOST, ec_key(961 + i), inter, sans=[HOST],
                        not_before=NOW - dt.timedelta(hours=1) + dt.timedelta(seconds=i + 1),
                    )  # fmt: skip
                    data = leaf.pem + inter.pem + leaf.key_pem()
                    with open(daemon.inbox / f"rotation{i:03d}.pem", "wb") as f:  # one close
                        f.write(data)
                    closed = time.perf_counter()
                    name = f"rotation{i:03d}"
                    event = daemon.wait_for(
                        lambda e, name=name: (
                            e["event"] in ("service.applied", "service.failed")
                            and e.get("certificate") == name
                        ),
                        timeout=60,
                    )
                    proven = time.perf_counter()
                    if event["event"] != "service.applied":
                        raise SystemExit(f"rotation {i} failed: {event}")
                    assert served_fingerprint(url) == leaf.sha256
                    latencies.append(proven - closed)
                    inside.append(event["seconds"])
                    reloads.append(event["reload_seconds"])
            finally:
                daemon.stop()

            bare = []
            for _ in range(args.rotations):
                started = time.perf_counter()
                subprocess.run(reload, check=True, capture_output=True, timeout=30)
                bare.append(time.perf_counter() - started)

    def ms(values: list[float]) -> str:
        return (
            f"p50 {percentile(values, 50) * 1000:7.1f} ms   p90 {percentile(values, 90) * 1000:7.1f} ms"
            f"   max {max(values) * 1000:7.1f} ms"
        )

    print(f"rotations: {args.rotations} (nginx, 2 workers, EC P-256 leaf + intermediate)")
    print(f"drop closed -> new certificate proven (4 handshakes): {ms(latencies)}")
    print(f"  of which: files written -> proven (daemon):          {ms(inside)}")
    print(f"  of which: nginx -s reload run by the daemon:         {ms(reloads)}")
    print(f"baseline: bare `nginx -s reload`:                       {ms(bare)}")
    ratio = statistics.median(latencies) / statistics.median(bare)
    print(f"ratio p50 (drop -> proven) / (bare reload): {ratio:.1f}x")


if __name__ == "__main__":
    main()
