"""Taking one parsed drop into the inventory: validate every piece, then write them all.

Runs inside the drop's transaction (:mod:`certdrop.intake.pipeline` opens it): raising
anywhere rolls the whole drop back. Decisions come from the pure core (``pki.assemble``
checks, ``pki.pairing`` plans); this module does the reads and writes they imply and
collects the events to log once the transaction is committed.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives.serialization import Encoding

from certdrop.clock import iso
from certdrop.errors import InvalidRequest
from certdrop.intake.pool import PoolCache
from certdrop.intake.work import Work
from certdrop.pki import assemble, keys, pairing, trust
from certdrop.pki import chain as chains
from certdrop.pki.csr import fields_of
from certdrop.pki.fields import RequestFields
from certdrop.pki.names import entry_name
from certdrop.pki.pool import Both, Pool
from certdrop.store.inventory import Inventory
from certdrop.store.rows import Entry


class Taker:
    """Validates and records the pieces of one drop; owned by the worker thread."""

    def __init__(
        self,
        inventory: Inventory,
        pool: PoolCache,
        verifier: Callable[[], trust.Verifier],
        clock: Callable[[], datetime],
    ) -> None:
        self.inventory = inventory
        self.pool = pool
        self.verifier = verifier  # read at each drop: a reload may replace it
        self.clock = clock

    def take(self, pieces: assemble.Pieces, file: str, work: Work) -> None:
        """Validate everything first, then write; raising rolls the whole drop back."""
        now = self.clock()
        assemble.check_single_pair(pieces)
        for each in pieces.keys:
            assemble.check_key(each)
        candidates = Both(Pool(pieces.authorities), self.pool)
        chained = []
        for leaf in pieces.leaves:
            checked = assemble.check_certificate(leaf, candidates, self.verifier(), now)
            chained.append(checked)
            work.leaf_chains.append(checked.chain)
        plan = pairing.plan_drop(pieces)
        for (leaf, key, _), _chain in zip(plan.leaves, chained, strict=True):
            if key is not None:
                assemble.check_possession(leaf, key)

        for authority in pieces.authorities:
            if self.pool.add(authority):
                work.intermediates += 1
        for (leaf, key, kid), checked in zip(plan.leaves, chained, strict=True):
            self._take_certificate(leaf, checked, key, kid, file, work)
        for loose, kid in plan.loose_keys:
            self._take_key(loose, kid, file, work, now)
        for csr, csr_key, kid in plan.csrs:
            self._take_csr(csr, csr_key, kid, file, work)

    def _take_certificate(
        self,
        leaf: x509.Certificate,
        checked: assemble.Checked,
        key: keys.PrivateKey | None,
        kid: str,
        file: str,
        work: Work,
    ) -> None:
        inv = self.inventory
        existing = inv.entry_by_sha256(chains.fingerprint(leaf))
        if existing is not None:
            work.duplicates.append(existing.name)
            return
        # A pending request for this key completes even when the key comes along too.
        request = inv.request_for_key(kid)
        found: dict[pairing.KeySource, tuple[bytes, str]] = {}

        def has(source: pairing.KeySource) -> bool:
            pem: bytes | None = None
            if source is pairing.KeySource.DROP and key is not None:
                found[source] = (keys.to_pem(key), file)
            elif source is pairing.KeySource.REQUEST and request is not None:
                pem = inv.key_pem(request.name)
                if pem is not None:
                    found[source] = (pem, f"request {request.name}")
            elif source is pairing.KeySource.HELD:
                held = inv.take_held("key", kid)
                if held is not None:
                    found[source] = (held.pem, held.from_file)
            elif source is pairing.KeySource.STORED:
                pem = inv.key_pem_for(kid)
                if pem is not None:
                    found[source] = (pem, "a key already in the inventory")
            return source in found

        source = pairing.key_source(has)
        if source is None:
            pem = chains.to_pem([leaf, *checked.chain.intermediates])
            if inv.hold("certificate", kid, pem, file, iso(self.clock())):
                work.held.append(
                    {"kind": "certificate", "subject": chains.describe_name(leaf.subject)}
                )
            else:
                work.duplicates.append("a certificate already held")
            return
        key_pem, paired_with = found[source]
        if source is not pairing.KeySource.DROP:
            assemble.check_possession(leaf, keys.load_pem(key_pem))
        self._record(leaf, checked, key_pem, kid, entry_name(file), paired_with, work, request)

    def _take_key(
        self, key: keys.PrivateKey, kid: str, file: str, work: Work, now: datetime
    ) -> None:
        inv = self.inventory
        held = inv.take_held("certificate", kid)
        fate = pairing.key_fate(
            held_certificate=held is not None,
            key_stored=held is None and inv.key_pem_for(kid) is not None,
        )
        if fate is pairing.Fate.COMPLETES_HELD:
            assert held is not None
            certs = chains.from_pem(held.pem)
            leaf = certs[0]
            candidates = Both(Pool(certs[1:]), self.pool)
            checked = assemble.check_certificate(leaf, candidates, self.verifier(), now)
            assemble.check_possession(leaf, key)
            work.leaf_chains.append(checked.chain)
            self._record(
                leaf, checked, keys.to_pem(key), kid, entry_name(held.from_file), file, work, None
            )
        elif fate is pairing.Fate.DUPLICATE:
            work.duplicates.append("a key already in the inventory")
        elif inv.hold("key", kid, keys.to_pem(key), file, iso(self.clock())):
            info = keys.describe(key)
            work.held.append({"kind": "key", "key": f"{info.type} {info.bits}"})
        else:
            work.duplicates.append("a key already held")

    def _take_csr(
        self,
        csr: x509.CertificateSigningRequest,
        key: keys.PrivateKey,
        kid: str,
        file: str,
        work: Work,
    ) -> None:
        fate = pairing.csr_fate(
            key_stored=self.inventory.key_pem_for(kid) is not None,
            held_certificate=any(
                h.kind == "certificate" and h.key_id == kid for h in self.inventory.held()
            ),
        )
        if fate is pairing.Fate.DUPLICATE:
            work.duplicates.append("a request already in the inventory")
            return
        if fate is pairing.Fate.COMPLETES_HELD:
            self._take_key(key, kid, file, work, self.clock())
            return
        try:
            fields: RequestFields | None = fields_of(csr)
        except InvalidRequest:
            fields = None  # asks for more than certdrop can ask again; still a fine request
        name = self._free_name(entry_name(file), work)
        info = keys.describe(key)
        self.inventory.put_entry(
            {
                "name": name,
                "status": "requested",
                "key_id": kid,
                "key_pem": keys.to_pem(key),
                "csr_pem": csr.public_bytes(Encoding.PEM),
                "request": None if fields is None else fields.to_mapping(),
                "subject": chains.describe_name(csr.subject),
                "sans": [] if fields is None else list(fields.sans),
                "key_type": info.type,
                "key_bits": info.bits,
                "created": iso(self.clock()),
            }
        )
        work.recorded.append(name)
        work.event(
            "info", "csr.imported", name=name, file=file, subject=chains.describe_name(csr.subject)
        )

    def _record(
        self,
        leaf: x509.Certificate,
        checked: assemble.Checked,
        key_pem: bytes,
        kid: str,
        wanted: str,
        paired_with: str,
        work: Work,
        request: Entry | None,
    ) -> None:
        info = assemble.describe(leaf)
        chain, verdict = checked.chain, checked.verdict
        name = request.name if request is not None else self._free_name(wanted, work)
        row: dict[str, Any] = {
            "name": name,
            "status": "unused",
            "key_id": kid,
            "key_pem": key_pem,
            "cert_pem": chains.to_pem([leaf]),
            "chain_pem": chains.to_pem(chain.intermediates),
            "trusted": int(verdict.trusted),
            "trust_detail": verdict.detail,
            "created": iso(self.clock()),
            **info,
        }
        if request is not None:
            row.update(
                request=request.request,
                renews=request.renews,
                csr_pem=None,
                created=request.created,
            )
        self.inventory.put_entry(row)
        self._release_held(kid, info["sha256"])
        work.recorded.append(name)
        work.imported(name, paired_with, info, checked)
        if request is not None:
            changes = pairing.request_changes(request.request, leaf)
            work.event(
                "warning" if changes else "info",
                "cert.matched",
                name=name,
                sha256=info["sha256"],
                **({"changes": changes} if changes else {}),
            )

    def _release_held(self, kid: str, sha256: str) -> None:
        """Drop held pieces the new entry makes redundant: its key, or the very same
        certificate (an upload cut off after the chain, then sent again whole)."""
        self.inventory.take_held("key", kid)
        held = self.inventory.take_held("certificate", kid)
        if held is not None and chains.fingerprint(chains.from_pem(held.pem)[0]) != sha256:
            self.inventory.hold("certificate", kid, held.pem, held.from_file, held.since)

    def _free_name(self, wanted: str, work: Work) -> str:
        name = self.inventory.free_name(wanted)
        if name != wanted:
            work.event(
                "info",
                "cert.renamed",
                wanted=wanted,
                name=name,
                detail=f"{wanted} is taken; recorded as {name}",
            )
        return name
