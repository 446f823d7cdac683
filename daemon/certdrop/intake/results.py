"""A drop's final result: its one final event, its reason file, its claim cleared.

Split from the pipeline so that both a processed drop and a recovered one (its result
already committed, its claim not yet cleared) end the same way, once.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from typing import Any

from certdrop.clock import iso
from certdrop.errors import Rejection
from certdrop.intake.inbox import Claim, Inbox
from certdrop.intake.work import Outcome, Work
from certdrop.store.eventlog import Logger


class Results:
    """Ends drops; remembers which final events this run has logged already, so a retry
    after a storage fault (the claim could not be cleared) does not log them twice."""

    def __init__(self, log: Logger, clock: Callable[[], datetime]) -> None:
        self.log = log
        self.clock = clock
        self._announced: set[str] = set()

    def failure(self, file: str, exc: Exception) -> Rejection:
        """A bug or a library's surprise: the drop is rejected, never left to repeat."""
        self.log.error(
            "daemon.job_failed",
            job="drop",
            file=file,
            error=type(exc).__name__,
            detail=str(exc)[:200],
        )
        return Rejection(
            "processing_failed",
            f"certdrop failed while processing this file ({type(exc).__name__}); nothing of "
            "it was imported. Check the file; if it is valid, report this with the status log",
        )

    def finish(
        self, files: Inbox, claim: Claim, outcome: Outcome, work: Work | None = None
    ) -> None:
        """Log the drop's one final event and clear the claim (the result is committed).

        The event comes before the claim is cleared: a kill -9 in between repeats it at
        recovery (same file, same result) instead of losing it.
        """
        announce = claim.id not in self._announced
        if outcome.result == "rejected":
            reason = {
                "file": outcome.file,
                "code": outcome.code,
                "reason": outcome.reason,
                "at": iso(self.clock()),
            }

            def rejected() -> None:
                if announce:
                    self.log.warning(
                        "drop.rejected", file=outcome.file, code=outcome.code, reason=outcome.reason
                    )
                    self._announced.add(claim.id)

            files.reject(claim, reason, announce=rejected)
        else:
            if announce:
                self._announce(outcome, work)
                self._announced.add(claim.id)
            files.remove(claim)
        self._announced.discard(claim.id)

    def _announce(self, outcome: Outcome, work: Work | None) -> None:
        if outcome.result == "held":
            self.log.info("drop.held", file=outcome.file, held=work.held if work else [])
            return
        extra: dict[str, Any] = {}
        if work is not None:
            extra = {
                "held": work.held,
                "duplicate_of": work.duplicates,
                "intermediates": work.intermediates,
            }
            extra = {k: v for k, v in extra.items() if v}
        self.log.info("drop.accepted", file=outcome.file, certificates=outcome.recorded, **extra)
