"""``certdrop fleet status [--json] | approve GATEWAY... | revoke GATEWAY``."""

from __future__ import annotations

import argparse
import json
import sys

from certdrop import config as configuration
from certdrop.cli.common import Parser, Subparsers
from certdrop.daemon.control import run_command
from certdrop.errors import UserError
from certdrop.fleet.status import render


def add_parser(sub: Subparsers) -> None:
    fleet = sub.add_parser("fleet", help="the fleet of gateways (fleet mode: a [fleet] table)")
    verbs = fleet.add_subparsers(dest="verb", required=True, parser_class=Parser)
    st = verbs.add_parser("status", help="every gateway and service of the fleet, what disagrees")
    st.add_argument("--json", action="store_true", help="print the JSON object")
    st.set_defaults(handler=status)
    ap = verbs.add_parser(
        "approve", help="let gateways in: each is sealed the fleet's keys (all or none)"
    )
    ap.add_argument(
        "gateways", nargs="+", metavar="GATEWAY", help="a gateway's name in `fleet status`"
    )
    ap.set_defaults(handler=decide)
    rv = verbs.add_parser("revoke", help="stop sealing keys to a gateway; says which keys it held")
    rv.add_argument("gateway", metavar="GATEWAY", help="the gateway's name in `fleet status`")
    rv.set_defaults(handler=decide)


def _fleet_mode(config: configuration.Config) -> None:
    if config.fleet is None:
        raise UserError(
            f"{config.source} has no [fleet] table: this gateway is not in a fleet "
            "(add [fleet] servers = [...] to join one)"
        )


def status(config: configuration.Config, args: argparse.Namespace) -> int:
    _fleet_mode(config)
    report = json.loads(run_command(config, "fleet_status", {}))
    if args.json:
        json.dump(report, sys.stdout, indent=2, sort_keys=True)
        sys.stdout.write("\n")
    else:
        sys.stdout.write(render(report))
    return 0


def decide(config: configuration.Config, args: argparse.Namespace) -> int:
    _fleet_mode(config)
    named = {"gateways": args.gateways} if args.verb == "approve" else {"gateway": args.gateway}
    output = run_command(config, f"fleet_{args.verb}", named)
    sys.stdout.write(output if output.endswith("\n") else output + "\n")
    return 0
