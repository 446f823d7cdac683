"""Feature modules that register CLI sub-commands (@cli.subcommand), state-changing
commands (@app.command) and daemon extensions (app.EXTENSIONS). Importing them here is
what makes them part of the CLI and the daemon.
"""

from certdrop import requests  # noqa: F401
