"""`certdrop export`: backups openssl reads with the password and only with it, written
0600 without clobbering, and dropped back into a second certdrop as the same key and cert.

No assertion compares key-holding bytes directly, so a failure never prints a key.
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import os
import pty
import select
import stat
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes

from certdrop import cli
from certdrop import config as configuration
from certdrop.daemon import state as daemon_state
from certdrop.store.inventory import Inventory
from support.daemon import RunningDaemon, drop
from support.openssl_ca import OpenSSLCA, openssl

PASSWORD = "pässwörd 1"  # non-ASCII on purpose: certdrop and openssl must agree on bytes
CN = "www.example.com"


@dataclass(frozen=True)
class Setup:
    """A state with the entry ``web`` (RSA key, leaf + intermediate) and its CA."""

    root: Path
    config_file: Path
    ca: OpenSSLCA

    @property
    def state(self) -> Path:
        return self.root / "state"

    def run(self, *args: str) -> int:
        """`certdrop --config FILE ARGS...` in this process, from ``root``."""
        return cli.main(["--config", str(self.config_file), *args])

    def cli(self, *args: str, stdin: Any = subprocess.DEVNULL) -> subprocess.CompletedProcess[str]:
        """The same as a real process."""
        return subprocess.run(
            [sys.executable, "-m", "certdrop", "--config", str(self.config_file), *args],
            capture_output=True, text=True, timeout=120, stdin=stdin, cwd=self.root,
        )

    def password_file(self, text: str = PASSWORD + "\n", name: str = "pw") -> Path:
        path = self.root / name
        path.write_bytes(text.encode())
        return path


def completed_request(root: Path, ca: OpenSSLCA, name: str = "web") -> None:
    """`csr NAME`, signed by the openssl CA and dropped: an `unused` entry, in process."""
    config_file = root / "certdrop.toml"
    assert cli.main(["--config", str(config_file), "csr", name, "--cn", CN]) == 0
    config = configuration.load(config_file, root)
    signed = ca.sign(config.outbox / f"{name}.csr", root / f"{name}-signed.pem")
    signed.rename(config.inbox / signed.name)
    ctx, sink = daemon_state.open_context(config)
    try:
        outcome = ctx.intake.process(signed.name)
    finally:
        ctx.inventory.close()
        sink.close()
    assert outcome is not None and outcome.recorded == [name]


@pytest.fixture(scope="module")
def ca(tmp_path_factory: pytest.TempPathFactory) -> OpenSSLCA:
    """One openssl CA (root + intermediate) for the module: making it costs four openssl runs."""
    return OpenSSLCA(tmp_path_factory.mktemp("ca"))


@pytest.fixture
def setup(
    tmp_path: Path,
    ca: OpenSSLCA,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> Setup:
    """An `unused` entry `web` made through `csr` and the openssl CA; cwd is its folder."""
    config_file = tmp_path / "certdrop.toml"
    config_file.write_text(f'inbox = "inbox"\nstate = "state"\n[trust]\nca_bundle = "{ca.root}"\n')
    completed_request(tmp_path, ca)
    capsys.readouterr()
    monkeypatch.chdir(tmp_path)  # --out and --password-file are relative to the caller's folder
    return Setup(tmp_path, config_file, ca)


def stored(state: Path, name: str) -> tuple[str, str]:
    """(sha256 of the certificate, sha256 of the stored key PEM): compared, never shown."""
    inventory = Inventory(state / "inventory.sqlite3", readonly=True)
    try:
        entry, key_pem = inventory.entry(name), inventory.key_pem(name)
    finally:
        inventory.close()
    assert entry is not None and entry.sha256 is not None and key_pem is not None
    return entry.sha256, hashlib.sha256(key_pem).hexdigest()


def secrets_of(state: Path, name: str) -> list[str]:
    """The password and lines from the stored key: what no output may contain."""
    inventory = Inventory(state / "inventory.sqlite3", readonly=True)
    try:
        key_pem = inventory.key_pem(name)
    finally:
        inventory.close()
    assert key_pem is not None
    lines = key_pem.decode().splitlines()
    return [PASSWORD, "PRIVATE KEY", *lines[1:-1:5]]


def assert_no_secrets(state: Path, name: str, *outputs: str) -> None:
    text = "\n".join([*outputs, (state / "status.log").read_text()])
    leaked = [i for i, secret in enumerate(secrets_of(state, name)) if secret in text]
    assert leaked == [], "a secret (index shown, not the secret) reached an output"


def events(state: Path, event: str) -> list[dict[str, Any]]:
    lines = (state / "status.log").read_text().splitlines()
    return [e for e in map(json.loads, lines) if e["event"] == event]


# -- what openssl reads -------------------------------------------------------------------


def test_pem_export_opens_with_the_password_only(
    setup: Setup, capsys: pytest.CaptureFixture[str]
) -> None:
    """The PEM backup is an AES-256-CBC PKCS#1 key, then leaf and intermediate, 0600."""
    pw = setup.password_file()
    assert setup.run("export", "web", "--out", "web.pem", "--password-file", "pw") == 0
    out, err = capsys.readouterr()
    assert (out, err) == ("web.pem\n", "")
    path = setup.root / "web.pem"
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    data = path.read_bytes()
    assert data.startswith(b"-----BEGIN RSA PRIVATE KEY-----\nProc-Type: 4,ENCRYPTED\n")
    assert b"\nDEK-Info: AES-256-CBC," in data
    certs = x509.load_pem_x509_certificates(data)
    assert len(certs) == 2
    assert certs[0].fingerprint(hashes.SHA256()).hex() == stored(setup.state, "web")[0]
    assert certs[1] == x509.load_pem_x509_certificate(setup.ca.intermediate.read_bytes())
    assert openssl("rsa", "-in", path, "-passin", f"file:{pw}", "-noout", "-check").returncode == 0
    wrong = setup.password_file("not it\n", name="wrong")
    assert openssl("rsa", "-in", path, "-passin", f"file:{wrong}", "-noout").returncode != 0
    assert openssl("rsa", "-in", path, "-passin", "pass:", "-noout").returncode != 0
    verified = openssl("verify", "-CAfile", setup.ca.root, "-untrusted", path, path)
    assert verified.returncode == 0, verified.stderr
    assert_no_secrets(setup.state, "web", out, err)


