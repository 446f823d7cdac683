"""Intake of single drops, in process, against real files and a real SQLite inventory."""

from __future__ import annotations

import datetime as dt
import json
import os
from pathlib import Path

import pytest

from certdrop import config as configuration
from certdrop.intake.inbox import is_drop_name
from certdrop.intake.pipeline import Intake
from certdrop.pki.names import entry_name
from certdrop.store.eventlog import open_log
from certdrop.store.inventory import Inventory
from support.pkitools import NOW, hierarchy, issue, openssl_sha1_cert, rsa_key


@pytest.fixture
def make_intake(tmp_path: Path):
    opened = []

    def make(extra: str = "", clock=None) -> Intake:
        (tmp_path / "inbox").mkdir(exist_ok=True)
        (tmp_path / "state").mkdir(exist_ok=True, mode=0o700)
        cfg_path = tmp_path / "certdrop.toml"
        cfg_path.write_text(f'inbox = "inbox"\nstate = "state"\n{extra}')
        config = configuration.load(cfg_path, tmp_path)
        log, sink = open_log(config.status_log, echo=False)
        inv = Inventory(config.state / "inventory.sqlite3")
        kwargs = {"clock": clock} if clock else {}
        intake = Intake(config, inv, log, **kwargs)
        opened.append((inv, sink))
        return intake

    yield make
    for inv, sink in opened:
        inv.close()
        sink.close()


def put(intake: Intake, name: str, data: bytes) -> str:
    (intake.inbox / name).write_bytes(data)
    outcome = intake.process(name)
    assert outcome is not None
    return outcome.result


def events(intake: Intake) -> list[dict]:
    return [json.loads(x) for x in intake.config.status_log.read_text().splitlines()]


def reason(intake: Intake, name: str) -> dict:
    return json.loads((intake.inbox / "rejected" / f"{name}.reason.json").read_text())


def test_names_follow_the_drop_file_name():
    """An entry is named after the whole stem of the drop (Unicode and spaces kept);
    only what a name cannot hold is replaced."""
    assert entry_name("imsva91_certificate.pem") == "imsva91_certificate"
    assert entry_name("本番 証明書.pem") == "本番 証明書"
    assert entry_name("New certificate.pem") == "New certificate"
    assert entry_name("weird name\n.crt") == "weird name"
    assert entry_name("a\x1b[31mb.pem") == "a_[31mb"
    assert entry_name("..") == "certificate"
    assert not is_drop_name(".upload.pem")
    for partial in ("a.part", "a.filepart", "a.tmp", "a~"):
        assert not is_drop_name(partial)


def test_cert_chain_and_pkcs8_key_in_one_drop_become_unused_entry(make_intake):
    """A full drop is recorded as `unused` with a PKCS#1 key and leaf-first bundle."""
    intake = make_intake()
    h = hierarchy(depth=2)
    data = h.leaf.key_pem("pkcs8") + h.intermediates[0].pem + h.leaf.pem + h.intermediates[1].pem
    assert put(intake, "imsva91_certificate.pem", data) == "accepted"
    entry = intake.inventory.entry("imsva91_certificate")
    assert entry is not None and entry.status == "unused" and entry.sha256 == h.leaf.sha256
    assert intake.inventory.key_pem("imsva91_certificate").startswith(b"-----BEGIN RSA PRIVATE KEY")
    assert entry.chain_pem == h.intermediates[1].pem + h.intermediates[0].pem
    assert not (intake.inbox / "imsva91_certificate.pem").exists()


def test_root_in_the_drop_is_left_out_of_the_bundle(make_intake):
    """The self-signed root travels in the drop but not in the stored chain."""
    intake = make_intake()
    h = hierarchy(depth=1)
    put(intake, "c.pem", h.root.pem + h.leaf.pem + h.intermediates[0].pem + h.leaf.key_pem())
    assert intake.inventory.entry("c").chain_pem == h.intermediates[0].pem


@pytest.mark.parametrize("order", ["cert_first", "key_first"])
def test_separate_drops_pair_by_public_key_in_any_order(make_intake, order):
    """Certificate and key in separate drops under unrelated names pair up."""
    intake = make_intake()
    h = hierarchy(slot=3)
    pieces = [("server.crt", h.chain_pem), ("random-name.key", h.leaf.key_pem("pkcs1"))]
    if order == "key_first":
        pieces.reverse()
    assert put(intake, *pieces[0]) == "held"
    assert len(intake.inventory.held()) == 1
    assert put(intake, *pieces[1]) == "accepted"
    assert intake.inventory.entry("server").sha256 == h.leaf.sha256
    assert intake.inventory.held() == []


