"""Certificate requests: the key, the CSR, the fields read back, and what a CA changed.

Pure: bytes and values in, values out. The fields themselves are :mod:`certdrop.pki.fields`.
"""

from __future__ import annotations

import ipaddress

from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, rsa

from certdrop.errors import InvalidRequest
from certdrop.pki.fields import (
    EC_KEY_SIZES,
    MORE_NAMES,
    OPTIONAL,
    RSA_KEY_SIZES,
    SUBJECT,
    RequestFields,
    checked,
    ip_of,
    show,
    show_all,
)
from certdrop.pki.keys import PrivateKey

__all__ = [
    "RequestFields",
    "build_csr",
    "differences",
    "fields_of",
    "fields_of_certificate",
    "generate_key",
    "subject_of",
]


def generate_key(key_type: str, key_size: int) -> PrivateKey:
    """A new private key: RSA with e=65537, or EC on P-256."""
    if key_type == "rsa" and key_size in RSA_KEY_SIZES:
        return rsa.generate_private_key(public_exponent=65537, key_size=key_size)
    if key_type == "ec" and key_size in EC_KEY_SIZES:
        return ec.generate_private_key(ec.SECP256R1())
    raise InvalidRequest(
        [
            f"cannot generate a {show(key_type)} key of {key_size} bits; "
            f"use rsa with {' or '.join(map(str, RSA_KEY_SIZES))}, or ec with 256"
        ]
    )


def build_csr(key: PrivateKey, fields: RequestFields) -> x509.CertificateSigningRequest:
    """A CSR for ``fields`` signed by ``key`` with SHA-256, SANs as DNS/IP names."""
    builder = x509.CertificateSigningRequestBuilder().subject_name(subject_of(fields))
    if fields.sans:
        builder = builder.add_extension(
            x509.SubjectAlternativeName([_general_name(s) for s in fields.sans]), critical=False
        )
    return builder.sign(key, hashes.SHA256())


def subject_of(fields: RequestFields) -> x509.Name:
    """The subject name for ``fields``, in the order C, ST, L, O, OU, CN, emailAddress."""
    return x509.Name(
        [
            x509.NameAttribute(oid, value)
            for field, oid, _, _ in SUBJECT
            if (value := getattr(fields, field)) is not None
        ]
    )


def fields_of(csr: x509.CertificateSigningRequest) -> RequestFields:
    """The fields a CSR asks for (key type and size from its public key).

    Raises ``InvalidRequest`` when the CSR holds something certdrop cannot ask for
    again (other subject attributes, other SAN types, another key type or size).
    """
    problems: list[str] = []
    key_type, key_size = _key_kind(csr.public_key(), problems)
    return _read(csr.subject, _extensions(csr, "CSR", problems), key_type, key_size, problems)


def fields_of_certificate(cert: x509.Certificate, key: PrivateKey) -> RequestFields:
    """The fields for renewing ``cert``: its subject and SANs, with ``key``'s type and size.

    ``key`` is the key the renewal CSR will be signed with (the old one or a new one).
    A certificate without a CN (SAN-only) gets its first SAN as the CN.
    """
    problems: list[str] = []
    key_type, key_size = _key_kind(key.public_key(), problems)
    return _read(
        cert.subject, _extensions(cert, "certificate", problems), key_type, key_size, problems
    )


