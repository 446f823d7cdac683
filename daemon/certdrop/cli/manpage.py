"""``python -m certdrop.cli.manpage``: the man page certdrop(1), made from the parser.

Generated, never kept in git, so it cannot drift from ``--help``: ``deploy/install-cli.sh``
writes it at install time (it needs the ``argparse-manpage`` package).
"""

from __future__ import annotations

import argparse
import sys

from certdrop import __version__
from certdrop.cli.main import build_parser


def _roff(line: str) -> str:
    """One line of literal text in roff: backslashes and dashes escaped, no request."""
    text = line.replace("\\", "\\e").replace("-", "\\-")
    return "\\&" + text if text.startswith((".", "'")) else text


def examples(parser: argparse.ArgumentParser) -> str:
    """An EXAMPLES section from each command's own examples (its --help epilog), which
    argparse-manpage leaves out for sub-commands."""
    lines: list[str] = []
    for action in parser._actions:
        if not isinstance(action, argparse._SubParsersAction):
            continue
        for name, sub in action.choices.items():
            shown = (sub.epilog or "").partition("examples:\n")[2]
            found = [line.strip() for line in shown.splitlines() if line.strip()]
            if found:
                lines += [".TP", f".B certdrop {name}", ".nf", *map(_roff, found), ".fi"]
    return "\n".join(lines)


def render() -> str:
    """certdrop(1) in roff, every command with its options and examples."""
    from argparse_manpage.manpage import Manpage  # type: ignore[import-untyped]

    parser = build_parser()
    parser._manpage = [{"heading": "examples", "content": examples(parser)}]  # type: ignore[attr-defined]
    page = Manpage(
        parser,
        {
            "project_name": "certdrop",
            "version": __version__,
            "manual_title": "certdrop manual",
            "description": "drop-folder certificate daemon",
            "url": "https://github.com/certdrop/certdrop",
        },
    )
    return str(page)


def main() -> int:
    sys.stdout.write(render())
    return 0


if __name__ == "__main__":
    sys.exit(main())
