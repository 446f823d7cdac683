"""``certdrop delete NAME``: remove an entry and its key from the state."""

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
        "delete",
        "remove an entry and its key (not while a service wants it)",
        "Remove entry NAME: its certificate, its key (unless another entry holds the same "
        "key), its renewal and its waiting CSR. The key's bytes are overwritten in the "
        "database, not just unlinked. Refused while a service should have it: assign "
        "another certificate or unassign the service first. Export a backup before, if "
        "you may need it again. Goes through the daemon when it runs. In fleet mode it "
        "withdraws the certificate or request from the fleet: every gateway deletes its "
        "copy, except where a service still uses it (kept there, and said).",
        """
        certdrop delete old-web
        certdrop export old-web --out old-web.p12 --password-file pw && certdrop delete old-web
        certdrop delete 'テスト証明書' --json
        """,
    )
    p.add_argument("name", metavar="NAME", help="the entry to remove")
    add_json(p)
    p.set_defaults(handler=run_delete)


def run_delete(config: configuration.Config, args: argparse.Namespace) -> int:
    done = json.loads(run_command(config, "delete", {"name": args.name}))
    if args.json:
        print_json(done)
        return 0
    print(f"deleted {safe(done['name'])}; {safe(done['detail'])}")
    if done["csr_removed"]:
        print(f"removed its CSR {safe(done['csr_removed'])}")
    return 0