def differences(requested: RequestFields, cert: x509.Certificate) -> list[str]:
    """Sentences naming what the CA changed in ``cert`` compared with ``requested``.

    Covers subject attributes and SANs; empty when the certificate is what was asked for.
    """
    sentences: list[str] = []
    known: set[x509.ObjectIdentifier] = set()
    for field, oid, label, _ in SUBJECT:
        known.add(oid)
        wanted: str | None = getattr(requested, field)
        want = () if wanted is None else (wanted,)
        got = tuple(_text_value(a.value) for a in cert.subject.get_attributes_for_oid(oid))
        if want == got:
            continue
        if not got:
            sentences.append(f"The CA removed {label} {show_all(want)}.")
        elif not want:
            sentences.append(f"The CA added {label} {show_all(got)}.")
        else:
            sentences.append(f"The CA changed {label} from {show_all(want)} to {show_all(got)}.")
    sentences.extend(
        f"The CA added the subject attribute {attr.rfc4514_string(MORE_NAMES)}."
        for attr in cert.subject
        if attr.oid not in known
    )
    problems: list[str] = []
    ext = _extensions(cert, "certificate", problems)
    sentences.extend(f"The {p}." for p in problems)
    # dict.fromkeys: ordered sets, so both comparisons stay linear in the number of SANs.
    got_sans = dict.fromkeys([] if ext is None else [_san_text(n) for n in ext])
    wanted_sans = dict.fromkeys(requested.sans)
    sentences.extend(
        f"The CA removed the SAN {show(s)}." for s in wanted_sans if s not in got_sans
    )
    sentences.extend(f"The CA added the SAN {show(s)}." for s in got_sans if s not in wanted_sans)
    return sentences


# -- reading back ---------------------------------------------------------------------------


def _key_kind(public_key: object, problems: list[str]) -> tuple[str | None, int | None]:
    if isinstance(public_key, rsa.RSAPublicKey):
        return "rsa", public_key.key_size
    if isinstance(public_key, ec.EllipticCurvePublicKey):
        if isinstance(public_key.curve, ec.SECP256R1):
            return "ec", 256
        problems.append(f"the EC curve {public_key.curve.name} is not supported; use P-256")
        return None, None
    problems.append(f"the key type {type(public_key).__name__} is not supported; use RSA or EC")
    return None, None


def _extensions(
    obj: x509.Certificate | x509.CertificateSigningRequest, what: str, problems: list[str]
) -> x509.SubjectAlternativeName | None:
    try:
        return obj.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except x509.ExtensionNotFound:
        return None
    except ValueError:
        problems.append(f"{what}'s extensions cannot be parsed")
        return None


def _read(
    subject: x509.Name,
    san_ext: x509.SubjectAlternativeName | None,
    key_type: str | None,
    key_size: int | None,
    problems: list[str],
) -> RequestFields:
    by_oid = {oid: field for field, oid, _, _ in SUBJECT}
    found: dict[str, list[str]] = {}
    for attr in subject:
        field = by_oid.get(attr.oid)
        if field is None or not isinstance(attr.value, str):
            problems.append(
                f"the subject attribute {attr.rfc4514_string(MORE_NAMES)} is not supported; "
                "certdrop asks only for C, ST, L, O, OU, CN and emailAddress"
            )
        else:
            found.setdefault(field, []).append(attr.value)
    for field, values in found.items():
        if len(values) > 1:
            problems.append(
                f"the subject has {len(values)} {field} attributes; certdrop asks for at most one"
            )
    sans: list[str] = []
    for name in san_ext or ():
        if isinstance(name, x509.DNSName | x509.IPAddress) and not isinstance(
            name.value, ipaddress.IPv4Network | ipaddress.IPv6Network
        ):
            sans.append(_san_text(name))
        else:
            problems.append(
                f"the SAN {show(_san_text(name))} is not supported; certdrop asks "
                "only for DNS names and IP addresses"
            )
    cn = found.get("cn", [None])[0]
    if cn is None and sans:
        cn = sans[0]
    texts = {field: found.get(field, [None])[0] for field in OPTIONAL}
    return checked(cn if cn is not None else "", tuple(sans), texts, key_type, key_size, problems)


# -- small helpers --------------------------------------------------------------------------


def _general_name(san: str) -> x509.GeneralName:
    ip = ip_of(san)
    return x509.DNSName(san) if ip is None else x509.IPAddress(ip)


def _san_text(name: x509.GeneralName) -> str:
    """A SAN as text: DNS names lower-cased, IPs canonical, other types prefixed."""
    if isinstance(name, x509.DNSName):
        return name.value.lower()
    if isinstance(name, x509.IPAddress):
        return str(name.value)
    kind = type(name).__name__
    return f"{kind}:{name.value}"


def _text_value(value: str | bytes) -> str:
    return value if isinstance(value, str) else value.hex()
