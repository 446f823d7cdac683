"""Tests for certdrop.pki.trust: verdicts per defect class and profile, and their details."""

from __future__ import annotations

import ipaddress

import pytest
from cryptography import x509
from cryptography.x509.oid import ExtendedKeyUsageOID as EKU
from cryptography.x509.verification import PolicyBuilder, Store, VerificationError
from hypothesis import given, settings
from hypothesis import strategies as st

from certdrop.pki import trust
from certdrop.pki.trust import PROFILES, Verifier, subject_for
from certdrop.pki.trust_rules import dns_name_problem, public_suffix_list
from support.trust_cases import CASES, Case
from support.trustkit import DAY, NOW, Chain, chain, intermediate, leaf, root

BY_ID = {c.id: c for c in CASES}


def verdict(c: Chain, profile: str) -> trust.Verdict:
    verifier = Verifier.build([r.cert for r in c.roots], profile)  # type: ignore[arg-type]
    return verifier.judge(
        c.leaf.cert, [i.cert for i in c.intermediates], c.usage, c.at, c.hostname  # type: ignore[arg-type]
    )


@pytest.mark.parametrize("profile", PROFILES)
@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_defect_classes_and_their_twins(case: Case, profile: str) -> None:
    """Each defect class is refused (with a detail naming it) and each valid twin trusted,
    as the profile requires."""
    result = verdict(case.build(), profile)
    assert result.trusted is case.expected(profile), result.detail
    if result.trusted:
        assert result.detail == "" and result.chain[0] == case.build().leaf.cert
    else:
        assert any(says in result.detail for says in case.says.split(" | ")), result.detail
        assert "\n" not in result.detail and "candidates exhausted" not in result.detail
        assert "encountered processing" not in result.detail
        assert result.detail.split()[0] in ("leaf", "intermediate", "root", "the")


def _cryptography_accepts(c: Chain) -> bool:
    """cryptography's own verifier with its Web PKI defaults, asked the same question."""
    builder = PolicyBuilder().store(Store([r.cert for r in c.roots])).time(c.at)
    offered = [i.cert for i in c.intermediates]
    try:
        if c.usage == "clientAuth":
            builder.build_client_verifier().verify(c.leaf.cert, offered)
            return True
        if c.hostname is not None:
            subject = subject_for(c.hostname)
        else:
            subject = trust._own_subject(c.leaf.cert)
        builder.build_server_verifier(subject).verify(c.leaf.cert, offered)
    except (VerificationError, ValueError):
        return False
    return True


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_never_less_strict_than_cryptography(case: Case) -> None:
    """Whatever cryptography's Web PKI verifier refuses, the webpki profile refuses too."""
    c = case.build()
    if not _cryptography_accepts(c):
        assert not verdict(c, "webpki").trusted


def test_issue_example_detail_names_both_certificates() -> None:
    """The pathLenConstraint refusal reads as the issue's example sentence."""
    detail = verdict(BY_ID["pathlen"].build(), "rfc5280").detail
    assert detail == "intermediate CN=Issuing CA 2 has pathLenConstraint 0 but issues CN=Sub CA"


@pytest.mark.parametrize("profile", PROFILES)
def test_old_builder_dead_end_is_now_found(profile: str) -> None:
    """The hand-written builder stops at the first issuer by name; the verifier tries the
    cross-signed alternative and returns the path it validated."""
    from certdrop.pki import chain as chains

    c = BY_ID["cross-signed-dead-end-first"].build()
    old = chains.build_chain(c.leaf.cert, [i.cert for i in c.intermediates],
                             chains.Anchors.from_certs([c.roots[0].cert]))
    assert not old.trusted
    result = verdict(c, profile)
    assert result.trusted
    assert result.intermediates == (c.intermediates[1].cert,)
    assert result.chain[-1] == c.roots[0].cert


