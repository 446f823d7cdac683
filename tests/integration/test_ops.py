"""Operations: SIGHUP and `certdrop reload`, logrotate, the systemd notify protocol and
watchdog, each against the real thing (a `certdrop run` process, the logrotate binary, an
AF_UNIX datagram socket as NOTIFY_SOCKET). The metrics endpoint: test_metrics.py.
"""

from __future__ import annotations

import collections
import gzip
import itertools
import json
import os
import re
import signal
import socket
import subprocess
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from certdrop import config as configuration
from certdrop.daemon import app, notify, preflight, watcher
from certdrop.daemon import state as daemon_state
from certdrop.daemon.control import ControlServer
from certdrop.daemon.worker import Worker
from support.daemon import ROOT, RunningDaemon, drop
from support.faults import NotifySocket
from support.pkitools import ec_key, hierarchy
from support.process import need

LOGROTATE_CONF = ROOT / "deploy" / "logrotate" / "certdrop"


def full_drop(slot: int, cn: str = "ops.example.test") -> bytes:
    h = hierarchy(cn, slot=slot, leaf_key=ec_key(400 + slot))
    return h.chain_pem + h.leaf.key_pem()


# --- SIGHUP ---------------------------------------------------------------------------------


def test_sighup_applies_a_good_config_and_keeps_the_old_one_for_a_bad_one(
    daemon: RunningDaemon,
) -> None:
    """SIGHUP with a valid file applies it; with a broken file, an unknown key or a moved
    inbox it logs daemon.reload_refused naming the problem and keeps the last good one."""
    base = daemon.config_path.read_text()
    daemon.config_path.write_text(base + "[intake]\nmax_file_bytes = 100\n")
    daemon.proc.send_signal(signal.SIGHUP)  # type: ignore[union-attr]
    daemon.wait_for("daemon.reloaded")
    drop(daemon.inbox, "big.pem", b"x" * 150)
    assert daemon.wait_for("drop.rejected", file="big.pem")["code"] == "too_large"

    broken = {
        "not TOML": (base + "[intake\n", "is not valid TOML"),
        "unknown key": (base + "[intake]\nmax_file_byts = 5\n", "intake.max_file_byts is not a known setting"),
        "bad value": (base + "[intake]\nmax_file_bytes = \"lots\"\n", "intake.max_file_bytes must be a number"),
        "moved inbox": (base.replace('inbox = "inbox"', 'inbox = "elsewhere"'), "inbox and state cannot change"),
    }  # fmt: skip
    for n, (text, message) in enumerate(broken.values()):
        daemon.config_path.write_text(text)
        daemon.proc.send_signal(signal.SIGHUP)  # type: ignore[union-attr]
        refused = daemon.wait_for("daemon.reload_refused")
        assert message in refused["reason"], refused
        assert str(daemon.config_path) in refused["reason"] or "cannot change" in message
        assert refused["detail"] == "the previous configuration stays in force"
        # Still the last good config (100 bytes), still running.
        drop(daemon.inbox, f"big{n}.pem", b"x" * 150)
        assert daemon.wait_for("drop.rejected", file=f"big{n}.pem")["code"] == "too_large"
        daemon._seen = len(daemon.events())
    assert daemon.proc is not None and daemon.proc.poll() is None
    assert not (daemon.root / "elsewhere").exists()


