"""Expiry watch and renewal hand-off in a real ``certdrop run``: a real ACME CA (pebble),
a real ACME client (lego through deploy/renew/lego-csr.sh), a real nginx, real files.

Certificates in use are imported and assigned before the daemon starts (in-process
intake, then the real ``certdrop assign``); after start-up the tests only watch.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.serialization import Encoding

from certdrop import config as configuration
from certdrop.daemon import state as daemon_state
from certdrop.daemon.worker import Worker
from certdrop.renewal import command as handoff
from certdrop.renewal import expiry_check as watch
from certdrop.services.probe import served_fingerprint
from support.daemon import ROOT, RunningDaemon, drop
from support.nginx import Nginx
from support.pebble import Pebble
from support.pkitools import Issued, ec_key, issue, rsa_key, sign_csr
from support.process import LOOPBACK, free_port, need

pytestmark = pytest.mark.real

CA = issue("Renewal Test Root", ec_key(600), ca=True)
LEGO_SCRIPT = ROOT / "deploy" / "renew" / "lego-csr.sh"


def old_cert(slot: int, cn: str, born: dt.timedelta, left: dt.timedelta) -> Issued:
    """A certificate from the test CA that was issued ``born`` ago and has ``left`` to live."""
    now = dt.datetime.now(dt.UTC)
    return issue(cn, rsa_key(600 + slot), CA, sans=[cn], not_before=now - born, not_after=now + left)


def file_service(name: str, folder: Path) -> str:
    """A service that only gets files (no reload, no probe)."""
    folder.mkdir(parents=True, exist_ok=True)
    return (
        f'[services.{name}]\nrole = "https"\n'
        f'cert_file = "{folder}/fullchain.pem"\nkey_file = "{folder}/key.pem"\n'
    )


def put_in_use(daemon: RunningDaemon, name: str, cert: Issued, *services: str) -> None:
    """Import ``cert`` (with its key) and assign it, with no daemon running."""
    config = configuration.load(daemon.config_path, daemon.root)
    old_umask = os.umask(0o077)
    try:
        daemon_state.prepare_folders(config)
        drop(config.inbox, f"{name}.pem", cert.pem + CA.pem + cert.key_pem())
        with daemon_state.state_lock(config.state):
            ctx, sink = daemon_state.open_context(config)
            try:
                outcome = ctx.intake.process(f"{name}.pem")
            finally:
                ctx.inventory.close()
                sink.close()
    finally:
        os.umask(old_umask)
    assert outcome is not None and outcome.recorded == [name], outcome
    daemon.cli("assign", name, *services)


def names(events: list[dict[str, Any]], prefixes: tuple[str, ...]) -> list[str]:
    return [e["event"] for e in events if e["event"].startswith(prefixes)]


def check(daemon: RunningDaemon) -> tuple[int, dict[str, Any]]:
    done = daemon.cli("check", "--json", check=False)
    assert done.returncode in (0, 1, 2), done.stderr
    return done.returncode, json.loads(done.stdout)


# -- the whole story, for real ------------------------------------------------------------
def test_a_due_certificate_is_renewed_through_pebble_and_served_by_nginx(
    daemon_factory: Callable[..., RunningDaemon], tmp_path: Path
):
    """A 6-minute certificate 2/3 through its life on nginx is renewed by lego at pebble,
    comes back through the inbox and is served, with no action after start-up."""
    need("lego")
    cn = "console.example.test"
    old = old_cert(1, cn, dt.timedelta(minutes=4), dt.timedelta(minutes=2))
    live = tmp_path / "live"
    live.mkdir()
    (live / "fullchain.pem").write_bytes(old.pem + CA.pem)
    (live / "key.pem").write_bytes(old.key_pem())
    port = free_port()
    with Pebble(tmp_path / "pebble") as pebble, Nginx(
        tmp_path / "nginx", [(port, live / "fullchain.pem", live / "key.pem")]
    ) as nginx:
        (tmp_path / "roots.pem").write_bytes(CA.pem + pebble.root_pem())
        config = f"""
