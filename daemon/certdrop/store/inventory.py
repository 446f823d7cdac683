"""The inventory: one SQLite database in the state folder, changed only in transactions.

Keys live in this database; the state folder is 0700 and the process umask 077, so the
database and its WAL are 0600 from their first byte.
"""

from __future__ import annotations

import json
import os
import shutil
import sqlite3
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any
from urllib.parse import quote

from certdrop.store.rows import DropRow, Entry, Held, Judged, ServiceRow, Summary
from certdrop.store.schema import ADDED_COLUMNS, SCHEMA

_SUMMARY_ORDER = {"name": "name", "expiry": "not_after IS NULL, not_after, name"}

_ENTRY_COLUMNS = (
    "name, status, key_id, sha256, cert_pem, chain_pem, trusted, trust_detail, subject, sans, "
    "issuer, "
    "not_before, not_after, key_type, key_bits, request, renews, created"
)


class Inventory:
    """Typed access to the state database. Not thread-safe: one owner thread at a time."""

    def __init__(self, path: Path, *, readonly: bool = False) -> None:
        self.path = path
        if readonly:
            self.db = sqlite3.connect(f"file:{quote(str(path))}?mode=ro", uri=True, timeout=10)
        else:
            # Created 0600 here whatever the umask: SQLite would make it 0644 & ~umask, and
            # it gives the -wal and -shm files the database file's mode.
            if str(path) != ":memory:":
                os.close(os.open(path, os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW, 0o600))
            # One owner at a time (start-up, then the worker), so crossing threads is safe.
            self.db = sqlite3.connect(
                path, timeout=10, isolation_level=None, check_same_thread=False
            )
            # WAL + NORMAL: a commit survives kill -9 (the WAL is in the page cache);
            # only a power cut can lose the last commits, never corrupt the database.
            self.db.execute("PRAGMA journal_mode=WAL")
            self.db.execute("PRAGMA synchronous=NORMAL")
            self.db.executescript(SCHEMA)
            self._add_columns()
        self.db.row_factory = sqlite3.Row
        columns = {r[1] for r in self.db.execute("PRAGMA table_info(services)")}
        # An older database opened read-only lacks the new column; every service is managed.
        self._managed = "managed" if "managed" in columns or not columns else "1 AS managed"

    def _add_columns(self) -> None:
        for (table, column), sql in ADDED_COLUMNS.items():
            have = {r[1] for r in self.db.execute(f"PRAGMA table_info({table})")}
            if column not in have:
                self.db.execute(sql)

    @classmethod
    def empty(cls) -> Inventory:
        """An in-memory inventory with the schema and nothing in it."""
        return cls(Path(":memory:"))

    @classmethod
    def reader(cls, path: Path, *, exclusive: bool) -> Inventory:
        """The database at ``path`` to read. ``exclusive`` (the caller holds the state
        lock): read as immutable, which leaves no -wal/-shm files behind, or from a private
        copy when a crash left commits in the WAL. Otherwise read-only beside the daemon."""
        wal = Path(f"{path}-wal")
        if not exclusive:
            return cls(path, readonly=True)
        if wal.exists() and wal.stat().st_size > 0:
            return cls.private_copy(path, exclusive=True)
        found = cls.__new__(cls)
        found.path = path
        found.db = sqlite3.connect(f"file:{quote(str(path))}?mode=ro&immutable=1", uri=True)
        found.db.row_factory = sqlite3.Row
        columns = {r[1] for r in found.db.execute("PRAGMA table_info(services)")}
        found._managed = "managed" if "managed" in columns else "1 AS managed"
        return found

    @classmethod
    def private_copy(cls, path: Path, *, exclusive: bool) -> Inventory:
        """An in-memory copy of the database at ``path``, to try changes on and throw
        away (``certdrop inspect``); reading it changes no byte in the state folder.

        ``exclusive``: the caller holds the state lock, so no other process has the
        database open. Then it is read as immutable (a read-only open would leave -wal and
        -shm files behind); a WAL that a crash left is recovered in a private copy on a
        RAM disk where there is one, never in place. Otherwise the daemon has the
        database open and a read-only connection reads it as any reader does.
        """
        copy = cls(Path(":memory:"))
        wal = Path(f"{path}-wal")
        scratch: str | None = None
        if exclusive and wal.exists() and wal.stat().st_size > 0:
            ram = "/dev/shm" if os.path.isdir("/dev/shm") else None  # noqa: S108
            scratch = tempfile.mkdtemp(prefix="certdrop-inspect-", dir=ram)
            shutil.copyfile(path, os.path.join(scratch, "db"))
            shutil.copyfile(wal, os.path.join(scratch, "db-wal"))
            source = sqlite3.connect(os.path.join(scratch, "db"))
        elif exclusive:
            source = sqlite3.connect(f"file:{quote(str(path))}?mode=ro&immutable=1", uri=True)
        else:
            source = sqlite3.connect(f"file:{quote(str(path))}?mode=ro", uri=True, timeout=10)
        try:
            source.backup(copy.db)
        finally:
            source.close()
            if scratch is not None:
                shutil.rmtree(scratch, ignore_errors=True)
        copy.path = path
        copy._add_columns()
        copy._managed = "managed"
        return copy

    def close(self) -> None:
        self.db.close()

    @contextmanager
    def transaction(self) -> Iterator[None]:
        self.db.execute("BEGIN IMMEDIATE")
        try:
            yield
        except BaseException:
            self.db.execute("ROLLBACK")
            raise
        self.db.execute("COMMIT")

    @contextmanager
    def rehearsal(self) -> Iterator[None]:
        """A transaction that is always rolled back: changes tried, then undone."""
        self.db.execute("BEGIN IMMEDIATE")
        try:
            yield
        finally:
            self.db.execute("ROLLBACK")

    @contextmanager
    def savepoint(self) -> Iterator[None]:
        """A nested step inside a transaction, undone alone if it raises."""
        self.db.execute("SAVEPOINT step")
        try:
            yield
        except BaseException:
            self.db.execute("ROLLBACK TO step")
            self.db.execute("RELEASE step")
            raise
        self.db.execute("RELEASE step")

    # -- certificates ---------------------------------------------------------------
    def _select(self, where: str, params: tuple[str, ...] = ()) -> list[Entry]:
        # Only this module's constant clauses reach the f-string; values are bound.
        sql = f"SELECT {_ENTRY_COLUMNS} FROM certificates {where}"  # noqa: S608
        return [Entry.from_row(r) for r in self.db.execute(sql, params)]

    def entries(self) -> list[Entry]:
        return self._select("ORDER BY name")

    def summary(self, name: str) -> Summary | None:
        """The ``status`` columns of one certificate."""
        row = self.db.execute(
            "SELECT name, status, subject, sans, issuer, not_before, not_after, sha256, "
            "key_type, key_bits, trusted, trust_detail, renews FROM certificates WHERE name = ?",
            (name,),
        ).fetchone()
        return None if row is None else Summary.from_row(row)

    def summaries(self, order: str = "name") -> Iterator[Summary]:
        """The columns status shows, without certificate bytes, row by row: cheap at
        100,000 rows. ``order``: ``name`` or ``expiry`` (soonest first, requests last).
        Finish the iteration before changing the inventory."""
        columns = (
            "name, status, subject, sans, issuer, not_before, not_after, sha256, key_type, "
            "key_bits, trusted, trust_detail, renews"
        )
        sort = _SUMMARY_ORDER[order]  # one of two constant clauses
        sql = f"SELECT {columns} FROM certificates ORDER BY {sort}"  # noqa: S608
        rows = self.db.execute(sql)
        return (Summary.from_row(r) for r in rows)

    def entry(self, name: str) -> Entry | None:
        found = self._select("WHERE name = ?", (name,))
        return found[0] if found else None

    def entry_by_sha256(self, sha256: str) -> Entry | None:
        found = self._select("WHERE sha256 = ?", (sha256,))
        return found[0] if found else None

    def request_for_key(self, key_id: str) -> Entry | None:
        found = self._select(
            "WHERE key_id = ? AND status = 'requested' ORDER BY created", (key_id,)
        )
        return found[0] if found else None

    def key_pem(self, name: str) -> bytes | None:
        row = self.db.execute("SELECT key_pem FROM certificates WHERE name = ?", (name,)).fetchone()
        return None if row is None else bytes(row[0])

    def key_pem_for(self, key_id: str) -> bytes | None:
        """A stored key with this id (from any entry), so a re-issued certificate finds it."""
        row = self.db.execute(
            "SELECT key_pem FROM certificates WHERE key_id = ? LIMIT 1", (key_id,)
        ).fetchone()
        return None if row is None else bytes(row[0])

    def free_name(self, wanted: str) -> str:
        """``wanted`` if unused, else ``wanted-2``, ``wanted-3``, ..."""
        taken = "SELECT 1 FROM certificates WHERE name = ?"
        # Primary-key probes only: a LIKE scan would grow with the inventory.
        if self.db.execute(taken, (wanted,)).fetchone() is None:
            return wanted
        n = 2
        while self.db.execute(taken, (f"{wanted}-{n}",)).fetchone() is not None:
            n += 1
        return f"{wanted}-{n}"

    def put_entry(self, values: dict[str, Any]) -> None:
        """Insert or replace a certificate row; ``values`` holds column -> value."""
        values = dict(values)
        if isinstance(values.get("sans"), list):
            values["sans"] = json.dumps(values["sans"])
        if isinstance(values.get("request"), dict):
            values["request"] = json.dumps(values["request"], sort_keys=True)
        columns = ", ".join(values)
        marks = ", ".join("?" for _ in values)
        self.db.execute(
            f"INSERT OR REPLACE INTO certificates ({columns}) VALUES ({marks})",  # noqa: S608 - column names are ours
            tuple(values.values()),
        )

    def set_trust(self, name: str, trusted: bool, detail: str) -> None:
        self.db.execute(
            "UPDATE certificates SET trusted = ?, trust_detail = ? WHERE name = ?",
            (int(trusted), "" if trusted else detail, name),
        )

    def judged(self) -> Iterator[Judged]:
        """Every certificate's stored verdict and bytes, for judging again, row by row:
        finish the iteration before changing the inventory."""
        rows = self.db.execute(
            "SELECT name, cert_pem, chain_pem, trusted, trust_detail FROM certificates "
            "WHERE cert_pem IS NOT NULL ORDER BY name"
        )
        return (Judged.from_row(r) for r in rows)

    def meta(self, key: str) -> str | None:
        row = self.db.execute("SELECT value FROM meta WHERE key = ?", (key,)).fetchone()
        return None if row is None else str(row[0])

    def set_meta(self, key: str, value: str) -> None:
        self.db.execute(
            "INSERT INTO meta (key, value) VALUES (?, ?) "
            "ON CONFLICT (key) DO UPDATE SET value = excluded.value",
            (key, value),
        )

    def set_status(self, name: str, status: str) -> None:
        self.db.execute("UPDATE certificates SET status = ? WHERE name = ?", (status, name))

    def names_covering(self, parent: str, now_iso: str) -> list[str]:
        """Trusted, unexpired entries whose SAN text mentions ``parent`` (a coarse filter
        for auto-assignment; the exact check is on the parsed certificate)."""
        rows = self.db.execute(
            "SELECT name FROM certificates WHERE trusted = 1 AND cert_pem IS NOT NULL "
            "AND status IN ('unused', 'in_use') AND not_after > ? AND instr(lower(sans), ?) > 0",
            (now_iso, parent),
        )
        return [str(r[0]) for r in rows.fetchall()]

    # -- held pieces and the intermediate pool --------------------------------------
    def held(self) -> list[Held]:
        rows = self.db.execute("SELECT id, kind, key_id, from_file, since FROM held ORDER BY id")
        return [Held.from_row(r) for r in rows]

    def take_held(self, kind: str, key_id: str) -> Held | None:
        """The held piece of ``kind`` for ``key_id``; removed when the transaction commits."""
        row = self.db.execute(
            "SELECT id, kind, key_id, pem, from_file, since FROM held "
            "WHERE kind = ? AND key_id = ?",
            (kind, key_id),
        ).fetchone()
        if row is None:
            return None
        self.db.execute("DELETE FROM held WHERE id = ?", (row["id"],))
        return Held.from_row(row)

    def hold(self, kind: str, key_id: str, pem: bytes, from_file: str, since: str) -> bool:
        """Hold a piece; False when the same piece is already held."""
        cursor = self.db.execute(
            "INSERT OR IGNORE INTO held (kind, key_id, pem, from_file, since) VALUES (?,?,?,?,?)",
            (kind, key_id, pem, from_file, since),
        )
        return cursor.rowcount == 1

    def pool(self) -> list[bytes]:
        return [bytes(r[0]) for r in self.db.execute("SELECT pem FROM pool")]

    def pool_named(self, subject: str, limit: int) -> list[bytes]:
        """PEMs of pooled certificates whose subject reads ``subject`` (RFC 4514)."""
        rows = self.db.execute(
            "SELECT pem FROM pool WHERE subject = ? ORDER BY rowid LIMIT ?", (subject, limit)
        )
        return [bytes(r[0]) for r in rows]

    def add_to_pool(self, sha256: str, pem: bytes, subject: str) -> bool:
        """Add an issuing certificate to the pool; False when it was already there."""
        cursor = self.db.execute(
            "INSERT OR IGNORE INTO pool (sha256, pem, subject) VALUES (?, ?, ?)",
            (sha256, pem, subject),
        )
        return cursor.rowcount == 1

    # -- services (desired vs deployed) ---------------------------------------------
    @property
    def _services_sql(self) -> str:
        # _managed is one of two constant column expressions (see __init__).
        columns = f"name, desired, deployed_sha256, state, detail, updated, {self._managed}"
        return f"SELECT {columns} FROM services"  # noqa: S608
    def service(self, name: str) -> ServiceRow | None:
        """The service's row (desired, deployed_sha256, state, detail, updated), or None."""
        row = self.db.execute(self._services_sql + " WHERE name = ?", (name,)).fetchone()
        return None if row is None else ServiceRow.from_row(row)

    def services(self) -> dict[str, ServiceRow]:
        """Every service row, by name (configured or not)."""
        rows = self.db.execute(self._services_sql)
        return {r["name"]: ServiceRow.from_row(r) for r in rows}

    def set_desired(self, name: str, desired: str, detail: str, at: str) -> None:
        """Record the certificate ``name`` should have; it stays pending until proven.
        An unassigned service is managed again from here on."""
        self.db.execute(
            "INSERT INTO services (name, desired, state, detail, updated, managed) "
            "VALUES (?, ?, 'pending', ?, ?, 1) ON CONFLICT (name) DO UPDATE SET "
            "desired = excluded.desired, state = 'pending', detail = excluded.detail, "
            "updated = excluded.updated, managed = 1",
            (name, desired, detail, at),
        )

    def set_service_state(
        self, name: str, state: str, detail: str, at: str, deployed_sha256: str | None = None
    ) -> None:
        """Set a service's state; ``deployed_sha256`` (when given) is what it proved to serve."""
        self.db.execute(
            "INSERT INTO services (name, deployed_sha256, state, detail, updated) "
            "VALUES (?, ?, ?, ?, ?) ON CONFLICT (name) DO UPDATE SET "
            "deployed_sha256 = coalesce(excluded.deployed_sha256, deployed_sha256), "
            "state = excluded.state, detail = excluded.detail, updated = excluded.updated",
            (name, deployed_sha256, state, detail, at),
        )

    def sync_usage(self, services: set[str]) -> list[tuple[str, str]]:
        """Make ``in_use`` exactly the entries some of ``services`` want; (name, status) changed."""
        wanted = {
            r["desired"]
            for r in self.db.execute("SELECT name, desired FROM services WHERE desired IS NOT NULL")
            if r["name"] in services
        }
        changed = []
        in_use = {
            r[0] for r in self.db.execute("SELECT name FROM certificates WHERE status = 'in_use'")
        }
        for name in sorted(in_use - wanted):
            self.set_status(name, "unused")
            changed.append((name, "unused"))
        for name in sorted(wanted - in_use):
            cursor = self.db.execute(
                "UPDATE certificates SET status = 'in_use' WHERE name = ? AND status = 'unused'",
                (name,),
            )
            if cursor.rowcount:
                changed.append((name, "in_use"))
        return changed

    # -- drops ----------------------------------------------------------------------
    def drop_result(self, claim: str) -> DropRow | None:
        row = self.db.execute(
            "SELECT claim, file, result, code, reason, at FROM drops WHERE claim = ?", (claim,)
        ).fetchone()
        return None if row is None else DropRow.from_row(row)

    def record_drop(
        self, claim: str, file: str, result: str, at: str, code: str = "", reason: str = ""
    ) -> None:
        self.db.execute(
            "INSERT OR REPLACE INTO drops (claim, file, result, code, reason, at) "
            "VALUES (?, ?, ?, ?, ?, ?)",
            (claim, file, result, code or None, reason or None, at),
        )
        self.db.execute("DELETE FROM attempts WHERE claim = ?", (claim,))

    def drop_counts_by_code(self) -> dict[tuple[str, str], int]:
        """How many drops ended in each (result, rejection code), ever; code "" when the
        drop was not rejected."""
        rows = self.db.execute(
            "SELECT result, coalesce(code, ''), COUNT(*) FROM drops GROUP BY result, code"
        )
        return {(str(result), str(code)): int(count) for result, code, count in rows}

    # -- counters -------------------------------------------------------------------
    def bump(self, name: str, by: int = 1) -> None:
        """Add ``by`` to the counter ``name`` (inside the caller's transaction)."""
        self.db.execute(
            "INSERT INTO counters (name, value) VALUES (?, ?) "
            "ON CONFLICT (name) DO UPDATE SET value = value + excluded.value",
            (name, by),
        )

    def counters(self) -> dict[str, int]:
        """Every counter by name (empty for a database made before counters existed)."""
        try:
            rows = self.db.execute("SELECT name, value FROM counters").fetchall()
        except sqlite3.OperationalError:  # an older database opened read-only
            return {}
        return {str(name): int(value) for name, value in rows}

    def integrity_ok(self) -> bool:
        return bool(self.db.execute("PRAGMA integrity_check").fetchone()[0] == "ok")
