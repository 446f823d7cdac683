"""``certdrop show NAME [--json]``: one certificate whole.

Subject, SANs (A-label and U-label), issuer, validity, key, fingerprint, each
certificate of the chain, trust now and why, status, the services that want or serve
it (files, state, last proof), its renewal, and its recent events. ``--json`` gives the
certificate object of ``status --json`` plus ``chain``, ``trust``, ``sans_unicode``,
``deployments``, ``renewal``, ``csr`` and ``events``. Reads the state only.
"""

from __future__ import annotations

import argparse
import os
import sys
from datetime import datetime
from typing import Any

from cryptography import x509

from certdrop import config as configuration
from certdrop.cli.common import Subparsers, add_json, command, print_json
from certdrop.cli.status import read_snapshot
from certdrop.cli.table import clip, safe
from certdrop.clock import iso, utc_now
from certdrop.daemon.state import reading
from certdrop.errors import UserError
from certdrop.intake.request import csr_path
from certdrop.pki import chain as chains
from certdrop.pki import domains
from certdrop.pki.names import normal
from certdrop.renewal.report import renewal_json
from certdrop.store import renewals as ledger
from certdrop.store import snapshot
from certdrop.store.eventlog import recent
from certdrop.store.inventory import Inventory
from certdrop.store.rows import Entry
from certdrop.store.truststore import TrustStore

# Event fields that name a certificate entry.
NAME_FIELDS = ("name", "cert", "certificate", "request", "old", "wanted", "renews")


def add_parser(sub: Subparsers) -> None:
    p = command(
        sub,
        "show",
        "show one certificate: chain, trust, services, events",
        "Show everything about one entry: subject, SANs (internationalised names in both "
        "forms), issuer, validity, key, fingerprint, each certificate of the chain, whether "
        "the chain reaches a trusted root now and why, the services that want or serve it "
        "(their files, state and last proof), its renewal, and its recent events from the "
        "status log. Reads the state only.",
        """
        certdrop show web
        certdrop show '本番 証明書'
        certdrop show web --json | jq .chain
        """,
    )
    p.add_argument("name", metavar="NAME", help="the entry's name, as `certdrop status` lists it")
    add_json(p)
    p.set_defaults(handler=run_show)


def run_show(config: configuration.Config, args: argparse.Namespace) -> int:
    database = config.state / "inventory.sqlite3"
    if database.exists() and not os.access(database, os.R_OK):
        data = from_snapshot(config, args.name)  # a state_group monitor: status.json only
    else:
        with reading(config) as inventory:
            data = describe(config, inventory, args.name, utc_now())
    if args.json:
        print_json(data)
    else:
        sys.stdout.write(render(data))
    return 0


def describe(
    config: configuration.Config, inventory: Inventory, name: str, now: datetime
) -> dict[str, Any]:
    """Everything ``show`` says about ``name``, as one JSON-ready object."""
    wanted = normal(name)
    data = snapshot.certificate(config, inventory, wanted)
    entry = inventory.entry(wanted)
    if data is None or entry is None:
        raise UserError(f"no certificate named {name!r}; `certdrop status` lists the names")
    data["sans_unicode"] = [domains.to_unicode(s) for s in data["sans"]]
    certs = chains.from_pem((entry.cert_pem or b"") + (entry.chain_pem or b""))
    data["chain"] = [_link(c, now) for c in certs]
    data["trust"] = _trust(config, inventory, certs) if certs else None
    data["deployments"] = _deployments(config, inventory, entry)
    renewal = ledger.renewal(inventory, entry.name)
    data["renewal"] = None if renewal is None else renewal_json(renewal)
    data["renewed_by"] = ledger.open_request_for(inventory, entry.name)
    csr = csr_path(config.outbox, entry.name)
    data["csr"] = str(csr) if entry.status == "requested" and csr.exists() else None
    data["events"] = recent(
        config.status_log, lambda e: any(e.get(k) == entry.name for k in NAME_FIELDS)
    )
    return data


def from_snapshot(config: configuration.Config, name: str) -> dict[str, Any]:
    """What status.json (group-readable for ``state_group``) tells of ``name``: the
    certificate object and its services; the chain, renewal and events stay with the
    root-only database and status log, and ``source`` says so."""
    status = read_snapshot(config)
    wanted = normal(name)
    found = [c for c in status.get("certificates", []) if c.get("name") == wanted]
    if not found:
        raise UserError(f"no certificate named {name!r}; `certdrop status` lists the names")
    data: dict[str, Any] = dict(found[0])
    data["sans_unicode"] = [domains.to_unicode(s) for s in data.get("sans", [])]
    data["chain"] = []
    trusted = bool(data.get("trusted"))
    data["trust"] = {
        "trusted": trusted,
        "root": None,
        "reason": "as last judged" if trusted else data.get("trust_detail", ""),
    }
    data["deployments"] = [
        {
            "service": s["name"],
            "role": s.get("role"),
            "hostname": None,
            "hostname_unicode": None,
            "wants": s.get("certificate") == wanted,
            "serves": bool(s.get("sha256")) and s.get("sha256") == data.get("sha256"),
            "state": s.get("state"),
            "detail": s.get("detail"),
            "updated": None,
            "files": [],
            "probe": None,
        }
        for s in status.get("services", [])
        if s.get("certificate") == wanted
        or (s.get("sha256") and s.get("sha256") == data.get("sha256"))
    ]
    data.update(renewal=None, renewed_by=None, csr=None, events=[])
    data["source"] = f"{config.status_json} (the database and status log are root-only)"
    return data


