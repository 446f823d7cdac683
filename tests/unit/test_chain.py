"""Tests for certdrop.pki.chain and certdrop.pki.assemble: ordering, trust and policy."""

from __future__ import annotations

import datetime as dt
import functools
import time

import pytest
import trustme
from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import padding, rsa
from cryptography.x509.oid import NameOID
from hypothesis import given, settings
from hypothesis import strategies as st

from certdrop.errors import Rejection
from certdrop.pki import assemble, chain
from certdrop.pki.chain import MAX_DEPTH, Anchors, build_chain, describe_name
from certdrop.pki.parse import Parsed
from certdrop.pki.trust import Verifier
from support.pkitools import NOW, Hierarchy, Issued, ec_key, hierarchy, issue, rsa_key

DAY = dt.timedelta(days=1)
QUICK = settings(max_examples=60, deadline=None, database=None)


@functools.cache
def deep() -> Hierarchy:
    """root -> I0 -> I1 -> I2 -> leaf."""
    return hierarchy("deep.example.test", depth=3, slot=2)


def issuing_order(h: Hierarchy) -> tuple[x509.Certificate, ...]:
    """The intermediates from the leaf's issuer up to the root's child."""
    return tuple(i.cert for i in reversed(h.intermediates))


def check(
    leaf: x509.Certificate,
    candidates: list[x509.Certificate],
    anchors: Anchors = chain.NO_ANCHORS,
    now: dt.datetime = NOW,
) -> Rejection:
    with pytest.raises(Rejection) as caught:
        roots = [c for group in anchors.by_subject.values() for c in group]
        assemble.check_certificate(leaf, candidates, Verifier.build(roots), now)
    return caught.value


# --- build_chain ------------------------------------------------------------------------


@QUICK
@given(st.permutations(range(4)))
def test_any_permutation_is_ordered_back(order: list[int]) -> None:
    """Three intermediates and the root, in any order, come back in issuing order."""
    h = deep()
    pool = [*(i.cert for i in h.intermediates), h.root.cert]
    built = build_chain(h.leaf.cert, [pool[i] for i in order])
    assert built.intermediates == issuing_order(h)
    assert built.broken is None


def test_duplicates_collapse() -> None:
    """The same intermediate dropped several times (even as distinct objects) appears once."""
    h = deep()
    copies = [x509.load_der_x509_certificate(i.der) for i in h.intermediates]
    pool = [*(i.cert for i in h.intermediates), *copies, h.leaf.cert, h.intermediates[1].cert]
    built = build_chain(h.leaf.cert, pool)
    assert built.intermediates == issuing_order(h)


def test_unrelated_ca_certificates_are_ignored() -> None:
    """CA certificates of other hierarchies in the drop stay out of the chain."""
    h, other = deep(), hierarchy("other.example.test", depth=2, slot=3)
    stranger = x509.load_pem_x509_certificate(trustme.CA().cert_pem.bytes())
    pool = [
        other.root.cert,
        *(i.cert for i in other.intermediates),
        stranger,
        *(i.cert for i in h.intermediates),
        other.leaf.cert,
    ]
    built = build_chain(h.leaf.cert, pool)
    assert built.intermediates == issuing_order(h)
    assert built.broken is None


def test_self_signed_root_is_left_out_of_the_bundle() -> None:
    """An untrusted self-signed root ends the chain and is not in the bundle."""
    h = deep()
    built = build_chain(h.leaf.cert, [h.root.cert, *(i.cert for i in h.intermediates)])
    assert built.bundle == (h.leaf.cert, *issuing_order(h))
    assert h.root.cert not in built.bundle
    assert built.root is None and not built.trusted


def test_self_signed_leaf_is_a_chain_of_one() -> None:
    """A self-signed leaf builds a chain of itself alone, untrusted."""
    selfsigned = issue("self.example.test", rsa_key(0), sans=["self.example.test"])
    built = build_chain(selfsigned.cert, [selfsigned.cert])
    assert built.bundle == (selfsigned.cert,) and not built.trusted and built.broken is None


