"""The defect classes of issue 10, each with its valid twin, and the verdict per profile.

``webpki``/``rfc5280`` say whether that profile must trust the chain; ``says`` is a
fragment the refusal's trust_detail must contain. Shared by tests/unit/test_trust.py and
the daemon test that auto-assigns by hostname.
"""

from __future__ import annotations

import datetime as dt
import functools
import ipaddress
from collections.abc import Callable
from dataclasses import dataclass

from cryptography import x509
from cryptography.x509.oid import ExtendedKeyUsageOID as EKU

from support.trustkit import (
    DAY,
    NOW,
    POLICY,
    UNKNOWN_OID,
    Chain,
    chain,
    intermediate,
    key,
    leaf,
    make,
    root,
    usage,
)

ANY_POLICY = x509.ObjectIdentifier("2.5.29.32.0")
OTHER_POLICY = x509.ObjectIdentifier("1.3.6.1.4.1.55738.1.2")


@dataclass(frozen=True)
class Case:
    id: str
    build: Callable[[], Chain]
    webpki: bool
    rfc5280: bool
    says: str = ""  # alternatives separated by " | "

    def expected(self, profile: str) -> bool:
        return self.webpki if profile == "webpki" else self.rfc5280


CASES: list[Case] = []


def case(id: str, webpki: bool, rfc5280: bool | None = None, says: str = "") -> Callable[
    [Callable[[], Chain]], Callable[[], Chain]
]:
    """Register a chain builder (built once, on first use) under ``id``."""

    def register(build: Callable[[], Chain]) -> Callable[[], Chain]:
        once = functools.cache(build)
        CASES.append(Case(id, once, webpki, webpki if rfc5280 is None else rfc5280, says))
        return once

    return register


def _unknown(critical: bool) -> list[tuple[x509.ExtensionType, bool]]:
    return [(x509.UnrecognizedExtension(UNKNOWN_OID, b"\x05\x00"), critical)]


def _nc(permitted: list[str] | None = None, excluded: list[str] | None = None) -> x509.NameConstraints:
    def names(values: list[str] | None) -> list[x509.GeneralName] | None:
        if values is None:
            return None
        out: list[x509.GeneralName] = []
        for v in values:
            out.append(x509.IPAddress(ipaddress.ip_network(v)) if "/" in v else x509.DNSName(v))
        return out

    return x509.NameConstraints(names(permitted), names(excluded))


def _policies(*oids: x509.ObjectIdentifier) -> list[tuple[x509.ExtensionType, bool]]:
    return [(x509.CertificatePolicies([x509.PolicyInformation(o, None) for o in oids]), False)]


def _require(explicit: int) -> list[tuple[x509.ExtensionType, bool]]:
    return [(x509.PolicyConstraints(require_explicit_policy=explicit, inhibit_policy_mapping=None), True)]


# -- the valid chain every twin equals ----------------------------------------------------
case("valid", True)(lambda: chain(hostname="www.example.test"))

# -- name constraints (DNS, IP; on roots and intermediates) -------------------------------
NC_DNS = _nc(["example.test"])
NC_IP = _nc(["example.test", "10.0.0.0/8"])
case("nc-dns-intermediate", False, says="permitting only example.test")(
    lambda: chain(cn="www.evil.test", inter_knobs={"name_constraints": NC_DNS})
)
case("nc-dns-intermediate-twin", True)(
    lambda: chain(cn="www.example.test", inter_knobs={"name_constraints": NC_DNS})
)
case("nc-dns-root", False, says="root CN=Trust Root has name constraints")(
    lambda: chain(cn="www.evil.test", root_knobs={"name_constraints": NC_DNS})
)
case("nc-dns-root-twin", True)(
    lambda: chain(cn="mx.example.test", root_knobs={"name_constraints": NC_DNS})
)
case("nc-ip-intermediate", False, says="name constraints")(
    lambda: chain(
        leaf_knobs={"sans": ["www.example.test", "192.168.1.1"]},
        inter_knobs={"name_constraints": NC_IP},
    )
)
case("nc-ip-intermediate-twin", True)(
    lambda: chain(
        leaf_knobs={"sans": ["www.example.test", "10.1.2.3"]},
        inter_knobs={"name_constraints": NC_IP},
    )
)
case("nc-ip-root", False, says="root CN=Trust Root has name constraints")(
    lambda: chain(leaf_knobs={"sans": ["www.example.test", "192.168.1.1"]},
                  root_knobs={"name_constraints": NC_IP})
)
case("nc-ip-root-twin", True)(
    lambda: chain(leaf_knobs={"sans": ["www.example.test", "10.9.9.9"]},
                  root_knobs={"name_constraints": NC_IP})
)
case("nc-excluded", False, says="excluding evil.example.test")(
    lambda: chain(cn="www.evil.example.test",
                  inter_knobs={"name_constraints": _nc(None, ["evil.example.test"])})
)
case("nc-excluded-twin", True)(
    lambda: chain(cn="www.good.example.test",
                  inter_knobs={"name_constraints": _nc(None, ["evil.example.test"])})
)


