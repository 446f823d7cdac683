"""Metrics benchmark: what one scrape costs through prometheus_client, per certificate.

    python bench/metrics.py [--certs 1000 10000]

The worker takes the numbers once per status.json rewrite (``numbers``); the first scrape
after that encodes them (OpenMetrics, as Prometheus asks), later ones reuse the bytes and
encode only the process and platform families. The baseline, in the same run, is
``json.dumps`` of the same snapshot: what writing status.json costs.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

from certdrop.daemon.metric_families import numbers
from certdrop.daemon.metrics import Pages, SnapshotCollector
from certdrop.pki import expiry


def snapshot(count: int, now: datetime) -> dict[str, Any]:
    certs = []
    for n in range(count):
        born = now - timedelta(days=10 + n % 60)
        certs.append(
            {
                "name": f"c{n:06d}",
                "status": "in_use" if n % 2 else "unused",
                "subject": f"CN=host{n}.example.test,O=certdrop bench",
                "issuer": "CN=Bench Intermediate,O=certdrop bench",
                "not_before": born.strftime("%Y-%m-%dT%H:%M:%SZ"),
                "not_after": (born + timedelta(days=90)).strftime("%Y-%m-%dT%H:%M:%SZ"),
                "sha256": f"{n:064x}",
                "trusted": True,
                "services": [],
            }
        )
    services = [
        {"name": f"s{n}", "certificate": f"c{n:06d}", "sha256": f"{n:064x}", "state": "ok"}
        for n in range(min(count, 50))
    ]
    return {"certificates": certs, "held": [], "services": services}


def best(fn: Callable[[], object], runs: int = 5) -> float:
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return min(times)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--certs", type=int, nargs="+", default=[1000, 10000])
    args = parser.parse_args()
    now = datetime.now(UTC)
    policy = expiry.Policy()
    accept = "application/openmetrics-text;version=1.0.0,text/plain;version=0.0.4;q=0.5"
    for count in args.certs:
        snap = snapshot(count, now)
        collector = SnapshotCollector()
        pages = Pages(collector)

        def take(snap: dict[str, Any] = snap, collector: SnapshotCollector = collector) -> None:
            collector.publish(numbers(snap, {}, {}, policy, time.time()))

        def first(collector: SnapshotCollector = collector, pages: Pages = pages) -> None:
            collector.publish(dataclasses.replace(collector.numbers))  # type: ignore[type-var]
            pages.render(accept)  # the first scrape after a new snapshot encodes it

        took = best(take)
        encode = best(first)
        cached = best(lambda pages=pages: pages.render(accept))
        baseline = best(lambda snap=snap: json.dumps(snap))
        size = len(pages.render(accept)[0])
        print(
            f"{count:>6} certificates: take numbers {took * 1000:6.1f} ms (worker); "
            f"OpenMetrics scrape after a new snapshot {encode * 1000:7.1f} ms "
            f"= {encode / baseline:4.1f}x json.dumps of the snapshot ({baseline * 1000:.1f} ms), "
            f"{encode / count * 1e6:.0f} us a certificate; later scrapes {cached * 1000:.2f} ms "
            f"({size / 1024:.0f} KiB)"
        )

if __name__ == "__main__":
    main()
