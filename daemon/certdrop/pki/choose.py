"""Which certificate a service with a ``hostname`` gets. Pure: the verdict is passed in."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass

from cryptography import x509

from certdrop.pki.trust import Verdict


@dataclass(frozen=True)
class Candidate:
    """An inventory entry that could be assigned: its name, leaf, stored bundle and age."""

    name: str
    cert: x509.Certificate
    chain: tuple[x509.Certificate, ...]
    created: str


def newest_first(candidates: Iterable[Candidate]) -> list[Candidate]:
    """Latest not-before first, then latest expiry; ties to the entry recorded last, then
    to the name, so the order never depends on the order the candidates come in."""
    return sorted(
        candidates,
        key=lambda c: (c.cert.not_valid_before_utc, c.cert.not_valid_after_utc, c.created, c.name),
        reverse=True,
    )


def best_for_host(
    candidates: Iterable[Candidate], judge: Callable[[Candidate], Verdict]
) -> Candidate | None:
    """The newest candidate the verifier trusts for the service's role and hostname
    (``judge``); older ones are not judged once one is found."""
    return next((c for c in newest_first(candidates) if judge(c).trusted), None)
