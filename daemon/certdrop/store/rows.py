"""What comes out of the inventory: frozen values, never raw ``sqlite3.Row`` objects."""

from __future__ import annotations

import json
import sqlite3
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class Entry:
    """One certificate (or pending request) in the inventory, without its key."""

    name: str
    status: str
    key_id: str
    sha256: str | None
    cert_pem: bytes | None
    chain_pem: bytes | None
    trusted: bool
    trust_detail: str
    subject: str | None
    sans: list[str]
    issuer: str | None
    not_before: str | None
    not_after: str | None
    key_type: str | None
    key_bits: int | None
    request: dict[str, Any] | None
    renews: str | None
    created: str

    @classmethod
    def from_row(cls, row: sqlite3.Row) -> Entry:
        return cls(
            name=row["name"],
            status=row["status"],
            key_id=row["key_id"],
            sha256=row["sha256"],
            cert_pem=row["cert_pem"],
            chain_pem=row["chain_pem"],
            trusted=bool(row["trusted"]),
            trust_detail=row["trust_detail"] or "",
            subject=row["subject"],
            sans=json.loads(row["sans"] or "[]"),
            issuer=row["issuer"],
            not_before=row["not_before"],
            not_after=row["not_after"],
            key_type=row["key_type"],
            key_bits=row["key_bits"],
            request=json.loads(row["request"]) if row["request"] else None,
            renews=row["renews"],
            created=row["created"],
        )


@dataclass(frozen=True)
class Summary:
    """The columns ``status`` shows of one certificate, without its bytes."""

    name: str
    status: str
    subject: str | None
    sans: list[str]
    issuer: str | None
    not_before: str | None
    not_after: str | None
    sha256: str | None
    key_type: str | None
    key_bits: int | None
    trusted: bool
    trust_detail: str
    renews: str | None

    @classmethod
    def from_row(cls, row: sqlite3.Row) -> Summary:
        values = dict(row)
        values["sans"] = json.loads(values["sans"] or "[]")
        values["trusted"] = bool(values["trusted"])
        return cls(**values)


@dataclass(frozen=True)
class Judged:
    """A certificate's stored trust verdict and what it is judged on."""

    name: str
    cert_pem: bytes
    chain_pem: bytes
    trusted: bool
    trust_detail: str

    @classmethod
    def from_row(cls, row: sqlite3.Row) -> Judged:
        return cls(
            row["name"],
            bytes(row["cert_pem"]),
            bytes(row["chain_pem"] or b""),
            bool(row["trusted"]),
            row["trust_detail"] or "",
        )


@dataclass(frozen=True)
class Held:
    """A piece waiting for its partner. ``pem`` is empty unless the piece was taken."""

    id: int
    kind: str  # certificate | key
    key_id: str
    from_file: str
    since: str
    pem: bytes = b""

    def __repr__(self) -> str:  # a held key's bytes never reach a traceback
        return f"Held({self.id}, {self.kind}, from {self.from_file!r}, since {self.since})"

    @classmethod
    def from_row(cls, row: sqlite3.Row) -> Held:
        pem = bytes(row["pem"]) if "pem" in row.keys() else b""  # noqa: SIM118 - Row `in` tests values
        return cls(row["id"], row["kind"], row["key_id"], row["from_file"], row["since"], pem)


@dataclass(frozen=True)
class ServiceRow:
    """A service's desired certificate and what it was proven to serve."""

    name: str
    desired: str | None
    deployed_sha256: str | None
    state: str
    detail: str
    updated: str | None
    managed: bool = True  # False after `certdrop unassign`, until the next assign

    @classmethod
    def from_row(cls, row: sqlite3.Row) -> ServiceRow:
        values = dict(row)
        values["managed"] = bool(values.get("managed", 1))
        return cls(**values)


@dataclass(frozen=True)
class DropRow:
    """The committed result of one claimed drop."""

    claim: str
    file: str
    result: str
    code: str | None
    reason: str | None
    at: str

    @classmethod
    def from_row(cls, row: sqlite3.Row) -> DropRow:
        return cls(**dict(row))


__all__ = ["DropRow", "Entry", "Held", "Judged", "ServiceRow", "Summary"]
