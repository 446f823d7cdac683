"""``certdrop status [PATTERN] [filters] [--json]``: certificates, held pieces and services.

Read from the inventory (read-only) by whoever may open it, else from status.json: a
member of ``state_group`` sees the snapshot the daemon last wrote (filtered the same way).
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import tempfile
from datetime import timedelta
from typing import Any

from certdrop import config as configuration
from certdrop import jsontext
from certdrop.cli.common import Subparsers, add_json, command
from certdrop.cli.table import render
from certdrop.clock import iso, utc_now
from certdrop.daemon.state import reading
from certdrop.errors import UserError
from certdrop.store import snapshot

STATUSES = ("requested", "unused", "in_use")


def days(text: str) -> int:
    """``--expiring DAYS``: a whole number of days, 0 or more."""
    if not text.strip().isdigit():
        raise argparse.ArgumentTypeError(f"DAYS must be a whole number of days, not {text!r}")
    return int(text)


def add_parser(sub: Subparsers) -> None:
    st = command(
        sub,
        "status",
        "list certificates, held pieces and services (filter, sort)",
        "List every certificate with its status, subject, expiry and services, the pieces "
        "held for their partner, and where each service stands. The filters narrow the "
        "certificates; --service also narrows the services. Reads the state only, so it "
        "works beside a running daemon.",
        """
        certdrop status
        certdrop status --json | jq '.certificates[].name'
        certdrop status --status in_use --expiring 30 --sort expiry
        certdrop status --service admin-console
        certdrop status '本番*'           # a shell glob over the whole name (quote it)
        """,
    )
    st.add_argument(
        "pattern", metavar="PATTERN", nargs="?", help="shell glob the name must match (*, ?, [])"
    )
    st.add_argument("--status", choices=STATUSES, help="only certificates with this status")
    st.add_argument(
        "--expiring",
        metavar="DAYS",
        type=days,
        help="only certificates that end within DAYS days (expired ones included)",
    )
    st.add_argument(
        "--service", metavar="NAME", help="only what service NAME should have or serves"
    )
    st.add_argument(
        "--sort",
        choices=("name", "expiry"),
        default="name",
        help="order by name (default) or by expiry, soonest first",
    )
    add_json(st)
    st.set_defaults(handler=show_status)


def selection(config: configuration.Config, args: argparse.Namespace) -> snapshot.Selection:
    if args.service is not None and args.service not in config.services:
        have = ", ".join(sorted(config.services)) or "none"
        raise UserError(
            f"no service named {args.service!r} in {config.source} (configured: {have})"
        )
    expiring = None
    if args.expiring is not None:
        expiring = iso(utc_now() + timedelta(days=args.expiring))
    return snapshot.Selection(
        status=args.status,
        expiring_by=expiring,
        service=args.service,
        pattern=args.pattern,
        sort=args.sort,
    )


def show_status(config: configuration.Config, args: argparse.Namespace) -> int:
    chosen = selection(config, args)
    if chosen == snapshot.Selection():
        chosen = snapshot.EVERYTHING
    database = config.state / "inventory.sqlite3"
    if database.exists() and not os.access(database, os.R_OK):
        return _from_snapshot(config, args, chosen)
    # The state is held only while it is read: the JSON is streamed into a spool (memory
    # up to 16 MiB, then a private temp file), the table made, and printed only after,
    # so a slow reader of our output (a pager) never keeps a daemon from starting.
    with tempfile.SpooledTemporaryFile(max_size=16 * 1024 * 1024) as spool:
        with reading(config) as inventory:
            if args.json:
                snapshot.write_json(spool, config, inventory, chosen)
            else:
                data = snapshot.snapshot(config, inventory, chosen)
        if not args.json:
            sys.stdout.write(render(data))
            return 0
        spool.seek(0)
        sys.stdout.flush()
        shutil.copyfileobj(spool, sys.stdout.buffer)
    return 0


def _from_snapshot(
    config: configuration.Config, args: argparse.Namespace, chosen: snapshot.Selection
) -> int:
    """The database is root-only: show status.json (0640 for the state_group)."""
    data = snapshot.select(read_snapshot(config), chosen)
    if args.json:
        print(jsontext.dumps(data))
    else:
        sys.stdout.write(render(data))
    return 0


def read_snapshot(config: configuration.Config) -> dict[str, Any]:
    """status.json, for a reader the root-only database keeps out; one line if it can't."""
    try:
        return snapshot.read_json(config.status_json)
    except FileNotFoundError:
        raise UserError(
            f"{config.state / 'inventory.sqlite3'} is root-only and {config.status_json} "
            "does not exist yet; run as root, or start the daemon once"
        ) from None
    except ValueError as exc:
        raise UserError(f"{config.status_json} cannot be read: {exc}") from None
