"""Hostile and broken input: whatever lands in the inbox ends in exactly one result with a
reason, nothing outside the inbox is read or written, and no value from a certificate can
break the status table, the status log or the JSON.

The parser alone is fuzzed in test_parse.py; here the whole intake is (claim, read, parse,
pair, validate, record or reject, log), against real files and a real SQLite inventory,
plus one run of the real daemon with the file-system tricks an uploader can play.
"""

from __future__ import annotations

import collections
import datetime as dt
import ipaddress
import json
import os
import re
import socket
import subprocess
import sys
import time
import unicodedata
import warnings
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.serialization import pkcs7, pkcs12
from cryptography.x509.oid import NameOID
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from certdrop import config as configuration
from certdrop.cli import table as tables
from certdrop.intake.inbox import display_name, is_drop_name
from certdrop.intake.pipeline import Intake
from certdrop.store import snapshot as status
from certdrop.store.eventlog import open_log
from certdrop.store.inventory import Inventory
from support.daemon import RunningDaemon, drop
from support.pkitools import NOW, Issued, ec_key, hierarchy, issue, rsa_key

# Every code a drop can be rejected with (README, "Rejection codes").
CODES = {
    "key_mismatch", "expired", "not_yet_valid", "chain_invalid", "weak_key", "weak_signature",
    "encrypted_key_no_passphrase", "unsupported_content", "unsupported_key", "truncated",
    "too_large", "not_regular_file", "csr_without_key",
}  # fmt: skip
# What a terminal would act on: C0 controls but newline, DEL, C1 controls, bidi overrides.
UNSAFE = re.compile("[\x00-\x09\x0b-\x1f\x7f-\x9f\u202a-\u202e\u2066-\u2069]")


def inert(line: str) -> bool:
    """No control, format (bidi, zero-width), separator or surrogate character at all."""
    return not UNSAFE.search(line) and all(
        unicodedata.category(c) not in {"Cc", "Cf", "Cs", "Zl", "Zp"} for c in line
    )


class World:
    """An inbox, a state folder, an Intake and its log: the worker's view, in process."""

    def __init__(self, root: Path, max_bytes: int = 65536) -> None:
        root.mkdir(parents=True, exist_ok=True)
        (root / "inbox").mkdir(exist_ok=True)
        (root / "pw").write_text("right-passphrase\n")
        cfg = root / "certdrop.toml"
        cfg.write_text(
            f'inbox = "inbox"\nstate = "state"\n[intake]\nmax_file_bytes = {max_bytes}\n'
            'passphrase_files = ["pw"]\n'
        )
        self.config = configuration.load(cfg, root)
        self.config.state.mkdir(mode=0o700, exist_ok=True)
        self.log, self.sink = open_log(self.config.status_log, echo=False)
        self.inventory = Inventory(self.config.state / "inventory.sqlite3")
        self.intake = Intake(self.config, self.inventory, self.log)
        self.inbox = self.config.inbox
        self.seen = 0

    def close(self) -> None:
        self.inventory.close()
        self.sink.close()

    def new_lines(self) -> list[str]:
        lines = self.config.status_log.read_text().splitlines()
        fresh, self.seen = lines[self.seen :], len(lines)
        return fresh

    def put(self, name: str, data: bytes) -> tuple[str, list[dict[str, Any]]]:
        """Drop ``data`` as ``name`` and process it; (result, the events it logged)."""
        (self.inbox / name).write_bytes(data)
        outcome = self.intake.process(name)
        assert outcome is not None
        lines = self.new_lines()
        for line in lines:
            # UTF-8 text (not \u-escaped), but nothing a terminal would act on.
            assert inert(line), line
        return outcome.result, [json.loads(line) for line in lines]


@pytest.fixture
def world(tmp_path: Path) -> Iterator[World]:
    w = World(tmp_path / "world")
    yield w
    w.close()


def check_one_result(w: World, name: str, result: str, events: list[dict[str, Any]]) -> None:
    """Exactly one drop.* event, matching the result; a reason file for a rejection; no
    trace of the drop left in the inbox or the claim folder."""
    finals = [e for e in events if str(e["event"]).startswith("drop.")]
    assert [(e["event"], e["file"]) for e in finals] == [(f"drop.{result}", display_name(name))]
    assert not (w.inbox / name).exists() and not (w.inbox / name).is_symlink()
    assert os.listdir(w.inbox / ".claimed") == []
    if result == "rejected":
        assert finals[0]["code"] in CODES and finals[0]["reason"]
        reasons = [p for p in (w.inbox / "rejected").iterdir() if p.name.endswith(".reason.json")]
        files = [json.loads(p.read_text())["file"] for p in reasons]
        assert display_name(name) in files


