"""One sentence for a refusal of cryptography's verifier: which certificate, which rule.

cryptography names the certificate only for errors in the leaf; for errors while
building the path ("candidates exhausted: ...") it gives the rule alone. The certificate
is then found by checking that rule on the path the hand-written builder orders
(:func:`certdrop.pki.chain.build_chain`), then on every other candidate. Pure.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from datetime import datetime
from typing import TypeVar

from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import dsa, ec, ed448, ed25519, rsa
from cryptography.x509.oid import ExtensionOID

from certdrop.pki import chain as chains
from certdrop.pki.trust_rules import Roles, eku_name, leaf_sans, short

_PREFIXES = ("validation failed: ", "candidates exhausted: ")
_AT = re.compile(r"\s*\(encountered processing (<Certificate\(.*\)>)\)\s*\Z", re.DOTALL)
_EXT = re.compile(r"invalid extension: ([0-9.]+): (.*)\Z", re.DOTALL)
_EKU_OID = {"serverAuth": "1.3.6.1.5.5.7.3.1", "clientAuth": "1.3.6.1.5.5.7.3.2"}
T = TypeVar("T", bound=x509.ExtensionType)
Finder = Callable[[x509.Certificate], bool]


def explain(
    message: str,
    leaf: x509.Certificate,
    offered: Sequence[x509.Certificate],
    anchors: chains.Anchors,
    roles: Roles,
    now: datetime,
    usage: str,
    hostname: str | None,
) -> str:
    """The trust_detail for cryptography's VerificationError ``message``."""
    text = message
    while text.startswith(_PREFIXES):
        text = next(text.removeprefix(p) for p in _PREFIXES if text.startswith(p))
    at: x509.Certificate | None = None
    found = _AT.search(text)
    everyone = [leaf, *offered, *roles.roots]
    if found is not None:
        text = text[: found.start()]
        at = next((c for c in everyone if repr(c) == found.group(1)), None)
    built = chains.build_chain(leaf, offered, anchors)
    path = [*built.bundle, *([built.root] if built.root is not None else [])]
    search = [*([at] if at is not None else []), *path, *(c for c in everyone if c not in path)]
    cas = [c for c in search if c != leaf]

    def first(candidates: Sequence[x509.Certificate], test: Finder) -> x509.Certificate | None:
        return next((c for c in candidates if _safe(test, c)), None)

    def who(cert: x509.Certificate | None) -> str:
        return roles.name(cert if cert is not None else at if at is not None else leaf)

    if built.root is None and _no_path(text):
        return _unanchored(path, [*offered, *roles.roots], who)
    if text.startswith("Python extension validator failed: "):
        return text.split(": ", 2)[-1].strip()
    ext = _EXT.match(text)
    if ext is not None:
        return _extension_sentence(ext.group(1), ext.group(2), at, search, roles)
    if "path length constraint violated" in text:
        return _pathlen_sentence(path, roles) or f"{who(None)} breaks a pathLenConstraint"
    if "name constraint" in text:
        return _name_constraint_sentence(text, path, leaf, roles)
    if "keyCertSign must be asserted" in text:
        cert = first(cas, lambda c: not _ext_value(c, x509.KeyUsage).key_cert_sign)
        return f"{who(cert)} is a CA but its keyUsage lacks keyCertSign"
    if "cA must be asserted" in text:
        cert = first(cas, lambda c: not chains.is_ca(c))
        return f"{who(cert)} issues certificates but its basicConstraints say CA:FALSE"
    if "cA must not be asserted" in text:
        return f"{who(leaf)} is a CA certificate (CA:TRUE) and cannot serve as a leaf"
    if "must not assert keyCertSign" in text:
        return f"{who(leaf)} has keyUsage keyCertSign, so it is a CA and cannot serve as a leaf"
    if "not valid at validation time" in text:
        return _validity_sentence(first(search, lambda c: _outside(c, now)), roles, now)
    if "required EKU not found" in text or "Neither EKU nor anyEKU" in text:
        wanted = _EKU_OID[usage]
        cert = at or first(cas, lambda c: wanted not in _ekus(c) | {"2.5.29.37.0"})
        listed = ", ".join(sorted(_eku_names(cert))) if cert is not None else ""
        listed = listed or "other uses"
        return f"{who(cert)} is not for {usage}: its extendedKeyUsage lists {listed}"
    if "no matching subjectAltName" in text:
        names = [str(g.value) for g in leaf_sans(leaf)][:5]
        asked = hostname if hostname is not None else "any name"
        return f"{who(leaf)} does not cover {asked} (it names {', '.join(names) or 'nothing'})"
    if "subjectAltName MUST" in text:
        rule = "critical when the subject is empty" if "MUST be" in text else (
            "non-critical when the subject is not empty"
        )
        return f"{who(leaf)} must have its subjectAltName {rule}"
    if "RSA key is too weak" in text:
        cert = first(cas, lambda c: _rsa_bits(c) < 2048)
        bits = _rsa_bits(cert) if cert is not None else "an under 2048"
        return f"{who(cert)} has a {bits}-bit RSA key; CA keys need 2048 bits or more"
    if "Forbidden public key algorithm" in text:
        cert = first(cas, lambda c: not _permitted_key(c))
        return f"{who(cert)} has a key type or curve that is not allowed for a CA"
    if "Forbidden signature algorithm" in text:
        return f"{who(at)} is signed with an algorithm that is not allowed (use SHA-256 or better)"
    if "signature does not match" in text:
        return f"the signature of {who(at)} does not verify with its issuer's key"
    if "non-empty Issuer" in text:
        return (
            f"{who(at)} names an empty issuer: the CA that issued it has an empty subject, "
            "which RFC 5280 forbids"
        )
    if "max depth" in text or "maximum" in text:
        return (
            f"the chain of {who(leaf)} is longer or more tangled than certdrop follows "
            "(at most 8 intermediates)"
        )
    return f"{who(at)} is refused: {text.strip()}"