[trust]
ca_bundle = "roots.pem"
[expiry]
check_interval_seconds = 1
[renewal]
command = {json.dumps([str(LEGO_SCRIPT), "{csr}", "{name}", "{inbox}"])}
timeout_seconds = 60
[services.console]
role = "https"
cert_file = "{live}/fullchain.pem"
key_file = "{live}/key.pem"
reload = {json.dumps(nginx.reload_argv())}
probe = "{nginx.urls[0]}"
"""
        env = {
            **pebble.lego_env(),
            "LEGO_EMAIL": "pki@example.test",
            "LEGO_SERVER": pebble.directory_url,
            "LEGO_HTTP_PORT": f"{LOOPBACK}:{free_port()}",
        }
        d = daemon_factory(config, env=env)
        put_in_use(d, "console-cert", old, "console")
        assert served_fingerprint(nginx.urls[0]) == old.sha256

        started = time.monotonic()
        d.start()
        done = d.wait_for("renewal.completed", timeout=60)
        seconds = time.monotonic() - started

        status = json.loads(d.cli("status", "--json").stdout)
        by_name = {c["name"]: c for c in status["certificates"]}
        new = by_name[done["request"]]
        assert new["renews"] == "console-cert" and new["status"] == "in_use"
        assert new["services"] == ["console"] and new["trusted"] is True
        assert new["key"] == {"type": "RSA", "bits": 2048}
        assert new["sans"] == [cn]
        assert by_name["console-cert"]["status"] == "unused"
        assert done["services"] == {"console": "ok"} and done["sha256"] == new["sha256"]
        assert served_fingerprint(nginx.urls[0]) == new["sha256"]
        assert new["sha256"] != old.sha256
        code, report = check(d)
        assert code == 0 and [c["name"] for c in report["certificates"]] == [new["name"]]
        assert list((d.state / "outbox").glob("*.csr")) == []  # answered, so not waiting
        d.stop()

    events = d.events()
    events = events[next(i for i, e in enumerate(events) if e["event"] == "daemon.started") :]
    story = names(events, ("daemon.", "csr.", "renewal.", "cert.", "drop.", "service.", "expiry."))
    print(story)
    # The command's result and the drop it made travel to the worker on two paths; the
    # one order that matters is: command ran, certificate arrived, then the deploy.
    racing = {"drop.accepted", "renewal.handed_off", "cert.imported", "cert.matched"}
    ordered = [n for n in story if n not in racing]
    assert ordered == [
        "daemon.started",
        "csr.created",
        "renewal.started",
        "renewal.attempt",
        "service.assigned",
        "service.applied",
        "renewal.completed",
        "daemon.stopped",
    ]
    assert story.index("renewal.attempt") < story.index("cert.imported")
    assert story.index("cert.imported") < story.index("drop.accepted")
    assert story.index("renewal.attempt") < story.index("renewal.handed_off")
    assert max(story.index(n) for n in racing) < story.index("service.assigned")
    handed = next(e for e in events if e["event"] == "renewal.handed_off")
    assert handed["exit_code"] == 0 and "dropped" in handed["output"]
    print(f"\nrenewal: daemon start to renewal.completed {seconds:.2f} s")


# -- failing command, retries, overdue, restart -------------------------------------------
def test_a_failing_command_is_retried_with_growing_delays_until_overdue(
    daemon_factory: Callable[..., RunningDaemon], tmp_path: Path
):
    """A command that fails is retried after 0.5, 1, 2 s, says why without secrets,
    becomes overdue at the last threshold (check exits 2), and a restart keeps its one
    open renewal."""
    lead = 6  # seconds until the last warning threshold (1 day before expiry)
    cert = old_cert(
        2, "mail.example.test", dt.timedelta(days=9), dt.timedelta(days=1, seconds=lead)
    )
    failing = ["sh", "-c", "echo 'acme: error: 429 rateLimited, password=hunter2' >&2; exit 7"]
    config = f"""
