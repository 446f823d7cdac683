"""Secrets stay secret: key bytes and passphrases never reach the status log, status.json,
reason files, stdout/stderr or error text; files holding keys are private from their first
byte, under any umask.

One real daemon (logging to stderr too, as under systemd) runs every flow that touches a
key or a passphrase: drops plain, encrypted and PKCS#12, wrong and missing passphrases,
mismatched, weak, truncated and lone keys, a passphrase file dropped by mistake, then the
``csr``, ``export`` and ``status`` commands with the daemon and without it. Afterwards every
byte the daemon or a command wrote outside the inventory is searched for every secret.
"""

from __future__ import annotations

import base64
import os
import stat
import sys
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.hazmat.primitives.serialization import pkcs12

from certdrop import config as configuration
from certdrop.daemon import state as daemon_state
from certdrop.intake.pipeline import Intake
from certdrop.store.eventlog import open_log
from certdrop.store.inventory import Inventory
from support.daemon import RunningDaemon, drop
from support.pkitools import Issued, ec_key, hierarchy, issue

# Distinctive, so a hit cannot be a coincidence.
PASSPHRASE = b"Passphrase-7Qx!right"
P12_PASSWORD = b"P12-pw-Zk3#secret"
UNKNOWN_PASSPHRASE = b"Unknown-9Rt$never-configured"
EXPORT_PASSWORD = b"Export-pw-Lm5%backup"


