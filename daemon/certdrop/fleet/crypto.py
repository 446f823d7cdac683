"""Signing, verifying and sealing with one Ed25519 identity per gateway (PyNaCl/libsodium).

Pure computation, no I/O. Why PyNaCl and not age through pyrage: every record must be
signed as well as some sealed, and libsodium does both (Ed25519 signatures, X25519 sealed
boxes) behind one small, typed binding; a gateway then needs one seed, its X25519 key
derived from it (``crypto_sign_ed25519_sk_to_curve25519``, the conversion age's own
ssh-ed25519 recipients use), so approving one public key covers both uses. One sealed box
per recipient (not one age file for all) also lets ``fleet approve`` add a recipient and
``fleet revoke`` drop one without re-encrypting what the others hold.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
from dataclasses import dataclass, replace

from nacl.exceptions import BadSignatureError, CryptoError
from nacl.public import PrivateKey as BoxPrivateKey
from nacl.public import PublicKey as BoxPublicKey
from nacl.public import SealedBox
from nacl.signing import SigningKey, VerifyKey

from certdrop.fleet.records import Envelope, Record, SealedKey

SEED_BYTES = 32


class SealError(ValueError):
    """A sealed key that does not open with this gateway's key (not for us, or damaged)."""


@dataclass(frozen=True)
class PublicIdentity:
    """A gateway's public half: the Ed25519 key it signs with (hex), from which its
    X25519 sealing key is derived."""

    sign_key: str

    @classmethod
    def from_hex(cls, value: str) -> PublicIdentity:
        VerifyKey(bytes.fromhex(value))  # raises for a wrong length
        return cls(value)

    @property
    def box_key(self) -> BoxPublicKey:
        return VerifyKey(bytes.fromhex(self.sign_key)).to_curve25519_public_key()

    @property
    def fingerprint(self) -> str:
        """A short form for people to compare (``fleet status`` and ``fleet approve``)."""
        digest = hashlib.sha256(bytes.fromhex(self.sign_key)).digest()
        return "SHA256:" + base64.b64encode(digest).decode().rstrip("=")


class GatewayKey:
    """A gateway's private identity (from its 32-byte seed). Never printed, never logged."""

    def __init__(self, seed: bytes) -> None:
        if len(seed) != SEED_BYTES:
            raise ValueError(f"an identity seed is {SEED_BYTES} bytes, not {len(seed)}")
        self._signing = SigningKey(seed)

    @classmethod
    def generate(cls) -> GatewayKey:
        return cls(bytes(SigningKey.generate()))

    def seed(self) -> bytes:
        """The secret seed, for the identity file only."""
        return bytes(self._signing)

    @property
    def public(self) -> PublicIdentity:
        return PublicIdentity(self._signing.verify_key.encode().hex())

    def __repr__(self) -> str:  # never the seed, even in a traceback's locals
        return f"GatewayKey({self.public.fingerprint})"

    def sign(self, record: Record, by: str, at: int) -> Envelope:
        """The record in an envelope signed by this key; ``encode()`` gives its bytes."""
        unsigned = Envelope(record, by, at)
        return replace(unsigned, sig=self._signing.sign(unsigned.message()).signature)

    def open(self, sealed: SealedKey) -> bytes:
        """The plaintext of a key sealed to this gateway; SealError if it does not open."""
        box_private: BoxPrivateKey = self._signing.to_curve25519_private_key()
        try:
            return SealedBox(box_private).decrypt(base64.b64decode(sealed.sealed, validate=True))
        except (CryptoError, binascii.Error, ValueError):
            raise SealError(
                f"the sealed key {sealed.key_id[:12]}... does not open with this gateway's identity"
            ) from None


def verify(envelope: Envelope, signer: PublicIdentity) -> bool:
    """True when ``signer`` made ``envelope``'s signature over exactly its content."""
    try:
        VerifyKey(bytes.fromhex(signer.sign_key)).verify(envelope.message(), envelope.sig)
    except (BadSignatureError, ValueError):
        return False
    return True


def seal(key_id: str, private_key_pem: bytes, recipient: str, to: PublicIdentity) -> SealedKey:
    """Seal a private key to one gateway: only the holder of ``to``'s seed can open it."""
    box = SealedBox(to.box_key).encrypt(private_key_pem)
    return SealedKey(key_id=key_id, recipient=recipient, sealed=base64.b64encode(box).decode())
