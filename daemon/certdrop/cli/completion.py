"""``certdrop completion bash|zsh``: a shell completion script, made from the parser."""

from __future__ import annotations

import argparse
import sys

from certdrop import config as configuration
from certdrop.cli.common import Subparsers, command

SHELLS = ("bash", "zsh")


def add_parser(sub: Subparsers) -> None:
    p = command(
        sub,
        "completion",
        "print a bash or zsh completion script",
        "Print a completion script for bash or zsh, generated from certdrop's own parser "
        "(shtab), so every command and option completes.",
        """
        certdrop completion bash > /etc/bash_completion.d/certdrop
        certdrop completion zsh > /usr/local/share/zsh/site-functions/_certdrop
        source <(certdrop completion bash)     # this shell only
        """,
    )
    p.add_argument("shell", metavar="SHELL", choices=SHELLS, help="bash or zsh")
    p.set_defaults(handler=run_completion, config_free=True)


def run_completion(config: configuration.Config, args: argparse.Namespace) -> int:
    import shtab  # only this command needs it

    from certdrop.cli.main import build_parser  # the whole parser, built once more

    sys.stdout.write(shtab.complete(build_parser(), shell=args.shell))
    return 0