# -- pathLenConstraint ---------------------------------------------------------------------
def _pathlen(limit: int) -> Chain:
    r = root()
    issuing = intermediate("Issuing CA 2", r, path_length=limit)
    sub = intermediate("Sub CA", issuing, slot=4)
    return Chain((r,), (issuing, sub), leaf("www.example.test", sub))


case("pathlen", False, says="intermediate CN=Issuing CA 2 has pathLenConstraint 0 but issues CN=Sub CA")(
    lambda: _pathlen(0)
)
case("pathlen-twin", True)(lambda: _pathlen(1))

# -- keyUsage of a CA ---------------------------------------------------------------------
case("ca-without-keycertsign", False, says="keyUsage lacks keyCertSign")(
    lambda: chain(inter_knobs={"key_usage": usage(crl_sign=True)})
)
case("ca-without-keyusage", False, True, says="lacks the keyUsage extension")(
    lambda: chain(inter_knobs={"key_usage": None})
)

# -- extended key usage -------------------------------------------------------------------
case("eku-clientauth-leaf-for-server", False, says="is not for serverAuth")(
    lambda: chain(leaf_knobs={"eku": [EKU.CLIENT_AUTH]})
)
case("eku-serverauth-leaf-for-client", False, says="is not for clientAuth")(
    lambda: chain(usage="clientAuth")
)
case("eku-clientauth-leaf-for-client-twin", True)(
    lambda: chain(leaf_knobs={"eku": [EKU.CLIENT_AUTH]}, usage="clientAuth")
)
case("eku-client-with-hostname", True)(
    lambda: chain(leaf_knobs={"eku": [EKU.CLIENT_AUTH]}, usage="clientAuth",
                  hostname="www.example.test")
)
case("eku-client-other-hostname", False, says="does not cover mx.example.test")(
    lambda: chain(leaf_knobs={"eku": [EKU.CLIENT_AUTH]}, usage="clientAuth",
                  hostname="mx.example.test")
)
case("eku-intermediate-clientauth-only", False, says="intermediate CN=Issuing CA is not for serverAuth")(
    lambda: chain(inter_knobs={"extra": [(x509.ExtendedKeyUsage([EKU.CLIENT_AUTH]), False)]})
)
case("eku-intermediate-twin", True)(
    lambda: chain(inter_knobs={"extra": [(x509.ExtendedKeyUsage([EKU.SERVER_AUTH]), False)]})
)
case("eku-no-extension", True)(lambda: chain(leaf_knobs={"eku": None}))

# -- unknown critical extensions, in leaf, intermediate and root ---------------------------
for _where in ("leaf", "inter", "root"):
    _label = {"leaf": "leaf", "inter": "intermediate", "root": "root"}[_where]
    case(f"unknown-critical-{_label}", False, says=f"{_label} CN=")(
        functools.partial(lambda w: chain(**{f"{w}_knobs": {"extra": _unknown(True)}}), _where)
    )
    case(f"unknown-critical-{_label}-twin", True)(
        functools.partial(lambda w: chain(**{f"{w}_knobs": {"extra": _unknown(False)}}), _where)
    )

# -- the trust anchor's validity and basicConstraints -------------------------------------
case("root-expired", False, says="root CN=Trust Root expired on")(
    lambda: chain(root_knobs={"not_before": NOW - 400 * DAY, "not_after": NOW - DAY})
)
case("root-not-yet-valid", False, says="root CN=Trust Root is valid only from")(
    lambda: chain(root_knobs={"not_before": NOW + DAY, "not_after": NOW + 400 * DAY})
)
case("root-ca-false", False, says="root CN=Trust Root issues certificates")(
    lambda: chain(root_knobs={"basic": (False, True)})
)
case("root-without-basicconstraints", False, says="root CN=Trust Root lacks the basicConstraints")(
    lambda: chain(root_knobs={"basic": None})
)

# -- a CA certificate as the leaf ---------------------------------------------------------
case("leaf-is-ca", False, says="is a CA certificate (CA:TRUE)")(
    lambda: chain(leaf_knobs={"basic": (True, True)})
)
case("leaf-has-keycertsign", False, says="keyUsage keyCertSign")(
    lambda: chain(leaf_knobs={"key_usage": usage(key_cert_sign=True)})
)