def test_reload_command_answers_with_the_outcome(daemon: RunningDaemon) -> None:
    """`certdrop reload` exits 0 naming what took effect; for a refused file (even one
    that does not parse) it exits 1 with the reasons in one line, the daemon logs
    daemon.reload_refused and keeps the old config; with no daemon it says so."""
    base = daemon.config_path.read_text()
    daemon.config_path.write_text(base + "[intake]\nmax_file_bytes = 100\n")
    done = daemon.cli("reload")
    assert done.stdout == f"reloaded {daemon.config_path} (services: none)\n"
    daemon.wait_for("daemon.reloaded")
    drop(daemon.inbox, "big.pem", b"x" * 150)
    assert daemon.wait_for("drop.rejected", file="big.pem")["code"] == "too_large"

    broken = {
        "not TOML": (base + "[intake\n", "is not valid TOML"),
        "unknown key": (base + "[intake]\nmax_file_byts = 5\n", "intake.max_file_byts is not a known setting"),
        "moved inbox": (base.replace('inbox = "inbox"', 'inbox = "elsewhere"'), "inbox and state cannot change"),
    }  # fmt: skip
    for n, (text, message) in enumerate(broken.values()):
        daemon._seen = len(daemon.events())
        daemon.config_path.write_text(text)
        done = daemon.cli("reload", check=False)
        assert done.returncode == 1, done
        assert done.stderr.startswith("certdrop: reload refused, the previous configuration stays: ")
        assert message in done.stderr and done.stderr.count("\n") == 1, done.stderr
        assert done.stdout == ""
        assert message in daemon.wait_for("daemon.reload_refused")["reason"]
        drop(daemon.inbox, f"big{n}.pem", b"x" * 150)
        assert daemon.wait_for("drop.rejected", file=f"big{n}.pem")["code"] == "too_large"
    assert daemon.stop() == 0
    done = daemon.cli("reload", check=False)
    assert done.returncode == 1
    assert done.stderr == (
        f"certdrop: no certdrop daemon answers on {daemon.state / 'control.sock'}: nothing to "
        "reload; start it (systemctl start certdrop)\n"
    )


# --- logrotate ------------------------------------------------------------------------------


def all_log_lines(state: Path) -> list[str]:
    """Every line of status.log and its rotated copies (plain and gzip), oldest first."""
    lines: list[str] = []
    for path in sorted(state.glob("status.log.*"), key=lambda p: -int(p.name.split(".")[2])):
        raw = gzip.decompress(path.read_bytes()) if path.name.endswith(".gz") else path.read_bytes()
        lines += raw.decode().splitlines()
    if (state / "status.log").exists():
        lines += (state / "status.log").read_text().splitlines()
    return lines


def test_logrotate_rotates_the_status_log_under_load_without_losing_a_line(
    daemon_factory: Callable[..., RunningDaemon], tmp_path: Path
) -> None:
    """The real logrotate, run with the shipped config (pointed at a temp state folder) six
    times while 80 drops flow, loses and tears no line: every drop's events are there once."""
    logrotate = need("logrotate")
    if os.geteuid() != 0:
        pytest.skip("the shipped config says 'create 0600 root root', which needs root")
    d = daemon_factory().start()
    conf = tmp_path / "logrotate.conf"
    conf.write_text(LOGROTATE_CONF.read_text().replace("/var/lib/certdrop/", f"{d.state}/"))
    assert f"{d.state}/status.log {{" in conf.read_text()
    names = [f"r{i:02d}.pem" for i in range(80)]
    material = {n: full_drop(i) if i % 4 else b"junk" for i, n in enumerate(names)}

    def rotate_while_dropping() -> None:
        for i, name in enumerate(names):
            drop(d.inbox, name, material[name])
            time.sleep(0.01)
            if i % 13 == 12:
                done = subprocess.run(
                    [logrotate, "-f", "-s", str(tmp_path / "logrotate.state"), str(conf)],
                    capture_output=True, text=True, timeout=30,
                )  # fmt: skip
                assert done.returncode == 0, done.stderr

    writer = threading.Thread(target=rotate_while_dropping)
    writer.start()
    writer.join(120)
    deadline = time.monotonic() + 30
    while True:
        events = [json.loads(line) for line in all_log_lines(d.state)]
        finals = collections.Counter(e["file"] for e in events if e["event"].startswith("drop."))
        if len(finals) == len(names):
            break
        assert time.monotonic() < deadline, sorted(set(names) - set(finals))
        time.sleep(0.05)
    assert d.stop() == 0

    lines = all_log_lines(d.state)
    events = [json.loads(line) for line in lines]  # a torn line would fail here
    rotated = sorted(p.name for p in d.state.glob("status.log.*"))
    kinds = collections.Counter(e["event"] for e in events)
    finals = collections.Counter(e["file"] for e in events if e["event"].startswith("drop."))
    accepted = [n for i, n in enumerate(names) if i % 4]
    assert finals == dict.fromkeys(names, 1)
    assert kinds["drop.accepted"] == len(accepted) and kinds["cert.imported"] == len(accepted)
    assert kinds["drop.rejected"] == len(names) - len(accepted)
    assert kinds["daemon.started"] == 1 and kinds["daemon.stopped"] == 1
    assert len(rotated) == 6 and any(r.endswith(".gz") for r in rotated)
    files_with_drops = sum(
        '"drop.' in (gzip.decompress(p.read_bytes()).decode() if p.suffix == ".gz" else p.read_text())
        for p in d.state.glob("status.log*")
    )
    assert files_with_drops >= 4  # the drops really were spread over rotations
    assert os.stat(d.state / "status.log").st_mode & 0o777 == 0o600
    print(f"\nlogrotate: {len(rotated)} rotations, {len(lines)} lines, none lost or torn")


