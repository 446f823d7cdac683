"""Requests certdrop makes (`certdrop csr`, `NAME.request.toml` drops) and the certificates
that complete them: real openssl as the CSR's reader and as the CA, a real running daemon.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import stat
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from certdrop import cli
from certdrop import config as configuration
from certdrop.daemon import state as daemon_state
from certdrop.intake.pipeline import Intake
from certdrop.store.inventory import Inventory
from support.daemon import RunningDaemon, drop
from support.openssl_ca import OpenSSLCA, openssl
from support.pkitools import NOW, ec_key, issue

CN = "www.example.com"


@pytest.fixture
def config_file(tmp_path: Path) -> Path:
    """A config with the inbox and state in tmp_path (relative to the file)."""
    path = tmp_path / "certdrop.toml"
    path.write_text('inbox = "inbox"\nstate = "state"\n')
    return path


@pytest.fixture
def intake(config_file: Path) -> Iterator[Intake]:
    """The intake exactly as the daemon wires it (daemon_state.open_context), driven in process."""
    config = configuration.load(config_file, config_file.parent)
    daemon_state.prepare_folders(config)
    ctx, sink = daemon_state.open_context(config)
    yield ctx.intake
    ctx.inventory.close()
    sink.close()


def certdrop(config_file: Path, *args: str) -> int:
    """`certdrop --config FILE ARGS...` in this process; the exit code."""
    return cli.main(["--config", str(config_file), *args])


def status_of(config_file: Path, capsys: pytest.CaptureFixture[str]) -> dict[str, Any]:
    capsys.readouterr()
    assert certdrop(config_file, "status", "--json") == 0
    return dict(json.loads(capsys.readouterr().out))


def entries(state: Path) -> dict[str, dict[str, Any]]:
    """name -> (status, sans, request) of every entry, read like `status` reads it."""
    inventory = Inventory(state / "inventory.sqlite3", readonly=True)
    try:
        return {
            e.name: {"status": e.status, "sans": e.sans, "request": e.request, "sha256": e.sha256}
            for e in inventory.entries()
        }
    finally:
        inventory.close()


def key_body(state: Path, name: str) -> str:
    """A line from the middle of the stored key's PEM, to look for in outputs."""
    inventory = Inventory(state / "inventory.sqlite3", readonly=True)
    try:
        pem = inventory.key_pem(name)
    finally:
        inventory.close()
    assert pem is not None
    return pem.decode().splitlines()[3]


def events(state: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in (state / "status.log").read_text().splitlines()]


def verified_subject(csr: Path) -> str:
    """openssl's verdict on the CSR's self-signature and its subject line."""
    result = openssl("req", "-verify", "-noout", "-subject", "-in", csr)
    # OpenSSL 3.0 exits 0 even for a bad signature, so its words are the verdict.
    assert result.returncode == 0 and "verify OK" in result.stdout + result.stderr, result.stderr
    return next(line for line in result.stdout.splitlines() if line.startswith("subject="))


