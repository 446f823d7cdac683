"""Trust verdicts: RFC 5280 path validation by ``cryptography.x509.verification``. Pure.

A :class:`Verifier` is built once per trust store and profile and reused for every drop;
:meth:`Verifier.judge` says whether a leaf is trusted for one usage (serverAuth or
clientAuth) and, for auto-assignment, one hostname, at a time passed in. A refusal carries
one sentence naming the certificate and the rule (``trust_detail``).

cryptography decides; certdrop only adds checks where cryptography accepts what a
conforming verifier must refuse under the profile (:mod:`certdrop.pki.trust_rules`), so it
is never less strict than cryptography configured with the same extension policies.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Literal

import idna
from cryptography import x509
from cryptography.hazmat.primitives.serialization import Encoding
from cryptography.x509.oid import ExtendedKeyUsageOID
from cryptography.x509.verification import (
    Criticality,
    ExtensionPolicy,
    Policy,
    PolicyBuilder,
    Store,
    VerificationError,
)

from certdrop.pki import chain as chains
from certdrop.pki import trust_explain, trust_rules
from certdrop.pki.trust_rules import Roles, short

Profile = Literal["rfc5280", "webpki"]
Usage = Literal["serverAuth", "clientAuth"]
PROFILES: tuple[Profile, ...] = ("rfc5280", "webpki")
# Mail gateways mostly trust private enterprise CAs, which RFC 5280 path validation
# accepts when they are safe and the CA/Browser Forum's issuance rules would not.
DEFAULT_PROFILE: Profile = "rfc5280"
USAGES: tuple[Usage, ...] = ("serverAuth", "clientAuth")
ROLE_USAGE: dict[str, Usage] = {
    "https": "serverAuth",
    "smtp-server": "serverAuth",
    "smtp-client": "clientAuth",
}
_EKU = {
    "serverAuth": ExtendedKeyUsageOID.SERVER_AUTH,
    "clientAuth": ExtendedKeyUsageOID.CLIENT_AUTH,
}


@dataclass(frozen=True)
class Verdict:
    """Trusted or not; ``detail`` is the one-sentence reason when not, else ""."""

    trusted: bool
    detail: str = ""
    chain: tuple[x509.Certificate, ...] = ()  # leaf .. root, as validated

    @property
    def intermediates(self) -> tuple[x509.Certificate, ...]:
        """What a server sends after its leaf: the validated path without leaf and root."""
        return self.chain[1:-1]


def refused(detail: str) -> Verdict:
    return Verdict(False, detail)


class HostnameError(ValueError):
    """A ``hostname`` that is neither an IP address nor a valid (IDNA) domain name."""


def subject_for(hostname: str) -> x509.DNSName | x509.IPAddress:
    """The verifier's subject for a configured hostname: an IP address literal becomes an
    IPAddress (never matched against dNSName SANs), anything else an IDNA A-label name."""
    text = hostname.strip().rstrip(".")
    if text.startswith("[") and text.endswith("]"):
        text = text[1:-1]
    try:
        return x509.IPAddress(ipaddress.ip_address(text))
    except ValueError:
        pass
    try:
        ascii_name = idna.encode(text, uts46=True).decode("ascii")
        return x509.DNSName(ascii_name)
    except (idna.IDNAError, UnicodeError, ValueError) as error:
        raise HostnameError(
            f"the hostname {hostname!r} is neither an IP address nor a valid domain name"
        ) from error


@dataclass(frozen=True)
class Verifier:
    """Trust anchors, the profile's policies and cryptography's store, built once."""

    profile: Profile
    roots: tuple[x509.Certificate, ...]
    extra: tuple[x509.Certificate, ...]  # non-root CA certificates from the trust store
    _store: Store | None = field(repr=False, compare=False)
    _anchors: chains.Anchors = field(repr=False, compare=False)
    _policies: dict[str, tuple[ExtensionPolicy, ExtensionPolicy]] = field(
        repr=False, compare=False
    )
    _is_public: Callable[[str], bool] = field(repr=False, compare=False)
    _root_set: frozenset[x509.Certificate] = field(repr=False, compare=False)

    @classmethod
    def build(
        cls,
        certs: Iterable[x509.Certificate],
        profile: Profile = DEFAULT_PROFILE,
        *,
        is_public_suffix: Callable[[str], bool] | None = None,
    ) -> Verifier:
        """A verifier for the certificates of a trust store (``trust.ca_bundle`` or the
        system store): self-issued ones are the roots, other CA certificates are offered
        as untrusted intermediates, as the drop's own are."""
        if profile not in PROFILES:
            raise ValueError(f"unknown trust profile {profile!r}; use one of {PROFILES}")
        unique = {c.public_bytes(Encoding.DER): c for c in certs}
        # Self-issued, not verified self-signed: an anchor's own signature is never
        # checked (old system roots are SHA-1 signed), and this costs no signature check.
        roots = tuple(c for c in unique.values() if c.subject == c.issuer)
        extra = tuple(c for c in unique.values() if c not in roots and chains.is_ca(c))
        root_set = frozenset(roots)
        return cls(
            profile,
            roots,
            extra,
            Store(list(roots)) if roots else None,  # cryptography refuses an empty store
            chains.Anchors.from_certs(roots),
            _extension_policies(profile, root_set),
            # The list is read on first need (a wildcard SAN), not for every store.
            is_public_suffix or (lambda domain: trust_rules.public_suffix_list()(domain)),
            root_set,
        )

    @property
    def anchors(self) -> chains.Anchors:
        """The roots indexed for the hand-written builder (ordering untrusted bundles)."""
        return self._anchors

    def judge(
        self,
        leaf: x509.Certificate,
        intermediates: Sequence[x509.Certificate],
        usage: Usage,
        now: datetime,
        hostname: str | None = None,
    ) -> Verdict:
        """Is ``leaf`` trusted for ``usage`` (and ``hostname``, when given) at ``now``?"""
        return self._judge(leaf, intermediates, (usage,), now, hostname)[usage]

    def judge_any(
        self, leaf: x509.Certificate, intermediates: Sequence[x509.Certificate], now: datetime
    ) -> Verdict:
        """Trusted for at least one usage: what intake records as ``trusted``.

        serverAuth is asked first (nearly every certificate is a server's), clientAuth only
        when that fails; the detail of a refusal is the one for the usage the leaf's
        extendedKeyUsage is meant for.
        """
        server = self._judge(leaf, intermediates, ("serverAuth",), now, None)["serverAuth"]
        if server.trusted:
            return server
        client = self._judge(leaf, intermediates, ("clientAuth",), now, None)["clientAuth"]
        for_client = _usage_problem(leaf, "serverAuth") and not _usage_problem(leaf, "clientAuth")
        return client if client.trusted or for_client else server

    def _judge(
        self,
        leaf: x509.Certificate,
        intermediates: Sequence[x509.Certificate],
        usages: Sequence[Usage],
        now: datetime,
        hostname: str | None,
    ) -> dict[Usage, Verdict]:
        problem = trust_rules.leaf_problem(leaf, self.profile, self._is_public)
        if problem is None and self._store is None:
            problem = (
                f"no trusted root is configured, so {short(leaf.subject)} cannot be trusted; "
                "set trust.ca_bundle to your CA's root certificates"
            )
        if problem is None:
            try:
                subject = subject_for(hostname) if hostname is not None else _own_subject(leaf)
            except HostnameError as error:
                problem = str(error)
        if problem is not None:
            return {usage: refused(problem) for usage in usages}
        roles = Roles(leaf, self._root_set)
        offered = [*intermediates, *self.extra]
        verdicts: dict[Usage, Verdict] = {}
        checked: list[tuple[tuple[x509.Certificate, ...], str | None]] = []
        for usage in usages:
            problem = _usage_problem(leaf, usage)
            if problem is not None:
                verdicts[usage] = refused(problem)
                continue
            try:
                path = tuple(self._verify(leaf, offered, usage, now, subject, hostname is not None))
            except VerificationError as error:
                verdicts[usage] = refused(self._explain(str(error), leaf, offered, roles, now,
                                                        usage, hostname))  # fmt: skip
                continue
            except ValueError as error:  # a name the verifier will not take as its subject
                verdicts[usage] = refused(f"{roles.name(leaf)} cannot be checked for "
                                          f"{subject.value}: {error}")  # fmt: skip
                continue
            # Both usages mostly validate the same path: check it once (== compares DER).
            found = next((p for seen, p in checked if seen == path), "") if checked else ""
            if found == "":
                found = trust_rules.chain_problem(path, self.profile, roles)
                checked.append((path, found))
            verdicts[usage] = refused(found) if found is not None else Verdict(True, "", path)
        return verdicts

    def _explain(
        self,
        message: str,
        leaf: x509.Certificate,
        offered: list[x509.Certificate],
        roles: Roles,
        now: datetime,
        usage: Usage,
        hostname: str | None,
    ) -> str:
        try:
            return trust_explain.explain(
                message, leaf, offered, self._anchors, roles, now, usage, hostname
            )
        except Exception:  # noqa: BLE001 - a hostile certificate must not turn a refusal into a crash
            return f"{roles.name(leaf)} is refused: {message}"

    def _verify(
        self,
        leaf: x509.Certificate,
        offered: list[x509.Certificate],
        usage: Usage,
        now: datetime,
        subject: x509.DNSName | x509.IPAddress,
        named: bool,
    ) -> list[x509.Certificate]:
        assert self._store is not None
        ca, ee = self._policies[usage]
        builder = PolicyBuilder().store(self._store).time(now)
        if usage == "serverAuth":
            builder = builder.extension_policies(ca_policy=ca, ee_policy=ee)
            return builder.build_server_verifier(subject).verify(leaf, offered)
        # The client verifier never matches a name; for a hostname, the server verifier
        # (with the clientAuth EKU rules put in place of serverAuth) matches it.
        plain_ca, plain_ee = self._policies["plain"]
        client = builder.extension_policies(ca_policy=plain_ca, ee_policy=plain_ee)
        path = client.build_client_verifier().verify(leaf, offered).chain
        if named:
            builder = builder.extension_policies(ca_policy=ca, ee_policy=ee)
            builder.build_server_verifier(subject).verify(leaf, offered)
        return path


