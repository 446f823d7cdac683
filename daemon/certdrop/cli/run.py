"""``certdrop run``: watch the inbox and process drops until stopped.

On a terminal every event is also printed as a readable line (the status log stays JSON
Lines), starting with what is watched and how many drops wait. Under systemd the JSON
lines go to stderr, for the journal, as before.
"""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any

from certdrop import config as configuration
from certdrop.cli.common import Subparsers, command
from certdrop.cli.table import clip, safe
from certdrop.daemon.app import serve

# The fields that say most about each family of events, shown first.
_FIRST = ("name", "file", "cert", "service", "certificate", "code", "state", "reason", "detail")


def add_parser(sub: Subparsers) -> None:
    run = command(
        sub,
        "run",
        "watch the inbox and process drops until stopped",
        "Run the daemon: watch the inbox, take every drop through intake, deploy to "
        "services, check expiry and hand renewals to the CA. Stops on SIGTERM or Ctrl-C; "
        "SIGHUP re-reads the config. On a terminal it prints each event as a line; the "
        "status log (state/status.log) gets them as JSON.",
        """
        certdrop run
        certdrop --config /etc/certdrop/certdrop.toml run
        """,
    )
    run.set_defaults(handler=run_daemon)


def run_daemon(config: configuration.Config, args: argparse.Namespace) -> int:
    show = _print_readable if sys.stdout.isatty() else None
    return serve(config, args.config_path, show=show)


def _print_readable(line: str) -> None:
    sys.stdout.write(readable(line) + "\n")
    sys.stdout.flush()


def readable(line: str) -> str:
    """A status-log line as a person reads it: ``12:00:01 drop.accepted file=web.pem ...``."""
    try:
        event: dict[str, Any] = json.loads(line)
    except ValueError:
        return safe(line)
    ts = str(event.pop("ts", ""))[11:19]
    level = str(event.pop("level", ""))
    name = str(event.pop("event", ""))
    if name == "daemon.started":
        waiting = event.get("waiting", 0)
        services = ", ".join(event.get("services") or []) or "none"
        return (
            f"{ts} certdrop watches {safe(event.get('inbox'))} for drops "
            f"({waiting} waiting); state {safe(event.get('state'))}; config "
            f"{safe(event.get('config'))}; services: {safe(services)}. Ctrl-C stops."
        )
    mark = {"warning": "WARN ", "error": "ERROR "}.get(level, "")
    keys = [k for k in _FIRST if k in event] + [k for k in event if k not in _FIRST]
    fields = " ".join(f"{k}={_value(event[k])}" for k in keys)
    return f"{ts} {mark}{name} {clip(safe(fields), 400)}".rstrip()


def _value(value: object) -> str:
    if isinstance(value, str):
        return value if value and " " not in value else json.dumps(value, ensure_ascii=False)
    return json.dumps(value, ensure_ascii=False)
