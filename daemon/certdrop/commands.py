"""Feature modules that register CLI sub-commands (@cli.subcommand), state-changing
commands (@app.command) and daemon extensions (app.EXTENSIONS). Importing them here is
what makes them part of the CLI and the daemon.
"""

# watch after assignment: its after_drop hook runs after the hostname auto-assignment.
from certdrop import assignment, check, csr_cli, export_cli, requests, watch  # noqa: F401
