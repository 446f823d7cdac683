"""Assignment by ``hostname``: which certificate a service with a ``hostname`` should have.

A service with ``hostname`` set is pointed at a new certificate when one arrives that
covers the name, reaches a trusted root, is valid now and is newer (later not-before) than
the one it has. At start-up and on reload only services with no usable certificate
(none, gone, or outside its validity) are filled, so a manual ``assign`` stands until a
newer certificate for the name arrives. A service ``certdrop unassign`` released is left
alone until it is assigned again.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

from cryptography import x509

from certdrop.clock import iso, utc_now
from certdrop.pki import chain as chains
from certdrop.pki.choose import Candidate, best_for_host
from certdrop.store.context import Context
from certdrop.store.inventory import Inventory


# -- by hostname --------------------------------------------------------------------------
def _candidate(inventory: Inventory, name: str) -> Candidate | None:
    entry = inventory.entry(name)
    if entry is None or entry.cert_pem is None or entry.status == "requested":
        return None
    try:
        cert = x509.load_pem_x509_certificate(entry.cert_pem)
    except ValueError:
        return None
    return Candidate(entry.name, cert, entry.trusted, entry.created)


def _covering(inventory: Inventory, hostname: str, now: datetime) -> list[Candidate]:
    """Trusted, unexpired entries whose SAN text mentions the host's parent domain.

    A coarse SQL filter (every SAN that covers ``a.b.c`` contains ``b.c``); the exact
    check is :func:`certdrop.pki.choose.usable_for` on the parsed certificate.
    """
    host = hostname.lower().rstrip(".")
    parent = host.partition(".")[2] or host
    names = inventory.names_covering(parent, iso(now))
    return [c for n in names if (c := _candidate(inventory, n)) is not None]


def by_hostname(ctx: Context, recorded: Sequence[str] | None = None) -> list[str]:
    """Point services with a ``hostname`` at the newest usable certificate; return those
    whose desired certificate changed (not yet deployed).

    ``recorded`` are the entries a drop just added; None means a full look (start-up,
    reload) for services that have no usable certificate.
    """
    now = utc_now()
    changes: list[tuple[str, Candidate]] = []
    for name, service in sorted(ctx.config.services.items()):
        if not service.hostname:
            continue
        row = ctx.inventory.service(name)
        if row is not None and not row.managed:
            continue  # `certdrop unassign`: its files are the operator's until an assign
        current_name = row.desired if row is not None else None
        current = _candidate(ctx.inventory, current_name) if current_name else None
        if recorded is None:
            if current is not None and chains.validity_problem(current.cert, now) is None:
                continue
            pool = _covering(ctx.inventory, service.hostname, now)
        else:
            pool = [c for n in recorded if (c := _candidate(ctx.inventory, n)) is not None]
            if current is not None:
                pool.append(current)
        best = best_for_host(service.hostname, pool, now)
        if best is not None and best.name != current_name:
            changes.append((name, best))
    if not changes:
        return []
    at = iso(utc_now())
    with ctx.inventory.transaction():
        for service_name, best in changes:
            detail = f"{best.name} covers {ctx.config.services[service_name].hostname}; deploying"
            ctx.inventory.set_desired(service_name, best.name, detail, at)
        ctx.inventory.sync_usage(set(ctx.config.services))
    for service_name, best in changes:
        ctx.log.info(
            "service.assigned",
            service=service_name,
            certificate=best.name,
            sha256=chains.fingerprint(best.cert),
            by="hostname",
            hostname=ctx.config.services[service_name].hostname,
        )
    return [service_name for service_name, _ in changes]
