"""``certdrop csr NAME --cn CN ...``: a new key and CSR, recorded as a ``requested`` entry.

The CLI half only gathers the arguments; the ``csr`` command runs where the state is
owned: in this process when the state folder is free, else in the daemon through its
control socket. Either way every bad field is reported at once, on one line.
"""

from __future__ import annotations

import argparse
import json
from typing import Any

from certdrop import config as configuration
from certdrop.cli.common import Subparsers, add_json, command, print_json
from certdrop.cli.table import safe
from certdrop.daemon.control import run_command
from certdrop.intake.request import TEXT_FIELDS


def add_parser(sub: Subparsers) -> None:
    """``csr``: its flags mirror the keys of a ``NAME.request.toml`` drop."""
    p = command(
        sub,
        "csr",
        "make a new key and CSR; the entry waits as 'requested'",
        "Make a new private key (kept in the state folder) and a CSR, written to "
        "outbox/NAME.csr (or a safe form of NAME; the path is printed). The certificate the "
        "CA issues for it completes the entry when it is dropped into the inbox. --cn and "
        "--san take internationalised domain names too (converted to IDNA A-labels). Goes "
        "through the daemon when it runs.",
        """
        certdrop csr web --cn www.example.com --san www.example.com --san api.example.com
        certdrop csr '本番 証明書' --cn 例え.jp --org 'Example KK' --country JP
        certdrop csr mail --cn mail.example.com --key-type ec --json
        """,
    )
    p.add_argument("name", metavar="NAME", help="the new entry's name")
    p.add_argument("--cn", required=True, help="common name, e.g. mail.example.com")
    # One value per --san (action=append, no nargs), so a NAME after it is never taken
    # for a SAN: `csr --cn x --san a NAME` works, `--san a b NAME` is an error.
    p.add_argument(
        "--san",
        dest="sans",
        metavar="DNS",
        action="append",
        default=[],
        help="subject alternative name (DNS name or IP address); repeat for more "
        "(--san a --san b); without any, the CN is the only SAN",
    )
    p.add_argument("--country", metavar="CC", help="two-letter country code")
    p.add_argument("--state", metavar="ST", help="state or province")
    p.add_argument("--locality", metavar="L", help="city")
    p.add_argument("--org", metavar="O", help="organization")
    p.add_argument("--ou", metavar="OU", help="organizational unit")
    p.add_argument("--email", metavar="ADDR", help="e-mail address in the subject")
    # Strings, checked with the other fields, so a bad value is one line like the rest.
    p.add_argument(
        "--key-type", metavar="rsa|ec", default="rsa", help="rsa (default) or ec (P-256)"
    )
    p.add_argument("--key-size", metavar="2048|4096", help="RSA key size (default 2048)")
    add_json(p)
    p.set_defaults(handler=run_csr)


def run_csr(config: configuration.Config, args: argparse.Namespace) -> int:
    """Pass the request to the ``csr`` command and print the CSR's path."""
    values: dict[str, Any] = {field: getattr(args, field) for field in TEXT_FIELDS}
    values.update(name=args.name, sans=args.sans, key_type=args.key_type, key_size=args.key_size)
    made = json.loads(run_command(config, "csr", values))
    if args.json:
        print_json(made)
    else:
        print(safe(made["csr"]))
    return 0