def sign(
    csr_pem: bytes, sans: list[str] | None = None, subject: x509.Name | None = None
) -> x509.Certificate:
    """A certificate for the CSR's key from a throwaway in-process CA, with the CSR's
    subject unless ``subject`` replaces it, and exactly the SANs in ``sans``."""
    csr = x509.load_pem_x509_csr(csr_pem)
    ca = issue("In-process CA", ec_key(400), ca=True)
    builder = (
        x509.CertificateBuilder()
        .subject_name(subject or csr.subject)
        .issuer_name(ca.cert.subject)
        .public_key(csr.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(NOW - dt.timedelta(hours=1))
        .not_valid_after(NOW + dt.timedelta(days=30))
    )
    if sans:
        builder = builder.add_extension(
            x509.SubjectAlternativeName([x509.DNSName(s) for s in sans]), critical=False
        )
    return builder.sign(ca.key, hashes.SHA256())


def pem(cert: x509.Certificate) -> bytes:
    return cert.public_bytes(serialization.Encoding.PEM)


def put(intake: Intake, name: str, data: bytes) -> str:
    (intake.inbox / name).write_bytes(data)
    outcome = intake.process(name)
    assert outcome is not None
    return outcome.result


# -- certdrop csr ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("options", "key"),
    [
        ([], {"type": "RSA", "bits": 2048}),
        (["--key-size", "4096"], {"type": "RSA", "bits": 4096}),
        (["--key-type", "ec"], {"type": "EC", "bits": 256}),
    ],
)
def test_csr_writes_a_csr_openssl_verifies(
    config_file: Path, capsys: pytest.CaptureFixture[str], options: list[str], key: dict[str, Any]
) -> None:
    """`csr` prints the path of a 0644 CSR that openssl verifies, with the subject asked for."""
    code = certdrop(
        config_file, "csr", "web", "--cn", CN, "--san", CN, "--san", "api.example.com", "--san",
        "192.0.2.7", "--country", "de", "--state", "Bavaria", "--locality", "Munich",
        "--org", "Acme", "--ou", "Ops", "--email", "ops@example.com", *options,
    )
    out, err = capsys.readouterr()
    assert (code, err) == (0, "")
    csr = config_file.parent / "state" / "outbox" / "web.csr"
    assert out == f"{csr}\n"
    assert stat.S_IMODE(csr.stat().st_mode) == 0o644
    assert verified_subject(csr) == (
        f"subject=C = DE, ST = Bavaria, L = Munich, O = Acme, OU = Ops, CN = {CN}, "
        "emailAddress = ops@example.com"
    )
    request = x509.load_pem_x509_csr(csr.read_bytes())
    san = request.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert [str(n.value) for n in san] == [CN, "api.example.com", "192.0.2.7"]
    [entry] = status_of(config_file, capsys)["certificates"]
    assert (entry["name"], entry["status"], entry["key"]) == ("web", "requested", key)
    assert entry["sans"] == [CN, "api.example.com", "192.0.2.7"]


