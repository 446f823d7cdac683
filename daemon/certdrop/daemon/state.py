"""The state folder: its lock, its folders, and the context a command or the daemon opens."""

from __future__ import annotations

import contextlib
import fcntl
import grp
import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from certdrop import config as configuration
from certdrop.errors import StateLocked
from certdrop.files import private_dir, replacing
from certdrop.intake.pipeline import Intake
from certdrop.intake.request_toml import on_request
from certdrop.store import context, snapshot
from certdrop.store.eventlog import StatusLogFile, open_log
from certdrop.store.inventory import Inventory
from certdrop.store.truststore import TrustStore


@contextlib.contextmanager
def state_lock(state: Path) -> Iterator[None]:
    """Hold the exclusive lock on the state folder, or raise StateLocked at once."""
    fd = os.open(state / "lock", os.O_RDWR | os.O_CREAT, 0o600)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise StateLocked(f"{state} is in use by another certdrop process") from None
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
    """The store's context plus the intake pipeline bound to it."""

    intake: Intake
    sink: StatusLogFile | None = None  # the status log's file, for degraded mode


def open_context(
    config: configuration.Config, *, echo: bool | None = False
) -> tuple[Context, StatusLogFile]:
    """Open the inventory and the status log; the caller holds the state lock."""
    log, sink = open_log(config.status_log, echo=echo)
    inventory = Inventory(config.state / "inventory.sqlite3")
    trust = TrustStore(config)
    intake = Intake(config, inventory, log, trust=trust)  # reloads the shared trust store
    intake.on_request = on_request(intake)  # NAME.request.toml drops
    return Context(config, inventory, log, trust, intake, sink), sink
