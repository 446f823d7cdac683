"""Certificate requests certdrop makes itself: key + CSR, recorded as ``requested``.

Also the checks every way of asking shares (``checked_request``, ``fields_from_args``).

Used by ``certdrop csr``, by ``NAME.request.toml`` drops and by renewals.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives.serialization import Encoding

from certdrop.clock import iso, utc_now
from certdrop.errors import InvalidRequest, UserError
from certdrop.files import atomic_write
from certdrop.pki import keys
from certdrop.pki.chain import describe_name
from certdrop.pki.csr import build_csr, generate_key
from certdrop.pki.fields import RequestFields
from certdrop.pki.names import file_name, name_problem
from certdrop.store.eventlog import Logger
from certdrop.store.inventory import Inventory

# One status-log line stays readable: the CSR in the outbox holds every SAN.
LOGGED_SANS = 100


def csr_path(outbox: Path, name: str) -> Path:
    """Where the CSR of request ``name`` waits: ``outbox/NAME.csr`` when the name is a
    safe file name, else a safe form of it (:func:`certdrop.pki.names.file_name`)."""
    return outbox / file_name(name, ".csr")


def check_name(name: str, inventory: Inventory) -> None:
    """A new entry's name must follow the name rule and not be in use yet."""
    problem = name_problem(name)
    if problem is not None:
        raise UserError(problem)
    if inventory.entry(name) is not None:
        raise UserError(f"name {name!r} is already in use; pick another name")


def create_request(
    inventory: Inventory,
    log: Logger,
    outbox: Path,
    name: str,
    fields: RequestFields,
    *,
    renews: str | None = None,
    in_transaction: Callable[[], None] | None = None,
) -> Path:
    """Make a key and CSR for ``fields``, record a ``requested`` entry, write the CSR.

    The CSR file is written (atomically, 0644) before the entry is committed, so a crash
    leaves at worst a CSR without an entry, never an entry whose CSR is missing.
    ``in_transaction`` runs inside the entry's transaction (a request drop records its
    result there, so both commit or neither does).
    """
    check_name(name, inventory)
    key = generate_key(fields.key_type, fields.key_size)
    csr = build_csr(key, fields)
    csr_pem = csr.public_bytes(Encoding.PEM)
    path = csr_path(outbox, name)
    atomic_write(path, csr_pem, mode=0o644)
    info = keys.describe(key)
    with inventory.transaction():
        inventory.put_entry(
            {
                "name": name,
                "status": "requested",
                "key_id": keys.key_id(key.public_key()),
                "key_pem": keys.to_pem(key),
                "csr_pem": csr_pem,
                "request": fields.to_mapping(),
                "subject": describe_name(csr.subject),
                "sans": list(fields.sans),
                "key_type": info.type,
                "key_bits": info.bits,
                "renews": renews,
                "created": iso(utc_now()),
            }
        )
        if in_transaction is not None:
            in_transaction()
    log.info(
        "csr.created",
        name=name,
        subject=describe_name(csr.subject),
        sans=list(fields.sans[:LOGGED_SANS]),
        **({"sans_total": len(fields.sans)} if len(fields.sans) > LOGGED_SANS else {}),
        key_type=info.type,
        key_bits=info.bits,
        csr=str(path),
        **({"renews": renews} if renews else {}),
    )
    return path


def checked_request(
    name: str, inventory: Inventory, read: Callable[[], RequestFields]
) -> RequestFields:
    """The fields ``read`` returns for a new entry ``name``; raise one ``InvalidRequest``
    listing the name's problem (unsafe or taken) together with every field problem."""
    problems: list[str] = []
    try:
        check_name(name, inventory)
    except UserError as exc:
        problems.append(str(exc))
    fields: RequestFields | None = None
    try:
        fields = read()
    except InvalidRequest as exc:
        problems.extend(exc.problems)
    if problems or fields is None:
        raise InvalidRequest(problems)
    return fields


def fields_from_args(args: dict[str, Any]) -> RequestFields:
    """RequestFields from the command's JSON arguments; a key size that is not a whole
    number is one more problem in the same ``InvalidRequest``."""
    problems: list[str] = []
    raw_size = args.get("key_size")
    key_size: int | None = None
    if isinstance(raw_size, int) and not isinstance(raw_size, bool):
        key_size = raw_size
    elif isinstance(raw_size, str) and raw_size.strip().isascii() and raw_size.strip().isdigit():
        key_size = int(raw_size)
    elif raw_size is not None:
        problems.append(f"key_size {str(raw_size)[:20]!r} is not a number; use 2048 or 4096")
    texts = {f: _text(args.get(f)) for f in TEXT_FIELDS}
    sans = args.get("sans") or []
    try:
        fields = RequestFields.from_values(
            cn=texts.pop("cn") or "",
            sans=[str(s) for s in sans] if isinstance(sans, list) else str(sans),
            key_type=str(args.get("key_type") or "rsa"),
            key_size=key_size,
            **texts,
        )
    except InvalidRequest as exc:
        raise InvalidRequest([*exc.problems, *problems]) from None
    if problems:
        raise InvalidRequest(problems)
    return fields


def _text(value: object) -> str | None:
    return None if value is None else str(value)


# The text fields of a request, in the order their problems are reported.
TEXT_FIELDS = ("cn", "country", "state", "locality", "org", "ou", "email")