def test_csr_keeps_the_key_private_and_out_of_every_output(
    config_file: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """The key lives only in the 0600 database of the 0700 state folder, never in output."""
    assert certdrop(config_file, "csr", "web", "--cn", CN) == 0
    out, err = capsys.readouterr()
    state = config_file.parent / "state"
    assert stat.S_IMODE(state.stat().st_mode) == 0o700
    assert stat.S_IMODE((state / "inventory.sqlite3").stat().st_mode) == 0o600
    body = key_body(state, "web")
    log = (state / "status.log").read_text()
    assert body not in out + err + log
    assert "PRIVATE KEY" not in out + err + log
    assert [e["event"] for e in events(state)] == ["csr.created"]


def test_cn_is_the_only_san_unless_sans_are_given(
    config_file: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Without --san the CN is the one SAN; with --san only the given names are SANs."""
    assert certdrop(config_file, "csr", "plain", "--cn", "Mail.Example.org") == 0
    assert certdrop(config_file, "csr", "given", "--cn", CN, "--san", "other.example.com") == 0
    outbox = config_file.parent / "state" / "outbox"
    for name, sans in [("plain", ["mail.example.org"]), ("given", ["other.example.com"])]:
        csr = x509.load_pem_x509_csr((outbox / f"{name}.csr").read_bytes())
        ext = csr.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
        assert ext.get_values_for_type(x509.DNSName) == sans


BAD_FIELDS = [
    (["--country", "DEU"], "country 'DEU' is not two letters"),
    (["--email", "not-an-address"], "email 'not-an-address' is not an address"),
    (["--cn", "c" * 65, "--san", "a.example"], "cn is 65 characters long; the limit is 64"),
    (["--key-size", "1024"], "key_size 1024 is not supported for RSA; use 2048 or 4096"),
    (["--key-size", "big"], "key_size 'big' is not a number"),
    (["--key-type", "ec", "--key-size", "4096"], "key_size 4096 is not supported for EC"),
]


@pytest.mark.parametrize(("options", "message"), BAD_FIELDS)
def test_bad_fields_exit_1_with_one_line(
    config_file: Path, capsys: pytest.CaptureFixture[str], options: list[str], message: str
) -> None:
    """Each bad field ends `csr` with exit 1, one stderr line naming it, and nothing made."""
    code = certdrop(config_file, "csr", "web", "--cn", CN, *options)
    out, err = capsys.readouterr()
    assert (code, out) == (1, "")
    assert err.count("\n") == 1 and err.startswith("certdrop: request 'web' not created: ")
    assert message in err
    assert list((config_file.parent / "state" / "outbox").iterdir()) == []
    assert entries(config_file.parent / "state") == {}


def test_a_name_in_use_is_refused_with_the_other_problems(
    config_file: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A taken NAME is refused, on the same one line as every bad field, and nothing changes."""
    assert certdrop(config_file, "csr", "web", "--cn", CN) == 0
    csr = config_file.parent / "state" / "outbox" / "web.csr"
    before = csr.read_bytes()
    capsys.readouterr()
    assert certdrop(config_file, "csr", "web", "--cn", CN, "--country", "DEU") == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1
    assert "name 'web' is already in use; pick another name; country 'DEU'" in err
    assert csr.read_bytes() == before
    assert certdrop(config_file, "csr", "../escape", "--cn", CN) == 1
    assert "name '../escape' contains '/'" in capsys.readouterr().err


def test_bad_fields_as_a_subprocess(config_file: Path) -> None:
    """As a real process, several bad fields give exit 1 and one line, no traceback."""
    done = subprocess.run(
        [sys.executable, "-m", "certdrop", "--config", str(config_file), "csr", "web",
         "--cn", CN, "--country", "DEU", "--email", "x@y", "--key-size", "1024"],
        capture_output=True, text=True, timeout=60, stdin=subprocess.DEVNULL,
    )
    assert (done.returncode, done.stdout) == (1, "")
    assert done.stderr.count("\n") == 1 and "Traceback" not in done.stderr
    for fragment in ("country 'DEU'", "email 'x@y'", "key_size 1024"):
        assert fragment in done.stderr


# -- NAME.request.toml drops -------------------------------------------------------------


REQUEST_TOML = f"""\
cn = "{CN}"
sans = ["{CN}", "api.example.com"]
country = "DE"
org = "Acme"
key_type = "ec"
"""


def test_request_drop_makes_the_same_request(intake: Intake) -> None:
    """web.request.toml becomes a `requested` entry and outbox/web.csr, and leaves the inbox."""
    assert put(intake, "web.request.toml", REQUEST_TOML.encode()) == "accepted"
    assert not (intake.inbox / "web.request.toml").exists()
    csr = intake.config.outbox / "web.csr"
    assert verified_subject(csr) == f"subject=C = DE, O = Acme, CN = {CN}"
    entry = entries(intake.config.state)["web"]
    assert entry["status"] == "requested" and entry["sans"] == [CN, "api.example.com"]
    assert entry["request"]["key_type"] == "ec"
    log = [(e["event"], e.get("file")) for e in events(intake.config.state)]
    assert log == [("csr.created", None), ("drop.accepted", "web.request.toml")]
    drops = intake.inventory.db.execute("SELECT file, result FROM drops").fetchall()
    assert [tuple(r) for r in drops] == [("web.request.toml", "accepted")]


def test_invalid_request_drop_lists_every_problem(intake: Intake) -> None:
    """A request with several bad fields is rejected as invalid_request naming each one."""
    bad = 'cn = "www.example.com"\ncountry = "DEU"\nemail = "nobody"\nkey_size = 1024\nnmae = 1\n'
    assert put(intake, "web.request.toml", bad.encode()) == "rejected"
    reason = json.loads((intake.inbox / "rejected" / "web.request.toml.reason.json").read_text())
    assert reason["code"] == "invalid_request"
    for fragment in ("unknown keys 'nmae'", "country 'DEU'", "email 'nobody'", "key_size 1024"):
        assert fragment in reason["reason"]
    assert (intake.inbox / "rejected" / "web.request.toml").exists()
    assert entries(intake.config.state) == {}
    assert list(intake.config.outbox.iterdir()) == []


@pytest.mark.parametrize(
    ("data", "fragment"),
    [
        (b'cn = "unclosed\n', "not valid TOML"),
        (b"\xff\xfecn", "not UTF-8"),
        (b"", "cn is missing"),
    ],
)
def test_unreadable_request_drop_is_invalid_request(
    intake: Intake, data: bytes, fragment: str
) -> None:
    """A request file that is not UTF-8 TOML with a cn is rejected, saying why."""
    assert put(intake, "x.request.toml", data) == "rejected"
    reason = json.loads((intake.inbox / "rejected" / "x.request.toml.reason.json").read_text())
    assert reason["code"] == "invalid_request" and fragment in reason["reason"]


def test_request_drop_for_a_taken_name_is_rejected(intake: Intake) -> None:
    """A second request under the same name is refused, and the first stays as it was."""
    assert put(intake, "web.request.toml", REQUEST_TOML.encode()) == "accepted"
    first = (intake.config.outbox / "web.csr").read_bytes()
    assert put(intake, "web.request.toml", REQUEST_TOML.encode()) == "rejected"
    reason = json.loads((intake.inbox / "rejected" / "web.request.toml.reason.json").read_text())
    assert "name 'web' is already in use" in reason["reason"]
    assert (intake.config.outbox / "web.csr").read_bytes() == first


def test_request_drop_recovery_neither_loses_nor_repeats_it(intake: Intake) -> None:
    """A claimed request is made at start-up; one already committed is only cleaned up."""
    claimed = intake.inbox / ".claimed"
    (claimed / "00000000000000000001.early.request.toml").write_bytes(REQUEST_TOML.encode())
    assert [(o.file, o.result) for o in intake.recover()] == [("early.request.toml", "accepted")]
    assert entries(intake.config.state)["early"]["status"] == "requested"
    # A crash after the commit but before the claim was removed: the claim comes back.
    assert put(intake, "late.request.toml", REQUEST_TOML.encode()) == "accepted"
    [(claim,)] = intake.inventory.db.execute(
        "SELECT claim FROM drops WHERE file = 'late.request.toml'"
    ).fetchall()
    csr = (intake.config.outbox / "late.csr").read_bytes()
    (claimed / f"{claim}.late.request.toml").write_bytes(REQUEST_TOML.encode())
    assert [(o.file, o.result) for o in intake.recover()] == [("late.request.toml", "accepted")]
    assert (intake.config.outbox / "late.csr").read_bytes() == csr
    assert [e["name"] for e in events(intake.config.state) if e["event"] == "csr.created"] == [
        "early",
        "late",
    ]
    assert os.listdir(claimed) == []


# -- matching certificates to requests ------------------------------------------------


def test_certificate_alone_completes_its_request(
    intake: Intake, config_file: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A certificate for a pending request's key takes its name and becomes `unused`."""
    assert certdrop(config_file, "csr", "web", "--cn", CN, "--key-type", "ec") == 0
    csr_pem = (intake.config.outbox / "web.csr").read_bytes()
    other = issue("stranger.example.com", ec_key(401), issue("CA", ec_key(402), ca=True))
    assert put(intake, "stranger.crt", other.pem) == "held"
    assert put(intake, "issued.crt", pem(sign(csr_pem, [CN]))) == "accepted"
    entry = entries(intake.config.state)["web"]
    assert entry["status"] == "unused" and entry["sans"] == [CN]
    assert "issued" not in entries(intake.config.state)
    matched = [e for e in events(intake.config.state) if e["event"] == "cert.matched"]
    assert [(e["level"], e["name"], "changes" in e) for e in matched] == [("info", "web", False)]
    assert [h["kind"] for h in status_of(config_file, capsys)["held"]] == ["certificate"]


def test_changes_the_ca_made_are_a_warning(intake: Intake, config_file: Path) -> None:
    """A certificate with another O and without the asked SAN still completes, with a warning."""
    assert certdrop(config_file, "csr", "web", "--cn", CN, "--org", "Acme", "--key-type", "ec") == 0
    csr_pem = (intake.config.outbox / "web.csr").read_bytes()
    changed = x509.Name(
        [
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, "Acme GmbH"),
            x509.NameAttribute(NameOID.COMMON_NAME, CN),
        ]
    )
    assert put(intake, "issued.crt", pem(sign(csr_pem, None, changed))) == "accepted"
    assert entries(intake.config.state)["web"]["status"] == "unused"
    [matched] = [e for e in events(intake.config.state) if e["event"] == "cert.matched"]
    assert matched["level"] == "warning"
    assert matched["changes"] == [
        "The CA changed O from 'Acme' to 'Acme GmbH'.",
        "The CA removed the SAN 'www.example.com'.",
    ]


def test_csr_dropped_with_its_key_is_a_request_with_its_fields(intake: Intake) -> None:
    """CSR + key become a `requested` entry holding the CSR's fields; its certificate completes it."""
    key = ec_key(403)
    csr = (
        x509.CertificateSigningRequestBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, CN)]))
        .add_extension(
            x509.SubjectAlternativeName([x509.DNSName(CN), x509.DNSName("alt.example.com")]),
            critical=False,
        )
        .sign(key, hashes.SHA256())
    )
    key_pem = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    csr_pem = csr.public_bytes(serialization.Encoding.PEM)
    assert put(intake, "own.pem", csr_pem + key_pem) == "accepted"
    entry = entries(intake.config.state)["own"]
    assert entry["status"] == "requested" and entry["sans"] == [CN, "alt.example.com"]
    assert entry["request"]["cn"] == CN and entry["request"]["key_type"] == "ec"
    assert put(intake, "own-issued.crt", pem(sign(csr_pem, [CN, "alt.example.com"]))) == "accepted"
    assert entries(intake.config.state)["own"]["status"] == "unused"


