"""Chains for path-validation tests, made with cryptography's builders (no key committed).

``make`` issues a certificate that conforms to both RFC 5280 and the CA/Browser Forum
profile unless a knob says otherwise, so each defect case changes exactly one thing and
its valid twin changes nothing (the catalogue of defect classes is trust_cases.py).
"""

from __future__ import annotations

import datetime as dt
import functools
import ipaddress
from collections.abc import Sequence
from dataclasses import dataclass

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

NOW = dt.datetime.now(dt.UTC).replace(microsecond=0)
DAY = dt.timedelta(days=1)
Key = rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey
UNKNOWN_OID = x509.ObjectIdentifier("1.3.6.1.4.1.55738.666.1")
POLICY = x509.ObjectIdentifier("1.3.6.1.4.1.55738.1.1")
DEFAULT = object()  # "the conforming value" for a knob


@functools.lru_cache(maxsize=128)
def key(slot: int, kind: str = "ec") -> Key:
    """A cached key per slot ("ec", "rsa1024", "rsa2048"); RSA keys cost ~50 ms each."""
    if kind == "ec":
        return ec.generate_private_key(ec.SECP256R1())
    return rsa.generate_private_key(65537, int(kind.removeprefix("rsa")))


def dn(cn: str | None, org: str = "certdrop trust tests") -> x509.Name:
    """O=..., CN=cn; an empty name when ``cn`` is None."""
    if cn is None:
        return x509.Name([])
    return x509.Name(
        [
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, org),
            x509.NameAttribute(NameOID.COMMON_NAME, cn),
        ]
    )


def general_name(text: str) -> x509.GeneralName:
    """An IP address SAN for an address literal, else a dNSName (unvalidated on purpose);
    ``dns:`` forces a dNSName."""
    if text.startswith("dns:"):
        return x509.DNSName._init_without_validation(text[4:])  # type: ignore[attr-defined,no-any-return]
    try:
        return x509.IPAddress(ipaddress.ip_address(text))
    except ValueError:
        return x509.DNSName._init_without_validation(text)  # type: ignore[attr-defined,no-any-return]


@dataclass(frozen=True)
class Cert:
    cert: x509.Certificate
    key: Key

    @property
    def pem(self) -> bytes:
        return self.cert.public_bytes(serialization.Encoding.PEM)

    def key_pem(self) -> bytes:
        return self.key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )


