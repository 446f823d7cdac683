"""Checks certdrop adds to cryptography's path validation, where cryptography accepts what
a conforming verifier must refuse under the profile. Pure: every input is passed in.

- both profiles: dNSName SANs in RFC 1034 preferred name syntax (no IP literal, no
  underscore, wildcard only as the whole leftmost label), no wildcard over a public suffix,
  an authorityKeyIdentifier that has a keyIdentifier matching the issuer's
  subjectKeyIdentifier, policy constraints processed (RFC 5280 6.1, without mappings);
- webpki only: a commonName must be one of the SANs (BR 7.1.4.3), intermediates carry
  AKI and SKI (BR 7.1.2.10), and a leaf's AKI has no issuer/serial (BR 7.1.2.11.1).
"""

from __future__ import annotations

import functools
import ipaddress
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TypeVar, cast

from cryptography import x509
from cryptography.x509.oid import ExtensionOID, NameOID

from certdrop.pki.chain import describe_name

ANY_POLICY = x509.ObjectIdentifier("2.5.29.32.0")
T = TypeVar("T", bound=x509.ExtensionType)
_IP_LIKE = re.compile(r"[0-9.]+\Z|[0-9a-f:.]*:[0-9a-f:.]*\Z", re.IGNORECASE)
_HOST = re.compile(
    r"(?:\*\.)?(?:[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?\.)+[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?\Z",
    re.IGNORECASE,
)
_LABEL = re.compile(r"[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?\Z", re.IGNORECASE)


def short(name: x509.Name) -> str:
    """A certificate's name for a sentence: its CN when it has one, else the whole name."""
    cns = name.get_attributes_for_oid(NameOID.COMMON_NAME)
    if cns:
        return describe_name(x509.Name([cns[0]]))
    return describe_name(name) or "(empty name)"


@dataclass(frozen=True)
class Roles:
    """Names a certificate by its place: the leaf, a root of the trust store, or else an
    intermediate."""

    leaf: x509.Certificate
    roots: frozenset[x509.Certificate]

    def of(self, cert: x509.Certificate) -> str:
        if cert == self.leaf:
            return "leaf"
        return "root" if cert in self.roots else "intermediate"

    def name(self, cert: x509.Certificate) -> str:
        return f"{self.of(cert)} {short(cert.subject)}"


def eku_name(oid: x509.ObjectIdentifier) -> str:
    return oid._name if oid._name != "Unknown OID" else oid.dotted_string


@functools.cache
def public_suffix_list() -> Callable[[str], bool]:
    """``is_public(domain)`` over the ICANN section of the Public Suffix List (the list
    ships inside the publicsuffixlist package; it is read once)."""
    from publicsuffixlist import PublicSuffixList

    return PublicSuffixList(only_icann=True).is_public


def leaf_sans(leaf: x509.Certificate) -> list[x509.GeneralName]:
    found = extension(leaf, x509.SubjectAlternativeName)
    return [] if found is None else list(found)


# -- the leaf ---------------------------------------------------------------------------
def leaf_problem(
    leaf: x509.Certificate, profile: str, is_public: Callable[[str], bool]
) -> str | None:
    """A sentence when the leaf's own names or identifiers break a rule of the profile."""
    problem = _leaf_rule(leaf, profile, is_public)
    return None if problem is None else f"leaf {short(leaf.subject)} {problem}"


def _leaf_rule(
    leaf: x509.Certificate, profile: str, is_public: Callable[[str], bool]
) -> str | None:
    try:
        sans = leaf_sans(leaf)
        aki = _ext(leaf, x509.AuthorityKeyIdentifier)
    except ValueError:
        return "has a malformed extension; have it reissued"
    dns = [g.value for g in sans if type(g) is x509.DNSName]  # type(): ABCs are slow
    for text in dns:
        problem = dns_name_problem(text, is_public)
        if problem is not None:
            return f"has in its subjectAltName {problem}"
    if aki is not None and aki.key_identifier is None:
        return "has an authorityKeyIdentifier without a keyIdentifier"
    if profile == "webpki":
        if aki is not None and (aki.authority_cert_issuer or aki.authority_cert_serial_number):
            return (
                "has an authorityKeyIdentifier naming the issuer by name and serial, "
                "which the Web PKI forbids"
            )
        return _common_name_problem(leaf, dns, sans)
    return None


def dns_name_problem(text: str, is_public: Callable[[str], bool]) -> str | None:
    """Why ``text`` is no valid dNSName (preferred name syntax, leftmost wildcard), or None."""
    # The common case in one regex; anything unusual takes the careful path below.
    if _HOST.match(text) and len(text) <= 253 and "--" not in text and not text[-1].isdigit():
        if text.startswith("*.") and is_public(text[2:].lower()):
            return f"the wildcard {text} over the public suffix {text[2:]}"
        return None
    return _dns_name_problem(text, is_public)


