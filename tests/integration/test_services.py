"""The real-service harness and the TLS probe, proven against real processes on 127.0.0.1."""

from __future__ import annotations

import socket
import subprocess
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType

import pytest
import trustme
from aiosmtpd.controller import Controller
from aiosmtpd.handlers import Sink
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from certdrop.services.probe import ProbeError, served_fingerprint, wait_for_fingerprint
from support.nginx import Nginx
from support.pebble import Pebble
from support.postfix import Postfix
from support.process import LOOPBACK, any_alive, free_port, need, run, sha256_hex
from support.smtp_sink import SmtpSink
from support.sshd import Sshd

pytestmark = pytest.mark.real


# --------------------------------------------------------------------------- material


@dataclass(frozen=True)
class Leaf:
    """A certificate on disk: ``fullchain`` (leaf first), ``key``, and for postfix
    ``key_then_chain`` (key first, then leaf, then intermediates)."""

    fullchain: Path
    key: Path
    key_then_chain: Path
    sha256: str


@pytest.fixture(scope="module")
def ca() -> trustme.CA:
    return trustme.CA()


def write_leaf(ca: trustme.CA, folder: Path, name: str, *identities: str) -> Leaf:
    """Issue a leaf for ``identities`` and write its files under ``folder`` as ``name.*``."""
    folder.mkdir(parents=True, exist_ok=True)
    leaf = ca.issue_cert(*(identities or ("localhost", LOOPBACK)))
    chain = b"".join(blob.bytes() for blob in leaf.cert_chain_pems)
    key = leaf.private_key_pem.bytes()
    files = Leaf(
        folder / f"{name}.fullchain.pem",
        folder / f"{name}.key",
        folder / f"{name}.key-chain.pem",
        sha256_hex(x509.load_pem_x509_certificate(chain).public_bytes(serialization.Encoding.DER)),
    )
    files.fullchain.write_bytes(chain)
    for path, data in ((files.key, key), (files.key_then_chain, key + chain)):
        path.touch(mode=0o600)
        path.write_bytes(data)
    return files


class PlainListener:
    """A TCP listener on 127.0.0.1 that is not TLS: it sends ``greeting`` (or nothing)."""

    def __init__(self, greeting: bytes | None) -> None:
        self.greeting = greeting
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.sock.bind((LOOPBACK, 0))
        self.sock.listen(8)
        self.port: int = self.sock.getsockname()[1]
        self.thread = threading.Thread(target=self._serve, daemon=True)

    def _serve(self) -> None:
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return  # closed: the test is over
            with conn:
                if self.greeting is not None:
                    conn.sendall(self.greeting)
                    conn.settimeout(2)
                    try:
                        conn.recv(4096)  # the ClientHello, answered with more plain text
                        conn.sendall(self.greeting)
                    except OSError:
                        pass
                else:
                    conn.settimeout(3)
                    try:  # silent until the client gives up
                        while conn.recv(4096):
                            pass
                    except OSError:
                        pass

    def __enter__(self) -> PlainListener:
        self.thread.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.sock.shutdown(socket.SHUT_RDWR)
        self.sock.close()
        self.thread.join(timeout=5)


# --------------------------------------------------------------------------- nginx


@pytest.fixture
def two_leaves(ca: trustme.CA, tmp_path: Path) -> tuple[Leaf, Leaf]:
    return write_leaf(ca, tmp_path / "certs", "old"), write_leaf(ca, tmp_path / "certs", "new")


def test_nginx_serves_the_configured_certificate(
    tmp_path: Path, two_leaves: tuple[Leaf, Leaf]
) -> None:
    """An nginx server serves its configured certificate, as the probe's fingerprint shows."""
    old, new = two_leaves
    servers = [(free_port(), old.fullchain, old.key), (free_port(), new.fullchain, new.key)]
    with Nginx(tmp_path / "nginx", servers) as nginx:
        assert served_fingerprint(nginx.urls[0]) == old.sha256
        assert served_fingerprint(nginx.urls[1]) == new.sha256
        assert served_fingerprint(f"https://localhost:{servers[0][0]}") == old.sha256


