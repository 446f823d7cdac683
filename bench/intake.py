"""Intake benchmark: latency, burst throughput, idle CPU and memory of a running daemon,
beside two baselines measured in the same run.

    python bench/intake.py [--burst 1000] [--latency 100] [--fill 10000] [--openssl 60]

Each drop is one file: leaf certificate + intermediate + PKCS#8 RSA-2048 key.
Baselines: (1) the same checks as a plain in-process loop of cryptography calls (the
library's limit); (2) one `openssl rsa -check` process per file (an operator's script).
Trust verdicts (issue 10): certdrop's Verifier beside a plain loop making the same
cryptography.x509.verification calls (target >= 0.9x), and the cost they add per drop.
"""

from __future__ import annotations

import argparse
import datetime as dt
import statistics
import subprocess
import tempfile
import time
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding
from cryptography.x509.verification import PolicyBuilder, Store

from certdrop.pki.trust import DEFAULT_PROFILE, Verifier
from common import Daemon, percentile
from support.pkitools import ec_key, issue, rsa_key


def make_drops(folder: Path, count: int, start: int = 0) -> tuple[list[Path], bytes]:
    """``count`` distinct drop files (keys reused from a pool of 16: RSA keygen is slow)."""
    root = issue("Bench Root", ec_key(900), ca=True)
    inter = issue("Bench Intermediate", ec_key(901), root, ca=True)
    files = []
    for i in range(start, start + count):
        key = rsa_key(1000 + i % 16)
        leaf = issue(f"host{i}.bench.test", key, inter, sans=[f"host{i}.bench.test"])
        path = folder / f"drop{i:06d}.pem"
        path.write_bytes(leaf.pem + inter.pem + leaf.key_pem("pkcs8"))
        files.append(path)
    return files, root.pem


def plain_loop(files: list[Path], root_pem: bytes) -> float:
    """Drops per second for the same checks done by bare cryptography calls in one loop
    (since issue 10 including the path validation the daemon asks for each drop)."""
    root = x509.load_pem_x509_certificate(root_pem)
    ca, ee = Verifier.build([root], DEFAULT_PROFILE)._policies["serverAuth"]
    store = Store([root])
    started = time.perf_counter()
    for path in files:
        data = path.read_bytes()
        certs = x509.load_pem_x509_certificates(data)
        start = data.index(b"-----BEGIN PRIVATE KEY")
        key = serialization.load_pem_private_key(
            data[start:], None, unsafe_skip_rsa_key_validation=True
        )
        leaf, inter = certs
        sig = key.sign(b"x", padding.PKCS1v15(), hashes.SHA256())  # type: ignore[union-attr]
        leaf.public_key().verify(sig, b"x", padding.PKCS1v15(), hashes.SHA256())  # type: ignore[union-attr]
        leaf.verify_directly_issued_by(inter)
        inter.verify_directly_issued_by(root)
        now = dt.datetime.now(dt.UTC)
        assert leaf.not_valid_before_utc <= now <= leaf.not_valid_after_utc
        san = leaf.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
        subject = x509.DNSName(san.get_values_for_type(x509.DNSName)[0])
        builder = PolicyBuilder().store(store).time(now)
        builder = builder.extension_policies(ca_policy=ca, ee_policy=ee)
        builder.build_server_verifier(subject).verify(leaf, [inter])
    return len(files) / (time.perf_counter() - started)


def _leaf_and_chain(files: list[Path]) -> list[tuple[x509.Certificate, list[x509.Certificate]]]:
    drops = []
    for path in files:
        leaf, *rest = x509.load_pem_x509_certificates(path.read_bytes())
        drops.append((leaf, rest))
    return drops


def trust_rates(files: list[Path], root_pem: bytes, rounds: int = 5) -> tuple[float, float]:
    """(plain, certdrop) verdicts per second from the median time of one verdict.

    plain: the verifier call certdrop makes per drop (serverAuth under the leaf's own name,
    with the profile's extension policies; clientAuth only when that fails) as bare
    cryptography calls; certdrop: ``Verifier.judge_any`` (the same call plus its own checks
    and, on refusal, the explanation). The two alternate drop by drop, in turn first, so
    both see the same machine: on a shared machine whole-loop timings differ by ±30 %.
    """
    drops = _leaf_and_chain(files)
    roots = x509.load_pem_x509_certificates(root_pem)
    verifier = Verifier.build(roots, DEFAULT_PROFILE)
    ca, ee = verifier._policies["serverAuth"]
    store = Store(roots)

    def plain(leaf: x509.Certificate, rest: list[x509.Certificate]) -> None:
        now = dt.datetime.now(dt.UTC)
        san = leaf.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
        subject = x509.DNSName(san.get_values_for_type(x509.DNSName)[0])
        builder = PolicyBuilder().store(store).time(now)
        builder = builder.extension_policies(ca_policy=ca, ee_policy=ee)
        builder.build_server_verifier(subject).verify(leaf, rest)

    def certdrop(leaf: x509.Certificate, rest: list[x509.Certificate]) -> None:
        verdict = verifier.judge_any(leaf, rest, dt.datetime.now(dt.UTC))
        assert verdict.trusted, verdict.detail

    times: tuple[list[int], list[int]] = ([], [])
    clock = time.perf_counter_ns
    for n in range(rounds):
        for i, (leaf, rest) in enumerate(drops):
            order = ((0, plain), (1, certdrop)) if (i + n) % 2 else ((1, certdrop), (0, plain))
            for slot, call in order:
                started = clock()
                call(leaf, rest)
                times[slot].append(clock() - started)
    return 1e9 / statistics.median(times[0]), 1e9 / statistics.median(times[1])


