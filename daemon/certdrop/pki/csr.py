"""Certificate requests: the fields a person asks for, the key, the CSR, and what a CA changed.

Pure: bytes and values in, values out. ``RequestFields`` is only ever built by its
``from_*`` constructors, which check every field and raise one ``InvalidRequest`` that
lists every problem, so a person fixes a request in one round trip.
"""

from __future__ import annotations

import ipaddress
import re
import unicodedata
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Literal

from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import NameOID

from certdrop.errors import InvalidRequest
from certdrop.limits import DEFAULT_LIMITS

KeyType = Literal["rsa", "ec"]
PrivateKey = rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey

RSA_KEY_SIZES = (2048, 4096)
EC_KEY_SIZES = (256,)

# (field, OID, short label) in the order subjects are usually written: C, ST, L, O, OU,
# CN, emailAddress. Upper bounds are RFC 5280 appendix A, counted in characters.
_SUBJECT: tuple[tuple[str, x509.ObjectIdentifier, str, int], ...] = (
    ("country", NameOID.COUNTRY_NAME, "C", 2),
    ("state", NameOID.STATE_OR_PROVINCE_NAME, "ST", 128),
    ("locality", NameOID.LOCALITY_NAME, "L", 128),
    ("org", NameOID.ORGANIZATION_NAME, "O", 64),
    ("ou", NameOID.ORGANIZATIONAL_UNIT_NAME, "OU", 64),
    ("cn", NameOID.COMMON_NAME, "CN", 64),
    ("email", NameOID.EMAIL_ADDRESS, "emailAddress", 255),
)
# Names for attributes RFC 4514 leaves as dotted OIDs but CAs (EV, OV) do add.
_MORE_NAMES = {
    NameOID.SERIAL_NUMBER: "serialNumber",
    NameOID.BUSINESS_CATEGORY: "businessCategory",
    NameOID.JURISDICTION_COUNTRY_NAME: "jurisdictionC",
    NameOID.JURISDICTION_STATE_OR_PROVINCE_NAME: "jurisdictionST",
    NameOID.JURISDICTION_LOCALITY_NAME: "jurisdictionL",
    NameOID.POSTAL_CODE: "postalCode",
    NameOID.GIVEN_NAME: "givenName",
    NameOID.SURNAME: "surname",
    NameOID.TITLE: "title",
}
_OPTIONAL = ("country", "state", "locality", "org", "ou", "email")
_KEYS = ("cn", "sans", *_OPTIONAL, "key_type", "key_size")
_LIMIT = {field: limit for field, _, _, limit in _SUBJECT}

# Cc: C0/C1 controls, Cf: invisible formatting (bidi overrides, zero-width), Cs: lone
# surrogates (not encodable), Zl/Zp: line and paragraph separators.
_BAD_CATEGORIES = frozenset({"Cc", "Cf", "Cs", "Zl", "Zp"})
_LABEL = re.compile(r"[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?", re.ASCII)
# A reason lists every problem, but a thousand bad SANs are one problem told often enough.
_MAX_SAN_PROBLEMS = 10