@pytest.mark.parametrize("root_in_drop", [False, True])
def test_chain_stops_at_a_trusted_anchor(root_in_drop: bool) -> None:
    """A chain ending at a root in Anchors is trusted, and the root is not in the bundle."""
    h = deep()
    pool = [*(i.cert for i in h.intermediates), *([h.root.cert] if root_in_drop else [])]
    built = build_chain(h.leaf.cert, pool, Anchors.from_certs([h.root.cert]))
    assert built.root == h.root.cert and built.trusted
    assert built.intermediates == issuing_order(h)


def test_chain_stops_at_the_first_trusted_certificate() -> None:
    """When an intermediate itself is trusted the chain ends there."""
    h = deep()
    pool = [h.root.cert, *(i.cert for i in h.intermediates)]
    built = build_chain(h.leaf.cert, pool, Anchors.from_certs([h.intermediates[1].cert]))
    assert built.root == h.intermediates[1].cert and built.trusted
    assert built.intermediates == (h.intermediates[2].cert,)


def test_anchor_with_the_right_name_but_another_key_is_not_trust() -> None:
    """A trusted root that shares the issuer's name but not its key does not vouch."""
    h = deep()
    impostor = issue("Root 2", ec_key(7), ca=True)
    assert impostor.cert.subject == h.root.cert.subject
    pool = [i.cert for i in h.intermediates]
    built = build_chain(h.leaf.cert, pool, Anchors.from_certs([impostor.cert]))
    assert not built.trusted and built.root is None


def impostor_of(real: Issued, parent: Issued) -> Issued:
    """A CA with ``real``'s exact name but its own key."""
    return issue("", ec_key(9), parent, ca=True, subject_name=real.cert.subject)


def test_issuer_with_right_name_but_wrong_key_is_broken() -> None:
    """An issuer present by name whose key did not sign the leaf makes the chain broken."""
    h = deep()
    fake = impostor_of(h.intermediates[2], h.intermediates[1])
    pool = [fake.cert, h.intermediates[1].cert, h.intermediates[0].cert]
    built = build_chain(h.leaf.cert, pool, Anchors.from_certs([h.root.cert]))
    assert built.broken == describe_name(h.leaf.cert.subject)
    assert not built.trusted
    err = check(h.leaf.cert, pool, Anchors.from_certs([h.root.cert]))
    assert err.code == "chain_invalid"
    assert "deep.example.test" in err.reason


@QUICK
@given(st.permutations(range(4)))
def test_real_issuer_wins_over_a_namesake(order: list[int]) -> None:
    """With the real issuer and an impostor of the same name, the real one is chosen."""
    h = deep()
    fake = impostor_of(h.intermediates[2], h.intermediates[1])
    pool = [fake.cert, *(i.cert for i in h.intermediates)]
    built = build_chain(h.leaf.cert, [pool[i] for i in order], Anchors.from_certs([h.root.cert]))
    assert built.trusted and built.intermediates == issuing_order(h)


@functools.cache
def cross_signed() -> tuple[Issued, Issued, Issued]:
    """CA A signed by B and CA B signed by A (a loop), and a leaf issued by A."""
    a_self = issue("Loop CA A", ec_key(11), ca=True)
    b_self = issue("Loop CA B", ec_key(12), ca=True)
    a_by_b = issue("Loop CA A", ec_key(11), b_self, ca=True)
    b_by_a = issue("Loop CA B", ec_key(12), a_self, ca=True)
    leaf = issue("loop.example.test", rsa_key(0), a_by_b, sans=["loop.example.test"])
    return a_by_b, b_by_a, leaf


@pytest.mark.timeout(10)
def test_cross_signing_loop_ends() -> None:
    """Two CAs that sign each other end the walk instead of looping forever."""
    a_by_b, b_by_a, leaf = cross_signed()
    built = build_chain(leaf.cert, [b_by_a.cert, a_by_b.cert, b_by_a.cert])
    assert built.intermediates == (a_by_b.cert, b_by_a.cert)
    assert built.broken is None and not built.trusted


@functools.cache
def tall(depth: int) -> Hierarchy:
    return hierarchy(f"tall{depth}.example.test", depth=depth, slot=10 + depth, leaf_key=rsa_key(0))


