"""Operations: SIGHUP reloads, logrotate, the systemd notify protocol and watchdog, and the
Prometheus endpoint, each against the real thing (a `certdrop run` process, the logrotate
binary, an AF_UNIX datagram socket as NOTIFY_SOCKET, HTTP on 127.0.0.1).
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
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from certdrop import config as configuration
from certdrop.daemon import app, metrics, notify, watcher
from certdrop.daemon import state as daemon_state
from certdrop.daemon.worker import Worker
from certdrop.errors import ConfigError
from support.daemon import ROOT, RunningDaemon, drop
from support.pkitools import ec_key, hierarchy, issue
from support.process import free_port, need

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


class NotifySocket:
    """An AF_UNIX datagram socket standing in for systemd's NOTIFY_SOCKET."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sock.bind(os.fspath(path))
        self.sock.settimeout(0.05)
        self.messages: list[tuple[float, str]] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._read)
        self._thread.start()

    def _read(self) -> None:
        while not self._stop.is_set():
            try:
                data = self.sock.recv(4096)
            except TimeoutError:
                continue
            self.messages.append((time.monotonic(), data.decode()))

    def texts(self) -> list[str]:
        return [m for _, m in self.messages]

    def wait_for(self, text: str, timeout: float = 10) -> float:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for at, message in list(self.messages):
                if message.startswith(text):
                    return at
            time.sleep(0.01)
        raise AssertionError(f"no {text!r} among {self.texts()[-10:]}")

    def close(self) -> None:
        self._stop.set()
        self._thread.join()
        self.sock.close()


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
    reload = [m for _, m in notify_socket.messages[before:] if m != "WATCHDOG=1"]
    assert re.fullmatch(r"RELOADING=1\nMONOTONIC_USEC=\d+", reload[0]), reload
    notify_socket.wait_for("READY=1")
    assert [m for m in reload[1:] if m == "READY=1"] or "READY=1" in notify_socket.texts()[before:]

    assert d.stop() == 0
    assert notify_socket.texts()[-1] == "STOPPING=1" or "STOPPING=1" in notify_socket.texts()[-3:]


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
        time.sleep(0.6)
        quiet_since = time.monotonic()
        time.sleep(0.4)
        assert "job 'stuck reload' has run for" in (daemon.health() or "")
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


# --- Prometheus metrics -----------------------------------------------------------------------

SAMPLE = re.compile(r'([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{((?:[a-zA-Z_]\w*="(?:[^"\\\n]|\\.)*",?)*)\})? (\S+)')
LABEL = re.compile(r'([a-zA-Z_]\w*)="((?:[^"\\\n]|\\.)*)"')


def parse_exposition(text: str) -> dict[str, list[tuple[dict[str, str], float]]]:
    """A strict reading of the text format: every line is a comment or a valid sample."""
    families: dict[str, list[tuple[dict[str, str], float]]] = {}
    types: dict[str, str] = {}
    assert text.endswith("\n")
    for line in text.splitlines():
        if line.startswith("# TYPE "):
            _, _, name, kind = line.split(" ", 3)
            types[name] = kind
            continue
        if line.startswith("# HELP "):
            continue
        match = SAMPLE.fullmatch(line)
        assert match, f"not a valid sample line: {line!r}"
        name, labels, value = match.groups()
        assert name in types, f"{name} has no # TYPE"
        raw = dict(LABEL.findall(labels or ""))
        unescaped = {
            k: v.replace("\\n", "\n").replace('\\"', '"').replace("\\\\", "\\")
            for k, v in raw.items()
        }
        families.setdefault(name, []).append((unescaped, float(value)))
    return families


def scrape(port: int, path: str = "/metrics") -> tuple[int, str, str]:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=5) as resp:
            return resp.status, resp.headers["Content-Type"], resp.read().decode()
    except urllib.error.HTTPError as err:
        return err.code, err.headers["Content-Type"], err.read().decode()


