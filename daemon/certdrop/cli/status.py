"""``certdrop status [--json]``: certificates, held pieces and services."""

from __future__ import annotations

import argparse
import sys

from certdrop import config as configuration
from certdrop.cli.common import Subparsers
from certdrop.cli.table import render
from certdrop.store import snapshot
from certdrop.store.inventory import Inventory


def add_parser(sub: Subparsers) -> None:
    st = sub.add_parser("status", help="show certificates, held pieces and services")
    st.add_argument("--json", action="store_true", help="print the JSON object")
    st.set_defaults(handler=show_status)


def show_status(config: configuration.Config, args: argparse.Namespace) -> int:
    database = config.state / "inventory.sqlite3"
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
