"""What every command module shares: the parser class, the handler signature, and the
way a command is declared (one-line help, description, examples) and prints JSON."""

from __future__ import annotations

import argparse
import sys
import textwrap
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, NoReturn, TypeAlias

from certdrop import config as configuration
from certdrop import jsontext
from certdrop.errors import ConfigError


class Parser(argparse.ArgumentParser):
    def __init__(self, *args: Any, usage_error_code: int = 1, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.usage_error_code = usage_error_code
        self.commands: dict[str, Parser] = {}  # the sub-commands' parsers, by name

    def error(self, message: str) -> NoReturn:
        # The contract: a bad argument exits 1 (not argparse's 2; 3 for the `check` plugin,
        # where 1 would read as WARNING), with one line naming where help is.
        self.exit(
            self.usage_error_code, f"{self.prog}: error: {message}; see `{self.prog} --help`\n"
        )


if TYPE_CHECKING:
    Subparsers: TypeAlias = argparse._SubParsersAction[Parser]
else:  # subscriptable only for the type checker
    Subparsers = argparse._SubParsersAction
# A command's handler: the loaded configuration and the parsed arguments in, exit code out.
Handler = Callable[[configuration.Config, argparse.Namespace], int]
# A command may take over how an error ends it (``check`` says UNKNOWN, exit 3): the
# one-line message and the arguments in, the exit code out.
ErrorHandler = Callable[[str, argparse.Namespace], int]
# A command that can run without a loadable config (``reload``) handles the ConfigError.
ConfigFallback = Callable[[ConfigError, argparse.Namespace], int]



def command(
    sub: Subparsers, name: str, summary: str, description: str, examples: str, **options: Any
) -> Parser:
    """A sub-command: ``summary`` is its line in ``certdrop --help``; its own ``--help``
    shows ``description`` and then ``examples`` (one per line, ``#`` comments allowed).
    ``options`` go to the parser (e.g. ``usage_error_code``)."""
    return sub.add_parser(
        name,
        **options,
        help=summary,
        description=textwrap.fill(" ".join(description.split()), 88),
        epilog="examples:\n" + textwrap.indent(textwrap.dedent(examples).strip("\n"), "  "),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )


# What shtab completes an argument with (shtab.FILE, spelt out so the parser needs no shtab).
FILE_COMPLETION = {"bash": "_shtab_compgen_files", "zsh": "_files", "tcsh": "f"}


def completes_files(action: argparse.Action) -> argparse.Action:
    """Mark an argument as a file name for `certdrop completion`."""
    setattr(action, "complete", FILE_COMPLETION)  # noqa: B010 - shtab reads this attribute
    return action


def add_json(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--json", action="store_true", help="print one JSON object instead")


def print_json(value: Any) -> None:
    """JSON as UTF-8 text with controls escaped (certdrop.jsontext), then a newline."""
    sys.stdout.write(jsontext.dumps(value, indent=1) + "\n")
