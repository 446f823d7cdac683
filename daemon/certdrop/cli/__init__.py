"""The command line: argv in, text or JSON out. The only code that prints.

One module per command (``run``, ``status``, ``show``, ``inspect``, ``held``, ``assign``,
``unassign``, ``check``, ``renew``, ``reload``, ``csr``, ``export``, ``rename``,
``delete``, ``completion``), each with an ``add_parser``; :data:`certdrop.cli.main.COMMANDS`
is the static table of them. ``common`` holds the parser class and how a command is
declared, ``table`` the text tables (display width), ``manpage`` the man page generator.

May import everything below it (``daemon`` and all beneath). Nothing imports ``cli``
except ``certdrop.__main__`` and the console script.
"""

from certdrop.cli.main import main

__all__ = ["main"]
