"""``certdrop status [--json]``: certificates, held pieces and services.

Read from the inventory (read-only) by whoever may open it, else from status.json: a
member of ``state_group`` sees the snapshot the daemon last wrote.
"""

from __future__ import annotations

import argparse
import json
import os
import sys

from certdrop import config as configuration
from certdrop.cli.common import Subparsers
from certdrop.cli.table import render
from certdrop.errors import UserError
from certdrop.store import snapshot
from certdrop.store.inventory import Inventory


def add_parser(sub: Subparsers) -> None:
    st = sub.add_parser("status", help="show certificates, held pieces and services")
    st.add_argument("--json", action="store_true", help="print the JSON object")
    st.set_defaults(handler=show_status)


def show_status(config: configuration.Config, args: argparse.Namespace) -> int:
    database = config.state / "inventory.sqlite3"
    if database.exists() and not os.access(database, os.R_OK):
        return _from_snapshot(config, args)
    # Without a database yet, an empty in-memory one gives the same (empty) answer.
    inventory = Inventory(database, readonly=True) if database.exists() else Inventory.empty()
    try:
        if args.json:
            snapshot.write_json(sys.stdout.buffer, config, inventory)
        else:
            sys.stdout.write(render(snapshot.snapshot(config, inventory)))
    finally:
        inventory.close()
    sys.stdout.flush()
    return 0


def _from_snapshot(config: configuration.Config, args: argparse.Namespace) -> int:
    """The database is root-only: show status.json (0640 for the state_group)."""
    try:
        data = snapshot.read_json(config.status_json)
    except FileNotFoundError:
        raise UserError(
            f"{config.state / 'inventory.sqlite3'} is root-only and {config.status_json} "
            "does not exist yet; run as root, or start the daemon once"
        ) from None
    except ValueError as exc:
        raise UserError(f"{config.status_json} cannot be read: {exc}") from None
    if args.json:
        print(json.dumps(data, ensure_ascii=True))
    else:
        sys.stdout.write(render(data))
    return 0
