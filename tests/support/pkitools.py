"""Test material made on the fly with cryptography's builders; no key is ever committed."""

from __future__ import annotations

import datetime as dt
import functools
import subprocess
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import NameOID

NOW = dt.datetime.now(dt.UTC).replace(microsecond=0)
Key = rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey


@functools.lru_cache(maxsize=64)
def rsa_key(slot: int = 0, bits: int = 2048) -> rsa.RSAPrivateKey:
    """A cached RSA key per slot: generating 2048-bit keys costs ~50 ms each."""
    return rsa.generate_private_key(65537, bits)


@functools.lru_cache(maxsize=64)
def ec_key(slot: int = 0, curve: str = "secp256r1") -> ec.EllipticCurvePrivateKey:
    return ec.generate_private_key(ec.SECP256R1() if curve == "secp256r1" else ec.SECP384R1())


def name(cn: str, org: str = "certdrop tests") -> x509.Name:
    return x509.Name(
        [
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, org),
            x509.NameAttribute(NameOID.COMMON_NAME, cn),
        ]
    )


@dataclass(frozen=True)
class Issued:
    cert: x509.Certificate
    key: Key

    @property
    def pem(self) -> bytes:
        return self.cert.public_bytes(serialization.Encoding.PEM)

    @property
    def der(self) -> bytes:
        return self.cert.public_bytes(serialization.Encoding.DER)

    @property
    def sha256(self) -> str:
        return self.cert.fingerprint(hashes.SHA256()).hex()

    def key_pem(self, fmt: str = "pkcs8", password: bytes | None = None) -> bytes:
        formats = {
            "pkcs8": serialization.PrivateFormat.PKCS8,
            "pkcs1": serialization.PrivateFormat.TraditionalOpenSSL,
            "sec1": serialization.PrivateFormat.TraditionalOpenSSL,
        }
        enc: serialization.KeySerializationEncryption = (
            serialization.BestAvailableEncryption(password)
            if password
            else serialization.NoEncryption()
        )
        return self.key.private_bytes(serialization.Encoding.PEM, formats[fmt], enc)

    def key_der(self) -> bytes:
        return self.key.private_bytes(
            serialization.Encoding.DER,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )


def issue(
    subject: str,
    key: Key,
    issuer: Issued | None = None,
    *,
    ca: bool = False,
    sans: Sequence[str] = (),
    not_before: dt.datetime | None = None,
    not_after: dt.datetime | None = None,
    hash_alg: hashes.HashAlgorithm | None = None,
    subject_name: x509.Name | None = None,
) -> Issued:
    """Issue a certificate for ``key``; self-signed when ``issuer`` is None."""
    subj = subject_name or name(subject)
    builder = (
        x509.CertificateBuilder()
        .subject_name(subj)
        .issuer_name(issuer.cert.subject if issuer else subj)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(not_before or NOW - dt.timedelta(days=1))
        .not_valid_after(not_after or NOW + dt.timedelta(days=90))
        .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True)
    )
    if sans:
        builder = builder.add_extension(
            x509.SubjectAlternativeName([x509.DNSName(s) for s in sans]), critical=False
        )
    signer = issuer.key if issuer else key
    cert = builder.sign(signer, hash_alg or hashes.SHA256())
    return Issued(cert, key)


def sign_csr(csr_pem: bytes, issuer: Issued) -> x509.Certificate:
    """What a CA answers to a CSR: its subject, public key and SANs, signed by ``issuer``."""
    csr = x509.load_pem_x509_csr(csr_pem)
    assert csr.is_signature_valid
    builder = (
        x509.CertificateBuilder()
        .subject_name(csr.subject)
        .issuer_name(issuer.cert.subject)
        .public_key(csr.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(NOW - dt.timedelta(days=1))
        .not_valid_after(NOW + dt.timedelta(days=90))
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
    )
    with_sans = csr.extensions.get_extension_for_class(x509.SubjectAlternativeName)
    builder = builder.add_extension(with_sans.value, critical=False)
    return builder.sign(issuer.key, hashes.SHA256())


@dataclass(frozen=True)
class Hierarchy:
    """root -> intermediate(s) -> leaf, all freshly made."""

    root: Issued
    intermediates: tuple[Issued, ...]
    leaf: Issued

    @property
    def chain_pem(self) -> bytes:
        """Leaf then intermediates, root left out: what a server sends."""
        return self.leaf.pem + b"".join(i.pem for i in reversed(self.intermediates))


def hierarchy(
    cn: str = "mail.example.test",
    *,
    depth: int = 1,
    leaf_key: Key | None = None,
    slot: int = 0,
    **leaf_options: object,
) -> Hierarchy:
    """A fresh CA hierarchy with ``depth`` intermediates and a leaf for ``cn``."""
    root = issue(f"Root {slot}", ec_key(100 + slot), ca=True)
    parent = root
    intermediates = []
    for level in range(depth):
        parent = issue(
            f"Intermediate {slot}.{level}", ec_key(200 + slot * 10 + level), parent, ca=True
        )
        intermediates.append(parent)
    leaf = issue(cn, leaf_key or rsa_key(slot), parent, sans=[cn], **leaf_options)  # type: ignore[arg-type]
    return Hierarchy(root, tuple(intermediates), leaf)


def openssl_sha1_cert(folder: Path) -> tuple[bytes, bytes]:
    """A self-made SHA-1 certificate and its key: cryptography refuses to sign SHA-1."""
    key, cert = folder / "sha1.key", folder / "sha1.crt"
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", str(key),
         "-out", str(cert), "-sha1", "-subj", "/CN=sha1.example.test", "-days", "30"],
        check=True, capture_output=True, timeout=60,
    )
    return cert.read_bytes(), key.read_bytes()
