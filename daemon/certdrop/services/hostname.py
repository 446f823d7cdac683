"""Assignment by ``hostname``: which certificate a service with a ``hostname`` should have.

A service with ``hostname`` set is pointed at a new certificate when one arrives that the
verifier trusts for the service's role and that hostname, now (chain, validity, names:
see :mod:`certdrop.pki.trust`), and that is newer (later not-before) than the one it has.
At start-up and on reload only services whose certificate is not usable (none, gone, or
no longer trusted for them, e.g. expired or after the trust store changed) are filled, so
a manual ``assign`` stands until a newer certificate for the name arrives. A service whose
certificate stopped being trusted keeps serving it until a trusted one is there, and says
so in its detail.
A service ``certdrop unassign`` released is left alone until it is assigned again.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from datetime import datetime

from cryptography import x509

from certdrop.clock import iso, utc_now
from certdrop.config import ServiceConfig
from certdrop.pki import chain as chains
from certdrop.pki.choose import Candidate, best_for_host
from certdrop.pki.trust import ROLE_USAGE, Verdict, subject_for
from certdrop.store.context import Context
from certdrop.store.inventory import Inventory


def _candidate(inventory: Inventory, name: str) -> Candidate | None:
    entry = inventory.entry(name)
    if entry is None or entry.cert_pem is None or entry.status == "requested":
        return None
    try:
        cert = x509.load_pem_x509_certificate(entry.cert_pem)
        chain = tuple(chains.from_pem(entry.chain_pem or b""))
    except ValueError:
        return None
    return Candidate(entry.name, cert, chain, entry.created)


def _covering(inventory: Inventory, hostname: str, now: datetime) -> list[Candidate]:
    """Trusted, unexpired entries whose SAN text mentions the host's parent domain.

    A coarse SQL filter (every SAN that covers ``a.b.c`` contains ``b.c``; the hostname in
    its A-label form); the verdict for the service is the verifier's.
    """
    host = str(subject_for(hostname).value).lower()
    parent = host.partition(".")[2] or host
    names = inventory.names_covering(parent, iso(now))
    return [c for n in names if (c := _candidate(inventory, n)) is not None]


def _judge(
    ctx: Context, service: ServiceConfig, pool: list[x509.Certificate], now: datetime
) -> Callable[[Candidate], Verdict]:
    """The verdict for ``service`` (its role and hostname), once per candidate."""
    verifier, usage = ctx.trust.verifier, ROLE_USAGE[service.role]
    seen: dict[str, Verdict] = {}

    def judge(candidate: Candidate) -> Verdict:
        if candidate.name not in seen:
            seen[candidate.name] = verifier.judge(
                candidate.cert, [*candidate.chain, *pool], usage, now, service.hostname
            )
        return seen[candidate.name]

    return judge


def by_hostname(ctx: Context, recorded: Sequence[str] | None = None) -> list[str]:
    """Point services with a ``hostname`` at the newest usable certificate; return those
    whose desired certificate changed (not yet deployed).

    ``recorded`` are the entries a drop just added; None means a full look (start-up,
    reload) for services whose certificate is not usable.
    """
    if not any(s.hostname for s in ctx.config.services.values()):
        return []
    now = utc_now()
    pool = [c for pem in ctx.inventory.pool() for c in chains.from_pem(pem)]
    changes: list[tuple[str, Candidate]] = []
    flags: list[tuple[str, str]] = []
    for name, service in sorted(ctx.config.services.items()):
        if not service.hostname:
            continue
        judge = _judge(ctx, service, pool, now)
        row = ctx.inventory.service(name)
        if row is not None and not row.managed:
            continue  # `certdrop unassign`: its files are the operator's until an assign
        current_name = row.desired if row is not None else None
        current = _candidate(ctx.inventory, current_name) if current_name else None
        if recorded is None:
            if current is not None and judge(current).trusted:
                continue
            candidates = _covering(ctx.inventory, service.hostname, now)
        else:
            candidates = [c for n in recorded if (c := _candidate(ctx.inventory, n)) is not None]
            if current is not None:
                candidates.append(current)
        best = best_for_host(candidates, judge)
        if best is not None and best.name != current_name:
            changes.append((name, best))
        elif best is None and current is not None and row is not None:
            flag = (
                f"{current.name} is no longer trusted for {service.hostname}: "
                f"{judge(current).detail}; it stays until a trusted certificate arrives"
            )
            if row.detail != flag:
                flags.append((name, flag))
    _flag(ctx, flags)
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


def _flag(ctx: Context, flags: list[tuple[str, str]]) -> None:
    """Say in the service's detail (and once in the log) that its certificate is no longer
    trusted; its state and files stay as they are."""
    if not flags:
        return
    at = iso(utc_now())
    with ctx.inventory.transaction():
        for name, detail in flags:
            row = ctx.inventory.service(name)
            assert row is not None
            ctx.inventory.set_service_state(name, row.state, detail, at)
    for name, detail in flags:
        ctx.log.warning("service.untrusted", service=name, detail=detail)
