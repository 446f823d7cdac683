"""kill -9 at random moments while drops arrive and certificates deploy, many times over.

One test, one story: a writer keeps dropping files (good, paired, broken) while the daemon
is started and SIGKILLed again and again, at random points from its first import to the
middle of a deploy. A last clean run then finishes whatever was left, and every drop must be
accounted for exactly once: in the drops table, in the log, in the inventory or in
``inbox/rejected/``; the database passes SQLite's integrity check; the service's
certificate and key files are a matching pair.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import random
import shutil
import signal
import subprocess
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization

from certdrop.daemon import worker
from certdrop.pki import keys
from certdrop.store.inventory import Inventory
from support.pkitools import NOW, ec_key, hierarchy, issue

KILLS = 36
HOST = "www.crash.test"


@dataclass
class Plan:
    """Every drop file the writer makes and what must become of it."""

    files: dict[str, bytes] = field(default_factory=dict)
    expect: dict[str, str] = field(default_factory=dict)  # file -> accepted|held|rejected|pair
    certificates: set[str] = field(default_factory=set)  # sha256 the inventory must hold
    newest_for_host: str = ""


def make_plan(seed: int) -> tuple[Plan, bytes]:
    """About 200 drop files: full drops for the service's host, split pairs, broken ones."""
    h = hierarchy("unused.crash.test", slot=90)
    intermediate = h.intermediates[0]
    plan = Plan()
    rng = random.Random(seed)
    for i in range(110):
        leaf = issue(
            HOST,
            ec_key(600 + i),
            intermediate,
            sans=[HOST],
            not_before=NOW - dt.timedelta(days=2) + dt.timedelta(minutes=i),
        )
        plan.files[f"d{i:03d}-full.pem"] = leaf.pem + intermediate.pem + leaf.key_pem()
        plan.expect[f"d{i:03d}-full.pem"] = "accepted"
        plan.certificates.add(leaf.sha256)
        plan.newest_for_host = leaf.sha256
    for i in range(30):
        host = f"pair{i}.crash.test"
        leaf = issue(host, ec_key(720 + i), intermediate, sans=[host])
        plan.files[f"p{i:03d}-cert.pem"] = leaf.pem + intermediate.pem
        plan.files[f"p{i:03d}-key.pem"] = leaf.key_pem("sec1")
        plan.expect[f"p{i:03d}-cert.pem"] = plan.expect[f"p{i:03d}-key.pem"] = "pair"
        plan.certificates.add(leaf.sha256)
    other_key = ec_key(799).private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    for i in range(30):
        leaf = issue(f"bad{i}.crash.test", ec_key(760 + i), intermediate)
        broken = [
            rng.randbytes(300),
            (leaf.pem + intermediate.pem)[: rng.randrange(40, 500)],
            leaf.pem + other_key,
        ][i % 3]
        plan.files[f"b{i:03d}-bad.pem"] = broken
        plan.expect[f"b{i:03d}-bad.pem"] = "rejected"
    names = list(plan.files)
    rng.shuffle(names)
    # Full drops keep their order (each newer than the last), so nearly each one deploys.
    full = iter(sorted(n for n in names if n.endswith("-full.pem")))
    names = [next(full) if n.endswith("-full.pem") else n for n in names]
    plan.files = {n: plan.files[n] for n in names}
    return plan, h.root.pem


class Dropper:
    """Writes the planned files in order, from several threads: like cp (straight to the
    name) or like an uploader (to .NAME.part, then renamed)."""

    def __init__(self, inbox: Path, plan: Plan) -> None:
        self.inbox = inbox
        self.todo = list(plan.files.items())
        self.lock = threading.Lock()

    def write(self, count: int) -> int:
        with self.lock:
            batch, self.todo = self.todo[:count], self.todo[count:]
            for name, data in batch:
                if len(self.todo) % 2:
                    (self.inbox / name).write_bytes(data)
                else:
                    part = self.inbox / f".{name}.part"
                    part.write_bytes(data)
                    part.rename(self.inbox / name)
        return len(batch)

    def trickle(self, stop: threading.Event) -> None:
        """One file now and then, whether a daemon runs or not."""
        rng = random.Random(7)
        while self.write(1) and not stop.wait(rng.uniform(0.05, 0.3)):
            pass


def read_events(log: Path) -> list[dict[str, object]]:
    """Every event of the status log, each line parsed (a torn line fails the test)."""
    return [json.loads(line) for line in log.read_text().splitlines()]


