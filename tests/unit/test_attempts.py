"""The poison-drop guard's count (store/attempts.py) on a real SQLite inventory: a run that
died with the drop in the daemon's own process counts, one that died while the bounded
child had it does not, and retries within one run never do."""

from __future__ import annotations

import sqlite3
from pathlib import Path

from certdrop.store import attempts
from certdrop.store.inventory import Inventory


def begin(inv: Inventory, run: str, *, costly: bool = False) -> int:
    return attempts.begin(
        inv, "claim-1", "a.pem", "PEM, 10 bytes", run, "2026-12-02T00:00:00Z",
        in_child=lambda runs: costly or runs > 1,
    )


def phase(inv: Inventory) -> str:
    return str(inv.db.execute("SELECT phase FROM attempts WHERE claim = 'claim-1'").fetchone()[0])


def test_a_death_in_process_counts_and_the_next_run_goes_to_the_child() -> None:
    inv = Inventory.empty()
    assert begin(inv, "r1") == 1 and phase(inv) == "daemon"
    assert begin(inv, "r1") == 1  # a retry within the run (a storage fault) is no death
    assert begin(inv, "r2") == 2 and phase(inv) == "child"  # r1 died in process
    attempts.back_in_daemon(inv, "claim-1")
    assert phase(inv) == "daemon"
    assert begin(inv, "r3") == 3  # r2 died after the child was done: counts


def test_deaths_while_the_child_has_the_drop_do_not_count() -> None:
    inv = Inventory.empty()
    assert begin(inv, "r1", costly=True) == 1 and phase(inv) == "child"
    for run in ("r2", "r3", "r4"):  # killed from outside each time the child derived
        assert begin(inv, run, costly=True) == 1
    attempts.back_in_daemon(inv, "claim-1")
    assert begin(inv, "r5", costly=True) == 2


def test_the_result_clears_the_note() -> None:
    inv = Inventory.empty()
    begin(inv, "r1")
    begin(inv, "r2")
    inv.record_drop("claim-1", "a.pem", "accepted", "2026-12-02T00:00:01Z")
    assert begin(inv, "r3") == 1


def test_an_older_database_gains_the_phase_column_and_counts_its_notes_as_in_process(
    tmp_path: Path,
) -> None:
    path = tmp_path / "inventory.sqlite3"
    db = sqlite3.connect(path)
    db.execute(
        "CREATE TABLE attempts (claim TEXT PRIMARY KEY, file TEXT NOT NULL, seen TEXT NOT "
        "NULL, runs INTEGER NOT NULL, run TEXT NOT NULL, since TEXT NOT NULL)"
    )
    db.execute("INSERT INTO attempts VALUES ('claim-1', 'a.pem', 'PEM', 1, 'old', 'then')")
    db.commit()
    db.close()
    inv = Inventory(path)
    try:
        assert begin(inv, "new") == 2  # the note of the old release's dead run counts
    finally:
        inv.close()
