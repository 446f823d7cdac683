"""``certdrop`` command line: ``main(argv=None)`` returns the exit code.

Exit codes: 0 success; 1 a user error (one line on stderr, no traceback); ``check`` is a
Nagios plugin: 0 OK, 1 WARNING, 2 CRITICAL, 3 UNKNOWN (its errors included); 141 when
the reader of our output went away (``certdrop status --json | head``), quietly, as a
shell pipeline expects.
"""

from __future__ import annotations

import argparse
import io
import os
import sqlite3
import sys
from collections.abc import Callable, Sequence
from pathlib import Path

from certdrop import __version__
from certdrop import config as configuration
from certdrop.cli import (
    assign,
    check,
    completion,
    csr,
    delete,
    export,
    fleet,
    held,
    inspect,
    reload,
    rename,
    renew,
    run,
    show,
    status,
    unassign,
)
from certdrop.cli.common import (
    ConfigFallback,
    ErrorHandler,
    Handler,
    Parser,
    Subparsers,
    completes_files,
)
from certdrop.errors import ConfigError, UserError, permission_message
from certdrop.faults import describe, storage_fault

# Every sub-command, in the order `certdrop --help` lists them.
COMMANDS: tuple[Callable[[Subparsers], None], ...] = (
    run.add_parser,
    status.add_parser,
    show.add_parser,
    inspect.add_parser,
    held.add_parser,
    assign.add_parser,
    unassign.add_parser,
    check.add_parser,
    renew.add_parser,
    reload.add_parser,
    csr.add_parser,
    export.add_parser,
    rename.add_parser,
    delete.add_parser,
    completion.add_parser,
    fleet.add_parser,
)
EXIT_PIPE = 141  # 128 + SIGPIPE: what a shell reports for a reader that went away


def build_parser() -> Parser:
    parser = Parser(
        prog="certdrop",
        description="Drop-folder certificate daemon: certificates, chains and keys dropped "
        "into the inbox are checked, paired, deployed to services with proof and rollback, "
        "and renewed before they expire.",
    )
    completes_files(
        parser.add_argument(
            "--config",
            metavar="FILE",
            help="config file (else $CERTDROP_CONFIG, else ./certdrop.toml, else defaults)",
        )
    )
    parser.add_argument("--version", action="version", version=f"certdrop {__version__}")
    sub = parser.add_subparsers(
        dest="command", required=True, parser_class=Parser, metavar="COMMAND"
    )
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
    for stream in (sys.stdout, sys.stderr):
        if isinstance(stream, io.TextIOWrapper):  # a non-UTF-8 locale must not crash a name
            stream.reconfigure(errors="backslashreplace")
    try:
        return _main(argv)
    except BrokenPipeError:
        _quiet_stdout()
        return EXIT_PIPE


def _main(argv: Sequence[str] | None) -> int:
    parser = build_parser()
    try:
        args, extra = parser.parse_known_args(argv)
        if extra:  # said by the command's own parser: `check` exits 3 for it, like a plugin
            command = parser.commands.get(args.command, parser)
            command.error(f"unrecognized arguments: {' '.join(extra)}")
    except SystemExit as exc:  # --help (0) or a bad argument (1, one line on stderr)
        return exc.code if isinstance(exc.code, int) else 1
    old_umask = os.umask(0o077)  # keys and the database are private from their first byte
    try:
        args.config_path = configuration.locate(args.config, os.environ, Path.cwd())
        try:
            path = None if getattr(args, "config_free", False) else args.config_path
            config = configuration.load(path, Path.cwd())
        except ConfigError as exc:
            # `reload` still reaches the daemon with a broken file, to have it refused there.
            fallback: ConfigFallback | None = getattr(args, "on_config_error", None)
            if fallback is None:
                raise
            return fallback(exc, args)
        handler: Handler = args.handler
        code = handler(config, args)
        sys.stdout.flush()  # here, so a closed pipe is caught here and not at exit
        return code
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


def _quiet_stdout() -> None:
    """After EPIPE: point stdout at /dev/null so the interpreter's final flush of what
    is still buffered cannot fail again (the Python docs' SIGPIPE note)."""
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        os.close(devnull)
    except (OSError, ValueError, io.UnsupportedOperation):
        pass  # stdout is not a real file (a test's capture): nothing will flush to a pipe