# RFC 5280 / BR criticality: these must be critical in a CA, those never critical.
_CRITICAL_IN_CA = {"2.5.29.19", "2.5.29.36", "2.5.29.54"}  # basicConstraints, PC, inhibitAnyPolicy
_NEVER_CRITICAL = {"1.3.6.1.5.5.7.1.1", "2.5.29.35", "2.5.29.14", "2.5.29.37"}  # AIA AKI SKI EKU


def _no_path(text: str) -> bool:
    """cryptography's words for "no issuer leads to a trusted root" (an untrusted
    self-signed root in the drop makes it loop to its depth limit)."""
    return "no interior errors" in text or "max depth" in text


def _unanchored(
    path: Sequence[x509.Certificate],
    everyone: Sequence[x509.Certificate],
    who: Callable[[x509.Certificate | None], str],
) -> str:
    top = path[-1]
    root = next(
        (c for c in everyone if c.subject == top.issuer and c.issuer == c.subject), None
    )
    if root is not None:
        return (
            f"{who(top)} is issued by the root {short(root.subject)}, which is not trusted; "
            "add it to trust.ca_bundle if you trust it"
        )
    return (
        f"{who(top)} is issued by {short(top.issuer)}, which is neither a trusted root nor "
        "among the intermediates in the drop, the pool or trust.ca_bundle"
    )


def _extension_sentence(
    oid: str,
    reason: str,
    at: x509.Certificate | None,
    search: Sequence[x509.Certificate],
    roles: Roles,
) -> str:
    name = eku_name(x509.ObjectIdentifier(oid))
    carriers = [c for c in search if _has(c, oid)]
    if "missing required extension" in reason.lower():
        lacking = at or next((c for c in search if c != roles.leaf and not _has(c, oid)), None)
        target = roles.name(lacking or roles.leaf)
        return f"{target} lacks the {name} extension the profile requires"
    if "incorrect criticality" in reason:
        wrong = [
            c
            for c in carriers
            if (oid in _NEVER_CRITICAL and _critical(c, oid))
            or (oid in _CRITICAL_IN_CA and c != roles.leaf and not _critical(c, oid))
        ]
        culprit = at if at is not None and _has(at, oid) else next(iter(wrong or carriers), at)
        state = "critical" if culprit is not None and _critical(culprit, oid) else "non-critical"
        target = roles.name(culprit or roles.leaf)
        return f"{target} marks {name} {state}, which the profile forbids"
    cert = at if at is not None and _has(at, oid) else next(iter(carriers), at)
    target = roles.name(cert or roles.leaf)
    if "unaccounted-for critical" in reason:
        hint = '; [trust] profile = "rfc5280" processes it' if oid in _CRITICAL_IN_CA else ""
        return f"{target} has the critical extension {name}, which the profile does not " + (
            f"process{hint}"
        )
    if "prohibited extension" in reason:
        return f"{target} carries {name}, which it must not"
    return f"{target} has an invalid {name} extension ({reason.strip()})"


