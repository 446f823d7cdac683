"""``certdrop held [--discard ID]``: pieces waiting for their partner, and dropping one."""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any

from certdrop import config as configuration
from certdrop.cli.common import Subparsers, add_json, command, print_json
from certdrop.cli.table import safe, table
from certdrop.daemon.control import run_command
from certdrop.daemon.state import reading
from certdrop.pki import chain as chains
from certdrop.pki import keys
from certdrop.store import edits
from certdrop.store.inventory import Inventory


def piece_id(text: str) -> int:
    if not text.isdigit():
        raise argparse.ArgumentTypeError(f"ID must be a number from `certdrop held`, not {text!r}")
    return int(text)


def add_parser(sub: Subparsers) -> None:
    p = command(
        sub,
        "held",
        "list pieces waiting for their partner; --discard ID",
        "List the certificates and keys that wait for their partner, with the id, the "
        "drop they came from and since when. --discard ID drops one for good (a held key's "
        "bytes are overwritten); goes through the daemon when it runs.",
        """
        certdrop held
        certdrop held --discard 3
        certdrop held --json
        """,
    )
    p.add_argument("--discard", metavar="ID", type=piece_id, help="drop the held piece ID")
    add_json(p)
    p.set_defaults(handler=run_held)


def run_held(config: configuration.Config, args: argparse.Namespace) -> int:
    if args.discard is not None:
        done = json.loads(run_command(config, "discard", {"id": args.discard}))
        if args.json:
            print_json(done)
        else:
            print(f"discarded held {done['kind']} {done['id']} from {safe(done['from'])}")
        return 0
    with reading(config) as inventory:
        pieces = listing(inventory)
    if args.json:
        print_json(pieces)
        return 0
    if not pieces:
        print("nothing is held")
        return 0
    rows = [[str(p["id"]), p["kind"], safe(p["description"]), safe(p["from"]), p["since"]]
            for p in pieces]  # fmt: skip
    sys.stdout.write(
        "\n".join(table(["ID", "KIND", "WHAT", "FROM", "SINCE"], rows, [8, 11, 48, 40, 20])) + "\n"
    )
    return 0


def listing(inventory: Inventory) -> list[dict[str, Any]]:
    """Each held piece with what it is (a subject, or a key's type and size)."""
    found = []
    for h in inventory.held():
        piece = edits.held_piece(inventory, h.id)
        description = ""
        if piece is not None and piece.kind == "certificate":
            certs = chains.from_pem(piece.pem)
            if certs:
                leaf = certs[0]
                description = (
                    f"{chains.describe_name(leaf.subject)}, until "
                    f"{leaf.not_valid_after_utc:%Y-%m-%d}"
                )
        elif piece is not None:
            info = keys.describe(keys.load_pem(piece.pem))
            description = f"{info.type} {info.bits} key"
        found.append(
            {"id": h.id, "kind": h.kind, "from": h.from_file, "since": h.since,
             "description": description}
        )  # fmt: skip
    return found