def _dns_name_problem(text: str, is_public: Callable[[str], bool]) -> str | None:
    if _IP_LIKE.match(text):
        try:
            ipaddress.ip_address(text)
            return f"the IP address {text} as a DNS name (it belongs in an iPAddress entry)"
        except ValueError:
            pass
    shown = text.encode("unicode_escape").decode("ascii")
    if not text.isascii():
        return f"the non-ASCII DNS name {shown} (IDNs must be A-labels, xn--...)"
    labels = text.split(".")
    wildcard = labels[0] == "*"
    rest = labels[1:] if wildcard else labels
    if len(text) > 253 or not rest or not all(_valid_label(label) for label in rest):
        return f"the invalid DNS name {shown!r}"
    if wildcard and (len(rest) < 2 or is_public(".".join(rest).lower())):
        return f"the wildcard {shown} over the public suffix {'.'.join(rest)}"
    return None


def _valid_label(label: str) -> bool:
    if not _LABEL.match(label):
        return False
    if label[2:4] == "--" and label[:4].lower() != "xn--":
        return False  # RFC 5891 4.2.3.1: "??--" is reserved for A-labels
    if label[:4].lower() == "xn--":
        # An A-label must decode to printable non-ASCII text that encodes back to itself.
        try:
            text = label[4:].encode("ascii").decode("punycode")
            again = "xn--" + text.encode("punycode").decode("ascii")
        except UnicodeError:
            return False
        return again == label.lower() and text.isprintable() and not text.isascii()
    return True


def _common_name_problem(
    leaf: x509.Certificate, dns: list[str], sans: list[x509.GeneralName]
) -> str | None:
    cns = [a.value for a in leaf.subject.get_attributes_for_oid(NameOID.COMMON_NAME)]
    if len(cns) > 1:
        return "has more than one commonName, which the Web PKI forbids"
    ips = [str(g.value) for g in sans if isinstance(g, x509.IPAddress)]
    if cns and cns[0] not in dns and cns[0] not in ips:
        return (
            f"has the commonName {cns[0]!s} that is not one of its subjectAltNames, "
            "which the Web PKI forbids"
        )
    return None


# -- the validated path -----------------------------------------------------------------
Index = dict[x509.ObjectIdentifier, x509.Extension[x509.ExtensionType]]
_AKI, _SKI = ExtensionOID.AUTHORITY_KEY_IDENTIFIER, ExtensionOID.SUBJECT_KEY_IDENTIFIER
_MAPPINGS, _CONSTRAINTS = ExtensionOID.POLICY_MAPPINGS, ExtensionOID.POLICY_CONSTRAINTS
_INHIBIT = ExtensionOID.INHIBIT_ANY_POLICY


def chain_problem(path: Sequence[x509.Certificate], profile: str, roles: Roles) -> str | None:
    """A sentence when the path cryptography accepted breaks a rule it does not check.

    ``path`` runs from the leaf to the trust anchor. Each certificate's extensions are
    indexed once: this runs for every drop.
    """
    try:
        indexes = [index_of(cert) for cert in path]
        problem = _key_identifier_problem(path, indexes, profile, roles)
        if problem is not None:
            return problem
        problem, constrained = _policy_extension_problem(path, indexes, profile, roles)
        # Without policyConstraints explicit_policy never reaches 0: nothing can fail.
        if problem is None and constrained and profile == "rfc5280":
            problem = policy_problem(path[-2::-1], roles)
        return problem
    except ValueError:
        return f"the chain of {roles.name(path[0])} has a malformed extension"


def _key_identifier_problem(
    path: Sequence[x509.Certificate], indexes: list[Index], profile: str, roles: Roles
) -> str | None:
    for i in range(len(path) - 1):
        aki, ski = indexes[i].get(_AKI), indexes[i + 1].get(_SKI)
        if aki is None or ski is None:
            continue
        given = cast(x509.AuthorityKeyIdentifier, aki.value).key_identifier
        if given is not None and given != cast(x509.SubjectKeyIdentifier, ski.value).digest:
            return (
                f"the authorityKeyIdentifier of {roles.name(path[i])} does not match the "
                f"subjectKeyIdentifier of its issuer {roles.name(path[i + 1])}"
            )
    if profile == "webpki":
        for ca, index in zip(path[1:-1], indexes[1:-1], strict=True):
            for oid, label in ((_AKI, "authorityKeyIdentifier"), (_SKI, "subjectKeyIdentifier")):
                if oid not in index:
                    return f"{roles.name(ca)} has no {label}, which the Web PKI requires"
    return None