@dataclass(frozen=True)
class RequestFields:
    """What a certificate request asks for. Build it with ``from_values``/``from_mapping``."""

    cn: str
    sans: tuple[str, ...]
    country: str | None = None
    state: str | None = None
    locality: str | None = None
    org: str | None = None
    ou: str | None = None
    email: str | None = None
    key_type: KeyType = "rsa"
    key_size: int = 2048

    @classmethod
    def from_values(
        cls,
        *,
        cn: str,
        sans: Iterable[str] = (),
        country: str | None = None,
        state: str | None = None,
        locality: str | None = None,
        org: str | None = None,
        ou: str | None = None,
        email: str | None = None,
        key_type: str = "rsa",
        key_size: int | None = None,
    ) -> RequestFields:
        """Check and normalise the fields; raise ``InvalidRequest`` listing every problem.

        Blank optional fields count as absent; country is upper-cased; DNS SANs are
        lower-cased, IP SANs written canonically, duplicates dropped. Without SANs the CN
        becomes the only SAN. More SANs than the default ``limits.max_sans`` is one
        problem (the operator's own ``certdrop csr``; drops use ``from_mapping``'s).
        """
        problems: list[str] = []
        if isinstance(sans, str):
            problems.append("sans must be a list of names, not one string")
            sans = ()
        texts = {
            "country": country,
            "state": state,
            "locality": locality,
            "org": org,
            "ou": ou,
            "email": email,
        }
        return _checked(cn, tuple(sans), texts, key_type, key_size, problems)

    @classmethod
    def from_mapping(
        cls, d: Mapping[str, object], *, max_sans: int = DEFAULT_LIMITS.max_sans
    ) -> RequestFields:
        """Read a ``NAME.request.toml`` table (or ``to_mapping`` JSON) with the same checks.

        Unknown keys, a missing ``cn`` and values of the wrong type are problems too.
        A ``None`` value (JSON null) means the key is absent.
        """
        problems: list[str] = []
        unknown = sorted(str(k) for k in d if k not in _KEYS)
        if unknown:
            problems.append(
                f"unknown keys {', '.join(map(_show, unknown))}; known keys are {', '.join(_KEYS)}"
            )
        cn_value = d.get("cn")
        cn: str | None = None
        if cn_value is None:
            problems.append("cn is missing; give the certificate's common name")
        elif isinstance(cn_value, str):
            cn = cn_value
        else:
            problems.append(f"cn must be a string, not {_type_name(cn_value)}")
        sans: tuple[str, ...] = ()
        sans_value = d.get("sans")
        if sans_value is not None:
            if isinstance(sans_value, list | tuple) and all(isinstance(s, str) for s in sans_value):
                sans = tuple(sans_value)
            else:
                problems.append("sans must be a list of strings")
        texts: dict[str, str | None] = {}
        for field in _OPTIONAL:
            value = d.get(field)
            if value is None or isinstance(value, str):
                texts[field] = value
            else:
                problems.append(f"{field} must be a string, not {_type_name(value)}")
                texts[field] = None
        key_type: str | None = "rsa"
        kt_value = d.get("key_type")
        if isinstance(kt_value, str):
            key_type = kt_value
        elif kt_value is not None:
            problems.append(f"key_type must be a string, not {_type_name(kt_value)}")
            key_type = None
        key_size: int | None = None
        ks_value = d.get("key_size")
        if isinstance(ks_value, int) and not isinstance(ks_value, bool):
            key_size = ks_value
        elif ks_value is not None:
            problems.append(f"key_size must be an integer, not {_type_name(ks_value)}")
        return _checked(cn, sans, texts, key_type, key_size, problems, max_sans)

    def to_mapping(self) -> dict[str, object]:
        """The fields as JSON-ready values; ``from_mapping`` reads them back unchanged."""
        return {
            "cn": self.cn,
            "sans": list(self.sans),
            "country": self.country,
            "state": self.state,
            "locality": self.locality,
            "org": self.org,
            "ou": self.ou,
            "email": self.email,
            "key_type": self.key_type,
            "key_size": self.key_size,
        }


