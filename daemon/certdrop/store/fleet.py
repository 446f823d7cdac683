"""The inventory's fleet tables: the outbox, the pinned founder, the decisions applied.

The outbox is filled by triggers, so a certificate or request recorded, a certificate or
request deleted or a service changed puts its row in the outbox in the very transaction that
made the change, whichever code made it (intake, deploy, renewal, a CLI command with the
daemon stopped). A trigger row names
what changed (``kind``, ``ref``); the record is built from the inventory when it is
published, so it carries the latest state; ``queued`` (to the millisecond) is when the
change was made, the stamp of a certificate or withdrawal record. Decisions made here
(assignments, approvals) are signed when made and queued with their bytes. A row goes
when the engine has it.
"""

from __future__ import annotations

from dataclasses import dataclass

from certdrop.store.inventory import Inventory

SCHEMA = """
CREATE TABLE IF NOT EXISTS fleet_outbox (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    kind TEXT NOT NULL,          -- certificate | withdraw | request | service | record | delete
    ref TEXT NOT NULL,           -- sha256, key_id, service name, or bucket/key
    record BLOB,                 -- the signed bytes (kind = record), the deleted entry's
                                 -- key_id and name (withdraw), else built at publish
    queued TEXT NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%SZ', 'now')),
    UNIQUE (kind, ref)
);
CREATE TABLE IF NOT EXISTS fleet_meta (name TEXT PRIMARY KEY, value BLOB NOT NULL);
CREATE TABLE IF NOT EXISTS fleet_applied (
    service TEXT PRIMARY KEY, at INTEGER NOT NULL, by TEXT NOT NULL, sha256 TEXT
);
CREATE TABLE IF NOT EXISTS fleet_withdrawals (
    sha256 TEXT PRIMARY KEY, at INTEGER NOT NULL, by TEXT NOT NULL
);
"""
# A changed row gets a new id (delete, then insert), so a publish of its older state that
# finishes later deletes nothing (``done`` matches on id) and the newer state goes out.
# Not INSERT OR REPLACE: inside a trigger, the outer statement's conflict policy (the
# services table is written by upserts) would override it.
TRIGGERS = """
-- A certificate recorded is a new decision: it replaces a withdrawal still queued.
CREATE TRIGGER IF NOT EXISTS fleet_certificate_recorded AFTER INSERT ON certificates
WHEN NEW.sha256 IS NOT NULL AND NEW.cert_pem IS NOT NULL
BEGIN
  DELETE FROM fleet_outbox WHERE kind IN ('certificate', 'withdraw') AND ref = NEW.sha256;
  INSERT INTO fleet_outbox (kind, ref, queued)
    VALUES ('certificate', NEW.sha256, strftime('%Y-%m-%dT%H:%M:%fZ', 'now'));
END;
-- A certificate deleted (`certdrop delete`) is withdrawn from the fleet. A withdrawal
-- received from the fleet unqueues its row (``forget``): it is not this gateway's.
CREATE TRIGGER IF NOT EXISTS fleet_certificate_deleted AFTER DELETE ON certificates
WHEN OLD.sha256 IS NOT NULL AND OLD.cert_pem IS NOT NULL AND OLD.status != 'requested'
BEGIN
  DELETE FROM fleet_outbox WHERE kind IN ('certificate', 'withdraw') AND ref = OLD.sha256;
  INSERT INTO fleet_outbox (kind, ref, record, queued)
    VALUES ('withdraw', OLD.sha256, json_object('key_id', OLD.key_id, 'name', OLD.name),
            strftime('%Y-%m-%dT%H:%M:%fZ', 'now'));
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
    "fleet_certificate_deleted",
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
    queued: str = ""  # when the change was made (ISO 8601, UTC)


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
        "SELECT id, kind, ref, record, queued FROM fleet_outbox WHERE id > ? ORDER BY id LIMIT ?",
        (after, limit),
    )
    return [_queued(r) for r in rows]


def queued_about(inventory: Inventory, kind: str, ref: str) -> Queued | None:
    """The outbox row of ``kind`` for ``ref``, if one waits (a change not yet published)."""
    r = inventory.db.execute(
        "SELECT id, kind, ref, record, queued FROM fleet_outbox WHERE kind = ? AND ref = ?",
        (kind, ref),
    ).fetchone()
    return None if r is None else _queued(r)


def _queued(r: tuple[object, ...]) -> Queued:
    record = r[3]  # signed bytes, or a trigger's JSON text
    blob = record if isinstance(record, bytes) else None if record is None else str(record).encode()
    return Queued(int(str(r[0])), str(r[1]), str(r[2]), blob, str(r[4]))


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


def withdrawal_applied(inventory: Inventory, sha256: str) -> tuple[int, str] | None:
    """The stamp of the fleet's withdrawal of ``sha256`` last applied here."""
    row = inventory.db.execute(
        "SELECT at, by FROM fleet_withdrawals WHERE sha256 = ?", (sha256,)
    ).fetchone()
    return None if row is None else (int(row[0]), str(row[1]))


def set_withdrawal_applied(inventory: Inventory, sha256: str, at: int, by: str) -> None:
    inventory.db.execute(
        "INSERT OR REPLACE INTO fleet_withdrawals (sha256, at, by) VALUES (?, ?, ?)",
        (sha256, at, by),
    )
