"""The plugin output of `certdrop check`, from a judged report (pure rendering)."""

from __future__ import annotations

from typing import Any

from certdrop.cli.check import perfdata, render


def report(certs: list[dict[str, Any]], findings: list[dict[str, str]], status: str) -> dict[str, Any]:
    return {"status": status, "checked_at": "2026-01-01T00:00:00Z", "certificates": certs,
            "preflight": [{"check": "config", "level": "ok", "detail": "loads"}, *findings]}  # fmt: skip


def cert(name: str, days: float, level: str) -> dict[str, Any]:
    return {"name": name, "days_left": days, "level": level, "not_after": "2026-01-02T00:00:00Z",
            "threshold_days": None, "renewal": None, "renew_at": "2025-12-01T00:00:00Z"}  # fmt: skip


def test_a_pipe_in_a_name_or_detail_cannot_start_perfdata() -> None:
    """A certificate or message with `|` (names allow it) is shown with `/`: the first
    line has exactly one `|`, the long output none."""
    text = render(
        report([cert("a|b", -2.0, "expired")],
               [{"check": "trust.ca_bundle", "level": "critical", "detail": "x | y"}], "critical"),
        (30, 7),
    )  # fmt: skip
    first, *rest = text.splitlines()
    assert first.count("|") == 1 and not any("|" in line for line in rest)
    assert first.startswith("CERTDROP CRITICAL - trust.ca_bundle: x / y; 1 certificate(s) in use, a/b expired 2.0 days ago |")


def test_the_worst_problem_leads_the_summary() -> None:
    """A CRITICAL finding is named first, before an UNKNOWN and a WARNING, with a count."""
    findings = [{"check": "w", "level": "warning", "detail": "meh"},
                {"check": "u", "level": "unknown", "detail": "cannot tell"},
                {"check": "c", "level": "critical", "detail": "broken"}]  # fmt: skip
    first = render(report([], findings, "critical"), (30,)).splitlines()[0]
    assert first.startswith("CERTDROP CRITICAL - c: broken (+2 more); 0 certificate(s) in use |")


def test_perfdata_without_thresholds_has_no_ranges() -> None:
    """No warn_days: days_left has empty warning and critical fields, still 6 fields."""
    data = report([cert("a", 12.5, "ok"), cert("b", 40.0, "ok")], [], "ok")
    items = perfdata(data, ()).split(" ")
    assert items[0] == "'days_left'=12.5;;;;"
    assert "'checks'=1;;;0;" in items
