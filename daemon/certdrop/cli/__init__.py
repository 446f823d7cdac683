"""The command line: argv in, text or JSON out. The only code that prints.

One module per command (``run``, ``status``, ``assign``, ``check``, ``reload``, ``csr``,
``export``), each with an ``add_parser``; :data:`certdrop.cli.main.COMMANDS` is the
static table of them. ``common`` holds the parser class, ``table`` the text tables.

May import everything below it (``daemon`` and all beneath). Nothing imports ``cli``
except ``certdrop.__main__`` and the console script.
"""

from certdrop.cli.main import main

__all__ = ["main"]