@pytest.mark.timeout(10)
def test_chain_deeper_than_max_depth_stops() -> None:
    """A chain deeper than MAX_DEPTH stops at MAX_DEPTH intermediates and is not trusted."""
    h = tall(MAX_DEPTH + 3)
    pool = [i.cert for i in h.intermediates]
    started = time.monotonic()
    built = build_chain(h.leaf.cert, pool, Anchors.from_certs([h.root.cert]))
    assert time.monotonic() - started < 2
    assert len(built.intermediates) == MAX_DEPTH
    assert built.broken is not None and "too deep" in built.broken
    assert not built.trusted
    assert check(h.leaf.cert, pool, Anchors.from_certs([h.root.cert])).code == "chain_invalid"


@pytest.mark.parametrize("trusted_root", [True, False])
def test_chain_of_exactly_max_depth_is_whole(trusted_root: bool) -> None:
    """MAX_DEPTH intermediates still reach their root, trusted or dropped with them."""
    h = tall(MAX_DEPTH)
    pool = [i.cert for i in h.intermediates]
    anchors = Anchors.from_certs([h.root.cert]) if trusted_root else chain.NO_ANCHORS
    if not trusted_root:
        pool.append(h.root.cert)
    built = build_chain(h.leaf.cert, pool, anchors)
    assert built.intermediates == issuing_order(h)
    assert built.broken is None
    assert built.trusted is trusted_root


def test_chain_one_deeper_than_max_depth_is_too_deep() -> None:
    """MAX_DEPTH + 1 intermediates are refused as too deep, even towards a trusted root."""
    h = tall(MAX_DEPTH + 1)
    built = build_chain(
        h.leaf.cert, [i.cert for i in h.intermediates], Anchors.from_certs([h.root.cert])
    )
    assert built.broken is not None and "too deep" in built.broken


def test_check_certificate_accepts_a_good_chain() -> None:
    """A valid, well-signed, trusted chain passes check_certificate and comes back ordered."""
    h = deep()
    checked = assemble.check_certificate(
        h.leaf.cert, [i.cert for i in h.intermediates], Verifier.build([h.root.cert]), NOW
    )
    assert checked.verdict.trusted and checked.chain.intermediates == issuing_order(h)


# --- validity ---------------------------------------------------------------------------


def test_validity_window_edges() -> None:
    """A certificate is valid from not_before to not_after, both inclusive (RFC 5280)."""
    start, end = NOW - 10 * DAY, NOW + 10 * DAY
    cert = issue("edge.example.test", ec_key(0), not_before=start, not_after=end).cert
    assert chain.validity_problem(cert, start) is None
    assert chain.validity_problem(cert, end) is None
    assert code_of(chain.validity_problem(cert, end + dt.timedelta(seconds=1))) == "expired"
    assert code_of(chain.validity_problem(cert, start - dt.timedelta(seconds=1))) == "not_yet_valid"


def code_of(problem: tuple[str, str] | None) -> str | None:
    return None if problem is None else problem[0]


@pytest.mark.parametrize(
    ("not_before", "not_after", "code"),
    [(-100 * DAY, -1 * DAY, "expired"), (1 * DAY, 100 * DAY, "not_yet_valid")],
)
def test_leaf_outside_its_validity_is_refused(
    not_before: dt.timedelta, not_after: dt.timedelta, code: str
) -> None:
    """An expired or not yet valid leaf is refused with the matching code and its name."""
    h = hierarchy(
        "when.example.test", slot=4, not_before=NOW + not_before, not_after=NOW + not_after
    )
    err = check(h.leaf.cert, [h.intermediates[0].cert], Anchors.from_certs([h.root.cert]))
    assert err.code == code
    assert "when.example.test" in err.reason


def test_expired_intermediate_is_refused() -> None:
    """A valid leaf under an expired intermediate is refused as expired, naming the CA."""
    root = issue("Old Root", ec_key(20), ca=True)
    old = issue("Old Intermediate", ec_key(21), root, ca=True,
                not_before=NOW - 400 * DAY, not_after=NOW - DAY)  # fmt: skip
    leaf = issue("fresh.example.test", rsa_key(0), old, sans=["fresh.example.test"])
    err = check(leaf.cert, [old.cert], Anchors.from_certs([root.cert]))
    assert err.code == "expired"
    assert "Old Intermediate" in err.reason


