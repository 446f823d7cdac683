"""``certdrop assign NAME SERVICE...``: deploy a certificate to services now."""

from __future__ import annotations

import argparse
import json
import sys

from certdrop import config as configuration
from certdrop.cli.common import Subparsers
from certdrop.daemon.control import run_command


def add_parser(sub: Subparsers) -> None:
    parser = sub.add_parser(
        "assign",
        help="deploy a certificate to services (reload, prove, roll back on failure)",
    )
    parser.add_argument("name", metavar="NAME", help="the certificate's name in `status`")
    parser.add_argument("services", metavar="SERVICE", nargs="+", help="[services.NAME] tables")
    parser.set_defaults(handler=assign)


def assign(config: configuration.Config, args: argparse.Namespace) -> int:
    output = run_command(config, "assign", {"name": args.name, "services": args.services})
    results = json.loads(output)
    for r in results:
        print(f"{r['service']}: {r['state']}: {r['detail']}")
    failed = [r["service"] for r in results if r["state"] != "ok"]
    if failed:
        print(
            f"certdrop: {len(failed)} of {len(results)} services did not take {args.name}: "
            f"{', '.join(failed)}; see `certdrop status`",
            file=sys.stderr,
        )
        return 1
    return 0
