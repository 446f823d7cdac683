"""The Prometheus endpoint of a running daemon, scraped over HTTP on 127.0.0.1 and read
with prometheus_client's own parsers (text format and OpenMetrics). A real Prometheus
server scraping it: test_prometheus.py."""

from __future__ import annotations

import gzip
import json
import signal
import socket
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from pathlib import Path

import pytest
from prometheus_client.openmetrics.parser import (
    text_string_to_metric_families as openmetrics_families,
)
from prometheus_client.parser import text_string_to_metric_families

from certdrop import __version__
from certdrop import config as configuration
from certdrop.errors import ConfigError
from support.daemon import RunningDaemon, drop
from support.pkitools import ec_key, hierarchy, issue
from support.process import free_port

OPENMETRICS = "application/openmetrics-text; version=1.0.0,text/plain;version=0.0.4;q=0.5"
SERVICES = (
    '[services.web]\nrole = "https"\ncert_file = "svc/c.pem"\nkey_file = "svc/k.pem"\n'
    '[services.mail]\nrole = "smtp-server"\ncombined_file = "svc/mail.pem"\n'
)


def scrape(
    port: int, path: str = "/metrics", headers: dict[str, str] | None = None
) -> tuple[int, dict[str, str], bytes]:
    request = urllib.request.Request(f"http://127.0.0.1:{port}{path}", headers=headers or {})
    try:
        with urllib.request.urlopen(request, timeout=5) as resp:
            return resp.status, dict(resp.headers), resp.read()
    except urllib.error.HTTPError as err:
        return err.code, dict(err.headers), err.read()


def samples(text: str) -> dict[str, list[tuple[dict[str, str], float]]]:
    """sample name -> [(labels, value)], read by prometheus_client's text parser."""
    found: dict[str, list[tuple[dict[str, str], float]]] = {}
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            found.setdefault(s.name, []).append((dict(s.labels), s.value))
    return found


def started(daemon_factory: Callable[..., RunningDaemon], tmp_path: Path) -> tuple[RunningDaemon, int]:
    (tmp_path / "svc").mkdir()
    port = free_port()
    d = daemon_factory(f'[metrics]\nlisten = "127.0.0.1:{port}"\n' + SERVICES).start()
    assert d.wait_for("metrics.started")["listen"] == f"127.0.0.1:{port}"
    return d, port


def test_metrics_serve_certificates_drops_services_and_held_pieces(
    daemon_factory: Callable[..., RunningDaemon], tmp_path: Path
) -> None:
    """/metrics shows each certificate's dates, renewal point and trust, the drop results
    by rejection code, each service's state and readiness, the held pieces and the build,
    in the text format, with hostile label values intact; other paths are 404."""
    d, port = started(daemon_factory, tmp_path)
    h = hierarchy("metrics.example.test", slot=70, leaf_key=ec_key(470))
    drop(d.inbox, "good.pem", h.chain_pem + h.leaf.key_pem())
    evil = issue('quo"te\\back\nslash', ec_key(471))
    drop(d.inbox, "evil.pem", evil.pem + evil.key_pem())
    drop(d.inbox, "lone.key", issue("lone", ec_key(472)).key_pem())
    drop(d.inbox, "junk.pem", b"junk")
    for name, event in (("good.pem", "drop.accepted"), ("evil.pem", "drop.accepted"),
                        ("lone.key", "drop.held"), ("junk.pem", "drop.rejected")):  # fmt: skip
        d.wait_for(event, file=name)
    code = d.wait_for("drop.rejected", file="junk.pem")["code"]
    d.cli("assign", "good", "web")

    deadline = time.monotonic() + 10
    while True:  # the numbers follow status.json, at most SNAPSHOT_MAX_DELAY behind
        status, headers, body = scrape(port)
        found = samples(body.decode()) if status == 200 else {}
        ready = {s[0]["service"]: s[1] for s in found.get("certdrop_service_ready", [])}
        if ready.get("web") == 1 and len(found.get("certdrop_drops_total", [])) == 3:
            break
        assert time.monotonic() < deadline, (status, body[-2000:])
        time.sleep(0.1)
    assert headers["Content-Type"] == "text/plain; version=0.0.4; charset=utf-8"
    drops = {(s[0]["result"], s[0]["code"]): s[1] for s in found["certdrop_drops_total"]}
    assert drops == {("accepted", ""): 2, ("held", ""): 1, ("rejected", code): 1}
    assert ready == {"web": 1.0, "mail": 0.0}
    states = {(s[0]["service"], s[0]["state"]): s[1] for s in found["certdrop_service_state"]}
    assert states == {("web", "ok"): 1, ("web", "pending"): 0, ("web", "failed"): 0,
                      ("mail", "ok"): 0, ("mail", "pending"): 1, ("mail", "failed"): 0}  # fmt: skip

    status_json = json.loads(d.cli("status", "--json").stdout)
    subjects = {c["name"]: c["subject"] for c in status_json["certificates"]}
    issuers = {c["name"]: c["issuer"] for c in status_json["certificates"]}
    expiry = {s[0]["name"]: s for s in found["certdrop_certificate_expiration_timestamp_seconds"]}
    assert set(expiry) == {"good", "evil"}
    assert expiry["good"][0] == {"name": "good", "subject": subjects["good"],
                                 "issuer": issuers["good"], "status": "in_use"}  # fmt: skip
    assert expiry["good"][1] == h.leaf.cert.not_valid_after_utc.timestamp()
    assert expiry["evil"][0]["subject"] == subjects["evil"] and '\\"' in subjects["evil"]
    not_before = {s[0]["name"]: s[1] for s in found["certdrop_certificate_not_before_timestamp_seconds"]}
    assert not_before["good"] == h.leaf.cert.not_valid_before_utc.timestamp()
    lifetime = expiry["good"][1] - not_before["good"]
    renewal = {s[0]["name"]: s[1] for s in found["certdrop_certificate_renewal_timestamp_seconds"]}
    assert renewal["good"] == pytest.approx(expiry["good"][1] - lifetime / 3)
    assert {s[0]["name"] for s in found["certdrop_certificate_renewal_overdue_timestamp_seconds"]} == {"good", "evil"}
    trusted = {s[0]["name"]: s[1] for s in found["certdrop_certificate_trusted"]}
    assert trusted == {"good": 0.0, "evil": 0.0}  # no ca_bundle holds their roots
    failures = {s[0]["stage"]: s[1] for s in found["certdrop_renewal_failures_total"]}
    assert failures == {"request": 0, "command": 0, "deploy": 0}
    assert found["certdrop_held_pieces"] == [({}, 1.0)]
    assert found["certdrop_build_info"] == [({"version": __version__}, 1.0)]
    assert abs(found["certdrop_snapshot_timestamp_seconds"][0][1] - time.time()) < 30
    assert found["process_resident_memory_bytes"][0][1] > 1_000_000
    assert found["python_info"][0][0]["implementation"] == "CPython"
    assert scrape(port, "/")[0] == 404
    assert scrape(port, "/metrics?x=1")[0] == 200
    assert d.stop() == 0
    with pytest.raises(OSError):
        socket.create_connection(("127.0.0.1", port), timeout=1).close()


