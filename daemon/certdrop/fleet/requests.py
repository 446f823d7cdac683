"""Requests (CSRs) shared across the fleet: made on one gateway, waiting on every one.

- A ``requested`` entry recorded here (``certdrop csr``, a request drop, a renewal) is
  published by the outbox trigger as a :class:`Request` record: its CSR and fields, never
  its key, which is sealed to every approved gateway as certificate keys are.
- A request from another gateway whose key is sealed to this one is checked (the CSR's
  signature, the CSR and the opened key are the record's ``key_id``) and recorded as a
  ``requested`` entry with its CSR in the outbox, under the same name rules as a
  certificate from the fleet (a taken name gets ``-2``). The CA's certificate dropped on
  any gateway then pairs with the request there by public key, like any drop, and
  travels as a certificate; the other gateways pair it with their copy of the request.
- A request deleted anywhere (``certdrop delete``) is deleted from the engine by a
  trigger; every gateway then deletes its copy and its own sealed copy of the key.
"""

from __future__ import annotations

import contextlib
import json
import os
from typing import TYPE_CHECKING

from cryptography import x509
from cryptography.exceptions import UnsupportedAlgorithm

from certdrop.clock import iso, utc_now
from certdrop.files import atomic_write
from certdrop.fleet.checks import canonical
from certdrop.fleet.crypto import SealError
from certdrop.fleet.records import Envelope, Request, SealedKey
from certdrop.intake.request import csr_path
from certdrop.pki import keys
from certdrop.pki.chain import describe_name
from certdrop.pki.fields import RequestFields
from certdrop.pki.names import entry_name
from certdrop.store import edits
from certdrop.store import fleet as tables
from certdrop.store import renewals as ledger
from certdrop.store.inventory import Inventory

if TYPE_CHECKING:
    from certdrop.fleet.node import FleetNode


def record_of(inventory: Inventory, key_id: str) -> Request | None:
    """The record of the ``requested`` entry with this key, None when there is none now
    (fulfilled or deleted since its trigger row was queued)."""
    entry = inventory.request_for_key(key_id)
    csr = ledger.csr_pem(inventory, entry.name) if entry is not None else None
    if entry is None or csr is None:
        return None
    old = inventory.entry(entry.renews) if entry.renews else None
    fields = "" if entry.request is None else canonical(entry.request).decode()
    renews = old.sha256 if old is not None else None
    return Request(key_id, entry.name, csr.decode("ascii"), fields, renews)


def opened(record: Request, key_pem: bytes) -> x509.CertificateSigningRequest | str:
    """The request's CSR, checked against the key sealed with it; or what is wrong."""
    try:
        csr = x509.load_pem_x509_csr(record.csr_pem.encode("ascii"))
        ids = {keys.key_id(csr.public_key()), keys.key_id(keys.load_pem(key_pem).public_key())}
        valid = csr.is_signature_valid
    except (ValueError, TypeError, UnsupportedAlgorithm) as exc:
        return f"the CSR or its key is unreadable ({type(exc).__name__})"
    if not valid:
        return "the CSR's signature does not verify"
    if ids != {record.key_id}:
        return "the CSR, its sealed key and the record name different keys"
    return csr


class RequestSync:
    """Receives and withdraws the fleet's requests on the worker."""

    def __init__(self, node: FleetNode) -> None:
        self.node = node
        self.refused: set[str] = set()  # key ids of requests refused here (said once)

    def receive(self, certified: set[str]) -> None:
        """Record the requests sealed to this gateway that it lacks; ``certified``: key
        ids with a certificate in the fleet (fulfilled: the certificate comes instead)."""
        node = self.node
        inv = node.ctx.inventory
        sealed = node.view.sealed(node.reject)
        for key_id, env in sorted(node.view.requests(node.reject).items()):
            if key_id in certified or key_id in self.refused or inv.key_pem_for(key_id):
                continue  # fulfilled, refused, or here already (made here, or received)
            box = sealed.get((key_id, node.me))
            if box is None:
                continue  # not (yet) sealed to this gateway: unapproved, or on its way
            assert isinstance(box.record, SealedKey)
            try:
                key_pem = node.key.open(box.record)
            except SealError as exc:
                self._refuse(env, str(exc))
                continue
            self._record(env, key_pem)
            del key_pem

    def _record(self, env: Envelope, key_pem: bytes) -> None:
        node = self.node
        inv = node.ctx.inventory
        record = env.record
        assert isinstance(record, Request)
        csr = opened(record, key_pem)
        if isinstance(csr, str):
            self._refuse(env, csr)
            return
        # Checked with RequestFields' rules when the record was decoded.
        fields = RequestFields.from_mapping(json.loads(record.fields)) if record.fields else None
        wanted = entry_name(f"{record.name}.csr")
        name = inv.free_name(wanted)
        old = inv.entry_by_sha256(record.renews) if record.renews else None
        csr_pem = record.csr_pem.encode("ascii")
        path = csr_path(node.ctx.config.outbox, name)
        atomic_write(path, csr_pem, mode=0o644)  # before the entry, as `certdrop csr` does
        info = keys.describe(keys.load_pem(key_pem))
        with inv.transaction():
            inv.put_entry(
                {
                    "name": name,
                    "status": "requested",
                    "key_id": record.key_id,
                    "key_pem": key_pem,
                    "csr_pem": csr_pem,
                    "request": None if fields is None else fields.to_mapping(),
                    "subject": describe_name(csr.subject),
                    "sans": [] if fields is None else list(fields.sans),
                    "key_type": info.type,
                    "key_bits": info.bits,
                    "renews": old.name if old is not None else None,
                    "created": iso(utc_now()),
                }
            )
            tables.forget(inv, "request", record.key_id)  # its maker published it
        node.ctx.log.info(
            "fleet.request_received",
            name=name,
            origin=env.by,
            csr=str(path),
            **({"wanted": wanted} if name != wanted else {}),
        )
        node.jobs.changed()

    def _refuse(self, env: Envelope, reason: str) -> None:
        record = env.record
        assert isinstance(record, Request)
        self.refused.add(record.key_id)
        self.node.ctx.log.warning(
            "fleet.request_refused", name=record.name, origin=env.by, reason=reason
        )

    def withdraw(self, certified: set[str]) -> None:
        """Requests deleted in the fleet: delete the copy here (still a request, not
        fulfilled) and this gateway's sealed copy of its key."""
        node = self.node
        view = node.view
        if not view.withdrawn:
            return
        inv = node.ctx.inventory
        sealed = view.sealed(node.reject)
        for key_id in sorted(view.withdrawn):
            if key_id in certified:
                continue  # its certificate holds the key now
            entry = inv.request_for_key(key_id)
            if entry is not None:
                with edits.erasing(inv):
                    edits.delete(inv, entry.name)
                    tables.forget(inv, "delete", f"{Request.BUCKET}/req.{key_id}")
                path = csr_path(node.ctx.config.outbox, entry.name)
                with contextlib.suppress(FileNotFoundError):
                    os.unlink(path)
                node.ctx.log.info("fleet.request_withdrawn", name=entry.name)
                node.jobs.changed()
            if (key_id, node.me) in sealed:
                node.publisher.remove(SealedKey.BUCKET, f"{key_id}.{node.me}")
        view.withdrawn.clear()
