"""``certdrop csr NAME --cn CN ...``: a new key and CSR, recorded as a ``requested`` entry.

The CLI half only gathers the arguments; the ``csr`` command runs where the state is
owned: in this process when the state folder is free, else in the daemon through its
control socket. Either way every bad field is reported at once, on one line.
"""

from __future__ import annotations

import argparse
from typing import Any

from certdrop import app, cli
from certdrop import config as configuration
from certdrop.errors import InvalidRequest, UserError
from certdrop.pki.csr import RequestFields
from certdrop.request_drops import checked_request
from certdrop.requests import create_request

# The flags that become RequestFields, in the order their problems are reported.
_TEXT_FIELDS = ("cn", "country", "state", "locality", "org", "ou", "email")


@cli.subcommand
def add_csr_parser(sub: argparse._SubParsersAction[cli._Parser]) -> None:
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
    values: dict[str, Any] = {field: getattr(args, field) for field in _TEXT_FIELDS}
    values.update(name=args.name, sans=args.sans, key_type=args.key_type, key_size=args.key_size)
    print(app.run_command(config, "csr", values))
    return 0


@app.command("csr")
def csr_command(ctx: app.Context, args: dict[str, Any]) -> str:
    """Create the request named ``args["name"]``; returns the CSR's path."""
    name = args.get("name")
    if not isinstance(name, str):
        raise UserError("csr needs a NAME")
    try:
        fields = checked_request(name, ctx.inventory, lambda: fields_from_args(args))
    except InvalidRequest as exc:
        raise UserError(f"request {name!r} not created: {exc}") from None
    return str(create_request(ctx.inventory, ctx.log, ctx.config.outbox, name, fields))


def fields_from_args(args: dict[str, Any]) -> RequestFields:
    """RequestFields from the command's JSON arguments; a key size that is not a whole
    number is one more problem in the same ``InvalidRequest``."""
    problems: list[str] = []
    raw_size = args.get("key_size")
    key_size: int | None = None
    if isinstance(raw_size, int) and not isinstance(raw_size, bool):
        key_size = raw_size
    elif isinstance(raw_size, str) and raw_size.strip().isascii() and raw_size.strip().isdigit():
        key_size = int(raw_size)
    elif raw_size is not None:
        problems.append(f"key_size {str(raw_size)[:20]!r} is not a number; use 2048 or 4096")
    texts = {f: _text(args.get(f)) for f in _TEXT_FIELDS}
    sans = args.get("sans") or []
    try:
        fields = RequestFields.from_values(
            cn=texts.pop("cn") or "",
            sans=[str(s) for s in sans] if isinstance(sans, list) else str(sans),
            key_type=str(args.get("key_type") or "rsa"),
            key_size=key_size,
            **texts,
        )
    except InvalidRequest as exc:
        raise InvalidRequest([*exc.problems, *problems]) from None
    if problems:
        raise InvalidRequest(problems)
    return fields


def _text(value: object) -> str | None:
    return None if value is None else str(value)
