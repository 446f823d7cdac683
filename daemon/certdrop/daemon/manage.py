"""The operator's edits: rename an entry, delete one, discard a held piece (``unassign``
is :mod:`certdrop.services.release`, which the fleet uses too). Each runs where the
state is owned (see :mod:`certdrop.daemon.commands`), checks everything before it
changes anything, and says what it did in one event.
"""

from __future__ import annotations

import contextlib
import os
from typing import Any

from certdrop.errors import UserError
from certdrop.files import atomic_write
from certdrop.intake.request import check_name, csr_path
from certdrop.pki.names import normal
from certdrop.store import edits
from certdrop.store import renewals as ledger
from certdrop.store.context import Context
from certdrop.store.rows import Entry


def known_entry(ctx: Context, name: str) -> Entry:
    """The entry ``name`` (NFC-normalised), or a UserError naming the fix."""
    entry = ctx.inventory.entry(normal(name))
    if entry is None:
        raise UserError(f"no certificate named {name!r}; `certdrop status` lists the names")
    return entry


def _not_renewing(ctx: Context, name: str, doing: str) -> None:
    """Refuse while renewal.command runs for ``name`` (its CSR and name are in use)."""
    for renewal in ledger.renewals(ctx.inventory).values():
        if renewal.state == "running" and name in (renewal.cert, renewal.request):
            raise UserError(
                f"the renewal of {renewal.cert!r} runs renewal.command with {name!r} right "
                f"now; {doing} it once the command has finished (see `certdrop show`)"
            )


def rename(ctx: Context, old: str, new: str) -> dict[str, Any]:
    """Call entry ``old`` ``new``: services, renewals and its CSR follow the name."""
    entry = known_entry(ctx, old)
    new = normal(new)
    if new == entry.name:
        raise UserError(f"{entry.name!r} already has that name; give a different NEW name")
    check_name(new, ctx.inventory)
    _not_renewing(ctx, entry.name, "rename")
    outbox = ctx.config.outbox
    old_csr, new_csr = csr_path(outbox, entry.name), csr_path(outbox, new)
    csr = ledger.csr_pem(ctx.inventory, entry.name) if old_csr.exists() else None
    if csr is not None and old_csr != new_csr:
        atomic_write(new_csr, csr, mode=0o644)  # before the commit: never an entry without it
    with ctx.inventory.transaction():
        edits.rename(ctx.inventory, entry.name, new)
    if csr is not None and old_csr != new_csr:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(old_csr)
    ctx.log.info(
        "cert.renamed",
        name=new,
        old=entry.name,
        by="rename",
        **({"csr": str(new_csr)} if csr is not None else {}),
    )
    return {"old": entry.name, "name": new, "csr": str(new_csr) if csr is not None else None}


def delete(ctx: Context, name: str) -> dict[str, Any]:
    """Remove an entry and its key from the state; refused while a service wants it."""
    entry = known_entry(ctx, name)
    wanting = ledger.services_of(ctx.inventory, entry.name)
    if wanting:
        raise UserError(
            f"{entry.name!r} is assigned to {', '.join(wanting)}; assign another certificate "
            f"or `certdrop unassign {' '.join(wanting)}` first"
        )
    _not_renewing(ctx, entry.name, "delete")
    sharing = edits.key_holders(ctx.inventory, entry.name)
    csr = csr_path(ctx.config.outbox, entry.name)
    with edits.erasing(ctx.inventory):
        key_removed = edits.delete(ctx.inventory, entry.name)
    csr_removed = False
    if entry.status == "requested":
        with contextlib.suppress(FileNotFoundError):
            os.unlink(csr)
            csr_removed = True
    detail = (
        "its key is removed from the state"
        if key_removed
        else f"its key stays: {', '.join(sharing)} holds the same key"
    )
    # In fleet mode the delete's trigger queued the withdrawal (store.fleet).
    withdrawn = ctx.config.fleet is not None
    if withdrawn:
        detail += "; withdrawn from the fleet: every gateway deletes its copy"
    ctx.log.info(
        "cert.deleted",
        name=entry.name,
        sha256=entry.sha256,
        status=entry.status,
        key_removed=key_removed,
        detail=detail,
        **({"csr": str(csr)} if csr_removed else {}),
    )
    return {
        "name": entry.name,
        "sha256": entry.sha256,
        "key_removed": key_removed,
        "csr_removed": str(csr) if csr_removed else None,
        "withdrawn": withdrawn,
        "detail": detail,
    }


def discard(ctx: Context, piece: int) -> dict[str, Any]:
    """Drop the held piece with id ``piece`` (a held key's bytes are erased too)."""
    held = edits.held_piece(ctx.inventory, piece)
    if held is None:
        raise UserError(f"no held piece with id {piece}; `certdrop held` lists them")
    with edits.erasing(ctx.inventory):
        edits.discard_held(ctx.inventory, piece)
    ctx.log.info(
        "held.discarded", id=held.id, kind=held.kind, since=held.since, **{"from": held.from_file}
    )
    return {"id": held.id, "kind": held.kind, "from": held.from_file, "since": held.since}
