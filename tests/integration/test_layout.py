"""The pure side of deploying: service file layouts, pair checks, choosing a certificate
for a hostname, and the service config's checks; plus the file installer on a temp folder."""

from __future__ import annotations

import datetime as dt
import os
import stat
from collections.abc import Callable
from pathlib import Path

import pytest

from certdrop import config as configuration
from certdrop.errors import ConfigError
from certdrop.pki import layout
from certdrop.pki.choose import Candidate, best_for_host
from certdrop.pki.trust import Verdict, Verifier
from certdrop.services import install as deployfiles
from certdrop.services.reload import run_reload, short_output
from support.pkitools import NOW, Issued, ec_key, issue, rsa_key

ROOT = issue("Layout Root", ec_key(700), ca=True)
INTER = issue("Layout Intermediate", ec_key(701), ROOT, ca=True)
LEAF = issue("www.example.test", rsa_key(700), INTER, sans=["www.example.test"])


def service(**values: object) -> configuration.ServiceConfig:
    return configuration.ServiceConfig(name="web", role="https", **values)  # type: ignore[arg-type]


def plan(svc: configuration.ServiceConfig, leaf: Issued = LEAF) -> dict[str, layout.ServiceFile]:
    files = layout.plan(svc, leaf.pem, INTER.pem, leaf.key_pem("pkcs1"))
    return {f.role: f for f in files}


# --------------------------------------------------------------------------- layouts


def test_separate_files_hold_fullchain_key_and_chain_in_install_order(tmp_path: Path) -> None:
    """cert_file gets leaf + intermediates, chain_file only intermediates, the key comes first."""
    svc = service(
        cert_file=tmp_path / "c.pem", key_file=tmp_path / "k.pem", chain_file=tmp_path / "i.pem"
    )
    files = layout.plan(svc, LEAF.pem, INTER.pem, LEAF.key_pem("pkcs1"))
    assert [f.role for f in files] == ["key_file", "chain_file", "cert_file"]
    by_role = {f.role: f for f in files}
    assert by_role["cert_file"].data == LEAF.pem + INTER.pem
    assert by_role["chain_file"].data == INTER.pem
    assert (by_role["key_file"].mode, by_role["key_file"].secret) == (0o600, True)
    assert (by_role["cert_file"].mode, by_role["cert_file"].secret) == (0o644, False)
    assert "PRIVATE" not in repr(files)


@pytest.mark.parametrize(
    ("key_format", "head"),
    [("pkcs1", b"-----BEGIN RSA PRIVATE KEY-----"), ("pkcs8", b"-----BEGIN PRIVATE KEY-----")],
)
def test_key_is_written_in_the_service_format(tmp_path: Path, key_format: str, head: bytes) -> None:
    """The key file is PKCS#1 or PKCS#8 as configured, whatever form it was stored in."""
    svc = service(cert_file=tmp_path / "c", key_file=tmp_path / "k", key_format=key_format)
    files = layout.plan(svc, LEAF.pem, INTER.pem, LEAF.key_pem("pkcs8"))
    assert files[0].data.startswith(head)


def test_combined_file_is_key_then_leaf_then_intermediates(tmp_path: Path) -> None:
    """combined_file (postfix *_tls_chain_files) holds key, leaf, intermediates, key-private."""
    svc = service(combined_file=tmp_path / "all.pem", key_format="pkcs8", key_mode=0o640)
    (only,) = layout.plan(svc, LEAF.pem, INTER.pem, LEAF.key_pem("pkcs1"))
    assert only.data == LEAF.key_pem("pkcs8") + LEAF.pem + INTER.pem
    assert (only.mode, only.secret) == (0o640, True)
    assert layout.served_sha256([only]) == LEAF.sha256


def test_leaf_fingerprint_is_read_from_either_layout() -> None:
    """The served fingerprint is the first certificate's, after a key block or alone."""
    assert layout.leaf_sha256(LEAF.pem + INTER.pem) == LEAF.sha256
    assert layout.leaf_sha256(LEAF.key_pem() + LEAF.pem) == LEAF.sha256
    assert layout.leaf_sha256(b"no certificate here") is None


def test_pair_problem_catches_a_foreign_key_and_expiry() -> None:
    """A key that does not belong, or a certificate out of its window, is refused by name."""
    other = issue("other.example.test", ec_key(702), INTER)
    assert layout.pair_problem(LEAF.pem, INTER.pem, LEAF.key_pem(), NOW) is None
    assert "does not belong" in (
        layout.pair_problem(LEAF.pem, INTER.pem, other.key_pem(), NOW) or ""
    )
    later = NOW + dt.timedelta(days=400)
    assert "expired" in (layout.pair_problem(LEAF.pem, INTER.pem, LEAF.key_pem(), later) or "")
    assert "pending request" in (layout.pair_problem(b"", b"", LEAF.key_pem(), NOW) or "")


