"""The pairing rules of the pure core (pki/pairing.py), alone: no inventory, no files."""

from __future__ import annotations

import itertools

import pytest

from certdrop.errors import Rejection
from certdrop.pki import keys, pairing
from certdrop.pki.assemble import Pieces
from certdrop.pki.pairing import Fate, KeySource
from support.pkitools import ec_key, issue


def test_a_key_in_the_drop_pairs_with_its_leaf_and_others_stay_loose() -> None:
    """A leaf takes the drop's key with its key id; a key no piece uses is loose."""
    mine, other = ec_key(901), ec_key(902)
    leaf = issue("paired.example", mine).cert
    plan = pairing.plan_drop(Pieces((leaf,), (), (mine, other), ()))
    ((got_leaf, got_key, kid),) = plan.leaves
    assert got_leaf == leaf and got_key is mine and kid == keys.key_id(mine.public_key())
    assert [k for k, _ in plan.loose_keys] == [other]
    assert plan.csrs == ()


def test_a_leaf_without_its_key_waits_for_one() -> None:
    """A leaf whose key is not in the drop is planned with no key (to be found or held)."""
    leaf = issue("alone.example", ec_key(903)).cert
    ((_, key, _),) = pairing.plan_drop(Pieces((leaf,), (), (), ())).leaves
    assert key is None


def test_a_csr_without_its_key_is_refused() -> None:
    """A CSR alone is useless to certdrop: csr_without_key, with what to do instead."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes

    key = ec_key(904)
    csr = (
        x509.CertificateSigningRequestBuilder()
        .subject_name(x509.Name([x509.NameAttribute(x509.NameOID.COMMON_NAME, "c.example")]))
        .sign(key, hashes.SHA256())
    )
    with pytest.raises(Rejection) as caught:
        pairing.plan_drop(Pieces((), (), (), (csr,)))
    assert caught.value.code == "csr_without_key"
    plan = pairing.plan_drop(Pieces((), (), (key,), (csr,)))
    assert [k for _, k, _ in plan.csrs] == [key] and plan.loose_keys == ()


@pytest.mark.parametrize(
    "available", [set(c) for n in range(5) for c in itertools.combinations(KeySource, n)]
)
def test_the_key_is_taken_from_the_first_source_that_has_it(available: set[KeySource]) -> None:
    """Drop, then request, then held key, then stored key; asked lazily and in that order."""
    asked: list[KeySource] = []

    def has(source: KeySource) -> bool:
        asked.append(source)
        return source in available

    chosen = pairing.key_source(has)
    expected = next((s for s in pairing.KEY_SOURCES if s in available), None)
    assert chosen == expected
    stop = pairing.KEY_SOURCES.index(expected) + 1 if expected else len(pairing.KEY_SOURCES)
    assert asked == list(pairing.KEY_SOURCES[:stop])


@pytest.mark.parametrize(
    ("held_certificate", "key_stored", "fate"),
    [
        (True, True, Fate.COMPLETES_HELD),
        (True, False, Fate.COMPLETES_HELD),
        (False, True, Fate.DUPLICATE),
        (False, False, Fate.HOLD),
    ],
)
def test_a_loose_key_completes_a_held_certificate_first(
    held_certificate: bool, key_stored: bool, fate: Fate
) -> None:
    """A waiting certificate wins; else a stored key makes a duplicate; else the key waits."""
    assert pairing.key_fate(held_certificate=held_certificate, key_stored=key_stored) is fate


@pytest.mark.parametrize(
    ("key_stored", "held_certificate", "fate"),
    [
        (True, True, Fate.DUPLICATE),
        (True, False, Fate.DUPLICATE),
        (False, True, Fate.COMPLETES_HELD),
        (False, False, Fate.REQUEST),
    ],
)
def test_a_csr_with_its_key_is_a_new_request_unless_its_key_is_known(
    key_stored: bool, held_certificate: bool, fate: Fate
) -> None:
    """A stored key makes a duplicate; a waiting certificate is completed; else a request."""
    assert pairing.csr_fate(key_stored=key_stored, held_certificate=held_certificate) is fate


def test_request_changes_names_what_the_ca_changed() -> None:
    """A request's fields against the issued certificate: an added SAN is named; unknown
    fields (None) mean no changes."""
    cert = issue("web.example", ec_key(905), sans=["web.example", "extra.example"]).cert
    asked = {
        "cn": "web.example",
        "org": "certdrop tests",
        "sans": ["web.example"],
        "key_type": "ec",
        "key_size": 256,
    }
    assert pairing.request_changes(asked, cert) == ["The CA added the SAN 'extra.example'."]
    assert pairing.request_changes(None, cert) == []
