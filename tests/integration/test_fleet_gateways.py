"""Fleet mode end to end: a real 3-node NATS JetStream cluster and real certdrop daemons,
each with its own state and its own nginx admin console, on 127.0.0.1."""

from __future__ import annotations

import base64
import itertools
import json
import re
import time
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives import serialization

from certdrop.fleet.engine import Engine, Settings
from certdrop.fleet.records import BUCKETS, Certificate, Withdrawal, decode
from support.daemon import drop
from support.fleet import HOSTNAME, Fleet, Gateway, bundle, fleet_of, leaf, serves, wait
from support.process import need

pytestmark = pytest.mark.real


@pytest.fixture(autouse=True)
def _binaries() -> None:
    need("nats-server")
    need("nginx")


def engine_entries(fleet: Fleet, bucket: str) -> dict[str, bytes]:
    """Every current key and value of ``bucket``, read straight from the engine."""
    engine = Engine(Settings(tuple(fleet.cluster.urls)), BUCKETS)
    engine.start()
    try:
        assert engine.wait_ready(20)
        return {e.key: e.value for e in engine.entries(bucket) if e.value is not None}
    finally:
        engine.close()


def sealed_recipients(fleet: Fleet) -> dict[str, set[str]]:
    """key_id -> the gateways it is sealed to, read straight from the engine."""
    found: dict[str, set[str]] = {}
    for key in engine_entries(fleet, "certdrop_keys"):
        key_id, _, recipient = key.partition(".")
        found.setdefault(key_id, set()).add(recipient)
    return found


def key_id_of(cert_pem: bytes) -> str:
    from cryptography import x509

    from certdrop.pki.keys import cert_key_id

    found = cert_key_id(x509.load_pem_x509_certificate(cert_pem))
    assert found is not None
    return found