# --- systemd notify and watchdog --------------------------------------------------------------


@pytest.fixture
def notify_socket(tmp_path: Path) -> Iterator[NotifySocket]:
    s = NotifySocket(tmp_path / "notify.sock")
    yield s
    s.close()


def test_daemon_speaks_the_systemd_notify_protocol(
    daemon_factory: Callable[..., RunningDaemon], notify_socket: NotifySocket
) -> None:
    """Under a NOTIFY_SOCKET with WATCHDOG_USEC the daemon sends READY=1, WATCHDOG=1 every
    WATCHDOG_USEC/2, RELOADING=1 then READY=1 around a SIGHUP, and STOPPING=1 on SIGTERM."""
    d = daemon_factory(env={"NOTIFY_SOCKET": str(notify_socket.path), "WATCHDOG_USEC": "200000"})
    d.start()
    ready = notify_socket.wait_for("READY=1")
    time.sleep(1.0)
    pings = [at for at, m in notify_socket.messages if m == "WATCHDOG=1" and at > ready]
    assert 5 <= len(pings) <= 12, len(pings)  # one per 0.1 s, give or take a busy CPU
    assert max(b - a for a, b in itertools.pairwise(pings)) < 0.35

    before = len(notify_socket.messages)
    d.proc.send_signal(signal.SIGHUP)  # type: ignore[union-attr]
    d.wait_for("daemon.reloaded")
    notify_socket.wait_for("READY=1", after=before)  # the reload's, not the start-up's
    reload = [m for m in notify_socket.texts()[before:] if m != "WATCHDOG=1"]
    assert re.fullmatch(r"RELOADING=1\nMONOTONIC_USEC=\d+", reload[0]), reload
    assert reload[1] == "READY=1", reload

    before = len(notify_socket.messages)
    assert d.stop() == 0
    notify_socket.wait_for("STOPPING=1", after=before)


