"""Japanese and spaced names end to end: drop -> show -> assign -> export -> rename ->
unassign -> delete, once in process without a daemon (main(argv)) and once through a
running daemon's control socket (subprocesses), with a real service whose files are
written and whose reload runs (no probe)."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.serialization import pkcs12

from support.cli import INTERMEDIATE, Workspace, bundle, leaf
from support.daemon import RunningDaemon, drop

SERVICE = """
[services.web]
role = "https"
cert_file = "live/fullchain.pem"
key_file = "live/key.pem"
reload = ["true"]
"""
PROD, SPACED = "本番 証明書", "New certificate"


def one_line(err: str) -> bool:
    return err.count("\n") == 1 and "Traceback" not in err


def test_japanese_and_spaced_names_without_a_daemon(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Every step runs in process and keeps the names exactly as the files were called."""
    ws = Workspace(tmp_path, SERVICE)
    (tmp_path / "live").mkdir()
    prod, spaced = leaf(0, "本番サーバー", "mail.example.test"), leaf(1, SPACED, "new.example.test")
    assert ws.drop(f"{PROD}.pem", bundle(prod)).recorded == [PROD]
    assert ws.drop(f"{SPACED}.pem", bundle(spaced)).recorded == [SPACED]

    shown = ws.run("show", PROD, "--json")
    data = shown.json()
    assert (shown.code, data["name"], data["status"]) == (0, PROD, "unused")
    assert "CN=本番サーバー" in data["subject"] and len(data["chain"]) == 2
    assert data["trust"]["trusted"] and data["sha256"] == prod.sha256
    assert ws.run("show", PROD).out.startswith(f"{PROD} (unused)\n")

    assigned = ws.run("assign", PROD, "web", "--json")
    assert assigned.code == 0 and assigned.json()["services"][0]["state"] == "ok"
    assert (tmp_path / "live" / "fullchain.pem").read_bytes() == prod.pem + INTERMEDIATE.pem

    monkeypatch.chdir(tmp_path)
    (tmp_path / "pw").write_text("secret\n")
    exported = ws.run("export", PROD, "--password-file", "pw")
    assert (exported.code, exported.out) == (0, f"{PROD}.p12\n")
    p12 = pkcs12.load_pkcs12((tmp_path / f"{PROD}.p12").read_bytes(), b"secret")
    assert p12.cert is not None and p12.cert.friendly_name == PROD.encode("utf-8")

    renamed = ws.run("rename", PROD, "本番 証明書 2026", "--json")
    assert renamed.code == 0 and renamed.json()["name"] == "本番 証明書 2026"
    status = ws.run("status", "--json").json()
    assert status["services"][0]["certificate"] == "本番 証明書 2026"
    assert sorted(c["name"] for c in status["certificates"]) == [SPACED, "本番 証明書 2026"]

    refused = ws.run("delete", "本番 証明書 2026")
    assert refused.code == 1 and one_line(refused.err) and "unassign web" in refused.err
    assert ws.run("unassign", "web").code == 0
    deleted = ws.run("delete", "本番 証明書 2026", "--json")
    assert deleted.code == 0 and deleted.json()["key_removed"] is True
    assert [c["name"] for c in ws.run("status", "--json").json()["certificates"]] == [SPACED]

    raw = ws.config.status_log.read_bytes().decode("utf-8")
    assert f'"name": "{PROD}"' in raw and "\\u672c" not in raw
    events = [e["event"] for e in ws.events()]
    for event in ("cert.imported", "service.applied", "cert.exported", "cert.renamed",
                  "service.unassigned", "cert.deleted"):  # fmt: skip
        assert event in events


def test_japanese_and_spaced_names_through_a_running_daemon(
    daemon_factory: Callable[..., RunningDaemon], tmp_path: Path
) -> None:
    """The same steps as subprocesses while `certdrop run` holds the state: each
    state-changing one goes through the control socket and the daemon logs it."""
    ws = Workspace(tmp_path, SERVICE)  # writes the config and the trust bundle
    (tmp_path / "live").mkdir()
    d = daemon_factory(root=tmp_path)
    d.start()
    prod, spaced = leaf(2, "本番サーバー", "mail.example.test"), leaf(3, SPACED, "new.example.test")
    drop(d.inbox, f"{PROD}.pem", bundle(prod))
    drop(d.inbox, f"{SPACED}.pem", bundle(spaced))
    d.wait_for("drop.accepted", file=f"{PROD}.pem")
    d.wait_for("drop.accepted", file=f"{SPACED}.pem")

    data = json.loads(d.cli("show", PROD, "--json").stdout)
    assert data["name"] == PROD and data["trust"]["trusted"]
    assigned = json.loads(d.cli("assign", PROD, "web", "--json").stdout)
    assert assigned["services"][0]["state"] == "ok"
    d.wait_for("service.applied", certificate=PROD)

    (tmp_path / "pw").write_text("secret\n")
    assert d.cli("export", PROD, "--password-file", "pw").stdout == f"{PROD}.p12\n"
    assert (tmp_path / f"{PROD}.p12").stat().st_size > 0

    d.cli("rename", PROD, "テスト証明書")
    d.wait_for("cert.renamed", name="テスト証明書", old=PROD)
    shown = json.loads(d.cli("show", "テスト証明書", "--json").stdout)
    assert shown["deployments"][0]["service"] == "web" and shown["deployments"][0]["wants"]

    refused = d.cli("delete", "テスト証明書", check=False)
    assert refused.returncode == 1 and one_line(refused.stderr)
    d.cli("unassign", "web")
    d.wait_for("service.unassigned", service="web", certificate="テスト証明書")
    gone = json.loads(d.cli("delete", "テスト証明書", "--json").stdout)
    assert gone["key_removed"] is True
    d.wait_for("cert.deleted", name="テスト証明書")
    names = [c["name"] for c in json.loads(d.cli("status", "--json").stdout)["certificates"]]
    assert names == [SPACED]
    assert d.stop() == 0
    assert ws.run("show", SPACED).code == 0  # and without the daemon, the same state