def secret_fragments(pem: bytes) -> list[bytes]:
    """Pieces of a private key as they could appear in a file: DER runs, PEM base64 lines."""
    key = serialization.load_pem_private_key(pem, None)
    der = key.private_bytes(
        serialization.Encoding.DER, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    lines = [ln for ln in pem.splitlines() if ln and not ln.startswith(b"-----")]
    chunks = [der[i : i + 24] for i in range(0, len(der) - 24, 24)]
    return [*chunks, *lines[1:], base64.b64encode(der)[8:40]]


def test_one_drop_is_proven_on_every_gateway_even_when_the_stream_leader_dies(tmp_path: Path) -> None:
    """A drop on A is deployed by hostname and proven served on B and C, while the leader
    of the certificates stream is killed right after the drop; the engine's stored bytes
    then hold the certificate but no byte of its private key. Then `delete` withdraws
    certificates from this fleet (see :func:`withdraw_and_drop_again`)."""
    with fleet_of(tmp_path, ["gw-a", "gw-b", "gw-c"]) as (fleet, (a, b, c)):
        cert = leaf(1, HOSTNAME)
        drop(a.daemon.inbox, "console.pem", bundle(cert))
        leader = fleet.cluster.stream_leader("KV_certdrop_certs")
        assert leader is not None
        fleet.cluster.node(leader).kill()
        for gw in (a, b, c):
            wait(f"{gw.name} serves the new certificate", lambda g=gw: serves(g.url, cert.sha256), 60)
        status = c.fleet_status()
        proven = {(s["gateway"], s["service"]): s["proven"] for s in status["services"]}
        wait(
            "every gateway's proof is published",
            lambda: all(
                s["proven"] == cert.sha256 for s in c.fleet_status()["services"]
            ) and len(c.fleet_status()["services"]) == 3,
            30,
        )
        received = b.events("fleet.certificate_received")
        assert [e["origin"] for e in received] == ["gw-a"] and received[0]["sha256"] == cert.sha256
        assert proven  # the status lists services of other gateways, each naming its gateway
        assert {g["gateway"] for g in status["gateways"]} == {"gw-a", "gw-b", "gw-c"}

        fleet.cluster.node(leader).start()
        fleet.cluster.node(leader).wait_healthy()
        stored = fleet.cluster.stored_bytes()
        cert_line = cert.pem.splitlines()[3]
        assert cert_line in stored  # the scan sees what the engine holds...
        leaks = [f for f in secret_fragments(cert.key_pem()) if f in stored]
        assert leaks == []  # ...and no private key is among it
        withdraw_and_drop_again(fleet, a, b, c, cert)


def engine_record(fleet: Fleet, sha256: str) -> object:
    """The record under ``sha256`` in the engine's certificates bucket (None: no key)."""
    raw = engine_entries(fleet, "certdrop_certs").get(sha256)
    return None if raw is None else decode(raw, "certdrop_certs", sha256).record


def heartbeat_twice(fleet: Fleet, *gateways: Gateway) -> None:
    """Wait for two more heartbeats from each gateway: an apply pass follows each one on
    its worker, so at least one whole pass ran after this was called."""
    for _ in range(2):
        before = engine_entries(fleet, "certdrop_gateways")
        wait(
            "a heartbeat from each gateway",
            lambda b=before: all(
                engine_entries(fleet, "certdrop_gateways").get(f"seen.{g.name}") != b.get(f"seen.{g.name}")
                for g in gateways
            ),
            30,
        )


def withdraw_and_drop_again(fleet: Fleet, a: Gateway, b: Gateway, c: Gateway, console: Any) -> None:
    """`delete` of a certificate on B withdraws it: gone from A, B and C (C was stopped
    meanwhile and does not bring it back), its record is a withdrawal and its sealed keys
    leave the engine, and so it stays after more apply passes. A certificate in use on A
    and C is kept there, said once, and shown by `fleet status`. The same file dropped
    again on C afterwards is a new decision and reaches everyone."""
    spare = leaf(8, "spare.fleet.test")  # no service's hostname: deployed nowhere
    kid = key_id_of(spare.pem)
    drop(a.daemon.inbox, "spare.pem", bundle(spare))
    for gw in (b, c):
        wait(f"{gw.name} has the spare", lambda g=gw: g.has(spare.sha256), 60)
    wait("its key is sealed to B and C", lambda: sealed_recipients(fleet).get(kid) == {"gw-b", "gw-c"}, 60)

    c.daemon.stop()  # away during the withdrawal
    done = json.loads(b.cli("delete", "spare", "--json").stdout)
    assert done["withdrawn"] is True and not b.has(spare.sha256)
    wait("A deletes its copy", lambda: not a.has(spare.sha256), 60)
    [event] = a.events("fleet.certificate_withdrawn")
    assert (event["name"], event["sha256"], event["by"]) == ("spare", spare.sha256, "gw-b")
    wait("the engine holds a withdrawal", lambda: isinstance(engine_record(fleet, spare.sha256), Withdrawal), 30)
    wait("and no sealed copy of its key", lambda: kid not in sealed_recipients(fleet), 60)
    c.daemon.start(timeout=60)
    c.daemon.wait_for("fleet.certificate_withdrawn", timeout=60, sha256=spare.sha256, by="gw-b")
    assert not c.has(spare.sha256)
    heartbeat_twice(fleet, a, b, c)
    assert [g.name for g in (a, b, c) if g.has(spare.sha256)] == []  # C brought nothing back
    assert isinstance(engine_record(fleet, spare.sha256), Withdrawal)
    assert kid not in sealed_recipients(fleet)

    b.cli("unassign", "admin-console")  # B's own refusal stands: free it here first
    refused = b.cli("delete", "console", check=False)
    assert refused.returncode == 0, refused.stderr
    for gw in (a, c):
        kept = gw.daemon.wait_for("fleet.certificate_kept", timeout=60, sha256=console.sha256)
        assert (kept["by"], kept["services"]) == ("gw-b", ["admin-console"])
        assert gw.has(console.sha256) and serves(gw.url, console.sha256)
    assert not b.has(console.sha256)
    wait(
        "fleet status says A and C keep a withdrawn certificate",
        lambda: {(d["gateway"], d["problem"]) for d in b.fleet_status()["disagreements"]}
        == {("gw-a", "withdrawn"), ("gw-c", "withdrawn")},
        30,
    )
    heartbeat_twice(fleet, a, c)
    assert [len(g.events("fleet.certificate_kept")) for g in (a, c)] == [1, 1]  # said once

    drop(c.daemon.inbox, "spare.pem", bundle(spare))  # the very same file, a new decision
    for gw in (a, b, c):
        wait(f"{gw.name} has the spare again", lambda g=gw: g.has(spare.sha256), 60)
    assert isinstance(engine_record(fleet, spare.sha256), Certificate)
    wait("its key is sealed to A and B", lambda: sealed_recipients(fleet).get(kid) == {"gw-a", "gw-b"}, 60)
    assert b.events("fleet.certificate_received")[-1]["origin"] == "gw-c"
    heartbeat_twice(fleet, a, b, c)
    assert all(g.has(spare.sha256) for g in (a, b, c))


def test_assign_star_from_b_reaches_all_unapproved_gets_nothing_revoked_no_more(tmp_path: Path) -> None:
    """`assign NAME '*/admin-console'` on B deploys on A, B and C; a gateway nobody
    approved (an approval naming it with an unknown name is refused whole) never has a
    key sealed to it; after `fleet revoke gw-c` a new certificate's
    key is sealed to A and B only and C never receives it."""
    with fleet_of(tmp_path, ["gw-a", "gw-b", "gw-c"]) as (fleet, (a, b, c)):
        stranger = fleet.gateway("gw-d")
        wait("gw-d asks to join", lambda: any(g["gateway"] == "gw-d" for g in a.fleet_status()["gateways"]))
        # (fleet_of approved B and C with one `fleet approve gw-b gw-c`.) All or none: a
        # name that never asked stops the whole approval, so gw-d stays pending.
        refused = a.cli("fleet", "approve", "gw-d", "gw-nobody", check=False)
        assert refused.returncode == 1 and "'gw-nobody' asked to join" in refused.stderr
        assert "Traceback" not in refused.stderr
        other = leaf(2, "other.fleet.test")  # no hostname rule picks this one
        drop(b.daemon.inbox, "other.pem", bundle(other))
        b.daemon.wait_for("drop.accepted", file="other.pem")
        wait("A and C have it", lambda: a.has(other.sha256) and c.has(other.sha256))
        out = b.cli("assign", "other", "*/admin-console")
        assert "admin-console: ok" in out.stdout and "*/admin-console: queued" in out.stdout
        for gw in (a, b, c):
            wait(f"{gw.name} serves it", lambda g=gw: serves(g.url, other.sha256), 60)
        assert not serves(stranger.url, other.sha256)
        assert not stranger.has(other.sha256)
        recipients = sealed_recipients(fleet)
        assert recipients[key_id_of(other.pem)] == {"gw-a", "gw-c"}  # B has it: it is B's
        assert all("gw-d" not in r for r in recipients.values())

        told = a.cli("fleet", "revoke", "gw-c").stdout
        assert "revoked gw-c" in told and "other (" in told and "held 1 key" in told
        wait("C's sealed copies are gone", lambda: all("gw-c" not in r for r in sealed_recipients(fleet).values()))
        newer = leaf(3, HOSTNAME)
        drop(a.daemon.inbox, "newer.pem", bundle(newer))
        wait("B serves the newer one", lambda: serves(b.url, newer.sha256), 60)
        time.sleep(3)  # heartbeats and watches have long delivered by now
        assert sealed_recipients(fleet)[key_id_of(newer.pem)] == {"gw-b"}
        assert not c.has(newer.sha256) and not stranger.has(newer.sha256)
        states = {g["gateway"]: g["approved"] for g in a.fleet_status()["gateways"]}
        assert states == {"gw-a": "approved", "gw-b": "approved", "gw-c": "revoked", "gw-d": "pending"}


def test_two_nats_nodes_down_drops_still_deploy_and_everyone_converges(tmp_path: Path) -> None:
    """With two of three NATS nodes stopped each gateway still accepts and deploys its own
    drops; a gateway stopped meanwhile catches up at start; all converge after."""
    with fleet_of(tmp_path, ["gw-a", "gw-b", "gw-c"]) as (fleet, (a, b, c)):
        c.daemon.stop()
        n2, n3 = fleet.cluster.nodes[1], fleet.cluster.nodes[2]
        n2.stop()
        n3.stop()
        first = leaf(4, HOSTNAME)
        drop(a.daemon.inbox, "first.pem", bundle(first))
        wait("A deploys alone", lambda: serves(a.url, first.sha256), 30)
        second = leaf(5, "second.fleet.test")
        drop(b.daemon.inbox, "second.pem", bundle(second))
        b.daemon.wait_for("drop.accepted", file="second.pem")
        assert not serves(b.url, first.sha256)
        queued = json.loads(a.cli("fleet", "status", "--json").stdout)["outbox"]
        assert queued >= 1  # the certificate and the service state wait in A's outbox

        n2.start()
        n3.start()
        n2.wait_healthy()
        n3.wait_healthy()
        c.daemon.start(timeout=30)
        for gw in (a, b, c):
            wait(f"{gw.name} serves the first", lambda g=gw: serves(g.url, first.sha256), 90)
        wait("everyone has the second", lambda: all(g.has(second.sha256) for g in (a, b, c)), 60)
        wait("A's outbox drained", lambda: a.fleet_status()["outbox"] == 0, 30)


def test_a_renewal_runs_once_and_lands_on_every_gateway(tmp_path: Path) -> None:
    """A certificate due for renewal on three gateways is renewed once, by the gateway
    that took the lease, through lego at pebble; the renewed certificate replaces the old
    one on all three and the fleet's decision names the new one."""
    need("lego")
    import datetime as dt

    from support.daemon import ROOT as CHECKOUT
    from support.fleet import INTERMEDIATE
    from support.pebble import Pebble
    from support.pkitools import ec_key, issue
    from support.process import LOOPBACK, free_port

    now = dt.datetime.now(dt.UTC)
    old = issue(
        "renew.fleet.test", ec_key(760), INTERMEDIATE, sans=["renew.fleet.test"],
        not_before=now - dt.timedelta(minutes=4), not_after=now + dt.timedelta(minutes=2),
    )  # fmt: skip
    lego = CHECKOUT / "deploy" / "renew" / "lego-csr.sh"
    with Pebble(tmp_path / "pebble") as pebble:
        renewal = (
            "[expiry]\ncheck_interval_seconds = 1\n"
            f'[renewal]\ncommand = {json.dumps([str(lego), "{csr}", "{name}", "{inbox}"])}\n'
            "timeout_seconds = 60\n"
        )

        def env() -> dict[str, str]:
            return {
                **pebble.lego_env(),
                "LEGO_EMAIL": "pki@example.test",
                "LEGO_SERVER": pebble.directory_url,
                "LEGO_HTTP_PORT": f"{LOOPBACK}:{free_port()}",
            }

        with Fleet(tmp_path / "fleet") as fleet:
            fleet.roots_pem.write_bytes(fleet.roots_pem.read_bytes() + pebble.root_pem())
            a = fleet.gateway("gw-a", hostname="", extra_config=renewal, env=env())
            a.daemon.wait_for("fleet.founder_pinned", founder="gw-a", timeout=30)
            b = fleet.gateway("gw-b", hostname="", extra_config=renewal, env=env())
            c = fleet.gateway("gw-c", hostname="", extra_config=renewal, env=env())
            fleet.approved(a, "gw-b", "gw-c")
            drop(a.daemon.inbox, "renew.pem", old.pem + INTERMEDIATE.pem + old.key_pem())
            a.daemon.wait_for("drop.accepted", file="renew.pem")
            wait("B and C have it", lambda: b.has(old.sha256) and c.has(old.sha256))
            a.cli("assign", "renew", "*/admin-console")
            gateways = (a, b, c)
            done = None
            deadline = time.monotonic() + 90
            while done is None and time.monotonic() < deadline:
                found = [e for g in gateways for e in g.events("renewal.completed")]
                done = found[0] if found else None
                time.sleep(0.2)
            assert done is not None, "no gateway completed the renewal"
            new_sha = done["sha256"]
            for gw in gateways:
                wait(f"{gw.name} serves the renewed one", lambda g=gw: serves(g.url, new_sha), 60)
            started = [g.name for g in gateways for _ in g.events("renewal.started")]
            assert len(started) == 1, started  # once, on one gateway
            holder = started[0]
            leases = [g.name for g in gateways for _ in g.events("fleet.lease_taken")]
            assert leases == [holder]
            others = [g for g in gateways if g.name != holder]
            for gw in others:
                got = gw.events("fleet.certificate_received")
                assert any(e["sha256"] == new_sha and e["origin"] == holder for e in got)
            wait(
                "the fleet's decision names the renewed certificate",
                lambda: all(
                    s["fleet_desired"] == new_sha and s["proven"] == new_sha
                    for s in b.fleet_status()["services"]
                ),
                30,
            )


def one_line_refusal(done: object) -> str:
    """The stderr of a refused command: exit 1, one line, no traceback."""
    assert done.returncode == 1, done.stdout  # type: ignore[attr-defined]
    err = str(done.stderr)  # type: ignore[attr-defined]
    assert err.count("\n") == 1 and "Traceback" not in err, err
    return err


def test_manual_renew_honours_the_lease_and_unassign_reaches_every_gateway(tmp_path: Path) -> None:
    """`renew` on B while A holds the renewal lease is refused naming A and the lease's
    end, with and without B's daemon; `--take-over` takes the lease and renews. Then
    `unassign '*/admin-console'` on B releases the service on A, B and C (C stopped
    meanwhile catches up at start), leaving the served files as they are. A target naming
    an unknown gateway or service stops `assign` and `unassign` whole."""
    renewal = '[renewal]\ncommand = ["sh", "-c", "exit 0"]\n'  # hands off; the CA is not the point
    with fleet_of(tmp_path, ["gw-a", "gw-b", "gw-c"], extra_config=renewal) as (_, (a, b, c)):
        cert = leaf(7, HOSTNAME)
        drop(a.daemon.inbox, "console.pem", bundle(cert))
        for gw in (a, b, c):
            wait(f"{gw.name} serves it", lambda g=gw: serves(g.url, cert.sha256), 60)

        a.cli("renew", "console")
        a.daemon.wait_for("fleet.lease_taken", cert="console", how="acquire")
        a.daemon.wait_for("renewal.started", cert="console", by="renew")
        err = one_line_refusal(b.cli("renew", "console", check=False))
        assert "gw-a holds the fleet's renewal lease of 'console' until 20" in err
        assert "--take-over" in err and not b.events("renewal.started")

        out = b.cli("renew", "console", "--take-over").stdout
        assert "renewal lease: taken over from gw-a" in out
        b.daemon.wait_for("renewal.started", cert="console", by="renew")
        taken = b.daemon.wait_for("fleet.lease_taken", cert="console", how="override")
        assert taken["previous"] == "gw-a" and taken["level"] == "warning"

        c.daemon.stop()  # no daemon: the command reads the engine itself
        err = one_line_refusal(c.cli("renew", "console", check=False))
        assert "gw-b holds the fleet's renewal lease of 'console'" in err
        out = c.cli("renew", "console", "--take-over").stdout
        assert "taken over from gw-b" in out and "handed_off" in out

        bad = one_line_refusal(b.cli("unassign", "gw-x/admin-console", check=False))
        assert "no gateway named 'gw-x' in the fleet" in bad
        bad = one_line_refusal(b.cli("unassign", "gw-a/smtp-in", check=False))
        assert "gw-a has no service named 'smtp-in' (it has: admin-console)" in bad
        bad = one_line_refusal(b.cli("assign", "console", "gw-a/admin-console", "gw-y/admin-console", check=False))
        assert "no gateway named 'gw-y' in the fleet" in bad  # and gw-a's is not decided either

        out = b.cli("unassign", "*/admin-console").stdout
        assert "admin-console: no longer managed" in out and "*/admin-console: queued" in out
        a.daemon.wait_for("service.unassigned", service="admin-console", by="fleet:gw-b", timeout=30)
        c.daemon.start(timeout=60)
        c.daemon.wait_for("service.unassigned", service="admin-console", by="fleet:gw-b", timeout=30)
        for gw in (a, b, c):
            (service,) = gw.status()["services"]
            assert service["managed"] is False and service["certificate"] is None, gw.name
            assert serves(gw.url, cert.sha256)  # its files are left as they are


def metrics(port: int) -> str:
    import urllib.request

    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as reply:
        return reply.read().decode()


def test_with_the_engine_gone_a_gateway_says_so_once_and_catches_up(tmp_path: Path) -> None:
    """All NATS nodes stopped: A logs fleet.disconnected once (not per retry), still
    deploys its own drop, its metrics say disconnected with changes waiting; it logs
    fleet.connected when the nodes are back and B gets the drop. `fleet status` works
    in-process with B's daemon stopped."""
    from support.process import free_port

    port = free_port()
    with Fleet(tmp_path) as fleet:
        a = fleet.gateway("gw-a", extra_config=f'[metrics]\nlisten = "127.0.0.1:{port}"\n')
        a.daemon.wait_for("fleet.founder_pinned", founder="gw-a", timeout=30)
        b = fleet.gateway("gw-b")
        fleet.approved(a, "gw-b")
        wait("metrics say connected", lambda: "certdrop_fleet_engine_connected 1" in metrics(port))
        for node in fleet.cluster.nodes:
            node.stop()
        a.daemon.wait_for("fleet.disconnected", timeout=30)
        time.sleep(1)
        said = len(a.events("fleet.disconnected"))  # per node that went, while others were up
        cert = leaf(6, HOSTNAME)
        drop(a.daemon.inbox, "alone.pem", bundle(cert))
        wait("A deploys alone", lambda: serves(a.url, cert.sha256), 30)
        # The page is rendered when the worker is done with the drop (after the proof).
        wait("metrics show the changes waiting", lambda: "certdrop_fleet_outbox_records 0" not in metrics(port), 15)
        assert "certdrop_fleet_engine_connected 0" in metrics(port)
        time.sleep(4)  # several reconnect attempts happen meanwhile
        assert len(a.events("fleet.disconnected")) == said  # not once per retry
        for node in fleet.cluster.nodes:
            node.start()
        for node in fleet.cluster.nodes:
            node.wait_healthy()
        a.daemon.wait_for("fleet.connected", timeout=60, since_start=True)
        wait("B serves A's drop", lambda: serves(b.url, cert.sha256), 90)
        wait("metrics say connected again", lambda: "certdrop_fleet_engine_connected 1" in metrics(port), 30)
        changes = [e["event"] for e in a.daemon.events() if e["event"] in ("fleet.connected", "fleet.disconnected")]
        assert changes[0] == "fleet.connected" and changes[-1] == "fleet.connected"
        assert all(x != y for x, y in itertools.pairwise(changes))  # changes only, no repeats
        b.daemon.stop()
        # No daemon: the CLI reads the engine itself. A's proof is one more record of its
        # drained outbox, which may land a moment after the assignment B deployed.
        def a_proven() -> bool:
            report = b.fleet_status()
            assert report["engine_connected"] is True
            assert {g["gateway"] for g in report["gateways"]} == {"gw-a", "gw-b"}
            return any(s["gateway"] == "gw-a" and s["proven"] == cert.sha256 for s in report["services"])

        wait("fleet status shows A's proof", a_proven, 30)


def entry(gw: Gateway, name: str) -> dict[str, Any]:
    """The status of certificate ``name`` on ``gw`` ({} when it has none)."""
    return next((e for e in gw.status()["certificates"] if e["name"] == name), {})


def exported_key(gw: Gateway, name: str) -> bytes:
    """The private key of ``name`` as ``certdrop export`` writes it (PEM)."""
    out = gw.root / f"{name}.export.pem"
    gw.cli("export", name, "--out", str(out), "--no-password")
    found = re.search(rb"-----BEGIN [A-Z ]*PRIVATE KEY-----.*?-----END [A-Z ]*PRIVATE KEY-----\n", out.read_bytes(), re.S)
    out.unlink()
    assert found is not None
    return found.group(0)


def test_a_request_made_on_a_is_answered_on_c_and_fulfilled_everywhere(tmp_path: Path) -> None:
    """`csr` on A is `requested` on B and C (its key sealed to them, not to the
    unapproved D, which sees the record only); the CA's answer dropped on C completes
    C's copy, and A and B end with that one certificate under the request's name, with
    its key; the engine holds no byte of the key. A request open when D is approved
    reaches D; deleting it on C deletes it on A, B and D and takes its sealed copies away."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes

    from certdrop.pki.keys import key_id
    from support.fleet import INTERMEDIATE, answer

    with fleet_of(tmp_path, ["gw-a", "gw-b", "gw-c"], console=False) as (fleet, (a, b, c)):
        stranger = fleet.gateway("gw-d", console=False)
        made = json.loads(a.cli("csr", "web-req", "--cn", "req.fleet.test", "--key-type", "ec", "--json").stdout)
        csr_pem = Path(made["csr"]).read_bytes()
        kid = key_id(x509.load_pem_x509_csr(csr_pem).public_key())
        for gw in (b, c):
            wait(f"{gw.name} has the request", lambda g=gw: entry(g, "web-req").get("status") == "requested", 60)
            assert [e["origin"] for e in gw.events("fleet.request_received")] == ["gw-a"]
            assert (gw.root / "state" / "outbox" / "web-req.csr").read_bytes() == csr_pem
        assert sealed_recipients(fleet)[kid] == {"gw-b", "gw-c"}  # A has it: it is A's
        assert f"req.{kid}" in engine_entries(fleet, "certdrop_certs")
        assert entry(stranger, "web-req") == {}  # the record, but no key to record it with

        cert_pem = answer(csr_pem)
        sha = x509.load_pem_x509_certificate(cert_pem).fingerprint(hashes.SHA256()).hex()
        drop(c.daemon.inbox, "answer.pem", cert_pem + INTERMEDIATE.pem)
        c.daemon.wait_for("drop.accepted", file="answer.pem")
        answered = entry(c, "web-req")
        assert (answered["status"], answered["sha256"]) == ("unused", sha)
        for gw in (a, b):
            wait(f"{gw.name} has the answer", lambda g=gw: entry(g, "web-req").get("sha256") == sha, 60)
        for gw in (a, b, c):
            certificates = gw.status()["certificates"]
            assert [(e["name"], e["status"]) for e in certificates] == [("web-req", "unused")]
            key = serialization.load_pem_private_key(exported_key(gw, "web-req"), None)
            assert key_id(key.public_key()) == kid
        assert not stranger.has(sha)

        stored = fleet.cluster.stored_bytes()
        assert csr_pem.splitlines()[2] in stored  # the scan sees what the engine holds...
        key_pem = exported_key(a, "web-req")
        assert [f for f in secret_fragments(key_pem) if f in stored] == []  # ...no key in it

        b.cli("csr", "gone-req", "--cn", "gone.fleet.test", "--key-type", "ec")
        for gw in (a, c):
            wait(f"{gw.name} has the second request", lambda g=gw: entry(g, "gone-req").get("status") == "requested", 60)
        gone_csr = (b.root / "state" / "outbox" / "gone-req.csr").read_bytes()
        gone = key_id(x509.load_pem_x509_csr(gone_csr).public_key())
        assert sealed_recipients(fleet)[gone] == {"gw-a", "gw-c"}
        fleet.approved(a, "gw-d")  # approved now: the open request's key reaches it
        wait("D has the open request", lambda: entry(stranger, "gone-req").get("status") == "requested", 60)
        c.cli("delete", "gone-req")  # C's copy: deleting it deletes the request everywhere
        for gw in (a, b, stranger):
            wait(f"{gw.name} deletes it", lambda g=gw: entry(g, "gone-req") == {}, 60)
        assert b.events("fleet.request_withdrawn")[0]["name"] == "gone-req"
        wait("its sealed copies go", lambda: gone not in sealed_recipients(fleet), 60)
        assert not (b.root / "state" / "outbox" / "gone-req.csr").exists()
        for gw in (a, b, c, stranger):
            assert gw.events("fleet.request_refused") == gw.events("fleet.certificate_refused") == []
