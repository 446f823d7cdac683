"""Deploying certificates to real nginx and postfix: write, reload, prove, roll back.

Every check of what a service serves is a real TLS handshake (or, for postfix's client
certificate, a real relayed message). Most tests drive ``certdrop.deploy`` in process on a
real inventory; the hostname and start-up tests run a real ``certdrop run``.
"""

from __future__ import annotations

import datetime as dt
import json
import signal
import stat
import textwrap
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from certdrop import cli
from certdrop import config as configuration
from certdrop.daemon import state as daemon_state
from certdrop.errors import UserError
from certdrop.pki import layout
from certdrop.services import install as deployfiles
from certdrop.services import reconcile as deploy
from certdrop.services.probe import served_fingerprint
from certdrop.store import snapshot as status
from support.daemon import RunningDaemon, drop
from support.nginx import Nginx
from support.pkitools import NOW, Issued, ec_key, issue, rsa_key
from support.postfix import Postfix
from support.process import LOOPBACK, free_port, need
from support.smtp_sink import SmtpSink

pytestmark = pytest.mark.real

ROOT = issue("Deploy Test Root", ec_key(500), ca=True)
INTERMEDIATE = issue("Deploy Test Intermediate", ec_key(501), ROOT, ca=True)


def leaf(slot: int, *names: str, rsa: bool = False) -> Issued:
    """A leaf from the test CA for ``names`` (RSA keys are slower to make; EC by default)."""
    key = rsa_key(500 + slot) if rsa else ec_key(510 + slot)
    return issue(names[0], key, INTERMEDIATE, sans=names)


def bundle(cert: Issued) -> bytes:
    """What an operator drops: leaf, intermediate and key in one file."""
    return cert.pem + INTERMEDIATE.pem + cert.key_pem()


def live_files(folder: Path, cert: Issued, combined: bool = False) -> tuple[Path, Path]:
    """The operator's files before certdrop: (fullchain, key), or (combined, combined)."""
    folder.mkdir(parents=True, exist_ok=True)
    if combined:
        path = folder / "chain.pem"
        path.write_bytes(cert.key_pem() + cert.pem + INTERMEDIATE.pem)
        path.chmod(0o600)
        return path, path
    cert_path, key_path = folder / "fullchain.pem", folder / "key.pem"
    cert_path.write_bytes(cert.pem + INTERMEDIATE.pem)
    key_path.write_bytes(cert.key_pem())
    key_path.chmod(0o600)
    return cert_path, key_path


def counting(counter: Path, argv: list[str]) -> list[str]:
    """``argv`` behind a wrapper that appends a line to ``counter`` each time it runs."""
    return ["sh", "-c", 'echo run >> "$0"; exec "$@"', str(counter), *argv]


def toml_list(argv: list[str]) -> str:
    return json.dumps(argv)


class Gateway:
    """certdrop in process on a temp inbox and state, with the given service tables."""

    def __init__(self, root: Path, services: str, extra: str = "") -> None:
        self.root = root
        self.config_path = root / "certdrop.toml"
        bundle_path = root / "roots.pem"
        bundle_path.write_bytes(ROOT.pem)
        self.config_path.write_text(
            'inbox = "inbox"\nstate = "state"\n[trust]\nca_bundle = "roots.pem"\n'
            + extra
            + textwrap.dedent(services)
        )
        self.config = configuration.load(self.config_path, root)
        daemon_state.prepare_folders(self.config)
        self.ctx, self.sink = daemon_state.open_context(self.config)

    def drop(self, name: str, data: bytes) -> list[str]:
        (self.config.inbox / name).write_bytes(data)
        outcome = self.ctx.intake.process(name)
        assert outcome is not None and outcome.result == "accepted", outcome
        return outcome.recorded

    def assign(self, name: str, *services: str) -> dict[str, deploy.ServiceResult]:
        return {r.service: r for r in deploy.assign(self.ctx, name, list(services))}

    def snapshot(self) -> dict[str, Any]:
        return status.snapshot(self.config, self.ctx.inventory)

    def events(self, prefix: str = "service.") -> list[dict[str, Any]]:
        lines = self.config.status_log.read_text().splitlines()
        return [e for e in map(json.loads, lines) if e["event"].startswith(prefix)]

    def close(self) -> None:
        self.ctx.inventory.close()
        self.sink.close()


