"""The monitoring kit against a real Prometheus (Debian's 2.42, a private instance on
127.0.0.1 scraping a running daemon every second): every series through its HTTP API,
the shipped alert rules loaded, checked and unit-tested with promtool, one alert firing
for real, and every query of the Grafana dashboard answered by series the daemon exports.
"""

from __future__ import annotations

import datetime as dt
import json
import re
import shutil
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from certdrop import __version__
from certdrop.pki import expiry
from support.daemon import ROOT, RunningDaemon, drop
from support.pkitools import ec_key, hierarchy, issue
from support.process import free_port, need
from support.prometheus import Prometheus, promtool

RULES = ROOT / "deploy" / "prometheus" / "certdrop-rules.yml"
RULE_TESTS = ROOT / "deploy" / "prometheus" / "certdrop-rules.test.yml"
DASHBOARD = ROOT / "deploy" / "grafana" / "certdrop-dashboard.json"
# Series names in PromQL: certdrop's own, the process and platform collectors'.
SERIES = re.compile(r"\b(certdrop_[a-z0-9_]+|process_[a-z0-9_]+|python_[a-z0-9_]+)\b")
GRAFANA_VARIABLES = {"$__rate_interval": "1m", "$__interval": "15s", "$__range": "1h",
                     "$instance": ".*", "${instance}": ".*"}  # fmt: skip


def test_promtool_checks_the_shipped_rules() -> None:
    """`promtool check rules` accepts the shipped rules."""
    code, output = promtool("check", "rules", RULES)
    assert code == 0 and "SUCCESS: 6 rules found" in output, output


def test_promtool_unit_tests_pass_on_the_shipped_rules() -> None:
    """`promtool test rules` passes the shipped rule tests (each alert fires when and
    with the labels and annotations it should, and not before)."""
    code, output = promtool("test", "rules", RULE_TESTS)
    assert code == 0 and "SUCCESS" in output, output


def test_the_rule_tests_catch_a_changed_rule(tmp_path: Path) -> None:
    """The rule tests can fail: with the expiry threshold changed to 1 day, or the
    service-readiness `for:` dropped, they do."""
    for old, new in (("< 14 * 86400", "< 1 * 86400"), ("for: 15m", "for: 0m")):
        text = RULES.read_text()
        assert old in text
        (tmp_path / RULES.name).write_text(text.replace(old, new))
        shutil.copy(RULE_TESTS, tmp_path / RULE_TESTS.name)
        code, output = promtool("test", "rules", tmp_path / RULE_TESTS.name)
        assert code != 0 and "FAILED" in output, (old, output)


# --- a real Prometheus scraping a real daemon -------------------------------------------------


