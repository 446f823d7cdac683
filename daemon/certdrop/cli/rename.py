"""``certdrop rename OLD NEW``: give an entry another name."""

from __future__ import annotations

import argparse
import json

from certdrop import config as configuration
from certdrop.cli.common import Subparsers, add_json, command, print_json
from certdrop.cli.table import safe
from certdrop.daemon.control import run_command


def add_parser(sub: Subparsers) -> None:
    p = command(
        sub,
        "rename",
        "give an entry another name",
        "Rename entry OLD to NEW. Services that should have it, its renewal and a waiting "
        "CSR in the outbox follow the new name; deployed files are not touched. NEW follows "
        "the name rule: 1-128 characters of Unicode (NFC), no '/' or control characters, "
        "no space at either end. Goes through the daemon when it runs.",
        """
        certdrop rename certificate-2 'テスト証明書'
        certdrop rename New_certificate 'New certificate' --json
        """,
    )
    p.add_argument("old", metavar="OLD", help="the entry's name now")
    p.add_argument("new", metavar="NEW", help="its new name")
    add_json(p)
    p.set_defaults(handler=run_rename)


def run_rename(config: configuration.Config, args: argparse.Namespace) -> int:
    done = json.loads(run_command(config, "rename", {"old": args.old, "new": args.new}))
    if args.json:
        print_json(done)
        return 0
    print(f"renamed {safe(done['old'])} to {safe(done['name'])}")
    if done["csr"]:
        print(f"its CSR is now {safe(done['csr'])}")
    return 0
