"""Intake of drops: claim -> read -> parse -> pair -> validate -> record | hold | reject.

The shell around the pure ``pki`` core. A drop is renamed out of the inbox into
``inbox/.claimed/<id>/`` before it is read, and that copy is only removed after its
result is committed, so a crash at any point is finished by :meth:`Intake.recover`.
"""

from __future__ import annotations

import os
import secrets
from collections.abc import Callable
from datetime import datetime

from certdrop import config as configuration
from certdrop.clock import iso, utc_now
from certdrop.errors import Rejection
from certdrop.faults import StorageFault, storage_fault
from certdrop.intake.inbox import Claim, Inbox, display_name
from certdrop.intake.opener import Opener
from certdrop.intake.pool import PoolCache
from certdrop.intake.results import Results
from certdrop.intake.take import Taker
from certdrop.intake.work import Outcome, Work
from certdrop.pki import assemble
from certdrop.pki.parse import Parsed, derives_keys, parse, summary
from certdrop.store import attempts
from certdrop.store.eventlog import Logger
from certdrop.store.inventory import Inventory
from certdrop.store.truststore import TrustStore

REQUEST_SUFFIX = ".request.toml"
# A drop is started by at most this many daemon runs that went on to die with it in their
# own process (store/attempts.py): one, then one more that opens it in the bounded child;
# a third start rejects it (a poison drop). Deaths while the child had it do not count.
MAX_RUNS = 2


