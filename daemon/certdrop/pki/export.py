"""Exporting a key with its chain: PEM (traditional OpenSSL key) and PKCS#12.

Pure: values in, bytes out. No message ever contains key bytes or a password.
"""

from __future__ import annotations

from collections.abc import Sequence

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.serialization import pkcs12

from certdrop.errors import UserError
from certdrop.pki.keys import PrivateKey

# OWASP's 2023 figure for PBKDF2-HMAC-SHA256; about 0.15 s per PKCS#12 write or read.
P12_KDF_ROUNDS = 600_000
# openssl's ``-passin file:`` reads at most this many bytes of the first line
# (APP_PASS_LEN - 1), and traditional PEM encryption refuses longer passwords.
MAX_PASSWORD_BYTES = 1023


def export_pem(key: PrivateKey, chain: Sequence[x509.Certificate], password: bytes | None) -> bytes:
    """The key (``BEGIN RSA/EC PRIVATE KEY``, AES-256-CBC when ``password`` is given),
    then the leaf and intermediates as PEM, leaf first.

    This is what ``openssl rsa -aes256`` writes; its key derivation (one MD5 round,
    OpenSSL's EVP_BytesToKey) is weak, so prefer ``export_p12`` for keys in transit.
    """
    _check_chain(key, chain)
    encryption: serialization.KeySerializationEncryption = serialization.NoEncryption()
    if password is not None:
        _check_password(password)
        encryption = serialization.BestAvailableEncryption(password)
    key_pem = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.TraditionalOpenSSL, encryption
    )
    # The contract promises AES-256-CBC; cryptography has written it for years, but the
    # choice is its own, so a silent change must fail loudly rather than downgrade.
    if password is not None and b"\nDEK-Info: AES-256-CBC," not in key_pem:
        raise RuntimeError("cryptography no longer encrypts traditional PEM keys with AES-256-CBC")
    return key_pem + b"".join(cert.public_bytes(serialization.Encoding.PEM) for cert in chain)


def export_p12(
    name: str, key: PrivateKey, chain: Sequence[x509.Certificate], password: bytes | None
) -> bytes:
    """PKCS#12 holding key, leaf and intermediates under the friendly name ``name``.

    With a password: PBES2 (PBKDF2-SHA256, AES-256-CBC) for key and certificates and an
    HMAC-SHA256 MAC, which OpenSSL 1.1.1+, Java 11+, macOS and Windows 10 1709+ read.
    """
    _check_chain(key, chain)
    encryption: serialization.KeySerializationEncryption = serialization.NoEncryption()
    if password is not None:
        _check_password(password)
        encryption = (
            serialization.PrivateFormat.PKCS12.encryption_builder()
            .kdf_rounds(P12_KDF_ROUNDS)
            .key_cert_algorithm(pkcs12.PBES.PBESv2SHA256AndAES256CBC)
            .hmac_hash(hashes.SHA256())
            .build(password)
        )
    return pkcs12.serialize_key_and_certificates(
        name.encode("utf-8"), key, chain[0], list(chain[1:]) or None, encryption
    )


def read_password(data: bytes, *, source: str = "the password file") -> bytes:
    """The first line of a password file, as ``openssl ... -passin file:`` reads it.

    OpenSSL 3 strips only the ``\\n``: the CR of a CRLF file stays part of the password,
    and so it does here, or a key exported from a Windows-edited file would not open with
    ``-passin file:`` of that same file. A first line that is empty apart from CRs is
    refused as empty. ``source`` names the file in error messages, which never show its
    contents.
    """
    line = data.split(b"\n", 1)[0]
    if not line.strip(b"\r"):
        raise UserError(f"{source} is empty; put the password on its first line")
    _check_password(line, source=source)
    return line


def _check_password(password: bytes, *, source: str = "the export password") -> None:
    if not password:
        raise UserError(f"{source} is empty; give a password or export without one")
    if b"\0" in password:
        raise UserError(f"{source} contains a NUL byte, which openssl cannot read; remove it")
    if len(password) > MAX_PASSWORD_BYTES:
        raise UserError(
            f"{source} is {len(password)} bytes long; openssl reads at most "
            f"{MAX_PASSWORD_BYTES}, so use a shorter password"
        )


def _check_chain(key: PrivateKey, chain: Sequence[x509.Certificate]) -> None:
    """The leaf must come first and belong to ``key``; anything else is a caller's bug."""
    if not chain:
        raise ValueError("the chain is empty; export needs at least the leaf certificate")
    spki = serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    if key.public_key().public_bytes(*spki) != chain[0].public_key().public_bytes(*spki):
        raise ValueError("the first certificate of the chain does not belong to the key")