# --- signatures and keys ----------------------------------------------------------------

_RSA_SIG_OIDS = {
    "sha256": bytes.fromhex("06092a864886f70d01010b"),
    "sha1": bytes.fromhex("06092a864886f70d010105"),
    "md5": bytes.fromhex("06092a864886f70d010104"),
}


def _der(tag: int, body: bytes) -> bytes:
    size = len(body)
    if size < 0x80:
        return bytes([tag, size]) + body
    octets = size.to_bytes((size.bit_length() + 7) // 8, "big")
    return bytes([tag, 0x80 | len(octets)]) + octets + body


def resigned(issued: Issued, issuer: Issued, algorithm: str) -> x509.Certificate:
    """``issued`` re-signed with MD5 or SHA-1, which cryptography's builder refuses to do."""
    signer = issuer.key
    assert isinstance(signer, rsa.RSAPrivateKey)
    tbs = issued.cert.tbs_certificate_bytes
    assert _RSA_SIG_OIDS["sha256"] in tbs
    tbs = tbs.replace(_RSA_SIG_OIDS["sha256"], _RSA_SIG_OIDS[algorithm])
    chosen = hashes.SHA1() if algorithm == "sha1" else hashes.MD5()
    signature = signer.sign(tbs, padding.PKCS1v15(), chosen)
    outer = _der(0x30, _RSA_SIG_OIDS[algorithm] + b"\x05\x00")
    return x509.load_der_x509_certificate(_der(0x30, tbs + outer + _der(0x03, b"\0" + signature)))


@functools.cache
def rsa_ca() -> Issued:
    return issue("RSA Root", rsa_key(5), ca=True)


@pytest.mark.parametrize("algorithm", ["sha1", "md5"])
@pytest.mark.parametrize("issuer_in_drop", [True, False])
def test_weakly_signed_leaf_is_weak_signature(algorithm: str, issuer_in_drop: bool) -> None:
    """A leaf signed with SHA-1 or MD5 is weak_signature, with or without its issuer."""
    ca = rsa_ca()
    leaf = issue("old.example.test", rsa_key(0), ca, sans=["old.example.test"])
    weak = resigned(leaf, ca, algorithm)
    assert weak.signature_hash_algorithm is not None
    assert weak.signature_hash_algorithm.name == algorithm
    err = check(weak, [ca.cert] if issuer_in_drop else [], Anchors.from_certs([ca.cert]))
    assert err.code == "weak_signature"
    assert algorithm.upper() in err.reason and "old.example.test" in err.reason


def test_weakly_signed_intermediate_is_weak_signature() -> None:
    """A SHA-1-signed intermediate under a trusted root is weak_signature, naming it."""
    ca = rsa_ca()
    middle = issue("SHA1 Intermediate", rsa_key(6), ca, ca=True)
    weak_middle = resigned(middle, ca, "sha1")
    leaf = issue("mid.example.test", ec_key(0), middle, sans=["mid.example.test"])
    err = check(leaf.cert, [weak_middle], Anchors.from_certs([ca.cert]))
    assert err.code == "weak_signature"
    assert "SHA1 Intermediate" in err.reason


def test_unknown_signature_algorithm_is_a_rejection() -> None:
    """A signature OID cryptography does not know is refused, not an UnsupportedAlgorithm."""
    ecdsa_sha256 = bytes.fromhex("06082a8648ce3d040302")
    der = deep().leaf.der
    assert der.count(ecdsa_sha256) == 2
    odd = x509.load_der_x509_certificate(der.replace(ecdsa_sha256, ecdsa_sha256[:-1] + b"\x09"))
    assert chain.signature_problem([odd]) is not None
    assert check(odd, []).code == "weak_signature"


@functools.cache
def rsa_1024() -> rsa.RSAPrivateKey:
    return rsa.generate_private_key(65537, 1024)


def test_rsa_1024_leaf_is_weak_key() -> None:
    """A certificate for a 1024-bit RSA key is weak_key, before anything else is looked at."""
    h = hierarchy("small.example.test", leaf_key=rsa_1024(), slot=5)
    err = check(h.leaf.cert, [h.intermediates[0].cert], Anchors.from_certs([h.root.cert]))
    assert err.code == "weak_key"
    assert "1024" in err.reason


def test_rsa_1024_private_key_is_weak_key() -> None:
    """A dropped 1024-bit RSA private key is weak_key; a 2048-bit one passes."""
    with pytest.raises(Rejection) as caught:
        assemble.check_key(rsa_1024())
    assert caught.value.code == "weak_key"
    assemble.check_key(rsa_key(0))


# --- describe_name ----------------------------------------------------------------------


def cn(value: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, value)])