Later = Callable[[str, Callable[[], "Outcome | None"]], None]


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
        trust: TrustStore | None = None,
        rehearsal: bool = False,
    ) -> None:
        self.inventory = inventory
        self.log = log
        self.clock = clock
        self.on_request = on_request
        self.trust = trust or TrustStore(config)
        self.rehearsal = rehearsal  # `certdrop inspect`: the inbox is never touched
        self._configure(config)
        self.pool = PoolCache(inventory)
        # The verifier is read at each drop: a reload may replace it.
        self.taker = Taker(inventory, self.pool, lambda: self.trust.verifier, clock)
        self.results = Results(log, clock)
        self.opener = Opener()
        self.run_id = secrets.token_hex(8)  # tells this daemon run's attempts from a dead one's
        # Set by the daemon: runs a drop's continuation as a worker job (when its opening
        # in the child is done). None (CLI, tests): the child is waited for.
        self.later: Later | None = None
        self._in_flight: set[str] = set()  # claims being opened in the child

    def close(self) -> None:
        """End the child process that opens drops (started on first use)."""
        self.opener.close()

    def take(self, pieces: assemble.Pieces, file: str, work: Work) -> None:
        """Validate everything first, then write, in the caller's transaction; raising
        rolls the whole drop back. (``certdrop inspect`` calls it and rolls back.)"""
        self.taker.take(pieces, file, work)

    def forget_pool(self) -> None:
        """Forget cached intermediates a rolled-back transaction may have added."""
        self.pool.settle()

    def reconfigure(self, config: configuration.Config) -> None:
        """Take a new configuration, reading the trust store again."""
        self.trust.load(config)
        self._configure(config)

    def _configure(self, config: configuration.Config) -> None:
        self.config = config
        self.inbox = config.inbox
        self.passphrases = configuration.read_passphrases(config)
        self.files = Inbox(config.inbox, config.max_file_bytes, prepare=not self.rehearsal)

    # -- the inbox ------------------------------------------------------------------
    def pending(self) -> list[str]:
        """Drops waiting in the inbox now (for the start-up scan), oldest first."""
        return self.files.pending()

    def recover(self) -> list[Outcome]:
        """Finish every drop that was claimed but whose claim was not cleaned up: after
        a crash, and after a storage fault (then again at every retry until it clears).
        Drops whose child-process opening is under way are left to it."""
        outcomes = []
        claims = self.files.leftovers()
        try:
            while claims:
                claim = claims[0]
                if claim.id in self._in_flight:
                    claim.close()
                    claims.pop(0)
                    continue
                self.files.forget_twin(claim)
                done = self.inventory.drop_result(claim.id)
                outcome: Outcome | None
                if done is not None:
                    code, reason = done.code or "", done.reason or ""
                    outcome = Outcome(done.file, done.result, [], code, reason)
                    self.results.finish(self.files, claim, outcome)
                else:
                    outcome = self._process_claimed(claim)
                if outcome is not None:
                    outcomes.append(outcome)
                claims.pop(0)
        except BaseException as exc:  # noqa: BLE001 - re-raised, as a fault if it is one
            for claim in claims:
                claim.close()
            raise self._fault(exc) or exc from None
        return outcomes

    def process(self, name: str) -> Outcome | None:
        """Claim and process ``inbox/name``. None when it is gone (already handled), or
        when it is being opened in the child: its outcome then comes through ``later``."""
        try:
            claim = self.files.claim(name)
        except OSError as exc:
            raise self._fault(exc) or exc from None
        return None if claim is None else self._process_claimed(claim)

    def _fault(self, exc: BaseException) -> StorageFault | None:
        """The storage fault behind ``exc``, naming a path a person can look at."""
        fault = storage_fault(exc, str(self.inbox), str(self.inventory.path))
        if fault is not None and not os.path.isabs(fault.path):
            fault = StorageFault(os.path.join(self.inbox, fault.path), fault.errno, fault.detail)
        return fault
    def take_bytes(
        self, data: bytes, source: str, also: Callable[[], None] | None = None
    ) -> Outcome:
        """Check pieces that came otherwise than through the inbox (a certificate from the
        fleet) with the same rules as a drop; recorded, held or rejected, no file kept.
        ``also`` runs in the same transaction, after the pieces are taken."""
        work = Work()
        try:
            pieces = assemble.sort_pieces(parse(data, []))
            with self.inventory.transaction():
                self.take(pieces, source, work)
                if also is not None:
                    also()
        except Rejection as rejection:
            return Outcome(source, "rejected", code=rejection.code, reason=rejection.reason)
        finally:
            self.pool.settle()
        for level, event, fields in work.events:
            getattr(self.log, level)(event, **fields)
        held_only = work.held and not (work.recorded or work.duplicates)
        return Outcome(source, "held" if held_only else "accepted", work.recorded)

    # -- one drop -------------------------------------------------------------------
    def _process_claimed(self, claim: Claim) -> Outcome | None:
        file = display_name(claim.name)
        return self._guarded(claim, file, lambda work: self._start(claim, file, work))

    def _guarded(
        self, claim: Claim, file: str, step: Callable[[Work], Outcome | None]
    ) -> Outcome | None:
        """Run one step of a drop so that it ends in a final result, whatever happens,
        except for a storage fault: that leaves the drop claimed for the retry."""
        work = Work()
        try:
            try:
                try:
                    return step(work)
                except (Rejection, KeyboardInterrupt):
                    raise
                except Exception as exc:  # every drop gets a final result
                    if self._fault(exc) is not None:
                        raise
                    raise self.results.failure(file, exc) from None
            except Rejection as rejection:
                outcome = Outcome(file, "rejected", code=rejection.code, reason=rejection.reason)
                with self.inventory.transaction():
                    self.inventory.record_drop(
                        claim.id,
                        file,
                        "rejected",
                        iso(self.clock()),
                        rejection.code,
                        rejection.reason,
                    )
                self.results.finish(self.files, claim, outcome)
                return outcome
        except BaseException as exc:  # noqa: BLE001 - re-raised, as a fault if it is one
            claim.close()
            raise self._fault(exc) or exc from None

    def _start(self, claim: Claim, file: str, work: Work) -> Outcome | None:
        data = self.files.read(claim)
        seen = summary(data)
        on_request = self.on_request if file.endswith(REQUEST_SUFFIX) else None
        is_request = on_request is not None
        costly = not is_request and derives_keys(data)

        def in_child(runs: int) -> bool:
            # A key derivation may run, or a dead daemon run was processing this very drop.
            return not is_request and (costly or runs > 1)

        runs = attempts.begin(
            self.inventory, claim.id, file, seen, self.run_id, iso(self.clock()), in_child=in_child
        )
        if runs > MAX_RUNS:
            raise Rejection(
                "processing_failed",
                f"certdrop stopped {runs - 1} times while processing this file ({seen}), so "
                "it is not tried again and nothing of it was imported. Check the file; if "
                "it is valid, report this with the status log",
            )
        if on_request is not None:
            outcome = on_request(file, data, claim.id)
            self.results.finish(self.files, claim, outcome)
            return outcome
        limits = self.config.limits
        if not in_child(runs):
            return self._conclude(claim, file, parse(data, self.passphrases, limits), work)
        # Open it in the bounded child, without the worker waiting when it need not.
        if self.later is None:
            opened = self.opener.open(data, self.passphrases, limits)
            attempts.back_in_daemon(self.inventory, claim.id)
            return self._conclude(claim, file, opened, work)
        self._in_flight.add(claim.id)
        self.opener.open_later(
            data, self.passphrases, limits, lambda result: self._opened(claim, file, result)
        )
        return None

    def _opened(self, claim: Claim, file: str, result: Parsed | Rejection) -> None:
        """The opener's thread: hand the result back to the worker."""
        assert self.later is not None

        def resume() -> Outcome | None:
            self._in_flight.discard(claim.id)

            def conclude(work: Work) -> Outcome:
                attempts.back_in_daemon(self.inventory, claim.id)
                return self._conclude(claim, file, result, work)

            return self._guarded(claim, file, conclude)

        self.later(file, resume)

    def _conclude(
        self, claim: Claim, file: str, parsed: Parsed | Rejection, work: Work
    ) -> Outcome:
        if isinstance(parsed, Rejection):
            raise parsed
        pieces = assemble.sort_pieces(parsed)
        try:
            with self.inventory.transaction():
                self.take(pieces, file, work)
                held_only = work.held and not (work.recorded or work.duplicates)
                result = "held" if held_only else "accepted"
                self.inventory.record_drop(claim.id, file, result, iso(self.clock()))
        finally:
            self.pool.settle()
        for level, event, fields in work.events:
            getattr(self.log, level)(event, **fields)
        outcome = Outcome(file, result, work.recorded)
        self.results.finish(self.files, claim, outcome, work)
        return outcome
