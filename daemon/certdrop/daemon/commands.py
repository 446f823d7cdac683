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
from certdrop.fleet import commands as fleet
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
    """Make ``args["name"]`` the desired certificate of ``args["services"]`` and deploy.
    In fleet mode a SERVICE may be GATEWAY/SERVICE or */SERVICE, and every decision is
    also published."""
    name, services = str(args["name"]), [str(s) for s in args["services"]]
    if ctx.config.fleet is not None:
        found = fleet.run(ctx, lambda node: fleet.assign(ctx, node, name, services))
        return json.dumps(found)
    if any("/" in s for s in services):
        raise UserError("GATEWAY/SERVICE needs fleet mode: add a [fleet] table to the config")
    results = reconcile.assign(ctx, name, services)
    return json.dumps([r.to_json() for r in results])


def fleet_approve(ctx: Context, args: dict[str, Any]) -> str:
    gateway = str(args["gateway"])
    return fleet.run(ctx, lambda node: fleet.approve(ctx, node, gateway))


def fleet_revoke(ctx: Context, args: dict[str, Any]) -> str:
    gateway = str(args["gateway"])
    return fleet.run(ctx, lambda node: fleet.revoke(ctx, node, gateway))


def fleet_status(ctx: Context, args: dict[str, Any]) -> str:
    """Read-only, but answered by the daemon when it runs: it holds the live view."""
    return json.dumps(fleet.run(ctx, lambda node: fleet.status(ctx, node)))


COMMANDS: Mapping[str, Command] = {
    "csr": csr,
    "assign": assign,
    "fleet_approve": fleet_approve,
    "fleet_revoke": fleet_revoke,
    "fleet_status": fleet_status,
}