def test_certificate_with_its_key_still_completes_the_request(intake: Intake) -> None:
    """A certificate dropped with the request's key fills that request, not a second entry."""
    key = ec_key(404)
    csr_pem = (
        x509.CertificateSigningRequestBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, CN)]))
        .sign(key, hashes.SHA256())
        .public_bytes(serialization.Encoding.PEM)
    )
    key_pem = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    assert put(intake, "req.pem", csr_pem + key_pem) == "accepted"
    assert put(intake, "both.pem", pem(sign(csr_pem, [CN])) + key_pem) == "accepted"
    assert {n: e["status"] for n, e in entries(intake.config.state).items()} == {"req": "unused"}


def test_held_certificate_pairs_with_a_later_csr_and_key(intake: Intake) -> None:
    """A certificate that came before its CSR + key is completed by them, not left held."""
    key = ec_key(405)
    csr_pem = (
        x509.CertificateSigningRequestBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, CN)]))
        .sign(key, hashes.SHA256())
        .public_bytes(serialization.Encoding.PEM)
    )
    key_pem = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    assert put(intake, "early.crt", pem(sign(csr_pem, [CN]))) == "held"
    assert put(intake, "late.pem", csr_pem + key_pem) == "accepted"
    assert {n: e["status"] for n, e in entries(intake.config.state).items()} == {"early": "unused"}
    assert intake.inventory.held() == []