def generate_key(key_type: str, key_size: int) -> PrivateKey:
    """A new private key: RSA with e=65537, or EC on P-256."""
    if key_type == "rsa" and key_size in RSA_KEY_SIZES:
        return rsa.generate_private_key(public_exponent=65537, key_size=key_size)
    if key_type == "ec" and key_size in EC_KEY_SIZES:
        return ec.generate_private_key(ec.SECP256R1())
    raise InvalidRequest(
        [
            f"cannot generate a {_show(key_type)} key of {key_size} bits; "
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
            for field, oid, _, _ in _SUBJECT
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
    for field, oid, label, _ in _SUBJECT:
        known.add(oid)
        wanted: str | None = getattr(requested, field)
        want = () if wanted is None else (wanted,)
        got = tuple(_text_value(a.value) for a in cert.subject.get_attributes_for_oid(oid))
        if want == got:
            continue
        if not got:
            sentences.append(f"The CA removed {label} {_show_all(want)}.")
        elif not want:
            sentences.append(f"The CA added {label} {_show_all(got)}.")
        else:
            sentences.append(f"The CA changed {label} from {_show_all(want)} to {_show_all(got)}.")
    sentences.extend(
        f"The CA added the subject attribute {attr.rfc4514_string(_MORE_NAMES)}."
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
        f"The CA removed the SAN {_show(s)}." for s in wanted_sans if s not in got_sans
    )
    sentences.extend(f"The CA added the SAN {_show(s)}." for s in got_sans if s not in wanted_sans)
    return sentences


# -- checking -------------------------------------------------------------------------------


def _checked(
    cn: str | None,
    sans: tuple[str, ...],
    texts: Mapping[str, str | None],
    key_type: str | None,
    key_size: int | None,
    problems: list[str],
    max_sans: int = DEFAULT_LIMITS.max_sans,
) -> RequestFields:
    """Check every field, appending to ``problems``; raise once if there are any.

    ``None`` for ``cn`` or ``key_type`` means its problem is already in ``problems``.
    """
    good_cn = None if cn is None else _check_text("cn", cn, problems, required=True)
    values: dict[str, str | None] = {}
    for field in _OPTIONAL:
        raw = texts.get(field)
        value = None if raw is None else _check_text(field, raw, problems)
        if value is not None and field == "country":
            if len(value) == 2 and value.isascii() and value.isalpha():
                value = value.upper()
            else:
                problems.append(
                    f"country {_show(value)} is not two letters; use the ISO 3166 code such as 'DE'"
                )
        elif value is not None and field == "email" and (why := _email_problem(value)):
            problems.append(f"email {_show(value)} {why}")
        values[field] = value
    names = _check_sans(sans, problems, max_sans)
    if not names and not sans and good_cn is not None:
        as_san = _normal_san(good_cn)
        if as_san is None:
            problems.append(
                f"no sans given and cn {_show(good_cn)} is not a DNS name or IP address; "
                "give at least one SAN"
            )
        else:
            names = [as_san]
    kind = _check_key(key_type, key_size, problems)
    if problems or good_cn is None or kind is None:
        raise InvalidRequest(problems)
    return RequestFields(
        cn=good_cn, sans=tuple(names), key_type=kind[0], key_size=kind[1], **values
    )


def _check_text(field: str, raw: str, problems: list[str], *, required: bool = False) -> str | None:
    """One subject text: no control characters, within its length; blank means absent."""
    bad = _bad_character(raw)
    if bad is not None:
        problems.append(f"{field} contains the control or invisible character {bad}; remove it")
        return None
    value = raw.strip()
    if not value:
        if required:
            problems.append(f"{field} is empty; give the certificate's common name")
        return None
    limit = _LIMIT[field]
    if field == "cn":
        # RFC 5280 counts characters, but cryptography refuses a CN over 64 UTF-8 bytes.
        size = len(value.encode("utf-8", "surrogatepass"))
        if size > limit:
            unit = "characters long" if size == len(value) else "bytes long in UTF-8"
            problems.append(f"cn is {size} {unit}; the limit is {limit}")
            return None
    elif field != "country" and len(value) > limit:
        problems.append(f"{field} is {len(value)} characters long; the limit is {limit}")
        return None
    return value


def _check_sans(sans: tuple[str, ...], problems: list[str], max_sans: int) -> list[str]:
    """The SANs in normal form, duplicates dropped (a dict keeps their order: a list's
    ``in`` made 100,000 SANs take 43 s)."""
    if len(sans) > max_sans:
        problems.append(
            f"sans has {len(sans)} entries; the limit is limits.max_sans = {max_sans}. "
            "Split the names over several requests"
        )
        return []
    names: dict[str, None] = {}
    found: list[str] = []
    for raw in sans:
        bad = _bad_character(raw)
        if bad is not None:
            found.append(f"SAN {_show(raw)} contains the control or invisible character {bad}")
            continue
        value = raw.strip()
        if not value:
            found.append("sans has an empty entry; remove it")
            continue
        normal = _normal_san(value)
        if normal is None:
            found.append(f"SAN {_show(value)} {_san_problem(value)}")
        else:
            names[normal] = None
    problems.extend(dict.fromkeys(found[:_MAX_SAN_PROBLEMS]))
    if len(found) > _MAX_SAN_PROBLEMS:
        problems.append(f"and {len(found) - _MAX_SAN_PROBLEMS} more problems with sans")
    return list(names)


def _check_key(
    key_type: str | None, key_size: int | None, problems: list[str]
) -> tuple[KeyType, int] | None:
    if key_type is None:
        return None
    kind = key_type.strip().lower()
    if kind == "rsa":
        size = RSA_KEY_SIZES[0] if key_size is None else key_size
        if size in RSA_KEY_SIZES:
            return "rsa", size
        problems.append(f"key_size {size} is not supported for RSA; use 2048 or 4096")
    elif kind == "ec":
        size = EC_KEY_SIZES[0] if key_size is None else key_size
        if size in EC_KEY_SIZES:
            return "ec", size
        problems.append(f"key_size {size} is not supported for EC; use 256 (P-256)")
    else:
        problems.append(f"key_type {_show(key_type)} is not supported; use 'rsa' or 'ec'")
    return None


def _bad_character(value: str) -> str | None:
    for ch in value:
        if unicodedata.category(ch) in _BAD_CATEGORIES:
            return f"U+{ord(ch):04X}"
    return None


def _ip(value: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    try:
        ip = ipaddress.ip_address(value)
    except ValueError:
        return None
    # A zone ("fe80::1%eth0") cannot be written into a certificate.
    if isinstance(ip, ipaddress.IPv6Address) and ip.scope_id is not None:
        return None
    return ip


def _normal_san(value: str) -> str | None:
    """The canonical form of a DNS name or IP address, or ``None`` if it is neither."""
    ip = _ip(value)
    if ip is not None:
        return str(ip)
    if _dns_problem(value, wildcard=True) is None:
        return value.lower()
    return None


def _san_problem(value: str) -> str:
    if "%" in value and _ip(value.split("%", 1)[0]) is not None:
        return "is an IP address with a zone, which a certificate cannot hold"
    return f"is neither an IP address nor a DNS name: it {_dns_problem(value, wildcard=True)}"


def _dns_problem(name: str, *, wildcard: bool) -> str | None:
    """Why ``name`` is not a DNS name (LDH labels, RFC 1123), or ``None`` if it is one."""
    if not name.isascii():
        return "is not ASCII; write internationalised names in their xn-- form"
    if len(name) > 253:
        return "is longer than 253 characters"
    rest = name.lower()
    if wildcard and rest.startswith("*."):
        rest = rest[2:]
        # Like browsers, a wildcard must sit below a registrable-looking name.
        if rest.count(".") < 1:
            return "puts a wildcard directly above a top-level name"
    labels = rest.split(".")
    for label in labels:
        if not label:
            return "has an empty label (a leading, trailing or double dot)"
        if len(label) > 63:
            return "has a label longer than 63 characters"
        if not _LABEL.fullmatch(label):
            if "*" in label:
                return "has a wildcard other than a leading '*.'"
            return f"has the label {_show(label)}; labels are letters, digits and inner hyphens"
    if labels[-1].isdigit():
        return "ends in an all-numeric label"
    return None


def _email_problem(email: str) -> str | None:
    if not email.isascii():
        return "is not ASCII (the emailAddress attribute is an IA5String)"
    if any(ch.isspace() for ch in email):
        return "contains a space"
    if email.count("@") != 1:
        return "is not an address: it needs exactly one @"
    local, _, domain = email.partition("@")
    if not local:
        return "has nothing before the @"
    if "." not in domain or _dns_problem(domain, wildcard=False) is not None:
        return f"has the domain {_show(domain)}, which is not a DNS name with a dot"
    return None


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
    by_oid = {oid: field for field, oid, _, _ in _SUBJECT}
    found: dict[str, list[str]] = {}
    for attr in subject:
        field = by_oid.get(attr.oid)
        if field is None or not isinstance(attr.value, str):
            problems.append(
                f"the subject attribute {attr.rfc4514_string(_MORE_NAMES)} is not supported; "
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
                f"the SAN {_show(_san_text(name))} is not supported; certdrop asks "
                "only for DNS names and IP addresses"
            )
    cn = found.get("cn", [None])[0]
    if cn is None and sans:
        cn = sans[0]
    texts = {field: found.get(field, [None])[0] for field in _OPTIONAL}
    return _checked(cn if cn is not None else "", tuple(sans), texts, key_type, key_size, problems)


# -- small helpers --------------------------------------------------------------------------


def _general_name(san: str) -> x509.GeneralName:
    ip = _ip(san)
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


def _show(value: object) -> str:
    """A value quoted for a message: escaped, and shortened when long."""
    text = str(value)
    if len(text) > 60:
        text = text[:57] + "..."
    return repr(text)


def _show_all(values: tuple[str, ...]) -> str:
    return " and ".join(_show(v) for v in values)


def _type_name(value: object) -> str:
    return type(value).__name__