def test_p12_export_opens_with_the_password_only(
    setup: Setup, capsys: pytest.CaptureFixture[str]
) -> None:
    """The .p12 backup (format from the suffix) uses PBES2/PBKDF2/AES-256 for openssl."""
    pw = setup.password_file()
    assert setup.run("export", "web", "--out", "web.p12", "--password-file", str(pw)) == 0
    out, err = capsys.readouterr()
    path = setup.root / "web.p12"
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    info = openssl("pkcs12", "-info", "-in", path, "-passin", f"file:{pw}", "-noout")
    assert info.returncode == 0, info.stderr
    assert "Shrouded Keybag: PBES2, PBKDF2, AES-256-CBC" in info.stdout + info.stderr
    assert "MAC: sha256" in info.stdout + info.stderr
    shown = openssl("pkcs12", "-in", path, "-passin", f"file:{pw}", "-nokeys")
    assert "friendlyName: web" in shown.stdout
    assert len(x509.load_pem_x509_certificates(shown.stdout.encode())) == 2
    for bad in ("pass:", "pass:not it"):
        assert openssl("pkcs12", "-info", "-in", path, "-passin", bad, "-noout").returncode != 0
    [event] = events(setup.state, "cert.exported")
    assert event["level"] == "info" and event["format"] == "p12" and event["encrypted"] is True
    assert event["name"] == "web" and event["file"] == str(path)
    assert_no_secrets(setup.state, "web", out, err)


@pytest.mark.parametrize(("fmt", "tool"), [("pem", "rsa"), ("p12", "pkcs12")])
def test_crlf_password_file_works_the_same_with_openssl(
    setup: Setup, capsys: pytest.CaptureFixture[str], fmt: str, tool: str
) -> None:
    """A CRLF password file opens the export with openssl's -passin file: of that file."""
    pw = setup.password_file(PASSWORD + "\r\nsecond line\r\n")
    out = setup.root / f"crlf.{fmt}"
    code = setup.run("export", "web", "--out", str(out), "--format", fmt, "--password-file", "pw")
    err = capsys.readouterr().err
    assert code == 0
    assert "CRLF" in err and err.count("\n") == 1 and PASSWORD not in err
    opened = openssl(tool, "-in", out, "-passin", f"file:{pw}", "-noout")
    assert opened.returncode == 0, opened.stderr
    lf = setup.password_file(PASSWORD + "\n", name="lf")
    assert openssl(tool, "-in", out, "-passin", f"file:{lf}", "-noout").returncode != 0


# -- asking for the password ----------------------------------------------------------------