def _pathlen_sentence(path: Sequence[x509.Certificate], roles: Roles) -> str | None:
    # path[j] (a CA) has j - 1 intermediates below it, path[1] being the leaf's issuer.
    for j in range(2, len(path)):
        try:
            limit = path[j].extensions.get_extension_for_class(x509.BasicConstraints).value
        except (x509.ExtensionNotFound, ValueError):
            continue
        if limit.path_length is not None and limit.path_length < j - 1:
            return (
                f"{roles.name(path[j])} has pathLenConstraint {limit.path_length} but issues "
                f"{short(path[j - 1].subject)}"
            )
    return None


def _name_constraint_sentence(
    text: str, path: Sequence[x509.Certificate], leaf: x509.Certificate, roles: Roles
) -> str:
    names = [str(g.value) for g in leaf_sans(leaf)]
    for ca in path[1:]:
        try:
            nc = ca.extensions.get_extension_for_class(x509.NameConstraints).value
        except (x509.ExtensionNotFound, ValueError):
            continue
        allowed = [str(g.value) for g in nc.permitted_subtrees or ()]
        denied = [str(g.value) for g in nc.excluded_subtrees or ()]
        if "excluded" in text and denied:
            return (
                f"{roles.name(ca)} has name constraints excluding {', '.join(denied)}, but "
                f"{short(leaf.subject)} names {', '.join(names)}"
            )
        if allowed:
            return (
                f"{roles.name(ca)} has name constraints permitting only {', '.join(allowed)}, "
                f"but {short(leaf.subject)} names {', '.join(names)}"
            )
    return f"the names of {roles.name(leaf)} break a name constraint of its chain ({text.strip()})"


def _validity_sentence(cert: x509.Certificate | None, roles: Roles, now: datetime) -> str:
    if cert is None:
        return f"a certificate in the chain of {roles.name(roles.leaf)} is outside its validity"
    if cert.not_valid_after_utc < now:
        return f"{roles.name(cert)} expired on {cert.not_valid_after_utc:%Y-%m-%d %H:%M:%S}Z"
    return f"{roles.name(cert)} is valid only from {cert.not_valid_before_utc:%Y-%m-%d %H:%M:%S}Z"


def _outside(cert: x509.Certificate, now: datetime) -> bool:
    return not cert.not_valid_before_utc <= now <= cert.not_valid_after_utc


def _safe(test: Finder, cert: x509.Certificate) -> bool:
    try:
        return test(cert)
    except (x509.ExtensionNotFound, ValueError):
        return False


def _ext_value(cert: x509.Certificate, kind: type[T]) -> T:
    return cert.extensions.get_extension_for_class(kind).value


def _has(cert: x509.Certificate, oid: str) -> bool:
    try:
        return any(e.oid.dotted_string == oid for e in cert.extensions)
    except ValueError:
        return False


def _critical(cert: x509.Certificate, oid: str) -> bool:
    return any(e.oid.dotted_string == oid and e.critical for e in cert.extensions)


def _ekus(cert: x509.Certificate) -> set[str]:
    """Dotted EKU OIDs; no extension counts as every usage."""
    try:
        ekus = cert.extensions.get_extension_for_oid(ExtensionOID.EXTENDED_KEY_USAGE).value
    except x509.ExtensionNotFound:
        return set(_EKU_OID.values())
    return {oid.dotted_string for oid in ekus}  # type: ignore[attr-defined]


def _eku_names(cert: x509.Certificate) -> set[str]:
    return {eku_name(x509.ObjectIdentifier(o)) for o in _ekus(cert)}


def _rsa_bits(cert: x509.Certificate) -> int:
    public = cert.public_key()
    return public.key_size if isinstance(public, rsa.RSAPublicKey) else 1 << 16


def _permitted_key(cert: x509.Certificate) -> bool:
    public = cert.public_key()
    if isinstance(public, ec.EllipticCurvePublicKey):
        return public.curve.name in ("secp256r1", "secp384r1", "secp521r1")
    return not isinstance(
        public, dsa.DSAPublicKey | ed25519.Ed25519PublicKey | ed448.Ed448PublicKey
    )
