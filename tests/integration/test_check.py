"""`certdrop check` as a preflight and a Nagios plugin: each preflight failure, each exit
code (0 OK, 1 WARNING, 2 CRITICAL, 3 UNKNOWN), the plugin output and perfdata, --probe
against a real nginx and --daemon against a real daemon; and that it changes nothing."""

from __future__ import annotations

import datetime as dt
import json
import os
import re
import shutil
import sqlite3
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest

from certdrop import cli
from certdrop import config as configuration
from certdrop.daemon import state as daemon_state
from certdrop.services import reconcile as deploy
from certdrop.services.probe import wait_for_fingerprint
from support.daemon import RunningDaemon, drop
from support.nginx import Nginx
from support.pkitools import ec_key, issue, rsa_key
from support.process import free_port

CA = issue("Check Test Root", ec_key(660), ca=True)
SERVICE = '[services.web]\nrole = "https"\ncert_file = "svc/c.pem"\nkey_file = "svc/k.pem"\n'
# 'label'=value[UOM];[warn];[crit];[min];[max] (Monitoring Plugins guidelines)
PERFDATA = re.compile(r"'([^'=]+)'=(-?[0-9.]+)([a-zA-Z%]*);([0-9.:~@-]*);([0-9.:~@-]*);(-?[0-9.]*);(-?[0-9.]*)")


def in_use(
    root: Path, left: dt.timedelta, warn_days: str = "[30, 14]", extra: str = "", service: str = ""
) -> Path:
    """A state whose one service uses a 90-day certificate with ``left`` to live
    (``service``: more keys for it, ``extra``: more top-level keys)."""
    (root / "svc").mkdir(exist_ok=True)
    path = root / "certdrop.toml"
    service = SERVICE + service
    path.write_text(
        f'inbox = "inbox"\nstate = "state"\n{extra}[expiry]\nwarn_days = {warn_days}\n{service}'
    )
    now = dt.datetime.now(dt.UTC)
    cert = issue(
        "web.example.test", rsa_key(661), CA, sans=["web.example.test"],
        not_before=now + left - dt.timedelta(days=90), not_after=now + left,
    )  # fmt: skip
    config = configuration.load(path, root)
    old_umask = os.umask(0o077)
    try:
        daemon_state.prepare_folders(config)
        drop(config.inbox, "web.pem", cert.pem + cert.key_pem())
        ctx, sink = daemon_state.open_context(config)
        try:
            assert ctx.intake.process("web.pem") is not None
            results = deploy.assign(ctx, "web", ["web"])
            assert [r.state for r in results] == ["ok"], results
            daemon_state.write_status_json(config, ctx.inventory)
        finally:
            ctx.inventory.close()
            sink.close()
    finally:
        os.umask(old_umask)
    return path


def plain(root: Path, text: str) -> Path:
    """A config file with ``text`` after the inbox and state lines."""
    path = root / "certdrop.toml"
    path.write_text(f'inbox = "inbox"\nstate = "state"\n{text}')
    return path


def check(path: Path, capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str]:
    """Run `certdrop check` in process: its exit code and stdout (stderr must stay empty)."""
    code = cli.main(["--config", str(path), "check", *args])
    out, err = capsys.readouterr()
    assert err == "", err
    return code, out


def findings(path: Path, capsys: pytest.CaptureFixture[str], *args: str) -> dict[str, str]:
    """check --json's preflight findings that are not ok: check name -> level."""
    code, out = check(path, capsys, "--json", *args)
    data = json.loads(out)
    assert data["exit_code"] == code
    return {f["check"]: f["level"] for f in data["preflight"] if f["level"] != "ok"}


# --- exit codes from expiry --------------------------------------------------------------------


def test_an_empty_state_is_fine(tmp_path: Path, capsys: pytest.CaptureFixture[str]):
    """Without any state (no daemon ever ran) the check passes with exit 0."""
    code, out = check(plain(tmp_path, ""), capsys)
    assert code == 0
    assert out.startswith("CERTDROP OK - 0 certificate(s) in use | ")
    assert "'days_left'" not in out  # no certificate, no figure (not a fake 0)


