"""The state-changing commands: each runs where the state is owned, in the CLI's own
process when the state folder is free, else in the daemon through its control socket.

A command takes the context and JSON-ready arguments and returns its output as JSON
text (the CLI prints it, or a line made from it). The table :data:`COMMANDS` is the
whole list; the control socket accepts only its names.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from certdrop import jsontext
from certdrop.clock import utc_now
from certdrop.daemon import manage
from certdrop.daemon.state import Context
from certdrop.errors import InvalidRequest, UserError
from certdrop.fleet import commands as fleet
from certdrop.intake.request import checked_request, create_request, fields_from_args
from certdrop.pki.names import normal
from certdrop.renewal import manual
from certdrop.services import reconcile, release

Command = Callable[[Context, dict[str, Any]], str]


def _text(args: dict[str, Any], key: str, what: str) -> str:
    value = args.get(key)
    if not isinstance(value, str):
        raise UserError(f"the command needs {what}")
    return value


def _texts(args: dict[str, Any], key: str, what: str) -> list[str]:
    value = args.get(key)
    if not isinstance(value, list) or not value or not all(isinstance(v, str) for v in value):
        raise UserError(f"the command needs {what}")
    return list(value)


def csr(ctx: Context, args: dict[str, Any]) -> str:
    """Create the request named ``args["name"]``; returns its name, CSR path and fields."""
    name = normal(_text(args, "name", "a NAME"))
    try:
        fields = checked_request(name, ctx.inventory, lambda: fields_from_args(args))
    except InvalidRequest as exc:
        raise UserError(f"request {name!r} not created: {exc}") from None
    path = create_request(ctx.inventory, ctx.log, ctx.config.outbox, name, fields)
    return jsontext.dumps({"name": name, "csr": str(path), **fields.to_mapping()})


def assign(ctx: Context, args: dict[str, Any]) -> str:
    """Make ``args["name"]`` the desired certificate of ``args["services"]`` and deploy.
    In fleet mode a SERVICE may be GATEWAY/SERVICE or */SERVICE, and every decision is
    also published."""
    name = _text(args, "name", "a NAME")
    services = _texts(args, "services", "one SERVICE or more")
    if ctx.config.fleet is not None:
        found = fleet.run(ctx, lambda node: fleet.assign(ctx, node, name, services))
        return jsontext.dumps(found)
    if any("/" in s for s in services):
        raise UserError("GATEWAY/SERVICE needs fleet mode: add a [fleet] table to the config")
    results = reconcile.assign(ctx, name, services)
    return jsontext.dumps([r.to_json() for r in results])


def rename(ctx: Context, args: dict[str, Any]) -> str:
    old, new = _text(args, "old", "OLD"), _text(args, "new", "NEW")
    return jsontext.dumps(manage.rename(ctx, old, new))


def delete(ctx: Context, args: dict[str, Any]) -> str:
    return jsontext.dumps(manage.delete(ctx, _text(args, "name", "a NAME")))


def unassign(ctx: Context, args: dict[str, Any]) -> str:
    """Stop managing ``args["services"]``. In fleet mode a SERVICE may be
    GATEWAY/SERVICE or */SERVICE, and every decision is also published."""
    services = _texts(args, "services", "one SERVICE or more")
    if ctx.config.fleet is not None:
        return jsontext.dumps(fleet.run(ctx, lambda node: fleet.unassign(ctx, node, services)))
    if any("/" in s for s in services):
        raise UserError("GATEWAY/SERVICE needs fleet mode: add a [fleet] table to the config")
    return jsontext.dumps(release.unassign(ctx, services))


def discard(ctx: Context, args: dict[str, Any]) -> str:
    piece = args.get("id")
    if not isinstance(piece, int) or isinstance(piece, bool):
        raise UserError("the command needs the id of a held piece")
    return jsontext.dumps(manage.discard(ctx, piece))


def renew(ctx: Context, args: dict[str, Any]) -> str:
    """Start the renewal of ``args["name"]`` now: with the daemon's own renewer when run
    there, else in this process (which waits for renewal.command). In fleet mode the
    renewal lease is taken first (``args["take_over"]``: from whoever holds it)."""
    name = _text(args, "name", "a NAME")
    take_over = args.get("take_over") is True
    claim = None
    if ctx.config.fleet is not None:

        def claim(cert: str, sha256: str) -> dict[str, Any]:
            return fleet.run(
                ctx, lambda node: node.claim_for_renew(cert, sha256, take_over=take_over)
            )

    elif take_over:
        raise UserError(
            "--take-over is about the fleet's renewal lease; this config has no [fleet] table"
        )
    return jsontext.dumps(manual.renew(ctx, ctx.renewer, name, utc_now(), claim))


def fleet_approve(ctx: Context, args: dict[str, Any]) -> str:
    raw = args.get("gateways", [args.get("gateway")])
    gateways = [str(g) for g in raw] if isinstance(raw, list) else []
    if not gateways or not all(gateways):
        raise UserError("fleet approve needs at least one GATEWAY")
    return fleet.run(ctx, lambda node: fleet.approve(ctx, node, gateways))


def fleet_revoke(ctx: Context, args: dict[str, Any]) -> str:
    gateway = str(args["gateway"])
    return fleet.run(ctx, lambda node: fleet.revoke(ctx, node, gateway))


def fleet_status(ctx: Context, args: dict[str, Any]) -> str:
    """Read-only, but answered by the daemon when it runs: it holds the live view."""
    return jsontext.dumps(fleet.run(ctx, lambda node: fleet.status(ctx, node)))


COMMANDS: Mapping[str, Command] = {
    "csr": csr,
    "assign": assign,
    "rename": rename,
    "delete": delete,
    "unassign": unassign,
    "discard": discard,
    "renew": renew,
    "fleet_approve": fleet_approve,
    "fleet_revoke": fleet_revoke,
    "fleet_status": fleet_status,
}
