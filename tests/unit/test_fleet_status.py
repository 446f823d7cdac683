"""`fleet status` and the fleet's metrics: what each gateway and service shows, and
what disagrees, computed from signed records."""

from __future__ import annotations

from fleet_helpers import Gw, sha

from certdrop.daemon.fleet_metrics import render_fleet
from certdrop.fleet.kv import Entry
from certdrop.fleet.records import Heartbeat, ServiceState, Withdrawal
from certdrop.fleet.status import render, report
from certdrop.fleet.view import FleetView

A, B, C = Gw("gw-a"), Gw("gw-b"), Gw("gw-c")
NOW = 100_000


def entry(env) -> Entry:  # type: ignore[no-untyped-def]
    return Entry(env.record.BUCKET, env.record.kv_key(), env.encode(), 1)


def build() -> tuple[FleetView, list[tuple[str, str, str, str]]]:
    rejected: list[tuple[str, str, str, str]] = []
    view = FleetView(founder_pin=A.founder())
    records = [
        A.founder(),
        A.approve(B),
        A.identity(),
        B.identity(),
        C.identity(),  # asked to join, never approved
        A.sign(Heartbeat("gw-a", "0.1.0", ("web",)), NOW - 1000),
        B.sign(Heartbeat("gw-b", "0.1.0", ("web",)), NOW - 60_000),  # quiet for a minute
        A.assign("*", "web", "new", 500),
        A.sign(ServiceState("gw-a", "web", "https", sha("new"), sha("new"), "ok", "proven"), NOW),
        B.sign(ServiceState("gw-b", "web", "https", sha("old"), sha("old"), "ok", "proven"), NOW),
        C.sign(ServiceState("gw-c", "web", "https", None, None, "ok", "")),  # not approved
    ]
    view.update([entry(r) for r in records], lambda *r: rejected.append(r))
    return view, rejected


def test_status_lists_gateways_and_services_of_the_fleet() -> None:
    """Every gateway with its approval, and every approved gateway's services."""
    view, _ = build()
    got = report(view, "gw-a", NOW, 10, connected=True, outbox=2)
    states = {g["gateway"]: (g["approved"], g["connected"]) for g in got["gateways"]}
    assert states == {
        "gw-a": ("approved", True),
        "gw-b": ("approved", False),
        "gw-c": ("pending", False),
    }
    assert [(s["gateway"], s["service"]) for s in got["services"]] == [
        ("gw-a", "web"),
        ("gw-b", "web"),
    ]
    assert got["outbox"] == 2 and got["engine_connected"] is True


def test_status_names_what_disagrees() -> None:
    """B has not taken the fleet's decision and was not seen lately; C waits for approval."""
    view, _ = build()
    problems = {
        (d["problem"], d["gateway"])
        for d in report(view, "gw-a", NOW, 10, connected=True, outbox=0)["disagreements"]
    }
    assert problems == {
        ("not_received", "gw-b"),
        ("not_seen", "gw-b"),
        ("pending_approval", "gw-c"),
    }


def test_a_service_not_proven_is_a_disagreement() -> None:
    """A service whose desired certificate is not the one proven is reported."""
    view, rejected = build()
    failing = A.sign(
        ServiceState("gw-a", "web", "https", sha("new"), sha("old"), "failed", "probe"), NOW + 1
    )
    view.update(
        [Entry("certdrop_services", "gw-a.web", failing.encode(), 2)], lambda *r: rejected.append(r)
    )
    problems = [
        d
        for d in report(view, "gw-a", NOW, 10, connected=True, outbox=0)["disagreements"]
        if d["problem"] == "not_proven"
    ]
    assert [d["gateway"] for d in problems] == ["gw-a"]


def test_a_withdrawn_certificate_a_service_has_or_is_assigned_is_named() -> None:
    """B withdrew "new": A's service keeps it, B's is assigned it by the fleet's '*'
    decision; both are named ``withdrawn``, not ``not_received``."""
    view, rejected = build()
    gone = B.sign(Withdrawal(sha("new"), sha("key-new"), "new"), NOW)
    view.update([entry(gone)], lambda *r: rejected.append(r))
    problems = {
        (d["problem"], d["gateway"]): d["detail"]
        for d in report(view, "gw-a", NOW, 10, connected=True, outbox=0)["disagreements"]
        if d["problem"] != "pending_approval"
    }
    assert set(problems) == {("withdrawn", "gw-a"), ("withdrawn", "gw-b"), ("not_seen", "gw-b")}
    assert "gw-b withdrew" in problems[("withdrawn", "gw-a")]
    assert "this service has it" in problems[("withdrawn", "gw-a")]
    assert "this service is assigned it" in problems[("withdrawn", "gw-b")]
    assert rejected == []


def test_the_unapproved_gateways_service_record_is_rejected() -> None:
    """gw-c's service record is left out and reported as rejected (once)."""
    view, rejected = build()
    report(view, "gw-a", NOW, 10, connected=True, outbox=0)
    view.services(lambda *r: rejected.append(r))
    view.services(lambda *r: rejected.append(r))
    assert [(b, k, by) for b, k, by, _ in rejected] == [("certdrop_services", "gw-c.web", "gw-c")]


def test_the_text_form_and_the_metrics_say_the_same() -> None:
    """The table names each gateway and problem; the metrics count them."""
    view, _ = build()
    got = report(view, "gw-a", NOW, 10, connected=False, outbox=3)
    text = render(got)
    assert "engine NOT connected, 3 change(s) waiting" in text
    assert "pending_approval: gw-c" in text and "gw-b/web" in text
    metrics = render_fleet(got)
    assert "certdrop_fleet_engine_connected 0" in metrics
    assert "certdrop_fleet_outbox_records 3" in metrics
    assert 'certdrop_fleet_gateway_approved{gateway="gw-c",state="pending"} 1' in metrics
    assert 'certdrop_fleet_disagreements{problem="not_seen"} 1' in metrics