def wait_until_started(log: Path, proc: subprocess.Popen[bytes]) -> None:
    """Poll until the daemon with this PID logged daemon.started."""
    deadline = time.monotonic() + 15
    while not (log.exists() and f'"pid": {proc.pid}' in log.read_text()):
        assert proc.poll() is None and time.monotonic() < deadline, "daemon did not start"
        time.sleep(0.01)


def service_pair(folder: Path) -> str | None:
    """The sha256 of the deployed certificate if certificate and key match, "" for a mix,
    None before the first deploy."""
    cert_file, key_file = folder / "fullchain.pem", folder / "key.pem"
    if not cert_file.exists() and not key_file.exists():
        return None
    try:
        cert = x509.load_pem_x509_certificates(cert_file.read_bytes())[0]
        key = serialization.load_pem_private_key(key_file.read_bytes(), None)
    except (OSError, ValueError):
        return ""
    if keys.cert_key_id(cert) != keys.key_id(key.public_key()):
        return ""
    return cert.fingerprint(hashes.SHA256()).hex()


def test_kill_nine_at_random_moments_loses_nothing(tmp_path: Path) -> None:
    """36 SIGKILLs at random moments during drops and deploys lose no drop, import none
    twice, keep the inventory intact and leave the service files a matching pair."""
    plan, root_pem = make_plan(seed=int(os.environ.get("CERTDROP_CRASH_SEED", "1")))
    inbox, state, svc = tmp_path / "inbox", tmp_path / "state", tmp_path / "svc"
    inbox.mkdir()
    svc.mkdir()
    (tmp_path / "root.pem").write_bytes(root_pem)
    config = tmp_path / "certdrop.toml"
    config.write_text(
        'inbox = "inbox"\nstate = "state"\n[trust]\nca_bundle = "root.pem"\n'
        f'[services.web]\nrole = "https"\nhostname = "{HOST}"\n'
        'cert_file = "svc/fullchain.pem"\nkey_file = "svc/key.pem"\nreload = ["/bin/sleep", "0.1"]\n'
    )
    argv = [sys.executable, "-m", "certdrop", "--config", str(config), "run"]
    stderr = (tmp_path / "daemon.stderr").open("ab")
    rng = random.Random(11)
    stop = threading.Event()
    dropper = Dropper(inbox, plan)
    writer = threading.Thread(target=dropper.trickle, args=(stop,))
    proc: subprocess.Popen[bytes] | None = None
    kills = before_started = in_flight = mixes_after_kill = 0
    began = time.monotonic()
    try:
        writer.start()
        while kills < KILLS:
            proc = subprocess.Popen(argv, cwd=tmp_path, stdout=stderr, stderr=stderr)
            if kills % 2:
                # Any moment: from the interpreter's start to the middle of a deploy.
                time.sleep(rng.uniform(0.05, 1.1))
            else:
                # Right inside intake: a burst lands, the kill follows within 60 ms.
                wait_until_started(state / "status.log", proc)
                dropper.write(rng.randint(3, 8))
                time.sleep(rng.uniform(0, 0.06))
            assert proc.poll() is None, f"the daemon exited by itself ({proc.returncode})"
            started = str(proc.pid) in (state / "status.log").read_text()
            before_started += not started
            proc.send_signal(signal.SIGKILL)
            proc.wait(10)
            waiting = set(os.listdir(inbox)) & set(plan.files)
            claimed = os.listdir(inbox / ".claimed") if (inbox / ".claimed").is_dir() else []
            in_flight += bool(waiting or claimed)
            proc = None
            kills += 1
            mixes_after_kill += service_pair(svc) == ""
        stop.set()
        writer.join(60)
        dropper.write(len(plan.files))  # whatever the trickle had not written yet
        # A last clean run finishes every claimed, waiting or half-deployed drop.
        proc = subprocess.Popen(argv, cwd=tmp_path, stdout=stderr, stderr=stderr)
        deadline = time.monotonic() + 60
        while True:
            seen = {
                e.get("file")
                for e in read_events(state / "status.log")
                if str(e.get("event", "")).startswith("drop.")
            }
            if set(plan.files) <= seen:
                break
            assert time.monotonic() < deadline, sorted(set(plan.files) - seen)[:10]
            assert proc.poll() is None, f"the daemon exited by itself ({proc.returncode})"
            time.sleep(0.1)
        time.sleep(0.5)  # the deploy that follows the last drop
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(30) == 0
        proc = None
    finally:
        stop.set()
        writer.join(60)
        if proc is not None:
            proc.kill()
            proc.wait(10)
        stderr.close()
    elapsed = time.monotonic() - began

    events = read_events(state / "status.log")
    drop_events: dict[str, list[str]] = {}
    for e in events:
        if str(e["event"]).startswith("drop."):
            drop_events.setdefault(str(e["file"]), []).append(str(e["event"])[5:])
    repeated = sum(len(v) - 1 for v in drop_events.values())
    deploys = sum(e["event"] == "service.applied" for e in events)
    assert not [e for e in events if e["event"] == "daemon.job_failed"]
    print(
        f"\n{kills} kills ({before_started} before daemon.started, {in_flight} with drops "
        f"waiting or claimed), {len(plan.files)} drops, "
        f"{mixes_after_kill} mixed service pairs seen right after a kill, "
        f"{repeated} final events repeated after a kill, {deploys} deploys, {elapsed:.1f} s"
    )

    inventory = Inventory(state / "inventory.sqlite3", readonly=True)
    try:
        assert inventory.integrity_ok()
        rows = list(inventory.db.execute("SELECT file, result FROM drops"))
        entries = inventory.entries()
        held = inventory.held()
        service = inventory.db.execute(
            "SELECT state, deployed_sha256 FROM services WHERE name = 'web'"
        ).fetchone()
        key_ok = all(
            keys.cert_key_id(x509.load_pem_x509_certificate(e.cert_pem or b""))
            == keys.key_id(keys.load_pem(inventory.key_pem(e.name) or b"").public_key())
            for e in entries
        )
    finally:
        inventory.close()

    # Every drop was claimed and decided exactly once, and the log says the same.
    by_file: dict[str, list[str]] = {}
    for file, result in rows:
        by_file.setdefault(file, []).append(result)
    assert sorted(by_file) == sorted(plan.files)
    assert [f for f, results in by_file.items() if len(results) != 1] == []
    for file, expected in plan.expect.items():
        result = by_file[file][0]
        assert set(drop_events[file]) == {result}, (file, drop_events[file], result)
        if expected == "pair":
            assert result in ("held", "accepted"), (file, result)
        else:
            why = inbox / "rejected" / f"{file}.reason.json"
            assert result == expected, (file, result, why.read_text() if why.exists() else None)
    for i in range(30):
        pair = {by_file[f"p{i:03d}-cert.pem"][0], by_file[f"p{i:03d}-key.pem"][0]}
        assert pair == {"held", "accepted"}, (i, pair)

    # The inventory holds each good certificate once, with its own key; nothing is held.
    assert sorted(e.sha256 or "" for e in entries) == sorted(plan.certificates)
    assert key_ok
    assert held == []

    # The inbox holds only the rejected drops with their reasons; no claim is left over.
    rejected = sorted(p.name for p in (inbox / "rejected").iterdir())
    bad = sorted(f for f, x in plan.expect.items() if x == "rejected")
    assert rejected == sorted([*bad, *(f"{b}.reason.json" for b in bad)])
    assert sorted(p.name for p in inbox.iterdir()) == [".claimed", "rejected"]
    assert list((inbox / ".claimed").iterdir()) == []
    assert [p.name for p in state.iterdir() if p.name.endswith(".tmp")] == []

    # The service serves the newest certificate for its host, as a matching pair.
    assert service["state"] == "ok" and service["deployed_sha256"] == plan.newest_for_host
    assert service_pair(svc) == plan.newest_for_host


