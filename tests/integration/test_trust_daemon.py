"""Trust verdicts in a running daemon (issue 10): hostname auto-assignment takes only what
path validation trusts, and a changed trust store is judged again on reload."""

from __future__ import annotations

import json
import signal
import sqlite3
import time
from collections.abc import Callable
from pathlib import Path

from cryptography import x509
from cryptography.x509.oid import ExtendedKeyUsageOID as EKU

from support.daemon import RunningDaemon, drop
from support.trustkit import (
    DAY,
    NOW,
    UNKNOWN_OID,
    Cert,
    intermediate,
    key,
    leaf,
    make,
    root,
    usage,
)

OLDER, NEWER = NOW - 20 * DAY, NOW - 5 * DAY


def file_service(name: str, folder: Path, hostname: str) -> str:
    """A service that only gets files (no reload, no probe), assigned by hostname."""
    folder.mkdir(parents=True, exist_ok=True)
    return (
        f'[services.{name}]\nrole = "https"\nhostname = "{hostname}"\n'
        f'cert_file = "{folder}/fullchain.pem"\nkey_file = "{folder}/key.pem"\n'
    )


def bundle(lf: Cert, *chain: Cert) -> bytes:
    return lf.pem + b"".join(c.pem for c in chain) + lf.key_pem()


def settle(d: RunningDaemon, n: int) -> None:
    """The worker is serial: once a later drop is done, every hook of the earlier ran."""
    drop(d.inbox, f"zz-settle-{n}.pem", b"not a certificate")
    d.wait_for("drop.rejected", file=f"zz-settle-{n}.pem")


def status(d: RunningDaemon) -> dict[str, dict[str, object]]:
    data = json.loads(d.cli("status", "--json").stdout)
    return {c["name"]: c for c in data["certificates"]} | {
        f"service:{s['name']}": s for s in data["services"]
    }


# Each defect class: (service, hostname, build(twin?, slot) -> drop bytes, a trust_detail
# fragment). The defect is issued *later* than its twin, so a verifier that accepted it
# would assign it. Twin and defect have CAs of their own (other keys and names): with a
# shared CA key the pool would offer the twin's good CA as an alternate issuer, rightly.
def _ca(twin: bool, slot: int, parent: Cert | None = None, label: str = "CA", **knobs: object) -> Cert:
    name = f"{label} {slot} {'twin' if twin else 'defect'}"
    return intermediate(name, parent or root(), slot=100 + slot, **knobs)


def _leaf(cn: str, ca: Cert, twin: bool, slot: int, **knobs: object) -> Cert:
    return leaf(cn, ca, slot, not_before=OLDER if twin else NEWER, **knobs)


def _nc(twin: bool, slot: int) -> bytes:
    nc = None if twin else x509.NameConstraints([x509.DNSName("other.test")], None)
    ca = _ca(twin, slot, name_constraints=nc)
    return bundle(_leaf("nc.example.test", ca, twin, slot), ca)


def _pathlen(twin: bool, slot: int) -> bytes:
    top = _ca(twin, slot, label="Issuing CA 2", path_length=1 if twin else 0)
    sub = _ca(twin, slot + 50, top, label="Sub CA")
    return bundle(_leaf("pathlen.example.test", sub, twin, slot), sub, top)


def _keycertsign(twin: bool, slot: int) -> bytes:
    ca = _ca(twin, slot, **({} if twin else {"key_usage": usage(crl_sign=True)}))
    return bundle(_leaf("ku.example.test", ca, twin, slot), ca)


def _eku(twin: bool, slot: int) -> bytes:
    ca = _ca(twin, slot)
    eku = [EKU.SERVER_AUTH] if twin else [EKU.CLIENT_AUTH]
    return bundle(_leaf("eku.example.test", ca, twin, slot, eku=eku), ca)


def _critical(twin: bool, slot: int) -> bytes:
    ca = _ca(twin, slot, extra=[(x509.UnrecognizedExtension(UNKNOWN_OID, b"\x05\x00"), not twin)])
    return bundle(_leaf("crit.example.test", ca, twin, slot), ca)


def _ip(twin: bool, slot: int) -> bytes:
    ca = _ca(twin, slot)
    sans = ["10.0.0.7"] if twin else ["dns:10.0.0.7"]
    return bundle(_leaf("10.0.0.7", ca, twin, slot, sans=sans), ca)


def _wildcard(twin: bool, slot: int) -> bytes:
    ca = _ca(twin, slot)
    return bundle(_leaf("mail.co.uk" if twin else "*.co.uk", ca, twin, slot), ca)


