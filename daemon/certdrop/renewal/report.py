"""The report behind ``certdrop check``: the expiry check, now, for any monitor.

Read-only: it opens the inventory read-only (or, for a user who may not, reads
status.json), emits no event and remembers nothing, so
the daemon's once-only warnings are still its own to give. It calls the same
:func:`certdrop.pki.expiry.assess` the daemon acts on. Exit 0 when all is fine, 1 when a
certificate in use is within a warning threshold, 2 when one has expired or its renewal
is overdue. Certificates that no service uses or serves are not checked: their expiry
harms nobody (a renewed certificate's predecessor is one of them).
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Mapping
from datetime import datetime
from typing import Any

from certdrop import config as configuration
from certdrop.clock import iso, utc_now
from certdrop.errors import UserError
from certdrop.pki import expiry
from certdrop.store import renewals as ledger
from certdrop.store import snapshot
from certdrop.store.inventory import Inventory
from certdrop.store.renewals import InUse

STATUS = {0: "ok", 1: "warning", 2: "critical"}


def policy_of(config: configuration.Config) -> expiry.Policy:
    """The expiry policy the configuration sets (the daemon acts on the same one)."""
    return expiry.Policy(
        warn_days=config.warn_days,
        renew_before_days=config.renew_before_days,
    )


def report(
    config: configuration.Config, inventory: Inventory | None, now: datetime
) -> dict[str, Any]:
    """The check's findings as one JSON-ready object (``inventory`` None: no state yet)."""
    watched = ledger.in_use(inventory, config.services) if inventory is not None else []
    renewals = ledger.renewals(inventory) if inventory is not None else {}
    rows = inventory.services() if inventory is not None else {}
    services = []
    for name in sorted(config.services):
        row = rows.get(name)
        desired = row.desired if row is not None else None
        entry = inventory.entry(desired) if inventory is not None and desired else None
        services.append(
            _service(
                name,
                row.desired if row else None,
                entry.sha256 if entry else None,
                row.deployed_sha256 if row else None,
                (row.state if row else "") or "pending",
                (row.detail if row else "") or "no certificate assigned",
            )
        )
    return _judge(config, watched, renewals, services, now, source="inventory")


def report_from_snapshot(
    config: configuration.Config, data: Mapping[str, Any], now: datetime
) -> dict[str, Any]:
    """The same findings from status.json, for a reader who may not open the database
    (a ``state_group`` member). The levels are the same; renewal progress is not in the
    snapshot, so each certificate's ``renewal`` is null."""
    sha256 = {c.get("name"): c.get("sha256") for c in data.get("certificates", [])}
    services = [
        _service(
            str(s.get("name")),
            s.get("certificate"),
            sha256.get(s.get("certificate")),
            s.get("sha256"),
            str(s.get("state") or "pending"),
            str(s.get("detail") or ""),
        )
        for s in data.get("services", [])
        if s.get("name") in config.services
    ]
    watched = in_use_from_snapshot(data, config.services)
    return _judge(config, watched, {}, services, now, "status.json")


def _service(
    name: str,
    certificate: str | None,
    desired: str | None,
    deployed: str | None,
    state: str,
    detail: str,
) -> dict[str, Any]:
    return {
        "name": name,
        "certificate": certificate,
        "desired_sha256": desired,
        "sha256": deployed,
        "state": state,
        "detail": detail,
    }


def in_use_from_snapshot(data: Mapping[str, Any], configured: Iterable[str]) -> list[InUse]:
    """What :func:`certdrop.store.renewals.in_use` finds, read from a snapshot: the
    certificates configured services should have or were proven to serve."""
    keep = set(configured)
    serving: dict[str, set[str]] = {}
    for svc in data.get("services", []):
        if svc.get("name") in keep and svc.get("sha256"):
            serving.setdefault(str(svc["sha256"]), set()).add(str(svc["name"]))
    found = []
    for cert in data.get("certificates", []):
        sha256, not_after = cert.get("sha256"), cert.get("not_after")
        desired = cert.get("status") == "in_use"
        if not sha256 or not not_after or not cert.get("not_before"):
            continue
        if not desired and sha256 not in serving:
            continue
        names = {s for s in cert.get("services", []) if s in keep} | serving.get(sha256, set())
        found.append(
            InUse(
                name=str(cert["name"]),
                sha256=str(sha256),
                lifetime=expiry.Lifetime.from_iso(cert["not_before"], not_after),
                not_after=str(not_after),
                services=tuple(sorted(names)),
                desired=desired,
            )
        )
    return sorted(found, key=lambda c: (c.not_after, c.name))


def _judge(
    config: configuration.Config,
    watched: list[InUse],
    renewals: Mapping[str, ledger.Renewal],
    services: list[dict[str, Any]],
    now: datetime,
    source: str,
) -> dict[str, Any]:
    policy = policy_of(config)
    found: list[dict[str, Any]] = []
    for cert in watched:
        assessment = expiry.assess(cert.lifetime, frozenset(), policy, now)
        renewal = renewals.get(cert.name)
        level = assessment.level
        found.append(
            {
                "name": cert.name,
                "sha256": cert.sha256,
                "not_after": cert.not_after,
                "days_left": expiry.days(cert.lifetime.left(now)),
                "level": level,
                "threshold_days": assessment.threshold,
                "renew_at": iso(assessment.renew_at),
                "overdue_at": iso(assessment.overdue_at),
                "services": list(cert.services),
                "renewal": renewal_json(renewal) if renewal is not None else None,
            }
        )
    code = max((expiry.EXIT_CODES[c["level"]] for c in found), default=0)
    return {
        "status": STATUS[code],
        "exit_code": code,
        "checked_at": iso(now),
        "source": source,
        "certificates": found,
        "services": services,
    }


def renewal_json(r: ledger.Renewal) -> dict[str, Any]:
    """A renewal row as JSON, as `check --json` and `show --json` give it."""
    return {
        "state": r.state,
        "request": r.request or None,
        "attempts": r.attempts,
        "next_attempt": iso(r.next_attempt) if r.next_attempt else None,
        "started": iso(r.started),
        "detail": r.detail,
    }


def run(config: configuration.Config, *, now: datetime | None = None) -> dict[str, Any]:
    """The report on the state as it is: from the inventory (read-only) when this user
    may read it, else from status.json. PermissionError names the path nobody could read."""
    when = now or utc_now()
    database = config.state / "inventory.sqlite3"
    if not database.exists():  # raises PermissionError when state/ is not ours to enter
        return report(config, None, when)
    if not os.access(database, os.R_OK):  # root-only: a state_group member reads the snapshot
        try:
            data = snapshot.read_json(config.status_json)
        except FileNotFoundError:
            raise UserError(
                f"{database} is not readable by this user and {config.status_json} does not "
                "exist yet; run as root, or start the daemon once so it writes the snapshot"
            ) from None
        except ValueError as exc:
            raise UserError(f"{config.status_json} cannot be read: {exc}") from None
        return report_from_snapshot(config, data, when)
    inventory = Inventory(database, readonly=True)
    try:
        return report(config, inventory, when)
    finally:
        inventory.close()