def make(
    cn: str | None,
    signer_key: Key,
    issuer: Cert | None = None,
    *,
    ca: bool = False,
    subject_key: Key | None = None,
    subject: x509.Name | None = None,
    issuer_name: x509.Name | None = None,
    path_length: int | None = None,
    basic: object = DEFAULT,  # (ca, critical) or None to leave basicConstraints out
    key_usage: object = DEFAULT,  # x509.KeyUsage, or None to leave it out
    eku: Sequence[x509.ObjectIdentifier] | None = (ExtendedKeyUsageOID.SERVER_AUTH,),
    sans: Sequence[str] | None = None,
    san_critical: bool = False,
    aki: object = DEFAULT,  # an AuthorityKeyIdentifier, or None
    aki_critical: bool = False,
    ski: object = DEFAULT,  # a SubjectKeyIdentifier, or None
    ski_critical: bool = False,
    name_constraints: x509.NameConstraints | None = None,
    extra: Sequence[tuple[x509.ExtensionType, bool]] = (),
    not_before: dt.datetime | None = None,
    not_after: dt.datetime | None = None,
) -> Cert:
    """Issue a certificate; self-signed with ``signer_key`` when ``issuer`` is None.

    A leaf (``ca=False``) gets serverAuth, a SAN of its CN and an AKI by default; a CA gets
    keyCertSign+cRLSign and an SKI. Every knob overrides one of those defaults.
    """
    own = subject_key or signer_key
    subj = subject if subject is not None else dn(cn)
    b = (
        x509.CertificateBuilder()
        .subject_name(subj)
        .issuer_name(issuer_name or (issuer.cert.subject if issuer else subj))
        .public_key(own.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(not_before or NOW - 10 * DAY)
        .not_valid_after(not_after or NOW + 80 * DAY)
    )
    if basic is DEFAULT:
        b = b.add_extension(x509.BasicConstraints(ca=ca, path_length=path_length), critical=True)
    elif basic is not None:
        bc_ca, bc_critical = basic  # type: ignore[misc]
        b = b.add_extension(x509.BasicConstraints(ca=bc_ca, path_length=None), bc_critical)
    if key_usage is DEFAULT:
        b = b.add_extension(_ca_usage() if ca else _leaf_usage(own), critical=True)
    elif key_usage is not None:
        b = b.add_extension(key_usage, critical=True)  # type: ignore[arg-type]
    if eku is not None and not ca:
        b = b.add_extension(x509.ExtendedKeyUsage(list(eku)), critical=False)
    if sans is None and not ca and cn is not None:
        sans = [cn]
    if sans:
        b = b.add_extension(
            x509.SubjectAlternativeName([general_name(s) for s in sans]), critical=san_critical
        )
    if ski is DEFAULT:
        ski = x509.SubjectKeyIdentifier.from_public_key(own.public_key()) if ca else None
    if ski is not None:
        b = b.add_extension(ski, critical=ski_critical)  # type: ignore[arg-type]
    if aki is DEFAULT:
        signer_public = (issuer.key if issuer else signer_key).public_key()
        aki = x509.AuthorityKeyIdentifier.from_issuer_public_key(signer_public)  # type: ignore[arg-type]
    if aki is not None:
        b = b.add_extension(aki, critical=aki_critical)  # type: ignore[arg-type]
    if name_constraints is not None:
        b = b.add_extension(name_constraints, critical=True)
    for extension, critical in extra:
        b = b.add_extension(extension, critical=critical)
    return Cert(b.sign(issuer.key if issuer else signer_key, hashes.SHA256()), own)


def _ca_usage() -> x509.KeyUsage:
    return x509.KeyUsage(
        digital_signature=True, content_commitment=False, key_encipherment=False,
        data_encipherment=False, key_agreement=False, key_cert_sign=True, crl_sign=True,
        encipher_only=False, decipher_only=False,
    )


def _leaf_usage(own: Key) -> x509.KeyUsage:
    return usage(key_encipherment=isinstance(own, rsa.RSAPrivateKey))


def usage(**bits: bool) -> x509.KeyUsage:
    """A keyUsage with digitalSignature and the given bits."""
    names = ("content_commitment", "key_encipherment", "data_encipherment", "key_agreement",
             "key_cert_sign", "crl_sign")
    return x509.KeyUsage(
        digital_signature=True, **{n: bits.get(n, False) for n in names},
        encipher_only=False, decipher_only=False,
    )


def root(cn: str = "Trust Root", slot: int = 1, **knobs: object) -> Cert:
    return make(cn, key(slot), ca=True, aki=None, **knobs)  # type: ignore[arg-type]


def intermediate(cn: str, parent: Cert, slot: int = 2, **knobs: object) -> Cert:
    knobs.setdefault("subject_key", key(slot))
    return make(cn, parent.key, parent, ca=True, **knobs)  # type: ignore[arg-type]


def leaf(cn: str, parent: Cert, slot: int = 3, **knobs: object) -> Cert:
    knobs.setdefault("subject_key", key(slot))
    return make(cn, parent.key, parent, **knobs)  # type: ignore[arg-type]


@dataclass(frozen=True)
class Chain:
    """What a verdict is asked about: roots trusted, intermediates offered, one leaf."""

    roots: tuple[Cert, ...]
    intermediates: tuple[Cert, ...]
    leaf: Cert
    usage: str = "serverAuth"
    hostname: str | None = None
    at: dt.datetime = NOW


def chain(
    *, leaf_knobs: dict[str, object] | None = None, inter_knobs: dict[str, object] | None = None,
    root_knobs: dict[str, object] | None = None, cn: str = "www.example.test", **asked: object,
) -> Chain:
    """root -> "Issuing CA" -> leaf ``cn``, each with the given knobs."""
    r = root(**(root_knobs or {}))
    i = intermediate("Issuing CA", r, **(inter_knobs or {}))
    lf = leaf(cn, i, **(leaf_knobs or {}))
    return Chain((r,), (i,), lf, **asked)  # type: ignore[arg-type]