# -- with a running daemon and a real openssl CA -------------------------------------------


def test_openssl_signed_certificate_completes_a_request_across_a_restart(
    daemon_factory, tmp_path: Path
) -> None:
    """`csr` through the daemon's socket, a restart, then the openssl-signed cert completes it."""
    ca = OpenSSLCA(tmp_path / "ca")
    d: RunningDaemon = daemon_factory('[trust]\nca_bundle = "ca/root.pem"\n').start()
    made = d.cli("csr", "web", "--cn", CN, "--san", CN, "--san", "api.example.com", "--org", "Acme")
    csr = d.state / "outbox" / "web.csr"
    assert made.stdout == f"{csr}\n" and made.stderr == ""
    d.wait_for("csr.created", name="web")
    assert verified_subject(csr) == f"subject=O = Acme, CN = {CN}"
    taken = d.cli("csr", "web", "--cn", CN, "--country", "DEU", check=False)
    assert taken.returncode == 1 and taken.stderr.count("\n") == 1
    assert "already in use" in taken.stderr and "country 'DEU'" in taken.stderr
    d.stop()
    d.start()
    signed = ca.sign(csr, tmp_path / "signed.pem")
    drop(d.inbox, "signed.pem", signed.read_bytes())
    accepted = d.wait_for("drop.accepted", file="signed.pem")
    assert accepted["certificates"] == ["web"]
    matched = d.wait_for("cert.matched", name="web")
    assert matched["level"] == "info" and "changes" not in matched
    status = json.loads(d.cli("status", "--json").stdout)
    [entry] = status["certificates"]
    assert entry["status"] == "unused" and entry["trusted"] is True
    assert entry["sha256"] == ca.leaf_of(signed).fingerprint(hashes.SHA256()).hex()
    assert entry["sans"] == [CN, "api.example.com"]
    body = key_body(d.state, "web")
    assert body not in d.log_path.read_text() + (d.root / "daemon.stderr").read_text()