[expiry]
check_interval_seconds = 1
warn_days = [1]
[renewal]
command = {json.dumps(failing)}
retry_base_seconds = 0.5
{file_service("mail", tmp_path / "mail")}"""
    d = daemon_factory(config)
    put_in_use(d, "mail-cert", cert, "mail")
    t0 = time.monotonic()
    d.start()
    first = d.wait_for("renewal.failed", attempt=1)
    seen_first = time.monotonic()
    code, report = check(d)
    if time.monotonic() - t0 < lead - 2:
        assert code == 0, report  # failing, but not yet at a threshold: a monitor stays green
    (entry,) = report["certificates"]
    assert entry["renewal"]["state"] in ("pending", "running") and entry["renewal"]["attempts"] >= 1
    d.wait_for("renewal.failed", attempt=3)
    assert time.monotonic() - seen_first >= 1.4  # 0.5 s + 1 s between attempts 1, 2 and 3

    failures = [e for e in d.events() if e["event"] == "renewal.failed"]
    assert [e["retry_in_seconds"] for e in failures[:3]] == [0.5, 1.0, 2.0]
    assert first["exit_code"] == 7 and first["reason"] == "sh exited 7"
    assert "rateLimited" in first["output"] and "hunter2" not in first["output"]
    assert "hunter2" not in d.log_path.read_text()

    overdue = d.wait_for("renewal.overdue", timeout=lead + 5)
    assert overdue["cert"] == "mail-cert" and overdue["request"].startswith("mail-cert-renewal-")
    code, report = check(d)
    assert code == 2 and report["status"] == "critical"
    assert report["certificates"][0]["level"] == "overdue"
    before = len(d.events())
    attempts_before = max(e["attempt"] for e in d.events() if e["event"] == "renewal.failed")
    d.stop()

    d.start()
    d.wait_for("renewal.failed", attempt=attempts_before + 1, timeout=30)
    time.sleep(1.5)  # more checks: none may repeat a once-only event
    d.stop()
    events = d.events()
    assert names(events, ("renewal.overdue",)) == ["renewal.overdue"]
    assert names(events, ("expiry.warning",)) == ["expiry.warning"]
    assert names(events, ("csr.created",)) == ["csr.created"]  # one open renewal, kept
    assert names(events, ("renewal.started",)) == ["renewal.started"]
    assert len(events) > before
    assert check(d)[0] == 2  # also without the daemon


def test_a_command_still_running_at_stop_is_ended_and_run_again_at_start(
    daemon_factory: Callable[..., RunningDaemon], tmp_path: Path
):
    """Stopping the daemon ends a slow command at once; the next start runs it again."""
    cert = old_cert(3, "slow.example.test", dt.timedelta(days=80), dt.timedelta(days=10))
    marker = tmp_path / "runs"
    slow = ["sh", "-c", f"echo run >> {marker}; exec sleep 60"]
    config = f"""
[expiry]
check_interval_seconds = 1
[renewal]
command = {json.dumps(slow)}
timeout_seconds = 120
{file_service("slow", tmp_path / "slow")}"""
    d = daemon_factory(config)
    put_in_use(d, "slow-cert", cert, "slow")
    d.start()
    d.wait_for("renewal.attempt", attempt=1)
    deadline = time.monotonic() + 10
    while not marker.exists() and time.monotonic() < deadline:
        time.sleep(0.02)
    started = time.monotonic()
    assert d.stop() == 0
    assert time.monotonic() - started < 3  # SIGTERM reached the command at once
    d.start()
    d.wait_for("renewal.attempt", attempt=1)
    d.stop()
    assert marker.read_text().count("run") == 2
    assert names(d.events(), ("renewal.failed",)) == []  # interrupted is not failed


# -- a person hands the certificate back ----------------------------------------------------
def test_without_a_command_the_csr_waits_in_the_outbox_for_a_person(
    daemon_factory: Callable[..., RunningDaemon], tmp_path: Path
):
    """With no renewal.command the CSR waits in the outbox; the certificate a person drops
    for it takes over the old one's service (even from a CA certdrop does not trust: it
    answers certdrop's own request) and its key never left certdrop."""
    cert = old_cert(4, "gw.example.test", dt.timedelta(days=70), dt.timedelta(days=20))
    config = f"""
[expiry]
check_interval_seconds = 1
{file_service("gw", tmp_path / "gw")}"""
    d = daemon_factory(config)
    put_in_use(d, "gw-cert", cert, "gw")
    d.start()
    started = d.wait_for("renewal.started")
    assert started["command"] is False and started["request"].startswith("gw-cert-renewal-")
    csr_pem = Path(started["csr"]).read_bytes()
    csr = x509.load_pem_x509_csr(csr_pem)
    assert csr.subject == cert.cert.subject
    assert csr.public_key().public_numbers() != cert.key.public_key().public_numbers()
    assert csr.public_key().key_size == 2048

    issued = sign_csr(csr_pem, CA)
    drop(d.inbox, "from-the-ca.crt", issued.public_bytes(Encoding.PEM))
    done = d.wait_for("renewal.completed")
    assert done["request"] == started["request"] and done["services"] == {"gw": "ok"}
    assert done["trusted"] is False
    served = x509.load_pem_x509_certificates((tmp_path / "gw" / "fullchain.pem").read_bytes())[0]
    assert served == issued
    time.sleep(1.2)  # one more check: the completed renewal stays completed
    d.stop()
    assert names(d.events(), ("renewal.",)) == ["renewal.started", "renewal.completed"]