def test_nginx_reload_serves_the_new_certificate(
    tmp_path: Path, two_leaves: tuple[Leaf, Leaf]
) -> None:
    """After swapping the files and reloading, three handshakes in a row see the new cert."""
    old, new = two_leaves
    live_cert, live_key = tmp_path / "live.pem", tmp_path / "live.key"
    live_cert.write_bytes(old.fullchain.read_bytes())
    live_key.write_bytes(old.key.read_bytes())
    with Nginx(tmp_path / "nginx", [(free_port(), live_cert, live_key)]) as nginx:
        url = nginx.urls[0]
        assert served_fingerprint(url) == old.sha256
        live_cert.write_bytes(new.fullchain.read_bytes())
        live_key.write_bytes(new.key.read_bytes())
        nginx.reload()
        result = wait_for_fingerprint(url, new.sha256, timeout=5.0)
        assert result.ok, result.detail
        assert result.seen == new.sha256
        assert result.attempts >= 3
        stale = wait_for_fingerprint(url, old.sha256.upper(), timeout=0.3)
        assert (stale.ok, stale.seen) == (False, new.sha256)
        assert "still serves" in stale.detail


def test_nginx_reload_refuses_a_mismatched_pair(
    tmp_path: Path, two_leaves: tuple[Leaf, Leaf]
) -> None:
    """A reload with a key that does not match the certificate fails and keeps the old cert."""
    old, new = two_leaves
    live_cert, live_key = tmp_path / "live.pem", tmp_path / "live.key"
    live_cert.write_bytes(old.fullchain.read_bytes())
    live_key.write_bytes(old.key.read_bytes())
    with Nginx(tmp_path / "nginx", [(free_port(), live_cert, live_key)]) as nginx:
        live_cert.write_bytes(new.fullchain.read_bytes())
        with pytest.raises(RuntimeError, match="key values mismatch"):
            nginx.reload()
        assert served_fingerprint(nginx.urls[0]) == old.sha256


def test_nginx_stop_leaves_no_process(tmp_path: Path, two_leaves: tuple[Leaf, Leaf]) -> None:
    """Leaving the Nginx context, even by an exception, stops the master and all workers."""
    old, _ = two_leaves
    with (
        pytest.raises(ZeroDivisionError),
        Nginx(tmp_path / "nginx", [(free_port(), old.fullchain, old.key)]) as nginx,
    ):
        assert nginx.process is not None
        pids = nginx.process.pids()
        assert len(pids) == 3  # the master and two workers
        raise ZeroDivisionError
    assert any_alive(pids) == []


# --------------------------------------------------------------------------- probe errors


def test_probe_reports_a_closed_port() -> None:
    """Probing a port nobody listens on is a ProbeError saying the connection was refused."""
    url = f"https://{LOOPBACK}:{free_port()}"
    with pytest.raises(ProbeError, match="connection refused") as info:
        served_fingerprint(url)
    assert info.value.url == url


def test_probe_reports_a_plain_text_listener() -> None:
    """Probing a plain-TCP server that answers in clear text is a handshake-failure ProbeError."""
    with (
        PlainListener(b"HTTP/1.1 400 Bad Request\r\n\r\n") as plain,
        pytest.raises(ProbeError, match=r"TLS handshake with .* failed"),
    ):
        served_fingerprint(f"https://{LOOPBACK}:{plain.port}")


def test_probe_reports_a_silent_listener_as_timeout() -> None:
    """Probing a server that never answers is a ProbeError naming the timeout."""
    with (
        PlainListener(None) as plain,
        pytest.raises(ProbeError, match=r"no answer from .* within 0\.3 s"),
    ):
        served_fingerprint(f"https://{LOOPBACK}:{plain.port}", timeout=0.3)


