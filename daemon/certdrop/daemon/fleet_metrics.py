"""The fleet's view as Prometheus metrics, added to ``/metrics`` in fleet mode. Pure.

Kept apart from :mod:`certdrop.daemon.metrics` so the fleet adds one function to the page
whatever renders the rest::

    certdrop_fleet_engine_connected                   1 when this gateway reaches NATS
    certdrop_fleet_outbox_records                     changes waiting to be published
    certdrop_fleet_gateway_approved{gateway,state}    1 for the gateway's state
    certdrop_fleet_gateway_last_seen_timestamp_seconds{gateway}
    certdrop_fleet_disagreements{problem}             not_received, not_proven, ...
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import GaugeMetricFamily, Metric

STATES = ("approved", "pending", "revoked")
PROBLEMS = ("not_received", "not_proven", "not_seen", "pending_approval")


def fleet_families(report: Mapping[str, Any]) -> list[Metric]:
    """The metric families of a ``fleet status`` report."""
    connected = GaugeMetricFamily(
        "certdrop_fleet_engine_connected",
        "1 while this gateway is connected to the fleet engine (NATS), else 0.",
        value=float(bool(report.get("engine_connected"))),
    )
    outbox = GaugeMetricFamily(
        "certdrop_fleet_outbox_records",
        "Changes recorded here and not yet published to the fleet.",
        value=float(report.get("outbox", 0)),
    )
    gateways = report.get("gateways", [])
    approved = GaugeMetricFamily(
        "certdrop_fleet_gateway_approved",
        "1 for the state each known gateway is in (approved, pending, revoked), else 0.",
        labels=["gateway", "state"],
    )
    seen = GaugeMetricFamily(
        "certdrop_fleet_gateway_last_seen_timestamp_seconds",
        "Unix time of each gateway's last heartbeat.",
        labels=["gateway"],
    )
    for g in gateways:
        for state in STATES:
            approved.add_metric([str(g["gateway"]), state], float(g["approved"] == state))
        if g.get("last_seen"):
            when = datetime.strptime(g["last_seen"], "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=UTC)
            seen.add_metric([str(g["gateway"])], when.timestamp())
    problems = [d["problem"] for d in report.get("disagreements", [])]
    disagree = GaugeMetricFamily(
        "certdrop_fleet_disagreements",
        "What disagrees across the fleet now, by kind (see certdrop fleet status).",
        labels=["problem"],
    )
    for p in PROBLEMS:
        disagree.add_metric([p], float(problems.count(p)))
    return [connected, outbox, approved, seen, disagree]


class _Families:
    def __init__(self, families: list[Metric]) -> None:
        self.families = families

    def collect(self) -> list[Metric]:
        return self.families


def render_fleet(report: Mapping[str, Any]) -> str:
    """The fleet's families in the text exposition format (as ``/metrics`` shows them)."""
    registry = CollectorRegistry(auto_describe=False)
    registry.register(_Families(fleet_families(report)))
    return generate_latest(registry).decode()
