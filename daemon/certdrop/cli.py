"""``certdrop`` command line: ``main(argv=None)`` returns the exit code.

Exit codes: 0 success; 1 a user error (one line on stderr, no traceback); ``check``
also 2 for expired certificates or overdue renewals.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import NoReturn

from certdrop import __version__, app, status
from certdrop import config as configuration
from certdrop.errors import UserError
from certdrop.inventory import Inventory


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:
        # The contract's exit code for a bad argument is 1, not argparse's 2.
        self.print_usage(sys.stderr)
        self.exit(1, f"{self.prog}: error: {message}\n")


Handler = Callable[[configuration.Config, argparse.Namespace], int]
_SUBCOMMANDS: list[Callable[[argparse._SubParsersAction[_Parser]], None]] = []


def subcommand(
    fn: Callable[[argparse._SubParsersAction[_Parser]], None],
) -> Callable[[argparse._SubParsersAction[_Parser]], None]:
    """Register a function that adds one sub-command (other modules add theirs)."""
    _SUBCOMMANDS.append(fn)
    return fn


def build_parser() -> _Parser:
    parser = _Parser(prog="certdrop", description="Drop-folder certificate daemon.")
    parser.add_argument(
        "--config",
        metavar="FILE",
        help="config file (else $CERTDROP_CONFIG, else ./certdrop.toml, else built-in defaults)",
    )
    parser.add_argument("--version", action="version", version=f"certdrop {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)
    run = sub.add_parser("run", help="watch the inbox and process drops until stopped")
    run.set_defaults(handler=_run)
    st = sub.add_parser("status", help="show certificates, held pieces and services")
    st.add_argument("--json", action="store_true", help="print the JSON object")
    st.set_defaults(handler=_status)
    for add in _SUBCOMMANDS:
        add(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    _load_commands()
    parser = build_parser()
    args = parser.parse_args(argv)
    old_umask = os.umask(0o077)  # keys and the database are private from their first byte
    try:
        config_path = configuration.locate(args.config, os.environ, Path.cwd())
        config = configuration.load(config_path, Path.cwd())
        handler: Handler = args.handler
        if args.command == "run":
            return _run_daemon(config, config_path)
        return handler(config, args)
    except UserError as exc:
        print(f"certdrop: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130
    finally:
        os.umask(old_umask)


def _load_commands() -> None:
    # Imported for their @subcommand / @app.command registrations.
    import certdrop.commands  # noqa: F401


def _run(config: configuration.Config, args: argparse.Namespace) -> int:
    raise AssertionError("handled in main")  # pragma: no cover


def _run_daemon(config: configuration.Config, config_path: Path | None) -> int:
    daemon = app.Daemon(config, config_path=config_path)
    for extension in app.EXTENSIONS:
        daemon.extensions.append(extension)
    return daemon.run()


def _status(config: configuration.Config, args: argparse.Namespace) -> int:
    database = config.state / "inventory.sqlite3"
    # Without a database yet, an empty in-memory one gives the same (empty) answer.
    inventory = Inventory(database, readonly=True) if database.exists() else Inventory.empty()
    try:
        if args.json:
            status.write_json(sys.stdout.buffer, config, inventory)
        else:
            sys.stdout.write(status.render(status.snapshot(config, inventory)))
    finally:
        inventory.close()
    sys.stdout.flush()
    return 0