# --- a kill before every step -------------------------------------------------------------

# Runs `certdrop run` and SIGKILLs it just before the worker thread's N-th call that can
# change state: an os.* call, a SQLite statement, a write to a file, a fork of a reload
# command. N = 0 kills nowhere and records the calls made.
STEP_KILLER = """
import atexit, os, signal, sys, threading

NAMES = {"link", "unlink", "rename", "replace", "mkdir", "rmdir", "fsync", "write", "execute",
         "chmod", "fchmod", "fchown", "chown", "fork_exec", "ftruncate"}
OWNERS = {"Connection", "Cursor", "TextIOWrapper", "BufferedWriter"}
target, calls = int(sys.argv[2]), []

def profile(frame, event, arg):
    if event != "c_call" or threading.current_thread().name != "certdrop-worker":
        return
    name = getattr(arg, "__name__", "")
    module = getattr(arg, "__module__", None)
    if name in NAMES and (module in ("posix", "_posixsubprocess")
                          or type(getattr(arg, "__self__", None)).__name__ in OWNERS):
        calls.append(name)
        if len(calls) == target:
            os.kill(os.getpid(), signal.SIGKILL)

threading.setprofile(profile)
atexit.register(lambda: open(sys.argv[3], "w").write("\\n".join(calls)))
from certdrop import cli
sys.exit(cli.main(["--config", sys.argv[1], "run"]))
"""