def check_status_renders(w: World) -> None:
    """status.json and the status table survive whatever the inventory holds."""
    data = status.snapshot(w.config, w.inventory)
    assert json.loads(json.dumps(data, ensure_ascii=True)) == data
    table = tables.render(data)
    assert not UNSAFE.search(table), table
    assert all(len(line) <= 200 for line in table.splitlines())


# --- material --------------------------------------------------------------------------


def pieces() -> dict[str, bytes]:
    """Valid pieces in every form a drop may take; fuzzing mixes and mangles them."""
    h = hierarchy("fuzz.example.test", slot=50, depth=2)
    e = hierarchy("fuzz-ec.example.test", slot=51, leaf_key=ec_key(51))
    key = h.leaf.key
    csr = (
        x509.CertificateSigningRequestBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "csr.example.test")]))
        .sign(e.leaf.key, hashes.SHA256())
    )
    return {
        "leaf": h.leaf.pem,
        "chain": h.chain_pem,
        "root": h.root.pem,
        "key-pkcs8": h.leaf.key_pem("pkcs8"),
        "key-pkcs1": h.leaf.key_pem("pkcs1"),
        "key-encrypted": h.leaf.key_pem("pkcs8", b"right-passphrase"),
        "key-encrypted-unknown": h.leaf.key_pem("pkcs8", b"another-one"),
        "ec-leaf": e.chain_pem,
        "ec-key": e.leaf.key_pem("sec1"),
        "csr": csr.public_bytes(serialization.Encoding.PEM),
        "der-leaf": h.leaf.der,
        "der-key": h.leaf.key_der(),
        "p7": pkcs7.serialize_certificates([h.leaf.cert, h.intermediates[0].cert], serialization.Encoding.DER),
        "p12": pkcs12.serialize_key_and_certificates(
            b"x", key, h.leaf.cert, [i.cert for i in h.intermediates],  # type: ignore[arg-type]
            serialization.BestAvailableEncryption(b"right-passphrase"),
        ),
        "other-key": issue("x", rsa_key(52)).key_pem(),
        "expired": issue("old", ec_key(53), not_after=NOW - dt.timedelta(days=1)).pem,
    }  # fmt: skip


PIECES = pieces()
HALF_ISSUER = hierarchy("unused.example.test", slot=54).intermediates[0]
HALVES: list[Issued] = []


@st.composite
def contents(draw: st.DrawFn) -> bytes:
    """Drop contents: valid pieces mixed in any order, then maybe mangled; or plain junk."""
    kind = draw(st.sampled_from(["mix", "mangled", "junk", "pem-junk", "half"]))
    if kind == "half":  # a certificate or a key alone, of a fresh key: held, or paired
        key = ec.generate_private_key(ec.SECP256R1())
        HALVES.append(issue("half.example.test", key, HALF_ISSUER))
        other = HALVES[draw(st.integers(0, 63)) % len(HALVES)]  # maybe an earlier one
        return other.key_pem() if draw(st.booleans()) else other.pem + HALF_ISSUER.pem
    if kind == "junk":
        return draw(st.binary(max_size=2000))
    if kind == "pem-junk":
        label = draw(st.sampled_from(["CERTIFICATE", "PRIVATE KEY", "PKCS7", "X", "RSA PRIVATE KEY"]))
        body = draw(st.binary(max_size=600))
        return b"-----BEGIN %s-----\n%s\n-----END %s-----\n" % (label.encode(), body, label.encode())
    names = draw(st.lists(st.sampled_from(sorted(PIECES)), min_size=1, max_size=4))
    glue = draw(st.sampled_from([b"", b"\n", b"\r\n", b"noise between blocks\n"]))
    data = draw(st.sampled_from([b"", b"\xef\xbb\xbf"])) + glue.join(PIECES[n] for n in names)
    if kind == "mangled" and data:
        for _ in range(draw(st.integers(1, 4))):
            at = draw(st.integers(0, len(data)))
            action = draw(st.sampled_from(["flip", "cut", "drop", "insert"]))
            if action == "flip" and at < len(data):
                data = data[:at] + bytes([data[at] ^ draw(st.integers(1, 255))]) + data[at + 1 :]
            elif action == "cut":
                data = data[:at]
            elif action == "drop":
                data = data[:at] + data[at + draw(st.integers(1, 64)) :]
            else:
                data = data[:at] + draw(st.binary(min_size=1, max_size=32)) + data[at:]
    return data


