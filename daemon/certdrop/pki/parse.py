"""Turn the bytes of one drop into certificates, keys and CSRs. Pure.

Accepts PEM (with noise around the blocks, CRLF, a UTF-8 BOM, blocks in any order),
DER certificates, keys and CSRs, PKCS#7 (PEM or DER) and PKCS#12. Anything it cannot
read ends in a :class:`~certdrop.errors.Rejection`; no other exception escapes.
"""

from __future__ import annotations

import base64
import binascii
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TypeVar

from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.hazmat.primitives.serialization import pkcs7, pkcs12

from certdrop.errors import Rejection
from certdrop.limits import DEFAULT_LIMITS, Limits
from certdrop.pki import kdf
from certdrop.pki.der import Malformed
from certdrop.pki.keys import PrivateKey, size_problem

T = TypeVar("T")

# A block's body never holds "-----", so it stops at the next BEGIN/END line: a lazy ".*?"
# instead scanned to the end of the file from every BEGIN line (minutes for a 1 MB drop of
# BEGIN lines) and let a truncated block swallow the complete block after it.
_BLOCK = re.compile(
    rb"-----BEGIN ([A-Z0-9 #]{1,40})-----\r?\n([^-]*(?:-(?!----)[^-]*)*)-----END \1-----"
)
_BEGIN = re.compile(rb"-----BEGIN ([A-Z0-9 #]{1,40})-----")
_CERT_LABELS = {b"CERTIFICATE", b"X509 CERTIFICATE", b"TRUSTED CERTIFICATE"}
_KEY_LABELS = {b"PRIVATE KEY", b"RSA PRIVATE KEY", b"EC PRIVATE KEY", b"ENCRYPTED PRIVATE KEY"}
_CSR_LABELS = {b"CERTIFICATE REQUEST", b"NEW CERTIFICATE REQUEST"}
_IGNORED_LABELS = {b"EC PARAMETERS"}


@dataclass(frozen=True)
class Parsed:
    """Everything found in one drop."""

    certs: tuple[x509.Certificate, ...] = ()
    keys: tuple[PrivateKey, ...] = ()
    csrs: tuple[x509.CertificateSigningRequest, ...] = ()

    def __bool__(self) -> bool:
        return bool(self.certs or self.keys or self.csrs)


def parse(
    data: bytes, passphrases: Sequence[bytes] = (), limits: Limits = DEFAULT_LIMITS
) -> Parsed:
    """Parse one drop; raise Rejection when nothing usable is in it, or when it exceeds
    ``limits`` (checked before any key derivation, signature or key use)."""
    if data.startswith(b"\xef\xbb\xbf"):
        data = data[3:]
    if not data.strip():
        raise Rejection("unsupported_content", "the file is empty; upload it again")
    if b"-----BEGIN " in data:
        parsed = _parse_pem(data.replace(b"\r\n", b"\n"), passphrases, limits)
    else:
        parsed = _parse_der(data, passphrases, limits)
    if len(parsed.certs) > limits.max_certificates:
        raise Rejection(
            "too_many_certificates",
            f"the file holds {len(parsed.certs)} certificates; the limit is "
            f"limits.max_certificates = {limits.max_certificates}. Drop the certificate with "
            "its own chain only, not a whole CA bundle",
        )
    for cert in parsed.certs:
        _check_fields(cert, limits)
    for csr in parsed.csrs:
        _check_fields(csr, limits)
    for key in parsed.keys:
        _check_size(key, "private key", limits)
    return parsed


def derives_keys(data: bytes) -> bool:
    """True when parsing ``data`` may run a key derivation (a passphrase try): it is, or
    holds, a PKCS#12 file or an encrypted key. Exactly the inputs for which :func:`parse`
    calls a loader with a password; the shell opens those in a bounded child process."""
    if b"-----BEGIN " in data:
        return b"ENCRYPTED" in data
    body = data[3:] if data.startswith(b"\xef\xbb\xbf") else data
    if body[:1] != b"\x30" or len(body) < 8:
        return False
    return _looks_like_pkcs12(body) or _encrypted_pkcs8(body) is not None