@pytest.fixture
def gateway(tmp_path: Path) -> Iterator[Callable[..., Gateway]]:
    opened: list[Gateway] = []

    def make(services: str, extra: str = "") -> Gateway:
        gw = Gateway(tmp_path, services, extra)
        opened.append(gw)
        return gw

    yield make
    for gw in opened:
        gw.close()


def https_service(
    name: str, folder: Path, url: str, reload: list[str], timeout: float = 3, **extra: str
) -> str:
    lines = [
        f"[services.{name}]",
        'role = "https"',
        f'cert_file = "{folder}/fullchain.pem"',
        f'key_file = "{folder}/key.pem"',
        f"reload = {toml_list(reload)}",
        f'probe = "{url}"',
        f"probe_timeout_seconds = {timeout}",
        *(f"{k} = {v}" for k, v in extra.items()),
    ]
    return "\n".join(lines) + "\n"


# --------------------------------------------------------------------------- nginx


def test_assign_deploys_to_two_nginx_servers_with_one_reload(
    tmp_path: Path, gateway: Callable[..., Gateway]
) -> None:
    """One assign to two nginx servers writes both layouts, reloads once and proves both."""
    need("nginx")
    old = leaf(0, "old.gw.example.test")
    new = leaf(1, "new.gw.example.test", rsa=True)
    admin_cert, admin_key = live_files(tmp_path / "admin", old)
    quar_cert, quar_key = live_files(tmp_path / "quarantine", old)
    servers = [(free_port(), admin_cert, admin_key), (free_port(), quar_cert, quar_key)]
    counter = tmp_path / "reloads"
    with Nginx(tmp_path / "nginx", servers) as nginx:
        reload = counting(counter, nginx.reload_argv())
        gw = gateway(
            https_service(
                "admin-console", tmp_path / "admin", nginx.urls[0], reload,
                key_format='"pkcs1"', chain_file=f'"{tmp_path}/admin/chain.pem"',
            )
            + https_service(
                "quarantine-console", tmp_path / "quarantine", nginx.urls[1], reload,
                key_format='"pkcs8"', mode='"0640"',
            )
        )  # fmt: skip
        assert gw.drop("new.pem", bundle(new)) == ["new"]
        results = gw.assign("new", "admin-console", "quarantine-console")
        assert {r.state for r in results.values()} == {"ok"}, results
        assert all(r.changed and r.sha256 == new.sha256 for r in results.values())
        assert served_fingerprint(nginx.urls[0]) == new.sha256
        assert served_fingerprint(nginx.urls[1]) == new.sha256
        assert counter.read_text().count("run") == 1

        assert admin_key.read_bytes().startswith(b"-----BEGIN RSA PRIVATE KEY-----")
        assert quar_key.read_bytes().startswith(b"-----BEGIN PRIVATE KEY-----")
        assert admin_cert.read_bytes() == new.pem + INTERMEDIATE.pem
        assert (tmp_path / "admin" / "chain.pem").read_bytes() == INTERMEDIATE.pem
        modes = {p: stat.S_IMODE(p.stat().st_mode) for p in (admin_cert, admin_key, quar_cert)}
        assert modes == {admin_cert: 0o644, admin_key: 0o600, quar_cert: 0o640}
        assert not list((tmp_path / "admin").glob(".*certdrop-tmp"))

        snap = gw.snapshot()
        assert [
            (s["name"], s["certificate"], s["sha256"], s["state"]) for s in snap["services"]
        ] == [
            ("admin-console", "new", new.sha256, "ok"),
            ("quarantine-console", "new", new.sha256, "ok"),
        ]
        (entry,) = snap["certificates"]
        assert (entry["status"], entry["services"]) == (
            "in_use",
            ["admin-console", "quarantine-console"],
        )
        applied = gw.events()
        assert [e["event"] for e in applied].count("service.applied") == 2
        assert b"PRIVATE KEY" not in gw.config.status_log.read_bytes()

        again = deploy.reconcile(gw.ctx)
        assert [(r.state, r.changed) for r in again] == [("ok", False), ("ok", False)]
        assert counter.read_text().count("run") == 1


