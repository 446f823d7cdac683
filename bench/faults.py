"""Issue 11 figures: what costly drops, big pools, big requests and disk faults cost a daemon,
each beside a baseline measured in the same run.

    python bench/faults.py [--drops 200] [--skip-mounts]

Prints one JSON object a section:
- costly: seconds from drop to rejection for each file of tests/support/costly.py, the
  next valid drop's seconds, peak RSS of the daemon and of its opener child (the daemon
  runs under RLIMIT_AS 512 MiB); baseline: a valid drop alone;
- sandbox: ms to open a PKCS#12 in the child vs in process;
- pool: drops/s before and after one drop of 888 CA certificates (ratio; was 0.25);
- sans: RequestFields with 100,000 SANs, the old list-membership dedupe vs the new one;
- settle: timer threads started for a start-up backlog of 551 fresh files;
- faults (root): drops made and accounted for while state/ is full, the inbox is full,
  the inbox is read-only, each without a restart.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import threading
import time
from pathlib import Path

import common  # noqa: F401 - puts tests/ on sys.path
from certdrop.intake.opener import Opener
from certdrop.limits import Limits
from certdrop.pki import fields as request_fields
from certdrop.pki.parse import parse
from support import costly, pkitools
from support.daemon import RunningDaemon, drop
from support.faults import (
    children,
    fill,
    free,
    limit_memory,
    peak_rss_mib,
    read_only_over,
    tmpfs,
    writable_alias,
)

FINAL = ("drop.accepted", "drop.held", "drop.rejected")


def final_seconds(d: RunningDaemon, file: str, started: float, timeout: float = 30) -> float:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for event in d.events():
            if event.get("file") == file and event["event"] in FINAL:
                return time.monotonic() - started
        time.sleep(0.005)
    raise TimeoutError(file)


def valid(slot: int) -> bytes:
    leaf = pkitools.issue(f"bench{slot}.example.test", pkitools.rsa_key(30 + slot % 8))
    return leaf.pem + leaf.key_pem()


def bench_costly(folder: Path) -> dict[str, object]:
    d = RunningDaemon(folder, "[intake]\nmax_file_bytes = 4194304\n", env={"MALLOC_ARENA_MAX": "2"})
    d.preexec = limit_memory(512)
    d.start()
    try:
        started = time.monotonic()
        drop(d.inbox, "baseline.pem", valid(0))
        baseline = final_seconds(d, "baseline.pem", started)
        rows = []
        for number, item in enumerate(costly.catalogue()):
            started = time.monotonic()
            drop(d.inbox, item.name, item.data)
            drop(d.inbox, f"next-{number}.pem", valid(number + 1))
            rows.append({
                "file": item.what,
                "rejected_s": round(final_seconds(d, item.name, started), 3),
                "next_accepted_s": round(final_seconds(d, f"next-{number}.pem", started), 3),
            })
        assert d.proc is not None
        child = max((peak_rss_mib(p) for p in children(d.proc.pid)), default=0.0)
        return {"baseline_valid_drop_s": round(baseline, 3), "files": rows,
                "daemon_peak_rss_mib": round(peak_rss_mib(d.proc.pid), 1),
                "child_peak_rss_mib": round(child, 1)}
    finally:
        d.stop()


def bench_sandbox() -> dict[str, object]:
    data = costly.pkcs12_file(b"pw", slot=2)
    opener = Opener()
    try:
        opener.open(data, [b"pw"], Limits())  # start the child
        n = 100
        t = time.perf_counter()
        for _ in range(n):
            opener.open(data, [b"pw"], Limits())
        child = (time.perf_counter() - t) / n * 1000
        t = time.perf_counter()
        for _ in range(n):
            parse(data, [b"pw"])
        here = (time.perf_counter() - t) / n * 1000
    finally:
        opener.close()
    return {"pkcs12_in_child_ms": round(child, 2), "pkcs12_in_process_ms": round(here, 2),
            "overhead_ms": round(child - here, 2)}


def bench_pool(folder: Path, count: int) -> dict[str, object]:
    d = RunningDaemon(folder, "[limits]\nmax_certificates = 1000\n")
    d.start()
    root = pkitools.issue("Bench Pool Root", pkitools.ec_key(90), ca=True)
    key = pkitools.ec_key(91)
    cas = b"".join(pkitools.issue(f"Bench CA {i}", key, root, ca=True).pem for i in range(888))
    inter = pkitools.issue("Bench Issuer", pkitools.ec_key(92), root, ca=True)

    def rate(tag: str) -> float:
        payloads = []
        for i in range(count):
            leaf = pkitools.issue(f"{tag}{i}.bench.test", pkitools.rsa_key(1000 + i % 16), inter)
            payloads.append((f"{tag}-{i}.pem", leaf.pem + inter.pem + leaf.key_pem()))
        started = time.monotonic()
        for name, data in payloads:
            drop(d.inbox, name, data)
        final_seconds(d, payloads[-1][0], started, timeout=300)
        return count / (time.monotonic() - started)

    try:
        before = rate("before")
        started = time.monotonic()
        drop(d.inbox, "cas.pem", cas)
        final_seconds(d, "cas.pem", started, timeout=120)
        after = rate("after")
    finally:
        d.stop()
    return {"drops_per_s_before": round(before, 1), "drops_per_s_after_888_cas": round(after, 1),
            "ratio": round(after / before, 2)}


def bench_sans() -> dict[str, object]:
    sans = [f"h{i}.example.com" for i in range(100_000)]
    t = time.perf_counter()
    names: list[str] = []
    for raw in sans[:20_000]:  # the old check, on a fifth (it is quadratic)
        normal = raw.strip().lower()
        if normal not in names:
            names.append(normal)
    old_fifth = time.perf_counter() - t
    t = time.perf_counter()
    request_fields.checked("x.example.com", tuple(sans), {}, "rsa", None, [], max_sans=10**6)
    new = time.perf_counter() - t
    return {"old_dedupe_20k_s": round(old_fifth, 2), "old_dedupe_100k_estimate_s":
            round(old_fifth * 25, 1), "new_checks_100k_s": round(new, 2)}


def bench_settle(folder: Path) -> dict[str, object]:
    d = RunningDaemon(folder)
    d.inbox.mkdir(parents=True, exist_ok=True)
    for i in range(551):
        (d.inbox / f"fresh-{i}.txt").write_bytes(b"x")
    d.start()
    try:
        assert d.proc is not None
        peak = 0
        deadline = time.monotonic() + 3
        while time.monotonic() < deadline:
            peak = max(peak, len(os.listdir(f"/proc/{d.proc.pid}/task")))
            time.sleep(0.01)
    finally:
        d.stop()
    return {"fresh_files": 551, "peak_threads": peak}


def bench_faults(folder: Path, drops: int) -> dict[str, object]:
    out: dict[str, object] = {}
    with tmpfs(folder / "a" / "state", "8m"):
        d = RunningDaemon(folder / "a")
        d.start()
        fill(d.state)
        names = [f"s{i}.pem" for i in range(drops)]
        for i, name in enumerate(names):
            drop(d.inbox, name, valid(i))
        time.sleep(2)
        free(d.state)
        started = time.monotonic()
        for name in names:
            final_seconds(d, name, started, timeout=120)
        out["state_full"] = {"drops": drops, "accounted": len({
            e["file"] for e in d.events() if e["event"] in FINAL}), "after_free_s":
            round(time.monotonic() - started, 2)}
        d.stop()
    root = folder / "b"
    root.mkdir()
    d = RunningDaemon(root)
    d.inbox.mkdir(mode=0o700)
    d.start()
    with writable_alias(d.inbox, root / "upload") as upload:
        with read_only_over(d.inbox):
            names = [f"r{i}.pem" for i in range(drops)]
            for i, name in enumerate(names):
                drop(upload, name, valid(i))
            time.sleep(2)
        started = time.monotonic()
        for name in names:
            final_seconds(d, name, started, timeout=120)
    out["inbox_read_only"] = {"drops": drops, "accounted": len({
        e["file"] for e in d.events() if e["event"] in FINAL}), "after_rw_s":
        round(time.monotonic() - started, 2)}
    d.stop()
    return out


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--drops", type=int, default=200)
    parser.add_argument("--skip-mounts", action="store_true")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        for name, run in (
            ("costly", lambda: bench_costly(folder / "costly")),
            ("sandbox", bench_sandbox),
            ("pool", lambda: bench_pool(folder / "pool", args.drops)),
            ("sans", bench_sans),
            ("settle", lambda: bench_settle(folder / "settle")),
        ):
            (folder / name).mkdir(exist_ok=True)
            print(json.dumps({name: run()}), flush=True)
        if not args.skip_mounts and os.geteuid() == 0:
            (folder / "faults").mkdir()
            print(json.dumps({"faults": bench_faults(folder / "faults", 20)}), flush=True)
    threads = [t.name for t in threading.enumerate() if t is not threading.main_thread()]
    if threads:
        print(f"threads left: {threads}", file=sys.stderr)


if __name__ == "__main__":
    main()