def test_ready_waits_for_the_start_up_reconcile(
    daemon_factory: Callable[..., RunningDaemon], notify_socket: NotifySocket, tmp_path: Path
) -> None:
    """READY=1 comes only after the start-up reconcile: while the reload of a service
    whose files drifted is held back, the daemon runs (daemon.started) but is not READY;
    once the reload ends, service.applied is logged and then READY=1 is sent."""
    hold = tmp_path / "hold"
    (tmp_path / "svc").mkdir()
    reload = ["sh", "-c", f"while [ -e {hold} ]; do sleep 0.05; done"]
    d = daemon_factory(
        '[services.web]\nrole = "https"\ncert_file = "svc/c.pem"\nkey_file = "svc/k.pem"\n'
        f"reload = {json.dumps(reload)}\n",
        env={"NOTIFY_SOCKET": str(notify_socket.path)},
    ).start()
    drop(d.inbox, "web.pem", full_drop(72))
    d.wait_for("drop.accepted", file="web.pem")
    d.cli("assign", "web", "web")
    assert d.stop() == 0

    notify_socket.messages.clear()
    hold.touch()
    (tmp_path / "svc" / "c.pem").unlink()  # drifted: the start-up reconcile redeploys it
    d.start()
    time.sleep(1.0)
    assert "READY=1" not in notify_socket.texts()
    assert not [e for e in d.events()[d._seen :] if e["event"] == "service.applied"]
    starting = d.cli("check", "--daemon", check=False)  # the health answer says so too
    assert starting.returncode == 1, starting.stdout
    assert "WARNING daemon: the daemon (pid" in starting.stdout and "still starting" in starting.stdout
    hold.unlink()
    notify_socket.wait_for("READY=1")
    applied = [e for e in d.events()[d._seen :] if e["event"] == "service.applied"]
    assert [e["service"] for e in applied] == ["web"]  # logged before READY=1 went out
    assert d.stop() == 0


def test_watchdog_pid_of_another_process_means_no_pings(
    daemon_factory: Callable[..., RunningDaemon], notify_socket: NotifySocket
) -> None:
    """WATCHDOG_PID naming another process (the watchdog is meant for it) stops the pings,
    as sd_watchdog_enabled() does; READY=1 still goes out."""
    env = {"NOTIFY_SOCKET": str(notify_socket.path), "WATCHDOG_USEC": "100000", "WATCHDOG_PID": "1"}
    d = daemon_factory(env=env).start()
    notify_socket.wait_for("READY=1")
    time.sleep(0.5)
    assert "WATCHDOG=1" not in notify_socket.texts()
    d.stop()


def test_abstract_notify_socket_is_reached(monkeypatch: pytest.MonkeyPatch) -> None:
    """An abstract NOTIFY_SOCKET ("@name", as systemd may pass) gets the message too."""
    name = f"certdrop-test-{os.getpid()}-{time.monotonic_ns()}"
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
        sock.bind("\0" + name)
        sock.settimeout(5)
        monkeypatch.setenv("NOTIFY_SOCKET", "@" + name)
        notify.notify("READY=1")
        assert sock.recv(100) == b"READY=1"


class StallingDaemon(app.Daemon):
    """A daemon that calls a job stuck after 0.3 s (its real budget is minutes)."""

    def stall_seconds(self) -> float:
        return 0.3


