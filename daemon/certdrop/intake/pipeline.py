"""Intake of drops: claim -> read -> parse -> pair -> validate -> record | hold | reject.

The shell around the pure ``pki`` core. A drop is renamed out of the inbox into
``inbox/.claimed/<id>/`` before it is read, and that copy is only removed after its
result is committed, so a crash at any point is finished by :meth:`Intake.recover`.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives.serialization import Encoding

from certdrop import config as configuration
from certdrop.clock import iso, utc_now
from certdrop.errors import InvalidRequest, Rejection
from certdrop.intake.inbox import Claim, Inbox, display_name
from certdrop.intake.work import Outcome, Work, load_anchors
from certdrop.pki import assemble, keys, pairing
from certdrop.pki import chain as chains
from certdrop.pki.csr import fields_of
from certdrop.pki.fields import RequestFields
from certdrop.pki.names import entry_name
from certdrop.pki.parse import parse
from certdrop.store.eventlog import Logger
from certdrop.store.inventory import Inventory
from certdrop.store.rows import Entry

REQUEST_SUFFIX = ".request.toml"


class Intake:
    """Processes drops one at a time; owned by the worker thread."""

    def __init__(
        self,
        config: configuration.Config,
        inventory: Inventory,
        log: Logger,
        *,
        clock: Callable[[], datetime] = utc_now,
        on_request: Callable[[str, bytes, str], Outcome] | None = None,
        rehearsal: bool = False,
    ) -> None:
        self.inventory = inventory
        self.log = log
        self.clock = clock
        self.on_request = on_request
        self.rehearsal = rehearsal  # `certdrop inspect`: the inbox is never touched
        self.reconfigure(config)
        self._pool: list[x509.Certificate] | None = None

    def reconfigure(self, config: configuration.Config) -> None:
        self.config = config
        self.inbox = config.inbox
        self.anchors = load_anchors(config.ca_bundle)
        self.passphrases = configuration.read_passphrases(config)
        self.files = Inbox(config.inbox, config.max_file_bytes, prepare=not self.rehearsal)

    # -- the inbox ------------------------------------------------------------------
    def pending(self) -> list[str]:
        """Drops waiting in the inbox now (for the start-up scan), oldest first."""
        return self.files.pending()

    def recover(self) -> list[Outcome]:
        """Finish every drop that was claimed but whose claim was not cleaned up."""
        outcomes = []
        for claim in self.files.leftovers():
            self.files.forget_twin(claim)
            done = self.inventory.drop_result(claim.id)
            if done is not None:
                outcome = Outcome(done.file, done.result, [], done.code or "", done.reason or "")
                self._finish(claim, outcome)
                outcomes.append(outcome)
            else:
                outcomes.append(self._process_claimed(claim))
        return outcomes

    def process(self, name: str) -> Outcome | None:
        """Claim and process ``inbox/name``; None when it is gone (already handled)."""
        claim = self.files.claim(name)
        return None if claim is None else self._process_claimed(claim)

    # -- one drop -------------------------------------------------------------------
    def _process_claimed(self, claim: Claim) -> Outcome:
        file = display_name(claim.name)
        work = Work()
        try:
            data = self.files.read(claim)
            if file.endswith(REQUEST_SUFFIX) and self.on_request is not None:
                outcome = self.on_request(file, data, claim.id)
                self._finish(claim, outcome)
                return outcome
            pieces = assemble.sort_pieces(parse(data, self.passphrases))
            with self.inventory.transaction():
                self.take(pieces, file, work)
                held_only = work.held and not (work.recorded or work.duplicates)
                result = "held" if held_only else "accepted"
                self.inventory.record_drop(claim.id, file, result, iso(self.clock()))
        except Rejection as rejection:
            outcome = Outcome(file, "rejected", code=rejection.code, reason=rejection.reason)
            with self.inventory.transaction():
                self.inventory.record_drop(
                    claim.id, file, "rejected", iso(self.clock()), rejection.code, rejection.reason
                )
            self._finish(claim, outcome)
            return outcome
        if work.intermediates:
            self.forget_pool()  # the pool grew: reload it from the committed state
        for level, event, fields in work.events:
            getattr(self.log, level)(event, **fields)
        outcome = Outcome(file, result, work.recorded)
        self._finish(claim, outcome, work)
        return outcome

    def take(self, pieces: assemble.Pieces, file: str, work: Work) -> None:
        """Validate everything first, then write, in the caller's transaction; raising
        rolls the whole drop back. (``certdrop inspect`` calls it and rolls back.)"""
        now = self.clock()
        assemble.check_single_pair(pieces)
        for each in pieces.keys:
            assemble.check_key(each)
        candidates = [*pieces.authorities, *self.pool()]
        chained = []
        for leaf in pieces.leaves:
            chain = assemble.check_certificate(leaf, candidates, self.anchors, now)
            chained.append(chain)
        work.leaf_chains.extend(chained)
        plan = pairing.plan_drop(pieces)
        for (leaf, key, _), _chain in zip(plan.leaves, chained, strict=True):
            if key is not None:
                assemble.check_possession(leaf, key)

        for authority in pieces.authorities:
            self._add_to_pool(authority, work)
        for (leaf, key, kid), chain in zip(plan.leaves, chained, strict=True):
            self._take_certificate(leaf, chain, key, kid, file, work)
        for loose, kid in plan.loose_keys:
            self._take_key(loose, kid, file, work, now)
        for csr, csr_key, kid in plan.csrs:
            self._take_csr(csr, csr_key, kid, file, work)

    def _take_certificate(
        self,
        leaf: x509.Certificate,
        chain: chains.Chain,
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
            pem = chains.to_pem([leaf, *chain.intermediates])
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
        self._record(leaf, chain, key_pem, kid, entry_name(file), paired_with, work, request)

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
            chain = assemble.check_certificate(leaf, [*certs[1:], *self.pool()], self.anchors, now)
            assemble.check_possession(leaf, key)
            work.leaf_chains.append(chain)
            self._record(
                leaf, chain, keys.to_pem(key), kid, entry_name(held.from_file), file, work, None
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
        chain: chains.Chain,
        key_pem: bytes,
        kid: str,
        wanted: str,
        paired_with: str,
        work: Work,
        request: Entry | None,
    ) -> None:
        info = assemble.describe(leaf)
        name = request.name if request is not None else self._free_name(wanted, work)
        row: dict[str, Any] = {
            "name": name,
            "status": "unused",
            "key_id": kid,
            "key_pem": key_pem,
            "cert_pem": chains.to_pem([leaf]),
            "chain_pem": chains.to_pem(chain.intermediates),
            "trusted": int(chain.trusted),
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
        fields = {k: info[k] for k in ("sha256", "subject", "issuer", "not_after")}
        work.event(
            "info",
            "cert.imported",
            name=name,
            paired_with=paired_with,
            trusted=chain.trusted,
            intermediates=len(chain.intermediates),
            **fields,
        )
        if request is not None:
            changes = pairing.request_changes(request.request, leaf)
            work.event(
                "warning" if changes else "info",
                "cert.matched",
                name=name,
                sha256=info["sha256"],
                **({"changes": changes} if changes else {}),
            )
        if not chain.trusted:
            work.event(
                "warning",
                "cert.chain_incomplete",
                name=name,
                detail="the chain does not reach a trusted root; drop the "
                "intermediates or add the root to trust.ca_bundle",
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

    def pool(self) -> list[x509.Certificate]:
        if self._pool is None:
            self._pool = [c for pem in self.inventory.pool() for c in chains.from_pem(pem)]
        return self._pool

    def forget_pool(self) -> None:
        """Read the pool again next time (after a rollback took intermediates away)."""
        self._pool = None

    def _add_to_pool(self, cert: x509.Certificate, work: Work) -> None:
        # Most drops carry the same intermediates again: the in-memory pool answers that
        # (Certificate equality is DER equality) without touching SQLite.
        if cert in self.pool():
            return
        if self.inventory.add_to_pool(
            chains.fingerprint(cert), chains.to_pem([cert]), chains.describe_name(cert.subject)
        ):
            work.intermediates += 1

    # -- results --------------------------------------------------------------------
    def _finish(self, claim: Claim, outcome: Outcome, work: Work | None = None) -> None:
        """Log the drop's one final event and clear the claim (the result is committed).

        The event comes before the claim is cleared: a kill -9 in between repeats it at
        recovery (same file, same result) instead of losing it.
        """
        if outcome.result == "rejected":
            reason = {
                "file": outcome.file,
                "code": outcome.code,
                "reason": outcome.reason,
                "at": iso(self.clock()),
            }
            self.files.reject(
                claim,
                reason,
                announce=lambda: self.log.warning(
                    "drop.rejected", file=outcome.file, code=outcome.code, reason=outcome.reason
                ),
            )
            return
        if outcome.result == "held":
            self.log.info("drop.held", file=outcome.file, held=work.held if work else [])
        else:
            extra: dict[str, Any] = {}
            if work is not None:
                extra = {
                    "held": work.held,
                    "duplicate_of": work.duplicates,
                    "intermediates": work.intermediates,
                }
                extra = {k: v for k, v in extra.items() if v}
            self.log.info(
                "drop.accepted", file=outcome.file, certificates=outcome.recorded, **extra
            )
        self.files.remove(claim)