def summary(data: bytes) -> str:
    """What a drop looks like, for a person, without parsing it: "PEM: 2 blocks
    (CERTIFICATE, PRIVATE KEY), 3112 bytes". Names no secret."""
    size = f"{len(data)} bytes"
    if b"-----BEGIN " in data:
        labels = [m.group(1).decode("ascii") for m in _BEGIN.finditer(data)]
        kinds = ", ".join(dict.fromkeys(labels[:20]))
        return f"PEM: {len(labels)} blocks ({kinds}), {size}"
    body = data[3:] if data.startswith(b"\xef\xbb\xbf") else data
    if body[:1] == b"\x30" and len(body) >= 8:
        if _looks_like_pkcs12(body):
            return f"PKCS#12, {size}"
        if _encrypted_pkcs8(body) is not None:
            return f"an encrypted PKCS#8 key, {size}"
        return f"DER, {size}"
    return f"not PEM or DER, {size}"


def _check_fields(
    item: x509.Certificate | x509.CertificateSigningRequest, limits: Limits
) -> None:
    """Read the fields the rest of certdrop uses now: cryptography parses names and
    extensions only when first asked, and a malformed one must be a rejection here, not
    a ValueError in the middle of chain building."""
    what = "certificate" if isinstance(item, x509.Certificate) else "certificate request"
    try:
        item.subject.rfc4514_string()
        item.extensions  # noqa: B018 - parses them, raising ValueError when malformed
        sans = _san_count(item)
        if isinstance(item, x509.Certificate):
            item.issuer.rfc4514_string()
            item.not_valid_before_utc  # noqa: B018
            item.not_valid_after_utc  # noqa: B018
        else:
            public = item.public_key()
    except Exception as exc:  # noqa: BLE001 - ValueError, UnsupportedAlgorithm, even KeyError
        raise Rejection(
            "unsupported_content", f"a {what} in the file cannot be read ({_short(exc)})"
        ) from None
    if sans > limits.max_sans:
        raise Rejection(
            "too_many_sans",
            f"a {what} in the file names {sans} subject alternative names; the limit is "
            f"limits.max_sans = {limits.max_sans}. Split the names over several certificates",
        )
    if isinstance(item, x509.Certificate):
        try:
            public = item.public_key()
        except Exception:  # noqa: BLE001 - an unknown key type: assemble names it unsupported_key
            return
        _check_size(public, f"{what}'s key", limits)
        return
    _check_size(public, f"{what}'s key", limits)
    if not isinstance(public, rsa.RSAPublicKey | ec.EllipticCurvePublicKey):
        raise Rejection(
            "unsupported_key",
            f"the certificate request is for a {type(public).__name__.lstrip('_')}; "
            "certdrop handles RSA and EC keys",
        )


def _san_count(item: x509.Certificate | x509.CertificateSigningRequest) -> int:
    try:
        return len(item.extensions.get_extension_for_class(x509.SubjectAlternativeName).value)
    except x509.ExtensionNotFound:
        return 0


def _check_size(key: object, what: str, limits: Limits) -> None:
    if isinstance(key, rsa.RSAPrivateKey | rsa.RSAPublicKey):
        problem = size_problem(key, limits)
        if problem is not None:
            raise Rejection("key_too_large", f"the {what}: {problem}")