def test_openmetrics_and_gzip_are_negotiated(
    daemon_factory: Callable[..., RunningDaemon], tmp_path: Path
) -> None:
    """An Accept header asking for OpenMetrics (as Prometheus sends) gets OpenMetrics, with
    its # EOF and _total counters; Accept-Encoding: gzip gets a gzipped body; no header
    gets the classic text format."""
    d, port = started(daemon_factory, tmp_path)
    drop(d.inbox, "one.pem", b"junk")
    d.wait_for("drop.rejected", file="one.pem")
    deadline = time.monotonic() + 10
    while scrape(port)[0] != 200:
        assert time.monotonic() < deadline
        time.sleep(0.1)
    status, headers, body = scrape(port, headers={"Accept": OPENMETRICS})
    assert status == 200 and headers["Content-Type"].startswith(
        "application/openmetrics-text; version=1.0.0; charset=utf-8"
    )
    text = body.decode()
    assert text.endswith("# EOF\n")
    families = {f.name: f for f in openmetrics_families(text)}
    assert families["certdrop_drops"].type == "counter"
    assert families["certdrop_build"].type == "info"
    assert next(s.name for s in families["certdrop_drops"].samples) == "certdrop_drops_total"

    status, headers, body = scrape(port, headers={"Accept-Encoding": "gzip"})
    assert headers["Content-Encoding"] == "gzip"
    assert "certdrop_drops_total" in samples(gzip.decompress(body).decode())
    assert d.stop() == 0


def test_metrics_follow_a_reload_and_a_busy_port_is_reported_not_fatal(
    daemon_factory: Callable[..., RunningDaemon],
) -> None:
    """Off by default; a reload that sets metrics.listen starts the endpoint, one that
    moves it moves it, and a port already taken logs metrics.failed while drops go on."""
    d = daemon_factory().start()
    base = d.config_path.read_text()

    def reload_with(listen: str) -> None:
        d.config_path.write_text(base + f'[metrics]\nlisten = "{listen}"\n')
        d._seen = len(d.events())
        d.proc.send_signal(signal.SIGHUP)  # type: ignore[union-attr]
        d.wait_for("daemon.reloaded")

    assert "metrics.started" not in [e["event"] for e in d.events()]
    first, second = free_port(), free_port()
    reload_with(f"127.0.0.1:{first}")
    d.wait_for("metrics.started", listen=f"127.0.0.1:{first}")
    assert scrape(first)[0] == 200
    reload_with(f"localhost:{second}")
    d.wait_for("metrics.started", listen=f"localhost:{second}")
    assert scrape(second)[0] == 200
    with pytest.raises(OSError):
        socket.create_connection(("127.0.0.1", first), timeout=1).close()

    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        busy = taken.getsockname()[1]
        reload_with(f"127.0.0.1:{busy}")
        failed = d.wait_for("metrics.failed")
        assert f"127.0.0.1:{busy}" in failed["reason"] and failed["detail"]
    h = hierarchy("still.example.test", slot=71, leaf_key=ec_key(473))
    drop(d.inbox, "still.pem", h.chain_pem + h.leaf.key_pem())
    d.wait_for("drop.accepted", file="still.pem")
    assert d.stop() == 0


@pytest.mark.parametrize("listen", ["0.0.0.0:9810", "192.0.2.1:9810", "127.0.0.1", ":9810"])
def test_metrics_listen_off_loopback_is_a_config_error(listen: str) -> None:
    """metrics.listen must be a loopback host:port; anything else is refused by name."""
    with pytest.raises(ConfigError, match=r"metrics\.listen"):
        configuration.from_mapping({"metrics": {"listen": listen}}, base=Path("/tmp"), source="t")