def test_far_from_expiry_is_ok(tmp_path: Path, capsys: pytest.CaptureFixture[str]):
    """A certificate in use with 60 days left is fine: exit 0, and the JSON keeps its
    object and adds every preflight finding."""
    path = in_use(tmp_path, dt.timedelta(days=60))
    code, out = check(path, capsys, "--json")
    report = json.loads(out)
    assert code == 0 and report["status"] == "ok" and report["certificates"][0]["level"] == "ok"
    assert set(report) >= {"status", "exit_code", "checked_at", "certificates", "preflight"}
    checks = {f["check"] for f in report["preflight"]}
    assert {"config", "inbox", "state", "outbox", "trust.ca_bundle", "services.web"} <= checks
    assert all(f["level"] == "ok" for f in report["preflight"])
    assert report["services"][0]["state"] == "ok" and report["source"] == "inventory"


def test_within_a_threshold_is_a_warning_and_changes_nothing(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
):
    """20 days left with a 30-day threshold: exit 1, said in both outputs, and the check
    neither logs an event nor remembers the warning (that is the daemon's to give)."""
    path = in_use(tmp_path, dt.timedelta(days=20))
    log = tmp_path / "state" / "status.log"
    before = log.read_text()
    code, text = check(path, capsys)
    assert code == 1
    first = text.splitlines()[0]
    assert first.startswith("CERTDROP WARNING - 1 certificate(s) in use, web expires in 20.0 days |")
    assert "within 30 days" in text and "renewal due since" in text
    code, out = check(path, capsys, "--json")
    assert code == 1
    (entry,) = json.loads(out)["certificates"]
    assert (entry["name"], entry["level"], entry["threshold_days"]) == ("web", "warning", 30)
    assert entry["services"] == ["web"] and entry["renewal"] is None
    assert log.read_text() == before
    db = sqlite3.connect(tmp_path / "state" / "inventory.sqlite3")
    try:
        assert db.execute("SELECT count(*) FROM warnings").fetchone() == (0,)
        assert db.execute("SELECT count(*) FROM renewals").fetchone() == (0,)
    finally:
        db.close()


def test_past_the_last_threshold_is_critical(tmp_path: Path, capsys: pytest.CaptureFixture[str]):
    """Half a day before the end, past the last threshold, the renewal is overdue: exit 2."""
    path = in_use(tmp_path, dt.timedelta(hours=12), warn_days="[7, 1]")
    code, out = check(path, capsys, "--json")
    report = json.loads(out)
    assert code == 2
    assert report["status"] == "critical" and report["certificates"][0]["level"] == "overdue"
    code, text = check(path, capsys)
    assert text.startswith("CERTDROP CRITICAL - 1 certificate(s) in use, web expires in 0.5 days (its renewal is overdue) |")


def test_perfdata_follows_the_plugin_guidelines(tmp_path: Path, capsys: pytest.CaptureFixture[str]):
    """One `|` on the first line; every perfdata item is 'label'=value;warn;crit;min;max,
    days left of the tightest certificate with the loosest threshold as warning range and
    the tightest as critical range."""
    path = in_use(tmp_path, dt.timedelta(days=20), warn_days="[30, 7]")
    _, text = check(path, capsys)
    first, *rest = text.splitlines()
    assert first.count("|") == 1 and not any("|" in line for line in rest)
    items = first.split(" | ", 1)[1].split(" ")
    parsed = {m.group(1): m.groups()[1:] for m in map(PERFDATA.fullmatch, items) if m}
    assert len(parsed) == len(items), items
    assert parsed["days_left"] == ("20.0", "", "30:", "7:", "", "")
    assert parsed["certificates"][0] == "1" and parsed["warning"][0] == "1"
    assert parsed["critical"][0] == "0" and parsed["problems"][0] == "0"


# --- preflight failures -------------------------------------------------------------------------


