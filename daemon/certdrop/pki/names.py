"""The one name rule for certificate entries and services, and a drop's entry name."""

from __future__ import annotations

import re

# Safe as a file name everywhere (the outbox CSR is named after the entry).
_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}")


def name_problem(name: str) -> str | None:
    """Why ``name`` cannot name an entry or a service, or None when it can."""
    if not _NAME.fullmatch(name) or name.endswith("."):
        return (
            f"name {name!r} is not allowed: use 1-64 letters, digits, '.', '_' or '-', "
            "starting with a letter or digit"
        )
    return None


def entry_name(file: str) -> str:
    """Inventory name from a drop's file name: ``imsva91_cert.pem`` -> ``imsva91_cert``."""
    stem = file.rsplit(".", 1)[0] if "." in file.lstrip(".") else file
    safe = "".join(c if c.isascii() and (c.isalnum() or c in "-_.") else "_" for c in stem)
    return safe.strip("._")[:64] or "certificate"
