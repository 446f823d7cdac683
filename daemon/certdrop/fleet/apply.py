"""What arrives from the fleet, applied here on the worker with this gateway's own rules.

- A certificate whose private key is sealed to this gateway is opened and put through
  intake (:meth:`Intake.take_bytes`): the same parse, pairing, chain and validity checks
  as a drop, recorded in the local inventory or refused (``fleet.certificate_refused``).
  Then every feature hears of it as of a drop (hostname deploy, renewal hand-back).
- A renewed certificate (``renews``) replaces the one it renews on the services here.
- The assignment in force for each local service (:func:`rules.effective_assignment`) is
  deployed with the local reconcile, once per decision; an unassignment (no certificate)
  releases the service as ``certdrop unassign`` does here.
- Requests (CSRs) made on other gateways are recorded here (:mod:`certdrop.fleet.requests`);
  a certificate for a request made here pairs with it by key (no key is sealed to the
  gateway that made it: it has the key).
- Keys this gateway holds (of certificates and of requests) are sealed to approved
  gateways that lack them, when this gateway published the certificate or request, or
  approved the recipient.
"""

from __future__ import annotations

import functools
from typing import TYPE_CHECKING

from certdrop.errors import UserError
from certdrop.fleet.crypto import SealError, seal
from certdrop.fleet.records import Assignment, Certificate, Request, SealedKey
from certdrop.fleet.requests import RequestSync
from certdrop.fleet.rules import effective_assignment, keys_to_seal
from certdrop.fleet.withdrawals import Withdrawals
from certdrop.intake.work import Outcome
from certdrop.services import reconcile, release
from certdrop.store import fleet as tables

if TYPE_CHECKING:
    from certdrop.fleet.node import FleetNode

SEAL_BATCH = 200


