"""Judging the inventory again when the trust store changes (start-up, reload).

A stored ``trusted`` is a verdict for one trust store: ``trust.ca_bundle`` (or the system
store) and ``trust.profile``. Their fingerprint (the profile and the file's content hash)
is kept in the inventory; when the configured store's differs, every stored certificate
is judged again, the verdicts that changed are written, and each flip is logged as
``cert.trust_changed``.
"""

from __future__ import annotations

from datetime import datetime

from cryptography import x509

from certdrop.pki import chain as chains
from certdrop.pki.trust import Verdict
from certdrop.pki.trust_rules import short
from certdrop.store.eventlog import Logger
from certdrop.store.inventory import Inventory
from certdrop.store.truststore import TrustStore

FINGERPRINT = "trust_fingerprint"


def rejudge(inventory: Inventory, log: Logger, trust: TrustStore, now: datetime) -> list[str]:
    """Judge every stored certificate again if the trust store changed since the last
    time; return the names whose ``trusted`` flipped."""
    if inventory.meta(FINGERPRINT) == trust.fingerprint:
        return []
    verifier = trust.verifier
    pool = [c for pem in inventory.pool() for c in chains.from_pem(pem)]
    updates: list[tuple[str, bool, Verdict]] = []
    for row in inventory.judged():
        try:
            leaf = x509.load_pem_x509_certificate(row.cert_pem)
            bundle = chains.from_pem(row.chain_pem)
        except ValueError:
            continue  # certdrop stored it; `certdrop check` reports a damaged database
        verdict = verifier.judge_any(leaf, [*bundle, *pool], now)
        if verdict.trusted != row.trusted or verdict.detail != row.trust_detail:
            updates.append((row.name, row.trusted, verdict))
    with inventory.transaction():
        for name, _, verdict in updates:
            inventory.set_trust(name, verdict.trusted, verdict.detail)
        inventory.set_meta(FINGERPRINT, trust.fingerprint)
    flipped = []
    for name, was, verdict in updates:
        if was == verdict.trusted:
            continue  # the reason changed, not the verdict: shown by status, not logged
        flipped.append(name)
        root = short(verdict.chain[-1].subject) if verdict.chain else ""
        detail = verdict.detail or f"the chain now validates to root {root}"
        level = log.info if verdict.trusted else log.warning
        change = {"from": was, "to": verdict.trusted}  # `from` is a keyword in Python
        level("cert.trust_changed", name=name, **change, detail=detail)
    return flipped
