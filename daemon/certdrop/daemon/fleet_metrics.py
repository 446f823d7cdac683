"""The fleet's view as Prometheus metrics, appended to ``/metrics`` in fleet mode. Pure.

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

STATES = ("approved", "pending", "revoked")
PROBLEMS = ("not_received", "not_proven", "not_seen", "pending_approval")


def _label(value: object) -> str:
    return str(value).replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


def render_fleet(report: Mapping[str, Any]) -> str:
    """The exposition text of a ``fleet status`` report."""
    out: list[str] = []

    def family(name: str, help_text: str, samples: list[tuple[str, float]]) -> None:
        out.append(f"# HELP {name} {help_text}")
        out.append(f"# TYPE {name} gauge")
        out.extend(f"{name}{labels} {value:.17g}" for labels, value in samples)

    family(
        "certdrop_fleet_engine_connected",
        "1 while this gateway is connected to the fleet engine (NATS), else 0.",
        [("", float(bool(report.get("engine_connected"))))],
    )
    family(
        "certdrop_fleet_outbox_records",
        "Changes recorded here and not yet published to the fleet.",
        [("", float(report.get("outbox", 0)))],
    )
    gateways = report.get("gateways", [])
    family(
        "certdrop_fleet_gateway_approved",
        "1 for the state each known gateway is in (approved, pending, revoked), else 0.",
        [
            (f'{{gateway="{_label(g["gateway"])}",state="{s}"}}', float(g["approved"] == s))
            for g in gateways
            for s in STATES
        ],
    )
    seen = []
    for g in gateways:
        if g.get("last_seen"):
            when = datetime.strptime(g["last_seen"], "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=UTC)
            seen.append((f'{{gateway="{_label(g["gateway"])}"}}', when.timestamp()))
    family(
        "certdrop_fleet_gateway_last_seen_timestamp_seconds",
        "Unix time of each gateway's last heartbeat.",
        seen,
    )
    problems = [d["problem"] for d in report.get("disagreements", [])]
    family(
        "certdrop_fleet_disagreements",
        "What disagrees across the fleet now, by kind (see certdrop fleet status).",
        [(f'{{problem="{p}"}}', float(problems.count(p))) for p in PROBLEMS],
    )
    return "\n".join(out) + "\n"
