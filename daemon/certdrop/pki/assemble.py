"""Decide what the pieces of a drop are and whether a certificate may be recorded. Pure."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from cryptography import x509
from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives import hashes

from certdrop.errors import Rejection
from certdrop.pki import chain as chains
from certdrop.pki import keys, trust
from certdrop.pki.keys import PrivateKey
from certdrop.pki.parse import Parsed
from certdrop.pki.pool import Both, Issuers, Pool, issuers, reachable


@dataclass(frozen=True)
class Pieces:
    """A drop sorted: leaf certificates, issuing certificates, keys and CSRs."""

    leaves: tuple[x509.Certificate, ...]
    authorities: tuple[x509.Certificate, ...]
    keys: tuple[PrivateKey, ...]
    csrs: tuple[x509.CertificateSigningRequest, ...]

    def key_for(self, key_id: str | None) -> PrivateKey | None:
        return next((k for k in self.keys if keys.key_id(k.public_key()) == key_id), None)


def sort_pieces(parsed: Parsed) -> Pieces:
    """Split certificates into leaves and authorities.

    A CA certificate counts as a leaf only when its own key came in the same drop (an
    operator importing a CA's certificate and key); otherwise it is an intermediate or
    root that completes chains.
    """
    key_ids = {keys.key_id(k.public_key()) for k in parsed.keys}
    leaves, authorities = [], []
    seen: set[bytes] = set()
    for cert in parsed.certs:
        fp = cert.fingerprint(hashes.SHA256())
        if fp in seen:
            continue
        seen.add(fp)
        if chains.is_ca(cert) and keys.cert_key_id(cert) not in key_ids:
            authorities.append(cert)
        else:
            leaves.append(cert)
    return Pieces(tuple(leaves), tuple(authorities), parsed.keys, parsed.csrs)


def check_single_pair(pieces: Pieces) -> None:
    """One certificate and one key that do not match is a mistake, not two pieces to hold."""
    if len(pieces.leaves) == 1 and len(pieces.keys) == 1:
        leaf, key = pieces.leaves[0], pieces.keys[0]
        if keys.cert_key_id(leaf) != keys.key_id(key.public_key()):
            raise Rejection(
                "key_mismatch",
                f"the private key does not belong to the certificate "
                f"{chains.describe_name(leaf.subject)}; drop the key made with its CSR",
            )


def check_key(key: keys.PrivateKey) -> None:
    problem = keys.key_problem(key)
    if problem is not None:
        raise Rejection("weak_key", problem)


@dataclass(frozen=True)
class Checked:
    """A leaf that intake may record: the bundle to store, and its trust verdict."""

    chain: chains.Chain
    verdict: trust.Verdict


def check_certificate(
    leaf: x509.Certificate,
    candidates: Iterable[x509.Certificate] | Issuers,
    verifier: trust.Verifier,
    now: datetime,
) -> Checked:
    """Judge the trust of ``leaf`` and order its bundle; raise Rejection for what intake
    refuses whatever the trust store (a broken, weak or expired chain), never for a
    chain that is merely not trusted.

    A trusted leaf's bundle is the path the verifier validated; the hand-written builder
    orders only the bundle of a leaf that is not trusted.
    """
    public = _public_key(leaf)
    problem = keys.key_problem(public)
    if problem is not None:
        raise Rejection("weak_key", problem)
    source = issuers(candidates)
    # The verifier is offered only certificates that can be on a path (found by issuer
    # name through the index), not the whole pool: its cost then stays per drop.
    verdict = verifier.judge_any(leaf, reachable(leaf, source), now)
    if verdict.trusted:
        chain = chains.Chain(leaf, verdict.intermediates, verdict.chain[-1])
    else:
        chain = chains.build_chain(leaf, Both(source, Pool(verifier.extra)), verifier.anchors)
    # Before the chain check: cryptography will not verify SHA-1/MD5 signatures, so a
    # weakly signed certificate also looks "broken", and weak_signature is the true reason.
    weak = chains.signature_problem(chain.bundle)
    if weak is not None:
        raise Rejection("weak_signature", weak)
    if chain.broken is not None and chain.broken.endswith(chains.TOO_DEEP):
        raise Rejection(
            "chain_invalid",
            f"the chain of {chain.broken.removesuffix(chains.TOO_DEEP)} has more than "
            f"{chains.MAX_DEPTH} intermediates, which no real CA uses (a chain loop or "
            "padding?); drop the leaf with the intermediates its CA gave you",
        )
    if chain.broken is not None:
        raise Rejection(
            "chain_invalid",
            f"the issuer certificate in the drop does not verify the signature of "
            f"{chain.broken}; drop the intermediate that really issued it",
        )
    for cert in chain.bundle:
        found = chains.validity_problem(cert, now)
        if found is not None:
            raise Rejection(*found)
    return Checked(chain, verdict)


def check_possession(leaf: x509.Certificate, key: keys.PrivateKey) -> None:
    """The key must sign what the certificate's public key verifies."""
    check_key(key)
    if not keys.proves_possession(key, _public_key(leaf)):
        raise Rejection(
            "key_mismatch",
            f"the private key does not belong to the certificate "
            f"{chains.describe_name(leaf.subject)} (or is damaged); drop the right key",
        )


def _public_key(cert: x509.Certificate) -> keys.PublicKey:
    try:
        public = cert.public_key()
    except (ValueError, UnsupportedAlgorithm):
        public = None
    if not isinstance(public, keys.PublicKey):
        raise Rejection(
            "unsupported_key",
            f"the certificate {chains.describe_name(cert.subject)} has a key type certdrop "
            "does not handle; use RSA or EC",
        )
    return public


def describe(cert: x509.Certificate) -> dict[str, Any]:
    """The inventory columns and status fields of a certificate (no key material)."""
    info = keys.describe(_public_key(cert))
    return {
        "sha256": chains.fingerprint(cert),
        "subject": chains.describe_name(cert.subject),
        "issuer": chains.describe_name(cert.issuer),
        "sans": chains.sans(cert),
        "not_before": _iso(cert.not_valid_before_utc),
        "not_after": _iso(cert.not_valid_after_utc),
        "key_type": info.type,
        "key_bits": info.bits,
    }


def _iso(moment: datetime) -> str:
    return moment.strftime("%Y-%m-%dT%H:%M:%SZ")