# Names an uploader could give: control characters, ANSI escapes, newlines, non-UTF-8
# bytes (as the watcher decodes them), "..", long names. Never "/" or NUL: not file names.
NAME_CHARS = st.characters(blacklist_characters="/\x00", blacklist_categories=("Cs",))
RAW_NAME_BYTES = st.binary(min_size=1, max_size=60).map(lambda b: b.replace(b"/", b"_").replace(b"\x00", b"_"))
hostile_names = st.one_of(
    st.text(NAME_CHARS, min_size=1, max_size=40),
    RAW_NAME_BYTES.map(os.fsdecode),
    st.sampled_from(["a\nb.pem", "\x1b[31mred\x1b[0m.pem", "x..y.pem", "bell\x07.crt",
                     "\u202egnp.exe", "é" * 120, "n" * 250 + ".pem", "rejected.pem"]),
).filter(lambda n: is_drop_name(n) and len(os.fsencode(n)) <= 255)  # fmt: skip


def test_any_drop_ends_in_exactly_one_result(tmp_path: Path) -> None:
    """Hundreds of drops (valid pieces mixed and mangled, junk, hostile names) each end in
    exactly one drop.* event with a reason when rejected, and status still renders."""
    w = World(tmp_path / "fuzz")
    tally: collections.Counter[str] = collections.Counter()

    @settings(max_examples=800, deadline=None, database=None,
              suppress_health_check=[HealthCheck.too_slow])  # fmt: skip
    @given(name=hostile_names, data=contents())
    @example(name="p12.pfx", data=PIECES["p12"])
    @example(name="a\nb.pem", data=PIECES["chain"] + PIECES["key-pkcs1"])
    def one(name: str, data: bytes) -> None:
        result, events = w.put(name, data)
        check_one_result(w, name, result, events)
        tally[result] += 1
        for e in events:
            if e["event"] == "drop.rejected":
                tally[e["code"]] += 1
        if sum(tally[r] for r in ("accepted", "held", "rejected")) % 25 == 0:
            check_status_renders(w)

    try:
        one()
        check_status_renders(w)
        assert w.inventory.integrity_ok()
    finally:
        w.close()
    total = tally["accepted"] + tally["held"] + tally["rejected"]
    print(f"\nintake fuzz: {total} drops: {dict(tally)}")
    assert tally["accepted"] and tally["held"] and tally["rejected"]


# --- hostile values inside certificates ------------------------------------------------------


def hostile_certificate(
    cn: str, sans: list[str], key_slot: int, org: str = "Evil\x1b[2J Corp"
) -> Issued:
    """A self-signed certificate whose names carry whatever they are given."""
    with warnings.catch_warnings():  # a CN over 64 bytes is what we want here
        warnings.simplefilter("ignore", UserWarning)
        subject = x509.Name(
            [
                x509.NameAttribute(NameOID.ORGANIZATION_NAME, org, _validate=False),
                x509.NameAttribute(NameOID.COMMON_NAME, cn, _validate=False),
            ]
        )
    key = ec_key(key_slot)
    builder = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(NOW - dt.timedelta(days=1))
        .not_valid_after(NOW + dt.timedelta(days=30))
    )
    if sans:
        names: list[x509.GeneralName] = [x509.DNSName(s) for s in sans]
        names.append(x509.IPAddress(ipaddress.ip_address("127.0.0.1")))
        builder = builder.add_extension(x509.SubjectAlternativeName(names), critical=False)
    return Issued(builder.sign(key, hashes.SHA256()), key)


