"""Full and read-only file systems under a real daemon: it degrades, says so, keeps every
drop claimed, and finishes them all by itself once the fault clears (no restart).

The state folder and the inbox are small tmpfs mounts filled with a filler file, or a
bind mount remounted read-only (root only; unmounted in ``finally``).
"""

from __future__ import annotations

import json
import sqlite3
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from support import pkitools
from support.daemon import RunningDaemon, drop
from support.faults import (
    NotifySocket,
    fill,
    free,
    need_root,
    read_only_over,
    tmpfs,
    writable_alias,
)

FINAL = ("drop.accepted", "drop.held", "drop.rejected")


def valid_drop(slot: int) -> bytes:
    leaf = pkitools.issue(f"fault{slot}.example.test", pkitools.rsa_key(50 + slot % 4))
    return leaf.pem + leaf.key_pem()


def stderr_events(d: RunningDaemon) -> list[dict[str, Any]]:
    found = []
    for line in (d.root / "daemon.stderr").read_text(errors="replace").splitlines():
        if line.startswith("{"):
            found.append(json.loads(line))
    return found


def wait_said(d: RunningDaemon, event: str, timeout: float = 15) -> dict[str, Any]:
    """``event`` from the status log, or from stderr when the log could not take it
    (a full tmpfs still takes lines into the log's last, partly used page)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for e in [*d.events(), *stderr_events(d)]:
            if e.get("event") == event:
                return e
        time.sleep(0.05)
    raise AssertionError(f"no {event} in the log or on stderr within {timeout} s")


def finals(d: RunningDaemon) -> dict[str, list[str]]:
    """file -> every final event it got (exactly one each is the contract)."""
    seen: dict[str, list[str]] = {}
    for e in d.events():
        if e["event"] in FINAL:
            seen.setdefault(e["file"], []).append(e["event"])
    return seen


def wait_all(d: RunningDaemon, files: list[str], timeout: float = 30) -> dict[str, list[str]]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        seen = finals(d)
        if all(f in seen for f in files):
            return seen
        time.sleep(0.05)
    raise AssertionError(f"not all of {files} ended within {timeout} s: {finals(d)}")


def assert_sound(d: RunningDaemon) -> None:
    """Every status-log line parses (none torn) and the database passes its check."""
    for number, line in enumerate(d.log_path.read_bytes().splitlines(), 1):
        if line.strip():
            try:
                json.loads(line)
            except ValueError:
                raise AssertionError(f"status.log line {number} is torn: {line[:80]!r}") from None
    db = sqlite3.connect(d.state / "inventory.sqlite3")
    try:
        assert db.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
    finally:
        db.close()


def test_full_state_degrades_then_finishes_every_drop_when_space_returns(
    daemon_factory: Callable[..., RunningDaemon], tmp_path: Path
) -> None:
    """state/ on a full tmpfs: daemon.degraded (on stderr if the log cannot take it), the
    drops stay claimed, watchdog pings go on; freed, daemon.recovered and every drop
    accepted once, no torn log line, the database intact."""
    need_root()
    notify = NotifySocket(tmp_path / "notify.sock")
    try:
        with tmpfs(tmp_path / "state", "4m"):
            d = daemon_factory(env=notify.env(0.5))
            d.start()
            drop(d.inbox, "before.pem", valid_drop(0))
            d.wait_for("drop.accepted", file="before.pem")
            fill(d.state)
            files = [f"full-{i}.pem" for i in range(5)]
            for i, name in enumerate(files):
                drop(d.inbox, name, valid_drop(i + 1))
            degraded = wait_said(d, "daemon.degraded")
            assert degraded["errno"] == "ENOSPC" and str(d.state) in degraded["path"]
            window = time.monotonic()
            time.sleep(2.0)
            assert not set(files) & set(finals(d)), "a drop ended while nothing could be written"
            held = {p.name.split(".", 1)[1] for p in (d.inbox / ".claimed").iterdir()}
            assert held | {p.name for p in d.inbox.iterdir()} >= set(files)
            assert notify.pings_between(window, time.monotonic()) >= 2
            free(d.state)
            d.wait_for("daemon.recovered", timeout=40)
            seen = wait_all(d, files)
            assert all(seen[f] == ["drop.accepted"] for f in files), seen
            assert [e["event"] for e in d.events()].count("daemon.degraded") == 1
            assert d.stop() == 0
            assert_sound(d)
            print(json.dumps({"state_full": {"drops": len(files), "accounted": len(seen) - 1}}))
    finally:
        notify.close()


def test_full_inbox_keeps_rejections_claimed_until_their_reason_can_be_written(
    daemon_factory: Callable[..., RunningDaemon], tmp_path: Path
) -> None:
    """The inbox's file system full: the reason files cannot be written, so the drops stay
    claimed and unacknowledged; freed, each is rejected once with its reason file."""
    need_root()
    with tmpfs(tmp_path / "inbox", "1m"):
        d = daemon_factory()
        d.start()
        files = [f"junk-{i}.txt" for i in range(4)]
        for name in files:
            drop(d.inbox, f".{name}.part", b"not a certificate at all\n")
        (d.inbox / "rejected").mkdir(exist_ok=True)
        fill(d.inbox)
        for name in files:
            (d.inbox / f".{name}.part").rename(d.inbox / name)  # a rename needs no space
        degraded = d.wait_for("daemon.degraded", timeout=15)
        assert degraded["errno"] == "ENOSPC" and str(d.inbox) in degraded["path"]
        time.sleep(1.5)
        assert not set(files) & set(finals(d))
        free(d.inbox)
        d.wait_for("daemon.recovered", timeout=40)
        seen = wait_all(d, files)
        assert all(seen[f] == ["drop.rejected"] for f in files), seen
        for name in files:
            reason = json.loads((d.inbox / "rejected" / f"{name}.reason.json").read_text())
            assert reason["code"] == "unsupported_content"
        assert not list((d.inbox / ".claimed").iterdir())
        assert d.stop() == 0
        assert_sound(d)
        print(json.dumps({"inbox_full": {"drops": len(files), "accounted": len(seen)}}))


def test_read_only_inbox_leaves_drops_unclaimed_and_takes_them_once_writable(
    daemon_factory: Callable[..., RunningDaemon], tmp_path: Path
) -> None:
    """The inbox read-only for the daemon (uploads still arrive through a writable path):
    claims fail with EROFS, daemon.degraded, the drops wait unacknowledged; writable
    again, every one is accepted without a restart."""
    d = daemon_factory()
    d.inbox.mkdir(mode=0o700)
    d.start()
    files = [f"ro-in-{i}.pem" for i in range(4)]
    with writable_alias(d.inbox, tmp_path / "upload") as upload:
        with read_only_over(d.inbox):
            for i, name in enumerate(files):
                drop(upload, name, valid_drop(i + 20))
            degraded = d.wait_for("daemon.degraded", timeout=15)
            assert degraded["errno"] == "EROFS"
            time.sleep(1.0)
            assert not set(files) & set(finals(d))
            assert {p.name for p in upload.iterdir()} >= set(files)
        d.wait_for("daemon.recovered", timeout=40)
        seen = wait_all(d, files)
    assert all(seen[f] == ["drop.accepted"] for f in files), seen
    assert d.stop() == 0
    assert_sound(d)
    print(json.dumps({"inbox_read_only": {"drops": len(files), "accounted": len(seen)}}))


def test_read_only_state_degrades_answers_the_cli_in_one_line_and_recovers(
    daemon_factory: Callable[..., RunningDaemon], tmp_path: Path
) -> None:
    """state/ turned read-only under the daemon: request drops cannot write their CSR
    (EROFS), so they stay claimed, and a CLI command gets one line and exit 1; writable
    again, every request is made without a restart. With no daemon, the CLI (and `run`)
    on the read-only state say so in one line."""
    d = daemon_factory()
    d.start()
    files = [f"ro{i}.request.toml" for i in range(3)]
    with read_only_over(d.state):
        for i, name in enumerate(files):
            drop(d.inbox, name, f"cn = 'ro{i}.example.test'\n".encode())
        degraded = wait_said(d, "daemon.degraded")
        assert degraded["errno"] == "EROFS"
        asked = d.cli("csr", "ro-request", "--cn", "ro.example.test", check=False)
        assert asked.returncode == 1 and asked.stderr.count("\n") == 1, asked.stderr
        assert "Traceback" not in asked.stderr
        time.sleep(1.0)
        assert not set(files) & set(finals(d))
    d.wait_for("daemon.recovered", timeout=40)
    seen = wait_all(d, files)
    assert all(seen[f] == ["drop.accepted"] for f in files), seen
    assert {p.name for p in (d.state / "outbox").iterdir()} >= {"ro0.csr", "ro1.csr", "ro2.csr"}
    assert d.stop() == 0
    assert_sound(d)
    with read_only_over(d.state):
        for args in (("csr", "alone", "--cn", "alone.example.test"), ("run",)):
            alone = d.cli(*args, check=False)
            assert alone.returncode == 1 and alone.stderr.count("\n") == 1, alone.stderr
            assert alone.stderr.startswith("certdrop: ") and "Traceback" not in alone.stderr
    print(json.dumps({"state_read_only": {"drops": len(files), "accounted": len(seen)}}))
