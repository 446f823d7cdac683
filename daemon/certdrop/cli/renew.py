"""``certdrop renew NAME [--dry-run]``: start a certificate's renewal now."""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any

from certdrop import config as configuration
from certdrop.cli.common import Subparsers, add_json, command, print_json
from certdrop.cli.table import safe
from certdrop.clock import utc_now
from certdrop.daemon.control import run_command
from certdrop.daemon.state import reading
from certdrop.renewal import manual


def add_parser(sub: Subparsers) -> None:
    p = command(
        sub,
        "renew",
        "start a certificate's renewal now, as the expiry check would",
        "Renew NAME now instead of at its renewal point: a new key and a CSR with the same "
        "subject and SANs (the entry NAME-renewal-YYYYMMDD), then renewal.command if one "
        "is set; when the renewed certificate arrives it replaces NAME on every service. "
        "A renewal waiting to retry is tried again now. Only a certificate some service "
        "should have is renewed. With the daemon running the command runs there in the "
        "background; without it, renew waits for the command. --dry-run shows the request, "
        "CSR, command and services without changing anything. In fleet mode renew first "
        "takes the certificate's renewal lease, as the expiry check does: it refuses while "
        "another gateway holds a live lease (naming it and when the lease runs out) or when "
        "the fleet engine cannot be reached, unless --take-over is given.",
        """
        certdrop renew web
        certdrop renew '本番 証明書' --dry-run
        certdrop renew web --json
        certdrop renew web --take-over      # fleet: take the lease from its holder
        """,
    )
    p.add_argument("name", metavar="NAME", help="the certificate to renew")
    p.add_argument("--dry-run", action="store_true", help="show what would be done; change nothing")
    p.add_argument(
        "--take-over",
        action="store_true",
        help="fleet mode: take the renewal lease from the gateway that holds it, or renew "
        "with the fleet engine unreachable (if that gateway is renewing now, the "
        "certificate is ordered twice)",
    )
    add_json(p)
    p.set_defaults(handler=run_renew)


def run_renew(config: configuration.Config, args: argparse.Namespace) -> int:
    if args.dry_run:
        with reading(config) as inventory:
            plan = manual.rehearse(config, inventory, args.name, utc_now())
        if args.json:
            print_json(plan)
        else:
            sys.stdout.write(render_plan(plan))
        return 0
    request: dict[str, Any] = {"name": args.name}
    if args.take_over:
        request["take_over"] = True
    done = json.loads(run_command(config, "renew", request))
    if args.json:
        print_json(done)
        return 0
    if "lease" in done:
        print(render_lease(done["lease"]))
    print(f"renewal of {safe(done['cert'])}: {done['state']}, request {safe(done['request'])}")
    if done["csr"]:
        print(f"CSR: {safe(done['csr'])}")
    print(safe(done["detail"]))
    if done["in_daemon"] and done["state"] == "running":
        print(
            f"renewal.command runs in the daemon; `certdrop show {safe(done['cert'])}` follows it"
        )
    return 0


def render_lease(lease: dict[str, Any]) -> str:
    how, until = lease["how"], lease["expires"]
    if how == "unchecked":
        return "renewal lease: not checked (the fleet engine is unreachable; --take-over)"
    if how == "held":
        return f"renewal lease: this gateway holds it until {until} (the engine is unreachable)"
    if lease["previous"]:
        return f"renewal lease: taken over from {safe(lease['previous'])}, held until {until}"
    return f"renewal lease: held by this gateway until {until}"


def render_plan(plan: dict[str, Any]) -> str:
    verb = "retry the open renewal" if plan["action"] == "retry" else "start a renewal"
    command = " ".join(plan["command"]) if plan["command"] else "none: the CSR waits for a person"
    lines = [
        f"renew {safe(plan['cert'])}: would {verb}",
        f"  request  {safe(plan['request'])}",
        f"  CSR      {safe(plan['csr'])}",
        f"  subject  {safe(', '.join(f'{k}={v}' for k, v in plan['subject'].items()))}",
        f"  SANs     {safe(', '.join(plan['sans']))}",
        f"  command  {safe(command)}",
        f"  services {safe(', '.join(plan['services']))} (get the renewed certificate)",
        "nothing was changed",
    ]
    return "\n".join(lines) + "\n"
