"""Costly drops against a real daemon: refused in seconds, the next drop still accepted, the
daemon's memory bounded, and what slips past the structural checks bounded in the child.

The daemon runs under RLIMIT_AS (512 MiB; MALLOC_ARENA_MAX=2 keeps glibc's per-thread
arenas from reserving that much address space unused), so a regression fails the test
instead of taking the machine down.
"""

from __future__ import annotations

import json
import signal
import sys
import time
from collections.abc import Callable
from pathlib import Path

from support import costly, pkitools
from support.daemon import RunningDaemon, drop
from support.faults import NotifySocket, children, limit_memory, peak_rss_mib

MEMORY_MIB = 512
BOUNDED = {"MALLOC_ARENA_MAX": "2"}


def valid_drop(slot: int) -> bytes:
    leaf = pkitools.issue(f"ok{slot}.example.test", pkitools.rsa_key(40 + slot % 4))
    return leaf.pem + leaf.key_pem()


def final(d: RunningDaemon, file: str, timeout: float) -> dict[str, object]:
    """The drop's final event (accepted, held or rejected) within ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for event in d.events():
            if event.get("file") == file and event["event"] in (
                "drop.accepted", "drop.held", "drop.rejected"
            ):
                return event
        assert d.proc is not None and d.proc.poll() is None, "the daemon died"
        time.sleep(0.02)
    raise AssertionError(f"no final event for {file} within {timeout} s")


def test_each_costly_file_is_refused_fast_and_the_next_drop_accepted(
    daemon_factory: Callable[..., RunningDaemon],
) -> None:
    """Every file of the catalogue ends rejected with its code within 5 s, a valid drop
    made right after it is accepted within 5 s, and peak memory stays under 512 MiB."""
    d = daemon_factory("[intake]\nmax_file_bytes = 4194304\n", env=BOUNDED)
    d.preexec = limit_memory(MEMORY_MIB)
    d.start()
    figures = []
    for number, item in enumerate(costly.catalogue()):
        started = time.monotonic()
        drop(d.inbox, item.name, item.data)
        drop(d.inbox, f"ok-{number}.pem", valid_drop(number))
        refused = final(d, item.name, 5)
        refused_s = time.monotonic() - started
        accepted = final(d, f"ok-{number}.pem", 5)
        assert refused["event"] == "drop.rejected" and refused["code"] == item.code, refused
        assert accepted["event"] == "drop.accepted", accepted
        figures.append({"file": item.what, "rejected_s": round(refused_s, 3)})
    assert d.proc is not None
    daemon_peak = peak_rss_mib(d.proc.pid)
    child_peak = max((peak_rss_mib(pid) for pid in children(d.proc.pid)), default=0.0)
    print(json.dumps({"costly": figures, "daemon_peak_rss_mib": daemon_peak,
                      "child_peak_rss_mib": child_peak}))
    assert daemon_peak < MEMORY_MIB and child_peak < MEMORY_MIB
    assert not [e for e in d.events() if e["event"] == "daemon.job_failed"]
    assert d.stop() == 0


def test_what_passes_the_checks_is_bounded_in_the_child_while_the_daemon_carries_on(
    daemon_factory: Callable[..., RunningDaemon], tmp_path: Path
) -> None:
    """With the structural limit raised, a 10^9-iteration MAC reaches the child: it is
    rejected processing_failed at limits.open_seconds, and meanwhile watchdog pings go on,
    a command through the control socket answers and other drops are accepted."""
    notify = NotifySocket(tmp_path / "notify.sock")
    try:
        config = (
            "[limits]\nmax_kdf_iterations = 10000000000\n"
            "max_kdf_total_iterations = 10000000000\nopen_seconds = 4\n"
        )
        d = daemon_factory(config, env={**BOUNDED, **notify.env(0.5)})
        d.preexec = limit_memory(MEMORY_MIB)
        d.start()
        started = time.monotonic()
        drop(d.inbox, "slow.p12", costly.with_mac_iterations(costly.pkcs12_file(b""), 10**9))
        time.sleep(0.5)  # the child is deriving now
        for i in range(3):
            drop(d.inbox, f"meanwhile-{i}.pem", valid_drop(i))
        d.cli("csr", "meanwhile-csr", "--cn", "m.example.test")  # through the control socket
        rejected = final(d, "slow.p12", 15)
        took = time.monotonic() - started
        assert rejected["event"] == "drop.rejected" and rejected["code"] == "processing_failed"
        assert "limits.open_seconds = 4" in str(rejected["reason"])
        # Ordering, not timing: all of it was done while the child still derived.
        story = [
            e.get("file") or e.get("name")
            for e in d.events()
            if e["event"] in ("drop.accepted", "drop.rejected", "csr.created")
        ]
        meanwhile = {"meanwhile-0.pem", "meanwhile-1.pem", "meanwhile-2.pem", "meanwhile-csr"}
        assert meanwhile <= set(story[: story.index("slow.p12")]), story
        pings = notify.pings_between(started, started + took)
        print(json.dumps({"sandboxed_rejected_s": round(took, 2), "watchdog_pings": pings}))
        assert pings >= took / 0.25 / 2  # a ping every 0.25 s asked; half is plenty under load
        # The child is replaced: the next drop that needs it opens fine.
        drop(d.inbox, "after.p12", costly.pkcs12_file(b""))
        assert final(d, "after.p12", 10)["event"] == "drop.accepted"
        assert d.stop() == 0
    finally:
        notify.close()


def test_kill_during_a_costly_drop_then_restart_finishes_it_bounded(
    daemon_factory: Callable[..., RunningDaemon],
) -> None:
    """kill -9 while the child derives: the next start is ready within 5 s and the drop
    gets its final event (from the bounded child) instead of freezing every start."""
    config = (
        "[limits]\nmax_kdf_iterations = 10000000000\n"
        "max_kdf_total_iterations = 10000000000\nopen_seconds = 3\n"
    )
    d = daemon_factory(config, env=BOUNDED)
    d.start()
    drop(d.inbox, "poison.p12", costly.with_mac_iterations(costly.pkcs12_file(b""), 10**9))
    assert d.proc is not None
    child = _children_within(d.proc.pid, 10)
    assert child, "the bounded child never started"
    time.sleep(0.5)  # well into the derivation
    d.kill()  # SIGKILL; the child dies with it (PR_SET_PDEATHSIG)
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline and not all(_gone(pid) for pid in child):
        time.sleep(0.05)
    assert all(_gone(pid) for pid in child), child
    started = time.monotonic()
    d.start(timeout=5)
    ready = time.monotonic() - started
    outcome = final(d, "poison.p12", 3 + 10)
    assert outcome["event"] == "drop.rejected" and outcome["code"] == "processing_failed"
    drop(d.inbox, "fine.pem", valid_drop(9))
    assert final(d, "fine.pem", 5)["event"] == "drop.accepted"
    print(json.dumps({"ready_after_kill_s": round(ready, 2)}))
    assert d.stop() == 0


def _children_within(pid: int, seconds: float) -> list[int]:
    deadline = time.monotonic() + seconds
    while not (found := children(pid)) and time.monotonic() < deadline:
        time.sleep(0.05)
    return found


def _gone(pid: int) -> bool:
    """Exited: no /proc entry, or a zombie waiting for a parent that is gone too."""
    try:
        return "zombie" in Path(f"/proc/{pid}/status").read_text()
    except FileNotFoundError:
        return True


# Kills the daemon, in its own process, as it takes the drop named deadly.pem: stands in
# for what no real file is known to do to certdrop (a native crash in a library, the OOM
# killer choosing the daemon), so the guard against such a poison drop can be shown.
DEADLY = """
import os, signal, sys
from certdrop import cli
from certdrop.intake import take

