"""Issuing certificates found by the name they are looked up by. Pure.

Chain building asks one question: which certificates have this subject? A list of every
known intermediate answered it by scanning (and re-encoding) all of them for every leaf,
so after one drop of 888 CA certificates each later drop was 4x slower. :class:`Pool`
answers it from an index on the subject's DER; :class:`Issuers` is what chain building
takes, so the shell can back it with a bounded cache over the inventory.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from typing import Protocol, runtime_checkable

from cryptography import x509
from cryptography.hazmat.primitives.serialization import Encoding


@runtime_checkable
class Issuers(Protocol):
    """Certificates by subject: the candidates for issuing a certificate named so."""

    def named(self, name: x509.Name) -> Iterable[x509.Certificate]: ...


class Pool:
    """An in-memory index of certificates by subject DER; duplicates (same DER) collapse."""

    def __init__(self, certs: Iterable[x509.Certificate] = ()) -> None:
        self._by_subject: dict[bytes, dict[bytes, x509.Certificate]] = {}
        for cert in certs:
            self.add(cert)

    def add(self, cert: x509.Certificate) -> bool:
        """Index ``cert``; False when the very same certificate is there already."""
        same = self._by_subject.setdefault(cert.subject.public_bytes(), {})
        der = cert.public_bytes(Encoding.DER)
        if der in same:
            return False
        same[der] = cert
        return True

    def named(self, name: x509.Name) -> list[x509.Certificate]:
        return list(self._by_subject.get(name.public_bytes(), {}).values())

    def __contains__(self, cert: object) -> bool:
        if not isinstance(cert, x509.Certificate):
            return False
        same = self._by_subject.get(cert.subject.public_bytes(), {})
        return cert.public_bytes(Encoding.DER) in same

    def __iter__(self) -> Iterator[x509.Certificate]:
        for same in self._by_subject.values():
            yield from same.values()

    def __len__(self) -> int:
        return sum(len(same) for same in self._by_subject.values())


class Both:
    """Several sources of issuers asked in order (a drop's own, then the pool's)."""

    def __init__(self, *sources: Issuers) -> None:
        self.sources = sources

    def named(self, name: x509.Name) -> list[x509.Certificate]:
        return [cert for source in self.sources for cert in source.named(name)]


def issuers(candidates: Iterable[x509.Certificate] | Issuers) -> Issuers:
    """``candidates`` as Issuers: an index is used as it is, a list is indexed once."""
    if isinstance(candidates, Issuers):
        return candidates
    return Pool(candidates)


def reachable(
    leaf: x509.Certificate, source: Issuers, limit: int = 64
) -> list[x509.Certificate]:
    """Every certificate of ``source`` that could be on a path from ``leaf``: its issuer
    by name, their issuers, and so on (at most ``limit``; cross-signed ones included)."""
    found: dict[bytes, x509.Certificate] = {}
    wanted = [leaf.issuer]
    seen: set[bytes] = set()
    while wanted and len(found) < limit:
        name = wanted.pop()
        key = name.public_bytes()
        if key in seen:
            continue
        seen.add(key)
        for cert in source.named(name):
            der = cert.public_bytes(Encoding.DER)
            if der not in found and len(found) < limit:
                found[der] = cert
                if cert.issuer != cert.subject:
                    wanted.append(cert.issuer)
    return list(found.values())