def _parse_pem(data: bytes, passphrases: Sequence[bytes], limits: Limits) -> Parsed:
    certs: list[x509.Certificate] = []
    keys: list[PrivateKey] = []
    csrs: list[x509.CertificateSigningRequest] = []
    unknown: list[str] = []
    starts: set[int] = set()
    for match in _BLOCK.finditer(data):
        label, block = match.group(1), match.group(0)
        starts.add(match.start())
        if label in _CERT_LABELS:
            if label == b"TRUSTED CERTIFICATE":
                unknown.append(label.decode())
                continue
            certs.append(_load("certificate", x509.load_pem_x509_certificate, _std_cert(block)))
        elif label in _KEY_LABELS:
            keys.append(_load_key(block, pem=True, passphrases=passphrases, limits=limits))
        elif label in _CSR_LABELS:
            csrs.append(_load("certificate request", x509.load_pem_x509_csr, block))
        elif label == b"PKCS7":
            certs.extend(_load("PKCS#7 bundle", pkcs7.load_pem_pkcs7_certificates, block))
        elif label not in _IGNORED_LABELS:
            unknown.append(label.decode())
    # A BEGIN line that starts no complete block means the upload stopped part-way.
    dangling = next((m for m in _BEGIN.finditer(data) if m.start() not in starts), None)
    if dangling is not None:
        raise Rejection(
            "truncated",
            f"the {dangling.group(1).decode()} block has no END line; the file looks "
            "truncated (an interrupted upload?), upload it again",
        )
    parsed = Parsed(tuple(certs), tuple(keys), tuple(csrs))
    if not parsed:
        what = ", ".join(sorted(set(unknown))) or "no complete PEM block"
        raise Rejection(
            "unsupported_content",
            f"found {what} but no certificate, private key or CSR; drop PEM, DER, "
            "PKCS#7 or PKCS#12 files",
        )
    return parsed


def _std_cert(block: bytes) -> bytes:
    return block.replace(b"X509 CERTIFICATE", b"CERTIFICATE")


def _parse_der(data: bytes, passphrases: Sequence[bytes], limits: Limits) -> Parsed:
    if data[:1] != b"\x30":
        raise Rejection(
            "unsupported_content",
            "the file is neither PEM nor DER; drop PEM, DER, PKCS#7 or PKCS#12 files",
        )
    declared = _der_length(data)
    if declared is not None and declared > len(data):
        raise Rejection(
            "truncated",
            f"the DER data declares {declared} bytes but the file has {len(data)}; the file "
            "looks truncated (an interrupted upload?), upload it again",
        )
    attempts: list[Callable[[], Parsed]] = [
        lambda: Parsed(certs=(x509.load_der_x509_certificate(data),)),
        lambda: Parsed(certs=tuple(pkcs7.load_der_pkcs7_certificates(data))),
        lambda: Parsed(csrs=(x509.load_der_x509_csr(data),)),
    ]
    for attempt in attempts:
        try:
            parsed = attempt()
        except Exception:  # noqa: BLE001, S112 - cryptography raises several types on foreign bytes
            continue
        if parsed:
            return parsed
    if _looks_like_pkcs12(data):
        return _load_pkcs12(data, passphrases, limits)
    return Parsed(keys=(_load_key(data, pem=False, passphrases=passphrases, limits=limits),))


def _der_length(data: bytes) -> int | None:
    """Total length an outer DER SEQUENCE declares, or None if the header is not DER.

    A header cut short declares at least its own full length, so it reads as truncated.
    """
    if len(data) < 2:
        return 2
    first = data[1]
    if first < 0x80:
        return 2 + first
    count = first & 0x7F
    if count == 0 or count > 4:
        return None
    if len(data) < 2 + count:
        return 2 + count
    return 2 + count + int.from_bytes(data[2 : 2 + count], "big")


def _looks_like_pkcs12(data: bytes) -> bool:
    # PFX ::= SEQUENCE { version INTEGER (3), authSafe ContentInfo, ... }
    header = 2 + (data[1] & 0x7F if data[1] & 0x80 else 0)
    return data[header : header + 3] == b"\x02\x01\x03"


def _load(what: str, loader: Callable[[bytes], T], data: bytes) -> T:
    try:
        return loader(data)
    except Exception as exc:  # noqa: BLE001 - any library error means "not readable"
        raise Rejection(
            "unsupported_content", f"a {what} in the file cannot be read ({_short(exc)})"
        ) from None


def _short(exc: Exception) -> str:
    # Library messages never contain key material; keep them short and single-line.
    text = " ".join(str(exc).split())[:120]
    return text or type(exc).__name__


