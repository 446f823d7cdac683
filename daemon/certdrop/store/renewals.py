"""What the expiry watch remembers in the inventory: thresholds warned about and renewals.

Thin typed access to the ``warnings`` and ``renewals`` tables (and the certificates in
use), shared by the daemon and the read-only ``certdrop check``. Writes happen inside the
caller's transaction.

A renewal row is keyed by the certificate it renews, so there is at most one per
certificate, also across restarts. Its ``state``:

- ``pending``: the renewal CSR is in the outbox; the command runs at ``next_attempt``
  (never, when no ``renewal.command`` is set: a person takes the CSR to a CA).
  ``request`` is empty while the CSR itself could not be made (``detail`` says why).
- ``running``: the command runs now (a row left ``running`` by a crash runs again).
- ``handed_off``: the command exited 0; the certificate has not arrived yet.
- ``completed``: the renewed certificate arrived and took over the services.
- ``cancelled``: the certificate stopped being in use before its renewal arrived.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterable
from dataclasses import dataclass, replace
from datetime import UTC, datetime

from certdrop.clock import iso
from certdrop.pki.expiry import Lifetime
from certdrop.store.inventory import Inventory

OPEN_STATES = frozenset({"pending", "running", "handed_off"})


@dataclass(frozen=True)
class Renewal:
    """One row of the ``renewals`` table."""

    cert: str
    request: str
    state: str
    attempts: int
    next_attempt: datetime | None
    started: datetime
    detail: str

    @property
    def open(self) -> bool:
        return self.state in OPEN_STATES

    def but(self, **changes: object) -> Renewal:
        return replace(self, **changes)  # type: ignore[arg-type]

    @classmethod
    def from_row(cls, row: sqlite3.Row) -> Renewal:
        nxt = row["next_attempt"]
        return cls(
            cert=row["cert"],
            request=row["request"],
            state=row["state"],
            attempts=int(row["attempts"]),
            next_attempt=datetime.fromisoformat(nxt) if nxt else None,
            started=datetime.fromisoformat(row["started"]),
            detail=row["detail"],
        )


@dataclass(frozen=True)
class InUse:
    """A certificate in use, with what the watch needs to know about it.

    ``desired``: some service should have it (status ``in_use``); False for one that a
    service still serves after a failed deploy of its successor (watched, not renewed).
    """

    name: str
    sha256: str
    lifetime: Lifetime
    not_after: str
    services: tuple[str, ...]
    desired: bool = True


def in_use(inventory: Inventory, configured: Iterable[str]) -> list[InUse]:
    """Certificates that configured services should have or verifiably serve, soonest
    expiry first, each with the services that want or serve it."""
    keep = set(configured)
    services: dict[str, set[str]] = {}
    served: set[str] = set()
    for row in inventory.db.execute("SELECT name, desired, deployed_sha256 FROM services"):
        if row["name"] not in keep:
            continue
        if row["desired"]:
            services.setdefault(row["desired"], set()).add(row["name"])
        if row["deployed_sha256"]:
            served.add(row["deployed_sha256"])
            services.setdefault(row["deployed_sha256"], set()).add(row["name"])
    found = []
    for row in inventory.db.execute(
        "SELECT name, status, sha256, not_before, not_after FROM certificates "
        "WHERE sha256 IS NOT NULL AND (status = 'in_use' OR sha256 IN "
        "(SELECT deployed_sha256 FROM services)) ORDER BY not_after, name"
    ):
        desired = row["status"] == "in_use"
        if not desired and row["sha256"] not in served:
            continue
        names = services.get(row["name"], set()) | services.get(row["sha256"], set())
        found.append(
            InUse(
                name=row["name"],
                sha256=row["sha256"],
                lifetime=Lifetime.from_iso(row["not_before"], row["not_after"]),
                not_after=row["not_after"],
                services=tuple(sorted(names)),
                desired=desired,
            )
        )
    return found


def services_of(inventory: Inventory, name: str) -> list[str]:
    """The services whose desired certificate is ``name``."""
    return [
        r[0]
        for r in inventory.db.execute(
            "SELECT name FROM services WHERE desired = ? ORDER BY name", (name,)
        )
    ]


def warned(inventory: Inventory, sha256: str) -> frozenset[str]:
    rows = inventory.db.execute("SELECT threshold FROM warnings WHERE sha256 = ?", (sha256,))
    return frozenset(r[0] for r in rows)


def remember(inventory: Inventory, sha256: str, labels: Iterable[str], now: datetime) -> None:
    inventory.db.executemany(
        "INSERT OR IGNORE INTO warnings (sha256, threshold, at) VALUES (?, ?, ?)",
        [(sha256, label, iso(now)) for label in labels],
    )


def renewals(inventory: Inventory) -> dict[str, Renewal]:
    """Every renewal row, by the name of the certificate it renews."""
    return {
        row["cert"]: Renewal.from_row(row)
        for row in inventory.db.execute("SELECT * FROM renewals ORDER BY cert")
    }


def renewal(inventory: Inventory, cert: str) -> Renewal | None:
    row = inventory.db.execute("SELECT * FROM renewals WHERE cert = ?", (cert,)).fetchone()
    return None if row is None else Renewal.from_row(row)


def renewal_by_request(inventory: Inventory, request: str) -> Renewal | None:
    row = inventory.db.execute(
        "SELECT * FROM renewals WHERE request = ? AND request != ''", (request,)
    ).fetchone()
    return None if row is None else Renewal.from_row(row)


def save(inventory: Inventory, r: Renewal) -> None:
    inventory.db.execute(
        "INSERT OR REPLACE INTO renewals "
        "(cert, request, state, attempts, next_attempt, started, detail) "
        "VALUES (?, ?, ?, ?, ?, ?, ?)",
        (
            r.cert,
            r.request,
            r.state,
            r.attempts,
            # Full precision: retry delays may be under a second (tests, impatient people).
            r.next_attempt.astimezone(UTC).isoformat() if r.next_attempt else None,
            iso(r.started),
            r.detail,
        ),
    )


STAGES = ("request", "command", "deploy")  # where a renewal attempt can fail


def count_failure(inventory: Inventory, stage: str) -> None:
    """Count one failed renewal attempt at ``stage`` (inside the caller's transaction)."""
    inventory.bump(f"renewal_failures:{stage}")


def failures(inventory: Inventory) -> dict[str, int]:
    """Failed renewal attempts ever, by stage (every stage present, 0 when none)."""
    counts = inventory.counters()
    return {stage: counts.get(f"renewal_failures:{stage}", 0) for stage in STAGES}


def csr_pem(inventory: Inventory, name: str) -> bytes | None:
    row = inventory.db.execute("SELECT csr_pem FROM certificates WHERE name = ?", (name,))
    found = row.fetchone()
    return None if found is None or found[0] is None else bytes(found[0])


def open_request_for(inventory: Inventory, cert: str) -> str | None:
    """A ``requested`` entry that renews ``cert`` (one a crash left without its row)."""
    row = inventory.db.execute(
        "SELECT name FROM certificates WHERE renews = ? AND status = 'requested' "
        "ORDER BY created DESC LIMIT 1",
        (cert,),
    ).fetchone()
    return None if row is None else str(row[0])