def _policy_extension_problem(
    path: Sequence[x509.Certificate], indexes: list[Index], profile: str, roles: Roles
) -> tuple[str | None, bool]:
    """(a refusal, whether any certificate below the anchor has policyConstraints)."""
    constrained = False
    for position, (cert, index) in enumerate(zip(path, indexes, strict=True)):
        if _MAPPINGS in index:
            found = f"{roles.name(cert)} maps certificate policies, which certdrop does not process"
            return found, constrained
        for oid in (_CONSTRAINTS, _INHIBIT):
            ext = index.get(oid)
            if ext is None:
                continue
            label = eku_name(oid)
            if not ext.critical:
                found = f"{roles.name(cert)} has a non-critical {label}, which must be critical"
                return found, True
            if profile == "webpki":
                return (
                    f"{roles.name(cert)} has {label}, which the webpki profile does not "
                    'process; use [trust] profile = "rfc5280"'
                ), True
            constrained = constrained or (oid == _CONSTRAINTS and position < len(path) - 1)
    return None, constrained


def policy_problem(path: Sequence[x509.Certificate], roles: Roles) -> str | None:
    """RFC 5280 6.1 policy processing with initial-policy-set {anyPolicy}, no initial
    explicit policy and no mappings (chains with policyMappings are refused above).

    ``path`` runs from the certificate the trust anchor issued down to the leaf. Without
    mappings the valid_policy_tree reduces to the set of policies valid so far.
    """
    n = len(path)
    explicit, inhibit_any = n + 1, n + 1
    required_by: x509.Certificate | None = None
    valid: frozenset[x509.ObjectIdentifier] | None = frozenset({ANY_POLICY})
    for i, cert in enumerate(path, start=1):
        policies = _ext(cert, x509.CertificatePolicies)
        self_issued = cert.issuer == cert.subject
        if policies is None:
            valid = None
        elif valid is not None:
            oids = {p.policy_identifier for p in policies}
            carries_any = ANY_POLICY in oids and (inhibit_any > 0 or (i < n and self_issued))
            kept = {p for p in oids - {ANY_POLICY} if p in valid or ANY_POLICY in valid}
            valid = frozenset(kept | (valid if carries_any else set())) or None
        if i == n:
            constraints = _ext(cert, x509.PolicyConstraints)
            if explicit > 0:
                explicit -= 1
            if constraints is not None and constraints.require_explicit_policy == 0:
                explicit, required_by = 0, cert
        if explicit == 0 and valid is None:
            assert required_by is not None
            return (
                f"{roles.name(required_by)} requires an explicit certificate policy, but "
                f"{roles.name(cert)} has no policy that is valid along the chain"
            )
        if i < n:
            if not self_issued:
                explicit, inhibit_any = max(explicit - 1, 0), max(inhibit_any - 1, 0)
            constraints = _ext(cert, x509.PolicyConstraints)
            wanted = None if constraints is None else constraints.require_explicit_policy
            if wanted is not None and wanted < explicit:
                explicit, required_by = wanted, cert
            inhibit = _ext(cert, x509.InhibitAnyPolicy)
            if inhibit is not None:
                inhibit_any = min(inhibit_any, inhibit.skip_certs)
    return None


class _Indexes:
    """Each certificate's extensions by OID, made once per certificate object.

    A cache only (what it holds follows from the certificate alone): the leaf's index
    serves the four checks of one verdict, a CA's (the same object: the store's roots, the
    pool's intermediates) every verdict it takes part in. Keyed by identity, which is
    cheap, with the certificate kept so that its id cannot be reused while it is here.
    """

    def __init__(self, limit: int = 2048) -> None:
        self._memo: dict[int, tuple[x509.Certificate, Index]] = {}
        self._limit = limit

    def of(self, cert: x509.Certificate) -> Index:
        hit = self._memo.get(id(cert))
        if hit is not None and hit[0] is cert:
            return hit[1]
        index: Index = {e.oid: e for e in cert.extensions}
        if len(self._memo) >= self._limit:
            self._memo.clear()
        self._memo[id(cert)] = (cert, index)
        return index


index_of = _Indexes().of


def extension(cert: x509.Certificate, kind: type[T]) -> T | None:
    """The value of ``cert``'s extension of ``kind``, or None (by OID from the index:
    ``get_extension_for_class`` tests every value's ABC, several times slower)."""
    found = index_of(cert).get(kind.oid)
    return None if found is None else cast(T, found.value)


_ext = extension