def test_probe_reports_an_smtp_server_without_starttls() -> None:
    """Probing an SMTP server that does not offer STARTTLS is a ProbeError saying so."""
    controller = Controller(Sink(), hostname=LOOPBACK, port=free_port(), ready_timeout=5.0)
    controller.start()
    try:
        with pytest.raises(ProbeError, match="does not advertise STARTTLS"):
            served_fingerprint(f"smtp://{LOOPBACK}:{controller.port}")
    finally:
        controller.stop()


@pytest.mark.parametrize(
    "url", ["ftp://127.0.0.1:21", "127.0.0.1:443", "https://:443", "https://127.0.0.1:notaport"]
)
def test_probe_rejects_a_bad_url(url: str) -> None:
    """A URL that is not https://HOST:PORT or smtp://HOST:PORT is a ProbeError naming the fix."""
    with pytest.raises(ProbeError, match="https://HOST:PORT"):
        served_fingerprint(url)


def test_wait_for_fingerprint_gives_up_within_its_budget() -> None:
    """Waiting on a dead service stops after timeout/interval handshakes and says why."""
    now = [0.0]

    def sleep(seconds: float) -> None:
        now[0] += seconds

    result = wait_for_fingerprint(
        f"https://{LOOPBACK}:{free_port()}",
        "ab" * 32,
        timeout=1.0,
        interval=0.1,
        clock=lambda: now[0],
        sleep=sleep,
    )
    assert not result.ok
    assert result.seen is None
    assert 5 <= result.attempts <= 13
    assert "connection refused" in result.detail


# --------------------------------------------------------------------------- postfix


def test_postfix_smtpd_serves_the_chain_leaf(ca: trustme.CA, tmp_path: Path) -> None:
    """Postfix's smtpd offers STARTTLS with the leaf of its key-first chain file."""
    leaf = write_leaf(ca, tmp_path / "certs", "mx", "mx.example.test")
    with Postfix(tmp_path / "postfix", free_port(), leaf.key_then_chain) as postfix:
        assert served_fingerprint(postfix.url) == leaf.sha256
        assert served_fingerprint(f"smtp://localhost:{postfix.smtpd_port}") == leaf.sha256


def test_postfix_relays_with_its_client_certificate(ca: trustme.CA, tmp_path: Path) -> None:
    """Postfix relays a message over STARTTLS to the sink, showing its client certificate."""
    server = write_leaf(ca, tmp_path / "certs", "mx", "mx.example.test")
    client = write_leaf(ca, tmp_path / "certs", "relay", "relay.example.test")
    sink_cert = write_leaf(ca, tmp_path / "certs", "sink", "localhost", LOOPBACK)
    client_ca = tmp_path / "certs" / "client-ca.pem"
    ca.cert_pem.write_to_path(client_ca)
    sink_port = free_port()
    with (
        SmtpSink(sink_port, sink_cert.fullchain, sink_cert.key, client_ca) as sink,
        Postfix(
            tmp_path / "postfix",
            free_port(),
            server.key_then_chain,
            relay_port=sink_port,
            client_chain_file=client.key_then_chain,
        ) as postfix,
    ):
        postfix.send_test_message()
        seen = sink.wait_for_message(timeout=15)
        assert postfix.process is not None
        pids = postfix.process.pids()
        assert postfix.pid in pids
    assert seen == client.sha256
    assert any_alive(pids) == []


# --------------------------------------------------------------------------- sshd


@pytest.fixture
def drop_file(tmp_path: Path) -> Path:
    path = tmp_path / "upload.pem"
    path.write_bytes(b"-----BEGIN CERTIFICATE-----\nnot really\n-----END CERTIFICATE-----\n" * 50)
    return path


def test_sshd_accepts_a_paramiko_upload(tmp_path: Path, drop_file: Path) -> None:
    """A paramiko SFTP upload as the drop user lands in the inbox, owned by that user."""
    with Sshd(tmp_path / "sshd") as sshd:
        landed = sshd.sftp_put_paramiko(drop_file, "via-paramiko.pem")
        assert landed.parent == sshd.inbox
        assert landed.read_bytes() == drop_file.read_bytes()
        assert landed.owner() == "certdrop-drop"
        base = sshd.base
    assert not base.exists()


