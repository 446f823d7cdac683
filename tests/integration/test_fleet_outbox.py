"""The fleet outbox in the real inventory: a change and its outbox row commit together,
a rolled-back change leaves none, and a single gateway queues nothing."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from certdrop import config as configuration
from certdrop.daemon import state
from certdrop.store import fleet as tables
from support.daemon import drop
from support.fleet import INTERMEDIATE, ROOT, bundle, leaf


def open_gateway(tmp_path: Path, fleet: bool) -> tuple[state.Context, object]:
    (tmp_path / "roots.pem").write_bytes(ROOT.pem)
    text = 'inbox = "inbox"\nstate = "state"\n[trust]\nca_bundle = "roots.pem"\n'
    if fleet:
        text += '[fleet]\nservers = ["nats://127.0.0.1:1"]\ngateway = "gw-a"\n'
    (tmp_path / "certdrop.toml").write_text(text)
    config = configuration.load(tmp_path / "certdrop.toml", tmp_path)
    state.prepare_folders(config)
    return state.open_context(config)


def test_an_accepted_drop_and_its_outbox_row_commit_together(tmp_path: Path) -> None:
    """A drop recorded in fleet mode leaves exactly its certificate in the outbox; a
    rejected drop leaves nothing."""
    ctx, sink = open_gateway(tmp_path, fleet=True)
    try:
        cert = leaf(40, "a.fleet.test")
        drop(ctx.config.inbox, "a.pem", bundle(cert))
        assert ctx.intake.process("a.pem").result == "accepted"
        drop(ctx.config.inbox, "bad.pem", b"not a certificate")
        assert ctx.intake.process("bad.pem").result == "rejected"
        rows = tables.pending(ctx.inventory)
        assert [(r.kind, r.ref) for r in rows] == [("certificate", cert.sha256)]
    finally:
        ctx.inventory.close()
        sink.close()  # type: ignore[attr-defined]


def test_a_changed_service_replaces_its_row_with_a_newer_one(tmp_path: Path) -> None:
    """Each service change queues the service once; a later change gets a new id, so a
    publish of the older state that finishes late removes nothing."""
    ctx, sink = open_gateway(tmp_path, fleet=True)
    try:
        with ctx.inventory.transaction():
            ctx.inventory.set_desired("web", "a", "deploying", "2026-01-01T00:00:00Z")
        first = tables.pending(ctx.inventory)
        with ctx.inventory.transaction():
            ctx.inventory.set_service_state("web", "ok", "proven", "2026-01-01T00:00:01Z", "ab")
        second = tables.pending(ctx.inventory)
        assert [(r.kind, r.ref) for r in first] == [("service", "web")]
        assert [(r.kind, r.ref) for r in second] == [("service", "web")]
        assert second[0].id > first[0].id
        with ctx.inventory.transaction():
            tables.done(ctx.inventory, [first[0].id])  # the late publish of the old state
        assert tables.pending(ctx.inventory) == second
    finally:
        ctx.inventory.close()
        sink.close()  # type: ignore[attr-defined]


def test_a_rolled_back_change_leaves_no_outbox_row(tmp_path: Path) -> None:
    """When the transaction of a change fails, its outbox row goes with it."""
    ctx, sink = open_gateway(tmp_path, fleet=True)
    try:
        with pytest.raises(RuntimeError), ctx.inventory.transaction():
            ctx.inventory.set_desired("web", "a", "deploying", "2026-01-01T00:00:00Z")
            raise RuntimeError("crash in the middle")
        assert tables.pending(ctx.inventory) == []
    finally:
        ctx.inventory.close()
        sink.close()  # type: ignore[attr-defined]


def test_a_request_is_queued_made_or_deleted_and_its_certificate_replaces_it(tmp_path: Path) -> None:
    """`csr` queues the request (built with its CSR and fields, never its key); the CA's
    answer dropped here queues the certificate and no deletion; deleting another request
    queues the deletion of its record."""
    from certdrop.daemon import manage
    from certdrop.fleet.requests import record_of
    from certdrop.intake.request import create_request
    from certdrop.pki.fields import RequestFields
    from support.fleet import answer

    ctx, sink = open_gateway(tmp_path, fleet=True)
    try:
        fields = RequestFields.from_values(cn="req.fleet.test", org="Ünïcode KK", key_type="ec")
        csr = create_request(ctx.inventory, ctx.log, ctx.config.outbox, "web", fields)
        kid = ctx.inventory.entry("web").key_id  # type: ignore[union-attr]
        assert [(r.kind, r.ref) for r in tables.pending(ctx.inventory)] == [("request", kid)]
        record = record_of(ctx.inventory, kid)
        assert record is not None and record.name == "web" and record.renews is None
        assert record.csr_pem.encode() == csr.read_bytes()
        assert json.loads(record.fields) == fields.to_mapping()
        assert "PRIVATE" not in repr(record)

        drop(ctx.config.inbox, "answer.pem", answer(csr.read_bytes()) + INTERMEDIATE.pem)
        assert ctx.intake.process("answer.pem").result == "accepted"
        web = ctx.inventory.entry("web")
        assert web is not None and web.status == "unused" and web.sha256
        queued = [(r.kind, r.ref) for r in tables.pending(ctx.inventory)]
        assert queued == [("request", kid), ("certificate", web.sha256)]
        assert record_of(ctx.inventory, kid) is None  # fulfilled: nothing left to publish

        other = RequestFields.from_values(cn="gone.fleet.test", key_type="ec")
        create_request(ctx.inventory, ctx.log, ctx.config.outbox, "gone", other)
        gone = ctx.inventory.entry("gone").key_id  # type: ignore[union-attr]
        manage.delete(ctx, "gone")
        queued = [(r.kind, r.ref) for r in tables.pending(ctx.inventory)][2:]
        assert queued == [("request", gone), ("delete", f"certdrop_certs/req.{gone}")]
    finally:
        ctx.inventory.close()
        sink.close()  # type: ignore[attr-defined]


def test_a_deleted_certificate_queues_its_withdrawal_and_a_new_drop_replaces_it(tmp_path: Path) -> None:
    """`delete` of a certificate queues its withdrawal (key id, name, stamped to the ms) in
    the delete's transaction; dropping the very same file again replaces that row with the
    certificate, a newer decision; one a service wants is refused as before."""
    from certdrop.daemon import manage
    from certdrop.errors import UserError
    from certdrop.fleet.rules import decided_ms

    ctx, sink = open_gateway(tmp_path, fleet=True)
    try:
        cert = leaf(42, "w.fleet.test")
        drop(ctx.config.inbox, "w.pem", bundle(cert))
        assert ctx.intake.process("w.pem").result == "accepted"
        kid = ctx.inventory.entry("w").key_id  # type: ignore[union-attr]
        with ctx.inventory.transaction():
            tables.done(ctx.inventory, [r.id for r in tables.pending(ctx.inventory)])  # published
        done = manage.delete(ctx, "w")
        assert done["withdrawn"] is True and "withdrawn from the fleet" in done["detail"]
        [row] = tables.pending(ctx.inventory)
        assert (row.kind, row.ref) == ("withdraw", cert.sha256)
        assert json.loads(row.record or b"") == {"key_id": kid, "name": "w"}
        assert decided_ms(row.queued) is not None and "." in row.queued  # to the ms

        drop(ctx.config.inbox, "w.pem", bundle(cert))
        assert ctx.intake.process("w.pem").result == "accepted"
        assert [(r.kind, r.ref) for r in tables.pending(ctx.inventory)] == [("certificate", cert.sha256)]
        with ctx.inventory.transaction():
            ctx.inventory.set_desired("web", "w", "deploying", "2026-01-01T00:00:00Z")
        with pytest.raises(UserError, match="is assigned to web"):
            manage.delete(ctx, "w")
        assert [r.kind for r in tables.pending(ctx.inventory)] == ["certificate", "service"]
    finally:
        ctx.inventory.close()
        sink.close()  # type: ignore[attr-defined]


def test_a_single_gateway_queues_nothing(tmp_path: Path) -> None:
    """Without [fleet] (even after fleet mode was on) no change is queued."""
    ctx, sink = open_gateway(tmp_path, fleet=True)
    ctx.inventory.close()
    sink.close()  # type: ignore[attr-defined]
    ctx, sink = open_gateway(tmp_path, fleet=False)
    try:
        drop(ctx.config.inbox, "b.pem", leaf(41, "b.fleet.test").pem + INTERMEDIATE.pem + leaf(41, "b.fleet.test").key_pem())
        assert ctx.intake.process("b.pem").result == "accepted"
        assert tables.pending(ctx.inventory) == []
        from certdrop.daemon import manage

        assert manage.delete(ctx, "b")["withdrawn"] is False
        assert tables.pending(ctx.inventory) == []
    finally:
        ctx.inventory.close()
        sink.close()  # type: ignore[attr-defined]


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["fleet", "status"], "has no [fleet] table"),
        (["fleet", "approve", "gw-b"], "has no [fleet] table"),
        (["assign", "x", "gw-b/web"], "GATEWAY/SERVICE needs fleet mode"),
        (["unassign", "*/web"], "GATEWAY/SERVICE needs fleet mode"),
        (["renew", "x", "--take-over"], "this config has no [fleet] table"),
    ],
)
def test_fleet_commands_without_fleet_mode_say_why(tmp_path: Path, args: list[str], message: str) -> None:
    """Fleet commands on a single gateway exit 1 with one line naming the fix, no traceback."""
    (tmp_path / "certdrop.toml").write_text('inbox = "inbox"\nstate = "state"\n')
    done = subprocess.run(
        [sys.executable, "-m", "certdrop", "--config", str(tmp_path / "certdrop.toml"), *args],
        capture_output=True, text=True, timeout=60, env={**os.environ}, check=False,
    )  # fmt: skip
    assert done.returncode == 1 and message in done.stderr and "Traceback" not in done.stderr
