"""Request benchmark: what `create_request` (key + CSR + 0644 CSR file + SQLite commit +
status-log line) costs beside bare key generation, measured in the same run.

    python bench/csr.py [--seconds 15]

For RSA 2048, RSA 4096 and P-256 it alternates one bare ``generate_key`` with one full
``create_request`` until the kind's round count or time budget is reached. RSA key
generation times scatter widely (prime search), so besides the ratio of the means it
reports the overhead measured exactly: each request's own time minus the key generation
inside it (timed by wrapping ``requests.generate_key``).
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from certdrop.files import private_dir
from certdrop.intake import request as requests
from certdrop.pki.csr import RequestFields, generate_key
from certdrop.store.eventlog import open_log
from certdrop.store.inventory import Inventory

KINDS = [("RSA 2048", "rsa", 2048, 40), ("RSA 4096", "rsa", 4096, 12), ("P-256", "ec", 256, 300)]


def timed_keygen(inner: Callable[..., Any], spent: list[float]) -> Callable[..., Any]:
    """``generate_key`` that records its own duration in ``spent``."""

    def wrapper(*args: Any) -> Any:
        start = time.perf_counter()
        try:
            return inner(*args)
        finally:
            spent.append(time.perf_counter() - start)

    return wrapper


def measure(
    folder: Path, label: str, key_type: str, key_size: int, rounds: int, budget: float
) -> dict[str, Any]:
    state = private_dir(folder / label.replace(" ", "-"))
    outbox = state / "outbox"
    outbox.mkdir()
    inventory = Inventory(state / "inventory.sqlite3")
    log, sink = open_log(state / "status.log", echo=False)
    fields = RequestFields.from_values(
        cn="bench.example.com", sans=["bench.example.com", "www.bench.example.com"],
        org="certdrop bench", key_type=key_type, key_size=key_size,
    )
    bare: list[float] = []
    total: list[float] = []
    inside: list[float] = []
    original = requests.generate_key
    requests.generate_key = timed_keygen(original, inside)  # type: ignore[assignment]
    try:
        deadline = time.monotonic() + budget
        for i in range(rounds):
            start = time.perf_counter()
            generate_key(key_type, key_size)
            bare.append(time.perf_counter() - start)
            start = time.perf_counter()
            requests.create_request(inventory, log, outbox, f"r{i}", fields)
            total.append(time.perf_counter() - start)
            if time.monotonic() > deadline and i >= 2:
                break
    finally:
        requests.generate_key = original  # type: ignore[assignment]
        inventory.close()
        sink.close()
    overhead = [t - k for t, k in zip(total, inside, strict=True)]
    return {
        "label": label,
        "n": len(total),
        "bare": statistics.fmean(bare),
        "bare_median": statistics.median(bare),
        "create": statistics.fmean(total),
        "create_median": statistics.median(total),
        "overhead": statistics.median(overhead),
        "ratio": statistics.fmean(total) / statistics.fmean(bare),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=15.0, help="time budget per key kind")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="certdrop-bench-") as tmp:
        rows = [measure(Path(tmp), *kind, budget=args.seconds) for kind in KINDS]
    print(f"{'kind':9} {'n':>4} {'keygen ms':>14} {'create_request ms':>18} "
          f"{'ratio':>6} {'overhead ms':>12}")
    print(f"{'':9} {'':>4} {'mean / median':>14} {'mean / median':>18} {'means':>6} {'median':>12}")
    for r in rows:
        print(
            f"{r['label']:9} {r['n']:4d} "
            f"{r['bare'] * 1e3:6.2f} / {r['bare_median'] * 1e3:6.2f} "
            f"{r['create'] * 1e3:8.2f} / {r['create_median'] * 1e3:7.2f} "
            f"{r['ratio']:6.2f} {r['overhead'] * 1e3:12.2f}"
        )
    print("overhead = a request's time minus the key generation inside it (CSR signing, "
          "CSR file write + fsync, SQLite commit, log line)")


if __name__ == "__main__":
    main()