CLASSES: list[tuple[str, str, Callable[[bool, int], bytes], str]] = [
    ("nc", "nc.example.test", _nc, "permitting only other.test"),
    ("pathlen", "pathlen.example.test", _pathlen, "has pathLenConstraint 0 but issues CN=Sub CA"),
    ("ku", "ku.example.test", _keycertsign, "keyUsage lacks keyCertSign"),
    ("eku", "eku.example.test", _eku, "is not for serverAuth"),
    ("crit", "crit.example.test", _critical, "critical extension 1.3.6.1.4.1.55738.666.1"),
    ("ip", "10.0.0.7", _ip, "IP address 10.0.0.7 as a DNS name"),
    ("wild", "mail.co.uk", _wildcard, "wildcard *.co.uk over the public suffix co.uk"),
]


def test_hostname_services_take_only_the_valid_twins(
    tmp_path: Path, daemon_factory: Callable[..., RunningDaemon]
) -> None:
    """Of each defect class and its valid twin, a hostname service is given only the twin,
    although the defect is newer; status names the defect's rule in trust_detail."""
    (tmp_path / "roots.pem").write_bytes(root().pem)
    services = "".join(
        file_service(name, tmp_path / "out" / name, host) for name, host, _, _ in CLASSES
    )
    d = daemon_factory(f'[trust]\nca_bundle = "roots.pem"\n{services}').start()
    for i, (name, _, build, _) in enumerate(CLASSES):
        drop(d.inbox, f"{name}-twin.pem", build(True, 40 + 2 * i))
        d.wait_for("service.applied", service=name, certificate=f"{name}-twin")
        drop(d.inbox, f"{name}-defect.pem", build(False, 41 + 2 * i))
        d.wait_for("drop.accepted", file=f"{name}-defect.pem")
    settle(d, 1)
    assigned = [(e["service"], e["certificate"]) for e in d.events() if e["event"] == "service.assigned"]
    assert assigned == [(name, f"{name}-twin") for name, _, _, _ in CLASSES]
    imported = {e["name"]: e for e in d.events() if e["event"] == "cert.imported"}
    shown = status(d)
    for name, _, _, says in CLASSES:
        assert imported[f"{name}-twin"]["trusted"] is True
        assert "trust_detail" not in imported[f"{name}-twin"]
        assert "trust_detail" not in shown[f"{name}-twin"]
        if name == "eku":  # a good clientAuth certificate: trusted, just not for https
            assert imported["eku-defect"]["trusted"] is True
            continue
        assert imported[f"{name}-defect"]["trusted"] is False
        assert says in imported[f"{name}-defect"]["trust_detail"]
        assert shown[f"{name}-defect"]["trusted"] is False
        assert says in str(shown[f"{name}-defect"]["trust_detail"])
    table = d.cli("status").stdout
    assert "Not trusted (6)" in table and "pathLenConstraint 0" in table
    assert d.stop() == 0


def configure(d: RunningDaemon, services: str = "", profile: str = "rfc5280") -> None:
    d.config_path.write_text(
        f'inbox = "inbox"\nstate = "state"\n[trust]\nca_bundle = "roots.pem"\n'
        f'profile = "{profile}"\n{services}'
    )


def reload(d: RunningDaemon, roots: bytes, services: str = "", profile: str = "rfc5280") -> None:
    """Rewrite the bundle and the config, SIGHUP, and wait until the reload's hooks ran."""
    (d.root / "roots.pem").write_bytes(roots)
    configure(d, services, profile)
    before = sum(e["event"] == "daemon.reloaded" for e in d.events())
    assert d.proc is not None
    d.proc.send_signal(signal.SIGHUP)
    deadline = time.monotonic() + 15
    while sum(e["event"] == "daemon.reloaded" for e in d.events()) == before:
        assert time.monotonic() < deadline, "no daemon.reloaded"
        time.sleep(0.02)
    settle(d, len(d.events()))


def flips(d: RunningDaemon, since: int) -> set[tuple[str, bool, bool]]:
    return {
        (e["name"], e["from"], e["to"])
        for e in d.events()[since:]
        if e["event"] == "cert.trust_changed"
    }


