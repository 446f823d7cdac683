"""Costly and absurd drops, made cheaply: real files from cryptography whose cost parameters
are patched afterwards (nothing is derived with them, so 10^8 iterations cost nothing to
make), plus an RSA key of any size built from random numbers (no prime search).

``Tlv`` is a tiny ASN.1 tree with its own encoder, independent of certdrop's reader, so a
test built with it checks certdrop against a second implementation.
"""

from __future__ import annotations

import base64
import os
import pickle
import resource
import secrets
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TypeVar

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.hazmat.primitives.serialization import pkcs12

from support import pkitools

OCTET_STRING = 0x04
T = TypeVar("T")


@dataclass
class Tlv:
    """A node: ``children`` for constructed ones (and for an OCTET STRING opened with
    :meth:`open`), else ``value``."""

    tag: int
    value: bytes = b""
    children: list[Tlv] = field(default_factory=list)
    opened: bool = False  # an OCTET STRING whose content was parsed as one TLV

    def __getitem__(self, index: int) -> Tlv:
        return self.children[index]

    def open(self) -> Tlv:
        """Parse this OCTET STRING's content as one TLV (PKCS#12 nests DER that way)."""
        if not self.opened:
            self.children = [parse(self.value)]
            self.opened = True
        return self.children[0]

    def encode(self, *, indefinite: bool = False) -> bytes:
        """DER, or with ``indefinite`` BER: indefinite lengths and chunked OCTET STRINGs."""
        if self.opened:
            body = self.children[0].encode(indefinite=indefinite)
            if indefinite:  # a constructed OCTET STRING of 16-byte segments
                parts = [body[i : i + 16] for i in range(0, len(body), 16)] or [b""]
                chunks = b"".join(bytes([OCTET_STRING]) + _length(len(p)) + p for p in parts)
                return bytes([OCTET_STRING | 0x20, 0x80]) + chunks + b"\0\0"
        elif self.tag & 0x20:
            body = b"".join(c.encode(indefinite=indefinite) for c in self.children)
            if indefinite:
                return bytes([self.tag, 0x80]) + body + b"\0\0"
        else:
            body = self.value
        return bytes([self.tag]) + _length(len(body)) + body


def parse(data: bytes) -> Tlv:
    node, end = _parse(data, 0)
    assert end == len(data), "trailing bytes"
    return node


def _parse(data: bytes, pos: int) -> tuple[Tlv, int]:
    tag, first = data[pos], data[pos + 1]
    pos += 2
    if first & 0x80:
        count = first & 0x7F
        length = int.from_bytes(data[pos : pos + count], "big")
        pos += count
    else:
        length = first
    body = data[pos : pos + length]
    if tag & 0x20:
        children, inner = [], 0
        while inner < len(body):
            child, inner = _parse(body, inner)
            children.append(child)
        return Tlv(tag, children=children), pos + length
    return Tlv(tag, value=body), pos + length


