"""``certdrop unassign``: stop managing services, leaving their files as they are.

Used by the command (this gateway's services) and by the fleet, which applies an
unassignment decided on another gateway (``certdrop unassign '*/SERVICE'``) the same way.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from certdrop.clock import iso, utc_now
from certdrop.errors import UserError
from certdrop.services import install
from certdrop.store import edits
from certdrop.store.context import Context

DETAIL = "unassigned: certdrop leaves its files alone until `certdrop assign`"


def unassign(
    ctx: Context,
    services: Sequence[str],
    *,
    by: str = "unassign",
    in_transaction: Callable[[], None] = lambda: None,
) -> list[dict[str, Any]]:
    """Stop managing ``services``: their files stay as they are, certdrop neither
    deploys to them nor auto-assigns by hostname until they are assigned again.
    ``in_transaction`` runs inside the transaction that records it (fleet mode queues
    the decision there)."""
    rows = ctx.inventory.services()
    unknown = [s for s in services if s not in ctx.config.services and s not in rows]
    if unknown:
        have = ", ".join(sorted(ctx.config.services)) or "none"
        raise UserError(
            f"no service named {', '.join(map(repr, unknown))} in {ctx.config.source} "
            f"(configured: {have})"
        )
    at = iso(utc_now())
    before: dict[str, str | None] = {}
    with ctx.inventory.transaction():
        for service in dict.fromkeys(services):
            before[service] = edits.unassign(ctx.inventory, service, DETAIL, at)
        ctx.inventory.sync_usage(set(ctx.config.services))
        in_transaction()
    done = []
    for service, certificate in before.items():
        install.forget_baseline(ctx.config.state, service)
        ctx.log.info(
            "service.unassigned", service=service, certificate=certificate, by=by, detail=DETAIL
        )
        done.append({"service": service, "certificate": certificate, "detail": DETAIL})
    return done
