"""Sub-commands beyond run and status; each registers itself with the CLI and the daemon."""