# -- weak keys in CA certificates ---------------------------------------------------------
def _weak_root(bits: int) -> Chain:
    r = make("Weak Root", key(6 + bits // 1024, f"rsa{bits}"), ca=True, aki=None)
    return Chain((r,), (), leaf("www.example.test", r))


case("weak-key-intermediate", False, says="intermediate CN=Issuing CA has a 1024-bit RSA key")(
    lambda: chain(inter_knobs={"subject_key": key(5, "rsa1024")})
)
case("weak-key-intermediate-twin", True)(
    lambda: chain(inter_knobs={"subject_key": key(5, "rsa2048")})
)
case("weak-key-root", False, says="root CN=Weak Root has a 1024-bit RSA key")(lambda: _weak_root(1024))
case("weak-key-root-twin", True)(lambda: _weak_root(2048))


# -- policy constraints -------------------------------------------------------------------
def _pc(inter: list[tuple[x509.ExtensionType, bool]], leaf_oids: tuple[x509.ObjectIdentifier, ...]) -> Chain:
    return chain(inter_knobs={"extra": inter},
                 leaf_knobs={"extra": _policies(*leaf_oids) if leaf_oids else []})


EXPLICIT = "requires an explicit certificate policy | which the profile does not process"
case("policy-required-none-given", False, says=EXPLICIT)(
    lambda: _pc(_require(0), ())
)
case("policy-required-other-given", False, says=EXPLICIT)(
    lambda: _pc(_require(0) + _policies(POLICY), (OTHER_POLICY,))
)
# webpki refuses every chain with policy constraints, as cryptography does.
case("policy-required-twin", False, True, says="does not process")(
    lambda: _pc(_require(0) + _policies(POLICY), (POLICY,))
)
case("policy-constraints-noncritical", False, says="policyConstraints")(
    lambda: _pc([(x509.PolicyConstraints(0, None), False), *_policies(POLICY)], (POLICY,))
)
case("policy-inhibit-any", False, says=EXPLICIT)(
    lambda: _pc([*_require(0), (x509.InhibitAnyPolicy(0), True), *_policies(ANY_POLICY)], (ANY_POLICY,))
)
case("policy-inhibit-any-twin", False, True, says="does not process")(
    lambda: _pc([*_require(0), (x509.InhibitAnyPolicy(0), True), *_policies(ANY_POLICY)], (POLICY,))
)

# -- a CA with an empty subject -----------------------------------------------------------
case("ca-empty-subject", False, says="empty subject")(
    lambda: chain(inter_knobs={"subject": x509.Name([])})
)

# -- key identifiers, criticality of AKI/SKI/AIA/SAN --------------------------------------
case("leaf-without-aki", False, True, says="lacks the authorityKeyIdentifier")(
    lambda: chain(leaf_knobs={"aki": None})
)
case("intermediate-without-aki", False, True, says="has no authorityKeyIdentifier")(
    lambda: chain(inter_knobs={"aki": None})
)
case("intermediate-without-ski", False, True, says="has no subjectKeyIdentifier")(
    lambda: chain(inter_knobs={"ski": None})
)
case("aki-without-keyidentifier", False, says="without a keyIdentifier")(
    lambda: chain(leaf_knobs={"aki": x509.AuthorityKeyIdentifier(None, [x509.DirectoryName(root().cert.subject)], 7)})
)
case("aki-mismatch", False, says="does not match the subjectKeyIdentifier")(
    lambda: chain(leaf_knobs={"aki": x509.AuthorityKeyIdentifier(b"\x01" * 20, None, None)})
)
case("aki-critical", False, says="marks authorityKeyIdentifier critical")(
    lambda: chain(leaf_knobs={"aki_critical": True})
)
case("ski-critical", False, says="marks subjectKeyIdentifier critical")(
    lambda: chain(inter_knobs={"ski_critical": True})
)
_AIA = x509.AuthorityInformationAccess([x509.AccessDescription(
    x509.oid.AuthorityInformationAccessOID.CA_ISSUERS,
    x509.UniformResourceIdentifier("http://ca.example.test/issuing.crt"))])
case("aia-critical", False, says="marks authorityInfoAccess critical")(
    lambda: chain(leaf_knobs={"extra": [(_AIA, True)]})
)
case("aia-twin", True)(lambda: chain(leaf_knobs={"extra": [(_AIA, False)]}))
case("san-critical-with-subject", False, says="subjectAltName non-critical")(
    lambda: chain(leaf_knobs={"san_critical": True})
)
case("san-noncritical-without-subject", False, says="subjectAltName critical")(
    lambda: chain(leaf_knobs={"subject": x509.Name([]), "sans": ["www.example.test"]})
)
case("san-critical-without-subject-twin", True)(
    lambda: chain(leaf_knobs={"subject": x509.Name([]), "sans": ["www.example.test"], "san_critical": True})
)

# -- names: IP vs DNS, invalid DNS names, CN outside the SANs, public-suffix wildcards ----
case("ip-in-dns-san", False, says="IP address 10.0.0.1 as a DNS name")(
    lambda: chain(cn="10.0.0.1", leaf_knobs={"sans": ["dns:10.0.0.1"]}, hostname="10.0.0.1")
)
case("ip-in-ip-san-twin", True)(lambda: chain(cn="10.0.0.1", hostname="10.0.0.1"))
case("ip-hostname-vs-dns-san", False, says="does not cover 10.0.0.1")(
    lambda: chain(hostname="10.0.0.1")
)
case("ipv6-hostname", True)(lambda: chain(cn="2001:db8::1", hostname="[2001:db8::1]"))
for _bad in ("bad..example.test", "a_b.example.test", "-a.example.test", "a.*.example.test",
             "b*.example.test", "*", "www.example.test.", "ab--c.example.test", "ünï.example.test"):
    case(f"invalid-dns-san[{_bad}]", False, says="in its subjectAltName")(
        functools.partial(lambda b: chain(leaf_knobs={"sans": ["www.example.test", f"dns:{b}"]}), _bad)
    )
case("idn-a-label-twin", True)(
    lambda: chain(cn="xn--bcher-kva.example.test", hostname="Bücher.example.test")
)
case("idn-other-name", False, says="does not cover")(
    lambda: chain(cn="xn--bcher-kva.example.test", hostname="bucher.example.test")
)
case("cn-not-in-san", False, True, says="commonName www.example.test that is not one of")(
    lambda: chain(leaf_knobs={"sans": ["mail.example.test"]}, hostname="mail.example.test")
)
case("wildcard-public-suffix[com]", False, says="wildcard *.com over the public suffix com")(
    lambda: chain(cn="*.com", hostname="example.com")
)
case("wildcard-public-suffix[co.uk]", False, says="public suffix co.uk")(
    lambda: chain(cn="*.co.uk", hostname="example.co.uk")
)
case("wildcard-twin", True)(lambda: chain(cn="*.example.test", hostname="www.example.test"))
case("wildcard-one-label-only", False, says="does not cover")(
    lambda: chain(cn="*.example.test", hostname="a.b.example.test")
)
case("hostname-not-covered", False, says="does not cover other.example.test")(
    lambda: chain(hostname="other.example.test")
)


# -- notAfter is inclusive (RFC 5280 4.1.2.5) ---------------------------------------------
def _at_not_after(extra: dt.timedelta) -> Chain:
    c = chain()
    return Chain(c.roots, c.intermediates, c.leaf, at=c.leaf.cert.not_valid_after_utc + extra)


case("at-exactly-notafter", True)(lambda: _at_not_after(dt.timedelta(0)))
case("one-second-after-notafter", False, says="expired on")(
    lambda: _at_not_after(dt.timedelta(seconds=1))
)


# -- cross-signed intermediates: the first candidate issuer leads nowhere ------------------
def _cross_signed(trusted_first: bool) -> Chain:
    trusted, old = root(), root("Old Root", slot=7)
    via_old = intermediate("Issuing CA", old, slot=2)  # same name and key, other issuer
    via_trusted = intermediate("Issuing CA", trusted, slot=2)
    offered = (via_trusted, via_old) if trusted_first else (via_old, via_trusted)
    return Chain((trusted,), offered, leaf("www.example.test", via_trusted))


case("cross-signed-dead-end-first", True)(lambda: _cross_signed(False))
case("cross-signed-trusted-first", True)(lambda: _cross_signed(True))


def _expired_cross() -> Chain:
    trusted = root()
    expired = intermediate("Issuing CA", trusted, slot=2, not_before=NOW - 400 * DAY,
                           not_after=NOW - DAY)
    current = intermediate("Issuing CA", trusted, slot=2)
    return Chain((trusted,), (expired, current), leaf("www.example.test", current))


case("expired-twin-intermediate-first", True)(_expired_cross)
case("no-issuer-anywhere", False, says="is issued by CN=Issuing CA, which is neither")(
    lambda: Chain(chain().roots, (), chain().leaf)
)


def _untrusted_root_in_drop() -> Chain:
    c, stranger = chain(), root("Stranger Root", slot=11)
    return Chain((stranger,), (*c.intermediates, c.roots[0]), c.leaf)


case("untrusted-root-in-the-drop", False, says="the root CN=Trust Root, which is not trusted")(
    _untrusted_root_in_drop
)
