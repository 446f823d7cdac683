"""Certificates withdrawn from the fleet: ``certdrop delete NAME`` on any gateway.

- The local delete queues a ``withdraw`` row by trigger (:mod:`certdrop.store.fleet`), in
  the delete's own transaction, whichever way it ran (daemon or CLI alone); it is
  published as a signed :class:`Withdrawal` under the certificate's key, stamped when the
  delete was made. It is a tombstone, not a plain delete, so a gateway that was away
  sees "withdrawn" and not "never seen", and a certificate record and a withdrawal for
  one fingerprint are ordered by their stamps (:func:`certdrop.fleet.rules.publish_action`).
- Every gateway applies the winning withdrawal once (:func:`rules.withdrawal_action`):
  it deletes its copy (``fleet.certificate_withdrawn``), keeps one a service here has or
  should have (``fleet.certificate_kept``: that service is not broken; delete it here
  when it is free), and leaves alone one it recorded itself after the withdrawal (a new
  drop of the same file, on its way to the engine, where it will win).
- The sealed copies of the certificate's key leave the engine: the withdrawing gateway
  deletes them all, every gateway its own (again at each pass until they are gone).
- The fleet's assignments naming the certificate stay as they are: decisions of record,
  applied again if the very certificate comes back, as for one that arrives late.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from certdrop.fleet.records import Certificate, Envelope, SealedKey, Withdrawal
from certdrop.fleet.rules import decided_ms, withdrawal_action
from certdrop.store import edits
from certdrop.store import fleet as tables
from certdrop.store import renewals as ledger

if TYPE_CHECKING:
    from certdrop.fleet.node import FleetNode


class Withdrawals:
    """Applies the fleet's withdrawals of certificates on the worker."""

    def __init__(self, node: FleetNode) -> None:
        self.node = node

    def apply(self) -> None:
        node = self.node
        withdrawn = node.view.withdrawals(node.reject)
        if not withdrawn:
            return
        live = set(node.view.requests(node.reject)) | {
            e.record.key_id
            for e in node.view.certificates(node.reject).values()
            if isinstance(e.record, Certificate)
        }
        sealed = node.view.sealed(node.reject)
        for sha256, env in sorted(withdrawn.items()):
            record = env.record
            assert isinstance(record, Withdrawal)
            self._apply_one(sha256, env)
            if record.key_id in live:
                continue  # the same key serves a certificate or request still in the fleet
            for key_id, recipient in sorted(sealed):
                if key_id == record.key_id and node.me in (recipient, env.by):
                    node.publisher.remove(SealedKey.BUCKET, f"{key_id}.{recipient}")

    def _apply_one(self, sha256: str, env: Envelope) -> None:
        node = self.node
        at, by = env.stamp
        inv = node.ctx.inventory
        entry = inv.entry_by_sha256(sha256)
        if entry is None or entry.status == "requested":
            if tables.withdrawal_applied(inv, sha256) != (at, by):
                with inv.transaction():
                    tables.set_withdrawal_applied(inv, sha256, at, by)
            return
        waiting = tables.queued_about(inv, "certificate", sha256)
        wanting = ledger.services_of(inv, entry.name)
        renewing = [
            r.cert
            for r in ledger.renewals(inv).values()
            if r.state == "running" and entry.name in (r.cert, r.request)
        ]
        action = withdrawal_action(
            env,
            tables.withdrawal_applied(inv, sha256),
            decided_ms(waiting.queued) if waiting is not None else None,
            bool(wanting or renewing),
        )
        if action in ("applied", "newer"):
            return
        if action == "keep":
            with inv.transaction():
                tables.set_withdrawal_applied(inv, sha256, at, by)
            why = (
                f"{', '.join(wanting)} here should have it"
                if wanting
                else "its renewal.command runs here now"
            )
            node.ctx.log.warning(
                "fleet.certificate_kept",
                name=entry.name,
                sha256=sha256,
                by=by,
                services=wanting,
                detail=f"withdrawn from the fleet by {by}, kept here: {why}; "
                f"assign another certificate, then `certdrop delete` it here",
            )
            return
        with edits.erasing(inv):
            edits.delete(inv, entry.name)
            tables.forget(inv, "withdraw", sha256)  # the fleet's decision, not this gateway's
            tables.set_withdrawal_applied(inv, sha256, at, by)
        node.ctx.log.info("fleet.certificate_withdrawn", name=entry.name, sha256=sha256, by=by)
        node.jobs.changed()