def step_world(root: Path, template: Path) -> Path:
    """A fresh copy of the three-drop world, its drops ordered by modification time."""
    shutil.copytree(template, root)
    for n, name in enumerate(sorted(os.listdir(root / "inbox"))):
        os.utime(root / "inbox" / name, (1_700_000_000 + n, 1_700_000_000 + n))
    return root


def settled(root: Path, sha: str) -> bool:
    """True once the three drops are logged and status.json shows the service on ``sha``."""
    log, status = root / "state" / "status.log", root / "state" / "status.json"
    if not (log.exists() and status.exists()):
        return False
    text = log.read_text()
    if sum(f'"file": "{n}"' in text for n in ("a-full.pem", "b-key.pem", "c-bad.pem")) < 3:
        return False
    services = json.loads(status.read_text())["services"]
    return [(s["state"], s["sha256"]) for s in services] == [("ok", sha)]


def run_until(root: Path, argv: list[str], sha: str) -> int | None:
    """Run the daemon until it settles (then stop it: None) or dies (its exit status)."""
    with (root / "daemon.stderr").open("ab") as err:
        proc = subprocess.Popen(argv, cwd=root, stdout=err, stderr=err)
        try:
            deadline = time.monotonic() + 20
            log, last = root / "state" / "status.log", (0, 0.0)
            while proc.poll() is None:
                assert time.monotonic() < deadline, f"{root.name} did not settle"
                time.sleep(0.05)
                size = log.stat().st_size if log.exists() else 0
                if size != last[0]:
                    last = (size, time.monotonic())
                # Settled, and this daemon started and has logged nothing for 0.3 s.
                if (
                    size
                    and time.monotonic() - last[1] > 0.3
                    and f'"pid": {proc.pid}' in log.read_text()
                    and settled(root, sha)
                ):
                    break
            if proc.poll() is not None:
                return proc.returncode
            proc.send_signal(signal.SIGTERM)
            assert proc.wait(20) == 0
            return None
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait(10)


def check_world(root: Path, sha: str) -> int:
    """Assert every invariant of a settled world; return how many final events repeat."""
    events = read_events(root / "state" / "status.log")
    results: dict[str, list[str]] = {}
    for e in events:
        if str(e["event"]).startswith("drop."):
            results.setdefault(str(e["file"]), []).append(str(e["event"]))
    assert {f: set(r) for f, r in results.items()} == {
        "a-full.pem": {"drop.accepted"}, "b-key.pem": {"drop.held"}, "c-bad.pem": {"drop.rejected"}
    }
    assert not [e for e in events if e["event"] == "daemon.job_failed"]
    inventory = Inventory(root / "state" / "inventory.sqlite3", readonly=True)
    try:
        assert inventory.integrity_ok()
        drops = sorted(tuple(r) for r in inventory.db.execute("SELECT file, result FROM drops"))
        assert drops == [("a-full.pem", "accepted"), ("b-key.pem", "held"), ("c-bad.pem", "rejected")]
        assert [e.sha256 for e in inventory.entries()] == [sha]
        assert [r.kind for r in inventory.held()] == ["key"]
    finally:
        inventory.close()
    inbox = root / "inbox"
    assert sorted(os.listdir(inbox)) == [".claimed", "rejected"]
    assert os.listdir(inbox / ".claimed") == []
    assert sorted(os.listdir(inbox / "rejected")) == ["c-bad.pem", "c-bad.pem.reason.json"]
    assert [n for n in os.listdir(root / "state") if n.endswith(".tmp")] == []
    assert service_pair(root / "svc") == sha
    return sum(len(r) - 1 for r in results.values())


