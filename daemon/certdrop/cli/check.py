"""``certdrop check [--json]``: the expiry check, now, for any monitor (exit 0/1/2)."""

from __future__ import annotations

import argparse
import sys
from typing import Any

from certdrop import config as configuration
from certdrop.cli.common import Subparsers, add_json, command, print_json
from certdrop.cli.table import safe
from certdrop.clock import utc_now
from certdrop.daemon.state import reading
from certdrop.renewal.report import report


def render(data: dict[str, Any]) -> str:
    """One summary line (what a Nagios-style monitor shows), then one line a certificate."""
    certs = data["certificates"]
    attention = [c for c in certs if c["level"] != "ok"]
    lines = [
        f"certdrop check: {data['status'].upper()}: {len(certs)} certificate(s) in use, "
        f"{len(attention)} need attention"
    ]
    for c in certs:
        text = f"{c['level']:8} {safe(c['name'])}: expires {c['not_after']}"
        text += f" ({c['days_left']} days)"
        if c["threshold_days"] is not None:
            text += f", within {c['threshold_days']} days"
        r = c["renewal"]
        if r is not None and r["state"] not in ("completed", "cancelled"):
            text += f"; renewal {safe(r['request'] or '(no request yet)')} {r['state']}"
            if r["attempts"]:
                text += f" after {r['attempts']} failed attempt(s)"
            if r["next_attempt"] and r["state"] == "pending":
                text += f", next {r['next_attempt']}"
            if r["detail"]:
                text += f": {safe(r['detail'])}"
        elif r is None and c["renew_at"] <= data["checked_at"]:
            text += f"; renewal due since {c['renew_at']} (the daemon's next check starts it)"
        elif r is None and c["level"] != "ok":
            text += f"; renewal starts {c['renew_at']}"
        lines.append(text)
    return "\n".join(lines) + "\n"


def add_parser(sub: Subparsers) -> None:
    parser = command(
        sub,
        "check",
        "check expiry now; exit 0 fine, 1 warning, 2 critical",
        "Run the expiry check on the state as it is, like a Nagios/Icinga plugin: exit 0 "
        "when every certificate in use is fine, 1 when one is within a warning threshold, "
        "2 when one has expired or its renewal is overdue. Read-only: it logs nothing.",
        """
        certdrop check
        certdrop check --json | jq '.certificates[] | select(.level != "ok")'
        """,
    )
    add_json(parser)
    parser.set_defaults(handler=_check)


def _check(config: configuration.Config, args: argparse.Namespace) -> int:
    with reading(config) as inventory:
        data = report(config, inventory, utc_now())
    if args.json:
        print_json(data)
    else:
        sys.stdout.write(render(data))
    return int(data["exit_code"])
