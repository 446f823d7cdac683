"""The store: every SQL statement of the project, the status log and the status snapshot.

- :mod:`~certdrop.store.inventory` -- the SQLite inventory (``Inventory``); rows come out
  as the frozen values of :mod:`~certdrop.store.rows` (``Entry``, ``Held``, ``ServiceRow``,
  ``DropRow``, ``Summary``).
- :mod:`~certdrop.store.renewals` -- the expiry watch's memory: warnings and renewals.
- :mod:`~certdrop.store.eventlog` -- the JSON Lines status log (``open_log``, ``Logger``).
- :mod:`~certdrop.store.snapshot` -- the status object of ``status --json``/status.json.
- :mod:`~certdrop.store.context` -- ``Context``: config, inventory and log together.
- :mod:`~certdrop.store.edits` -- the operator's edits: rename, delete, unassign, discard.

May import: ``certdrop.pki``, ``certdrop.config``, ``certdrop.errors``, ``certdrop.clock``,
``certdrop.files``, ``certdrop.jsontext``. Never the shell subpackages, ``daemon`` or ``cli``.
"""
