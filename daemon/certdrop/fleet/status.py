"""``certdrop fleet status``: every gateway, every service of every gateway, and what
disagrees. Pure: the view and the time in, a JSON-ready dict out.

Disagreements:
- ``not_received``: the fleet's decision for a service names a certificate the gateway
  does not have as its desired one (not arrived, refused, or not yet applied);
- ``not_proven``: a service's desired certificate is not the one it was proven to serve;
- ``not_seen``: a gateway's last heartbeat is older than three heartbeat intervals;
- ``pending_approval``: a gateway asked to join and nobody approved it yet.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from certdrop.fleet.crypto import PublicIdentity
from certdrop.fleet.records import Heartbeat, ServiceState
from certdrop.fleet.rules import effective_assignment, stale_gateways
from certdrop.fleet.view import FleetView


def _iso(ms: int) -> str:
    return datetime.fromtimestamp(ms / 1000, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def report(
    view: FleetView,
    me: str,
    now_ms: int,
    heartbeat_seconds: float,
    *,
    connected: bool,
    outbox: int,
) -> dict[str, Any]:
    m = view.membership
    beats = view.heartbeats(None)
    seen = {g: e.at for g, e in beats.items()}
    stale = set(stale_gateways(seen, now_ms, int(heartbeat_seconds * 3000)))
    names = sorted({*m.approved, *m.pending, *m.revoked, *beats})
    gateways = []
    for name in names:
        state = "approved" if name in m.approved else "revoked" if name in m.revoked else "pending"
        key = m.approved.get(name) or m.pending.get(name) or m.revoked.get(name)
        beat = beats.get(name)
        version = beat.record.version if beat and isinstance(beat.record, Heartbeat) else None
        gateways.append(
            {
                "gateway": name,
                "approved": state,
                "approved_by": m.approved_by.get(name),
                "founder": name == m.founder,
                "connected": name in seen and name not in stale,
                "last_seen": _iso(seen[name]) if name in seen else None,
                "version": version,
                "fingerprint": PublicIdentity(key.sign_key).fingerprint if key else None,
                "this": name == me,
            }
        )
    decisions = view.assignments(None)
    withdrawn = view.withdrawals(None)
    services = []
    disagreements: list[dict[str, Any]] = []
    for env in sorted(view.services(None), key=lambda e: e.record.kv_key()):
        s = env.record
        assert isinstance(s, ServiceState)
        won = effective_assignment(s.gateway, s.service, decisions)
        fleet_desired = getattr(won.record, "sha256", None) if won is not None else None
        services.append(
            {
                "gateway": s.gateway,
                "service": s.service,
                "role": s.role,
                "desired": s.desired,
                "fleet_desired": fleet_desired,
                "proven": s.proven,
                "state": s.state,
                "detail": s.detail,
                "updated": _iso(env.at),
            }
        )
        # A withdrawn certificate kept for this service, or named by the fleet's decision.
        gone = withdrawn.get(s.desired or "") or withdrawn.get(fleet_desired or "")
        if gone is not None:
            how = "has" if s.desired == gone.record.kv_key() else "is assigned"
            disagreements.append(
                {
                    "problem": "withdrawn",
                    "gateway": s.gateway,
                    "service": s.service,
                    "detail": f"{gone.by} withdrew {gone.record.kv_key()[:16]}... from the "
                    f"fleet and this service {how} it: assign another certificate",
                }
            )
        elif won is not None and fleet_desired is not None and fleet_desired != s.desired:
            disagreements.append(
                {
                    "problem": "not_received",
                    "gateway": s.gateway,
                    "service": s.service,
                    "detail": f"the fleet decided {fleet_desired[:16]}..., "
                    f"it has {str(s.desired)[:16]}",
                }
            )
        elif s.desired is not None and (s.proven != s.desired or s.state != "ok"):
            disagreements.append(
                {
                    "problem": "not_proven",
                    "gateway": s.gateway,
                    "service": s.service,
                    "detail": f"state {s.state}: {s.detail}",
                }
            )
    for name in sorted(stale & set(m.approved)):
        disagreements.append(
            {"problem": "not_seen", "gateway": name, "detail": f"last seen {_iso(seen[name])}"}
        )
    for name in sorted(m.pending):
        disagreements.append(
            {
                "problem": "pending_approval",
                "gateway": name,
                "detail": f"run `certdrop fleet approve {name}` on an approved gateway",
            }
        )
    return {
        "gateway": me,
        "engine_connected": connected,
        "outbox": outbox,
        "at": _iso(now_ms),
        "gateways": gateways,
        "services": services,
        "disagreements": disagreements,
    }


def render(report: dict[str, Any]) -> str:
    """The text form: three short tables."""
    lines = [
        f"gateway {report['gateway']}: engine "
        f"{'connected' if report['engine_connected'] else 'NOT connected'}, "
        f"{report['outbox']} change(s) waiting to be published",
        "",
        f"{'GATEWAY':<16} {'APPROVED':<9} {'CONNECTED':<9} {'LAST SEEN':<21} VERSION",
    ]
    for g in report["gateways"]:
        lines.append(
            f"{g['gateway'] + (' *' if g['this'] else ''):<16} {g['approved']:<9} "
            f"{'yes' if g['connected'] else 'no':<9} {g['last_seen'] or '-':<21} "
            f"{g['version'] or '-'}"
        )
    lines += ["", f"{'GATEWAY/SERVICE':<32} {'STATE':<8} {'DESIRED':<17} PROVEN"]
    for s in report["services"]:
        lines.append(
            f"{s['gateway'] + '/' + s['service']:<32} {s['state']:<8} "
            f"{(s['desired'] or '-')[:16]:<17} {(s['proven'] or '-')[:16]}"
        )
    lines.append("")
    if not report["disagreements"]:
        lines.append("the fleet agrees")
    for d in report["disagreements"]:
        where = d["gateway"] + (f"/{d['service']}" if d.get("service") else "")
        lines.append(f"{d['problem']}: {where}: {d['detail']}")
    return "\n".join(lines) + "\n"
