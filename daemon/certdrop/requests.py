"""Certificate requests certdrop makes itself: key + CSR, recorded as ``requested``.

Used by ``certdrop csr``, by ``NAME.request.toml`` drops and by renewals.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from pathlib import Path

from cryptography.hazmat.primitives.serialization import Encoding

from certdrop.errors import UserError
from certdrop.files import atomic_write
from certdrop.inventory import Inventory
from certdrop.pki import keys
from certdrop.pki.chain import describe_name
from certdrop.pki.csr import RequestFields, build_csr, generate_key
from certdrop.statuslog import Logger, iso, utc_now

# One status-log line stays readable: the CSR in the outbox holds every SAN.
LOGGED_SANS = 100
_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}")


def check_name(name: str, inventory: Inventory) -> None:
    """A new entry's name must be safe as a file name and not yet in use."""
    if not _NAME.fullmatch(name) or name.endswith("."):
        raise UserError(
            f"name {name!r} is not allowed: use 1-64 letters, digits, '.', '_' or '-', "
            "starting with a letter or digit"
        )
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
    path = outbox / f"{name}.csr"
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