def openssl_script(files: list[Path]) -> float:
    """Drops per second for one `openssl rsa -check` process per file."""
    started = time.perf_counter()
    for path in files:
        subprocess.run(["openssl", "rsa", "-in", str(path), "-check", "-noout"],
                       check=True, capture_output=True, timeout=30)
    return len(files) / (time.perf_counter() - started)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--burst", type=int, default=1000)
    parser.add_argument("--latency", type=int, default=100)
    parser.add_argument("--fill", type=int, default=10000)
    parser.add_argument("--openssl", type=int, default=60)
    args = parser.parse_args()

    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        material = folder / "material"
        material.mkdir()
        t0 = time.perf_counter()
        files, root_pem = make_drops(material, args.burst + args.latency)
        (folder / "root.pem").write_bytes(root_pem)
        print(f"made {len(files)} drops in {time.perf_counter() - t0:.1f}s")

        loop_rate = plain_loop(files[: args.burst], root_pem)
        verify_rate, trust_rate = trust_rates(files[: args.burst], root_pem)
        openssl_rate = openssl_script(files[: args.openssl])

        daemon = Daemon(folder, '[trust]\nca_bundle = "root.pem"\n')
        daemon.start()
        try:
            # Latency: one drop at a time, close -> drop.accepted line in the log.
            latencies = []
            for path in files[args.burst:]:
                data = path.read_bytes()
                target = daemon.inbox / path.name
                with open(target, "wb") as f:
                    f.write(data)
                    started = time.perf_counter()  # the close below is the trigger
                daemon.wait_for(lambda e, n=path.name: e["event"] == "drop.accepted" and e["file"] == n)
                latencies.append((time.perf_counter() - started) * 1000)

            # Burst: copied in as fast as one writer can (create, write, close: as cp and
            # SFTP do), so the daemon sees a thousand close events at once.
            payloads = [(path.name, path.read_bytes()) for path in files[: args.burst]]
            started = time.perf_counter()
            for name, data in payloads:
                (daemon.inbox / name).write_bytes(data)
            seen = 0
            while seen < args.burst:
                event = daemon.wait_for(lambda e: e["event"].startswith("drop."))
                assert event["event"] == "drop.accepted", event
                seen += 1
            burst_rate = args.burst / (time.perf_counter() - started)

            # Idle: no drops, no CPU.
            time.sleep(1.0)
            cpu0 = daemon.cpu_seconds()
            time.sleep(5.0)
            idle_cpu_ms = (daemon.cpu_seconds() - cpu0) * 1000

            # Memory with --fill certificates in the inventory.
            have = args.burst + args.latency
            if args.fill > have:
                extra, _ = make_drops(material, args.fill - have, start=have)
                for path in extra:
                    (daemon.inbox / f".{path.name}").write_bytes(path.read_bytes())
                for path in extra:
                    (daemon.inbox / f".{path.name}").rename(daemon.inbox / path.name)
                for _ in extra:
                    daemon.wait_for(lambda e: e["event"].startswith("drop."), timeout=600)
            time.sleep(3.0)  # let the coalesced status.json rewrite happen
            rss = daemon.rss_mib()
            status_started = time.perf_counter()
            subprocess.run(["certdrop", "--config", str(daemon.config), "status", "--json"],
                           check=True, capture_output=True, timeout=120)
            status_s = time.perf_counter() - status_started
        finally:
            daemon.stop()

    print(f"plain cryptography loop : {loop_rate:8.1f} drops/s   (library limit, baseline)")
    print(f"openssl per file        : {openssl_rate:8.1f} drops/s   (operator script, baseline)")
    print(f"daemon burst of {args.burst:<6}  : {burst_rate:8.1f} drops/s   "
          f"= {burst_rate / openssl_rate:5.1f}x openssl, {burst_rate / loop_rate:4.2f}x plain loop "
          f"(targets >= 10x, >= 0.5x)")
    print(f"latency close->accepted : p50 {percentile(latencies, 50):6.1f} ms, "
          f"p99 {percentile(latencies, 99):6.1f} ms over {len(latencies)} drops (target p50 < 25)")
    print(f"idle CPU over 5 s       : {idle_cpu_ms:6.1f} ms (target ~0: no polling)")
    print(f"RSS with {max(args.fill, have)} certs   : {rss:6.1f} MiB (target < 80)")
    print(f"status --json at that size: {status_s:5.2f} s")
    print(f"trust verdicts, plain   : {verify_rate:8.1f} drops/s   "
          "(bare x509.verification calls, baseline)")
    print(f"trust verdicts, certdrop: {trust_rate:8.1f} drops/s   "
          f"= {trust_rate / verify_rate:4.2f}x plain (target >= 0.9x)")
    added_ms = 1000 / trust_rate
    print(f"added cost per drop     : {added_ms:6.2f} ms of verdicts = "
          f"{added_ms * burst_rate / 10:4.1f}% of a drop's {1000 / burst_rate:.2f} ms in the daemon")


if __name__ == "__main__":
    main()
