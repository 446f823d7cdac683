"""Who gets which certificate: ``certdrop assign``, assignment by ``hostname``, and the
daemon hooks that deploy (after each drop, at start-up, after a config reload).

A service with ``hostname`` set is pointed at a new certificate when one arrives that
covers the name, reaches a trusted root, is valid now and is newer (later not-before) than
the one it has. At start-up and on reload only services with no usable certificate
(none, gone, or outside its validity) are filled, so a manual ``assign`` stands until a
newer certificate for the name arrives.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from datetime import datetime
from typing import Any

from cryptography import x509

from certdrop import app, cli, deploy
from certdrop import config as configuration
from certdrop.inventory import Inventory
from certdrop.pki import chain as chains
from certdrop.pki.choose import Candidate, best_for_host
from certdrop.statuslog import iso, utc_now


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
    rows = inventory.db.execute(
        "SELECT name FROM certificates WHERE trusted = 1 AND cert_pem IS NOT NULL "
        "AND status IN ('unused', 'in_use') AND not_after > ? AND instr(lower(sans), ?) > 0",
        (iso(now), parent),
    )
    return [c for r in rows.fetchall() if (c := _candidate(inventory, r[0])) is not None]


def by_hostname(ctx: app.Context, recorded: Sequence[str] | None = None) -> list[str]:
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
        current_name = row["desired"] if row is not None else None
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


# -- the daemon ---------------------------------------------------------------------------
def extend(daemon: app.Daemon) -> None:
    """Deploy after drops, reconcile at start-up and after a config reload."""
    ctx = daemon.ctx
    assert ctx is not None

    def after_drop(outcome: Any) -> None:
        recorded = list(getattr(outcome, "recorded", None) or [])
        changed = by_hostname(ctx, recorded) if recorded else []
        if changed:
            deploy.reconcile(ctx, changed)
            daemon.changed()

    def reconcile_all() -> None:
        by_hostname(ctx)
        deploy.reconcile(ctx)
        daemon.changed()

    ctx.on("after_drop", after_drop)
    ctx.on("after_recover", reconcile_all)
    ctx.on("after_reload", reconcile_all)


app.EXTENSIONS.append(extend)


# -- `certdrop assign` ------------------------------------------------------------------------
@app.command("assign")
def _assign_command(ctx: app.Context, args: dict[str, Any]) -> str:
    results = deploy.assign(ctx, str(args["name"]), [str(s) for s in args["services"]])
    return json.dumps([r.to_json() for r in results])


@cli.subcommand
def _add_assign(sub: argparse._SubParsersAction[cli._Parser]) -> None:
    parser = sub.add_parser(
        "assign",
        help="deploy a certificate to services (reload, prove, roll back on failure)",
    )
    parser.add_argument("name", metavar="NAME", help="the certificate's name in `status`")
    parser.add_argument("services", metavar="SERVICE", nargs="+", help="[services.NAME] tables")
    parser.set_defaults(handler=_assign)


def _assign(config: configuration.Config, args: argparse.Namespace) -> int:
    output = app.run_command(config, "assign", {"name": args.name, "services": args.services})
    results = json.loads(output)
    for r in results:
        print(f"{r['service']}: {r['state']}: {r['detail']}")
    failed = [r["service"] for r in results if r["state"] != "ok"]
    if failed:
        print(
            f"certdrop: {len(failed)} of {len(results)} services did not take {args.name}: "
            f"{', '.join(failed)}; see `certdrop status`",
            file=sys.stderr,
        )
        return 1
    return 0