def test_a_missing_ca_bundle_is_critical(tmp_path: Path, capsys: pytest.CaptureFixture[str]):
    """A ca_bundle that does not exist makes every drop untrusted: CRITICAL, naming it."""
    path = plain(tmp_path, '[trust]\nca_bundle = "roots.pem"\n')
    code, text = check(path, capsys)
    assert code == 2
    first = text.splitlines()[0]
    assert first.startswith(f"CERTDROP CRITICAL - trust.ca_bundle: {tmp_path / 'roots.pem'} does not exist")
    assert "'problems'=1;" in first
    assert f"CRITICAL trust.ca_bundle: {tmp_path / 'roots.pem'} does not exist" in text


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (b"not a certificate\n", "holds no PEM certificate"),
        (issue("Just A Leaf", ec_key(662)).pem, "holds 1 certificate(s) but no CA"),
        (CA.der, "holds no PEM certificate"),
    ],
    ids=["garbage", "leaf-only", "der"],
)
def test_a_ca_bundle_without_a_ca_is_critical(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], content: bytes, message: str
):
    """A bundle must parse as PEM and hold at least one CA certificate."""
    (tmp_path / "roots.pem").write_bytes(content)
    path = plain(tmp_path, '[trust]\nca_bundle = "roots.pem"\n')
    code, out = check(path, capsys, "--json")
    finding = next(f for f in json.loads(out)["preflight"] if f["check"] == "trust.ca_bundle")
    assert code == 2 and finding["level"] == "critical" and message in finding["detail"]


def test_a_good_ca_bundle_passes(tmp_path: Path, capsys: pytest.CaptureFixture[str]):
    """A PEM bundle with a CA in it (after a leaf) is fine."""
    (tmp_path / "roots.pem").write_bytes(issue("Leaf", ec_key(663)).pem + CA.pem)
    path = plain(tmp_path, '[trust]\nca_bundle = "roots.pem"\n')
    code, out = check(path, capsys, "--json")
    finding = next(f for f in json.loads(out)["preflight"] if f["check"] == "trust.ca_bundle")
    assert code == 0 and finding == {"check": "trust.ca_bundle", "level": "ok",
                                     "detail": f"{tmp_path / 'roots.pem'} holds 1 CA certificate(s)"}  # fmt: skip


def test_a_missing_passphrase_file_is_a_warning(tmp_path: Path, capsys: pytest.CaptureFixture[str]):
    """A passphrase file that is not there: WARNING (encrypted drops it would open fail)."""
    (tmp_path / "here").write_text("secret\n")
    path = plain(tmp_path, '[intake]\npassphrase_files = ["here", "gone"]\n')
    code, text = check(path, capsys)
    assert code == 1
    assert f"WARNING intake.passphrase_files: {tmp_path / 'gone'} does not exist" in text
    assert "here" not in text.replace(str(tmp_path / "gone"), "")  # the readable one is fine
    assert "secret" not in text


def test_a_missing_service_folder_is_critical(tmp_path: Path, capsys: pytest.CaptureFixture[str]):
    """A service whose folder does not exist (every deploy would fail): CRITICAL."""
    path = plain(tmp_path, SERVICE)
    assert findings(path, capsys) == {"services.web": "critical"}
    code, text = check(path, capsys)
    assert code == 2 and f"the folder {tmp_path / 'svc'} does not exist" in text
    (tmp_path / "svc").mkdir()
    assert findings(path, capsys) == {}


@pytest.mark.parametrize(
    ("reload", "message"),
    [
        ('["nginxx", "-s", "reload"]', "'nginxx' is not found on the PATH"),
        ('["/nonexistent/bin/nginx"]', "/nonexistent/bin/nginx does not exist"),
        ('["{folder}/notexec"]', "is not executable"),
    ],
    ids=["misspelt", "absent", "not-executable"],
)
def test_a_reload_program_that_is_not_found_is_critical(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], reload: str, message: str
):
    """Each reload program must be found (argv[0] on the PATH the daemon has, or an
    executable file); a misspelt one is CRITICAL."""
    (tmp_path / "svc").mkdir()
    (tmp_path / "notexec").write_text("#!/bin/sh\n")
    path = plain(tmp_path, SERVICE + f"reload = {reload.format(folder=tmp_path)}\n")
    code, out = check(path, capsys, "--json")
    finding = next(f for f in json.loads(out)["preflight"] if f["check"] == "services.web.reload")
    assert code == 2 and finding["level"] == "critical" and message in finding["detail"]


def test_programs_in_sbin_are_found_from_a_narrow_path(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
):
    """A monitor's PATH without the sbin folders still finds a reload program where the
    daemon (systemd's PATH) will: `true` in /usr/bin, found with PATH=/nonexistent."""
    (tmp_path / "svc").mkdir()
    monkeypatch.setenv("PATH", "/nonexistent")
    path = plain(tmp_path, SERVICE + 'reload = ["true"]\n')
    code, out = check(path, capsys, "--json")
    finding = next(f for f in json.loads(out)["preflight"] if f["check"] == "services.web.reload")
    assert code == 0 and finding["level"] == "ok" and "/bin/true" in finding["detail"]


