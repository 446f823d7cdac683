"""Which drop a daemon run was processing when it died: the poison-drop guard.

A row of the ``attempts`` table is written (and committed) before a drop's costly steps
and removed with its result (:meth:`Inventory.record_drop`), so the next start knows a
drop that was under way when the daemon died. ``phase`` says where the work was:

- ``daemon``: in the daemon's own process (parsing a plain drop, pairing, validating,
  writing). A run that died there counts against the drop: the drop may be what killed it.
- ``child``: the bounded child process had it (a key derivation, or any drop an earlier
  run died with). The child has CPU, memory and wall-clock bounds and dies with the daemon,
  so a run that died meanwhile does not count: the file did not do it, and the next start
  opens it in the child again, where its cost stays bounded.

``runs`` is 1 plus the number of runs that died with the drop in ``daemon``; the intake
rejects a drop whose count passes its limit without opening it again.
"""

from __future__ import annotations

from collections.abc import Callable

from certdrop.store.inventory import Inventory


def begin(
    inventory: Inventory,
    claim: str,
    file: str,
    seen: str,
    run: str,
    at: str,
    *,
    in_child: Callable[[int], bool],
) -> int:
    """Note that daemon run ``run`` starts processing a drop, in the child when
    ``in_child(runs)`` says so; return ``runs``. Retries within one run (after a storage
    fault) do not count."""
    with inventory.transaction():
        row = inventory.db.execute(
            "SELECT runs, run, phase FROM attempts WHERE claim = ?", (claim,)
        ).fetchone()
        died_here = row is not None and row[1] != run and row[2] == "daemon"
        runs = 1 if row is None else int(row[0]) + died_here
        inventory.db.execute(
            "INSERT OR REPLACE INTO attempts (claim, file, seen, runs, run, since, phase) "
            "VALUES (?, ?, ?, ?, ?, ?, ?)",
            (claim, file, seen, runs, run, at, "child" if in_child(runs) else "daemon"),
        )
    return runs


def back_in_daemon(inventory: Inventory, claim: str) -> None:
    """The child is done with the drop: what follows runs in the daemon's own process."""
    with inventory.transaction():
        inventory.db.execute("UPDATE attempts SET phase = 'daemon' WHERE claim = ?", (claim,))
