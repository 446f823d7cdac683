"""``certdrop`` command line: ``main(argv=None)`` returns the exit code.

Exit codes: 0 success; 1 a user error (one line on stderr, no traceback); ``check``
also 2 for expired certificates or overdue renewals.
"""

from __future__ import annotations

import os
import sqlite3
import sys
from collections.abc import Callable, Sequence
from pathlib import Path

from certdrop import __version__
from certdrop import config as configuration
from certdrop.cli import assign, check, csr, export, run, status
from certdrop.cli.common import Handler, Parser, Subparsers
from certdrop.errors import UserError
from certdrop.faults import describe, storage_fault

# Every sub-command, in the order `certdrop --help` lists them.
COMMANDS: tuple[Callable[[Subparsers], None], ...] = (
    run.add_parser,
    status.add_parser,
    assign.add_parser,
    check.add_parser,
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
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    old_umask = os.umask(0o077)  # keys and the database are private from their first byte
    try:
        args.config_path = configuration.locate(args.config, os.environ, Path.cwd())
        config = configuration.load(args.config_path, Path.cwd())
        handler: Handler = args.handler
        return handler(config, args)
    except UserError as exc:
        print(f"certdrop: {exc}", file=sys.stderr)
        return 1
    except (OSError, sqlite3.Error) as exc:
        fault = storage_fault(exc)
        if fault is None:
            raise
        print(
            f"certdrop: cannot use {fault.path}: {describe(fault.errno)}; free space or "
            "make the file system writable, then run the command again",
            file=sys.stderr,
        )
        return 1
    except KeyboardInterrupt:
        return 130
    finally:
        os.umask(old_umask)
