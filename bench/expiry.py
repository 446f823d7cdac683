"""Expiry-check benchmark: what the daemon's check pass and `certdrop check` cost for many
certificates in use, and the pure ``assess`` alone.

    python bench/expiry.py [--certs 1000 10000]

Run from the checkout (``bench/`` beside ``daemon/``). The inventory is filled with N ``in_use`` rows (summary columns only: the check reads no
certificate bytes), a third of them inside a warning threshold. The first daemon pass
remembers and logs those warnings (one transaction and one log line each); later passes
find nothing new, which is the steady state at every ``check_interval_seconds``.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

from certdrop import config as configuration
from certdrop.daemon import state as daemon_state
from certdrop.daemon.worker import Worker
from certdrop.pki import expiry
from certdrop.renewal.expiry_check import ExpiryCheck


def fill(config: configuration.Config, count: int, now: datetime) -> None:
    ctx, sink = daemon_state.open_context(config)
    try:
        with ctx.inventory.transaction():
            for n in range(count):
                born = now - timedelta(days=30 + (n % 3) * 25)  # 60, 35, 10 days left
                ctx.inventory.put_entry(
                    {
                        "name": f"c{n:06d}",
                        "status": "in_use",
                        "key_id": f"k{n}",
                        "key_pem": b"-",
                        "sha256": f"{n:064x}",
                        "not_before": expiry_iso(born),
                        "not_after": expiry_iso(born + timedelta(days=90)),
                        "created": expiry_iso(now),
                    }
                )
    finally:
        ctx.inventory.close()
        sink.close()


def expiry_iso(moment: datetime) -> str:
    return moment.strftime("%Y-%m-%dT%H:%M:%SZ")


def daemon_passes(config: configuration.Config, passes: int = 3) -> list[float]:
    ctx, sink = daemon_state.open_context(config)
    watch = ExpiryCheck(ctx, Worker(ctx))
    times = []
    try:
        for _ in range(passes):
            start = time.perf_counter()
            watch.check()
            times.append(time.perf_counter() - start)
    finally:
        ctx.inventory.close()
        sink.close()
    return times


def cli_check(config_path: Path) -> float:
    start = time.perf_counter()
    done = subprocess.run(
        [sys.executable, "-m", "certdrop", "--config", str(config_path), "check", "--json"],
        capture_output=True,
        check=False,
    )
    assert done.returncode in (0, 1, 2), done.stderr
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--certs", type=int, nargs="+", default=[1000, 10000])
    args = parser.parse_args()
    now = datetime.now(UTC)
    policy = expiry.Policy()
    life = expiry.Lifetime(now - timedelta(days=80), now + timedelta(days=10))
    rounds = 100_000
    start = time.perf_counter()
    for _ in range(rounds):
        expiry.assess(life, frozenset({"30", "14"}), policy, now)
    per = (time.perf_counter() - start) / rounds
    print(f"assess: {per * 1e6:.1f} us a certificate (pure, {rounds} calls)")
    for count in args.certs:
        with tempfile.TemporaryDirectory() as tmp:
            folder = Path(tmp)
            config_path = folder / "certdrop.toml"
            # Renewal at 5 days left: this measures the watch, not key generation.
            config_path.write_text(
                'inbox = "inbox"\nstate = "state"\n[expiry]\nrenew_before_days = 5\n'
            )
            config = configuration.load(config_path, folder)
            daemon_state.prepare_folders(config)
            fill(config, count, now)
            first, *later = daemon_passes(config)
            cli = min(cli_check(config_path) for _ in range(3))
            lines = (config.status_log).read_text().count("expiry.warning")
            print(
                f"{count} certificates in use: daemon pass {first * 1e3:.0f} ms first "
                f"({lines} warnings logged), {min(later) * 1e3:.0f} ms steady "
                f"({min(later) / count * 1e6:.0f} us each); `certdrop check --json` "
                f"{cli * 1e3:.0f} ms wall (process start included)"
            )


if __name__ == "__main__":
    main()
