"""Which certificate a service with a ``hostname`` gets. Pure: ``now`` is passed in."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime

from cryptography import x509

from certdrop.pki import chain as chains


@dataclass(frozen=True)
class Candidate:
    """An inventory entry that could be assigned: its name, leaf and chain verdict."""

    name: str
    cert: x509.Certificate
    trusted: bool
    created: str


def usable_for(candidate: Candidate, hostname: str, now: datetime) -> bool:
    """True when the candidate covers ``hostname``, reaches a trusted root and is valid now."""
    return (
        candidate.trusted
        and chains.covers(candidate.cert, hostname)
        and chains.validity_problem(candidate.cert, now) is None
    )


def best_for_host(
    hostname: str, candidates: Iterable[Candidate], now: datetime
) -> Candidate | None:
    """The newest usable candidate for ``hostname`` (latest not-before, then latest expiry).

    Ties go to the entry recorded last, then to the name, so the answer never depends on
    the order the candidates come in.
    """
    usable = [c for c in candidates if usable_for(c, hostname, now)]
    return max(
        usable,
        key=lambda c: (c.cert.not_valid_before_utc, c.cert.not_valid_after_utc, c.created, c.name),
        default=None,
    )