def test_kill_before_every_step_of_intake_and_deploy_is_repaired(tmp_path: Path) -> None:
    """SIGKILL just before each state-changing call of the worker (file, SQLite, log,
    reload fork), in turn, while it takes three drops and deploys one: the next start
    always finishes the job with nothing lost, doubled or mixed."""
    h = hierarchy(HOST, slot=91, leaf_key=ec_key(900))
    template = tmp_path / "template"
    for folder in ("inbox", "svc"):
        (template / folder).mkdir(parents=True)
    (template / "root.pem").write_bytes(h.root.pem)
    (template / "inbox" / "a-full.pem").write_bytes(h.chain_pem + h.leaf.key_pem())
    (template / "inbox" / "b-key.pem").write_bytes(issue("lone", ec_key(901)).key_pem())
    (template / "inbox" / "c-bad.pem").write_bytes(b"not a certificate at all")
    (template / "certdrop.toml").write_text(
        'inbox = "inbox"\nstate = "state"\n[trust]\nca_bundle = "root.pem"\n'
        f'[services.web]\nrole = "https"\nhostname = "{HOST}"\n'
        'cert_file = "svc/fullchain.pem"\nkey_file = "svc/key.pem"\nreload = ["/bin/true"]\n'
    )
    killer = tmp_path / "killer.py"
    killer.write_text(STEP_KILLER)

    def argv(root: Path, step: int) -> list[str]:
        return [sys.executable, str(killer), str(root / "certdrop.toml"), str(step),
                str(root / "calls.txt")]

    # Drops found at start-up wait until unchanged for SETTLE_SECONDS: let the copies age.
    worlds = [step_world(tmp_path / f"w{n}", template) for n in range(200)]
    time.sleep(worker.SETTLE_SECONDS + 0.1)
    assert run_until(worlds[0], argv(worlds[0], 0), h.leaf.sha256) is None
    calls = (worlds[0] / "calls.txt").read_text().split()
    check_world(worlds[0], h.leaf.sha256)
    # Every call but SQLite's (most are reads, or statements of one transaction, which
    # behave alike), plus every third SQLite statement.
    steps = [n + 1 for n, name in enumerate(calls) if name != "execute" or n % 3 == 0]
    assert len(steps) < len(worlds)

    def one(step: int, root: Path) -> tuple[int, bool, bool]:
        """Kill at ``step``, then restart; (final events repeated, mixed pair, killed)."""
        status = run_until(root, argv(root, step), h.leaf.sha256)
        # Thread timing varies the calls a little: a step past the end kills nothing.
        assert status in (None, -signal.SIGKILL), f"step {step}: exited {status}"
        was_mixed = service_pair(root / "svc") == ""
        recovered = [sys.executable, "-m", "certdrop", "--config", str(root / "certdrop.toml"), "run"]
        assert run_until(root, recovered, h.leaf.sha256) is None
        return check_world(root, h.leaf.sha256), was_mixed, status is not None

    began = time.monotonic()
    with ThreadPoolExecutor(2) as pool:
        outcomes = list(pool.map(one, steps, worlds[1:]))
    repeated = sum(o[0] for o in outcomes)
    mixed = sum(o[1] for o in outcomes)
    killed = sum(o[2] for o in outcomes)
    assert killed >= 0.9 * len(steps)
    print(
        f"\n{killed} kills, one before each of {len(calls)} worker calls "
        f"({calls.count('execute')} SQLite statements, every third taken); "
        f"{repeated} final events repeated, {mixed} mixed service pairs left by a kill and "
        f"repaired at the next start; {time.monotonic() - began:.1f} s"
    )


def test_a_line_torn_by_a_kill_does_not_swallow_the_next(tmp_path: Path) -> None:
    """A status log ending mid-line (a kill during a write) gets its line ended before the
    next event, so every later line still parses."""
    from certdrop.store.eventlog import open_log

    log_path = tmp_path / "status.log"
    log_path.write_bytes(b'{"ts": "2026-01-01T00:00:00Z", "event": "drop.acc')
    log, sink = open_log(log_path, echo=False)
    try:
        log.info("daemon.started", pid=1)
    finally:
        sink.close()
    lines = log_path.read_text().splitlines()
    assert len(lines) == 2
    assert json.loads(lines[1])["event"] == "daemon.started"


def test_temp_files_a_kill_left_behind_are_removed_at_start(tmp_path: Path) -> None:
    """`.NAME.PID.tmp` files (what atomic_write leaves when killed mid-write) are removed;
    other files stay, and a symlinked folder is not followed."""
    from certdrop.files import remove_stale_temps

    folder = tmp_path / "state"
    folder.mkdir()
    for name in (".status.json.123.tmp", ".reason.77.tmp", "status.json", ".x.tmp", "a.1.tmp"):
        (folder / name).write_text("x")
    assert sorted(remove_stale_temps(folder)) == [".reason.77.tmp", ".status.json.123.tmp"]
    assert sorted(os.listdir(folder)) == [".x.tmp", "a.1.tmp", "status.json"]
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / ".keep.1.tmp").write_text("x")
    (tmp_path / "link").symlink_to(outside)
    assert remove_stale_temps(tmp_path / "link") == []
    assert os.listdir(outside) == [".keep.1.tmp"]
