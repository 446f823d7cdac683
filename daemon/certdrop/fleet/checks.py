"""The field checks of the shared records and their one canonical byte form. Pure.

Each check takes a decoded JSON value and returns the problem, or "" when it is fine;
:mod:`certdrop.fleet.records` names the checks of each record's fields in a table.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Mapping
from typing import Any

from certdrop.config import GATEWAY_NAME
from certdrop.errors import InvalidRequest
from certdrop.pki.fields import RequestFields
from certdrop.pki.names import name_problem

MAX_PEM_CHARS = 512_000
ALL = "*"  # an assignment for this service on every gateway that has it
SERVICE_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}")  # as config.py allows
_HEX64 = re.compile(r"[0-9a-f]{64}")
_MAX_STAMP = 2**53  # stays exact in every JSON reader

Check = Callable[[Any], str]  # a field check: the problem, or "" when the value is fine


def canonical(value: Mapping[str, Any]) -> bytes:
    """The one byte form of a JSON object: sorted keys, no spaces, ASCII, ints only."""
    return json.dumps(
        value, sort_keys=True, separators=(",", ":"), ensure_ascii=True, allow_nan=False
    ).encode("ascii")


def gateway(v: Any) -> str:
    ok = isinstance(v, str) and GATEWAY_NAME.fullmatch(v)
    return "" if ok else "must be a gateway name (letters, digits, '_', '-'; 1-63)"


def target(v: Any) -> str:
    return "" if v == ALL else gateway(v)


def service(v: Any) -> str:
    ok = isinstance(v, str) and SERVICE_NAME.fullmatch(v)
    return "" if ok else "must be a service name"


def sha256(v: Any) -> str:
    ok = isinstance(v, str) and _HEX64.fullmatch(v)
    return "" if ok else "must be 64 lowercase hex digits"


def sha256_or_none(v: Any) -> str:
    return "" if v is None else sha256(v)


def hex32(v: Any) -> str:
    return "" if not sha256(v) else "must be a 32-byte key as 64 lowercase hex digits"


def name(v: Any) -> str:
    """certdrop's one name rule (pki/names.py): what a gateway may name an entry, every
    gateway reads (``本番　証明書`` with its ideographic space included)."""
    if not isinstance(v, str):
        return "must be a certificate name (text)"
    problem = name_problem(v)
    return "" if problem is None else f"must be a certificate name: {problem}"


def text(limit: int) -> Check:
    def check(v: Any) -> str:
        ok = isinstance(v, str) and len(v) <= limit and v.isascii()
        return "" if ok else f"must be ASCII text of at most {limit} characters"

    return check


def stamp(v: Any) -> str:
    ok = isinstance(v, int) and not isinstance(v, bool) and 0 <= v < _MAX_STAMP
    return "" if ok else "must be milliseconds since the epoch"


def one_of(*allowed: str) -> Check:
    def check(v: Any) -> str:
        return "" if v in allowed else f"must be one of {', '.join(allowed)}"

    return check


def names(v: Any) -> str:
    ok = isinstance(v, list) and len(v) <= 256 and all(not service(s) for s in v)
    return "" if ok else "must be a list of service names"


def request_fields(v: Any) -> str:
    """A request's fields as canonical JSON text (``to_mapping``), or "" for a CSR
    certdrop could not ask for again; checked with the request drop's own rules."""
    if v == "":
        return ""
    try:
        data = json.loads(v) if isinstance(v, str) and len(v) <= 64_000 and v.isascii() else None
        if isinstance(data, dict) and canonical(data).decode() == v:
            RequestFields.from_mapping(data)
            return ""
    except (ValueError, InvalidRequest):
        pass
    return "must be a request's fields as canonical JSON, or empty"


PEM = text(MAX_PEM_CHARS)
SHORT = text(64)
DETAIL = text(500)