@pytest.fixture(scope="module")
def scraped(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    """A daemon with one service ready and one waiting, drops of every result and a
    trusted certificate whose renewal is due (renewal.command is `false`), scraped by a
    Prometheus with the shipped rules; the renewal fails while Prometheus watches. Shared
    by the tests of this module (a Prometheus takes seconds to start and fill)."""
    need("prometheus")
    tmp_path = tmp_path_factory.mktemp("scraped")
    h = hierarchy("prom.example.test", slot=75, leaf_key=ec_key(476),
                  not_before=dt.datetime.now(dt.UTC) - dt.timedelta(days=70),
                  not_after=dt.datetime.now(dt.UTC) + dt.timedelta(days=20))  # fmt: skip
    (tmp_path / "roots.pem").write_bytes(h.root.pem)
    (tmp_path / "svc").mkdir()
    port = free_port()
    d = RunningDaemon(
        tmp_path,
        f'[metrics]\nlisten = "127.0.0.1:{port}"\n'
        '[trust]\nca_bundle = "roots.pem"\n'
        '[renewal]\ncommand = ["false"]\nretry_base_seconds = 3600\n'
        '[services.web]\nrole = "https"\ncert_file = "svc/c.pem"\nkey_file = "svc/k.pem"\n'
        '[services.mail]\nrole = "smtp-server"\ncombined_file = "svc/mail.pem"\n'
    )
    try:
        d.start()
        yield from _scraped(d, h, port, tmp_path)
    finally:
        d.kill()


def _scraped(d: RunningDaemon, h: Any, port: int, tmp_path: Path) -> Iterator[dict[str, Any]]:
    drop(d.inbox, "good.pem", h.chain_pem + h.leaf.key_pem())
    drop(d.inbox, "lone.key", issue("lone", ec_key(477)).key_pem())
    drop(d.inbox, "junk.pem", b"junk")
    d.wait_for("drop.accepted", file="good.pem")
    d.wait_for("drop.held", file="lone.key")
    rejected = d.wait_for("drop.rejected", file="junk.pem")["code"]
    d.cli("assign", "good", "web")
    with Prometheus(tmp_path / "prometheus", [f"127.0.0.1:{port}"], [RULES]) as prom:
        prom.wait_for('certdrop_service_ready{service="web"} == 1')
        prom.wait_for('certdrop_renewal_failures_total{stage="command"} == 0')
        time.sleep(2)  # a few scrapes of the 0 first, so increase() sees the failure
        d.cli("reload")  # the expiry check runs now: the renewal starts, `false` fails
        d.wait_for("renewal.failed")
        prom.wait_for('certdrop_renewal_failures_total{stage="command"} == 1')
        yield {"prom": prom, "daemon": d, "port": port, "hierarchy": h, "rejected": rejected}


def value(prom: Prometheus, expr: str) -> float:
    (sample,) = prom.query(expr)
    return float(sample["value"][1])


def test_prometheus_scrapes_every_series(scraped: dict[str, Any]) -> None:
    """Through Prometheus' query API: each certificate series with its value, service
    state and readiness, drops by result and code, renewal failures, held pieces, the
    snapshot time, build info, and the process and platform collectors."""
    prom: Prometheus = scraped["prom"]
    leaf = scraped["hierarchy"].leaf.cert
    nb, na = leaf.not_valid_before_utc, leaf.not_valid_after_utc
    cert = '{name="good", status="in_use"}'
    assert value(prom, f"certdrop_certificate_expiration_timestamp_seconds{cert}") == na.timestamp()
    assert value(prom, f"certdrop_certificate_not_before_timestamp_seconds{cert}") == nb.timestamp()
    assert value(prom, f"certdrop_certificate_renewal_timestamp_seconds{cert}") == pytest.approx(
        expiry.renewal_point(nb, na, 0).timestamp()
    )
    assert value(prom, f"certdrop_certificate_renewal_overdue_timestamp_seconds{cert}") == pytest.approx(
        expiry.overdue_point(nb, na, (30, 14, 7, 1), 0).timestamp()
    )
    assert value(prom, f"certdrop_certificate_trusted{cert}") == 1
    assert value(prom, 'certdrop_service_ready{service="web"}') == 1
    assert value(prom, 'certdrop_service_ready{service="mail"}') == 0
    assert value(prom, 'certdrop_service_state{service="web", state="ok"}') == 1
    assert value(prom, 'certdrop_service_state{service="mail", state="pending"}') == 1
    assert value(prom, 'certdrop_drops_total{result="accepted", code=""}') == 1
    assert value(prom, 'certdrop_drops_total{result="held", code=""}') == 1
    assert value(prom, f'certdrop_drops_total{{result="rejected", code="{scraped["rejected"]}"}}') == 1
    assert value(prom, 'certdrop_renewal_failures_total{stage="command"}') == 1
    assert value(prom, 'certdrop_renewal_failures_total{stage="request"}') == 0
    assert value(prom, "certdrop_held_pieces") == 1
    assert abs(value(prom, "certdrop_snapshot_timestamp_seconds") - time.time()) < 60
    assert value(prom, f'certdrop_build_info{{version="{__version__}"}}') == 1
    assert value(prom, "process_resident_memory_bytes") > 1_000_000
    assert value(prom, "process_cpu_seconds_total") > 0
    assert value(prom, 'python_info{implementation="CPython"}') == 1
    (target,) = prom.api("targets")["activeTargets"]
    assert target["health"] == "up" and target["lastError"] == ""
    kinds = {m["metric"]: m["type"] for m in prom.api("targets/metadata", match_target='{job="certdrop"}')}
    assert kinds["certdrop_drops"] == "counter" and kinds["certdrop_build"] == "info"  # OpenMetrics


def test_prometheus_loads_the_rules_and_an_alert_fires(scraped: dict[str, Any]) -> None:
    """The shipped rules load in the real server (health ok), and the renewal failure
    that happened while it watched fires CertdropRenewalFailing."""
    prom: Prometheus = scraped["prom"]
    rules = [r for g in prom.api("rules")["groups"] for r in g["rules"]]
    assert len(rules) == 6 and all(r["health"] == "ok" for r in rules), rules
    deadline = time.monotonic() + 30
    while True:
        alerts = prom.api("alerts")["alerts"]
        firing = [a for a in alerts if a["labels"]["alertname"] == "CertdropRenewalFailing"]
        if firing and firing[0]["state"] == "firing":
            break
        assert time.monotonic() < deadline, alerts
        time.sleep(0.5)
    assert firing[0]["labels"]["stage"] == "command"
    pending = {a["labels"]["alertname"] for a in alerts}
    assert "CertdropServiceNotReady" in pending  # mail: pending for its 15 minutes


def dashboard_queries() -> list[str]:
    """Every PromQL expression in the dashboard: panel targets and query variables."""
    board = json.loads(DASHBOARD.read_text())
    queries = [t["expr"] for p in board["panels"] for t in p.get("targets", [])]
    for variable in board["templating"]["list"]:
        query = variable.get("query")
        if variable["type"] == "query":
            text = query["query"] if isinstance(query, dict) else query
            queries.append(re.sub(r"label_values\((\w+),\s*\w+\)", r"\1", text))
    return queries


def test_every_dashboard_query_names_series_the_daemon_exports(scraped: dict[str, Any]) -> None:
    """Each dashboard query names only series on the daemon's /metrics, and the real
    Prometheus answers each (Grafana's variables filled in) with data."""
    with urllib.request.urlopen(f"http://127.0.0.1:{scraped['port']}/metrics", timeout=5) as resp:
        page = resp.read().decode()
    exported = set(re.findall(r"^([a-zA-Z_:][a-zA-Z0-9_:]*)[{ ]", page, re.M))
    queries = dashboard_queries()
    assert len(queries) >= 8
    prom: Prometheus = scraped["prom"]
    for query in queries:
        names = set(SERIES.findall(query))
        assert names and names <= exported, (query, names - exported)
        expr = query
        for variable, filled in GRAFANA_VARIABLES.items():
            expr = expr.replace(variable, filled)
        assert "$" not in expr, expr
        assert prom.wait_for(expr, timeout=15), expr
