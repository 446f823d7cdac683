"""Gateway identities: signatures bind records to their writer; sealed keys open for one gateway."""

from __future__ import annotations

import os
from dataclasses import replace
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from fleet_helpers import Gw, sha

from certdrop.errors import UserError
from certdrop.fleet import identity
from certdrop.fleet.crypto import GatewayKey, PublicIdentity, SealError, seal, verify
from certdrop.fleet.records import Assignment, Lease


def _key_pem() -> bytes:
    return ec.generate_private_key(ec.SECP256R1()).private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )


def test_a_signature_verifies_only_with_its_writers_key() -> None:
    """A record signed by gw-a verifies with gw-a's public key and not with gw-b's."""
    a, b = Gw("gw-a"), Gw("gw-b")
    env = a.sign(Lease(sha("c"), "gw-a", 10))
    assert verify(env, a.key.public)
    assert not verify(env, b.key.public)


def test_a_changed_field_breaks_the_signature() -> None:
    """Changing the record, the writer's name or the stamp after signing fails verification."""
    a = Gw("gw-a")
    env = a.sign(Assignment("gw-b", "web", sha("c"), "c"), at=5)
    assert not verify(replace(env, record=Assignment("gw-b", "web", sha("d"), "c")), a.key.public)
    assert not verify(replace(env, by="gw-z"), a.key.public)
    assert not verify(replace(env, at=6), a.key.public)


def test_a_sealed_key_opens_for_its_recipient_only() -> None:
    """A key sealed to gw-b opens with gw-b's identity; gw-c's identity cannot open it."""
    b, c = GatewayKey.generate(), GatewayKey.generate()
    pem = _key_pem()
    sealed = seal(sha("k"), pem, "gw-b", b.public)
    assert b.open(sealed) == pem
    with pytest.raises(SealError, match="does not open"):
        c.open(sealed)


def test_sealed_bytes_hold_no_key_material() -> None:
    """The sealed form holds neither the PEM text nor the key's DER bytes."""
    pem = _key_pem()
    der = serialization.load_pem_private_key(pem, None).private_bytes(
        serialization.Encoding.DER, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    sealed = seal(sha("k"), pem, "gw-b", GatewayKey.generate().public)
    blob = sealed.sealed.encode()
    assert b"PRIVATE KEY" not in blob
    import base64

    raw = base64.b64decode(blob)
    assert der[-32:] not in raw and pem[40:80] not in raw


def test_a_damaged_sealed_key_is_a_seal_error() -> None:
    """A sealed key with a flipped byte or bad base64 is refused, never half-opened."""
    b = GatewayKey.generate()
    sealed = seal(sha("k"), b"secret", "gw-b", b.public)
    broken = sealed.sealed[:-6] + ("A" if sealed.sealed[-6] != "A" else "B") + sealed.sealed[-5:]
    for bad in (replace(sealed, sealed=broken), replace(sealed, sealed="not base64!")):
        with pytest.raises(SealError):
            b.open(bad)


def test_the_public_identity_round_trips_and_has_a_fingerprint() -> None:
    """The public key survives hex and gives a stable SHA256: fingerprint for people."""
    key = GatewayKey.generate()
    public = PublicIdentity.from_hex(key.public.sign_key)
    assert public == key.public
    assert public.fingerprint.startswith("SHA256:") and len(public.fingerprint) == 50
    with pytest.raises(ValueError):
        PublicIdentity.from_hex("00")


def test_repr_shows_no_seed() -> None:
    """A gateway key's repr (what a traceback prints) holds its fingerprint, not its seed."""
    key = GatewayKey.generate()
    assert key.seed().hex() not in repr(key) and key.public.fingerprint in repr(key)


def test_identity_file_is_made_once_0600(tmp_path: Path) -> None:
    """The identity file is made 0600 at first start and the same key is loaded after."""
    path = tmp_path / "fleet" / "identity"
    key, created = identity.load_or_create(path)
    assert created and (path.stat().st_mode & 0o777) == 0o600
    again, created_again = identity.load_or_create(path)
    assert not created_again and again.public == key.public
    assert key.seed().hex() not in path.read_text()  # base64, and one line with a header
    assert path.read_text().startswith("certdrop-fleet-identity-v1 ")


def test_a_readable_identity_file_is_refused(tmp_path: Path) -> None:
    """An identity file others may read is refused with the chmod that fixes it."""
    path = tmp_path / "identity"
    identity.load_or_create(path)
    path.chmod(0o644)
    with pytest.raises(UserError, match=f"chmod 600 {path}"):
        identity.load(path)


@pytest.mark.parametrize(
    "content", [b"", b"certdrop-fleet-identity-v1 AAAA\n", b"ssh-ed25519 AAAA x\n", b"\xff\xfe"]
)
def test_a_foreign_identity_file_is_refused(tmp_path: Path, content: bytes) -> None:
    """A file that is not a certdrop identity is refused, naming the file and the way out."""
    path = tmp_path / "identity"
    fd = os.open(path, os.O_WRONLY | os.O_CREAT, 0o600)
    os.write(fd, content)
    os.close(fd)
    with pytest.raises(UserError, match="not a certdrop identity file"):
        identity.load_or_create(path)


def test_a_symlinked_identity_file_is_refused(tmp_path: Path) -> None:
    """An identity path that is a symlink is refused rather than followed."""
    real = tmp_path / "real"
    identity.load_or_create(real)
    link = tmp_path / "link"
    link.symlink_to(real)
    with pytest.raises(UserError, match="not a symlink"):
        identity.load(link)
