"""The status snapshot (the contract of ``status --json`` and status.json) and its table."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any, BinaryIO

from certdrop.config import Config
from certdrop.store.inventory import Inventory


def snapshot(config: Config, inventory: Inventory) -> dict[str, Any]:
    """Everything ``status`` shows, as the design's JSON object."""
    return {
        "certificates": list(certificates(config, inventory)),
        "held": held(inventory),
        "services": services(config, inventory),
    }


def write_json(out: BinaryIO, config: Config, inventory: Inventory) -> None:
    """Write the snapshot as JSON one certificate at a time: memory stays flat at
    100,000 certificates, where the whole object would cost hundreds of MiB."""
    out.write(b'{"certificates": [')
    for i, cert in enumerate(certificates(config, inventory)):
        out.write((b"\n " if i == 0 else b",\n ") + _dumps(cert))
    out.write(b'\n],\n"held": ' + _dumps(held(inventory)))
    out.write(b',\n"services": ' + _dumps(services(config, inventory)) + b"}\n")


def read_json(path: Path) -> dict[str, Any]:
    """The snapshot status.json holds: what a reader without the database sees (a
    ``state_group`` member). Raises OSError (e.g. PermissionError) or ValueError."""
    data = json.loads(path.read_bytes())
    if not isinstance(data, dict) or not isinstance(data.get("certificates"), list):
        raise ValueError(f"{path} is not a certdrop status snapshot")
    data.setdefault("held", [])
    data.setdefault("services", [])
    return data


def _dumps(value: object) -> bytes:
    # ensure_ascii keeps control characters and odd bytes as \u escapes.
    return json.dumps(value, ensure_ascii=True).encode()


def certificates(config: Config, inventory: Inventory) -> Iterator[dict[str, Any]]:
    """The ``certificates`` of the snapshot, one at a time."""
    used_by: dict[str, list[str]] = {}
    for name, row in inventory.services().items():
        if row.desired and name in config.services:
            used_by.setdefault(row.desired, []).append(name)
    for e in inventory.summaries():
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
        if e.renews:
            cert["renews"] = e.renews
        yield cert


def held(inventory: Inventory) -> list[dict[str, Any]]:
    return [
        {"kind": r.kind, "from": r.from_file, "since": r.since} for r in inventory.held()
    ]


def services(config: Config, inventory: Inventory) -> list[dict[str, Any]]:
    rows = inventory.services()
    found = []
    for name, svc in sorted(config.services.items()):
        row = rows.get(name)
        found.append(
            {
                "name": name,
                "role": svc.role,
                "certificate": row.desired if row else None,
                "sha256": row.deployed_sha256 if row else None,
                "state": (row.state if row else "") or "pending",
                "detail": (row.detail if row else "") or "no certificate assigned",
            }
        )
    return found
