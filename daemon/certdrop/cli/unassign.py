"""``certdrop unassign SERVICE...``: stop managing services' files until assigned again."""

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
        "unassign",
        "stop managing services' files until assigned again",
        "Release each SERVICE: certdrop forgets which certificate it should have and what "
        "it serves, leaves its files exactly as they are, and neither deploys to it nor "
        "auto-assigns it by hostname until `certdrop assign` names it again. A certificate "
        "no other service wants becomes unused (its renewal stops). Goes through the "
        "daemon when it runs. In fleet mode GATEWAY/SERVICE and */SERVICE (every gateway "
        "that has it) are decisions published to the fleet, as with assign: the later "
        "decision wins, and each gateway releases its own service the same way.",
        """
        certdrop unassign admin-console
        certdrop unassign smtp-in smtp-out --json
        certdrop unassign gw-b/admin-console '*/user-console'
        """,
    )
    p.add_argument(
        "services",
        metavar="SERVICE",
        nargs="+",
        help="[services.NAME] tables; in fleet mode also GATEWAY/SERVICE or */SERVICE",
    )
    add_json(p)
    p.set_defaults(handler=run_unassign)


def run_unassign(config: configuration.Config, args: argparse.Namespace) -> int:
    done = json.loads(run_command(config, "unassign", {"services": args.services}))
    if args.json:
        print_json(done)
        return 0
    for d in done:
        if d.get("state") == "queued":  # a decision for other gateways
            print(f"{safe(d['service'])}: queued: {safe(d['detail'])}")
            continue
        was = f" (it had {safe(d['certificate'])})" if d["certificate"] else ""
        print(f"{safe(d['service'])}: no longer managed{was}; its files stay as they are")
    return 0