def test_without_a_terminal_export_refuses_to_ask(
    setup: Setup, capsys: pytest.CaptureFixture[str]
) -> None:
    """No --password-file and no terminal: exit 1, one line, nothing written."""
    assert setup.run("export", "web", "--out", "web.p12") == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "no terminal" in err and "--no-password" in err
    assert not (setup.root / "web.p12").exists()
    done = setup.cli("export", "web", "--out", "web.p12")
    assert (done.returncode, done.stdout) == (1, "")
    assert done.stderr.count("\n") == 1 and "Traceback" not in done.stderr
    assert list(setup.root.glob("*.p12")) == [] and list(setup.root.glob(".*.tmp")) == []


def test_no_password_writes_a_plain_key_and_a_warning(
    setup: Setup, capsys: pytest.CaptureFixture[str]
) -> None:
    """--no-password is the explicit way to an unencrypted export, logged as a warning."""
    assert setup.run("export", "web", "--out", "plain.pem", "--no-password") == 0
    data = (setup.root / "plain.pem").read_bytes()
    assert data.startswith(b"-----BEGIN RSA PRIVATE KEY-----\nMII")
    assert openssl("rsa", "-in", setup.root / "plain.pem", "-noout").returncode == 0
    [event] = events(setup.state, "cert.exported")
    assert event["level"] == "warning" and event["encrypted"] is False
    capsys.readouterr()
    code = setup.run("export", "web", "--out", "x.pem", "--no-password", "--password-file", "pw")
    err = capsys.readouterr().err
    assert code == 1 and "not allowed with argument" in err and err.count("\n") == 1


def _on_a_terminal(setup: Setup, out: str, answers: list[str]) -> tuple[int, str]:
    """Run `export` on a real pseudo-terminal, typing each answer after each prompt."""
    master, slave = pty.openpty()
    proc = subprocess.Popen(
        [sys.executable, "-m", "certdrop", "--config", str(setup.config_file),
         "export", "web", "--out", out],
        stdin=slave, stdout=slave, stderr=slave, cwd=setup.root, start_new_session=True,
    )
    os.close(slave)
    seen = b""
    try:
        deadline = time.monotonic() + 60
        for number, answer in enumerate(answers, 1):
            # getpass flushes typed-ahead input, so wait for the prompt before typing.
            while seen.count(b"password: ") < number:
                assert time.monotonic() < deadline, seen
                ready, _, _ = select.select([master], [], [], 1)
                if ready:
                    seen += os.read(master, 1024)
            os.write(master, answer.encode() + b"\r")
        code = proc.wait(60)
        while select.select([master], [], [], 0.2)[0]:
            try:
                chunk = os.read(master, 1024)
            except OSError:  # EIO: the other side is closed
                break
            if not chunk:
                break
            seen += chunk
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(5)
        os.close(master)
    return code, seen.decode(errors="replace")


def test_on_a_terminal_the_password_is_asked_twice(setup: Setup) -> None:
    """On a terminal two equal answers make the export; the password is never echoed."""
    code, screen = _on_a_terminal(setup, "tty.p12", [PASSWORD, PASSWORD])
    assert code == 0, screen
    assert "Repeat the export password: " in screen and PASSWORD not in screen
    pw = setup.password_file()
    info = openssl("pkcs12", "-info", "-in", setup.root / "tty.p12", "-passin", f"file:{pw}", "-noout")
    assert info.returncode == 0, info.stderr


def test_on_a_terminal_two_different_answers_write_nothing(setup: Setup) -> None:
    """Two different answers end with exit 1 and no file."""
    code, screen = _on_a_terminal(setup, "tty.p12", [PASSWORD, PASSWORD + "x"])
    assert code == 1 and "the two passwords differ" in screen
    assert not (setup.root / "tty.p12").exists()


# -- where the file goes --------------------------------------------------------------------


def test_existing_files_and_symlinks_are_kept_without_force(
    setup: Setup, capsys: pytest.CaptureFixture[str]
) -> None:
    """An existing file or symlink is refused; --force replaces the link, not its target."""
    setup.password_file()
    (setup.root / "taken.p12").write_bytes(b"keep me")
    target = setup.root / "precious"
    target.write_bytes(b"precious")
    (setup.root / "link.p12").symlink_to(target)
    for out in ("taken.p12", "link.p12"):
        assert setup.run("export", "web", "--out", out, "--password-file", "pw") == 1
        err = capsys.readouterr().err
        assert err.count("\n") == 1 and "already exists" in err and "--force" in err
    assert (setup.root / "taken.p12").read_bytes() == b"keep me"
    assert setup.run("export", "web", "--out", "link.p12", "--password-file", "pw", "--force") == 0
    assert target.read_bytes() == b"precious"
    replaced = setup.root / "link.p12"
    assert not replaced.is_symlink() and stat.S_IMODE(replaced.stat().st_mode) == 0o600
    assert [p.name for p in setup.root.iterdir() if p.name.endswith(".tmp")] == []


