"""The operator's edits of the inventory: rename, delete, unassign, discard a held piece.

Every function but :func:`erasing` runs inside the caller's transaction. Deleting key
material goes through :func:`erasing`, so the key's bytes do not linger in free pages
of the database or in frames of its WAL.
"""

from __future__ import annotations

import contextlib
import sqlite3
from collections.abc import Iterator

from certdrop.store.inventory import Inventory
from certdrop.store.rows import Held


def rename(inventory: Inventory, old: str, new: str) -> None:
    """Entry ``old`` is called ``new`` from now on, wherever the inventory names it."""
    db = inventory.db
    db.execute("UPDATE certificates SET name = ? WHERE name = ?", (new, old))
    db.execute("UPDATE certificates SET renews = ? WHERE renews = ?", (new, old))
    db.execute("UPDATE services SET desired = ? WHERE desired = ?", (new, old))
    db.execute("UPDATE renewals SET cert = ? WHERE cert = ?", (new, old))
    db.execute("UPDATE renewals SET request = ? WHERE request = ? AND request != ''", (new, old))


def delete(inventory: Inventory, name: str) -> bool:
    """Remove entry ``name``, its key, its renewal row and its warnings; True when no
    other entry holds the same key (so the key is gone from the inventory)."""
    db = inventory.db
    row = db.execute("SELECT key_id, sha256 FROM certificates WHERE name = ?", (name,)).fetchone()
    if row is None:
        return False
    key_id, sha256 = row[0], row[1]
    db.execute("DELETE FROM certificates WHERE name = ?", (name,))
    db.execute("DELETE FROM renewals WHERE cert = ?", (name,))
    if sha256:
        db.execute("DELETE FROM warnings WHERE sha256 = ?", (sha256,))
    others = db.execute("SELECT 1 FROM certificates WHERE key_id = ? LIMIT 1", (key_id,))
    return others.fetchone() is None


def key_holders(inventory: Inventory, name: str) -> list[str]:
    """Other entries that hold the same key as ``name`` (a re-issued certificate)."""
    rows = inventory.db.execute(
        "SELECT other.name FROM certificates AS me JOIN certificates AS other "
        "ON other.key_id = me.key_id AND other.name != me.name WHERE me.name = ? "
        "ORDER BY other.name",
        (name,),
    )
    return [str(r[0]) for r in rows]


def unassign(inventory: Inventory, service: str, detail: str, at: str) -> str | None:
    """Stop managing ``service``: no desired certificate, nothing proven, and no
    hostname auto-assignment until the next ``assign``. Returns what it wanted before."""
    db = inventory.db
    before = db.execute("SELECT desired FROM services WHERE name = ?", (service,)).fetchone()
    db.execute(
        "INSERT INTO services (name, desired, deployed_sha256, state, detail, updated, managed) "
        "VALUES (?, NULL, NULL, 'pending', ?, ?, 0) ON CONFLICT (name) DO UPDATE SET "
        "desired = NULL, deployed_sha256 = NULL, state = 'pending', detail = excluded.detail, "
        "updated = excluded.updated, managed = 0",
        (service, detail, at),
    )
    return None if before is None else before[0]


def held_piece(inventory: Inventory, piece: int) -> Held | None:
    """The held piece with id ``piece``, with its bytes."""
    row = inventory.db.execute(
        "SELECT id, kind, key_id, pem, from_file, since FROM held WHERE id = ?", (piece,)
    ).fetchone()
    return None if row is None else Held.from_row(row)


def discard_held(inventory: Inventory, piece: int) -> None:
    inventory.db.execute("DELETE FROM held WHERE id = ?", (piece,))


@contextlib.contextmanager
def erasing(inventory: Inventory) -> Iterator[None]:
    """A transaction whose deleted rows are overwritten, not just unlinked
    (``secure_delete``), followed by a checkpoint that empties the WAL, where older
    copies of the pages would otherwise stay until it is reused."""
    db = inventory.db
    db.execute("PRAGMA secure_delete = ON")
    try:
        with inventory.transaction():
            yield
    finally:
        db.execute("PRAGMA secure_delete = OFF")
    with contextlib.suppress(sqlite3.Error):  # a reader may hold the WAL; best effort
        db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