def test_intermediates_from_an_earlier_drop_complete_a_later_chain(make_intake):
    """Intermediates are pooled and complete later leaf-only drops."""
    intake = make_intake()
    h = hierarchy(depth=2, slot=4)
    assert put(intake, "intermediates.pem", h.intermediates[0].pem + h.intermediates[1].pem) == "accepted"
    put(intake, "leaf.pem", h.leaf.pem + h.leaf.key_pem())
    assert intake.inventory.entry("leaf").chain_pem == h.intermediates[1].pem + h.intermediates[0].pem


def test_ca_bundle_roots_make_a_chain_trusted(make_intake, tmp_path):
    """A chain ending at a root from trust.ca_bundle is marked trusted."""
    h = hierarchy(slot=5)
    (tmp_path / "roots.pem").write_bytes(h.root.pem)
    intake = make_intake('[trust]\nca_bundle = "roots.pem"\n')
    put(intake, "t.pem", h.chain_pem + h.leaf.key_pem())
    assert intake.inventory.entry("t").trusted


def test_same_certificate_twice_is_recognised(make_intake):
    """A second drop of the same certificate is accepted as a duplicate, not a new entry."""
    intake = make_intake()
    h = hierarchy(slot=6)
    put(intake, "one.pem", h.chain_pem + h.leaf.key_pem())
    assert put(intake, "two.pem", h.chain_pem + h.leaf.key_pem()) == "accepted"
    assert [e.name for e in intake.inventory.entries()] == ["one"]
    assert events(intake)[-1]["duplicate_of"] == ["one"]


def test_taken_name_gets_a_numbered_suffix_and_an_event(make_intake):
    """Two different certificates from files of the same name get name and name-2."""
    intake = make_intake()
    for slot in (7, 8):
        h = hierarchy(slot=slot)
        put(intake, "gateway.pem", h.chain_pem + h.leaf.key_pem())
    assert [e.name for e in intake.inventory.entries()] == ["gateway", "gateway-2"]
    renamed = [e for e in events(intake) if e["event"] == "cert.renamed"]
    assert renamed and renamed[0]["name"] == "gateway-2"


def rejected(intake: Intake, name: str, data: bytes) -> dict:
    assert put(intake, name, data) == "rejected"
    assert (intake.inbox / "rejected" / name).exists()
    assert intake.inventory.entries() == []
    return reason(intake, name)


def test_one_cert_one_wrong_key_is_key_mismatch(make_intake):
    """Exactly one certificate and one unrelated key is rejected, not held."""
    intake = make_intake()
    h = hierarchy(slot=9)
    r = rejected(intake, "m.pem", h.chain_pem + issue("other", rsa_key(10)).key_pem())
    assert r["code"] == "key_mismatch" and r["file"] == "m.pem"
    assert set(r) == {"file", "code", "reason", "at"}
    assert intake.inventory.held() == []


@pytest.mark.parametrize(
    ("code", "options"),
    [
        ("expired", {"not_before": NOW - dt.timedelta(days=30), "not_after": NOW - dt.timedelta(days=1)}),
        ("not_yet_valid", {"not_before": NOW + dt.timedelta(days=2), "not_after": NOW + dt.timedelta(days=30)}),
    ],
)
def test_policy_rejections_name_the_problem(make_intake, code, options):
    """Expired, not-yet-valid and SHA-1 certificates are refused with their code."""
    intake = make_intake()
    h = hierarchy(slot=11, **options)
    assert rejected(intake, "p.pem", h.chain_pem + h.leaf.key_pem())["code"] == code


def test_sha1_signature_is_refused(make_intake, tmp_path):
    """A certificate signed with SHA-1 (made by openssl) is refused as weak_signature."""
    intake = make_intake()
    cert, key = openssl_sha1_cert(tmp_path)
    assert rejected(intake, "s.pem", cert + key)["code"] == "weak_signature"


def test_small_rsa_key_is_weak_key(make_intake):
    """An RSA key under 2048 bits is refused."""
    intake = make_intake()
    h = hierarchy(slot=12, leaf_key=rsa_key(12, 1024))
    assert rejected(intake, "w.pem", h.chain_pem + h.leaf.key_pem())["code"] == "weak_key"


