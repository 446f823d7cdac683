"""The fields a person asks for in a certificate request, each checked.

Pure: bytes and values in, values out. ``RequestFields`` is only ever built by its
``from_*`` constructors, which check every field and raise one ``InvalidRequest`` that
lists every problem, so a person fixes a request in one round trip.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Literal

from cryptography import x509
from cryptography.x509.oid import NameOID

from certdrop.errors import InvalidRequest
from certdrop.limits import DEFAULT_LIMITS
from certdrop.pki import domains
from certdrop.pki.names import bad_character

KeyType = Literal["rsa", "ec"]

RSA_KEY_SIZES = (2048, 4096)
EC_KEY_SIZES = (256,)

# (field, OID, short label) in the order subjects are usually written: C, ST, L, O, OU,
# CN, emailAddress. Upper bounds are RFC 5280 appendix A, counted in characters.
SUBJECT: tuple[tuple[str, x509.ObjectIdentifier, str, int], ...] = (
    ("country", NameOID.COUNTRY_NAME, "C", 2),
    ("state", NameOID.STATE_OR_PROVINCE_NAME, "ST", 128),
    ("locality", NameOID.LOCALITY_NAME, "L", 128),
    ("org", NameOID.ORGANIZATION_NAME, "O", 64),
    ("ou", NameOID.ORGANIZATIONAL_UNIT_NAME, "OU", 64),
    ("cn", NameOID.COMMON_NAME, "CN", 64),
    ("email", NameOID.EMAIL_ADDRESS, "emailAddress", 255),
)
# Names for attributes RFC 4514 leaves as dotted OIDs but CAs (EV, OV) do add.
MORE_NAMES = {
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
OPTIONAL = ("country", "state", "locality", "org", "ou", "email")
_KEYS = ("cn", "sans", *OPTIONAL, "key_type", "key_size")
_LIMIT = {field: limit for field, _, _, limit in SUBJECT}

_LABEL = re.compile(r"[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?", re.ASCII)


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
        becomes the only SAN.
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
        return checked(cn, tuple(sans), texts, key_type, key_size, problems)

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
                f"unknown keys {', '.join(map(show, unknown))}; known keys are {', '.join(_KEYS)}"
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
        for field in OPTIONAL:
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
        return checked(cn, sans, texts, key_type, key_size, problems, max_sans)

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


# -- checking -------------------------------------------------------------------------------

_MAX_SAN_PROBLEMS = 10


def checked(
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
    for field in OPTIONAL:
        raw = texts.get(field)
        value = None if raw is None else _check_text(field, raw, problems)
        if value is not None and field == "country":
            if len(value) == 2 and value.isascii() and value.isalpha():
                value = value.upper()
            else:
                problems.append(
                    f"country {show(value)} is not two letters; use the ISO 3166 code such as 'DE'"
                )
        elif value is not None and field == "email" and (why := _email_problem(value)):
            problems.append(f"email {show(value)} {why}")
        values[field] = value
    names = _check_sans(sans, problems, max_sans)
    if not names and not sans and good_cn is not None:
        as_san = _normal_san(good_cn)
        if as_san is None:
            problems.append(
                f"no sans given and cn {show(good_cn)} is not a DNS name or IP address; "
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
    bad = bad_character(raw)
    if bad is not None:
        problems.append(f"{field} contains the control or invisible character {bad}; remove it")
        return None
    value = raw.strip()
    if not value:
        if required:
            problems.append(f"{field} is empty; give the certificate's common name")
        return None
    limit = _LIMIT[field]
    if field == "cn" and domains.looks_like_domain(value):
        value = domains.to_ascii(value)  # 例え.jp -> xn--r8jz45g.jp, as the SAN will be
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
    ``in`` made 100,000 SANs take 43 s). More than ``max_sans`` is one problem, and a
    thousand bad SANs are reported as ten and a count."""
    if len(sans) > max_sans:
        problems.append(
            f"sans has {len(sans)} entries; the limit is limits.max_sans = {max_sans}. "
            "Split the names over several requests"
        )
        return []
    names: dict[str, None] = {}
    found: list[str] = []
    for raw in sans:
        bad = bad_character(raw)
        if bad is not None:
            found.append(f"SAN {show(raw)} contains the control or invisible character {bad}")
            continue
        value = raw.strip()
        if not value:
            found.append("sans has an empty entry; remove it")
            continue
        normal = _normal_san(value)
        if normal is None:
            found.append(f"SAN {show(value)} {_san_problem(value)}")
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
        problems.append(f"key_type {show(key_type)} is not supported; use 'rsa' or 'ec'")
    return None


def ip_of(value: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    try:
        ip = ipaddress.ip_address(value)
    except ValueError:
        return None
    # A zone ("fe80::1%eth0") cannot be written into a certificate.
    if isinstance(ip, ipaddress.IPv6Address) and ip.scope_id is not None:
        return None
    return ip


def _normal_san(value: str) -> str | None:
    """The canonical form of a DNS name or IP address, or ``None`` if it is neither.
    A Unicode domain name is converted to its A-labels (IDNA, UTS 46)."""
    ip = ip_of(value)
    if ip is not None:
        return str(ip)
    if not value.isascii():
        try:
            value = domains.to_ascii(value)
        except ValueError:
            return None
    if _dns_problem(value, wildcard=True) is None:
        return value.lower()
    return None


def _san_problem(value: str) -> str:
    if "%" in value and ip_of(value.split("%", 1)[0]) is not None:
        return "is an IP address with a zone, which a certificate cannot hold"
    if not value.isascii():
        try:
            ascii_form = domains.to_ascii(value)
        except ValueError as exc:
            return f"is not a valid internationalised domain name (IDNA): {exc}"
        return f"is not a DNS name once converted to {show(ascii_form)}: it " + str(
            _dns_problem(ascii_form, wildcard=True)
        )
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
            return f"has the label {show(label)}; labels are letters, digits and inner hyphens"
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
        return f"has the domain {show(domain)}, which is not a DNS name with a dot"
    return None


# -- small helpers --------------------------------------------------------------------------


def show(value: object) -> str:
    """A value quoted for a message: escaped, and shortened when long."""
    text = str(value)
    if len(text) > 60:
        text = text[:57] + "..."
    return repr(text)


def show_all(values: tuple[str, ...]) -> str:
    return " and ".join(show(v) for v in values)


def _type_name(value: object) -> str:
    return type(value).__name__