def _length(n: int) -> bytes:
    if n < 0x80:
        return bytes([n])
    raw = n.to_bytes((n.bit_length() + 7) // 8, "big")
    return bytes([0x80 | len(raw)]) + raw


def integer(value: int) -> Tlv:
    return Tlv(0x02, value=value.to_bytes(value.bit_length() // 8 + 1, "big", signed=True))


# -- real containers ------------------------------------------------------------------------


def pkcs12_file(password: bytes = b"", slot: int = 0) -> bytes:
    """A PKCS#12 made by cryptography (key + certificate), PBES2 AES, MAC SHA-256."""
    leaf = pkitools.issue(f"p12-{slot}.example.test", pkitools.rsa_key(slot), sans=["p12.test"])
    if password:
        encryption = (
            serialization.PrivateFormat.PKCS12.encryption_builder()
            .kdf_rounds(2048)
            .key_cert_algorithm(pkcs12.PBES.PBESv2SHA256AndAES256CBC)
            .hmac_hash(hashes.SHA256())
            .build(password)
        )
        return pkcs12.serialize_key_and_certificates(b"p12", leaf.key, leaf.cert, None, encryption)
    return pkcs12.serialize_key_and_certificates(
        b"p12", leaf.key, leaf.cert, None, serialization.NoEncryption()
    )


def with_mac_iterations(p12: bytes, iterations: int) -> bytes:
    """The PFX with its MacData.iterations replaced (the MAC itself is left stale)."""
    root = parse(p12)
    mac = root[2]
    if len(mac.children) == 3:
        mac.children[2] = integer(iterations)
    else:
        mac.children.append(integer(iterations))
    return root.encode()


def authenticated_safe(root: Tlv) -> Tlv:
    """PFX -> authSafe ContentInfo -> [0] -> OCTET STRING -> AuthenticatedSafe."""
    return root[1][1][0].open()


def with_bag_iterations(p12: bytes, iterations: int) -> bytes:
    """The PFX with the PBKDF2 count of its first shrouded key bag replaced."""
    root = parse(p12)
    for info in authenticated_safe(root).children:
        if info[0].value == bytes.fromhex("2a864886f70d010701"):  # data
            for bag in info[1][0].open().children:
                if bag[0].value == bytes.fromhex("2a864886f70d010c0a0102"):
                    algorithm = bag[1][0][0]
                    algorithm[1][0][1].children[1] = integer(iterations)
                    return root.encode()
    raise AssertionError("no shrouded key bag in plain contents")


def pem_body(pem: bytes) -> bytes:
    lines = [ln for ln in pem.strip().splitlines() if not ln.startswith(b"-----")]
    return base64.b64decode(b"".join(lines))


def to_pem(der: bytes, label: str) -> bytes:
    body = base64.encodebytes(der).replace(b"\n", b"")
    lines = b"\n".join(body[i : i + 64] for i in range(0, len(body), 64))
    return f"-----BEGIN {label}-----\n".encode() + lines + f"\n-----END {label}-----\n".encode()


def encrypted_pkcs8(password: bytes = b"secret", slot: int = 0) -> bytes:
    """An encrypted PKCS#8 key (DER) as cryptography writes it: PBES2, PBKDF2, AES."""
    return pkitools.rsa_key(slot).private_bytes(
        serialization.Encoding.DER,
        serialization.PrivateFormat.PKCS8,
        serialization.BestAvailableEncryption(password),
    )


def with_pbkdf2_iterations(pkcs8: bytes, iterations: int) -> bytes:
    root = parse(pkcs8)
    root[0][1][0][1].children[1] = integer(iterations)
    return root.encode()


SCRYPT_OID = bytes.fromhex("2b06010401da47040b")  # 1.3.6.1.4.1.11591.4.11


def with_scrypt(pkcs8: bytes, n: int, r: int, p: int) -> bytes:
    """The key's PBES2 KDF swapped for scrypt(N, r, p): as `openssl pkcs8 -scrypt` writes it."""
    root = parse(pkcs8)
    params = Tlv(
        0x30, children=[Tlv(OCTET_STRING, value=b"s" * 8), integer(n), integer(r), integer(p)]
    )
    root[0][1].children[0] = Tlv(0x30, children=[Tlv(0x06, value=SCRYPT_OID), params])
    return root.encode()


# -- absurd keys ----------------------------------------------------------------------------


def absurd_rsa(bits: int, exponent: int) -> rsa.RSAPrivateKey:
    """An RSA "key" of ``bits`` whose p and q are random odd numbers, not primes: it loads
    (validation skipped, as intake does) without the minutes a real 16384-bit key takes.
    Written as PKCS#1 DER by hand, so even an even exponent (which cryptography's own
    constructor refuses) gets through to certdrop's checks."""
    half = bits // 2
    while True:
        # The top two bits set: the product has all ``bits`` bits.
        p = secrets.randbits(half) | (3 << (half - 2)) | 1
        q = secrets.randbits(half) | (3 << (half - 2)) | 1
        try:
            iqmp = pow(q, -1, p)
        except ValueError:
            continue
        break
    d = secrets.randbits(bits - 1) | 1
    values = [0, p * q, exponent, d, p, q, d % (p - 1), d % (q - 1), iqmp]
    der = Tlv(0x30, children=[integer(v) for v in values]).encode()
    key = serialization.load_der_private_key(der, None, unsafe_skip_rsa_key_validation=True)
    assert isinstance(key, rsa.RSAPrivateKey)
    return key


def certificate_for(key: rsa.RSAPrivateKey, cn: str = "absurd.example.test") -> x509.Certificate:
    """A certificate for ``key``'s public half, signed by a normal CA key (cheap)."""
    issuer = pkitools.issue("Absurd CA", pkitools.ec_key(9), ca=True)
    return (
        x509.CertificateBuilder()
        .subject_name(pkitools.name(cn))
        .issuer_name(issuer.cert.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(pkitools.NOW)
        .not_valid_after(pkitools.NOW.replace(year=pkitools.NOW.year + 1))
        .sign(issuer.key, hashes.SHA256())
    )


# -- proving that nothing was derived -------------------------------------------------------


def cpu_bounded(fn: Callable[[], T], cpu_seconds: int = 3) -> T:
    """Run ``fn`` in a forked child under RLIMIT_CPU and return its result (pickled back).

    The files here would take minutes or gigabytes to derive: finishing within the CPU
    limit proves the derivation never ran, and a regression is killed instead of hanging
    the suite. An exception escaping ``fn`` fails the test with its text.
    """
    read_end, write_end = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: never returns into pytest
        try:
            os.close(read_end)
            resource.setrlimit(resource.RLIMIT_CPU, (cpu_seconds, cpu_seconds + 1))
            resource.setrlimit(resource.RLIMIT_AS, (1 << 30, 1 << 30))
            try:
                payload = pickle.dumps((True, fn()))
            except BaseException as exc:  # carried back to the parent
                payload = pickle.dumps((False, f"{type(exc).__name__}: {exc}"))
            with os.fdopen(write_end, "wb") as out:
                out.write(payload)
        finally:
            os._exit(0)
    os.close(write_end)
    with os.fdopen(read_end, "rb") as inp:
        data = inp.read()
    _, status = os.waitpid(pid, 0)
    if not data:
        raise AssertionError(
            f"the child was killed ({status=:#x}): it ran past {cpu_seconds} s of CPU or 1 GiB "
            "of memory, so a key derivation ran"
        )
    ok, value = pickle.loads(data)
    if not ok:
        raise AssertionError(f"the child raised {value}")
    return value  # type: ignore[no-any-return]


# -- the catalogue a real daemon is tried with ----------------------------------------------


@dataclass(frozen=True)
class Costly:
    """One hostile drop: its file name, bytes, and the code it must be refused with."""

    name: str
    data: bytes
    code: str
    what: str


def catalogue() -> list[Costly]:
    """Every costly or absurd drop of issue 11, made cheaply (nothing derived)."""
    pkcs8 = encrypted_pkcs8(b"secret", slot=7)
    huge = absurd_rsa(16384, (1 << 16383) + 1)
    huge_drop = certificate_for(huge).public_bytes(serialization.Encoding.PEM) + huge.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.TraditionalOpenSSL,
        serialization.NoEncryption(),
    )
    root = pkitools.issue("Many Root", pkitools.ec_key(70), ca=True)
    ca_key = pkitools.ec_key(71)
    many = b"".join(
        pkitools.issue(f"Many CA {i}", ca_key, root, ca=True).pem for i in range(888)
    )
    sans = pkitools.issue(
        "sans.example.test", pkitools.rsa_key(8), sans=[f"h{i}.example.test" for i in range(6000)]
    )
    request_sans = ", ".join(f"'h{i}.example.com'" for i in range(100_000))
    return [
        Costly("mac.p12", with_mac_iterations(pkcs12_file(b""), 10**8), "kdf_too_costly",
               "PKCS#12, MAC iterations 10^8"),
        Costly("bag.p12", with_bag_iterations(pkcs12_file(b"pw", slot=1), 10**8),
               "kdf_too_costly", "PKCS#12, shrouded key bag PBKDF2 10^8"),
        Costly("pbkdf2.key", to_pem(with_pbkdf2_iterations(pkcs8, 10**8), "ENCRYPTED PRIVATE KEY"),
               "kdf_too_costly", "PKCS#8, PBKDF2 10^8"),
        Costly("scrypt-n.key", to_pem(with_scrypt(pkcs8, 2**24, 8, 1), "ENCRYPTED PRIVATE KEY"),
               "kdf_too_costly", "PKCS#8, scrypt N=2^24 (16 GiB)"),
        Costly("scrypt-p.key", to_pem(with_scrypt(pkcs8, 2**14, 8, 4000), "ENCRYPTED PRIVATE KEY"),
               "kdf_too_costly", "PKCS#8, scrypt p=4000"),
        Costly("huge.pem", huge_drop, "key_too_large", "RSA 16384 bits, 16384-bit exponent"),
        Costly("many-cas.pem", many, "too_many_certificates", "888 CA certificates"),
        Costly("many-sans.pem", sans.pem + sans.key_pem(), "too_many_sans",
               "a certificate with 6000 SANs"),
        Costly("sans.request.toml", f"cn = 'x.example.com'\nsans = [{request_sans}]\n".encode(),
               "invalid_request", "a request with 100,000 SANs"),
        Costly("deep.request.toml", b"cn = 'x.example.com'\nsans = " + b"[" * 50_000 + b"]" * 50_000,
               "invalid_request", "a request nested 50,000 deep"),
    ]