# --------------------------------------------------------------------------- choosing


def candidate(name: str, *sans: str, days_old: int = 1, valid: int = 90,
              issuer: Issued | None = None) -> Candidate:  # fmt: skip
    cert = issue(
        sans[0], ec_key(703), issuer or INTER, sans=sans,
        not_before=NOW - dt.timedelta(days=days_old),
        not_after=NOW - dt.timedelta(days=days_old) + dt.timedelta(days=valid),
    ).cert  # fmt: skip
    return Candidate(name, cert, (INTER.cert,), "2026-01-01T00:00:00Z")


def judge_for(hostname: str) -> Callable[[Candidate], Verdict]:
    verifier = Verifier.build([ROOT.cert])
    return lambda c: verifier.judge(c.cert, c.chain, "serverAuth", NOW, hostname)


def test_newest_trusted_valid_covering_certificate_wins() -> None:
    """Of the certificates for a host, the one issued last that the verifier trusts for
    that host wins; untrusted, other-host and expired ones are not taken."""
    stranger = issue("Stranger CA", ec_key(704), ca=True)
    pool = [
        candidate("old", "mx.example.test", days_old=30),
        candidate("new", "mx.example.test", days_old=2),
        candidate("untrusted", "mx.example.test", days_old=0, issuer=stranger),
        candidate("other-host", "www.example.test", days_old=0),
        candidate("expired", "mx.example.test", days_old=100, valid=90),
    ]
    best = best_for_host(pool, judge_for("mx.example.test"))
    assert best is not None and best.name == "new"
    assert best_for_host(reversed(pool), judge_for("MX.example.test.")) == best
    assert best_for_host(pool, judge_for("nothing.example.test")) is None


def test_a_wildcard_covers_one_label_only() -> None:
    """*.example.test covers mx.example.test, not a.mx.example.test nor example.test."""
    pool = [candidate("wild", "*.example.test")]
    assert best_for_host(pool, judge_for("mx.example.test")) is not None
    assert best_for_host(pool, judge_for("a.mx.example.test")) is None
    assert best_for_host(pool, judge_for("example.test")) is None


# --------------------------------------------------------------------------- service config


def load(tmp_path: Path, body: str) -> configuration.Config:
    path = tmp_path / "certdrop.toml"
    path.write_text(body)
    return configuration.load(path, tmp_path)


def problems(tmp_path: Path, body: str) -> list[str]:
    with pytest.raises(ConfigError) as info:
        load(tmp_path, body)
    return info.value.problems


def test_service_config_reads_every_setting(tmp_path: Path) -> None:
    """A full [services.NAME] table becomes a ServiceConfig with paths from the file's folder."""
    config = load(
        tmp_path,
        """
[services.web]
role = "https"
hostname = "www.example.test"
cert_file = "tls/fullchain.pem"
key_file = "tls/key.pem"
chain_file = "tls/chain.pem"
key_format = "pkcs8"
owner = "root"
group = "root"
mode = "0640"
key_mode = "0600"
reload = ["nginx", "-s", "reload"]
reload_timeout_seconds = 5
probe = "https://127.0.0.1:8445"
probe_timeout_seconds = 2
""",
    )
    web = config.services["web"]
    assert web.cert_file == tmp_path / "tls" / "fullchain.pem"
    assert (web.mode, web.key_mode, web.key_format) == (0o640, 0o600, "pkcs8")
    assert web.reload == ("nginx", "-s", "reload")
    assert (web.reload_timeout_seconds, web.probe_timeout_seconds) == (5, 2)


def test_service_config_errors_name_the_service_the_key_and_the_fix(tmp_path: Path) -> None:
    """Every mistake in the service tables is reported at once, each naming where and how."""
    found = problems(
        tmp_path,
        """
[services.a]
role = "https"
cert_file = "x.pem"

[services.b]
role = "smtp-client"
combined_file = "b.pem"
chain_file = "i.pem"
key_mode = "0644"
owner = "no-such-user-certdrop"
probe = "smtp://127.0.0.1:25"

[services.c]
role = "https"
cert_file = "c.pem"
key_file = "shared.pem"

[services.d]
role = "smtp-server"
combined_file = "shared.pem"

[services.e]
role = "https"
combined_file = "e.pem"
probe = "https://127.0.0.1:notaport"

[services."bad/name"]
role = "https"
""",
    )
    text = "\n".join(found)
    assert "services.a.cert_file and key_file (or combined_file) must be set" in text
    assert "services.b.combined_file already holds key, leaf and intermediates" in text
    assert "services.b.key_mode 0644 lets every user read the private key" in text
    assert "services.b.owner: there is no user 'no-such-user-certdrop'; create it" in text
    assert (
        "services.b.probe: an smtp-client shows its certificate only when it connects out" in text
    )
    assert "services.e.probe 'https://127.0.0.1:notaport' must be https://HOST:PORT" in text
    assert "services.d.combined_file is the same file as services.c.key_file" in text
    assert "services.'bad/name': a service name must be" in text


