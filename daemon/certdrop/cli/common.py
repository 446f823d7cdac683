"""What every command module shares: the parser class and the handler signature."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, NoReturn, TypeAlias

from certdrop import config as configuration
from certdrop.errors import ConfigError


class Parser(argparse.ArgumentParser):
    def __init__(self, *args: Any, usage_error_code: int = 1, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.usage_error_code = usage_error_code
        self.commands: dict[str, Parser] = {}  # the sub-commands' parsers, by name

    def error(self, message: str) -> NoReturn:
        # The contract's exit code for a bad argument is 1, not argparse's 2 (3 for the
        # `check` plugin, where 1 would read as WARNING).
        self.print_usage(sys.stderr)
        self.exit(self.usage_error_code, f"{self.prog}: error: {message}\n")


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