def test_wrong_intermediate_is_chain_invalid(make_intake):
    """An intermediate with the right name but another key fails the signature check."""
    intake = make_intake()
    h = hierarchy(slot=13)
    fake = issue("Intermediate 13.0", rsa_key(14), h.root, ca=True)
    assert rejected(intake, "c.pem", h.leaf.pem + fake.pem + h.leaf.key_pem())["code"] == "chain_invalid"


def test_encrypted_key_needs_a_configured_passphrase(make_intake, tmp_path):
    """An encrypted key opens with a passphrase from intake.passphrase_files, else is refused."""
    h = hierarchy(slot=15)
    data = h.chain_pem + h.leaf.key_pem("pkcs8", password=b"s3cret-pass")
    intake = make_intake()
    r = rejected(intake, "e.pem", data)
    assert r["code"] == "encrypted_key_no_passphrase" and "s3cret" not in json.dumps(r)
    (tmp_path / "pw").write_text("wrong\ns3cret-pass\n")
    intake2 = make_intake('[intake]\npassphrase_files = ["pw"]\n')
    assert put(intake2, "e2.pem", data) == "accepted"


def test_oversized_file_is_refused_without_reading(make_intake):
    """A sparse file larger than max_file_bytes is rejected as too_large."""
    intake = make_intake("[intake]\nmax_file_bytes = 4096\n")
    path = intake.inbox / "huge.pem"
    with open(path, "wb") as f:
        f.truncate(10 * 1024**3)  # 10 GiB sparse: reading it would take minutes
    assert intake.process("huge.pem").code == "too_large"


def test_symlink_and_hard_link_are_never_read(make_intake, tmp_path):
    """Links into the rest of the file system are rejected without opening their target."""
    intake = make_intake()
    secret = tmp_path / "outside.pem"
    h = hierarchy(slot=16)
    secret.write_bytes(h.chain_pem + h.leaf.key_pem())
    (intake.inbox / "sym.pem").symlink_to(secret)
    os.link(secret, intake.inbox / "hard.pem")
    assert intake.process("sym.pem").code == "not_regular_file"
    assert intake.process("hard.pem").code == "not_regular_file"
    assert intake.inventory.entries() == []
    assert (intake.inbox / "rejected" / "sym.pem").is_symlink()


def test_unsupported_and_truncated_content(make_intake):
    """Garbage and a PEM cut mid-block get their own codes."""
    intake = make_intake()
    h = hierarchy(slot=17)
    assert rejected(intake, "g.pem", b"hello world\n")["code"] == "unsupported_content"
    assert rejected(intake, "t.pem", h.chain_pem[:300])["code"] == "truncated"


def test_held_pieces_survive_a_new_intake_instance(make_intake):
    """A held key stays in state and pairs with a certificate after a restart."""
    intake = make_intake()
    h = hierarchy(slot=18)
    put(intake, "k.key", h.leaf.key_pem())
    restarted = make_intake()
    assert put(restarted, "cert.pem", h.chain_pem) == "accepted"
    assert restarted.inventory.entry("cert").status == "unused"


def test_recovery_finishes_a_claimed_drop(make_intake):
    """A drop claimed but not processed before a crash is processed at start-up."""
    intake = make_intake()
    h = hierarchy(slot=19)
    claim = intake.inbox / ".claimed" / "00000000000000000001.crashed.pem"
    claim.write_bytes(h.chain_pem + h.leaf.key_pem())
    long_name = "x" * 220 + ".pem"
    folder = intake.inbox / ".claimed" / "00000000000000000002"
    folder.mkdir()
    (folder / long_name).write_bytes(b"garbage")
    outcomes = intake.recover()
    assert [(o.file, o.result) for o in outcomes] == [
        ("crashed.pem", "accepted"), (long_name, "rejected")
    ]
    assert intake.inventory.entry("crashed") is not None
    assert os.listdir(intake.inbox / ".claimed") == []
    assert (intake.inbox / "rejected" / long_name).exists()


def test_state_files_are_private(make_intake):
    """The database holding keys is 0600 when the process umask is 077 (as the CLI sets it)."""
    old = os.umask(0o077)
    try:
        intake = make_intake()
        h = hierarchy(slot=20)
        put(intake, "p.pem", h.chain_pem + h.leaf.key_pem())
    finally:
        os.umask(old)
    for f in intake.config.state.iterdir():
        if f.name.startswith("inventory"):
            assert f.stat().st_mode & 0o077 == 0, f
