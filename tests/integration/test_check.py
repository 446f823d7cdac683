"""`certdrop check` in process: exit codes, its two outputs, and that it changes nothing."""

from __future__ import annotations

import datetime as dt
import json
import os
import sqlite3
from pathlib import Path

import pytest

from certdrop import cli
from certdrop import config as configuration
from certdrop.daemon import state as daemon_state
from certdrop.services import reconcile as deploy
from support.daemon import drop
from support.pkitools import ec_key, issue, rsa_key

CA = issue("Check Test Root", ec_key(660), ca=True)


def in_use(root: Path, left: dt.timedelta, warn_days: str = "[30, 14]") -> Path:
    """A state whose one service uses a 90-day certificate with ``left`` to live."""
    (root / "svc").mkdir()
    path = root / "certdrop.toml"
    path.write_text(
        f'inbox = "inbox"\nstate = "state"\n[expiry]\nwarn_days = {warn_days}\n'
        '[services.web]\nrole = "https"\ncert_file = "svc/c.pem"\nkey_file = "svc/k.pem"\n'
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
            assert [r.state for r in deploy.assign(ctx, "web", ["web"])] == ["ok"]
        finally:
            ctx.inventory.close()
            sink.close()
    finally:
        os.umask(old_umask)
    return path


def test_an_empty_state_is_fine(tmp_path: Path, capsys: pytest.CaptureFixture[str]):
    """Without any state (no daemon ever ran) the check passes with exit 0."""
    (tmp_path / "certdrop.toml").write_text('inbox = "inbox"\nstate = "state"\n')
    assert cli.main(["--config", str(tmp_path / "certdrop.toml"), "check"]) == 0
    assert capsys.readouterr().out.startswith("certdrop check: OK: 0 certificate(s) in use")


def test_far_from_expiry_is_ok(tmp_path: Path, capsys: pytest.CaptureFixture[str]):
    """A certificate in use with 60 days left is fine: exit 0."""
    path = in_use(tmp_path, dt.timedelta(days=60))
    assert cli.main(["--config", str(path), "check", "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["status"] == "ok" and report["certificates"][0]["level"] == "ok"


def test_within_a_threshold_is_a_warning_and_changes_nothing(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
):
    """20 days left with a 30-day threshold: exit 1, said in both outputs, and the check
    neither logs an event nor remembers the warning (that is the daemon's to give)."""
    path = in_use(tmp_path, dt.timedelta(days=20))
    log = tmp_path / "state" / "status.log"
    before = log.read_text()
    assert cli.main(["--config", str(path), "check"]) == 1
    text = capsys.readouterr().out
    assert text.startswith("certdrop check: WARNING: 1 certificate(s) in use, 1 need attention")
    assert "within 30 days" in text and "renewal due since" in text
    assert cli.main(["--config", str(path), "check", "--json"]) == 1
    (entry,) = json.loads(capsys.readouterr().out)["certificates"]
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
    assert cli.main(["--config", str(path), "check", "--json"]) == 2
    report = json.loads(capsys.readouterr().out)
    assert report["status"] == "critical" and report["certificates"][0]["level"] == "overdue"
