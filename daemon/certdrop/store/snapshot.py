"""The status snapshot: the contract of ``status --json`` and status.json.

:class:`Selection` is what ``certdrop status`` filters by (status, expiry, service, a
name pattern) and sorts by; the daemon's status.json always holds everything.
"""

from __future__ import annotations

import fnmatch
import json
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any, Literal

from certdrop import jsontext
from certdrop.config import Config
from certdrop.pki.names import normal
from certdrop.store.inventory import Inventory
from certdrop.store.rows import Summary


@dataclass(frozen=True)
class Selection:
    """Which certificates to list, in which order (the default: all, by name).

    ``expiring_by`` is an ISO time: certificates whose notAfter is at or before it
    (expired ones included). ``service`` keeps the certificates that service should
    have or is proven to serve, and that service alone in ``services``. ``pattern`` is a
    shell glob matched against the whole name (case-sensitive, as names are).
    """

    status: str | None = None
    expiring_by: str | None = None
    service: str | None = None
    pattern: str | None = None
    sort: Literal["name", "expiry"] = "name"

    def keeps(self, cert: dict[str, Any], served: frozenset[str]) -> bool:
        if self.status is not None and cert["status"] != self.status:
            return False
        if self.expiring_by is not None and not (
            cert["not_after"] and cert["not_after"] <= self.expiring_by
        ):
            return False
        if self.service is not None and not (
            self.service in cert["services"] or cert["sha256"] in served
        ):
            return False
        return self.pattern is None or fnmatch.fnmatchcase(cert["name"], normal(self.pattern))


EVERYTHING = Selection()


def snapshot(
    config: Config, inventory: Inventory, selection: Selection = EVERYTHING
) -> dict[str, Any]:
    """Everything ``status`` shows, as the design's JSON object."""
    return {
        "certificates": list(certificates(config, inventory, selection)),
        "held": held(inventory),
        "services": services(config, inventory, selection.service),
    }


def write_json(
    out: IO[bytes], config: Config, inventory: Inventory, selection: Selection = EVERYTHING
) -> None:
    """Write the snapshot as JSON one certificate at a time: memory stays flat at
    100,000 certificates, where the whole object would cost hundreds of MiB."""
    out.write(b'{"certificates": [')
    for i, cert in enumerate(certificates(config, inventory, selection)):
        out.write((b"\n " if i == 0 else b",\n ") + jsontext.encode(cert))
    out.write(b'\n],\n"held": ' + jsontext.encode(held(inventory)))
    out.write(b',\n"services": ' + jsontext.encode(services(config, inventory, selection.service)))
    out.write(b"}\n")


def select(data: dict[str, Any], selection: Selection) -> dict[str, Any]:
    """A snapshot read from status.json, filtered and sorted as ``selection`` says."""
    if selection is EVERYTHING:
        return data
    served = frozenset(
        s["sha256"]
        for s in data["services"]
        if s.get("name") == selection.service and s.get("sha256")
    )
    certs = [c for c in data["certificates"] if selection.keeps(c, served)]
    if selection.sort == "expiry":
        certs.sort(key=lambda c: (c["not_after"] is None, c["not_after"] or "", c["name"]))
    services = [s for s in data["services"] if selection.service in (None, s.get("name"))]
    return {**data, "certificates": certs, "services": services}


def read_json(path: Path) -> dict[str, Any]:
    """The snapshot status.json holds: what a reader without the database sees (a
    ``state_group`` member). Raises OSError (e.g. PermissionError) or ValueError."""
    data = json.loads(path.read_bytes())
    if not isinstance(data, dict) or not isinstance(data.get("certificates"), list):
        raise ValueError(f"{path} is not a certdrop status snapshot")
    data.setdefault("held", [])
    data.setdefault("services", [])
    return data


def certificates(
    config: Config, inventory: Inventory, selection: Selection = EVERYTHING
) -> Iterator[dict[str, Any]]:
    """The ``certificates`` of the snapshot, one at a time."""
    used_by: dict[str, list[str]] = {}
    served: frozenset[str] = frozenset()
    for name, row in inventory.services().items():
        if row.desired and name in config.services:
            used_by.setdefault(row.desired, []).append(name)
        if name == selection.service and row.deployed_sha256:
            served = frozenset({row.deployed_sha256})
    for e in inventory.summaries(order=selection.sort):
        cert = _certificate(e, used_by)
        if selection is EVERYTHING or selection.keeps(cert, served):
            yield cert


def certificate(config: Config, inventory: Inventory, name: str) -> dict[str, Any] | None:
    """The one certificate object of ``status --json`` named ``name`` (``show``)."""
    summary = inventory.summary(name)
    if summary is None:
        return None
    wanting = [
        service
        for service, row in inventory.services().items()
        if row.desired == summary.name and service in config.services
    ]
    return _certificate(summary, {summary.name: wanting})


def _certificate(e: Summary, used_by: dict[str, list[str]]) -> dict[str, Any]:
    cert: dict[str, Any] = {
        "name": e.name,
        "status": e.status,
        "subject": e.subject,
        "sans": e.sans,
        "issuer": e.issuer,
        "not_before": e.not_before,
        "not_after": e.not_after,
        "sha256": e.sha256,
        "key": {"type": e.key_type, "bits": e.key_bits},
        "services": sorted(used_by.get(e.name, [])),
        "trusted": e.trusted,
    }
    if not e.trusted and e.status != "requested":
        cert["trust_detail"] = e.trust_detail or "not judged yet (judged at the next start)"
    if e.renews:
        cert["renews"] = e.renews
    return cert


def held(inventory: Inventory) -> list[dict[str, Any]]:
    """Pieces waiting for their partner; ``id`` is what ``held --discard`` takes."""
    return [
        {"id": r.id, "kind": r.kind, "from": r.from_file, "since": r.since}
        for r in inventory.held()
    ]


def services(config: Config, inventory: Inventory, only: str | None = None) -> list[dict[str, Any]]:
    rows = inventory.services()
    found = []
    for name, svc in sorted(config.services.items()):
        if only is not None and name != only:
            continue
        row = rows.get(name)
        found.append(
            {
                "name": name,
                "role": svc.role,
                "certificate": row.desired if row else None,
                "sha256": row.deployed_sha256 if row else None,
                "state": (row.state if row else "") or "pending",
                "detail": (row.detail if row else "") or "no certificate assigned",
                "managed": row.managed if row else True,
            }
        )
    return found