def test_replaced_certificate_goes_back_to_unused(
    tmp_path: Path, gateway: Callable[..., Gateway]
) -> None:
    """A certificate no service wants any more is unused again; its successor is in use."""
    need("nginx")
    first, second = leaf(2, "a.gw.example.test"), leaf(3, "a.gw.example.test")
    cert, key = live_files(tmp_path / "admin", first)
    with Nginx(tmp_path / "nginx", [(free_port(), cert, key)]) as nginx:
        gw = gateway(
            https_service("admin-console", tmp_path / "admin", nginx.urls[0], nginx.reload_argv())
        )
        gw.drop("first.pem", bundle(first))
        gw.drop("second.pem", bundle(second))
        assert gw.assign("first", "admin-console")["admin-console"].state == "ok"
        assert gw.assign("second", "admin-console")["admin-console"].state == "ok"
        assert served_fingerprint(nginx.urls[0]) == second.sha256
        statuses = {c["name"]: c["status"] for c in gw.snapshot()["certificates"]}
        assert statuses == {"first": "unused", "second": "in_use"}


@pytest.mark.parametrize("failure", ["reload fails", "reload does nothing", "not running"])
def test_failed_deploy_rolls_back_to_the_old_certificate(
    tmp_path: Path, gateway: Callable[..., Gateway], failure: str
) -> None:
    """A failed reload, a reload without effect or a stopped nginx end with the OLD
    certificate served (shown by a handshake), the old files back and the service failed."""
    need("nginx")
    old, new = leaf(4, "old.gw.example.test"), leaf(5, "new.gw.example.test")
    cert, key = live_files(tmp_path / "admin", old)
    before = (cert.read_bytes(), key.read_bytes())
    nginx = Nginx(tmp_path / "nginx", [(free_port(), cert, key)])
    reload = {
        "reload fails": ["sh", "-c", "echo 'nginx: configuration test failed' >&2; exit 1"],
        "reload does nothing": ["true"],
        "not running": nginx.reload_argv(),
    }[failure]
    gw = gateway(https_service("admin-console", tmp_path / "admin", nginx.urls[0], reload, 1))
    gw.drop("new.pem", bundle(new))
    if failure == "not running":
        nginx.conf.parent.mkdir(parents=True)  # configured, but its master is not running
        nginx.conf.write_text(nginx.config_text())
        result = gw.assign("new", "admin-console")["admin-console"]
        with nginx:
            assert served_fingerprint(nginx.urls[0]) == old.sha256
    else:
        with nginx:
            result = gw.assign("new", "admin-console")["admin-console"]
            assert served_fingerprint(nginx.urls[0]) == old.sha256
    assert (cert.read_bytes(), key.read_bytes()) == before
    assert result.state == "failed"
    rolled = [e for e in gw.events() if e["event"] == "service.rolled_back"]
    assert len(rolled) == 1 and rolled[0]["sha256"] == old.sha256
    if failure == "reload fails":
        assert "exited 1: nginx: configuration test failed" in result.detail
        assert rolled[0]["proven"] is True
    elif failure == "reload does nothing":
        assert "the new certificate was not served" in result.detail
        assert "the previous certificate" in result.detail and rolled[0]["proven"] is True
        assert result.sha256 == old.sha256  # proven by the rollback's handshakes
    else:
        assert "reload failed" in result.detail and rolled[0]["proven"] is False
    snap = gw.snapshot()
    assert snap["services"][0]["state"] == "failed"
    assert snap["services"][0]["detail"] == result.detail
    assert [e["event"] for e in gw.events()][-1] == "service.failed"


# --------------------------------------------------------------------------- postfix


