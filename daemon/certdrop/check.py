"""``certdrop check [--json]``: the expiry check, now, for any monitor.

Read-only: it opens the inventory read-only, emits no event and remembers nothing, so
the daemon's once-only warnings are still its own to give. It calls the same
:func:`certdrop.expiry.assess` the daemon acts on. Exit 0 when all is fine, 1 when a
certificate in use is within a warning threshold, 2 when one has expired or its renewal
is overdue. Certificates that no service uses or serves are not checked: their expiry
harms nobody (a renewed certificate's predecessor is one of them).
"""

from __future__ import annotations

import argparse
import json
import sys
from datetime import datetime
from typing import Any

from certdrop import cli, expiry, ledger
from certdrop import config as configuration
from certdrop.inventory import Inventory
from certdrop.status import _safe  # one printable line, as `status` prints names
from certdrop.statuslog import iso, utc_now
from certdrop.watch import policy_of

STATUS = {0: "ok", 1: "warning", 2: "critical"}


def report(
    config: configuration.Config, inventory: Inventory | None, now: datetime
) -> dict[str, Any]:
    """The check's findings as one JSON-ready object (``inventory`` None: no state yet)."""
    policy = policy_of(config)
    found: list[dict[str, Any]] = []
    watched = ledger.in_use(inventory, config.services) if inventory is not None else []
    renewals = ledger.renewals(inventory) if inventory is not None else {}
    for cert in watched:
        assessment = expiry.assess(cert.lifetime, frozenset(), policy, now)
        renewal = renewals.get(cert.name)
        level = assessment.level
        found.append(
            {
                "name": cert.name,
                "sha256": cert.sha256,
                "not_after": cert.not_after,
                "days_left": expiry.days(cert.lifetime.left(now)),
                "level": level,
                "threshold_days": assessment.threshold,
                "renew_at": iso(assessment.renew_at),
                "overdue_at": iso(assessment.overdue_at),
                "services": list(cert.services),
                "renewal": _renewal(renewal) if renewal is not None else None,
            }
        )
    code = max((expiry.EXIT_CODES[c["level"]] for c in found), default=0)
    return {
        "status": STATUS[code],
        "exit_code": code,
        "checked_at": iso(now),
        "certificates": found,
    }


def _renewal(r: ledger.Renewal) -> dict[str, Any]:
    return {
        "state": r.state,
        "request": r.request or None,
        "attempts": r.attempts,
        "next_attempt": iso(r.next_attempt) if r.next_attempt else None,
        "started": iso(r.started),
        "detail": r.detail,
    }


def render(data: dict[str, Any]) -> str:
    """One summary line (what a Nagios-style monitor shows), then one line a certificate."""
    certs = data["certificates"]
    attention = [c for c in certs if c["level"] != "ok"]
    lines = [
        f"certdrop check: {data['status'].upper()}: {len(certs)} certificate(s) in use, "
        f"{len(attention)} need attention"
    ]
    for c in certs:
        text = f"{c['level']:8} {_safe(c['name'])}: expires {c['not_after']}"
        text += f" ({c['days_left']} days)"
        if c["threshold_days"] is not None:
            text += f", within {c['threshold_days']} days"
        r = c["renewal"]
        if r is not None and r["state"] not in ("completed", "cancelled"):
            text += f"; renewal {_safe(r['request'] or '(no request yet)')} {r['state']}"
            if r["attempts"]:
                text += f" after {r['attempts']} failed attempt(s)"
            if r["next_attempt"] and r["state"] == "pending":
                text += f", next {r['next_attempt']}"
            if r["detail"]:
                text += f": {_safe(r['detail'])}"
        elif r is None and c["renew_at"] <= data["checked_at"]:
            text += f"; renewal due since {c['renew_at']} (the daemon's next check starts it)"
        elif r is None and c["level"] != "ok":
            text += f"; renewal starts {c['renew_at']}"
        lines.append(text)
    return "\n".join(lines) + "\n"


def run(config: configuration.Config, *, now: datetime | None = None) -> dict[str, Any]:
    database = config.state / "inventory.sqlite3"
    if not database.exists():
        return report(config, None, now or utc_now())
    inventory = Inventory(database, readonly=True)
    try:
        return report(config, inventory, now or utc_now())
    finally:
        inventory.close()


@cli.subcommand
def _add_check(sub: argparse._SubParsersAction[cli._Parser]) -> None:
    parser = sub.add_parser(
        "check",
        help="check expiry and renewals now; exit 0 fine, 1 warning, 2 expired or overdue",
    )
    parser.add_argument("--json", action="store_true", help="print the JSON object")
    parser.set_defaults(handler=_check)


def _check(config: configuration.Config, args: argparse.Namespace) -> int:
    data = run(config)
    if args.json:
        print(json.dumps(data, indent=1, ensure_ascii=True))
    else:
        sys.stdout.write(render(data))
    return int(data["exit_code"])