def test_one_verifier_serves_many_drops_and_times() -> None:
    """A verifier is built once and judges different leaves at different times."""
    r = root()
    i = intermediate("Issuing CA", r)
    verifier = Verifier.build([r.cert])
    first, second = leaf("a.example.test", i), leaf("b.example.test", i, slot=9)
    assert verifier.judge(first.cert, [i.cert], "serverAuth", NOW).trusted
    assert verifier.judge(second.cert, [i.cert], "serverAuth", NOW, "b.example.test").trusted
    later = first.cert.not_valid_after_utc.replace(year=first.cert.not_valid_after_utc.year + 1)
    assert not verifier.judge(first.cert, [i.cert], "serverAuth", later).trusted


def test_intermediates_in_the_trust_store_are_offered_not_trusted() -> None:
    """A ca_bundle holding root and intermediate completes a drop that lacks the
    intermediate; the intermediate alone anchors nothing."""
    c = chain()
    both = Verifier.build([c.roots[0].cert, c.intermediates[0].cert])
    assert both.judge(c.leaf.cert, [], "serverAuth", NOW).trusted
    alone = Verifier.build([c.intermediates[0].cert])
    result = alone.judge(c.leaf.cert, [], "serverAuth", NOW)
    assert not result.trusted and "no trusted root" in result.detail


def test_unknown_profile_is_refused() -> None:
    """A profile name outside PROFILES is a programming error, said plainly."""
    with pytest.raises(ValueError, match="unknown trust profile"):
        Verifier.build([root().cert], "strict")  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("hostname", "expected"),
    [
        ("10.0.0.1", x509.IPAddress(ipaddress.ip_address("10.0.0.1"))),
        ("[2001:db8::1]", x509.IPAddress(ipaddress.ip_address("2001:db8::1"))),
        ("Bücher.Example.test.", x509.DNSName("xn--bcher-kva.example.test")),
        ("MAIL.example.test", x509.DNSName("mail.example.test")),
    ],
)
def test_hostnames_become_verifier_subjects(hostname: str, expected: x509.GeneralName) -> None:
    """IP literals become IPAddress subjects; names go through IDNA UTS 46 to A-labels."""
    assert subject_for(hostname) == expected


@pytest.mark.parametrize("hostname", ["", "a..b", "under_score.test", "x" * 64 + ".test"])
def test_bad_hostnames_are_refused_with_a_sentence(hostname: str) -> None:
    """A hostname that is no name refuses the verdict instead of raising."""
    c = chain()
    result = Verifier.build([c.roots[0].cert]).judge(
        c.leaf.cert, [c.intermediates[0].cert], "serverAuth", NOW, hostname
    )
    assert not result.trusted and "is neither an IP address nor a valid domain name" in result.detail


@pytest.mark.parametrize(
    ("name", "bad"),
    [
        ("www.example.test", False),
        ("*.example.test", False),
        ("xn--bcher-kva.example.test", False),
        ("*.github.io", False),  # a private-section suffix: its owner may hold the wildcard
        ("*.corp", True),  # an unlisted TLD is a public suffix by the list's default rule
        ("*.example", True),
        ("xn--a.example.test", True),  # not valid punycode
        ("a" * 64 + ".test", True),
        ("::1", True),
    ],
)
def test_dns_name_rules(name: str, bad: bool) -> None:
    """The dNSName syntax and public-suffix rules accept real names and refuse the rest."""
    assert (dns_name_problem(name, public_suffix_list()) is not None) is bad


def test_no_roots_is_a_refusal_not_a_crash() -> None:
    """An empty trust store (unreadable bundle) refuses every leaf with a sentence."""
    c = chain()
    result = Verifier.build([]).judge(c.leaf.cert, [], "serverAuth", NOW)
    assert not result.trusted and "trust.ca_bundle" in result.detail


