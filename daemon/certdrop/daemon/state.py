"""The state folder: its lock, its folders, and the context a command or the daemon opens."""

from __future__ import annotations

import contextlib
import fcntl
import grp
import os
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from certdrop import config as configuration
from certdrop.errors import StateLocked
from certdrop.files import private_dir, replacing
from certdrop.intake.pipeline import Intake
from certdrop.intake.request_toml import on_request
from certdrop.renewal.renewer import Renewer
from certdrop.store import context, snapshot
from certdrop.store import fleet as fleet_tables
from certdrop.store.eventlog import StatusLogFile, open_log
from certdrop.store.inventory import Inventory
from certdrop.store.truststore import TrustStore

# A command that only reads holds the lock for the moment it reads (see `reading`); a
# daemon starting, or a command wanting the state, waits that long rather than failing.
LOCK_WAIT_SECONDS = 10.0


@contextlib.contextmanager
def state_lock(state: Path, *, wait: float = 0.0) -> Iterator[None]:
    """Hold the exclusive lock on the state folder; raise StateLocked if it is still
    held by another process after ``wait`` seconds (0: at once)."""
    fd = os.open(state / "lock", os.O_RDWR | os.O_CREAT, 0o600)
    try:
        deadline = time.monotonic() + wait
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() >= deadline:
                    raise StateLocked(f"{state} is in use by another certdrop process") from None
                time.sleep(0.05)
        yield
    finally:
        os.close(fd)


def state_gid(config: configuration.Config) -> int | None:
    """The gid of ``state_group`` (None when unset or, since the config was read, gone)."""
    if not config.state_group:
        return None
    try:
        return grp.getgrnam(config.state_group).gr_gid
    except KeyError:
        return None


def share_state(config: configuration.Config) -> None:
    """Give the state folder to ``state_group`` (0750) or keep it private (0700).

    Only the folder and status.json (0640, see :func:`write_status_json`) open up to the
    group: the database, its WAL, the status log, the lock, ``deployed/`` and every key
    stay 0600/0700 root, so a member can traverse and read the snapshot, nothing more.
    """
    gid = state_gid(config)
    if gid is None:
        private_dir(config.state)
        return
    st = os.stat(config.state)
    if st.st_gid != gid:
        os.chown(config.state, -1, gid)
    if st.st_mode & 0o777 != 0o750:
        # The group may enter and list; the files inside keep their own (mostly 0600) modes.
        os.chmod(config.state, 0o750)  # noqa: S103


def prepare_folders(config: configuration.Config) -> None:
    """Create the state (0700, or 0750 for ``state_group``), inbox (0700: drops carry
    keys) and outbox (0755) folders if they are missing, each with its mode from the
    start whatever the umask."""
    private_dir(config.state)
    share_state(config)
    config.inbox.mkdir(mode=0o700, parents=True, exist_ok=True)
    if not config.outbox.is_dir():
        config.outbox.mkdir(mode=0o755, parents=True)
        config.outbox.chmod(0o755)  # CSRs are public; whoever sends them to the CA reads here


def write_status_json(config: configuration.Config, inventory: Inventory) -> None:
    """Rewrite status.json atomically, streamed. It holds no secrets: 0640 for the
    ``state_group`` (monitors read it), else 0644 inside the 0700 folder (root only)."""
    gid = state_gid(config)
    mode, group = (0o644, -1) if gid is None else (0o640, gid)
    with replacing(config.status_json, mode, group) as out:
        snapshot.write_json(out, config, inventory)


@dataclass
class Context(context.Context):
    """The store's context plus the intake pipeline bound to it; in a running daemon
    also the expiry check's renewer (``certdrop renew`` starts renewals with it)."""

    intake: Intake
    sink: StatusLogFile | None = None  # the status log's file, for degraded mode
    renewer: Renewer | None = None
    fleet: Any = None  # the running FleetNode in fleet mode (set by the fleet feature)


def open_context(
    config: configuration.Config,
    *,
    echo: bool | None = False,
    show: Callable[[str], None] | None = None,
) -> tuple[Context, StatusLogFile]:
    """Open the inventory and the status log; the caller holds the state lock."""
    log, sink = open_log(config.status_log, echo=echo, show=show)
    inventory = Inventory(config.state / "inventory.sqlite3")
    trust = TrustStore(config)
    intake = Intake(config, inventory, log, trust=trust)  # reloads the shared trust store
    intake.on_request = on_request(intake)  # NAME.request.toml drops
    if config.fleet is not None:
        fleet_tables.enable(inventory)  # the outbox triggers: same transaction as a change
    else:
        fleet_tables.disable(inventory)
    return Context(config, inventory, log, trust, intake, sink), sink


@contextlib.contextmanager
def reading(config: configuration.Config) -> Iterator[Inventory]:
    """The inventory to read, for commands that only look (an empty one before the
    first drop). Without a daemon the state lock is held while reading, so the database
    can be read without leaving -wal/-shm files behind: nothing in state/ changes. Read
    inside the block and print after it: a daemon starting meanwhile waits for the lock
    (LOCK_WAIT_SECONDS), a pager reading our output must not hold it."""
    database = config.state / "inventory.sqlite3"
    if not database.exists():
        inventory = Inventory.empty()
        try:
            yield inventory
        finally:
            inventory.close()
        return
    with contextlib.ExitStack() as held:
        try:
            held.enter_context(state_lock(config.state))
            exclusive = True
        except (StateLocked, PermissionError):
            # The daemon owns it, or a state_group monitor may not take it: read beside,
            # as any reader does.
            exclusive = False
        inventory = Inventory.reader(database, exclusive=exclusive)
        try:
            yield inventory
        finally:
            inventory.close()


@contextlib.contextmanager
def rehearsing(config: configuration.Config) -> Iterator[Inventory]:
    """A private in-memory copy of the inventory to try changes on and throw away
    (``certdrop inspect``); making it changes no byte of the state folder."""
    database = config.state / "inventory.sqlite3"
    if not database.exists():
        inventory = Inventory.empty()
    else:
        try:
            with state_lock(config.state):  # no daemon: nobody else has the database open
                inventory = Inventory.private_copy(database, exclusive=True)
        except (StateLocked, PermissionError):
            inventory = Inventory.private_copy(database, exclusive=False)
    try:
        yield inventory
    finally:
        inventory.close()