def _candidates(passphrases: Sequence[bytes]) -> list[bytes]:
    return [p for p in passphrases if p]


def _load_key(
    data: bytes, *, pem: bool, passphrases: Sequence[bytes], limits: Limits
) -> PrivateKey:
    loader = serialization.load_pem_private_key if pem else serialization.load_der_private_key
    encrypted = b"ENCRYPTED" in data[:200] if pem else _encrypted_pkcs8(data) is not None
    pkcs8 = _pem_der(data) if pem and data.startswith(b"-----BEGIN ENCRYPTED") else data
    if encrypted and (not pem or pkcs8 is not data):
        # Traditional PEM encryption (Proc-Type) costs one MD5 round: nothing to bound.
        _check_kdf(lambda: kdf.pkcs8_costs(pkcs8), "the encrypted private key", limits)
    tries: list[bytes | None] = list(_candidates(passphrases)) if encrypted else [None]
    for password in tries:
        try:
            key = loader(data, password, unsafe_skip_rsa_key_validation=True)
        except Exception:  # noqa: BLE001, S112 - wrong passphrase or not a key: try the next
            continue
        return _supported(key)
    if encrypted:
        tried = len(tries)
        raise Rejection(
            "encrypted_key_no_passphrase",
            f"the private key is encrypted and none of the {tried} passphrase(s) from "
            "intake.passphrase_files opens it; add its passphrase there or drop the key "
            "unencrypted",
        )
    raise Rejection(
        "unsupported_content",
        "the file is not a certificate, key, CSR, PKCS#7 or PKCS#12 certdrop can read",
    )


def _encrypted_pkcs8(data: bytes) -> str | None:
    """The encryption OID of an EncryptedPrivateKeyInfo (PBES1, PBES2, PKCS#12 PBE)."""
    return kdf.encrypted_pkcs8_algorithm(data)


def _pem_der(block: bytes) -> bytes:
    """The DER inside one PEM block, decoded strictly: the bytes whose cost is checked
    must be the very bytes the loader reads, so stray characters refuse the block."""
    body = block.split(b"\n", 1)[1].rsplit(b"-----END", 1)[0]
    try:
        return base64.b64decode(b"".join(body.split()), validate=True)
    except (binascii.Error, ValueError):
        raise Rejection(
            "unsupported_content",
            "an encrypted private key block holds characters that are not base64; "
            "upload the key file unchanged",
        ) from None


def _check_kdf(read: Callable[[], list[kdf.Cost]], what: str, limits: Limits) -> None:
    """Refuse a container whose key derivations exceed ``limits``, before any try."""
    try:
        costs = read()
    except Malformed as exc:
        raise Rejection(
            "unsupported_content",
            f"{what} cannot be read: {exc}; certdrop checks what opening it would cost "
            "before trying a passphrase. Export it again with openssl or your CA's tool",
        ) from None
    kdf.check(costs, limits, what)


def _supported(key: object) -> PrivateKey:
    if isinstance(key, rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey):
        return key
    raise Rejection(
        "unsupported_key",
        f"{type(key).__name__.lstrip('_')} keys are not supported; use an RSA or EC key",
    )


def _load_pkcs12(data: bytes, passphrases: Sequence[bytes], limits: Limits) -> Parsed:
    _check_kdf(lambda: kdf.pkcs12_costs(data), "the PKCS#12 file", limits)
    for password in [None, b"", *_candidates(passphrases)]:
        try:
            key, cert, extra = pkcs12.load_key_and_certificates(data, password)
        except Exception:  # noqa: BLE001, S112 - wrong password or damaged file: try the next
            continue
        certs = tuple(c for c in [cert, *extra] if c is not None)
        keys = () if key is None else (_supported(key),)
        parsed = Parsed(certs=certs, keys=keys)
        if parsed:
            return parsed
    raise Rejection(
        "encrypted_key_no_passphrase",
        "the PKCS#12 file cannot be opened with any passphrase from intake.passphrase_files; "
        "add its password there",
    )
