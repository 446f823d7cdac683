"""``certdrop reload``: make the running daemon re-read its config, and say how it went.

Unlike SIGHUP this answers: exit 0 when the new config took effect, 1 with the reasons
when it was refused (the previous one stays in force) or no daemon runs. The unit's
``ExecReload=`` runs it, so ``systemctl reload certdrop`` fails visibly too.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from certdrop import config as configuration
from certdrop.cli.common import Subparsers, command
from certdrop.daemon import control
from certdrop.errors import ConfigError, UserError


def add_parser(sub: Subparsers) -> None:
    parser = command(
        sub,
        "reload",
        "make the running daemon re-read its config; exit 1 if it refuses",
        "Ask the running daemon (its control socket) to re-read its config file and wait "
        "for the answer: exit 0 when it took effect, 1 with the reasons when it was refused "
        "(the previous configuration stays in force) or when no daemon runs.",
        """
        certdrop reload
        systemctl reload certdrop            # the unit's ExecReload= runs it
        """,
    )
    parser.set_defaults(handler=reload_daemon, on_config_error=reload_broken)


def reload_daemon(config: configuration.Config, args: argparse.Namespace) -> int:
    # The daemon re-reads its own --config; this one only says where its state is.
    return _ask(config.state)


def reload_broken(error: ConfigError, args: argparse.Namespace) -> int:
    """The file does not load here either: still ask the daemon, which refuses it, logs
    daemon.reload_refused and says why (the same problems)."""
    state = configuration.state_folder(args.config_path) if args.config_path else None
    if state is None:
        raise error
    return _ask(state)


def _ask(state: Path) -> int:
    try:
        print(control.ask(state / "control.sock", "reload"))
    except control.NotRunning as exc:
        raise UserError(f"{exc}: nothing to reload; start it (systemctl start certdrop)") from None
    return 0
