"""``certdrop csr NAME --cn CN ...``: a new key and CSR, recorded as a ``requested`` entry.

The CLI half only gathers the arguments; the ``csr`` command runs where the state is
owned: in this process when the state folder is free, else in the daemon through its
control socket. Either way every bad field is reported at once, on one line.
"""

from __future__ import annotations

import argparse
from typing import Any

from certdrop import config as configuration
from certdrop.cli.common import Subparsers
from certdrop.daemon.control import run_command
from certdrop.intake.request import TEXT_FIELDS


def add_parser(sub: Subparsers) -> None:
    """``csr``: its flags mirror the keys of a ``NAME.request.toml`` drop."""
    p = sub.add_parser(
        "csr",
        help="make a new key and a CSR for a CA; the entry waits as 'requested'",
        description="Make a new private key (kept in the state folder) and a CSR, written "
        "to outbox/NAME.csr. The certificate the CA issues for it completes the entry "
        "when it is dropped into the inbox.",
    )
    p.add_argument("name", metavar="NAME", help="the new entry's name")
    p.add_argument("--cn", required=True, help="common name, e.g. mail.example.com")
    p.add_argument(
        "--san",
        dest="sans",
        metavar="DNS",
        action="extend",
        nargs="+",
        default=[],
        help="subject alternative name (DNS name or IP address), repeatable; "
        "without any, the CN is the only SAN",
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
    p.set_defaults(handler=run_csr)


def run_csr(config: configuration.Config, args: argparse.Namespace) -> int:
    """Pass the request to the ``csr`` command and print the CSR's path."""
    values: dict[str, Any] = {field: getattr(args, field) for field in TEXT_FIELDS}
    values.update(name=args.name, sans=args.sans, key_type=args.key_type, key_size=args.key_size)
    print(run_command(config, "csr", values))
    return 0
