"""``certdrop renew NAME``: start a certificate's renewal now, as the expiry check would.

The same path as the scheduled renewal (:meth:`Renewer.start`): a new key and CSR like
the certificate's, ``renewal.command`` if one is set, the hand-back when the renewed
certificate arrives. Only a certificate some service should have is renewed; one no
service uses would be cancelled by the next check. A renewal that waits to retry is
tried again now. In a running daemon the expiry check's own renewer does it (its
command runs in the background); without one, the command runs here and is waited for.
In fleet mode the fleet's renewal lease is taken first, as the expiry check does (the
caller passes ``claim``, from the fleet layer above).
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from datetime import datetime
from typing import Any

from cryptography import x509

from certdrop import config as configuration
from certdrop.clock import iso
from certdrop.errors import UserError
from certdrop.intake.request import csr_path
from certdrop.pki import expiry, keys
from certdrop.pki.csr import fields_of_certificate
from certdrop.pki.names import normal
from certdrop.renewal import command as handoff
from certdrop.renewal.renewer import Renewer
from certdrop.renewal.report import policy_of
from certdrop.store import renewals as ledger
from certdrop.store.context import Context
from certdrop.store.inventory import Inventory
from certdrop.store.renewals import InUse, Renewal


class InlineJobs:
    """The worker queue for a renewal run in the CLI's own process: submitted jobs
    wait here until :meth:`drain` runs them, in order."""

    def __init__(self) -> None:
        self._jobs: list[Callable[[], object]] = []
        self._lock = threading.Lock()

    def submit(self, name: str, fn: Callable[[], object]) -> None:
        with self._lock:
            self._jobs.append(fn)

    def changed(self) -> None:
        pass  # the command rewrites status.json when it ends

    def drain(self) -> None:
        while True:
            with self._lock:
                if not self._jobs:
                    return
                job = self._jobs.pop(0)
            job()


def _plan(
    config: configuration.Config, inventory: Inventory, name: str, now: datetime
) -> tuple[InUse, expiry.Assessment, Renewal | None]:
    """What renewing ``name`` now means, or a UserError saying why it cannot."""
    entry = inventory.entry(normal(name))
    if entry is None:
        raise UserError(f"no certificate named {name!r}; `certdrop status` lists the names")
    if entry.status == "requested" or entry.cert_pem is None:
        raise UserError(
            f"{entry.name!r} is a request still waiting for its certificate; nothing to renew"
        )
    watched = {c.name: c for c in ledger.in_use(inventory, config.services)}
    cert = watched.get(entry.name)
    if cert is None or not cert.desired:
        raise UserError(
            f"{entry.name!r} is not assigned to any service, so the expiry check would cancel "
            f"its renewal; assign it first, or make a new request with `certdrop csr`"
        )
    renewal = ledger.renewal(inventory, entry.name)
    if renewal is not None and renewal.state == "running":
        raise UserError(f"the renewal of {entry.name!r} is running now: {renewal.detail}")
    if renewal is not None and renewal.state == "handed_off":
        raise UserError(
            f"renewal.command for {entry.name!r} has finished; the renewed certificate "
            f"{renewal.request!r} is awaited in the inbox ({renewal.detail})"
        )
    found = expiry.assess(
        cert.lifetime, ledger.warned(inventory, cert.sha256), policy_of(config), now
    )
    return cert, found, renewal if renewal is not None and renewal.open else None


def rehearse(
    config: configuration.Config, inventory: Inventory, name: str, now: datetime
) -> dict[str, Any]:
    """``renew --dry-run``: the request, CSR, command and services renewing would use."""
    cert, found, renewal = _plan(config, inventory, name, now)
    entry = inventory.entry(cert.name)
    key_pem = inventory.key_pem(cert.name)
    assert entry is not None and entry.cert_pem is not None and key_pem is not None
    fields = fields_of_certificate(
        x509.load_pem_x509_certificate(entry.cert_pem), keys.load_pem(key_pem)
    )
    if renewal is not None and renewal.request:
        action, request = "retry", renewal.request
    else:
        action, request = "start", inventory.free_name(expiry.renewal_name(cert.name, now))
    csr = csr_path(config.outbox, request)
    argv = handoff.fill(
        config.renewal_command,
        {
            "csr": str(csr),
            "name": request,
            "inbox": str(config.inbox),
            "outbox": str(config.outbox),
        },
    )
    return {
        "cert": cert.name,
        "action": action,
        "request": request,
        "csr": str(csr),
        "subject": {k: v for k, v in fields.to_mapping().items() if k not in ("sans",) and v},
        "sans": list(fields.sans),
        "command": argv or None,
        "services": list(cert.services),
        "renew_at": iso(found.renew_at),
        "changed": False,
    }


def renew(
    ctx: Context,
    renewer: Renewer | None,
    name: str,
    now: datetime,
    claim: Callable[[str, str], dict[str, Any]] | None = None,
) -> dict[str, Any]:
    """Start (or retry now) the renewal of ``name``; ``renewer`` None: in this process,
    waiting for ``renewal.command`` to end. ``claim(name, sha256)`` (fleet mode) takes
    the renewal lease first, or raises the UserError that refuses the renewal."""
    cert, found, renewal = _plan(ctx.config, ctx.inventory, name, now)
    lease = claim(cert.name, cert.sha256) if claim is not None else None
    jobs: InlineJobs | None = None
    if renewer is None:
        jobs = InlineJobs()
        renewer = Renewer(ctx, jobs, lambda _: None)
    if renewal is not None:
        result = renewer.advance(renewal.but(next_attempt=now), now)
    else:
        result = renewer.start(cert, found, now, by="renew")
    if jobs is not None:
        for run in renewer.commands():
            run.wait()
        jobs.drain()
        result = ledger.renewal(ctx.inventory, cert.name) or result
    return {
        "cert": cert.name,
        "request": result.request or None,
        "csr": str(csr_path(ctx.config.outbox, result.request)) if result.request else None,
        "state": result.state,
        "detail": result.detail,
        "command": bool(ctx.config.renewal_command),
        "in_daemon": jobs is None,
        **({"lease": lease} if lease is not None else {}),
    }