def test_request_drop_and_a_ca_that_edits_it_in_a_running_daemon(
    daemon_factory, tmp_path: Path
) -> None:
    """A request.toml drop makes the CSR; openssl's edits to it are logged as a warning."""
    ca = OpenSSLCA(tmp_path / "ca")
    d: RunningDaemon = daemon_factory('[trust]\nca_bundle = "ca/root.pem"\n').start()
    drop(d.inbox, "mail.request.toml", b'cn = "mail.example.com"\norg = "Acme"\n')
    assert d.wait_for("drop.accepted", file="mail.request.toml")["certificates"] == ["mail"]
    csr = d.state / "outbox" / "mail.csr"
    assert verified_subject(csr) == "subject=O = Acme, CN = mail.example.com"
    edited = ca.sign(
        csr, tmp_path / "edited.pem", copy_extensions=False, subj="/O=Acme Ltd/CN=mail.example.com"
    )
    drop(d.inbox, "edited.pem", edited.read_bytes())
    assert d.wait_for("drop.accepted", file="edited.pem")["certificates"] == ["mail"]
    matched = d.wait_for("cert.matched", name="mail")
    assert matched["level"] == "warning"
    assert matched["changes"] == [
        "The CA changed O from 'Acme' to 'Acme Ltd'.",
        "The CA removed the SAN 'mail.example.com'.",
    ]
    drop(d.inbox, "broken.request.toml", b'cn = "x.example"\ncountry = "Germany"\n')
    rejected = d.wait_for("drop.rejected", file="broken.request.toml")
    assert rejected["code"] == "invalid_request" and "country 'Germany'" in rejected["reason"]


def test_status_shows_an_ec_request_key(config_file: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """A P-256 request's key is listed as EC 256 and its CSR is signed by that key."""
    assert certdrop(config_file, "csr", "ec", "--cn", CN, "--key-type", "EC") == 0
    csr = x509.load_pem_x509_csr((config_file.parent / "state" / "outbox" / "ec.csr").read_bytes())
    assert isinstance(csr.public_key(), ec.EllipticCurvePublicKey) and csr.is_signature_valid
    [entry] = status_of(config_file, capsys)["certificates"]
    assert entry["key"] == {"type": "EC", "bits": 256}