@settings(max_examples=60, deadline=None, database=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])  # fmt: skip
@given(
    cn=st.text(st.characters(blacklist_categories=("Cs",)), min_size=1, max_size=64),
    sans=st.lists(st.text(st.characters(max_codepoint=127), min_size=1, max_size=30), max_size=5),
)
@example(cn="\x1b[31mRED\x1b[0m\r\n\x07", sans=["\x1b]0;pwned\x07.example", "a\nb"])
@example(cn='quote" back\\slash', sans=['"}{'])
def test_hostile_names_in_certificates_cannot_break_log_table_or_json(
    world: World, cn: str, sans: list[str]
) -> None:
    """Any text in a certificate's CN, O and SANs (escapes, controls, bidi overrides,
    quotes) reaches the log, status.json and the table only as inert, escaped text."""
    issued = hostile_certificate(cn, sans, key_slot=60)
    name = f"h{world.seen}.pem"
    result, events = world.put(name, issued.pem + issued.key_pem())
    check_one_result(world, name, result, events)
    assert result in ("accepted", "rejected")
    check_status_renders(world)


def test_enormous_san_list_is_stored_and_shown_sanely(tmp_path: Path) -> None:
    """A certificate with 3,000 SANs (110 kB) is accepted quickly, listed whole in
    status.json and kept to one short row in the table."""
    world = World(tmp_path / "world", max_bytes=1_048_576)
    sans = [f"host{i}.\x1b[0mexample.test" for i in range(3000)]
    issued = hostile_certificate("many", sans, key_slot=61)
    assert len(issued.pem) < world.config.max_file_bytes
    started = time.monotonic()
    result, events = world.put("many.pem", issued.pem + issued.key_pem())
    assert result == "accepted" and time.monotonic() - started < 5
    check_one_result(world, "many.pem", result, events)
    data = status.snapshot(world.config, world.inventory)
    assert len(data["certificates"][0]["sans"]) == 3001
    check_status_renders(world)
    world.close()


def test_chain_deeper_than_the_limit_is_refused_with_its_reason(world: World) -> None:
    """A leaf under 12 intermediates is refused as chain_invalid, saying the chain is too
    deep (not as a bad signature), rather than being walked without end."""
    h = hierarchy("deep.example.test", slot=62, depth=12, leaf_key=ec_key(62))
    result, events = world.put("deep.pem", h.chain_pem + h.leaf.key_pem())
    assert result == "rejected"
    check_one_result(world, "deep.pem", result, events)
    final = next(e for e in events if e["event"] == "drop.rejected")
    assert final["code"] == "chain_invalid" and "more than 8 intermediates" in final["reason"]


def test_chain_loop_ends(world: World) -> None:
    """Two CAs that cross-sign each other (a loop) with a leaf below: one result, quickly."""
    key_a, key_b = ec_key(63), ec_key(64)
    a_self = issue("Loop A", key_a, ca=True)
    b_by_a = issue("Loop B", key_b, a_self, ca=True)
    a_by_b = issue("Loop A", key_a, b_by_a, ca=True)
    leaf = issue("loop.example.test", ec_key(65), b_by_a, sans=["loop.example.test"])
    started = time.monotonic()
    data = leaf.pem + a_by_b.pem + b_by_a.pem + leaf.key_pem()
    result, events = world.put("loop.pem", data)
    assert time.monotonic() - started < 5
    check_one_result(world, "loop.pem", result, events)
    assert result == "accepted"
    entry = world.inventory.entries()[0]
    assert not entry.trusted and entry.chain_pem is not None


def test_hostile_values_through_the_real_daemon_and_cli(
    daemon: RunningDaemon,
) -> None:
    """Through `certdrop run` and `certdrop status`: a CN with ANSI escapes and newlines
    leaves the table, the JSON and the log inert."""
    issued = hostile_certificate("\x1b[2J\x1b[H\n\rowned\x07", ["\x1b[31m.example"], key_slot=66)
    drop(daemon.inbox, "\x1b[1mbold\n.pem", issued.pem + issued.key_pem())
    daemon.wait_for("drop.accepted", file="\x1b[1mbold\n.pem")
    table = daemon.cli("status").stdout
    assert not UNSAFE.search(table) and "\\x1b" in table
    assert json.loads(daemon.cli("status", "--json").stdout)["certificates"][0]["subject"]
    raw = daemon.log_path.read_bytes()
    assert inert(raw.decode("utf-8").replace("\n", "")) and b"\x1b" not in raw and b"\r" not in raw


# --- tricks with the file system -------------------------------------------------------------