def test_postfix_server_and_client_take_the_certificate_with_one_reload(
    tmp_path: Path, gateway: Callable[..., Gateway]
) -> None:
    """smtpd serves the new certificate over STARTTLS and the smtp client shows it to a relay,
    after one postfix reload for both services."""
    need("postfix")
    old, new = leaf(6, "mx.example.test"), leaf(7, "mx.example.test")
    server_file, _ = live_files(tmp_path / "smtpd", old, combined=True)
    client_file, _ = live_files(tmp_path / "smtp", old, combined=True)
    sink_cert, sink_key = live_files(tmp_path / "sink", leaf(8, "localhost", LOOPBACK))
    client_ca = tmp_path / "client-ca.pem"
    client_ca.write_bytes(ROOT.pem)
    counter = tmp_path / "reloads"
    sink_port = free_port()
    with (
        SmtpSink(sink_port, sink_cert, sink_key, client_ca) as sink,
        Postfix(
            tmp_path / "postfix", free_port(), server_file,
            relay_port=sink_port, client_chain_file=client_file,
        ) as postfix,
    ):  # fmt: skip
        reload = toml_list(counting(counter, postfix.reload_argv()))
        gw = gateway(f"""
            [services.incoming-mta]
            role = "smtp-server"
            combined_file = "{server_file}"
            key_format = "pkcs8"
            reload = {reload}
            probe = "{postfix.url}"
            probe_timeout_seconds = 5

            [services.outgoing-mta]
            role = "smtp-client"
            combined_file = "{client_file}"
            reload = {reload}
            """)
        gw.drop("mx.pem", bundle(new))
        results = gw.assign("mx", "incoming-mta", "outgoing-mta")
        assert results["incoming-mta"].state == "ok", results
        assert (results["outgoing-mta"].state, results["outgoing-mta"].detail) == (
            "ok",
            "not probed",
        )
        assert counter.read_text().count("run") == 1
        assert served_fingerprint(postfix.url) == new.sha256
        data = server_file.read_bytes()
        assert data.startswith(b"-----BEGIN PRIVATE KEY-----")
        assert data.index(new.pem) < data.index(INTERMEDIATE.pem)
        assert stat.S_IMODE(server_file.stat().st_mode) == 0o600
        assert client_file.read_bytes().startswith(b"-----BEGIN EC PRIVATE KEY-----")
        postfix.send_test_message()
        assert sink.wait_for_message(timeout=15) == new.sha256


# --------------------------------------------------------------------------- no service needed


def test_a_missing_folder_fails_before_anything_is_written(
    tmp_path: Path, gateway: Callable[..., Gateway]
) -> None:
    """A key_file in a folder that does not exist fails the service, writes nothing, runs no reload."""
    counter = tmp_path / "reloads"
    (tmp_path / "certs").mkdir()
    gw = gateway(f"""
        [services.console]
        role = "https"
        cert_file = "{tmp_path}/certs/fullchain.pem"
        key_file = "{tmp_path}/missing/key.pem"
        reload = {toml_list(counting(counter, ["true"]))}
        """)
    gw.drop("c.pem", bundle(leaf(9, "c.example.test")))
    result = gw.assign("c", "console")["console"]
    assert result.state == "failed"
    assert f"the folder {tmp_path}/missing does not exist" in result.detail
    assert list((tmp_path / "certs").iterdir()) == []
    assert not counter.exists()


def test_a_hanging_reload_is_killed_and_rolled_back(
    tmp_path: Path, gateway: Callable[..., Gateway]
) -> None:
    """A reload that outlives its timeout is killed, the old files come back, the service fails."""
    cert, key = live_files(tmp_path / "certs", leaf(10, "old.example.test"))
    before = cert.read_bytes()
    gw = gateway(f"""
        [services.console]
        role = "https"
        cert_file = "{cert}"
        key_file = "{key}"
        reload = ["sleep", "30"]
        reload_timeout_seconds = 0.3
        """)
    gw.drop("c.pem", bundle(leaf(11, "c.example.test")))
    result = gw.assign("c", "console")["console"]
    assert result.state == "failed"
    assert "sleep did not finish within 0.3 s and was killed" in result.detail
    assert cert.read_bytes() == before


def test_a_damaged_stored_pair_is_never_written(
    tmp_path: Path, gateway: Callable[..., Gateway]
) -> None:
    """When the stored key no longer matches its certificate, reconcile fails it untouched."""
    cert, key = live_files(tmp_path / "certs", leaf(12, "old.example.test"))
    before = cert.read_bytes()
    gw = gateway(f"""
        [services.console]
        role = "https"
        cert_file = "{cert}"
        key_file = "{key}"
        """)
    gw.drop("c.pem", bundle(leaf(13, "c.example.test")))
    with gw.ctx.inventory.transaction():
        gw.ctx.inventory.set_desired("console", "c", "", "2026-01-01T00:00:00Z")
        gw.ctx.inventory.db.execute(
            "UPDATE certificates SET key_pem = ? WHERE name = 'c'",
            (leaf(14, "x.example.test").key_pem("pkcs1"),),
        )
    (result,) = deploy.reconcile(gw.ctx)
    assert result.state == "failed"
    assert "does not belong to the certificate" in result.detail
    assert cert.read_bytes() == before


