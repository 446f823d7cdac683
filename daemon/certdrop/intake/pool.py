"""The intermediate pool as chain building sees it: the inventory's ``pool`` table behind
a bounded cache of subjects.

Every issuing certificate a drop brings is kept (it completes later chains), so the table
only grows; holding all of it parsed in memory, and scanning it for every leaf, made one
drop of 888 CA certificates slow every later drop fourfold. Chain building asks only for
the subjects a chain names: those are read from the table (by an index on the subject)
and kept in a least-recently-used cache of ``SUBJECTS`` names.
"""

from __future__ import annotations

from collections import OrderedDict

from cryptography import x509

from certdrop.pki import chain as chains
from certdrop.store.inventory import Inventory

SUBJECTS = 1024  # subject names kept parsed in memory
PER_SUBJECT = 64  # certificates read for one name: more is padding, not a real CA


class PoolCache:
    """:class:`~certdrop.pki.pool.Issuers` over the inventory; owned by the worker."""

    def __init__(self, inventory: Inventory) -> None:
        self.inventory = inventory
        self._cache: OrderedDict[bytes, list[x509.Certificate]] = OrderedDict()
        self._touched: set[bytes] = set()
        self.reads = 0  # table reads (misses), for the benchmark and a test

    def named(self, name: x509.Name) -> list[x509.Certificate]:
        key = name.public_bytes()
        found = self._cache.get(key)
        if found is not None:
            self._cache.move_to_end(key)
            return found
        self.reads += 1
        found = [
            cert
            for pem in self.inventory.pool_named(chains.describe_name(name), PER_SUBJECT)
            for cert in chains.from_pem(pem)
            if cert.subject.public_bytes() == key  # the text form can be ambiguous
        ]
        self._cache[key] = found
        if len(self._cache) > SUBJECTS:
            self._cache.popitem(last=False)
        return found

    def add(self, cert: x509.Certificate) -> bool:
        """Pool ``cert`` (inside the drop's transaction); False when it was there."""
        if cert in self.named(cert.subject):
            return False  # the usual case: the same intermediates again, no SQLite write
        added = self.inventory.add_to_pool(
            chains.fingerprint(cert), chains.to_pem([cert]), chains.describe_name(cert.subject)
        )
        self._touched.add(cert.subject.public_bytes())
        return added

    def settle(self) -> None:
        """After the drop's transaction, committed or rolled back: forget the names it
        changed, so the cache never holds what a rollback undid."""
        for key in self._touched:
            self._cache.pop(key, None)
        self._touched.clear()

    def __len__(self) -> int:
        return len(self._cache)