def test_a_missing_renewal_command_is_a_warning(tmp_path: Path, capsys: pytest.CaptureFixture[str]):
    """A renewal.command program that is not found: WARNING (renewals will fail later)."""
    path = plain(tmp_path, '[renewal]\ncommand = ["lego-typo", "{csr}"]\n')
    assert findings(path, capsys) == {"renewal.command": "warning"}


def test_an_inbox_that_is_a_file_is_critical(tmp_path: Path, capsys: pytest.CaptureFixture[str]):
    """A configured folder that exists as a file cannot work: CRITICAL."""
    (tmp_path / "inbox").write_text("oops")
    assert findings(plain(tmp_path, ""), capsys) == {"inbox": "critical"}


def test_a_failed_service_is_a_warning(tmp_path: Path, capsys: pytest.CaptureFixture[str]):
    """A service whose last deploy failed (rolled back) is a WARNING with its reason."""
    path = in_use(tmp_path, dt.timedelta(days=60))
    db = sqlite3.connect(tmp_path / "state" / "inventory.sqlite3")
    with db:
        db.execute("UPDATE services SET state = 'failed', detail = 'reload failed: nginx exited 1'")
    db.close()
    code, text = check(path, capsys)
    assert code == 1 and "WARNING services.web: the last deploy failed: reload failed: nginx exited 1" in text


def test_the_check_runs_no_probe_unless_asked(tmp_path: Path, capsys: pytest.CaptureFixture[str]):
    """Probing is network: without --probe a probe target that does not answer is not
    looked at (exit 0); with --probe it is CRITICAL."""
    path = in_use(tmp_path, dt.timedelta(days=60))
    port = free_port()
    path.write_text(path.read_text() + f'probe = "https://127.0.0.1:{port}"\n')
    assert check(path, capsys)[0] == 0
    code, text = check(path, capsys, "--probe")
    assert code == 2
    assert f"CRITICAL services.web.probe: https://127.0.0.1:{port}: connection refused" in text


# --- UNKNOWN: cannot judge -----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("[intake\n", "is not valid TOML"),
        ("[intake]\nmax_file_byts = 5\n", "intake.max_file_byts is not a known setting"),
        (SERVICE + 'owner = "no-such-user-13"\n', "there is no user 'no-such-user-13'"),
        (SERVICE + 'group = "no-such-group-13"\n', "there is no group 'no-such-group-13'"),
        ('state_group = "no-such-group-13"\n', "state_group: there is no group 'no-such-group-13'"),
    ],
    ids=["toml", "unknown-key", "owner", "group", "state_group"],
)
def test_a_config_that_does_not_load_is_unknown(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], text: str, message: str
):
    """A bad config is UNKNOWN (3), not WARNING: one line on stdout naming the problem,
    nothing on stderr; --json says it as an object."""
    path = plain(tmp_path, text)
    code, out = check(path, capsys)
    assert code == 3
    assert out.startswith(f"CERTDROP UNKNOWN - {path}: ") and message in out
    assert out.count("\n") == 1
    code, out = check(path, capsys, "--json")
    data = json.loads(out)
    assert code == 3 and data["status"] == "unknown" and message in data["error"]


def test_a_missing_config_file_and_a_bad_argument_are_unknown(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
):
    """--config naming no file, and an argument check does not know: exit 3 (other
    commands keep exit 1 for a bad argument)."""
    code, out = check(tmp_path / "nope.toml", capsys)
    assert code == 3 and "file not found" in out
    # main(argv) returns argparse's exit code (issue 12) rather than raising SystemExit.
    assert cli.main(["--config", str(plain(tmp_path, "")), "check", "--bogus"]) == 3
    assert cli.main(["--config", str(plain(tmp_path, "")), "status", "--bogus"]) == 1
    capsys.readouterr()


