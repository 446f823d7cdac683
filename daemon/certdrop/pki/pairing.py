"""Pairing decisions: what in a drop pairs with what, and where a certificate's key is.

Pure. The intake pipeline gathers the facts (from the drop and the inventory) and acts on
these answers; the rules themselves live here so they can be read and tested alone:

- a key in the same drop pairs with its certificate; a CSR needs its key in the drop;
- a certificate's key is looked for in the drop, then a pending request for that key (the
  certificate completes the request), then a held key, then a key already stored;
- a loose key completes a held certificate, is a duplicate of a stored key, or is held;
- a CSR with its key is a duplicate of a stored key, completes a held certificate, or
  becomes a new ``requested`` entry.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from enum import StrEnum

from cryptography import x509

from certdrop.errors import InvalidRequest, Rejection
from certdrop.pki import keys
from certdrop.pki.assemble import Pieces
from certdrop.pki.csr import differences
from certdrop.pki.fields import RequestFields
from certdrop.pki.keys import PrivateKey


class KeySource(StrEnum):
    DROP = "drop"
    REQUEST = "request"
    HELD = "held"
    STORED = "stored"


# The order in which a certificate's key is looked for: the first that has it wins.
KEY_SOURCES = (KeySource.DROP, KeySource.REQUEST, KeySource.HELD, KeySource.STORED)


class Fate(StrEnum):
    """What becomes of a loose key or a CSR."""

    COMPLETES_HELD = "completes_held"  # a held certificate waits for exactly this key
    DUPLICATE = "duplicate"  # the key is already stored
    HOLD = "hold"  # a key that waits for its certificate
    REQUEST = "request"  # a CSR with its key: a new ``requested`` entry


@dataclass(frozen=True)
class DropPlan:
    """A drop's pieces, paired within the drop."""

    leaves: tuple[tuple[x509.Certificate, PrivateKey | None, str], ...]  # leaf, key, key id
    csrs: tuple[tuple[x509.CertificateSigningRequest, PrivateKey, str], ...]
    loose_keys: tuple[tuple[PrivateKey, str], ...]  # keys no leaf or CSR of the drop uses


def plan_drop(pieces: Pieces) -> DropPlan:
    """Pair the drop's keys with its leaves and CSRs; a CSR without its key is refused."""
    leaves = []
    used: set[str] = set()
    for leaf in pieces.leaves:
        kid = keys.cert_key_id(leaf) or ""
        key = pieces.key_for(kid)
        if key is not None:
            used.add(kid)
        leaves.append((leaf, key, kid))
    csrs = []
    for csr in pieces.csrs:
        kid = keys.key_id(csr.public_key())
        csr_key = pieces.key_for(kid)
        if csr_key is None:
            raise Rejection(
                "csr_without_key",
                "a CSR alone cannot be used; send it to your CA and drop the issued "
                "certificate, or drop the CSR together with its private key",
            )
        used.add(kid)
        csrs.append((csr, csr_key, kid))
    loose = []
    for key in pieces.keys:
        kid = keys.key_id(key.public_key())
        if kid not in used:
            loose.append((key, kid))
    return DropPlan(tuple(leaves), tuple(csrs), tuple(loose))


def key_source(has: Callable[[KeySource], bool]) -> KeySource | None:
    """The first source in ``KEY_SOURCES`` that ``has`` the key; None: hold the certificate.

    ``has`` is asked lazily, in order, so the caller looks up only what it must.
    """
    return next((source for source in KEY_SOURCES if has(source)), None)


def key_fate(*, held_certificate: bool, key_stored: bool) -> Fate:
    """A loose key: completes a held certificate first, else is a duplicate, else waits."""
    if held_certificate:
        return Fate.COMPLETES_HELD
    return Fate.DUPLICATE if key_stored else Fate.HOLD


def csr_fate(*, key_stored: bool, held_certificate: bool) -> Fate:
    """A CSR with its key: a stored key makes it a duplicate; a certificate that came
    first and waits is completed by the key at once; otherwise a new request."""
    if key_stored:
        return Fate.DUPLICATE
    return Fate.COMPLETES_HELD if held_certificate else Fate.REQUEST


def request_changes(requested: dict[str, object] | None, cert: x509.Certificate) -> list[str]:
    """What the CA changed in ``cert`` from the request's fields (none known: no changes)."""
    if requested is None:
        return []
    try:
        return differences(RequestFields.from_mapping(requested), cert)
    except InvalidRequest:
        return []
