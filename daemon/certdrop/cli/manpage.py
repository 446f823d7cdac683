"""``python -m certdrop.cli.manpage``: the man page certdrop(1), made from the parser.

Generated, never kept in git, so it cannot drift from ``--help``: ``deploy/install-cli.sh``
writes it at install time (it needs the ``argparse-manpage`` package).
"""

from __future__ import annotations

import sys

from certdrop import __version__
from certdrop.cli.main import build_parser


def render() -> str:
    """certdrop(1) in roff, every command with its options and examples."""
    from argparse_manpage.manpage import Manpage  # type: ignore[import-untyped]

    page = Manpage(
        build_parser(),
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