def test_metrics_endpoint_serves_expiry_drops_services_and_held_pieces(
    daemon_factory: Callable[..., RunningDaemon], tmp_path: Path
) -> None:
    """With metrics.listen set, /metrics shows each certificate's expiry and start, the drop
    results, each service's state and the held pieces, in the text format, with hostile
    names escaped; other paths are 404."""
    port = free_port()
    d = daemon_factory(
        f'[metrics]\nlisten = "127.0.0.1:{port}"\n'
        '[services.web]\nrole = "https"\ncert_file = "svc/c.pem"\nkey_file = "svc/k.pem"\n'
    ).start()
    started = d.wait_for("metrics.started")
    assert started["listen"] == f"127.0.0.1:{port}"
    h = hierarchy("metrics.example.test", slot=70, leaf_key=ec_key(470))
    drop(d.inbox, "good.pem", h.chain_pem + h.leaf.key_pem())
    evil = issue('quo"te\\back\nslash', ec_key(471))
    drop(d.inbox, "evil.pem", evil.pem + evil.key_pem())
    drop(d.inbox, "lone.key", issue("lone", ec_key(472)).key_pem())
    drop(d.inbox, "junk.pem", b"junk")
    for name, event in (("good.pem", "drop.accepted"), ("evil.pem", "drop.accepted"),
                        ("lone.key", "drop.held"), ("junk.pem", "drop.rejected")):  # fmt: skip
        d.wait_for(event, file=name)

    deadline = time.monotonic() + 10
    while True:  # status.json and the page follow a burst within SNAPSHOT_MAX_DELAY
        code, kind, text = scrape(port)
        families = parse_exposition(text) if code == 200 else {}
        drops = {s[0]["result"]: s[1] for s in families.get("certdrop_drops_total", [])}
        if drops == {"accepted": 2, "held": 1, "rejected": 1}:
            break
        assert time.monotonic() < deadline, (code, text)
        time.sleep(0.1)
    assert kind == metrics.CONTENT_TYPE
    status = json.loads(d.cli("status", "--json").stdout)
    expiry = {s[0]["name"]: s for s in families["certdrop_certificate_expiration_timestamp_seconds"]}
    assert set(expiry) == {c["name"] for c in status["certificates"]} == {"good", "evil"}
    good = next(c for c in status["certificates"] if c["name"] == "good")
    assert expiry["good"][0] == {"name": "good", "subject": good["subject"],
                                 "issuer": good["issuer"], "status": "unused"}  # fmt: skip
    assert expiry["good"][1] == h.leaf.cert.not_valid_after_utc.timestamp()
    evil_subject = next(c["subject"] for c in status["certificates"] if c["name"] == "evil")
    assert expiry["evil"][0]["subject"] == evil_subject and '\\"' in evil_subject
    not_before = {s[0]["name"]: s[1] for s in families["certdrop_certificate_not_before_timestamp_seconds"]}
    assert not_before["good"] == h.leaf.cert.not_valid_before_utc.timestamp()
    states = {(s[0]["service"], s[0]["state"]): s[1] for s in families["certdrop_service_state"]}
    assert states == {("web", "ok"): 0, ("web", "pending"): 1, ("web", "failed"): 0}
    assert families["certdrop_held_pieces"] == [({}, 1.0)]
    assert abs(families["certdrop_snapshot_timestamp_seconds"][0][1] - time.time()) < 30
    assert scrape(port, "/")[0] == 404
    assert scrape(port, "/metrics?x=1")[0] == 200
    d.stop()
    with pytest.raises(OSError):
        socket.create_connection(("127.0.0.1", port), timeout=1).close()


def test_metrics_follow_a_reload_and_a_busy_port_is_reported_not_fatal(
    daemon_factory: Callable[..., RunningDaemon],
) -> None:
    """Off by default; a reload that sets metrics.listen starts the endpoint, one that
    moves it moves it, and a port already taken logs metrics.failed while drops go on."""
    d = daemon_factory().start()
    base = d.config_path.read_text()

    def reload_with(listen: str) -> None:
        d.config_path.write_text(base + f'[metrics]\nlisten = "{listen}"\n')
        d._seen = len(d.events())
        d.proc.send_signal(signal.SIGHUP)  # type: ignore[union-attr]
        d.wait_for("daemon.reloaded")

    assert "metrics.started" not in [e["event"] for e in d.events()]
    first, second = free_port(), free_port()
    reload_with(f"127.0.0.1:{first}")
    d.wait_for("metrics.started", listen=f"127.0.0.1:{first}")
    assert scrape(first)[0] == 200
    reload_with(f"localhost:{second}")
    d.wait_for("metrics.started", listen=f"localhost:{second}")
    assert scrape(second)[0] == 200
    with pytest.raises(OSError):
        socket.create_connection(("127.0.0.1", first), timeout=1).close()

    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        busy = taken.getsockname()[1]
        reload_with(f"127.0.0.1:{busy}")
        failed = d.wait_for("metrics.failed")
        assert f"127.0.0.1:{busy}" in failed["reason"] and failed["detail"]
    drop(d.inbox, "still.pem", full_drop(71))
    d.wait_for("drop.accepted", file="still.pem")
    assert d.stop() == 0


@pytest.mark.parametrize("listen", ["0.0.0.0:9810", "192.0.2.1:9810", "127.0.0.1", ":9810"])
def test_metrics_listen_off_loopback_is_a_config_error(listen: str) -> None:
    """metrics.listen must be a loopback host:port; anything else is refused by name."""
    with pytest.raises(ConfigError, match=r"metrics\.listen"):
        configuration.from_mapping({"metrics": {"listen": listen}}, base=Path("/tmp"), source="t")


def test_rendered_page_escapes_label_values() -> None:
    """Backslashes, quotes and newlines in label values are escaped as the format says,
    and a certificate without dates (a pending request) has no expiry sample."""
    snapshot: dict[str, Any] = {
        "certificates": [
            {"name": "a", "subject": 'CN=x"y\\z\nw', "issuer": "CN=i", "status": "unused",
             "not_before": "2026-01-01T00:00:00Z", "not_after": "2026-04-01T00:00:00Z"},
            {"name": "req", "subject": "CN=r", "issuer": None, "status": "requested",
             "not_before": None, "not_after": None},
        ],
        "held": [],
        "services": [],
    }  # fmt: skip
    text = metrics.render(snapshot, {"accepted": 1}, 1.0).decode()
    assert 'subject="CN=x\\"y\\\\z\\nw"' in text
    families = parse_exposition(text)
    assert [s[0]["name"] for s in families["certdrop_certificate_expiration_timestamp_seconds"]] == ["a"]
    assert families["certdrop_drops_total"][2] == ({"result": "rejected"}, 0.0)
