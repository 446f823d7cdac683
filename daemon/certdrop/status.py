"""The status snapshot (the contract of ``status --json`` and status.json) and its table."""

from __future__ import annotations

import json
from collections.abc import Iterator, Mapping
from typing import Any, BinaryIO

from certdrop.config import Config
from certdrop.inventory import Inventory


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


def _dumps(value: object) -> bytes:
    # ensure_ascii keeps control characters and odd bytes as \u escapes.
    return json.dumps(value, ensure_ascii=True).encode()


def _service_rows(inventory: Inventory) -> dict[str, dict[str, Any]]:
    return {r["name"]: dict(r) for r in inventory.db.execute("SELECT * FROM services")}


def certificates(config: Config, inventory: Inventory) -> Iterator[dict[str, Any]]:
    """The ``certificates`` of the snapshot, one at a time."""
    used_by: dict[str, list[str]] = {}
    for name, row in _service_rows(inventory).items():
        if row["desired"] and name in config.services:
            used_by.setdefault(row["desired"], []).append(name)
    for e in inventory.summaries():
        cert: dict[str, Any] = {
            "name": e["name"],
            "status": e["status"],
            "subject": e["subject"],
            "sans": json.loads(e["sans"] or "[]"),
            "issuer": e["issuer"],
            "not_before": e["not_before"],
            "not_after": e["not_after"],
            "sha256": e["sha256"],
            "key": {"type": e["key_type"], "bits": e["key_bits"]},
            "services": sorted(used_by.get(e["name"], [])),
            "trusted": bool(e["trusted"]),
        }
        if e["renews"]:
            cert["renews"] = e["renews"]
        yield cert


def held(inventory: Inventory) -> list[dict[str, Any]]:
    return [
        {"kind": r["kind"], "from": r["from_file"], "since": r["since"]} for r in inventory.held()
    ]


def services(config: Config, inventory: Inventory) -> list[dict[str, Any]]:
    rows = _service_rows(inventory)
    found = []
    for name, svc in sorted(config.services.items()):
        state: Mapping[str, Any] = rows.get(name, {})
        found.append(
            {
                "name": name,
                "role": svc.role,
                "certificate": state.get("desired"),
                "sha256": state.get("deployed_sha256"),
                "state": state.get("state") or "pending",
                "detail": state.get("detail") or "no certificate assigned",
            }
        )
    return found


def _safe(value: object) -> str:
    """One printable line: hostile names cannot move the cursor or break the table."""
    text = "" if value is None else str(value)
    return "".join(c if c.isprintable() else f"\\x{ord(c):02x}" for c in text)


def _clip(text: str, width: int) -> str:
    return text if len(text) <= width else text[: width - 1] + "…"


def _table(headers: list[str], rows: list[list[str]], widths: list[int]) -> list[str]:
    cols = [
        min(w, max([len(h), *(len(r[i]) for r in rows)]))
        for i, (h, w) in enumerate(zip(headers, widths, strict=True))
    ]

    def line(cells: list[str]) -> str:
        return "  ".join(_clip(c, cols[i]).ljust(cols[i]) for i, c in enumerate(cells)).rstrip()

    return [line(headers), *(line(r) for r in rows)]


def render(data: Mapping[str, Any]) -> str:
    """The snapshot as tables for a person at a terminal."""
    out: list[str] = []
    certs = data["certificates"]
    out.append(f"Certificates ({len(certs)})")
    if certs:
        rows = [
            [
                _safe(c["name"]),
                c["status"],
                _safe(c["subject"]),
                (c["not_after"] or "-")[:10],
                _safe(",".join(c["services"])) or "-",
                (c["sha256"] or "-")[:16],
            ]
            for c in certs
        ]
        out += _table(
            ["NAME", "STATUS", "SUBJECT", "EXPIRES", "SERVICES", "SHA256"],
            rows,
            [32, 9, 48, 10, 30, 16],
        )
    held = data["held"]
    if held:
        out += ["", f"Held, waiting for their partner ({len(held)})"]
        rows = [[h["kind"], _safe(h["from"]), h["since"]] for h in held]
        out += _table(["KIND", "FROM", "SINCE"], rows, [11, 48, 20])
    services = data["services"]
    out += ["", f"Services ({len(services)})"]
    if services:
        rows = [
            [
                _safe(s["name"]),
                s["role"],
                _safe(s["certificate"] or "-"),
                (s["sha256"] or "-")[:16],
                s["state"],
                _safe(s["detail"]),
            ]
            for s in services
        ]
        out += _table(
            ["SERVICE", "ROLE", "CERTIFICATE", "SERVING", "STATE", "DETAIL"],
            rows,
            [24, 11, 32, 16, 7, 60],
        )
    return "\n".join(out) + "\n"
