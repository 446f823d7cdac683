"""The report behind ``certdrop check``: the expiry check, now, for any monitor.

Read-only: it opens the inventory read-only, emits no event and remembers nothing, so
the daemon's once-only warnings are still its own to give. It calls the same
:func:`certdrop.pki.expiry.assess` the daemon acts on. Exit 0 when all is fine, 1 when a
certificate in use is within a warning threshold, 2 when one has expired or its renewal
is overdue. Certificates that no service uses or serves are not checked: their expiry
harms nobody (a renewed certificate's predecessor is one of them).
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from certdrop import config as configuration
from certdrop.clock import iso, utc_now
from certdrop.pki import expiry
from certdrop.store import renewals as ledger
from certdrop.store.inventory import Inventory

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
    policy = policy_of(config)
    found: list[dict[str, Any]] = []
    watched = ledger.in_use(inventory, config.services) if inventory is not None else []
    renewals = ledger.renewals(inventory) if inventory is not None else {}
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
                "renewal": _renewal(renewal) if renewal is not None else None,
            }
        )
    code = max((expiry.EXIT_CODES[c["level"]] for c in found), default=0)
    return {
        "status": STATUS[code],
        "exit_code": code,
        "checked_at": iso(now),
        "certificates": found,
    }


def _renewal(r: ledger.Renewal) -> dict[str, Any]:
    return {
        "state": r.state,
        "request": r.request or None,
        "attempts": r.attempts,
        "next_attempt": iso(r.next_attempt) if r.next_attempt else None,
        "started": iso(r.started),
        "detail": r.detail,
    }


def run(config: configuration.Config, *, now: datetime | None = None) -> dict[str, Any]:
    database = config.state / "inventory.sqlite3"
    if not database.exists():
        return report(config, None, now or utc_now())
    inventory = Inventory(database, readonly=True)
    try:
        return report(config, inventory, now or utc_now())
    finally:
        inventory.close()