def test_assign_refuses_unknown_names_and_requests(
    tmp_path: Path, gateway: Callable[..., Gateway]
) -> None:
    """assign names the unknown certificate or service and changes nothing."""
    gw = gateway(f"""
        [services.console]
        role = "https"
        cert_file = "{tmp_path}/fullchain.pem"
        key_file = "{tmp_path}/key.pem"
        """)
    gw.drop("c.pem", bundle(leaf(15, "c.example.test")))
    with pytest.raises(UserError, match="no certificate named 'nope'"):
        gw.assign("nope", "console")
    with pytest.raises(UserError, match=r"no service named 'web'.*configured: console"):
        gw.assign("c", "web")
    assert gw.events() == []


def test_cli_assign_reports_each_service_and_exits_by_outcome(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """`certdrop assign` prints one line per service; exit 0 when all took it, else 1."""
    cert, key = live_files(tmp_path / "certs", leaf(16, "old.example.test"))
    config = tmp_path / "certdrop.toml"
    config.write_text(
        textwrap.dedent(f"""
        inbox = "inbox"
        state = "state"
        [services.console]
        role = "https"
        cert_file = "{cert}"
        key_file = "{key}"
        [services.broken]
        role = "https"
        combined_file = "{tmp_path}/certs/combined.pem"
        reload = ["false"]
        """)
    )
    (tmp_path / "inbox").mkdir()
    drop(tmp_path / "inbox", "c.pem", bundle(leaf(17, "c.example.test")))
    config_obj = configuration.load(config, tmp_path)
    daemon_state.prepare_folders(config_obj)
    ctx, sink = daemon_state.open_context(config_obj)
    try:
        ctx.intake.process("c.pem")
    finally:
        ctx.inventory.close()
        sink.close()
    assert cli.main(["--config", str(config), "assign", "c", "console"]) == 0
    assert capsys.readouterr().out == "console: ok: not probed\n"
    assert cli.main(["--config", str(config), "assign", "c", "broken"]) == 1
    captured = capsys.readouterr()
    assert captured.out.startswith("broken: failed: reload failed: false exited 1")
    assert (
        captured.err == "certdrop: 1 of 1 services did not take c: broken; see `certdrop status`\n"
    )
    assert cli.main(["--config", str(config), "assign", "c", "nowhere"]) == 1
    err = capsys.readouterr().err
    assert err.startswith("certdrop: no service named 'nowhere'") and err.count("\n") == 1
    data = json.loads((tmp_path / "state" / "status.json").read_text())
    assert {s["name"]: s["state"] for s in data["services"]} == {
        "broken": "failed",
        "console": "ok",
    }
    assert cli.main(["--config", str(config), "status"]) == 0
    table = capsys.readouterr().out.split("Services (2)\n", 1)[1].splitlines()
    assert table[0].split() == ["SERVICE", "ROLE", "CERTIFICATE", "SERVING", "STATE", "DETAIL"]
    serving = data["services"][1]["sha256"][:16]
    assert table[2].split()[:5] == ["console", "https", "c", serving, "ok"]


# --------------------------------------------------------------------------- the daemon


def test_daemon_assigns_by_hostname_only_a_trusted_covering_certificate(
    tmp_path: Path, daemon_factory: Callable[..., RunningDaemon]
) -> None:
    """A running daemon deploys a drop whose trusted chain covers the service's hostname,
    and ignores one for another name or from an untrusted CA; assign works through it."""
    need("nginx")
    old = leaf(18, "admin.gw.example.test")
    cert, key = live_files(tmp_path / "admin", old)
    (tmp_path / "roots.pem").write_bytes(ROOT.pem)
    with Nginx(tmp_path / "nginx", [(free_port(), cert, key)]) as nginx:
        url = nginx.urls[0]
        d = daemon_factory(
            '[trust]\nca_bundle = "roots.pem"\n'
            + https_service("admin-console", tmp_path / "admin", url, nginx.reload_argv())
            + 'hostname = "admin.gw.example.test"\n'
        ).start()
        other = leaf(19, "other.gw.example.test")
        drop(d.inbox, "other.pem", bundle(other))
        d.wait_for("drop.accepted", file="other.pem")
        stranger_root = issue("Stranger Root", ec_key(620), ca=True)
        stranger = issue(
            "admin.gw.example.test", ec_key(621), stranger_root, sans=["admin.gw.example.test"]
        )
        drop(d.inbox, "stranger.pem", stranger.pem + stranger.key_pem())
        d.wait_for("drop.accepted", file="stranger.pem")
        right = leaf(20, "*.gw.example.test")
        drop(d.inbox, "right.pem", bundle(right))
        applied = d.wait_for("service.applied", service="admin-console")
        assert applied["certificate"] == "right" and applied["sha256"] == right.sha256
        assigned = [e for e in d.events() if e["event"] == "service.assigned"]
        assert [(e["certificate"], e["by"]) for e in assigned] == [("right", "hostname")]
        assert served_fingerprint(url) == right.sha256

        done = d.cli("assign", "other", "admin-console")
        assert done.stdout.startswith("admin-console: ok: ")
        assert served_fingerprint(url) == other.sha256
        snap = json.loads(d.cli("status", "--json").stdout)
        assert snap["services"][0]["sha256"] == other.sha256
        assert {c["name"]: c["status"] for c in snap["certificates"]} == {
            "other": "in_use", "right": "unused", "stranger": "unused",
        }  # fmt: skip
        assert d.stop() == 0


def test_start_up_finishes_a_deploy_cut_short_by_a_crash(
    tmp_path: Path, daemon_factory: Callable[..., RunningDaemon]
) -> None:
    """Files written but never reloaded nor recorded (a crash): the next start deploys and proves."""
    need("nginx")
    old, new = leaf(21, "old.gw.example.test"), leaf(22, "new.gw.example.test")
    cert, key = live_files(tmp_path / "admin", old)
    with Nginx(tmp_path / "nginx", [(free_port(), cert, key)]) as nginx:
        url = nginx.urls[0]
        services = https_service("admin-console", tmp_path / "admin", url, nginx.reload_argv())
        d = daemon_factory(services)
        # What a deploy had done when the process died: desired committed, baseline kept,
        # new files renamed in, no reload, nothing recorded as deployed.
        gw = Gateway(tmp_path, services)
        gw.drop("new.pem", bundle(new))
        with gw.ctx.inventory.transaction():
            gw.ctx.inventory.set_desired(
                "admin-console", "new", "deploying", "2026-01-01T00:00:00Z"
            )
        service = gw.config.services["admin-console"]
        entry = gw.ctx.inventory.entry("new")
        assert entry is not None and entry.cert_pem is not None
        files = layout.plan(
            service, entry.cert_pem, entry.chain_pem or b"", gw.ctx.inventory.key_pem("new") or b""
        )
        deployfiles.keep_baseline(gw.config.state, "admin-console", files)
        deployfiles.install(files, deployfiles.KEEP, deployfiles.KEEP)
        gw.close()
        assert served_fingerprint(url) == old.sha256

        d.start()
        applied = d.wait_for("service.applied", service="admin-console")
        assert applied["previous_sha256"] is None
        assert served_fingerprint(url) == new.sha256
        saved = deployfiles.load_saved(d.state, "admin-console")
        assert saved is not None and saved.sha256 == new.sha256
        assert d.stop() == 0


def test_a_hostname_added_on_reload_gets_the_newest_matching_certificate(
    tmp_path: Path, daemon_factory: Callable[..., RunningDaemon]
) -> None:
    """After SIGHUP with a new service whose hostname older drops cover, the newest is deployed."""
    need("nginx")
    cert, key = live_files(tmp_path / "admin", leaf(23, "admin.gw.example.test"))
    (tmp_path / "roots.pem").write_bytes(ROOT.pem)
    trust = '[trust]\nca_bundle = "roots.pem"\n'
    with Nginx(tmp_path / "nginx", [(free_port(), cert, key)]) as nginx:
        d = daemon_factory(trust).start()
        older = issue(
            "admin.gw.example.test", ec_key(630), INTERMEDIATE, sans=["admin.gw.example.test"],
            not_before=NOW - dt.timedelta(days=10),
        )  # fmt: skip
        newer = leaf(24, "admin.gw.example.test")
        for name, cert_ in (("newer.pem", newer), ("older.pem", older)):
            drop(d.inbox, name, bundle(cert_))
            d.wait_for("drop.accepted", file=name)
        service = https_service(
            "admin-console", tmp_path / "admin", nginx.urls[0], nginx.reload_argv()
        )
        d.config_path.write_text(
            f'inbox = "inbox"\nstate = "state"\n{trust}{service}hostname = "admin.gw.example.test"\n'
        )
        assert d.proc is not None
        d.proc.send_signal(signal.SIGHUP)
        applied = d.wait_for("service.applied", service="admin-console")
        assert applied["certificate"] == "newer"
        assert served_fingerprint(nginx.urls[0]) == newer.sha256
        assert d.stop() == 0