def test_example_config_services_match_the_deploy_kit() -> None:
    """deploy/certdrop.toml loads and its postfix services share one reload command."""
    example = Path(__file__).resolve().parents[2] / "deploy" / "certdrop.toml"
    services = configuration.load(example, example.parent).services
    assert services["incoming-mta"].reload == services["outgoing-mta"].reload
    assert services["admin-console"].reload == services["quarantine-console"].reload
    assert services["outgoing-mta"].probe == ""


# --------------------------------------------------------------------------- installing files


def test_install_writes_modes_and_leaves_no_temp_files(tmp_path: Path) -> None:
    """Installed files have their bytes and modes; no temp name is left behind."""
    svc = service(cert_file=tmp_path / "c.pem", key_file=tmp_path / "k.pem", mode=0o640)
    files = layout.plan(svc, LEAF.pem, INTER.pem, LEAF.key_pem())
    deployfiles.install(files, deployfiles.KEEP, deployfiles.KEEP)
    assert stat.S_IMODE(os.stat(tmp_path / "k.pem").st_mode) == 0o600
    assert stat.S_IMODE(os.stat(tmp_path / "c.pem").st_mode) == 0o640
    assert sorted(p.name for p in tmp_path.iterdir()) == ["c.pem", "k.pem"]
    assert deployfiles.matches(files, deployfiles.KEEP, deployfiles.KEEP)
    (tmp_path / "c.pem").chmod(0o644)
    assert not deployfiles.matches(files, deployfiles.KEEP, deployfiles.KEEP)


def test_a_failed_install_changes_nothing(tmp_path: Path) -> None:
    """When one file cannot be written, no file is renamed and no temp file stays."""
    (tmp_path / "k.pem").write_bytes(b"old key")
    svc = service(cert_file=tmp_path / "missing" / "c.pem", key_file=tmp_path / "k.pem")
    with pytest.raises(deployfiles.FileError, match="does not exist; create it"):
        deployfiles.install(layout.plan(svc, LEAF.pem, INTER.pem, LEAF.key_pem()), -1, -1)
    assert [p.name for p in tmp_path.iterdir()] == ["k.pem"]
    assert (tmp_path / "k.pem").read_bytes() == b"old key"


def test_baseline_survives_repeated_deploys_and_restores_links_and_absence(tmp_path: Path) -> None:
    """The first baseline is the operator's files (a symlink, a missing file) and stays so
    until a proven deploy; restoring puts the link back and removes the new file."""
    state, live = tmp_path / "state", tmp_path / "live"
    live.mkdir()
    (live / "real-cert.pem").write_bytes(b"operator cert")
    (live / "c.pem").symlink_to("real-cert.pem")
    svc = service(cert_file=live / "c.pem", key_file=live / "k.pem")
    files = layout.plan(svc, LEAF.pem, INTER.pem, LEAF.key_pem())
    first = deployfiles.keep_baseline(state, "web", files)
    deployfiles.install(files, -1, -1)
    again = deployfiles.keep_baseline(state, "web", files)  # as after a crash and restart
    assert again == first
    assert stat.S_IMODE(os.stat(state / "deployed" / "web.json").st_mode) == 0o600
    deployfiles.restore(again, [f.path for f in files])
    assert os.readlink(live / "c.pem") == "real-cert.pem"
    assert not (live / "k.pem").exists()
    deployfiles.install(files, -1, -1)
    deployfiles.save_good(state, "web", files, -1, -1, LEAF.sha256)
    saved = deployfiles.load_saved(state, "web")
    assert saved is not None and saved.served_sha256() == LEAF.sha256


# --------------------------------------------------------------------------- reload commands


def test_reload_output_is_short_and_never_carries_a_key() -> None:
    """A reload's output keeps its last characters on one line, with PEM blocks cut out."""
    noisy = b"start\x1b[31m\n" + LEAF.key_pem() + b"x" * 500 + b"\nthe end\n"
    text = short_output(noisy)
    assert "PRIVATE KEY" not in text and "\x1b" not in text and "\n" not in text
    assert text.endswith("the end") and len(text) <= 203
    assert short_output(b"a\n" + LEAF.key_pem()[:60]) == "a [PEM block removed]"


def test_run_reload_reports_exit_status_output_and_missing_programs() -> None:
    """A failing reload says its program, exit code and output; a missing one says so."""
    failed = run_reload(["sh", "-c", "echo refused >&2; exit 3"], 5)
    assert (failed.ok, failed.detail) == (False, "sh exited 3: refused")
    assert run_reload(["true"], 5).ok
    missing = run_reload(["/nonexistent/reload-me"], 5)
    assert not missing.ok and "cannot be run" in missing.detail
