"""Tests for certdrop.pki.keys: key identity, proof of possession, policy and PEM form."""

from __future__ import annotations

import functools
from collections.abc import Callable

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa
from hypothesis import given, settings
from hypothesis import strategies as st

from certdrop.pki import keys
from certdrop.pki.keys import KeyInfo, cert_key_id, key_id, proves_possession, to_pem
from support.pkitools import Issued, ec_key, issue, rsa_key

PEM = serialization.Encoding.PEM
TRADITIONAL = serialization.PrivateFormat.TraditionalOpenSSL


@functools.cache
def cert_for(kind: str, slot: int = 0) -> Issued:
    """A self-signed certificate for the cached key of that kind and slot."""
    key: keys.PrivateKey
    if kind == "rsa":
        key = rsa_key(slot)
    else:
        key = ec_key(slot, "secp384r1" if kind == "p384" else "secp256r1")
    return issue(f"{kind}-{slot}.example.test", key)


KINDS = ["rsa", "p256", "p384"]


# --- proves_possession ------------------------------------------------------------------


@pytest.mark.parametrize("kind", KINDS)
def test_matching_key_proves_possession(kind: str) -> None:
    """A key proves possession of the public key in its own certificate."""
    issued = cert_for(kind)
    assert proves_possession(issued.key, issued.cert.public_key())


@pytest.mark.parametrize("kind", KINDS)
def test_other_key_of_the_same_type_does_not(kind: str) -> None:
    """Another key of the same type and size does not prove possession."""
    assert not proves_possession(cert_for(kind, 1).key, cert_for(kind, 0).cert.public_key())


@pytest.mark.parametrize(("key_kind", "cert_kind"), [("rsa", "p256"), ("p256", "rsa")])
def test_key_of_another_type_does_not(key_kind: str, cert_kind: str) -> None:
    """An RSA key never proves an EC certificate, nor the other way round."""
    assert not proves_possession(cert_for(key_kind).key, cert_for(cert_kind).cert.public_key())


@pytest.mark.parametrize(("key_kind", "cert_kind"), [("p256", "p384"), ("p384", "p256")])
def test_key_on_another_curve_does_not(key_kind: str, cert_kind: str) -> None:
    """An EC key on one curve never proves a public key on another."""
    assert not proves_possession(cert_for(key_kind).key, cert_for(cert_kind).cert.public_key())


@pytest.mark.parametrize(
    "public",
    [None, b"not a key", ed25519.Ed25519PrivateKey.generate().public_key()],
    ids=["none", "bytes", "ed25519"],
)
def test_unsupported_public_key_does_not(public: object) -> None:
    """Anything but an RSA or EC public key is not proven, and raises nothing."""
    assert not proves_possession(rsa_key(0), public)
    assert not proves_possession(ec_key(0), public)


@settings(max_examples=40, deadline=None, database=None)
@given(st.sampled_from([(k, s) for k in KINDS for s in (0, 1)]), st.data())
def test_possession_holds_exactly_for_the_same_key(
    mine: tuple[str, int], data: st.DataObject
) -> None:
    """Among RSA, P-256 and P-384 keys, a key proves only its own certificate's public key."""
    theirs = data.draw(st.sampled_from([(k, s) for k in KINDS for s in (0, 1)]))
    public = cert_for(*theirs).cert.public_key()
    assert proves_possession(cert_for(*mine).key, public) is (mine == theirs)


# --- damaged RSA keys -------------------------------------------------------------------


