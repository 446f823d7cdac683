"""``certdrop run``: watch the inbox and process drops until stopped."""

from __future__ import annotations

import argparse

from certdrop import config as configuration
from certdrop.cli.common import Subparsers
from certdrop.daemon.app import serve


def add_parser(sub: Subparsers) -> None:
    run = sub.add_parser("run", help="watch the inbox and process drops until stopped")
    run.set_defaults(handler=run_daemon)


def run_daemon(config: configuration.Config, args: argparse.Namespace) -> int:
    return serve(config, args.config_path)
