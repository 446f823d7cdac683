"""The inventory's fleet tables: the outbox, the pinned founder, the decisions applied.

The outbox is filled by triggers, so a certificate or request recorded, a request
deleted or a service changed puts its row in the outbox in the very transaction that
made the change, whichever code made it (intake, deploy, renewal, a CLI command with the
daemon stopped). A trigger row names
what changed (``kind``, ``ref``); the record is built from the inventory when it is
published, so it carries the latest state. Decisions made here (assignments, approvals)
are signed when made and queued with their bytes. A row goes when the engine has it.
"""

from __future__ import annotations

from dataclasses import dataclass

from certdrop.store.inventory import Inventory

SCHEMA = """
CREATE TABLE IF NOT EXISTS fleet_outbox (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    kind TEXT NOT NULL,          -- certificate | request | service | record | delete
    ref TEXT NOT NULL,           -- sha256, key_id, service name, or bucket/key
    record BLOB,                 -- the signed bytes (kind = record), else built at publish
    queued TEXT NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%SZ', 'now')),
    UNIQUE (kind, ref)
);
CREATE TABLE IF NOT EXISTS fleet_meta (name TEXT PRIMARY KEY, value BLOB NOT NULL);
CREATE TABLE IF NOT EXISTS fleet_applied (
    service TEXT PRIMARY KEY, at INTEGER NOT NULL, by TEXT NOT NULL, sha256 TEXT
);
"""
# A changed row gets a new id (delete, then insert), so a publish of its older state that
# finishes later deletes nothing (``done`` matches on id) and the newer state goes out.
# Not INSERT OR REPLACE: inside a trigger, the outer statement's conflict policy (the
# services table is written by upserts) would override it.
TRIGGERS = """
CREATE TRIGGER IF NOT EXISTS fleet_certificate_recorded AFTER INSERT ON certificates
WHEN NEW.sha256 IS NOT NULL AND NEW.cert_pem IS NOT NULL
BEGIN
  DELETE FROM fleet_outbox WHERE kind = 'certificate' AND ref = NEW.sha256;
  INSERT INTO fleet_outbox (kind, ref) VALUES ('certificate', NEW.sha256);
END;
CREATE TRIGGER IF NOT EXISTS fleet_request_recorded AFTER INSERT ON certificates
WHEN NEW.status = 'requested'
BEGIN
  DELETE FROM fleet_outbox WHERE kind = 'request' AND ref = NEW.key_id;
  INSERT INTO fleet_outbox (kind, ref) VALUES ('request', NEW.key_id);
END;
-- A request deleted (not one fulfilled: the certificate replaces its row by INSERT OR
-- REPLACE, which fires no delete trigger while recursive_triggers is off).
CREATE TRIGGER IF NOT EXISTS fleet_request_deleted AFTER DELETE ON certificates
WHEN OLD.status = 'requested'
BEGIN
  DELETE FROM fleet_outbox WHERE kind = 'delete' AND ref = 'certdrop_certs/req.' || OLD.key_id;
  INSERT INTO fleet_outbox (kind, ref) VALUES ('delete', 'certdrop_certs/req.' || OLD.key_id);
END;
CREATE TRIGGER IF NOT EXISTS fleet_service_added AFTER INSERT ON services
BEGIN
  DELETE FROM fleet_outbox WHERE kind = 'service' AND ref = NEW.name;
  INSERT INTO fleet_outbox (kind, ref) VALUES ('service', NEW.name);
END;
CREATE TRIGGER IF NOT EXISTS fleet_service_changed AFTER UPDATE ON services
BEGIN
  DELETE FROM fleet_outbox WHERE kind = 'service' AND ref = NEW.name;
  INSERT INTO fleet_outbox (kind, ref) VALUES ('service', NEW.name);
END;
"""
_TRIGGER_NAMES = (
    "fleet_certificate_recorded",
    "fleet_request_recorded",
    "fleet_request_deleted",
    "fleet_service_added",
    "fleet_service_changed",
)


@dataclass(frozen=True)
class Queued:
    """One outbox row."""

    id: int
    kind: str
    ref: str
    record: bytes | None


def enable(inventory: Inventory) -> None:
    """Fleet mode on: the tables and the outbox triggers exist (idempotent; triggers
    made by an older version are replaced)."""
    disable(inventory)
    inventory.db.executescript(SCHEMA + TRIGGERS)


def disable(inventory: Inventory) -> None:
    """No [fleet] table: drop the triggers (a single gateway queues nothing)."""
    for name in _TRIGGER_NAMES:
        inventory.db.execute(f"DROP TRIGGER IF EXISTS {name}")


def queue_record(inventory: Inventory, bucket: str, key: str, record: bytes) -> None:
    """Queue signed bytes for ``bucket``/``key``; a newer decision replaces a queued one."""
    inventory.db.execute(
        "INSERT OR REPLACE INTO fleet_outbox (kind, ref, record) VALUES ('record', ?, ?)",
        (f"{bucket}/{key}", record),
    )


def queue_delete(inventory: Inventory, bucket: str, key: str) -> None:
    """Queue the deletion of ``bucket``/``key`` (a revoked gateway's sealed keys)."""
    inventory.db.execute(
        "INSERT OR REPLACE INTO fleet_outbox (kind, ref) VALUES ('delete', ?)", (f"{bucket}/{key}",)
    )


def forget(inventory: Inventory, kind: str, ref: str) -> None:
    """Unqueue what a trigger just queued for a change that came from the fleet (a
    request received or withdrawn here is not this gateway's to publish)."""
    inventory.db.execute("DELETE FROM fleet_outbox WHERE kind = ? AND ref = ?", (kind, ref))


def pending(inventory: Inventory, limit: int = 200, after: int = 0) -> list[Queued]:
    rows = inventory.db.execute(
        "SELECT id, kind, ref, record FROM fleet_outbox WHERE id > ? ORDER BY id LIMIT ?",
        (after, limit),
    )
    return [Queued(r[0], r[1], r[2], None if r[3] is None else bytes(r[3])) for r in rows]


def count(inventory: Inventory) -> int:
    try:
        return int(inventory.db.execute("SELECT COUNT(*) FROM fleet_outbox").fetchone()[0])
    except Exception:  # noqa: BLE001 - no fleet tables (single gateway): nothing queued
        return 0


def done(inventory: Inventory, ids: list[int]) -> None:
    inventory.db.executemany("DELETE FROM fleet_outbox WHERE id = ?", [(i,) for i in ids])


def pinned(inventory: Inventory, name: str) -> bytes | None:
    row = inventory.db.execute("SELECT value FROM fleet_meta WHERE name = ?", (name,)).fetchone()
    return None if row is None else bytes(row[0])


def pin(inventory: Inventory, name: str, value: bytes) -> None:
    inventory.db.execute(
        "INSERT OR REPLACE INTO fleet_meta (name, value) VALUES (?, ?)", (name, value)
    )


def applied(inventory: Inventory, service: str) -> tuple[int, str] | None:
    """The stamp of the fleet decision last applied to ``service`` here."""
    row = inventory.db.execute(
        "SELECT at, by FROM fleet_applied WHERE service = ?", (service,)
    ).fetchone()
    return None if row is None else (int(row[0]), str(row[1]))


def set_applied(inventory: Inventory, service: str, at: int, by: str, sha256: str | None) -> None:
    inventory.db.execute(
        "INSERT OR REPLACE INTO fleet_applied (service, at, by, sha256) VALUES (?, ?, ?, ?)",
        (service, at, by, sha256),
    )