def test_an_unreadable_state_is_unknown(tmp_path: Path, capsys: pytest.CaptureFixture[str]):
    """A database that is not SQLite cannot be judged: UNKNOWN, and the preflight still
    runs (a CRITICAL finding beside it wins: it is a definite problem)."""
    path = in_use(tmp_path, dt.timedelta(days=60))
    database = tmp_path / "state" / "inventory.sqlite3"
    for suffix in ("-wal", "-shm"):
        Path(f"{database}{suffix}").unlink(missing_ok=True)
    database.write_bytes(b"this is not a database" * 100)
    code, text = check(path, capsys)
    assert code == 3
    assert text.startswith("CERTDROP UNKNOWN - state: the state cannot be judged:")
    shutil.rmtree(tmp_path / "svc")
    code, text = check(path, capsys)
    assert code == 2 and "UNKNOWN state:" in text and "CRITICAL services.web:" in text


def test_a_warning_beside_an_unknown_is_unknown(tmp_path: Path, capsys: pytest.CaptureFixture[str]):
    """UNKNOWN outranks WARNING (the part that cannot be judged may hide worse)."""
    path = plain(tmp_path, '[intake]\npassphrase_files = ["gone"]\n')
    daemon_state.prepare_folders(configuration.load(path, tmp_path))
    (tmp_path / "state" / "inventory.sqlite3").write_bytes(b"x" * 4096)
    code, out = check(path, capsys, "--json")
    levels = {f["check"]: f["level"] for f in json.loads(out)["preflight"] if f["level"] != "ok"}
    assert code == 3 and levels == {"intake.passphrase_files": "warning", "state": "unknown"}


# --- --probe against nginx, --daemon against the daemon -----------------------------------------


def test_probe_sees_what_nginx_serves(tmp_path: Path, capsys: pytest.CaptureFixture[str]):
    """--probe does one handshake per target with a real nginx: OK when it serves the
    desired certificate, WARNING when it serves another, CRITICAL when it is down."""
    (tmp_path / "svc").mkdir()
    other = issue("other.example.test", ec_key(664), CA)
    cert_file, key_file = tmp_path / "svc" / "c.pem", tmp_path / "svc" / "k.pem"
    cert_file.write_bytes(other.pem)
    key_file.write_bytes(other.key_pem())
    port = free_port()
    with Nginx(tmp_path / "nginx", [(port, cert_file, key_file)]) as nginx:
        service = f'reload = {json.dumps(nginx.reload_argv())}\nprobe = "https://127.0.0.1:{port}"\n'
        path = in_use(tmp_path, dt.timedelta(days=60), service=service)
        code, out = check(path, capsys, "--probe", "--json")
        probe = next(f for f in json.loads(out)["preflight"] if f["check"] == "services.web.probe")
        assert code == 0 and probe["level"] == "ok", probe

        cert_file.write_bytes(other.pem)  # someone put the old certificate back by hand
        key_file.write_bytes(other.key_pem())
        nginx.reload()
        # Old nginx workers serve the previous certificate for ~125 ms after a reload.
        assert wait_for_fingerprint(nginx.urls[0], other.sha256, consecutive=3).ok
        code, text = check(path, capsys, "--probe")
        assert code == 1
        assert f"WARNING services.web.probe: https://127.0.0.1:{port} serves {other.sha256[:16]}" in text
    code, text = check(path, capsys, "--probe")
    assert code == 2 and "connection refused" in text


def test_daemon_health_is_asked_over_the_control_socket(
    daemon_factory: Callable[..., RunningDaemon], tmp_path: Path
):
    """--daemon: CRITICAL while no daemon runs, OK (naming its PID) once one does; run
    as a subprocess, the way a monitor runs it."""
    d = daemon_factory()
    code, first = run_check(d.config_path, "--daemon")
    assert code == 2
    assert first.startswith(f"CERTDROP CRITICAL - daemon: no certdrop daemon answers on {d.state / 'control.sock'}")
    d.start()
    code, first = run_check(d.config_path, "--daemon")
    assert code == 0 and first.startswith("CERTDROP OK - ")
    _, out = run_check(d.config_path, "--daemon", "--json")
    (health,) = [f for f in json.loads(out)["preflight"] if f["check"] == "daemon"]
    assert health["level"] == "ok" and f"pid {d.proc.pid}" in health["detail"]  # type: ignore[union-attr]
    assert d.stop() == 0


def run_check(config: Path, *args: str) -> tuple[int, str]:
    """`certdrop check` as a subprocess: exit code and stdout (stderr must be empty)."""
    done = subprocess.run(
        [sys.executable, "-m", "certdrop", "--config", str(config), "check", *args],
        capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    assert done.stderr == "", done.stderr
    return done.returncode, done.stdout
