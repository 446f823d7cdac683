"""The parts of issue 11 that need a real process or file system but not a whole daemon:
the opener's child, the status log on a full disk, one settle timer for a backlog, and
the intermediate pool after a drop of 888 CA certificates."""

from __future__ import annotations

import json
import os
import signal
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from certdrop import config as configuration
from certdrop.daemon import state as daemon_state
from certdrop.daemon.worker import SETTLE_SECONDS, Worker
from certdrop.errors import Rejection
from certdrop.intake.opener import Opener
from certdrop.intake.pool import PoolCache
from certdrop.limits import Limits
from certdrop.pki import chain as chains
from certdrop.pki.parse import Parsed, parse
from certdrop.store.eventlog import StatusLogFile
from certdrop.store.inventory import Inventory
from support import costly, pkitools
from support.faults import fill, free, tmpfs

RAISED = Limits(max_kdf_iterations=10**10, max_kdf_total_iterations=10**10, open_seconds=2)


@pytest.fixture
def opener() -> Iterator[Opener]:
    made = Opener()
    yield made
    made.close()


def test_the_child_returns_what_parse_returns(opener: Opener) -> None:
    """Certificates, keys and CSR-free drops come back equal to an in-process parse."""
    p12 = costly.pkcs12_file(b"pw", slot=3)
    here = parse(p12, [b"pw"])
    there = opener.open(p12, [b"pw"], Limits())
    assert there.certs == here.certs
    assert [k.private_numbers() for k in there.keys] == [k.private_numbers() for k in here.keys]


def test_the_childs_rejections_come_back_as_they_are(opener: Opener) -> None:
    """A refusal inside the child is the same code and reason outside."""
    data = costly.with_mac_iterations(costly.pkcs12_file(b""), 10**8)
    with pytest.raises(Rejection) as caught:
        opener.open(data, [], Limits())
    assert caught.value.code == "kdf_too_costly"


def test_a_derivation_past_the_cpu_limit_is_processing_failed_and_the_child_replaced(
    opener: Opener,
) -> None:
    """10^9 MAC iterations admitted by raised limits: killed at open_seconds of CPU,
    rejected processing_failed; the next drop gets a fresh child."""
    data = costly.with_mac_iterations(costly.pkcs12_file(b""), 10**9)
    started = time.monotonic()
    with pytest.raises(Rejection) as caught:
        opener.open(data, [], RAISED)
    took = time.monotonic() - started
    assert caught.value.code == "processing_failed" and "open_seconds = 2" in caught.value.reason
    assert took < RAISED.open_seconds + 4
    assert opener.open(costly.pkcs12_file(b""), [], Limits()).keys
    assert opener.started == 2


def test_a_child_that_dies_mid_drop_is_processing_failed(opener: Opener) -> None:
    """Killed from outside (an OOM kill, a crash in a library): that drop only fails."""
    data = costly.with_mac_iterations(costly.pkcs12_file(b""), 10**9)
    result: list[Parsed | Rejection] = []
    done = threading.Event()
    opener.open_later(data, [], RAISED, lambda r: (result.append(r), done.set()))
    deadline = time.monotonic() + 5
    while opener._child is None and time.monotonic() < deadline:
        time.sleep(0.01)
    time.sleep(0.3)
    assert opener._child is not None
    os.kill(opener._child.pid, signal.SIGKILL)
    assert done.wait(5)
    assert isinstance(result[0], Rejection) and result[0].code == "processing_failed"


def test_close_ends_a_drop_under_way_without_a_result(opener: Opener) -> None:
    """At shutdown the drop in the child gets no result (it stays claimed), fast."""
    called: list[object] = []
    data = costly.with_mac_iterations(costly.pkcs12_file(b""), 10**10)
    opener.open_later(data, [], Limits(max_kdf_iterations=10**11, max_kdf_total_iterations=10**11,
                                       open_seconds=60), called.append)
    time.sleep(0.5)
    started = time.monotonic()
    opener.close()
    assert time.monotonic() - started < 5 and called == []


def test_the_child_has_the_memory_limit_it_was_given(opener: Opener) -> None:
    """RLIMIT_AS in the child is limits.open_memory_mib."""
    opener.open(costly.pkcs12_file(b""), [], Limits(open_memory_mib=300))
    assert opener._child is not None
    limits = Path(f"/proc/{opener._child.pid}/limits").read_text()
    line = next(ln for ln in limits.splitlines() if ln.startswith("Max address space"))
    assert str(300 * 1024 * 1024) in line


def test_status_log_on_a_full_disk_keeps_lines_for_later_and_tears_none(tmp_path: Path) -> None:
    """Lines the full disk refuses go to stderr and a backlog, are written once there is
    room, and the file never holds a torn line."""
    with tmpfs(tmp_path / "fs", "64k") as fs:
        sink = StatusLogFile(fs / "status.log")
        try:
            sink.msg(json.dumps({"event": "before"}))
            fill(fs)
            for i in range(50):
                sink.msg(json.dumps({"event": "during", "i": i, "pad": "x" * 200}))
            assert sink.fault is not None and sink.pending > 0
            assert not sink.flush()
            free(fs)
            assert sink.flush() and sink.fault is None and sink.pending == 0
            sink.msg(json.dumps({"event": "after"}))
        finally:
            sink.close()
        lines = (fs / "status.log").read_text().splitlines()
    events = [json.loads(line)["event"] for line in lines]
    assert events[0] == "before" and events[-1] == "after"
    assert events.count("during") == 50  # none lost (within the backlog's bound), none torn


def test_a_start_up_backlog_uses_one_settle_timer(tmp_path: Path) -> None:
    """200 fresh files at start-up: one settle timer thread, not one a file."""
    config = configuration.from_mapping({}, base=tmp_path, source="test")
    daemon_state.prepare_folders(config)
    names = [f"fresh-{i}.pem" for i in range(200)]
    for name in names:
        (config.inbox / name).write_bytes(b"x")
    with daemon_state.state_lock(config.state):
        ctx, sink = daemon_state.open_context(config)
        worker = Worker(ctx)
        try:
            worker.submit_backlog(names)
            settle = [t for t in threading.enumerate() if t.name == "certdrop-settle"]
            assert len(settle) == 1
            time.sleep(SETTLE_SECONDS + 0.5)
            queued = worker.queue.qsize()
        finally:
            worker.stop()
            ctx.intake.close()
            ctx.inventory.close()
            sink.close()
    assert queued == 200


def test_the_pool_after_888_cas_reads_only_the_names_a_chain_needs(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """888 pooled CA certificates: building a chain reads one subject from the table, and
    the cache holds at most its bound of names, not the whole pool."""
    from certdrop.intake import pool as pool_module

    monkeypatch.setattr(pool_module, "SUBJECTS", 100)
    inventory = Inventory.empty()
    root = pkitools.issue("Pool Root", pkitools.ec_key(80), ca=True)
    key = pkitools.ec_key(81)
    cas = [pkitools.issue(f"Pool CA {i}", key, root, ca=True) for i in range(888)]
    pool = PoolCache(inventory)
    with inventory.transaction():
        for ca in cas:
            assert pool.add(ca.cert)
    pool.settle()
    leaf = pkitools.issue("pooled.example.test", pkitools.rsa_key(0), cas[500])
    reads = pool.reads
    chain = chains.build_chain(leaf.cert, pool)
    assert chain.intermediates[0] == cas[500].cert
    assert pool.reads - reads <= 2 and len(pool) <= 100
    assert not pool.add(cas[500].cert)  # known: no second row
