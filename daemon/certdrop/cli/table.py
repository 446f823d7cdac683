"""Text tables for a person at a terminal: hostile text made printable, columns aligned."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any


def safe(value: object) -> str:
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
                safe(c["name"]),
                c["status"],
                safe(c["subject"]),
                (c["not_after"] or "-")[:10],
                safe(",".join(c["services"])) or "-",
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
        rows = [[h["kind"], safe(h["from"]), h["since"]] for h in held]
        out += _table(["KIND", "FROM", "SINCE"], rows, [11, 48, 20])
    services = data["services"]
    out += ["", f"Services ({len(services)})"]
    if services:
        rows = [
            [
                safe(s["name"]),
                s["role"],
                safe(s["certificate"] or "-"),
                (s["sha256"] or "-")[:16],
                s["state"],
                safe(s["detail"]),
            ]
            for s in services
        ]
        out += _table(
            ["SERVICE", "ROLE", "CERTIFICATE", "SERVING", "STATE", "DETAIL"],
            rows,
            [24, 11, 32, 16, 7, 60],
        )
    return "\n".join(out) + "\n"