# -- once-only warnings across a restart -------------------------------------------------------
def test_threshold_warnings_and_expiry_are_emitted_once_across_a_restart(
    daemon_factory: Callable[..., RunningDaemon], tmp_path: Path
):
    """Thresholds already crossed, and an expiry during the run, are each announced once,
    however many checks run and across a restart; `check` announces nothing."""
    # Seconds until the second certificate expires: most runs see it expire while the
    # daemon runs; on a loaded machine it may already have expired at the first check, so
    # the order of the two announcements is not asserted, only that each comes once.
    soon = 8
    aging = old_cert(5, "a.example.test", dt.timedelta(days=70), dt.timedelta(days=20))
    dying = old_cert(6, "b.example.test", dt.timedelta(hours=1), dt.timedelta(seconds=soon))
    config = f"""
[expiry]
check_interval_seconds = 1
warn_days = [30, 25, 14]
renew_before_days = 5
{file_service("a", tmp_path / "a")}{file_service("b", tmp_path / "b")}"""
    d = daemon_factory(config)
    put_in_use(d, "aging", aging, "a")
    put_in_use(d, "dying", dying, "b")
    code, report = check(d)
    assert code == 1 and {c["name"]: c["level"] for c in report["certificates"]} == {
        "dying": "ok",  # an hour-long certificate: no threshold applies to it
        "aging": "warning",
    }
    d.start()
    warning = d.wait_for("expiry.warning", name="aging")
    assert warning["threshold_days"] == 25 and warning["services"] == ["a"]
    d.wait_for("expiry.expired", name="dying", timeout=soon + 10)
    time.sleep(1.5)
    for _ in range(3):
        check(d)
    d.stop()
    d.start()
    time.sleep(1.6)  # more checks after the restart
    d.stop()
    events = d.events()
    assert sorted(
        (e["event"], e["name"]) for e in events if e["event"].startswith("expiry.")
    ) == [("expiry.expired", "dying"), ("expiry.warning", "aging")]
    # The expired one was never renewable in time: its renewal (no command) is overdue once.
    assert [e["cert"] for e in events if e["event"] == "renewal.overdue"] == ["dying"]
    assert check(d)[0] == 2


# -- the scheduler inside a daemon object ---------------------------------------------------
def test_the_scheduler_only_enqueues_and_leaves_no_thread(tmp_path: Path):
    """Started, the watch queues a check at once and one per interval; stopped, its
    threads are gone (the autouse leak check would fail otherwise)."""
    config = configuration.from_mapping(
        {"expiry": {"check_interval_seconds": 1}}, base=tmp_path, source="test"
    )
    daemon_state.prepare_folders(config)
    ctx, sink = daemon_state.open_context(config)
    daemon = Worker(ctx)
    watcher = watch.ExpiryCheck(ctx, daemon)
    try:
        watcher.start()
        first = daemon.queue.get(timeout=1)
        second = daemon.queue.get(timeout=3)
        assert first is not None and second is not None
        assert (first.name, second.name) == ("expiry check", "expiry check")
    finally:
        watcher.stop()
        ctx.inventory.close()
        sink.close()
    assert not [t for t in threading.enumerate() if "APScheduler" in t.name]


# -- the certbot equivalent ---------------------------------------------------------------------
def test_the_certbot_script_gets_the_csr_signed_into_the_inbox(tmp_path: Path):
    """deploy/renew/certbot-csr.sh, run as certdrop runs it, drops pebble's certificate for
    the CSR into the inbox under the request's name, atomically."""
    need("certbot")
    key = rsa_key(610)
    csr = (
        x509.CertificateSigningRequestBuilder()
        .subject_name(x509.Name([x509.NameAttribute(x509.NameOID.COMMON_NAME, "mx.example.test")]))
        .add_extension(x509.SubjectAlternativeName([x509.DNSName("mx.example.test")]), False)
        .sign(key, hashes.SHA256())
    )
    csr_path = tmp_path / "mx-renewal.csr"
    csr_path.write_bytes(csr.public_bytes(Encoding.PEM))
    inbox = tmp_path / "inbox"
    inbox.mkdir()
    with Pebble(tmp_path / "pebble") as pebble:
        env = {
            **os.environ,
            "REQUESTS_CA_BUNDLE": str(pebble.https_ca_file),
            "CERTBOT_SERVER": pebble.directory_url,
            "CERTBOT_HTTP_PORT": str(free_port()),
        }
        done = handoff.run(
            [str(ROOT / "deploy" / "renew" / "certbot-csr.sh"), str(csr_path), "mx-renewal", str(inbox)],
            120,
            env=env,
        )
        assert done.ok, done
        root = x509.load_pem_x509_certificate(pebble.root_pem())
    assert os.listdir(inbox) == ["mx-renewal.pem"]
    chain = x509.load_pem_x509_certificates((inbox / "mx-renewal.pem").read_bytes())
    assert chain[0].public_key().public_numbers() == key.public_key().public_numbers()
    assert chain[-1].issuer == root.subject