class Applier:
    def __init__(self, node: FleetNode) -> None:
        self.node = node
        self.refused: set[str] = set()  # certificates refused here (said once)
        self.requests = RequestSync(node)
        self.withdrawals = Withdrawals(node)

    def changed(self, buckets: set[str]) -> None:
        if buckets & {"certdrop_gateways", "certdrop_certs", "certdrop_keys"}:
            self.certificates()
            if self.node.intake is not None:
                certified = {
                    e.record.key_id
                    for e in self.node.view.certificates(self.node.reject).values()
                    if isinstance(e.record, Certificate)
                }
                self.requests.receive(certified)
                self.requests.withdraw(certified)
                self.withdrawals.apply()
            self.seal()
        if buckets & {"certdrop_gateways", "certdrop_certs", "certdrop_keys", "certdrop_assign"}:
            self.assignments()

    # -- certificates -------------------------------------------------------------------
    def certificates(self) -> None:
        node = self.node
        if node.intake is None:
            return
        inv = node.ctx.inventory
        sealed = node.view.sealed(node.reject)
        for sha256, env in sorted(node.view.certificates(node.reject).items()):
            record = env.record
            assert isinstance(record, Certificate)
            if sha256 in self.refused or inv.entry_by_sha256(sha256) is not None:
                continue
            if tables.queued_about(inv, "withdraw", sha256) is not None:
                continue  # deleted here a moment ago: its withdrawal is on its way
            box = sealed.get((record.key_id, node.me))
            key_pem = b""  # none: a key here already (a request made here) pairs with it
            if box is None and inv.key_pem_for(record.key_id) is None:
                continue  # not (yet) sealed to this gateway: nothing it could deploy
            if box is not None:
                assert isinstance(box.record, SealedKey)
                try:
                    key_pem = node.key.open(box.record)
                except SealError as exc:
                    self._refuse(sha256, record.name, env.by, "sealed_key", str(exc))
                    continue
            bundle = b"".join((record.cert_pem.encode(), record.chain_pem.encode(), key_pem))
            # Its publisher published it; a copy is not a decision: the outbox row the
            # insert queued goes in the same transaction (a crash cannot republish it).
            unqueue = functools.partial(tables.forget, inv, "certificate", sha256)
            outcome = node.intake.take_bytes(bundle, f"{record.name}.pem", also=unqueue)
            del key_pem, bundle
            if outcome.result != "accepted" or not outcome.recorded:
                why = outcome.reason or f"intake {outcome.result} it"
                self._refuse(sha256, record.name, env.by, outcome.code or outcome.result, why)
                continue
            node.ctx.log.info(
                "fleet.certificate_received",
                name=outcome.recorded[0],
                sha256=sha256,
                origin=env.by,
            )
            node.jobs.announce(outcome)
            if record.renews:
                self._replace(record.renews, outcome)

    def _refuse(self, sha256: str, name: str, origin: str, code: str, reason: str) -> None:
        self.refused.add(sha256)
        self.node.ctx.log.warning(
            "fleet.certificate_refused",
            name=name,
            sha256=sha256,
            origin=origin,
            code=code,
            reason=reason,
        )

    def _replace(self, old_sha256: str, outcome: Outcome) -> None:
        """A renewal done on another gateway: its result replaces the old certificate here."""
        ctx = self.node.ctx
        old = ctx.inventory.entry_by_sha256(old_sha256)
        if old is None:
            return
        services = [
            name
            for name, row in ctx.inventory.services().items()
            if row.desired == old.name and name in ctx.config.services
        ]
        if services:
            try:
                reconcile.assign(ctx, outcome.recorded[0], services, by="fleet-renewal")
            except UserError as exc:
                ctx.log.error("fleet.assignment_failed", services=services, reason=str(exc))

    # -- assignments --------------------------------------------------------------------
    def assignments(self) -> None:
        node = self.node
        ctx = node.ctx
        decisions = node.view.assignments(node.reject)
        if not decisions:
            return
        for service in sorted(ctx.config.services):
            won = effective_assignment(node.me, service, decisions)
            if won is None:
                continue
            record = won.record
            assert isinstance(record, Assignment)
            if tables.applied(ctx.inventory, service) == (won.at, won.by):
                continue
            entry = ctx.inventory.entry_by_sha256(record.sha256) if record.sha256 else None
            if record.sha256 and entry is None:
                continue  # not received yet: applied when it arrives

            def mark(
                service: str = service,
                at: int = won.at,
                by: str = won.by,
                sha256: str | None = record.sha256,
            ) -> None:
                tables.set_applied(ctx.inventory, service, at, by, sha256)

            row = ctx.inventory.service(service)
            if record.sha256 is None and (row is None or row.managed):
                # An unassignment (`certdrop unassign '*/SERVICE'` on some gateway).
                release.unassign(ctx, [service], by=f"fleet:{won.by}", in_transaction=mark)
                node.jobs.changed()
                continue
            if entry is None or (row is not None and row.desired == entry.name):
                with ctx.inventory.transaction():
                    mark()
                continue
            try:
                reconcile.assign(
                    ctx, entry.name, [service], by=f"fleet:{won.by}", in_transaction=mark
                )
            except UserError as exc:
                with ctx.inventory.transaction():
                    mark()
                ctx.log.error(
                    "fleet.assignment_failed",
                    service=service,
                    certificate=entry.name,
                    by=won.by,
                    reason=str(exc),
                )
            node.jobs.changed()

    # -- sealing ------------------------------------------------------------------------
    def seal(self) -> None:
        """Seal the keys this gateway holds to approved gateways that lack them."""
        node = self.node
        membership = node.view.membership
        if node.me not in membership.approved:
            return
        certs = node.view.certificates(node.reject)
        sealed = node.view.sealed(node.reject)
        for key_id, recipient in sorted(sealed):
            # A revoked gateway's copies go, also one sealed by a gateway that had not yet
            # seen the revocation when it sealed (watches of two buckets are not ordered).
            if recipient in membership.revoked:
                node.publisher.remove(SealedKey.BUCKET, SealedKey(key_id, recipient, "").kv_key())
        inv = node.ctx.inventory
        mine: dict[str, str] = {}  # key_id -> local entry name
        for sha256, env in certs.items():
            record = env.record
            assert isinstance(record, Certificate)
            entry = inv.entry_by_sha256(sha256)
            if entry is not None:
                mine.setdefault(record.key_id, entry.name)
        requests = node.view.requests(node.reject)
        for key_id in requests:
            wanted = inv.request_for_key(key_id)
            if wanted is not None:
                mine.setdefault(key_id, wanted.name)
        recipients = [g for g in membership.approved if g != node.me]
        todo = keys_to_seal(mine, recipients, sealed)
        # Who seals a key: whoever made its request, else whoever published its certificate.
        origin = {
            e.record.key_id: e.by for e in certs.values() if isinstance(e.record, Certificate)
        }
        holders = set(origin.items())
        for key_id, env in requests.items():
            assert isinstance(env.record, Request)
            origin[key_id] = env.by
            holders.add((key_id, env.by))
        todo = [(k, r) for k, r in todo if (k, r) not in holders]  # its publisher has it
        for key_id, recipient in todo[:SEAL_BATCH]:
            # Sealing is everyone's right but one gateway's job, so N gateways don't all
            # seal the same key: the maker of its request or publisher of its certificate,
            # or the recipient's approver.
            if origin.get(key_id) != node.me and membership.approved_by.get(recipient) != node.me:
                continue
            key_pem = inv.key_pem(mine[key_id])
            if key_pem is None:
                continue
            to = membership.approved[recipient]
            node.publisher.send(node.sign(seal(key_id, key_pem, recipient, to)))
            del key_pem