def _der(tag: int, body: bytes) -> bytes:
    size = len(body)
    if size < 0x80:
        return bytes([tag, size]) + body
    octets = size.to_bytes((size.bit_length() + 7) // 8, "big")
    return bytes([tag, 0x80 | len(octets)]) + octets + body


def pkcs1_der(numbers: rsa.RSAPrivateNumbers, **changes: int) -> bytes:
    """PKCS#1 RSAPrivateKey DER, written by hand so that any field can be wrong."""
    fields = {
        "n": numbers.public_numbers.n,
        "e": numbers.public_numbers.e,
        "d": numbers.d,
        "p": numbers.p,
        "q": numbers.q,
        "dmp1": numbers.dmp1,
        "dmq1": numbers.dmq1,
        "iqmp": numbers.iqmp,
    } | changes
    ints = [0, *fields.values()]
    return _der(
        0x30, b"".join(_der(0x02, v.to_bytes(v.bit_length() // 8 + 1, "big")) for v in ints)
    )


def test_hand_written_pkcs1_matches_cryptography() -> None:
    """The hand-written PKCS#1 encoder used below gives cryptography's own bytes."""
    key = rsa_key(0)
    expected = key.private_bytes(
        serialization.Encoding.DER, TRADITIONAL, serialization.NoEncryption()
    )
    assert pkcs1_der(key.private_numbers()) == expected


def loaded_pkcs1_pem(numbers: rsa.RSAPrivateNumbers) -> rsa.RSAPrivateKey:
    """Through PKCS#1 PEM and back, skipping the RSA check as intake does."""
    key = numbers.private_key(unsafe_skip_rsa_key_validation=True)
    pem = key.private_bytes(PEM, TRADITIONAL, serialization.NoEncryption())
    assert pem.startswith(b"-----BEGIN RSA PRIVATE KEY-----")
    loaded = serialization.load_pem_private_key(pem, None, unsafe_skip_rsa_key_validation=True)
    assert isinstance(loaded, rsa.RSAPrivateKey)
    return loaded


def test_whole_key_round_trip_proves_possession() -> None:
    """The undamaged key, through the same PKCS#1 round trip, still proves possession."""
    key = rsa_key(0)
    assert proves_possession(loaded_pkcs1_pem(key.private_numbers()), key.public_key())


@pytest.mark.parametrize("field", ["dmp1", "dmq1", "iqmp", "d"])
def test_damaged_crt_value_fails_possession(field: str) -> None:
    """A PKCS#1 key with one wrong CRT value (or d) fails, though OpenSSL still signs with it."""
    key = rsa_key(0)
    numbers = key.private_numbers()
    values = {
        "p": numbers.p,
        "q": numbers.q,
        "d": numbers.d,
        "dmp1": numbers.dmp1,
        "dmq1": numbers.dmq1,
        "iqmp": numbers.iqmp,
    }
    values[field] += 2
    broken = rsa.RSAPrivateNumbers(public_numbers=numbers.public_numbers, **values)
    assert not proves_possession(loaded_pkcs1_pem(broken), key.public_key())


@pytest.mark.parametrize("field", ["p", "q"])
def test_altered_prime_fails_possession(field: str) -> None:
    """A PKCS#1 key whose prime p or q was altered in the file fails possession."""
    key = rsa_key(0)
    numbers = key.private_numbers()
    altered = getattr(numbers, field) + 2
    der = pkcs1_der(numbers, **{field: altered})
    loaded = serialization.load_der_private_key(der, None, unsafe_skip_rsa_key_validation=True)
    assert isinstance(loaded, rsa.RSAPrivateKey)
    assert getattr(loaded.private_numbers(), field) == altered
    assert not proves_possession(loaded, key.public_key())


def test_damaged_key_is_refused_by_cryptographys_full_check() -> None:
    """cryptography's slow RSA check agrees that the damaged key is bad."""
    numbers = rsa_key(0).private_numbers()
    broken = rsa.RSAPrivateNumbers(
        numbers.p, numbers.q, numbers.d, numbers.dmp1 + 2, numbers.dmq1, numbers.iqmp,
        numbers.public_numbers,
    )  # fmt: skip
    with pytest.raises(ValueError):
        broken.private_key()


# --- to_pem -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("kind", "fmt", "label"),
    [
        ("rsa", "pkcs1", b"RSA PRIVATE KEY"),
        ("p256", "pkcs1", b"EC PRIVATE KEY"),
        ("p384", "pkcs1", b"EC PRIVATE KEY"),
        ("rsa", "pkcs8", b"PRIVATE KEY"),
        ("p256", "pkcs8", b"PRIVATE KEY"),
    ],
)
def test_to_pem_writes_the_configured_form(kind: str, fmt: str, label: bytes) -> None:
    """pkcs1 is BEGIN RSA/EC PRIVATE KEY, pkcs8 is BEGIN PRIVATE KEY, unencrypted, same key."""
    key = cert_for(kind).key
    pem = to_pem(key, fmt)
    assert pem.startswith(b"-----BEGIN " + label + b"-----\n")
    assert pem.rstrip().endswith(b"-----END " + label + b"-----")
    assert b"ENCRYPTED" not in pem
    assert key_id(keys.load_pem(pem).public_key()) == key_id(key.public_key())


def test_to_pem_defaults_to_pkcs1() -> None:
    """Without a format, to_pem writes the traditional form."""
    assert to_pem(rsa_key(0)).startswith(b"-----BEGIN RSA PRIVATE KEY-----")


def test_load_pem_refuses_other_key_types() -> None:
    """load_pem raises TypeError for a stored key that is neither RSA nor EC."""
    pem = ed25519.Ed25519PrivateKey.generate().private_bytes(
        PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    with pytest.raises(TypeError):
        keys.load_pem(pem)


# --- key_id -----------------------------------------------------------------------------


@pytest.mark.parametrize("kind", KINDS)
def test_key_id_of_a_key_equals_that_of_its_certificate(kind: str) -> None:
    """A private key's public half and its certificate share one key id."""
    issued = cert_for(kind)
    assert key_id(issued.key.public_key()) == key_id(issued.cert.public_key())
    assert cert_key_id(issued.cert) == key_id(issued.key.public_key())
    assert len(key_id(issued.key.public_key())) == 64


def test_key_ids_differ_between_keys() -> None:
    """Different keys have different key ids."""
    ids = {key_id(cert_for(k, s).key.public_key()) for k in KINDS for s in (0, 1)}
    assert len(ids) == 6


def test_key_id_of_a_private_key_is_a_type_error() -> None:
    """key_id takes public keys only; a private key is a TypeError, not a silent id."""
    with pytest.raises(TypeError):
        key_id(rsa_key(0))


def test_cert_key_id_of_an_unsupported_key_is_none() -> None:
    """A certificate for an Ed25519 key has no certdrop key id."""
    signer = ec_key(0)
    cert = (
        x509.CertificateBuilder()
        .subject_name(cert_for("p256").cert.subject)
        .issuer_name(cert_for("p256").cert.subject)
        .public_key(ed25519.Ed25519PrivateKey.generate().public_key())
        .serial_number(1)
        .not_valid_before(cert_for("p256").cert.not_valid_before_utc)
        .not_valid_after(cert_for("p256").cert.not_valid_after_utc)
        .sign(signer, hashes.SHA256())
    )
    assert cert_key_id(cert) is None


# --- policy -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("key", "info"),
    [
        (lambda: rsa_key(0), KeyInfo("RSA", 2048)),
        (lambda: ec_key(0), KeyInfo("EC", 256)),
        (lambda: ec_key(0, "secp384r1"), KeyInfo("EC", 384)),
    ],
    ids=["rsa2048", "p256", "p384"],
)
def test_describe_and_accept_good_keys(key: Callable[[], keys.PrivateKey], info: KeyInfo) -> None:
    """RSA 2048, P-256 and P-384 are described by type and size and accepted."""
    made = key()
    assert keys.describe(made) == info == keys.describe(made.public_key())
    assert info.to_json() == {"type": info.type, "bits": info.bits}
    assert keys.key_problem(made) is None


def test_rsa_1024_is_refused() -> None:
    """An RSA key under 2048 bits is refused with a reason naming its size."""
    small = rsa.generate_private_key(65537, 1024)
    problem = keys.key_problem(small)
    assert problem is not None and "1024" in problem and "2048" in problem
    assert keys.key_problem(small.public_key()) == problem


def test_unlisted_curve_is_refused() -> None:
    """An EC key on a curve outside P-256/P-384/P-521 is refused, naming the curve."""
    problem = keys.key_problem(ec.generate_private_key(ec.SECP256K1()))
    assert problem is not None and "secp256k1" in problem