def test_sshd_accepts_an_sftp_cli_upload(tmp_path: Path, drop_file: Path) -> None:
    """An upload with the sftp command-line client lands in the inbox."""
    with Sshd(tmp_path / "sshd") as sshd:
        landed = sshd.sftp_put_cli(drop_file, "via cli.pem")
        assert landed == sshd.inbox / "via cli.pem"
        assert landed.read_bytes() == drop_file.read_bytes()


def test_sshd_drop_user_cannot_leave_the_chroot(tmp_path: Path) -> None:
    """The drop user sees only the chroot: its root holds just the inbox."""
    with (
        Sshd(tmp_path / "sshd") as sshd,
        sshd.paramiko_client() as client,
        client.open_sftp() as sftp,
    ):
        assert sftp.listdir("/") == ["inbox"]
        assert sftp.listdir("/..") == ["inbox"]


def test_sshd_stop_ends_open_sessions(tmp_path: Path) -> None:
    """Leaving the Sshd context also kills the per-connection sshd of a client still connected."""
    with Sshd(tmp_path / "sshd") as sshd, sshd.paramiko_client() as client:
        sftp = client.open_sftp()
        assert sshd.process is not None
        pids = sshd.process.pids()
        assert len(pids) >= 2  # the listener and the session
        sshd.stop()
        assert any_alive(pids) == []
        sftp.close()


# --------------------------------------------------------------------------- pebble


def make_csr(folder: Path, common_name: str) -> Path:
    """Write a CSR for ``common_name`` (also its one SAN); the key is thrown away."""
    key = ec.generate_private_key(ec.SECP256R1())
    csr = (
        x509.CertificateSigningRequestBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)]))
        .add_extension(x509.SubjectAlternativeName([x509.DNSName(common_name)]), critical=False)
        .sign(key, hashes.SHA256())
    )
    path = folder / f"{common_name}.csr"
    path.write_bytes(csr.public_bytes(serialization.Encoding.PEM))
    return path


@pytest.fixture
def pebble(tmp_path: Path) -> Iterator[Pebble]:
    with Pebble(tmp_path / "pebble") as running:
        yield running


def test_pebble_and_lego_issue_a_certificate_for_a_csr(pebble: Pebble, tmp_path: Path) -> None:
    """lego gets a CSR signed by pebble; the leaf names the CSR's host and chains to pebble."""
    csr = make_csr(tmp_path, "www.example.test")
    out = tmp_path / "lego"
    run(pebble.lego_argv(csr, out, free_port()), env=pebble.lego_env(), timeout=60)
    chain = x509.load_pem_x509_certificates(
        (out / "certificates" / "www.example.test.crt").read_bytes()
    )
    leaf = chain[0]
    assert leaf.extensions.get_extension_for_class(
        x509.SubjectAlternativeName
    ).value.get_values_for_type(x509.DNSName) == ["www.example.test"]
    assert chain[-1].issuer == x509.load_pem_x509_certificate(pebble.root_pem()).subject


def test_need_skips_without_the_binary(monkeypatch: pytest.MonkeyPatch) -> None:
    """A missing binary skips the test, or fails it when CI=true."""
    monkeypatch.delenv("CI", raising=False)
    with pytest.raises(pytest.skip.Exception, match="not installed"):
        need("certdrop-no-such-binary")
    monkeypatch.setenv("CI", "true")
    with pytest.raises(pytest.fail.Exception, match="CI=true"):
        need("certdrop-no-such-binary")


def test_run_reports_a_failing_command() -> None:
    """A helper command that fails raises with its output, never passes silently."""
    with pytest.raises(RuntimeError, match="exited 3"):
        run(["sh", "-c", "echo boom >&2; exit 3"])
    with pytest.raises(subprocess.TimeoutExpired):
        run(["sleep", "5"], timeout=0.2)
