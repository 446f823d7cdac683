"""Feature modules that register CLI sub-commands (@cli.subcommand), state-changing
commands (@app.command) and daemon extensions (app.EXTENSIONS). Importing them here is
what makes them part of the CLI and the daemon.
"""

# watch after assignment: its after_drop hook runs after the hostname auto-assignment.
from certdrop import (  # noqa: F401
    assignment,
    check,
    csr_cli,
    export_cli,
    metrics,
    requests,
    watch,
)
