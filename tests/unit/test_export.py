"""Tests for certdrop.pki.export: PEM and PKCS#12 exports, checked with the openssl binary.

No assertion here compares key-holding bytes directly, so a failure never prints a key.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import pytest
import trustme
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.hazmat.primitives.serialization import pkcs12
from hypothesis import given, settings
from hypothesis import strategies as st

from certdrop.errors import UserError
from certdrop.pki.export import (
    MAX_PASSWORD_BYTES,
    PrivateKey,
    export_p12,
    export_pem,
    read_password,
)
from support.openssl_ca import openssl

PASSWORD = "pässwörd 1".encode()  # non-ASCII on purpose: both formats must agree with openssl


@dataclass(frozen=True)
class Issued:
    """A leaf key with its chain (leaf, intermediate) and the root that signed it."""

    key: PrivateKey
    chain: list[x509.Certificate]
    root: x509.Certificate


@functools.cache
def issued(kind: str) -> Issued:
    """A trustme root, intermediate and leaf whose key is RSA or EC."""
    key_type = trustme.KeyType.RSA if kind == "rsa" else trustme.KeyType.ECDSA
    root = trustme.CA(key_type=key_type)
    intermediate = root.create_child_ca(key_type=key_type)
    leaf = intermediate.issue_cert("www.example.com", key_type=key_type)
    key = serialization.load_pem_private_key(leaf.private_key_pem.bytes(), None)
    assert isinstance(key, rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey)
    chain = [x509.load_pem_x509_certificate(blob.bytes()) for blob in leaf.cert_chain_pems]
    return Issued(key, chain, x509.load_pem_x509_certificate(root.cert_pem.bytes()))


def write(path: Path, data: bytes) -> Path:
    path.write_bytes(data)
    return path


def same_key(a: PrivateKey, b: object) -> bool:
    """Whether two private keys are the same key, compared without showing either."""
    if not isinstance(b, rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey):
        return False
    der = serialization.Encoding.DER, serialization.PrivateFormat.PKCS8
    none = serialization.NoEncryption()
    return a.private_bytes(*der, none) == b.private_bytes(*der, none)


Export = Callable[[PrivateKey, Sequence[x509.Certificate], bytes | None], bytes]


def export_p12_named(
    key: PrivateKey, chain: Sequence[x509.Certificate], password: bytes | None
) -> bytes:
    """export_p12 with the export_pem signature, so both can be parametrised."""
    return export_p12("n", key, chain, password)


def pem_labels(data: bytes) -> list[str]:
    """The PEM block labels in order, e.g. ['RSA PRIVATE KEY', 'CERTIFICATE']."""
    return [
        line[len("-----BEGIN ") : -len("-----")]
        for line in data.decode("ascii").splitlines()
        if line.startswith("-----BEGIN ")
    ]


def pem_headers(data: bytes) -> list[str]:
    """The RFC 1421 header lines of the first PEM block (Proc-Type, DEK-Info)."""
    lines = data.decode("ascii").splitlines()
    return [line for line in lines[1:4] if ":" in line]


# -- read_password -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("data", "password"),
    [
        (b"secret\n", b"secret"),
        (b"secret\r\n", b"secret\r"),  # openssl -passin file: keeps the CR too
        (b"secret", b"secret"),
        (b"secret\nsecond line\n", b"secret"),
        (b" spaced out \n", b" spaced out "),
        ("pässwörd\n".encode(), "pässwörd".encode()),
    ],
)
def test_read_password_takes_the_first_line(data: bytes, password: bytes) -> None:
    """The password is the first line without its \\n; spaces and a CR are kept, as openssl does."""
    assert read_password(data) == password


@pytest.mark.parametrize("data", [b"", b"\n", b"\r\n", b"\nsecret-on-line-two\n"])
def test_empty_first_line_is_an_error_that_shows_nothing(data: bytes) -> None:
    """An empty first line is a UserError naming the file and not its contents."""
    with pytest.raises(UserError) as caught:
        read_password(data, source="/etc/certdrop/export.pw")
    message = str(caught.value)
    assert message == "/etc/certdrop/export.pw is empty; put the password on its first line"


@pytest.mark.parametrize(
    ("data", "fragment"),
    [(b"se\x00cret\n", "NUL byte"), (b"x" * (MAX_PASSWORD_BYTES + 1), "1024 bytes long")],
)
def test_passwords_openssl_cannot_read_are_errors(data: bytes, fragment: str) -> None:
    """A NUL byte or a first line over 1023 bytes is refused, as openssl would misread it."""
    with pytest.raises(UserError) as caught:
        read_password(data)
    message = str(caught.value)
    assert fragment in message
    assert "secret" not in message
    assert "xxxx" not in message


@settings(database=None)
@given(st.binary(max_size=64))
def test_read_password_gives_one_line_or_a_user_error(data: bytes) -> None:
    """Any bytes give a non-empty line without line breaks, or a UserError without them."""
    try:
        password = read_password(data, source="pw.txt")
    except UserError as exc:
        message = str(exc)
        assert message.startswith("pw.txt ")
        return
    assert password
    assert b"\n" not in password
    assert data.startswith(password)


def test_password_file_is_read_as_openssl_reads_it(tmp_path: Path) -> None:
    """A key exported with read_password(file) opens with openssl -passin file:FILE."""
    pw = write(tmp_path / "pw", "pässwörd 1\nnot the password\n".encode())
    exported = write(
        tmp_path / "key.pem",
        export_pem(issued("rsa").key, issued("rsa").chain, read_password(pw.read_bytes())),
    )
    result = openssl("rsa", "-in", exported, "-passin", f"file:{pw}", "-noout")
    assert result.returncode == 0, result.stderr


# -- PEM -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("kind", "tool", "label"), [("rsa", "rsa", "RSA PRIVATE KEY"), ("ec", "ec", "EC PRIVATE KEY")]
)
def test_encrypted_pem_opens_with_the_right_password_only(
    kind: str, tool: str, label: str, tmp_path: Path
) -> None:
    """openssl reads the AES-256-CBC traditional key with the password and not without it."""
    pem = export_pem(issued(kind).key, issued(kind).chain, PASSWORD)
    labels = pem_labels(pem)
    headers = pem_headers(pem)
    assert labels == [label, "CERTIFICATE", "CERTIFICATE"]
    assert headers[0] == "Proc-Type: 4,ENCRYPTED"
    assert headers[1].startswith("DEK-Info: AES-256-CBC,")
    path = write(tmp_path / "export.pem", pem)
    right = write(tmp_path / "right.pw", PASSWORD + b"\n")
    wrong = write(tmp_path / "wrong.pw", b"not it\n")
    good = openssl(tool, "-in", path, "-passin", f"file:{right}", "-noout")
    assert good.returncode == 0, good.stderr
    bad = openssl(tool, "-in", path, "-passin", f"file:{wrong}", "-noout")
    assert bad.returncode != 0
    loaded = serialization.load_pem_private_key(pem, PASSWORD)
    assert same_key(issued(kind).key, loaded)


def test_pem_chain_is_leaf_first_then_intermediate(tmp_path: Path) -> None:
    """The certificates follow the key, leaf first, and verify up to the root with openssl."""
    bundle = issued("ec")
    pem = export_pem(bundle.key, bundle.chain, None)
    assert x509.load_pem_x509_certificates(pem) == bundle.chain
    path = write(tmp_path / "export.pem", pem)
    root = write(tmp_path / "root.pem", bundle.root.public_bytes(serialization.Encoding.PEM))
    leaf = write(tmp_path / "leaf.pem", bundle.chain[0].public_bytes(serialization.Encoding.PEM))
    verified = openssl("verify", "-CAfile", root, "-untrusted", path, leaf)
    assert verified.returncode == 0, verified.stderr


@pytest.mark.parametrize(("kind", "tool"), [("rsa", "rsa"), ("ec", "ec")])
def test_unencrypted_pem_needs_no_password(kind: str, tool: str, tmp_path: Path) -> None:
    """Without a password the key is plain traditional PEM that openssl reads directly."""
    pem = export_pem(issued(kind).key, issued(kind).chain, None)
    encrypted = b"ENCRYPTED" in pem
    assert not encrypted
    result = openssl(tool, "-in", write(tmp_path / "export.pem", pem), "-noout")
    assert result.returncode == 0, result.stderr


# -- PKCS#12 -------------------------------------------------------------------------------


@pytest.mark.parametrize("kind", ["rsa", "ec"])
def test_p12_opens_in_openssl_with_the_right_password_only(kind: str, tmp_path: Path) -> None:
    """openssl pkcs12 reads the AES-256/PBKDF2 file with the password and refuses a wrong one."""
    bundle = issued(kind)
    path = write(
        tmp_path / "export.p12", export_p12("admin-console", bundle.key, bundle.chain, PASSWORD)
    )
    right = write(tmp_path / "right.pw", PASSWORD + b"\n")
    wrong = write(tmp_path / "wrong.pw", b"not it\n")
    info = openssl("pkcs12", "-info", "-in", path, "-passin", f"file:{right}", "-noout")
    assert info.returncode == 0, info.stderr
    described = info.stdout + info.stderr
    assert "Shrouded Keybag: PBES2, PBKDF2, AES-256-CBC" in described
    assert "PKCS7 Encrypted data: PBES2, PBKDF2, AES-256-CBC" in described
    assert "MAC: sha256" in described
    bad = openssl("pkcs12", "-info", "-in", path, "-passin", f"file:{wrong}", "-noout")
    assert bad.returncode != 0


def test_p12_shows_the_chain_to_openssl(tmp_path: Path) -> None:
    """openssl pkcs12 -nokeys lists the leaf under its friendly name and the intermediate."""
    bundle = issued("rsa")
    path = write(
        tmp_path / "export.p12", export_p12("admin-console", bundle.key, bundle.chain, PASSWORD)
    )
    right = write(tmp_path / "right.pw", PASSWORD + b"\n")
    shown = openssl("pkcs12", "-in", path, "-passin", f"file:{right}", "-nokeys")
    assert shown.returncode == 0, shown.stderr
    assert "friendlyName: admin-console" in shown.stdout
    printed = x509.load_pem_x509_certificates(shown.stdout.encode())
    assert printed == bundle.chain


@pytest.mark.parametrize("kind", ["rsa", "ec"])
def test_p12_round_trips_key_and_chain(kind: str) -> None:
    """cryptography reads back the same key, leaf, intermediate and friendly name."""
    bundle = issued(kind)
    data = export_p12("admin-console", bundle.key, bundle.chain, PASSWORD)
    key, cert, extra = pkcs12.load_key_and_certificates(data, PASSWORD)
    assert same_key(bundle.key, key)
    assert cert == bundle.chain[0]
    assert extra == bundle.chain[1:]
    loaded = pkcs12.load_pkcs12(data, PASSWORD)
    assert loaded.cert is not None
    assert loaded.cert.friendly_name == b"admin-console"
    with pytest.raises(ValueError):
        pkcs12.load_key_and_certificates(data, b"not it")


def test_unencrypted_p12_needs_no_password(tmp_path: Path) -> None:
    """Without a password the PKCS#12 opens with an empty one, in cryptography and openssl."""
    bundle = issued("ec")
    data = export_p12("plain", bundle.key, bundle.chain, None)
    key, cert, _ = pkcs12.load_key_and_certificates(data, None)
    assert same_key(bundle.key, key)
    assert cert == bundle.chain[0]
    info = openssl(
        "pkcs12", "-info", "-in", write(tmp_path / "plain.p12", data), "-passin", "pass:", "-noout"
    )
    assert info.returncode == 0, info.stderr


# -- refusals ------------------------------------------------------------------------------


@pytest.mark.parametrize("export", [export_pem, export_p12_named])
def test_bad_passwords_are_user_errors_that_do_not_echo(export: Export) -> None:
    """An empty or over-long password is refused without the password in the message."""
    bundle = issued("ec")
    for password, fragment in [(b"", "is empty"), (b"Q" * 2000, "2000 bytes long")]:
        with pytest.raises(UserError) as caught:
            export(bundle.key, bundle.chain, password)
        message = str(caught.value)
        assert fragment in message
        assert "QQQQ" not in message


@pytest.mark.parametrize("export", [export_pem, export_p12_named])
def test_chain_must_start_with_the_keys_leaf(export: Export) -> None:
    """An empty chain or a leaf of another key is a caller's bug, reported without key bytes."""
    ec_bundle, rsa_bundle = issued("ec"), issued("rsa")
    with pytest.raises(ValueError, match="chain is empty"):
        export(ec_bundle.key, [], None)
    with pytest.raises(ValueError, match="does not belong to the key") as caught:
        export(ec_bundle.key, rsa_bundle.chain, None)
    leaked = "PRIVATE" in str(caught.value)
    assert not leaked