@pytest.mark.parametrize(
    ("eku", "trusted", "says"),
    [
        ((EKU.SERVER_AUTH,), True, ""),
        ((EKU.CLIENT_AUTH,), True, ""),
        ((EKU.CODE_SIGNING,), False, "is not for serverAuth"),
    ],
)
def test_judge_any_trusts_a_leaf_good_for_some_usage(
    eku: tuple[x509.ObjectIdentifier, ...], trusted: bool, says: str
) -> None:
    """Intake's verdict: trusted when serverAuth or clientAuth is; else the server reason."""
    c = chain(leaf_knobs={"eku": eku})
    result = Verifier.build([c.roots[0].cert]).judge_any(
        c.leaf.cert, [c.intermediates[0].cert], NOW
    )
    assert result.trusted is trusted and says in result.detail


def test_judge_any_explains_a_client_certificate_by_its_client_refusal() -> None:
    """A clientAuth-only leaf that fails is explained by why clientAuth failed."""
    c = chain(leaf_knobs={"eku": (EKU.CLIENT_AUTH,)},
              root_knobs={"not_before": NOW - 400 * DAY, "not_after": NOW - DAY})
    result = Verifier.build([c.roots[0].cert]).judge_any(
        c.leaf.cert, [c.intermediates[0].cert], NOW
    )
    assert not result.trusted and "root CN=Trust Root expired" in result.detail


def _judged_for(sans: tuple[str, ...], host: str) -> bool:
    c = chain(cn=sans[0].removeprefix("dns:"), leaf_knobs={"sans": list(sans)})
    verifier = Verifier.build([c.roots[0].cert])
    return verifier.judge(c.leaf.cert, [c.intermediates[0].cert], "serverAuth", NOW, host).trusted


@pytest.mark.parametrize(
    ("sans", "host", "expected"),
    [
        (("www.example.com",), "www.example.com", True),
        (("www.example.com",), "WWW.Example.COM", True),
        (("www.example.com",), "www.example.com.", True),
        (("www.example.com",), "example.com", False),
        (("www.example.com",), "wwww.example.com", False),
        (("a.example.com", "b.example.com"), "b.example.com", True),
        (("*.example.com",), "www.example.com", True),
        (("*.example.com",), "API.EXAMPLE.COM", True),
        (("*.example.com",), "a.b.example.com", False),
        (("*.example.com",), "example.com", False),
        (("*.example.com",), "wwwexample.com", False),
        (("*.example.com",), "www.example.org", False),
        (("192.0.2.10",), "192.0.2.10", True),
        (("192.0.2.10",), "192.0.2.11", False),
        (("2001:db8::10",), "2001:DB8:0::10", True),
    ],
)
def test_hostnames_are_matched_by_the_verifier(
    sans: tuple[str, ...], host: str, expected: bool
) -> None:
    """Names match exactly (case and a trailing dot aside) or one label by wildcard; an IP
    address matches an iPAddress SAN as an address, not as text."""
    assert _judged_for(sans, host) is expected


_LABEL = st.from_regex(r"[a-z0-9]([a-z0-9-]{0,10}[a-z0-9])?", fullmatch=True).filter(
    lambda label: "--" not in label
)


@settings(max_examples=25, deadline=None, database=None)
@given(st.lists(_LABEL, min_size=1, max_size=2), _LABEL, _LABEL)
def test_wildcard_covers_exactly_one_label(base: list[str], one: str, two: str) -> None:
    """*.D covers X.D for any single label X, but never D itself nor X.Y.D."""
    domain = ".".join([*base, "example", "test"])
    c = chain(cn=f"*.{domain}")
    verifier = Verifier.build([c.roots[0].cert])

    def trusted(host: str) -> bool:
        offered = [c.intermediates[0].cert]
        return verifier.judge(c.leaf.cert, offered, "serverAuth", NOW, host).trusted

    assert trusted(f"{one}.{domain}")
    assert not trusted(domain)
    assert not trusted(f"{one}.{two}.{domain}")
