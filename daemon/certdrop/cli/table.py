"""Text tables for a person at a terminal: hostile text made printable, columns aligned
by display width (a CJK character takes two columns, a combining accent none)."""

from __future__ import annotations

import unicodedata
from collections.abc import Mapping
from typing import Any

import wcwidth


def safe(value: object) -> str:
    """One printable line: hostile names cannot move the cursor or break the table.
    Unprintable characters (controls, bidi overrides, line separators) become escapes;
    spaces of any script stay."""
    text = "" if value is None else str(value)
    return "".join(
        c if c.isprintable() or unicodedata.category(c) == "Zs" else _escape(c) for c in text
    )


def _escape(ch: str) -> str:
    code = ord(ch)
    return f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}"


def width(text: str) -> int:
    """Columns ``text`` takes on a terminal (``safe`` text: every character printable)."""
    if text.isascii():
        return len(text)  # printable ASCII: one column each (the common case, fast)
    found = wcwidth.wcswidth(text)
    return found if found >= 0 else sum(max(wcwidth.wcwidth(c), 0) for c in text)


def clip(text: str, columns: int) -> str:
    """``text`` cut to at most ``columns`` display columns, ending in … when cut."""
    if width(text) <= columns:
        return text
    out, used = [], 0
    for ch in text:
        w = max(wcwidth.wcwidth(ch), 0)
        if used + w > columns - 1:
            break
        out.append(ch)
        used += w
    return "".join(out) + "…"


def pad(text: str, columns: int) -> str:
    """``text`` filled with spaces to ``columns`` display columns."""
    return text + " " * max(columns - width(text), 0)


def _table(headers: list[str], rows: list[list[str]], widths: list[int]) -> list[str]:
    cols = [
        min(w, max([width(h), *(width(r[i]) for r in rows)]))
        for i, (h, w) in enumerate(zip(headers, widths, strict=True))
    ]

    def line(cells: list[str]) -> str:
        return "  ".join(pad(clip(c, cols[i]), cols[i]) for i, c in enumerate(cells)).rstrip()

    return [line(headers), *(line(r) for r in rows)]


def table(headers: list[str], rows: list[list[str]], widths: list[int]) -> list[str]:
    """Lines of a table: each column as wide as its widest cell, at most its width."""
    return _table(headers, rows, widths)


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
                "yes" if c.get("trusted") else "no",
                safe(",".join(c["services"])) or "-",
                (c["sha256"] or "-")[:16],
            ]
            for c in certs
        ]
        out += _table(
            ["NAME", "STATUS", "SUBJECT", "EXPIRES", "TRUSTED", "SERVICES", "SHA256"],
            rows,
            [32, 9, 48, 10, 7, 30, 16],
        )
    untrusted = [c for c in certs if c.get("status") != "requested" and not c.get("trusted")]
    if untrusted:
        out += ["", f"Not trusted ({len(untrusted)})"]
        rows = [[safe(c["name"]), safe(c.get("trust_detail", ""))] for c in untrusted]
        out += _table(["NAME", "WHY"], rows, [32, 160])
    held = data["held"]
    if held:
        out += ["", f"Held, waiting for their partner ({len(held)})"]
        rows = [[str(h["id"]), h["kind"], safe(h["from"]), h["since"]] for h in held]
        out += _table(["ID", "KIND", "FROM", "SINCE"], rows, [8, 11, 48, 20])
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