def test_describe_name_escapes_ansi_and_control_characters() -> None:
    """ANSI escapes, newlines and NULs in a CN come out as visible \\x escapes."""
    text = describe_name(cn("\x1b[31mevil\x1b[0m\nFAKE LOG LINE\r\x00\x7f"))
    assert text.isprintable()
    assert "\x1b" not in text and "\n" not in text and "\r" not in text
    assert "\\x1b[31mevil" in text and "\\x0aFAKE LOG LINE" in text


def test_describe_name_escapes_bidi_overrides() -> None:
    """A right-to-left override (U+202E) cannot reorder the text a person reads."""
    text = describe_name(cn("moc.elgoog\u202eexample.test"))
    assert "\u202e" not in text and text.isprintable()


@QUICK
@given(st.text(st.characters(exclude_categories=["Cs"]), min_size=1, max_size=16))
def test_describe_name_is_always_printable(value: str) -> None:
    """Whatever a CN holds (up to its 64 UTF-8 bytes), describe_name gives one printable line."""
    assert describe_name(cn(value)).isprintable()


def test_rejection_reason_for_hostile_cn_is_printable() -> None:
    """A refused certificate with an ANSI escape in its CN gets a printable reason."""
    root = issue("Root ANSI", ec_key(30), ca=True)
    hostile = issue("x", rsa_key(0), root, subject_name=cn("\x1b[2Jboom\n"),
                    not_after=NOW - DAY, not_before=NOW - 2 * DAY)  # fmt: skip
    err = check(hostile.cert, [], Anchors.from_certs([root.cert]))
    assert err.code == "expired" and err.reason.isprintable()


# --- assemble ---------------------------------------------------------------------------


def test_sort_pieces_splits_leaves_from_authorities() -> None:
    """CA certificates are authorities; a CA whose key came along is a leaf; repeats collapse."""
    h = deep()
    ca = h.intermediates[0]
    pieces = assemble.sort_pieces(
        Parsed(certs=(h.leaf.cert, h.root.cert, h.leaf.cert, ca.cert), keys=(h.leaf.key,))
    )
    assert pieces.leaves == (h.leaf.cert,)
    assert pieces.authorities == (h.root.cert, ca.cert)
    with_key = assemble.sort_pieces(Parsed(certs=(ca.cert,), keys=(ca.key,)))
    assert with_key.leaves == (ca.cert,) and with_key.authorities == ()


def test_single_mismatched_pair_is_key_mismatch() -> None:
    """One certificate and one key that do not belong together is key_mismatch."""
    h = deep()
    assemble.check_single_pair(assemble.sort_pieces(Parsed((h.leaf.cert,), (h.leaf.key,))))
    with pytest.raises(Rejection) as caught:
        assemble.check_single_pair(assemble.sort_pieces(Parsed((h.leaf.cert,), (rsa_key(1),))))
    assert caught.value.code == "key_mismatch"


def test_check_possession() -> None:
    """The leaf's own key passes check_possession; another key is key_mismatch."""
    h = deep()
    assemble.check_possession(h.leaf.cert, h.leaf.key)
    with pytest.raises(Rejection) as caught:
        assemble.check_possession(h.leaf.cert, rsa_key(1))
    assert caught.value.code == "key_mismatch"


def test_describe_lists_status_fields() -> None:
    """describe gives the inventory fields of a certificate, with no key material."""
    h = deep()
    info = assemble.describe(h.leaf.cert)
    assert info["sha256"] == h.leaf.sha256
    assert info["sans"] == ["deep.example.test"]
    assert info["key_type"] == "RSA" and info["key_bits"] == 2048
    assert info["subject"] == "CN=deep.example.test,O=certdrop tests"
    assert info["not_after"].endswith("Z")