def test_watchdog_goes_quiet_while_the_worker_is_stuck(
    tmp_path: Path, notify_socket: NotifySocket, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The pings come from a timer but vouch for the worker: a job stuck past its budget
    silences them (and logs daemon.unhealthy once), as do a replaced inbox and a dead
    watcher; when the job ends they resume."""
    monkeypatch.setenv("NOTIFY_SOCKET", str(notify_socket.path))
    monkeypatch.setenv("WATCHDOG_USEC", "100000")
    (tmp_path / "certdrop.toml").write_text('inbox = "inbox"\nstate = "state"\n')
    config = configuration.load(tmp_path / "certdrop.toml", tmp_path)
    daemon_state.prepare_folders(config)
    ctx, sink = daemon_state.open_context(config)
    worker = Worker(ctx)
    daemon = StallingDaemon(ctx, worker, [])
    worker.start()
    daemon.observer = watcher.start(config.inbox, worker.submit_drop)
    release = threading.Event()
    stop_pings = daemon._start_watchdog()
    try:
        time.sleep(0.4)
        assert notify_socket.texts().count("WATCHDOG=1") >= 4
        assert daemon.health() is None

        job = worker.submit("stuck reload", lambda: release.wait(10))
        deadline = time.monotonic() + 10
        while daemon.health() is None and time.monotonic() < deadline:
            time.sleep(0.02)
        assert "job 'stuck reload' has run for" in (daemon.health() or "")
        time.sleep(0.3)  # a ping sent just before the stall showed is read by now
        quiet_since = time.monotonic()
        time.sleep(0.4)
        assert not [at for at, m in notify_socket.messages if m == "WATCHDOG=1" and at > quiet_since]
        assert any(m.startswith("STATUS=unhealthy: the job 'stuck reload'") for m in notify_socket.texts())

        release.set()
        job.done.wait(5)
        resumed = time.monotonic()
        time.sleep(0.3)
        assert [at for at, m in notify_socket.messages if m == "WATCHDOG=1" and at > resumed]

        inbox_stat = config.inbox.stat()
        daemon.inbox_id = (inbox_stat.st_dev, inbox_stat.st_ino)
        config.inbox.rename(tmp_path / "moved-inbox")
        config.inbox.mkdir()
        assert "was removed or replaced" in (daemon.health() or "")
        daemon.observer.stop()
        daemon.observer.join(5)
        assert daemon.health() == "the inbox watcher has stopped"
    finally:
        release.set()
        stop_pings.set()
        worker.queue.put(None)
        assert worker.thread is not None
        worker.thread.join(5)
        if daemon.observer.is_alive():
            daemon.observer.stop()
            daemon.observer.join(5)
        ctx.inventory.close()
        sink.close()
    unhealthy = [e for e in map(json.loads, config.status_log.read_text().splitlines())
                 if e["event"] == "daemon.unhealthy"]  # fmt: skip
    assert [e["reason"].split(" has run")[0] for e in unhealthy][:1] == ["the job 'stuck reload'"]


def test_health_is_answered_while_the_worker_is_stuck(tmp_path: Path) -> None:
    """`check --daemon` asks over the control socket and the control thread answers (not
    the worker): healthy at first, CRITICAL naming the job once the worker is stuck past
    its budget, and a daemon that has not finished starting is a WARNING."""
    (tmp_path / "certdrop.toml").write_text('inbox = "inbox"\nstate = "state"\n')
    config = configuration.load(tmp_path / "certdrop.toml", tmp_path)
    daemon_state.prepare_folders(config)
    ctx, sink = daemon_state.open_context(config)
    worker = Worker(ctx)
    daemon = StallingDaemon(ctx, worker, [])
    worker.start()
    daemon.observer = watcher.start(config.inbox, worker.submit_drop)
    control = ControlServer(
        config.state / "control.sock", ctx, worker, {"health": daemon._health_request}
    )
    control.start()
    release = threading.Event()
    try:
        starting = preflight.daemon_health(config)
        assert starting.level == "warning" and "still starting" in starting.detail
        daemon.ready.set()
        assert preflight.daemon_health(config).level == "ok"
        worker.submit("stuck renewal", lambda: release.wait(10))
        time.sleep(0.6)
        stuck = preflight.daemon_health(config)
        assert stuck.level == "critical", stuck
        assert "is unhealthy: the job 'stuck renewal' has run for" in stuck.detail
    finally:
        release.set()
        control.close()
        worker.stop()
        daemon.observer.stop()
        daemon.observer.join(5)
        ctx.inventory.close()
        sink.close()


def test_stall_budget_covers_the_slowest_legitimate_job() -> None:
    """The budget is the floor plus the renewal timeout plus twice every reload and probe
    timeout (a deploy, then its rollback)."""
    config = configuration.from_mapping(
        {
            "renewal": {"timeout_seconds": 300},
            "services": {
                "web": {"role": "https", "cert_file": "/c", "key_file": "/k",
                        "reload_timeout_seconds": 30, "probe_timeout_seconds": 10},
            },
        },
        base=Path("/tmp"),
        source="test",
    )
    assert app.stall_seconds(config) == app.STALL_FLOOR_SECONDS + 300 + 2 * 40
