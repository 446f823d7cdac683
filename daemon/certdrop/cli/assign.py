"""``certdrop assign [--dry-run] NAME SERVICE...``: deploy a certificate to services now."""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any

from certdrop import config as configuration
from certdrop.cli.common import Subparsers, add_json, command, print_json
from certdrop.cli.table import safe
from certdrop.daemon.control import run_command
from certdrop.daemon.state import reading
from certdrop.services.rehearse import rehearse


def add_parser(sub: Subparsers) -> None:
    parser = command(
        sub,
        "assign",
        "deploy a certificate to services (prove, roll back)",
        "Make certificate NAME the one each SERVICE should have and deploy it now: write "
        "the files, run the reload, probe until the new certificate is served, and put the "
        "previous files back if it is not. Goes through the daemon when it runs. "
        "--dry-run shows the files (paths, owner, modes), the reload command and the probe "
        "without changing anything.",
        """
        certdrop assign web admin-console
        certdrop assign --dry-run '本番 証明書' smtp-in smtp-out
        certdrop assign web admin-console --json
        """,
    )
    parser.add_argument("name", metavar="NAME", help="the certificate's name in `status`")
    parser.add_argument(
        "services",
        metavar="SERVICE",
        nargs="+",
        help="[services.NAME] tables; in fleet mode also GATEWAY/SERVICE or */SERVICE",
    )
    parser.add_argument(
        "--dry-run", action="store_true", help="show what would be written and run; change nothing"
    )
    add_json(parser)
    parser.set_defaults(handler=assign)


def assign(config: configuration.Config, args: argparse.Namespace) -> int:
    if args.dry_run:
        with reading(config) as inventory:
            plan = rehearse(config, inventory, args.name, args.services)
        if args.json:
            print_json(plan)
        else:
            sys.stdout.write(render_plan(plan))
        return 0
    output = run_command(config, "assign", {"name": args.name, "services": args.services})
    results = json.loads(output)
    if args.json:
        print_json({"certificate": args.name, "services": results})
    else:
        for r in results:
            print(f"{safe(r['service'])}: {r['state']}: {safe(r['detail'])}")
    # "queued": a decision for other gateways, published for them to deploy and prove.
    failed = [r["service"] for r in results if r["state"] not in ("ok", "queued")]
    if failed:
        print(
            f"certdrop: {len(failed)} of {len(results)} services did not take "
            f"{safe(args.name)}: {', '.join(failed)}; see `certdrop status`",
            file=sys.stderr,
        )
        return 1
    return 0


def render_plan(plan: dict[str, Any]) -> str:
    lines = [f"assign {safe(plan['certificate'])} (sha256 {plan['sha256'][:16]}): dry run"]
    for s in plan["services"]:
        now = s["current"] or "nothing"
        lines.append(f"{safe(s['service'])} ({s['role']}), now {safe(now)}:")
        if "problem" in s:
            lines.append(f"  would fail: {safe(s['problem'])}")
            continue
        if s.get("unchanged"):
            lines.append("  already serves it from these files: nothing to do")
        for f in s["files"]:
            state = "unchanged" if f["unchanged"] else "replaced" if f["exists"] else "created"
            secret = ", holds the key" if f["secret"] else ""
            lines.append(
                f"  write {safe(f['path'])}  {f['owner']}:{f['group']} {f['mode']}  "
                f"{f['bytes']} bytes ({f['role']}, {state}{secret})"
            )
        if s["reload"]:
            shared = s["reload_shared_with"]
            also = f" (once, also for {', '.join(shared)})" if shared else ""
            lines.append(f"  reload {safe(' '.join(s['reload']))}{also}")
        else:
            lines.append("  no reload command")
        lines.append(f"  proof: {safe(s['proof'])}")
    lines.append("nothing was changed")
    return "\n".join(lines) + "\n"
