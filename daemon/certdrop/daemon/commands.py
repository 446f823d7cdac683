"""The state-changing commands: each runs where the state is owned, in the CLI's own
process when the state folder is free, else in the daemon through its control socket.

A command takes the context and JSON-ready arguments and returns its output text. The
table :data:`COMMANDS` is the whole list; the control socket accepts only its names.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from typing import Any

from certdrop.daemon.state import Context
from certdrop.errors import InvalidRequest, UserError
from certdrop.intake.request import checked_request, create_request, fields_from_args
from certdrop.services import reconcile

Command = Callable[[Context, dict[str, Any]], str]


def csr(ctx: Context, args: dict[str, Any]) -> str:
    """Create the request named ``args["name"]``; returns the CSR's path."""
    name = args.get("name")
    if not isinstance(name, str):
        raise UserError("csr needs a NAME")
    try:
        fields = checked_request(name, ctx.inventory, lambda: fields_from_args(args))
    except InvalidRequest as exc:
        raise UserError(f"request {name!r} not created: {exc}") from None
    return str(create_request(ctx.inventory, ctx.log, ctx.config.outbox, name, fields))


def assign(ctx: Context, args: dict[str, Any]) -> str:
    """Make ``args["name"]`` the desired certificate of ``args["services"]`` and deploy."""
    results = reconcile.assign(ctx, str(args["name"]), [str(s) for s in args["services"]])
    return json.dumps([r.to_json() for r in results])


COMMANDS: Mapping[str, Command] = {"csr": csr, "assign": assign}
