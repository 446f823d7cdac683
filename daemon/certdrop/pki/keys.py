"""Private keys: identity, possession proof, policy and normal form. Pure functions."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from typing import TypeAlias

from cryptography import x509
from cryptography.exceptions import InvalidSignature, UnsupportedAlgorithm
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa

from certdrop.limits import Limits

PrivateKey: TypeAlias = rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey
PublicKey: TypeAlias = rsa.RSAPublicKey | ec.EllipticCurvePublicKey

MIN_RSA_BITS = 2048
ALLOWED_CURVES = frozenset({"secp256r1", "secp384r1", "secp521r1"})
_PROOF = b"certdrop pairwise consistency test"


@dataclass(frozen=True)
class KeyInfo:
    """What a person needs to know about a key: its type and size."""

    type: str
    bits: int

    def to_json(self) -> dict[str, object]:
        return {"type": self.type, "bits": self.bits}


def key_id(public_key: object) -> str:
    """The pairing identity of a key: sha256 hex of its SubjectPublicKeyInfo DER."""
    if not isinstance(public_key, rsa.RSAPublicKey | ec.EllipticCurvePublicKey):
        raise TypeError("only RSA and EC public keys have a certdrop key id")
    spki = public_key.public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    return hashlib.sha256(spki).hexdigest()


def cert_key_id(cert: x509.Certificate) -> str | None:
    """The key id of a certificate's public key, or None for key types certdrop does not handle."""
    try:
        public = cert.public_key()
    except (ValueError, UnsupportedAlgorithm):  # unparseable or unknown key in the certificate
        return None
    if isinstance(public, rsa.RSAPublicKey | ec.EllipticCurvePublicKey):
        return key_id(public)
    return None


def describe(key: PrivateKey | PublicKey) -> KeyInfo:
    """Type and size of a key, as status shows it."""
    if isinstance(key, rsa.RSAPrivateKey | rsa.RSAPublicKey):
        return KeyInfo("RSA", key.key_size)
    return KeyInfo("EC", key.curve.key_size)


def proves_possession(key: PrivateKey, public_key: object) -> bool:
    """True when ``key`` signs a message that ``public_key`` verifies.

    This pairwise-consistency test stands in for cryptography's RSA primality checks
    (~55 ms a key): at ~1 ms it proves the key is whole and belongs to the certificate.
    """
    try:
        if isinstance(key, rsa.RSAPrivateKey) and isinstance(public_key, rsa.RSAPublicKey):
            if not _rsa_consistent(key):
                return False
            signature = key.sign(_PROOF, padding.PKCS1v15(), hashes.SHA256())
            public_key.verify(signature, _PROOF, padding.PKCS1v15(), hashes.SHA256())
            return True
        if isinstance(key, ec.EllipticCurvePrivateKey) and isinstance(
            public_key, ec.EllipticCurvePublicKey
        ):
            if key.curve.name != public_key.curve.name:
                return False
            signature = key.sign(_PROOF, ec.ECDSA(hashes.SHA256()))
            public_key.verify(signature, _PROOF, ec.ECDSA(hashes.SHA256()))
            return True
    except (InvalidSignature, ValueError):
        return False
    return False


def _rsa_consistent(key: rsa.RSAPrivateKey) -> bool:
    # A signature alone cannot catch a damaged p, q or CRT value: OpenSSL checks its CRT
    # result and silently recomputes it with d, so a damaged key still signs correctly here
    # and then fails in TLS libraries without that fallback. These checks are microseconds.
    numbers = key.private_numbers()
    p, q, d = numbers.p, numbers.q, numbers.d
    return (
        p > 1
        and q > 1
        and p * q == numbers.public_numbers.n
        and numbers.dmp1 == d % (p - 1)
        and numbers.dmq1 == d % (q - 1)
        and numbers.iqmp * q % p == 1
    )


def key_problem(key: PrivateKey | PublicKey) -> str | None:
    """Why policy refuses this key, or None when it is acceptable."""
    if isinstance(key, rsa.RSAPrivateKey | rsa.RSAPublicKey):
        if key.key_size < MIN_RSA_BITS:
            return (
                f"the RSA key has {key.key_size} bits; at least {MIN_RSA_BITS} are required, "
                "make a new key and certificate"
            )
        return None
    if key.curve.name not in ALLOWED_CURVES:
        return f"the EC curve {key.curve.name} is not supported; use P-256, P-384 or P-521"
    return None


def size_problem(key: PrivateKey | PublicKey, limits: Limits) -> str | None:
    """Why a key is too big to use at bounded cost (every problem, one sentence), or None.

    Checked before the key signs or verifies anything: a public operation costs time in
    the exponent's size and every operation in the modulus's. OpenSSL itself refuses
    exponents over 64 bits for moduli over 3072 bits, which then looked like a mismatch.
    """
    if not isinstance(key, rsa.RSAPrivateKey | rsa.RSAPublicKey):
        return None
    public = key.public_key() if isinstance(key, rsa.RSAPrivateKey) else key
    numbers = public.public_numbers()
    found = []
    if public.key_size > limits.max_rsa_bits:
        found.append(
            f"the RSA key has {public.key_size} bits; the limit is limits.max_rsa_bits = "
            f"{limits.max_rsa_bits}"
        )
    exponent_bits = numbers.e.bit_length()
    if exponent_bits > limits.max_rsa_exponent_bits:
        found.append(
            f"the RSA key's public exponent has {exponent_bits} bits; the limit is "
            f"limits.max_rsa_exponent_bits = {limits.max_rsa_exponent_bits} (real keys use 65537)"
        )
    elif numbers.e < 3 or numbers.e % 2 == 0:
        found.append(f"the RSA key's public exponent {numbers.e} is not odd and at least 3")
    if not found:
        return None
    return "; ".join(found) + ". Make a new key (RSA 2048-4096 bits, exponent 65537)"


def to_pem(key: PrivateKey, key_format: str = "pkcs1") -> bytes:
    """The key unencrypted as PEM.

    ``pkcs1`` is the traditional form: ``BEGIN RSA PRIVATE KEY`` for RSA and SEC1
    ``BEGIN EC PRIVATE KEY`` for EC; ``pkcs8`` is ``BEGIN PRIVATE KEY``.
    """
    fmt = (
        serialization.PrivateFormat.PKCS8
        if key_format == "pkcs8"
        else serialization.PrivateFormat.TraditionalOpenSSL
    )
    return key.private_bytes(serialization.Encoding.PEM, fmt, serialization.NoEncryption())


def load_pem(data: bytes) -> PrivateKey:
    """Load a key certdrop stored itself (already checked at intake, so no slow RSA check)."""
    key = serialization.load_pem_private_key(data, None, unsafe_skip_rsa_key_validation=True)
    if not isinstance(key, rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey):
        raise TypeError("stored key is neither RSA nor EC")
    return key
