"""``certdrop check [--json] [--probe] [--daemon]``: a preflight and a Nagios/Icinga plugin.

Output as the Monitoring Plugins guidelines want it: the first line is
``CERTDROP <STATE> - <summary> | <perfdata>``, the lines after it say what was found;
exit 0 OK, 1 WARNING, 2 CRITICAL, 3 UNKNOWN (a config that does not load, a state this
user cannot read, a bad argument). The judging is :func:`certdrop.daemon.preflight.checkup`;
this module only renders it.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from typing import Any

from certdrop import config as configuration
from certdrop import jsontext
from certdrop.cli.common import Subparsers, add_json, command, print_json
from certdrop.cli.table import safe
from certdrop.daemon.preflight import checkup

WORDS = {"ok": "OK", "warning": "WARNING", "critical": "CRITICAL", "unknown": "UNKNOWN"}
SEVERITY = {"critical": 0, "unknown": 1, "warning": 2}


def text(value: object) -> str:
    """Printable, and without the ``|`` that would start perfdata in a monitor."""
    return safe(value).replace("|", "/")


def perfdata(data: dict[str, Any], warn_days: Sequence[int]) -> str:
    """``'label'=value[UOM];[warn];[crit];[min];[max]`` for each figure. Days left use
    the config's loosest threshold as warning and its tightest as critical, as ranges
    ("30:" = alert below 30)."""
    certs = data["certificates"]
    levels = [c["level"] for c in certs]
    findings = [f for f in data["preflight"] if f["level"] != "ok"]
    items = []
    if certs:
        warn = f"{max(warn_days)}:" if warn_days else ""
        crit = f"{min(warn_days)}:" if warn_days else ""
        items.append(f"'days_left'={min(c['days_left'] for c in certs)};{warn};{crit};;")
    items += [
        f"'certificates'={len(certs)};;;0;",
        f"'warning'={levels.count('warning')};;;0;",
        f"'critical'={sum(lv in ('overdue', 'expired') for lv in levels)};;;0;",
        f"'problems'={len(findings)};;;0;",
        f"'checks'={len(data['preflight'])};;;0;",
    ]
    return " ".join(items)


def summary(data: dict[str, Any]) -> str:
    """The words of the first line: the worst problem first, then the certificates."""
    findings = sorted(
        (f for f in data["preflight"] if f["level"] != "ok"),
        key=lambda f: SEVERITY.get(f["level"], 3),
    )
    certs = data["certificates"]
    attention = [c for c in certs if c["level"] != "ok"]
    parts = []
    if findings:
        first = f"{findings[0]['check']}: {findings[0]['detail']}"
        more = f" (+{len(findings) - 1} more)" if len(findings) > 1 else ""
        parts.append(first + more)
    tight = f"{len(certs)} certificate(s) in use"
    if certs:  # soonest first: the one needing attention, else the next to expire
        c = certs[0] if not attention else attention[0]
        days = c["days_left"]
        if days < 0 or c["level"] == "expired":
            tight += f", {c['name']} expired {abs(days)} days ago"
        else:
            tight += f", {c['name']} expires in {days} days"
            tight += " (its renewal is overdue)" if c["level"] == "overdue" else ""
    parts.append(tight)
    return text("; ".join(parts))


def render(data: dict[str, Any], warn_days: Sequence[int]) -> str:
    """The plugin output: the summary line with perfdata, then one line a finding that is
    not ok and one line a certificate in use."""
    lines = [f"CERTDROP {WORDS[data['status']]} - {summary(data)} | {perfdata(data, warn_days)}"]
    for f in data["preflight"]:
        if f["level"] != "ok":
            lines.append(text(f"{WORDS[f['level']]} {f['check']}: {f['detail']}"))
    for c in data["certificates"]:
        lines.append(text(_certificate_line(c, data["checked_at"])))
    return "\n".join(lines) + "\n"


def _certificate_line(c: dict[str, Any], checked_at: str) -> str:
    line = f"{c['level']:8} {c['name']}: expires {c['not_after']} ({c['days_left']} days)"
    if c["threshold_days"] is not None:
        line += f", within {c['threshold_days']} days"
    r = c["renewal"]
    if r is not None and r["state"] not in ("completed", "cancelled"):
        line += f"; renewal {r['request'] or '(no request yet)'} {r['state']}"
        if r["attempts"]:
            line += f" after {r['attempts']} failed attempt(s)"
        if r["next_attempt"] and r["state"] == "pending":
            line += f", next {r['next_attempt']}"
        if r["detail"]:
            line += f": {r['detail']}"
    elif r is None and c["renew_at"] <= checked_at:
        line += f"; renewal due since {c['renew_at']} (the daemon's next check starts it)"
    elif r is None and c["level"] != "ok":
        line += f"; renewal starts {c['renew_at']}"
    return line


def add_parser(sub: Subparsers) -> None:
    parser = command(
        sub,
        "check",
        "preflight and expiry check (a Nagios plugin): exit 0 OK .. 3 UNKNOWN",
        "Check expiry and renewals of every certificate in use, and the setup (config, "
        "folders, trust bundle, passphrase files, service folders, owners and reload "
        "programs, renewal.command), as a Nagios/Icinga plugin: exit 0 OK, 1 WARNING, "
        "2 CRITICAL, 3 UNKNOWN, the summary and perfdata on the first line. Read-only.",
        """
        certdrop check
        certdrop check --probe --daemon      # also a TLS handshake per service, daemon health
        certdrop check --json | jq '.preflight[] | select(.level != "ok")'
        """,
        usage_error_code=3,  # a plugin's bad argument is UNKNOWN, not WARNING
    )
    add_json(parser)
    parser.add_argument(
        "--probe", action="store_true", help="also do a TLS handshake with each probe target"
    )
    parser.add_argument(
        "--daemon",
        action="store_true",
        help="also ask the running daemon (control socket) whether it is healthy",
    )
    parser.set_defaults(handler=_check, on_error=unknown)


def _check(config: configuration.Config, args: argparse.Namespace) -> int:
    data = checkup(config, probe=args.probe, daemon=args.daemon)
    if args.json:
        print_json(data)
    else:
        sys.stdout.write(render(data, config.warn_days))
    return int(data["exit_code"])


def unknown(message: str, args: argparse.Namespace) -> int:
    """What ``main`` calls when the check cannot even start (the config does not load,
    a file this user may not read): UNKNOWN, on stdout where a monitor reads it."""
    if getattr(args, "json", False):
        print(jsontext.dumps({"status": "unknown", "exit_code": 3, "error": message}))
    else:
        print(f"CERTDROP UNKNOWN - {text(message)}")
    return 3