def sparse_file(path: Path) -> None:
    """10 GiB that take no disk space: reading it would take minutes."""
    with path.open("wb") as f:
        f.truncate(10 * 1024**3)


def test_file_system_tricks_each_get_a_reason_and_touch_nothing_outside(
    daemon_factory: Callable[..., RunningDaemon], tmp_path: Path
) -> None:
    """Symlinks and hard links to files outside, FIFOs, a socket, a folder, a 10 GiB sparse
    file and hostile names each end in one drop.* event with a reason; a symlinked
    `rejected` or `.claimed` is moved aside; nothing outside the inbox is read or written."""
    outside = tmp_path / "outside"
    outside.mkdir()
    secret = outside / "secret.pem"
    h = hierarchy("secret.example.test", slot=67, leaf_key=ec_key(67))
    secret.write_bytes(h.chain_pem + h.leaf.key_pem())
    os.mkfifo(outside / "fifo")
    trap = outside / "trap"
    trap.mkdir()
    before = {p.name: p.stat().st_mtime_ns for p in outside.iterdir()}

    d = daemon_factory()
    d.inbox.mkdir(parents=True)
    # Planted before the start: a symlink where rejected/ goes, and one for .claimed.
    (d.inbox / "rejected").symlink_to(trap)
    (d.inbox / ".claimed").symlink_to(trap)
    d.start()

    cases: dict[str, Callable[[Path], None]] = {
        "sym.pem": lambda p: p.symlink_to(secret),
        "sym-fifo.pem": lambda p: p.symlink_to(outside / "fifo"),
        "sym-dir": lambda p: p.symlink_to(outside),
        "dangling.pem": lambda p: p.symlink_to(outside / "missing"),
        "hard.pem": lambda p: os.link(secret, p),
        "fifo.pem": lambda p: os.mkfifo(p),
        "folder.pem": lambda p: p.mkdir(),
        "sparse.pem": sparse_file,
    }  # fmt: skip
    for name, make in cases.items():
        make(d.inbox / name)
    with socket.socket(socket.AF_UNIX) as sock:
        sock.bind(os.fspath(d.inbox / "sock.pem"))
    expected = {
        **dict.fromkeys(
            ["sym.pem", "sym-fifo.pem", "sym-dir", "dangling.pem", "hard.pem", "fifo.pem",
             "folder.pem", "sock.pem"], "not_regular_file"),
        "sparse.pem": "too_large",
    }  # fmt: skip
    names = {
        "new\nline.pem": "unsupported_content",
        "\x1b]0;title\x07.pem": "unsupported_content",
        os.fsdecode(b"latin1-\xe9\xff.pem"): "unsupported_content",
        "x..y.pem": "unsupported_content",
        "e" * 251 + ".pem": "unsupported_content",
    }
    for name in names:
        drop(d.inbox, name, b"junk " + name.encode(errors="surrogateescape"))
    expected.update({display_name(n): code for n, code in names.items()})
    for name, code in expected.items():
        event = d.wait_for("drop.rejected", file=name, timeout=20)
        assert event["code"] == code, (name, event)
        assert event["reason"]
    time.sleep(0.3)
    finals = collections.Counter(
        e["file"] for e in d.events() if str(e["event"]).startswith("drop.")
    )
    assert finals == dict.fromkeys(expected, 1)
    d.stop()

    # Every rejection is in the real inbox/rejected with its reason, nothing in the trap.
    rejected = d.inbox / "rejected"
    assert rejected.is_dir() and not rejected.is_symlink()
    reasons = [json.loads(p.read_text()) for p in rejected.iterdir() if p.name.endswith(".reason.json")]
    assert sorted(r["file"] for r in reasons) == sorted(expected)
    assert os.listdir(trap) == []
    assert {p.name: p.stat().st_mtime_ns for p in outside.iterdir()} == before
    # The hard link the uploader made is where the rejection put it, still that one file.
    assert os.path.samefile(rejected / "hard.pem", secret)
    assert secret.read_bytes() == h.chain_pem + h.leaf.key_pem()
    # Nobody opened the FIFO: opening it for writing without a reader still fails.
    with pytest.raises(OSError):
        os.open(outside / "fifo", os.O_WRONLY | os.O_NONBLOCK)
    assert json.loads(d.cli("status", "--json").stdout)["certificates"] == []