@pytest.mark.parametrize(
    ("name", "out", "message"),
    [
        ("nope", "x.p12", "no certificate named 'nope'"),
        ("web", "missing/x.p12", "the folder missing does not exist"),
        ("web", ".", "is a folder"),
    ],
)
def test_user_mistakes_are_one_line(
    setup: Setup, capsys: pytest.CaptureFixture[str], name: str, out: str, message: str
) -> None:
    """An unknown name, a missing folder or a folder as --out: exit 1, one line."""
    setup.password_file()
    assert setup.run("export", name, "--out", out, "--password-file", "pw") == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and message in err


def test_a_pending_request_has_nothing_to_export(
    setup: Setup, capsys: pytest.CaptureFixture[str]
) -> None:
    """Exporting a `requested` entry says the certificate is still missing."""
    assert setup.run("csr", "next", "--cn", "next.example.com", "--key-type", "ec") == 0
    capsys.readouterr()
    assert setup.run("export", "next", "--out", "n.p12", "--no-password") == 1
    assert "still waiting for its certificate" in capsys.readouterr().err


def test_bad_password_files_are_refused_without_showing_them(
    setup: Setup, capsys: pytest.CaptureFixture[str]
) -> None:
    """A missing or empty password file is one line naming the file, and nothing is written."""
    setup.password_file("\n", name="empty")
    for pw, message in [("absent", "cannot read the password file absent"), ("empty", "empty")]:
        assert setup.run("export", "web", "--out", "w.p12", "--password-file", pw) == 1
        err = capsys.readouterr().err
        assert err.count("\n") == 1 and message in err
    assert not (setup.root / "w.p12").exists()


# -- the round trip -------------------------------------------------------------------------


@pytest.mark.parametrize("fmt", ["p12", "pem"])
def test_round_trip_into_a_second_certdrop(
    daemon_factory, tmp_path: Path, ca: OpenSSLCA, fmt: str
) -> None:
    """request -> openssl CA -> drop -> unused -> export (daemon running) -> second daemon:
    the same certificate and the same key, with no secret in any output."""
    first_root, second_root = tmp_path / "first", tmp_path / "second"
    first_root.mkdir()
    second_root.mkdir()
    pw = tmp_path / "export.pw"
    pw.write_bytes(PASSWORD.encode() + b"\n")
    first: RunningDaemon = daemon_factory(f'[trust]\nca_bundle = "{ca.root}"\n', root=first_root)
    first.start()
    made = first.cli("csr", "web", "--cn", CN)
    signed = ca.sign(Path(made.stdout.strip()), tmp_path / "signed.pem")
    drop(first.inbox, "signed.pem", signed.read_bytes())
    assert first.wait_for("drop.accepted", file="signed.pem")["certificates"] == ["web"]
    original = stored(first.state, "web")

    out = tmp_path / f"backup.{fmt}"
    exported = first.cli("export", "web", "--out", str(out), "--password-file", str(pw))
    assert exported.stdout == f"{out}\n" and exported.stderr == ""
    assert first.wait_for("cert.exported", name="web")["format"] == fmt

    second: RunningDaemon = daemon_factory(
        f'[trust]\nca_bundle = "{ca.root}"\n[intake]\npassphrase_files = ["{pw}"]\n',
        root=second_root,
    )
    second.start()
    drop(second.inbox, out.name, out.read_bytes())
    assert second.wait_for("drop.accepted", file=out.name)["certificates"] == ["backup"]
    assert stored(second.state, "backup") == original
    [entry] = json.loads(second.cli("status", "--json").stdout)["certificates"]
    assert entry["status"] == "unused" and entry["trusted"] is True
    first.stop()
    second.stop()
    outputs = [made.stdout, made.stderr, exported.stdout, exported.stderr,
               (first_root / "daemon.stderr").read_text(), (second_root / "daemon.stderr").read_text(),
               (second.state / "status.log").read_text()]
    assert_no_secrets(first.state, "web", *outputs)


def test_export_needs_no_state_lock(setup: Setup, capsys: pytest.CaptureFixture[str]) -> None:
    """Export reads the state without its lock (held here as a busy daemon would) or changes."""
    before = stored(setup.state, "web")
    setup.password_file()
    with open(setup.state / "lock", "a") as held:
        fcntl.flock(held, fcntl.LOCK_EX | fcntl.LOCK_NB)  # as a busy daemon would hold it
        assert setup.run("export", "web", "--out", "w.pem", "--password-file", "pw") == 0
    assert stored(setup.state, "web") == before
    assert capsys.readouterr().out == "w.pem\n"
