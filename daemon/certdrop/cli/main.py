"""``certdrop`` command line: ``main(argv=None)`` returns the exit code.

Exit codes: 0 success; 1 a user error (one line on stderr, no traceback); ``check`` is a
Nagios plugin: 0 OK, 1 WARNING, 2 CRITICAL, 3 UNKNOWN (its errors included).
"""

from __future__ import annotations

import argparse
import os
import sqlite3
import sys
from collections.abc import Callable, Sequence
from pathlib import Path

from certdrop import __version__
from certdrop import config as configuration
from certdrop.cli import assign, check, csr, export, reload, run, status
from certdrop.cli.common import (
    ConfigFallback,
    ErrorHandler,
    Handler,
    Parser,
    Subparsers,
)
from certdrop.errors import ConfigError, UserError, permission_message
from certdrop.faults import describe, storage_fault

# Every sub-command, in the order `certdrop --help` lists them.
COMMANDS: tuple[Callable[[Subparsers], None], ...] = (
    run.add_parser,
    status.add_parser,
    assign.add_parser,
    check.add_parser,
    reload.add_parser,
    csr.add_parser,
    export.add_parser,
)


def build_parser() -> Parser:
    parser = Parser(prog="certdrop", description="Drop-folder certificate daemon.")
    parser.add_argument(
        "--config",
        metavar="FILE",
        help="config file (else $CERTDROP_CONFIG, else ./certdrop.toml, else built-in defaults)",
    )
    parser.add_argument("--version", action="version", version=f"certdrop {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, parser_class=Parser)
    for add in COMMANDS:
        add(sub)
    parser.commands = sub.choices
    return parser


def _failed(message: str, args: argparse.Namespace) -> int:
    on_error: ErrorHandler | None = getattr(args, "on_error", None)
    if on_error is not None:
        return on_error(message, args)
    print(f"certdrop: {message}", file=sys.stderr)
    return 1


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args, extra = parser.parse_known_args(argv)
    if extra:  # said by the command's own parser: `check` exits 3 for it, like a plugin
        command = parser.commands.get(args.command, parser)
        command.error(f"unrecognized arguments: {' '.join(extra)}")
    old_umask = os.umask(0o077)  # keys and the database are private from their first byte
    try:
        args.config_path = configuration.locate(args.config, os.environ, Path.cwd())
        try:
            config = configuration.load(args.config_path, Path.cwd())
        except ConfigError as exc:
            # `reload` still reaches the daemon with a broken file, to have it refused there.
            fallback: ConfigFallback | None = getattr(args, "on_config_error", None)
            if fallback is None:
                raise
            return fallback(exc, args)
        handler: Handler = args.handler
        return handler(config, args)
    except UserError as exc:
        return _failed(str(exc), args)
    except PermissionError as exc:
        # A monitor without the state_group: one line naming the path, never a traceback.
        return _failed(permission_message(exc), args)
    except (OSError, sqlite3.Error) as exc:
        fault = storage_fault(exc)  # full, read-only or failing: one line, never a traceback
        if fault is None:
            raise
        return _failed(
            f"cannot use {fault.path}: {describe(fault.errno)}; free space or make the file "
            "system writable, then run the command again",
            args,
        )
    except KeyboardInterrupt:
        return 130
    finally:
        os.umask(old_umask)