real = take.Taker.take

def take_or_die(self, pieces, file, work):
    if file == "deadly.pem":
        os.kill(os.getpid(), signal.SIGKILL)
    return real(self, pieces, file, work)

take.Taker.take = take_or_die
sys.exit(cli.main(sys.argv[1:]))
"""


def test_a_drop_that_kills_the_daemon_twice_in_its_own_process_is_rejected_at_the_third_start(
    daemon_factory: Callable[..., RunningDaemon], tmp_path: Path
) -> None:
    """The daemon died twice while its own process had the drop (once parsing it in
    place, once after the bounded child opened it): the third start rejects it at once,
    naming what was seen, never opening it again; the next drop is accepted."""
    script = tmp_path / "deadly.py"
    script.write_text(DEADLY)
    d = daemon_factory("", env=BOUNDED)
    d.program = [sys.executable, str(script)]
    d.start()
    drop(d.inbox, "deadly.pem", valid_drop(21))
    for _ in range(2):
        assert d.proc is not None
        assert d.proc.wait(15) == -signal.SIGKILL  # the drop killed it
        d.stderr.close()
        d.proc = None
        d.start(timeout=15)  # the claimed drop is taken up again after daemon.started
    outcome = final(d, "deadly.pem", 10)
    assert outcome["event"] == "drop.rejected" and outcome["code"] == "processing_failed"
    assert "certdrop stopped 2 times while processing this file (" in str(outcome["reason"])
    reason = json.loads((d.inbox / "rejected" / "deadly.pem.reason.json").read_text())
    assert reason["code"] == "processing_failed"
    drop(d.inbox, "fine.pem", valid_drop(22))
    assert final(d, "fine.pem", 5)["event"] == "drop.accepted"
    assert d.stop(signal.SIGTERM) == 0


def test_runs_killed_while_the_child_opens_a_drop_do_not_count_against_it(
    daemon_factory: Callable[..., RunningDaemon],
) -> None:
    """Killed twice from outside while the bounded child derived: not the file's doing,
    so the third start does not reject it as a poison drop; the child opens it again and
    its own bound decides (here: limits.open_seconds)."""
    config = (
        "[limits]\nmax_kdf_iterations = 10000000000\n"
        "max_kdf_total_iterations = 10000000000\nopen_seconds = 3\n"
    )
    d = daemon_factory(config, env=BOUNDED)
    data = costly.with_mac_iterations(costly.pkcs12_file(b""), 10**10)
    d.start()
    drop(d.inbox, "twice.p12", data)
    for _ in range(2):
        time.sleep(1.0)
        d.kill()
        d.start(timeout=5)
    outcome = final(d, "twice.p12", 3 + 10)
    assert outcome["event"] == "drop.rejected" and outcome["code"] == "processing_failed"
    assert "limits.open_seconds = 3" in str(outcome["reason"]), outcome["reason"]
    assert "certdrop stopped" not in str(outcome["reason"])
    assert d.stop(signal.SIGTERM) == 0