def key_secrets(key: rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey) -> set[str]:
    """Strings that would betray ``key`` and nothing public: its private numbers in
    decimal and hex, and the hex and base64 (as in a PEM body, PKCS#8 or traditional) of
    the bytes where those numbers sit in its DER. The modulus or public point are left
    out: CSRs and certificates carry them by design."""
    if isinstance(key, rsa.RSAPrivateKey):
        n = key.private_numbers()
        numbers = [n.d, n.p, n.q, n.dmp1, n.dmq1, n.iqmp]
    else:
        numbers = [key.private_numbers().private_value]
    found: set[str] = set()
    for fmt in (serialization.PrivateFormat.PKCS8, serialization.PrivateFormat.TraditionalOpenSSL):
        der = key.private_bytes(serialization.Encoding.DER, fmt, serialization.NoEncryption())
        body = base64.b64encode(der).decode()
        for number in numbers:
            raw = number.to_bytes((number.bit_length() + 7) // 8, "big")
            at = der.find(raw)
            assert at >= 0
            region = body[4 * -(-at // 3) : 4 * ((at + len(raw)) // 3)]  # whole 3-byte groups
            found |= {region[i : i + 20] for i in range(0, len(region) - 20, 20)}
            found |= {raw[i : i + 10].hex() for i in range(0, len(raw) - 10, 10)}
    for number in numbers:
        found |= {str(number)[:30], f"{number:x}"[:30]}
    return found


def passphrase_secrets() -> set[str]:
    words = [PASSPHRASE, P12_PASSWORD, UNKNOWN_PASSPHRASE, EXPORT_PASSWORD]
    return {w.decode() for w in words} | {w.hex() for w in words}


def leaks(text: str, secrets: set[str]) -> list[str]:
    return sorted(s for s in secrets if s in text)


def mode(path: Path) -> int:
    return stat.S_IMODE(os.lstat(path).st_mode)


@pytest.fixture
def secret_daemon(daemon_factory: Callable[..., RunningDaemon], tmp_path: Path) -> RunningDaemon:
    """A daemon with a passphrase file, logging to stderr as it does under systemd."""
    (tmp_path / "passphrases").write_bytes(b"wrong-one\n" + PASSPHRASE + b"\n" + P12_PASSWORD + b"\n")
    (tmp_path / "passphrases").chmod(0o600)
    d = daemon_factory(
        '[intake]\npassphrase_files = ["passphrases"]\n',
        env={"INVOCATION_ID": "test", "CERTDROP_CONFIG": ""},
    )
    return d.start()


def test_no_secret_reaches_logs_status_reasons_or_output(
    secret_daemon: RunningDaemon, tmp_path: Path
) -> None:
    """Every flow that handles a key or passphrase leaves none of them in the status log,
    status.json, reason files, CSRs, stdout/stderr of the daemon and commands, or errors."""
    d = secret_daemon
    plain = hierarchy("plain.example.test", slot=80)
    encrypted = hierarchy("encrypted.example.test", slot=81, leaf_key=ec_key(81))
    p12 = hierarchy("p12.example.test", slot=82, leaf_key=ec_key(82))
    lone = issue("lone", ec_key(83))
    weak_key = rsa.generate_private_key(65537, 1024)
    weak = Issued(issue("weak", ec_key(84)).cert, weak_key)
    all_keys = [plain.leaf.key, encrypted.leaf.key, p12.leaf.key, lone.key, weak_key]

    drops = {
        "plain.pem": (plain.chain_pem + plain.leaf.key_pem("pkcs8"), "drop.accepted"),
        "encrypted.pem": (encrypted.chain_pem + encrypted.leaf.key_pem("pkcs8", PASSPHRASE), "drop.accepted"),
        "p12.pfx": (
            pkcs12.serialize_key_and_certificates(
                b"p12", p12.leaf.key, p12.leaf.cert, [p12.intermediates[0].cert],  # type: ignore[arg-type]
                serialization.BestAvailableEncryption(P12_PASSWORD),
            ),
            "drop.accepted",
        ),
        "unknown-pass.pem": (lone.key_pem("pkcs8", UNKNOWN_PASSPHRASE), "drop.rejected"),
        "unknown-pass.pfx": (
            pkcs12.serialize_key_and_certificates(
                b"x", lone.key, lone.cert, None,
                serialization.BestAvailableEncryption(UNKNOWN_PASSPHRASE),
            ),
            "drop.rejected",
        ),
        "mismatch.pem": (plain.leaf.pem + lone.key_pem("sec1"), "drop.rejected"),
        "weak.pem": (weak.key_pem("pkcs1"), "drop.rejected"),
        "cut-key.pem": (plain.leaf.key_pem("pkcs1")[:-60], "drop.rejected"),
        "lone.key": (lone.key_pem("sec1"), "drop.held"),
        "passphrases.txt": (b"wrong-one\n" + PASSPHRASE + b"\n" + P12_PASSWORD + b"\n", "drop.rejected"),
        "key-as-text.pem": (b"my key is:\n" + lone.key_pem("sec1")[30:-30], "drop.rejected"),
    }  # fmt: skip
    for name, (data, _) in drops.items():
        drop(d.inbox, name, data)
    for name, (_, event) in drops.items():
        d.wait_for(event, file=name)

    outputs: list[str] = []

    def cli(*args: str, check: bool = True) -> None:
        done = d.cli(*args, check=check)
        outputs.extend([done.stdout, done.stderr])

    (tmp_path / "export-pw").write_bytes(EXPORT_PASSWORD + b"\n")
    cli("csr", "made-live", "--cn", "live.example.test")  # through the running daemon
    cli("export", "plain", "--out", str(tmp_path / "plain.p12"), "--password-file", str(tmp_path / "export-pw"))
    cli("export", "missing", "--out", str(tmp_path / "x.p12"), "--password-file", str(tmp_path / "export-pw"), check=False)
    cli("status")
    cli("status", "--json")
    assert d.stop() == 0
    cli("csr", "made-offline", "--cn", "offline.example.test")  # in-process, no daemon
    cli("export", "encrypted", "--out", str(tmp_path / "enc.pem"), "--password-file", str(tmp_path / "export-pw"))
    cli("status", "--json")  # fmt: skip

    # The keys certdrop made itself are secrets too.
    inventory = Inventory(d.state / "inventory.sqlite3", readonly=True)
    try:
        for name in ("made-live", "made-offline"):
            pem = inventory.key_pem(name)
            assert pem is not None
            made = serialization.load_pem_private_key(pem, None)
            assert isinstance(made, rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey)
            all_keys.append(made)
    finally:
        inventory.close()

    secrets = passphrase_secrets().union(*(key_secrets(k) for k in all_keys))
    searched = {
        "status.log": d.log_path.read_text(),
        "status.json": (d.state / "status.json").read_text(),
        "daemon stdout/stderr": (d.root / "daemon.stderr").read_text(errors="replace"),
        "command output": "\n".join(outputs),
    }
    for path in sorted((d.inbox / "rejected").glob("*.reason.json")):
        searched[path.name] = path.read_text()
    for path in sorted(d.config_path.parent.glob("state/outbox/*.csr")):
        searched[path.name] = path.read_text()
    assert "drop.accepted" in searched["daemon stdout/stderr"]  # the echo to stderr ran
    assert len(searched) > 10
    found = {where: leaks(text, secrets) for where, text in searched.items()}
    assert {where: hits for where, hits in found.items() if hits} == {}
    assert not [e for e in d.events() if e["event"] == "daemon.job_failed"]
    print(f"\nsearched {len(searched)} outputs for {len(secrets)} secret strings: none found")

    # Files holding keys are private; the state folder is 0700.
    assert mode(d.state) == 0o700
    for name in ("inventory.sqlite3", "inventory.sqlite3-wal", "inventory.sqlite3-shm",
                 "status.log", "lock"):  # fmt: skip
        if (d.state / name).exists():
            assert mode(d.state / name) == 0o600, name
    assert mode(d.state / "status.json") == 0o644  # no secrets: monitors read it
    assert mode(tmp_path / "plain.p12") == 0o600
    assert mode(tmp_path / "enc.pem") == 0o600
    assert mode(d.inbox / ".claimed") == 0o700


@pytest.fixture
def open_umask() -> Iterator[None]:
    """Run with umask 000, so a file made without an explicit private mode shows it."""
    old = os.umask(0)
    try:
        yield
    finally:
        os.umask(old)


def test_private_files_are_created_private_under_umask_zero(
    tmp_path: Path, open_umask: None
) -> None:
    """With umask 000, the state folder, inventory (and its WAL), status log, lock,
    claim folder and snapshot get their final modes at creation: none is ever chmod-ed
    narrower afterwards, which would mean it was briefly wider."""
    narrowed: list[tuple[str, int, int]] = []

    def watch(event: str, args: tuple[object, ...]) -> None:
        # os.chmod(path, mode): a chmod that removes bits from a file of ours is a window.
        if event == "os.chmod" and isinstance(args[0], str | bytes | os.PathLike):
            path = os.fsdecode(args[0])  # type: ignore[arg-type]
            if path.startswith(str(tmp_path)) and os.path.exists(path):
                before, after = mode(Path(path)), int(args[1])  # type: ignore[call-overload]
                if before & ~after:
                    narrowed.append((path, before, after))

    hook_on = [True]
    sys.addaudithook(lambda e, a: watch(e, a) if hook_on[0] else None)
    try:
        (tmp_path / "certdrop.toml").write_text('inbox = "inbox"\nstate = "state"\n')
        config = configuration.load(tmp_path / "certdrop.toml", tmp_path)
        daemon_state.prepare_folders(config)
        with daemon_state.state_lock(config.state):
            ctx, sink = daemon_state.open_context(config)
            try:
                h = hierarchy("umask.example.test", slot=85, leaf_key=ec_key(85))
                drop(config.inbox, "k.pem", h.chain_pem + h.leaf.key_pem())
                assert isinstance(ctx.intake, Intake)
                outcome = ctx.intake.process("k.pem")
                assert outcome is not None and outcome.result == "accepted"
                drop(config.inbox, "bad.pem", b"junk")
                assert ctx.intake.process("bad.pem") is not None
                daemon_state.write_status_json(config, ctx.inventory)
                for name in ("inventory.sqlite3-wal", "inventory.sqlite3-shm"):  # while open
                    assert mode(config.state / name) == 0o600, name
            finally:
                ctx.inventory.close()
                sink.close()
        log, sink = open_log(config.state / "other.log", echo=False)
        log.info("x")
        sink.close()
    finally:
        hook_on[0] = False
    assert narrowed == []
    state = config.state
    assert mode(state) == 0o700
    for name in ("inventory.sqlite3", "status.log", "lock", "other.log"):
        assert mode(state / name) == 0o600, name
    assert mode(config.status_json) == 0o644
    assert mode(config.inbox) == 0o700
    assert mode(config.outbox) == 0o755
    assert mode(config.inbox / ".claimed") == 0o700
    assert mode(config.inbox / "rejected") == 0o755
    assert mode(config.inbox / "rejected" / "bad.pem.reason.json") == 0o644
