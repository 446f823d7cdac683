"""`certdrop run` as a real subprocess with a real inotify watcher and real files."""

from __future__ import annotations

import errno
import json
import os
import signal
import threading
import time
from pathlib import Path

import pytest

from support.daemon import RunningDaemon, drop
from support.pkitools import hierarchy, issue, rsa_key


def test_slow_writer_is_read_once_whole(daemon: RunningDaemon):
    """A file written in pieces over a second is processed once, after its close."""
    h = hierarchy(slot=30, depth=2)
    data = h.chain_pem + h.leaf.key_pem()
    with open(daemon.inbox / "slow.pem", "wb") as f:
        for i in range(0, len(data), len(data) // 5 + 1):
            f.write(data[i : i + len(data) // 5 + 1])
            f.flush()
            time.sleep(0.25)
    event = daemon.wait_for("drop.accepted", file="slow.pem")
    assert event["certificates"] == ["slow"]
    time.sleep(0.3)
    assert [e["event"] for e in daemon.events() if e.get("file") == "slow.pem"] == ["drop.accepted"]


@pytest.mark.parametrize("first", ["certificate", "key"])
def test_pieces_pair_in_either_order(daemon: RunningDaemon, first: str):
    """Certificate and key dropped separately, in either order, become one entry."""
    h = hierarchy(slot=31)
    pieces = {"certificate": ("gw.crt", h.chain_pem), "key": ("gw.key", h.leaf.key_pem())}
    second = "key" if first == "certificate" else "certificate"
    drop(daemon.inbox, *pieces[first])
    daemon.wait_for("drop.held", file=pieces[first][0])
    status = json.loads(daemon.cli("status", "--json").stdout)
    assert [h["kind"] for h in status["held"]] == [first]
    drop(daemon.inbox, *pieces[second])
    daemon.wait_for("drop.accepted", file=pieces[second][0])
    status = json.loads(daemon.cli("status", "--json").stdout)
    assert status["held"] == [] and status["certificates"][0]["name"] == "gw"
    assert status["certificates"][0]["sha256"] == h.leaf.sha256


def test_chain_in_the_wrong_order_is_reordered(daemon: RunningDaemon):
    """Root, intermediates and leaf in scrambled order are stored leaf-first."""
    h = hierarchy(slot=32, depth=3)
    scrambled = (h.intermediates[0].pem + h.root.pem + h.leaf.key_pem() +
                 h.intermediates[2].pem + h.leaf.pem + h.intermediates[1].pem)
    drop(daemon.inbox, "scrambled.pem", scrambled)
    daemon.wait_for("drop.accepted", file="scrambled.pem")
    daemon.stop()
    from certdrop.store.inventory import Inventory

    inv = Inventory(daemon.state / "inventory.sqlite3", readonly=True)
    try:
        entry = inv.entry("scrambled")
        assert entry is not None
        assert entry.chain_pem == b"".join(i.pem for i in reversed(h.intermediates))
    finally:
        inv.close()


def test_rejections_reach_the_uploader(daemon: RunningDaemon):
    """Each rejected drop lands in inbox/rejected with its reason file."""
    h = hierarchy(slot=33)
    cases = {
        "mismatch.pem": (h.chain_pem + issue("x", rsa_key(34)).key_pem(), "key_mismatch"),
        "garbage.pem": (b"\x00\x01 not a cert", "unsupported_content"),
        "cut.pem": (h.chain_pem[:200], "truncated"),
    }
    for name, (data, _) in cases.items():
        drop(daemon.inbox, name, data)
    for name, (_, code) in cases.items():
        event = daemon.wait_for("drop.rejected", file=name)
        assert event["code"] == code
        reason = json.loads((daemon.inbox / "rejected" / f"{name}.reason.json").read_text())
        assert reason["code"] == code and reason["reason"]
        assert (daemon.inbox / "rejected" / name).exists()


def test_symlink_target_outside_the_inbox_is_never_opened(daemon: RunningDaemon, tmp_path: Path):
    """A symlink to a FIFO outside the inbox is rejected and nobody ever opens the FIFO."""
    target = tmp_path / "outside-fifo"
    os.mkfifo(target)
    (daemon.inbox / "link.pem").symlink_to(target)
    assert daemon.wait_for("drop.rejected", file="link.pem")["code"] == "not_regular_file"
    # Opening a FIFO for writing without blocking fails with ENXIO when it has no reader.
    with pytest.raises(OSError) as err:
        os.open(target, os.O_WRONLY | os.O_NONBLOCK)
    assert err.value.errno == errno.ENXIO


def test_fifo_in_the_inbox_blocks_nothing(daemon: RunningDaemon):
    """A FIFO is rejected at once and drops after it are still processed."""
    os.mkfifo(daemon.inbox / "pipe")
    daemon.wait_for("drop.rejected", file="pipe")
    h = hierarchy(slot=35)
    drop(daemon.inbox, "after.pem", h.chain_pem + h.leaf.key_pem())
    daemon.wait_for("drop.accepted", file="after.pem")


def test_partial_upload_names_wait_for_the_rename(daemon: RunningDaemon):
    """A `.part` upload is ignored until it is renamed to its final name."""
    h = hierarchy(slot=36)
    part = drop(daemon.inbox, "upload.pem.part", h.chain_pem + h.leaf.key_pem())
    time.sleep(0.5)
    assert "upload.pem.part" not in daemon.results()
    part.rename(daemon.inbox / "upload.pem")
    daemon.wait_for("drop.accepted", file="upload.pem")


def test_files_present_at_start_up_are_processed(daemon_factory):
    """Drops copied in while the daemon was down are processed when it starts."""
    d = daemon_factory()
    d.inbox.mkdir(parents=True)
    h = hierarchy(slot=37)
    drop(d.inbox, "waiting.pem", h.chain_pem + h.leaf.key_pem())
    d.start()
    d.wait_for("drop.accepted", file="waiting.pem")


def test_held_key_survives_restart_and_pairs_later(daemon_factory):
    """A key held before a restart pairs with the certificate dropped after it."""
    d = daemon_factory().start()
    h = hierarchy(slot=38)
    drop(d.inbox, "alone.key", h.leaf.key_pem("pkcs1"))
    d.wait_for("drop.held", file="alone.key")
    assert d.stop() == 0
    d.start()
    drop(d.inbox, "late.crt", h.chain_pem)
    assert d.wait_for("drop.accepted", file="late.crt")["certificates"] == ["late"]


def test_sigterm_finishes_the_current_drop_and_exits_zero(daemon: RunningDaemon):
    """SIGTERM during a burst exits 0 and every drop is either done or still in the inbox."""
    names = []
    for i in range(20):
        h = hierarchy(slot=40 + i)
        names.append(f"burst{i}.pem")
        drop(daemon.inbox, names[-1], h.chain_pem + h.leaf.key_pem())
    assert daemon.stop(signal.SIGTERM) == 0
    done = set(daemon.results())
    left = {p.name for p in daemon.inbox.iterdir() if p.name in names}
    claimed = [p for p in (daemon.inbox / ".claimed").iterdir()]
    assert done | left == set(names) and not claimed
    assert daemon.events()[-1]["event"] == "daemon.stopped"


def test_status_works_with_and_without_the_daemon(daemon: RunningDaemon):
    """`status` and `status --json` answer while the daemon runs and after it stopped."""
    h = hierarchy(slot=60)
    drop(daemon.inbox, "s.pem", h.chain_pem + h.leaf.key_pem())
    daemon.wait_for("drop.accepted", file="s.pem")
    live = json.loads(daemon.cli("status", "--json").stdout)
    assert set(live) == {"certificates", "held", "services"}
    cert = live["certificates"][0]
    assert cert["status"] == "unused" and cert["key"] == {"type": "RSA", "bits": 2048}
    assert cert["sans"] == ["mail.example.test"] and cert["not_after"].endswith("Z")
    assert "s" in daemon.cli("status").stdout
    daemon.stop()
    assert json.loads(daemon.cli("status", "--json").stdout) == live
    snapshot = json.loads((daemon.state / "status.json").read_text())
    assert snapshot["certificates"] == live["certificates"]


def test_a_burst_costs_few_status_json_rewrites(daemon: RunningDaemon):
    """status.json is rewritten once per burst, not once per drop."""
    writes = []
    stop = threading.Event()

    def watch() -> None:
        last = None
        while not stop.is_set():
            try:
                ino = (daemon.state / "status.json").stat().st_ino
            except FileNotFoundError:
                ino = None
            if ino != last and ino is not None:
                writes.append(ino)
                last = ino
            time.sleep(0.002)

    watcher = threading.Thread(target=watch)
    watcher.start()
    try:
        count = 30
        for i in range(count):
            h = hierarchy(slot=70 + i)
            (daemon.inbox / f".b{i}.part").write_bytes(h.chain_pem + h.leaf.key_pem())
        for i in range(count):
            (daemon.inbox / f".b{i}.part").rename(daemon.inbox / f"b{i}.pem")
        for i in range(count):
            daemon.wait_for("drop.accepted", file=f"b{i}.pem")
        time.sleep(0.3)
    finally:
        stop.set()
        watcher.join()
    assert 1 <= len(writes) <= 6, writes