def _link(cert: x509.Certificate, now: datetime) -> dict[str, Any]:
    problem = chains.validity_problem(cert, now)
    return {
        "subject": chains.describe_name(cert.subject),
        "issuer": chains.describe_name(cert.issuer),
        "not_before": iso(cert.not_valid_before_utc),
        "not_after": iso(cert.not_valid_after_utc),
        "sha256": chains.fingerprint(cert),
        "ca": chains.is_ca(cert),
        "valid_now": problem is None,
    }


def _trust(
    config: configuration.Config, inventory: Inventory, certs: list[x509.Certificate]
) -> dict[str, Any]:
    """Whether the verifier trusts the certificate now, with today's trust store and pool
    (the same verdict intake records), and why."""
    verifier = TrustStore(config).verifier
    source = f"trust.ca_bundle ({config.ca_bundle})" if config.ca_bundle else "the system store"
    pool = [c for pem in inventory.pool() for c in chains.from_pem(pem)]
    verdict = verifier.judge_any(certs[0], [*certs[1:], *pool], utc_now())
    root = chains.describe_name(verdict.chain[-1].subject) if verdict.trusted else None
    reason = f"the chain validates to the root {root} from {source}" if root else verdict.detail
    return {"trusted": verdict.trusted, "root": root, "reason": reason}


def _deployments(
    config: configuration.Config, inventory: Inventory, entry: Entry
) -> list[dict[str, Any]]:
    found = []
    for service, row in sorted(inventory.services().items()):
        wants = row.desired == entry.name
        serves = entry.sha256 is not None and row.deployed_sha256 == entry.sha256
        svc = config.services.get(service)
        if svc is None or not (wants or serves):
            continue
        files = [svc.combined_file, svc.key_file, svc.chain_file, svc.cert_file]
        found.append(
            {
                "service": service,
                "role": svc.role,
                "hostname": svc.hostname or None,
                "hostname_unicode": domains.to_unicode(svc.hostname) if svc.hostname else None,
                "wants": wants,
                "serves": serves,
                "state": row.state,
                "detail": row.detail,
                "updated": row.updated,
                "files": [str(f) for f in files if f is not None],
                "probe": svc.probe or None,
            }
        )
    return found


def render(d: dict[str, Any]) -> str:
    """``show`` for a person: one labelled line per fact, then the lists."""
    lines = [f"{safe(d['name'])} ({d['status']})"]
    if d.get("source"):
        lines.append(f"  from {safe(d['source'])}")

    def fact(label: str, value: object) -> None:
        lines.append(f"  {label:<12} {safe(value)}")

    fact("subject", d["subject"] or "-")
    sans = [
        a if u == a else f"{a} ({u})" for a, u in zip(d["sans"], d["sans_unicode"], strict=True)
    ]
    fact("SANs", ", ".join(sans) or "-")
    if d["chain"]:
        fact("issuer", d["issuer"])
        fact("valid", f"{d['not_before']} .. {d['not_after']}")
        fact("sha256", d["sha256"])
    fact("key", f"{d['key']['type']} {d['key']['bits']}")
    if d["trust"] is not None:
        word = "trusted" if d["trust"]["trusted"] else "not trusted"
        fact("trust", f"{word}: {d['trust']['reason']}")
    if d.get("renews"):
        fact("renews", d["renews"])
    if d["csr"]:
        fact("csr", d["csr"])
    if d["chain"]:
        lines.append("Chain")
        for i, c in enumerate(d["chain"]):
            note = "" if c["valid_now"] else "  (not valid now)"
            lines.append(f"  {i} {safe(c['subject'])}  sha256 {c['sha256'][:16]}")
            lines.append(f"    issued by {safe(c['issuer'])}, until {c['not_after']}{note}")
    lines.append("Services" if d["deployments"] else "Services: none wants or serves it")
    for s in d["deployments"]:
        role = ("wants and serves it" if s["serves"] else "wants it") if s["wants"] else "serves it"
        lines.append(f"  {safe(s['service'])}: {s['state']}, {role} (updated {s['updated']})")
        lines.append(f"    files {safe(', '.join(s['files']))}")
        if s["hostname"]:
            host = s["hostname"]
            shown = host if s["hostname_unicode"] == host else f"{host} ({s['hostname_unicode']})"
            lines.append(f"    hostname {safe(shown)}")
        lines.append(f"    {safe(s['detail'])}")
    r = d["renewal"]
    if r is None:
        lines.append("Renewal: none yet")
    else:
        lines.append(f"Renewal: {r['state']}, request {safe(r['request'] or '-')}")
        lines.append(f"  {safe(r['detail'])}")
    if d["events"]:
        lines.append(f"Recent events ({len(d['events'])})")
        for e in d["events"]:
            rest = {k: v for k, v in e.items() if k not in ("ts", "level", "event")}
            text = " ".join(f"{k}={v}" for k, v in rest.items())
            head = f"{e.get('ts', '')} {e.get('level', '')} {e.get('event')}"
            lines.append(f"  {safe(head)} {clip(safe(text), 120)}")
    return "\n".join(lines) + "\n"