def test_a_changed_trust_store_is_judged_again_on_reload(
    tmp_path: Path, daemon_factory: Callable[..., RunningDaemon]
) -> None:
    """Changing ca_bundle (or the profile) and reloading judges every stored certificate
    again: cert.trust_changed for each flip, and the hostname service moves to the
    certificate now trusted, or keeps its own and says why when none is."""
    a, b = root(), root("Other Root", slot=8)
    ca_a, ca_b = intermediate("Issuing CA", a), intermediate("Other CA", b, slot=9)
    host = "re.example.test"
    under_a = leaf(host, ca_a, 50, not_before=OLDER)
    under_b = leaf(host, ca_b, 51, not_before=NEWER)
    (tmp_path / "roots.pem").write_bytes(a.pem)
    web = file_service("web", tmp_path / "web", host)
    d = daemon_factory('[trust]\nca_bundle = "roots.pem"\n' + web).start()
    drop(d.inbox, "b.pem", bundle(under_b, ca_b))
    drop(d.inbox, "a.pem", bundle(under_a, ca_a))
    d.wait_for("service.applied", service="web", certificate="a")
    assert "neither a trusted root" in str(status(d)["b"]["trust_detail"])

    mark = len(d.events())
    reload(d, b"# the same root\n" + a.pem, web)  # judged again (new bytes): no flips
    assert flips(d, mark) == set()

    mark = len(d.events())
    reload(d, b.pem, web)
    assert flips(d, mark) == {("a", True, False), ("b", False, True)}
    d.wait_for("service.applied", service="web", certificate="b")
    changed = {e["name"]: e for e in d.events()[mark:] if e["event"] == "cert.trust_changed"}
    assert "CN=Issuing CA is issued by CN=Trust Root" in changed["a"]["detail"]
    assert changed["b"]["detail"] == "the chain now validates to root CN=Other Root"

    mark = len(d.events())
    reload(d, root("Third Root", slot=10).pem, web)
    assert flips(d, mark) == {("b", True, False)}
    flagged = d.wait_for("service.untrusted", service="web")
    assert flagged["detail"].startswith("b is no longer trusted for re.example.test: ")
    shown = status(d)["service:web"]
    assert shown["certificate"] == "b" and shown["sha256"] is not None
    assert str(shown["detail"]).startswith("b is no longer trusted")
    assert not [e for e in d.events()[mark:] if e["event"] == "service.assigned"]
    assert d.stop() == 0


def test_changing_the_profile_judges_again(
    tmp_path: Path, daemon_factory: Callable[..., RunningDaemon]
) -> None:
    """A leaf without authorityKeyIdentifier is trusted under rfc5280 and, after a reload
    with profile = "webpki", no longer (and back again)."""
    r = root()
    ca = intermediate("Issuing CA", r)
    bare = make("bare.example.test", ca.key, ca, subject_key=key(52), aki=None)
    (tmp_path / "roots.pem").write_bytes(r.pem)
    d = daemon_factory('[trust]\nca_bundle = "roots.pem"\n').start()
    drop(d.inbox, "bare.pem", bundle(bare, ca))
    assert d.wait_for("cert.imported", name="bare")["trusted"] is True
    mark = len(d.events())
    reload(d, r.pem, profile="webpki")
    assert flips(d, mark) == {("bare", True, False)}
    assert "lacks the authorityKeyIdentifier" in str(status(d)["bare"]["trust_detail"])
    mark = len(d.events())
    reload(d, r.pem)
    assert flips(d, mark) == {("bare", False, True)}
    assert d.stop() == 0


def test_an_upgraded_inventory_gets_trust_detail_at_start(
    tmp_path: Path, daemon_factory: Callable[..., RunningDaemon]
) -> None:
    """A database from before issue 10 (no trust_detail column, verdicts of the old
    builder) is migrated and judged at start-up: a pathLen violation stops being trusted."""
    r = root()
    top = intermediate("Issuing CA 2", r, path_length=0)
    sub = intermediate("Sub CA", top, slot=4)
    bad = leaf("old.example.test", sub, 53)
    (tmp_path / "roots.pem").write_bytes(r.pem)
    d = daemon_factory('[trust]\nca_bundle = "roots.pem"\n').start()
    drop(d.inbox, "old.pem", bundle(bad, sub, top))
    d.wait_for("cert.imported", name="old")
    assert d.stop() == 0
    db = sqlite3.connect(d.state / "inventory.sqlite3")
    with db:  # what the hand-written builder recorded, and the old schema
        db.execute("UPDATE certificates SET trusted = 1")
        db.execute("ALTER TABLE certificates DROP COLUMN trust_detail")
        db.execute("DELETE FROM meta")
    db.close()
    d.start()
    changed = d.wait_for("cert.trust_changed", name="old")
    assert changed["from"] is True and changed["to"] is False
    assert "pathLenConstraint 0 but issues CN=Sub CA" in changed["detail"]
    assert d.stop() == 0
