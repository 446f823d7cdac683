"""The metrics families from a status snapshot (pure) and the page cache, read back with
prometheus_client's own parsers."""

from __future__ import annotations

from typing import Any

from prometheus_client.openmetrics.parser import text_string_to_metric_families as om_parse
from prometheus_client.parser import text_string_to_metric_families

from certdrop.daemon.metric_families import numbers
from certdrop.daemon.metrics import Pages, SnapshotCollector
from certdrop.pki import expiry

OPENMETRICS = "application/openmetrics-text; version=1.0.0"
CERT = {"name": "a", "subject": 'CN=x"y\\z\nw', "issuer": "CN=i", "status": "in_use",
        "not_before": "2026-01-01T00:00:00Z", "not_after": "2026-04-01T00:00:00Z",
        "sha256": "aa", "trusted": True}  # fmt: skip


def snapshot(**changes: Any) -> dict[str, Any]:
    base: dict[str, Any] = {
        "certificates": [
            CERT,
            {"name": "req", "subject": "CN=r", "issuer": None, "status": "requested",
             "not_before": None, "not_after": None, "sha256": None, "trusted": False},
        ],
        "held": [{"kind": "key"}],
        "services": [
            {"name": "ready", "certificate": "a", "sha256": "aa", "state": "ok"},
            {"name": "stale", "certificate": "a", "sha256": "bb", "state": "ok"},
            {"name": "failed", "certificate": "a", "sha256": "aa", "state": "failed"},
            {"name": "empty", "certificate": None, "sha256": None, "state": "pending"},
        ],
    }  # fmt: skip
    return {**base, **changes}


def page(status: dict[str, Any], drops: dict[tuple[str, str], int] | None = None) -> dict[str, list[tuple[dict[str, str], float]]]:
    collector = SnapshotCollector()
    collector.publish(numbers(status, drops or {}, {"command": 2}, expiry.Policy(), 5.0))
    body, kind = Pages(collector).render("")
    assert kind.startswith("text/plain; version=0.0.4")
    found: dict[str, list[tuple[dict[str, str], float]]] = {}
    for family in text_string_to_metric_families(body.decode()):
        for s in family.samples:
            found.setdefault(s.name, []).append((dict(s.labels), s.value))
    return found


def test_label_values_survive_the_format_and_requests_have_no_dates() -> None:
    """Quotes, backslashes and newlines in a subject come back unchanged through the text
    format; a request (no dates yet) has no certificate series at all."""
    found = page(snapshot())
    (labels, value), = found["certdrop_certificate_expiration_timestamp_seconds"]
    assert labels == {"name": "a", "subject": CERT["subject"], "issuer": "CN=i", "status": "in_use"}
    assert value == 1775001600.0
    assert [s[0]["name"] for s in found["certdrop_certificate_trusted"]] == ["a"]


def test_renewal_points_are_the_ones_the_daemon_acts_on() -> None:
    """The renewal and overdue timestamps are pki.expiry's renewal_point and overdue_point."""
    found = page(snapshot())
    nb, na = 1767225600.0, 1775001600.0
    assert found["certdrop_certificate_renewal_timestamp_seconds"][0][1] == na - (na - nb) / 3
    assert found["certdrop_certificate_renewal_overdue_timestamp_seconds"][0][1] == na - 86400


def test_ready_means_proven_to_serve_the_desired_certificate() -> None:
    """Ready: state ok and the proven fingerprint is the desired certificate's. Serving
    another one, a failed deploy and no certificate at all are not ready."""
    found = page(snapshot())
    ready = {s[0]["service"]: s[1] for s in found["certdrop_service_ready"]}
    assert ready == {"ready": 1.0, "stale": 0.0, "failed": 0.0, "empty": 0.0}


def test_counters_are_there_from_zero() -> None:
    """accepted and held exist at 0 before any drop (rates need the zero); rejections are
    counted by code; renewal failures by stage."""
    found = page(snapshot())
    assert sorted((s[0]["result"], s[1]) for s in found["certdrop_drops_total"]) == [("accepted", 0), ("held", 0)]
    found = page(snapshot(), {("rejected", "too_large"): 3, ("accepted", ""): 1})
    drops = {(s[0]["result"], s[0]["code"]): s[1] for s in found["certdrop_drops_total"]}
    assert drops == {("accepted", ""): 1, ("held", ""): 0, ("rejected", "too_large"): 3}
    assert found["certdrop_renewal_failures_total"] == [({"stage": "command"}, 2.0)]
    assert found["certdrop_held_pieces"] == [({}, 1.0)]
    assert found["certdrop_snapshot_timestamp_seconds"] == [({}, 5.0)]


def test_pages_are_encoded_once_per_snapshot() -> None:
    """The snapshot part of a page is reused until new numbers arrive; an OpenMetrics
    page has one # EOF, at its end, after the process families; nothing is served
    before the first numbers."""
    collector = SnapshotCollector()
    pages = Pages(collector)
    assert not collector.ready
    collector.publish(numbers(snapshot(), {}, {}, expiry.Policy(), 1.0))
    first, kind = pages.render(OPENMETRICS)
    assert kind.startswith("application/openmetrics-text; version=1.0.0")
    text = first.decode()
    assert text.count("# EOF") == 1 and text.endswith("# EOF\n")
    names = {f.name for f in om_parse(text)}
    assert {"certdrop_drops", "certdrop_build", "process_cpu_seconds", "python_info"} <= names
    cached = pages._cache[kind]
    pages.render(OPENMETRICS)
    assert pages._cache[kind] is cached
    collector.publish(numbers(snapshot(held=[]), {}, {}, expiry.Policy(), 2.0))
    again = pages.render(OPENMETRICS)[0].decode()
    assert pages._cache[kind] is not cached
    assert "certdrop_held_pieces 0.0" in again and "certdrop_snapshot_timestamp_seconds 2.0" in again
