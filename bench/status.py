"""Status benchmark: what UTF-8 JSON with escaped controls (certdrop.jsontext) and the
display-width table cost, beside the ASCII-escaped json.dumps and a code-point table
measured on the same snapshot in the same run.

    python bench/status.py [--certs 10000] [--japanese 0.5]

Run from the checkout (``bench/`` beside ``daemon/``). The inventory is filled with N
summary rows (no certificate bytes: status reads none); the given share of them has a
Japanese name and subject. Times are the best of 9 runs (the machine is shared: compare the ratios).
"""

from __future__ import annotations

import argparse
import io
import json
import tempfile
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path

from certdrop import config as configuration
from certdrop.cli import table
from certdrop.daemon import state as daemon_state
from certdrop.store import snapshot


def fill(config: configuration.Config, count: int, japanese: float) -> None:
    ctx, sink = daemon_state.open_context(config)
    now = datetime.now(UTC)
    try:
        with ctx.inventory.transaction():
            for n in range(count):
                local = n < count * japanese
                name = f"本番 証明書 {n:06d}" if local else f"cert-{n:06d}"
                subject = f"CN=本番サーバー{n},O=株式会社テスト" if local else f"CN=h{n}.example.com"
                ctx.inventory.put_entry(
                    {
                        "name": name, "status": "unused", "key_id": f"k{n}", "key_pem": b"-",
                        "sha256": f"{n:064x}", "subject": subject, "sans": [f"h{n}.example.com"],
                        "issuer": "CN=Bench CA", "not_before": "2026-01-01T00:00:00Z",
                        "not_after": (now + timedelta(days=n % 400)).strftime("%Y-%m-%dT%H:%M:%SZ"),
                        "key_type": "RSA", "key_bits": 2048, "created": "2026-01-01T00:00:00Z",
                    }
                )  # fmt: skip
    finally:
        ctx.inventory.close()
        sink.close()


def best(fn: Callable[[], object], runs: int = 9) -> float:
    times = []
    for _ in range(runs):
        started = time.perf_counter()
        fn()
        times.append(time.perf_counter() - started)
    return min(times)


def code_point_table(data: dict[str, object]) -> str:
    """The same table with widths counted in code points (the old way): the baseline."""
    measured = table.width
    table.width = len  # type: ignore[assignment]
    try:
        return table.render(data)
    finally:
        table.width = measured


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--certs", type=int, default=10000)
    parser.add_argument("--japanese", type=float, default=0.5)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as folder:
        root = Path(folder)
        (root / "certdrop.toml").write_text('inbox = "inbox"\nstate = "state"\n')
        config = configuration.load(root / "certdrop.toml", root)
        daemon_state.prepare_folders(config)
        fill(config, args.certs, args.japanese)
        with daemon_state.reading(config) as inventory:
            data = snapshot.snapshot(config, inventory)
            certs = data["certificates"]
            new = best(lambda: snapshot.write_json(io.BytesIO(), config, inventory))
            old = best(lambda: [json.dumps(c, ensure_ascii=True).encode() for c in certs])
            dumps_new = best(lambda: [snapshot.jsontext.encode(c) for c in certs])
            shown = best(lambda: table.render(data))
            baseline = best(lambda: code_point_table(data))
    n = args.certs
    print(f"{n} certificates, {args.japanese:.0%} with Japanese names and subjects")
    print(f"status --json (write_json, UTF-8, controls escaped): {new * 1000:.0f} ms")
    print(
        f"  encoding alone: jsontext {dumps_new * 1000:.0f} ms vs json.dumps(ensure_ascii=True) "
        f"{old * 1000:.0f} ms = {dumps_new / old:.2f}x"
    )
    print(
        f"status table (display width): {shown * 1000:.0f} ms vs code-point widths "
        f"{baseline * 1000:.0f} ms = {shown / baseline:.2f}x"
    )


if __name__ == "__main__":
    main()
