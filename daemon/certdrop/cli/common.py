"""What every command module shares: the parser class and the handler signature."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable
from typing import TYPE_CHECKING, NoReturn, TypeAlias

from certdrop import config as configuration


class Parser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:
        # The contract's exit code for a bad argument is 1, not argparse's 2.
        self.print_usage(sys.stderr)
        self.exit(1, f"{self.prog}: error: {message}\n")


if TYPE_CHECKING:
    Subparsers: TypeAlias = argparse._SubParsersAction[Parser]
else:  # subscriptable only for the type checker
    Subparsers = argparse._SubParsersAction
# A command's handler: the loaded configuration and the parsed arguments in, exit code out.
Handler = Callable[[configuration.Config, argparse.Namespace], int]