# --- what coverage-guided fuzzing found -------------------------------------------------------


def corrupted(der: bytes, marker: bytes, replacement: bytes) -> bytes:
    """``der`` with the first ``marker`` replaced: a certificate that loads (cryptography
    parses names and keys lazily) but breaks when a field is first read."""
    assert marker in der
    return der.replace(marker, replacement, 1)


def regressions() -> dict[str, bytes]:
    cert = issue("lazy.example.test", ec_key(70)).der
    organization = b"\x06\x03\x55\x04\x0a\x0c"  # OID 2.5.4.10, then UTF8String
    ec_public_key = b"\x06\x07\x2a\x86\x48\xce\x3d\x02\x01"  # OID 1.2.840.10045.2.1
    ed25519 = ed25519_csr()
    return {
        "issuer-tag-0": corrupted(cert, organization, organization[:-1] + b"\x00"),
        "issuer-tag-bitstring": corrupted(cert, organization, organization[:-1] + b"\x03"),
        "issuer-bad-length": corrupted(cert, organization, organization[:-1] + b"\x80"),
        "unknown-key-oid": corrupted(cert, ec_public_key, ec_public_key[:-1] + b"\x09"),
        "ed25519-csr-with-its-key": ed25519,
    }


def ed25519_csr() -> bytes:
    from cryptography.hazmat.primitives.asymmetric import ed25519

    key = ed25519.Ed25519PrivateKey.generate()
    csr = (
        x509.CertificateSigningRequestBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "ed.example.test")]))
        .sign(key, None)
    )
    pem_key = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    return csr.public_bytes(serialization.Encoding.PEM) + pem_key


@pytest.mark.parametrize("case", sorted(regressions()))
def test_certificates_that_break_when_read_are_rejected(world: World, case: str) -> None:
    """Certificates whose issuer or key only fails when first read (KeyError, TypeError,
    ValueError, UnsupportedAlgorithm inside cryptography), and an Ed25519 CSR, end in a
    rejection instead of an exception in the worker."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # cryptography's own, about the name
        result, events = world.put(f"{case}.der", regressions()[case])
    check_one_result(world, f"{case}.der", result, events)
    final = next(e for e in events if e["event"] == "drop.rejected")
    assert final["code"] in ("unsupported_content", "unsupported_key"), final


def test_coverage_guided_fuzzing_finds_no_crash(tmp_path: Path) -> None:
    """30,000 atheris/libFuzzer runs, seeded with every kind of valid piece, through parse,
    sort, chain and key checks and the log description: only rejections."""
    pytest.importorskip("atheris")
    corpus = tmp_path / "corpus"
    corpus.mkdir()
    for name, data in {**PIECES, **regressions()}.items():
        (corpus / name).write_bytes(data)
    harness = Path(__file__).with_name("atheris_intake.py")
    runs = 30_000
    done = subprocess.run(
        [sys.executable, str(harness), str(corpus), f"-runs={runs}", "-max_len=8192",
         "-timeout=20", "-seed=1"],
        cwd=tmp_path, capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-3000:]
    assert f"Done {runs} runs" in done.stderr
    print(f"\natheris: {runs} runs, no crash")


def test_a_rejected_name_used_again_by_a_folder_or_file_gets_its_own_place(world: World) -> None:
    """A folder rejected under a name a rejected file already has lands beside it under a
    suffixed name with its own reason, and a later file of that name replaces the first."""
    assert world.put("dup.pem", b"junk")[0] == "rejected"
    (world.inbox / "dup.pem").mkdir()
    outcome = world.intake.process("dup.pem")
    assert outcome is not None and outcome.code == "not_regular_file"
    assert world.put("dup.pem", b"junk again")[0] == "rejected"
    names = sorted(p.name for p in (world.inbox / "rejected").iterdir())
    assert len([n for n in names if n.endswith(".reason.json")]) == 2
    folder = next(n for n in names if n.startswith("dup.pem.") and not n.endswith(".json"))
    assert (world.inbox / "rejected" / folder).is_dir()
    reason = json.loads((world.inbox / "rejected" / f"{folder}.reason.json").read_text())
    assert reason["code"] == "not_regular_file"
    assert (world.inbox / "rejected" / "dup.pem").read_bytes() == b"junk again"
    assert os.listdir(world.inbox / ".claimed") == []