def _usage_problem(leaf: x509.Certificate, usage: Usage) -> str | None:
    """The EKU check cryptography would make, made first: it costs no signature check."""
    try:
        ekus = trust_rules.extension(leaf, x509.ExtendedKeyUsage)
    except ValueError:
        return None  # malformed: cryptography's verifier says so
    if ekus is None or _EKU[usage] in ekus:
        return None
    listed = ", ".join(trust_rules.eku_name(oid) for oid in ekus) or "nothing"
    return (
        f"leaf {short(leaf.subject)} is not for {usage}: its extendedKeyUsage lists {listed}"
    )


_ADDRESSES = (ipaddress.IPv4Address, ipaddress.IPv6Address)


def _own_subject(leaf: x509.Certificate) -> x509.DNSName | x509.IPAddress:
    """A name the leaf itself carries, to ask "trusted for serverAuth under any of its
    names?" (cryptography's server verifier needs one; name constraints and certdrop's
    SAN rules cover every SAN regardless of which one is asked)."""
    for general in trust_rules.leaf_sans(leaf):
        # type() rather than isinstance(): these are ABCs, and this runs for every drop.
        if type(general) is x509.IPAddress and type(general.value) in _ADDRESSES:
            return general
        if type(general) is x509.DNSName:
            if not general.value.startswith("*."):
                return general  # leaf_problem has checked its syntax
            try:
                return x509.DNSName("wildcard" + general.value[1:])
            except ValueError:
                continue
    return x509.DNSName("no-name.invalid")


