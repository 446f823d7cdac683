"""``certdrop inspect FILE...``: what dropping each file would do, changing nothing.

The files go through the real pipeline (:meth:`Intake.take`: parse, sort, pair,
validate, record) against a private in-memory copy of the inventory, inside a
transaction that is rolled back; nothing is claimed, moved, logged or written, so the
state folder stays byte-identical. Files are taken in the order given, as if dropped
one after the other: a key named after its certificate pairs with it.
"""

from __future__ import annotations

import os
import stat
from pathlib import Path
from typing import Any

from cryptography import x509

from certdrop.errors import InvalidRequest, Rejection
from certdrop.intake.pipeline import REQUEST_SUFFIX, Intake
from certdrop.intake.request import checked_request, csr_path
from certdrop.intake.request_toml import fields_from_toml, request_name
from certdrop.intake.work import Work
from certdrop.pki import assemble, keys
from certdrop.pki import chain as chains
from certdrop.pki.parse import parse


def read(path: Path, max_bytes: int) -> bytes | Rejection:
    """The bytes of a file to inspect, or the rejection intake would give it unread.
    A file that cannot be read at all raises OSError (the caller names it)."""
    st = os.stat(path)  # followed, as `cp FILE inbox/` would follow it
    if not stat.S_ISREG(st.st_mode):
        return Rejection(
            "not_regular_file", "this is not a regular file; upload the certificate file itself"
        )
    if st.st_size > max_bytes:
        return Rejection(
            "too_large",
            f"the file has {st.st_size} bytes, more than intake.max_file_bytes ({max_bytes}); "
            "certificates, keys and chains are far smaller. Check what was uploaded",
        )
    return path.read_bytes()


def inspect(intake: Intake, files: list[tuple[str, bytes | Rejection]]) -> list[dict[str, Any]]:
    """One finding per ``(file name, bytes)``; the inventory is left as it was."""
    findings = []
    with intake.inventory.rehearsal():
        for file, data in files:
            findings.append(_one(intake, file, data))
            intake.forget_pool()  # it may hold intermediates the rollback takes away
    return findings


def _one(intake: Intake, file: str, data: bytes | Rejection) -> dict[str, Any]:
    found: dict[str, Any] = {"file": file, "pieces": []}
    work = Work()
    try:
        if isinstance(data, Rejection):
            raise data
        if file.endswith(REQUEST_SUFFIX):
            return _request(intake, file, data, found)
        pieces = assemble.sort_pieces(parse(data, intake.passphrases))
        found["pieces"] = _pieces(pieces)
        with intake.inventory.savepoint():
            intake.take(pieces, file, work)
    except Rejection as rejection:
        found.update(result="rejected", code=rejection.code, reason=rejection.reason)
        found["events"] = [
            {"level": "warning", "event": "drop.rejected", "code": rejection.code,
             "reason": rejection.reason, "file": file}
        ]  # fmt: skip
        return found
    held_only = work.held and not (work.recorded or work.duplicates)
    result = "held" if held_only else "accepted"
    events = [{"level": level, "event": event, **fields} for level, event, fields in work.events]
    final = {"held": work.held} if held_only else {"certificates": work.recorded}
    events.append({"level": "info", "event": f"drop.{result}", "file": file, **final})
    found.update(
        result=result,
        entries=work.recorded,
        held=work.held,
        duplicate_of=work.duplicates,
        intermediates_new=work.intermediates,
        pairs=[
            {"certificate": e["name"], "subject": e["subject"], "paired_with": e["paired_with"]}
            for e in events
            if e["event"] == "cert.imported"
        ],
        chains=[_chain(c) for c in work.leaf_chains],
        events=events,
    )
    return found


def _request(intake: Intake, file: str, data: bytes, found: dict[str, Any]) -> dict[str, Any]:
    """A ``NAME.request.toml``: checked as intake would, but no key is made."""
    name = request_name(file)
    try:
        fields = checked_request(name, intake.inventory, lambda: fields_from_toml(data))
    except InvalidRequest as exc:
        raise Rejection(
            "invalid_request", f"{'; '.join(exc.problems)}. Fix {file} and drop it again"
        ) from None
    found["pieces"] = [{"kind": "request", "name": name, **fields.to_mapping()}]
    found.update(
        result="accepted",
        entries=[name],
        csr=str(csr_path(intake.config.outbox, name)),
        events=[
            {"level": "info", "event": "csr.created", "name": name, "sans": list(fields.sans)},
            {"level": "info", "event": "drop.accepted", "file": file, "certificates": [name]},
        ],
    )
    return found


def _pieces(pieces: assemble.Pieces) -> list[dict[str, Any]]:
    found: list[dict[str, Any]] = []
    for kind, certs in (("certificate", pieces.leaves), ("intermediate", pieces.authorities)):
        for cert in certs:
            found.append({"kind": kind, **_cert(cert), "key_id": keys.cert_key_id(cert)})
    for key in pieces.keys:
        info = keys.describe(key)
        found.append(
            {"kind": "key", "type": info.type, "bits": info.bits,
             "key_id": keys.key_id(key.public_key())}
        )  # fmt: skip
    for csr in pieces.csrs:
        found.append({"kind": "csr", "subject": chains.describe_name(csr.subject)})
    return found


def _cert(cert: x509.Certificate) -> dict[str, Any]:
    return {
        "subject": chains.describe_name(cert.subject),
        "issuer": chains.describe_name(cert.issuer),
        "not_after": cert.not_valid_after_utc.strftime("%Y-%m-%dT%H:%M:%SZ"),
        "sha256": chains.fingerprint(cert),
    }


def _chain(chain: chains.Chain) -> dict[str, Any]:
    return {
        "leaf": chains.describe_name(chain.leaf.subject),
        "intermediates": [chains.describe_name(c.subject) for c in chain.intermediates],
        "root": chains.describe_name(chain.root.subject) if chain.root is not None else None,
        "trusted": chain.trusted,
    }
