"""The fleet's view as Prometheus metrics in fleet mode: one prometheus_client collector
registered beside the snapshot's, fed the ``fleet status`` report by the worker::

    certdrop_fleet_engine_connected                   1 when this gateway reaches NATS
    certdrop_fleet_outbox_records                     changes waiting to be published
    certdrop_fleet_gateway_approved{gateway,state}    1 for the gateway's state
    certdrop_fleet_gateway_last_seen_timestamp_seconds{gateway}
    certdrop_fleet_disagreements{problem}             not_received, not_proven, ...
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from datetime import UTC, datetime
from typing import Any

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import GaugeMetricFamily, Metric

STATES = ("approved", "pending", "revoked")
PROBLEMS = ("not_received", "not_proven", "not_seen", "pending_approval")


def families(report: Mapping[str, Any]) -> Iterator[Metric]:
    """The metric families of a ``fleet status`` report. Pure."""
    yield GaugeMetricFamily(
        "certdrop_fleet_engine_connected",
        "1 while this gateway is connected to the fleet engine (NATS), else 0.",
        value=float(bool(report.get("engine_connected"))),
    )
    yield GaugeMetricFamily(
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
            approved.add_metric([g["gateway"], state], float(g["approved"] == state))
        if g.get("last_seen"):
            when = datetime.strptime(g["last_seen"], "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=UTC)
            seen.add_metric([g["gateway"]], when.timestamp())
    yield approved
    yield seen
    problems = [d["problem"] for d in report.get("disagreements", [])]
    disagree = GaugeMetricFamily(
        "certdrop_fleet_disagreements",
        "What disagrees across the fleet now, by kind (see certdrop fleet status).",
        labels=["problem"],
    )
    for p in PROBLEMS:
        disagree.add_metric([p], float(problems.count(p)))
    yield disagree


class FleetCollector:
    """A collector over the last report the worker handed over (replaced whole)."""

    def __init__(self) -> None:
        self.report: Mapping[str, Any] | None = None

    def collect(self) -> Iterator[Metric]:
        report = self.report
        if report is not None:
            yield from families(report)


def render_fleet(report: Mapping[str, Any]) -> str:
    """The text exposition of a report (for tests and a quick look)."""
    collector = FleetCollector()
    collector.report = report
    registry = CollectorRegistry()
    registry.register(collector)
    return generate_latest(registry).decode()