def _extension_policies(
    profile: Profile, roots: frozenset[x509.Certificate]
) -> dict[str, tuple[ExtensionPolicy, ExtensionPolicy]]:
    """(ca_policy, ee_policy) per usage: cryptography's Web PKI defaults, relaxed for
    rfc5280 only where RFC 5280 itself allows what the CA/Browser Forum does not."""
    ca = ExtensionPolicy.webpki_defaults_ca()
    ee = ExtensionPolicy.webpki_defaults_ee()
    if profile == "rfc5280":
        # 6.1.4 (n): keyCertSign is checked *if* keyUsage is present.
        ca = ca.may_be_present(x509.KeyUsage, Criticality.AGNOSTIC, _ca_key_usage(roots))
        # 4.2.1.11/4.2.1.14: MUST be critical; certdrop processes them (trust_rules).
        ca = ca.may_be_present(x509.PolicyConstraints, Criticality.CRITICAL, None)
        ca = ca.may_be_present(x509.InhibitAnyPolicy, Criticality.CRITICAL, None)
        # An authorityKeyIdentifier helps path building; its absence is no danger.
        ee = ee.may_be_present(x509.AuthorityKeyIdentifier, Criticality.NON_CRITICAL, None)
    client_ca = ca.may_be_present(
        x509.ExtendedKeyUsage, Criticality.NON_CRITICAL, _client_eku(roots, ca=True)
    )
    client_ee = ee.may_be_present(
        x509.ExtendedKeyUsage, Criticality.NON_CRITICAL, _client_eku(roots, ca=False)
    )
    return {"serverAuth": (ca, ee), "clientAuth": (client_ca, client_ee), "plain": (ca, ee)}


Validator = Callable[[Policy, x509.Certificate, x509.ExtensionType | None], None]


def _ca_key_usage(roots: frozenset[x509.Certificate]) -> Validator:
    def check(_policy: Policy, cert: x509.Certificate, ext: x509.ExtensionType | None) -> None:
        if type(ext) is x509.KeyUsage and not ext.key_cert_sign:
            role = "root" if cert in roots else "intermediate"
            raise ValueError(
                f"{role} {short(cert.subject)} is a CA but its keyUsage lacks keyCertSign"
            )

    return check


def _client_eku(roots: frozenset[x509.Certificate], *, ca: bool) -> Validator:
    """cryptography's EKU rule with clientAuth in place of serverAuth (a CA may also say
    anyExtendedKeyUsage), for matching a client certificate's names with the server
    verifier."""
    wanted = {ExtendedKeyUsageOID.CLIENT_AUTH}
    if ca:
        wanted.add(ExtendedKeyUsageOID.ANY_EXTENDED_KEY_USAGE)

    def check(_policy: Policy, cert: x509.Certificate, ext: x509.ExtensionType | None) -> None:
        if type(ext) is x509.ExtendedKeyUsage and not wanted & set(ext):
            role = ("root" if cert in roots else "intermediate") if ca else "leaf"
            raise ValueError(f"{role} {short(cert.subject)} is not for clientAuth")

    return check
