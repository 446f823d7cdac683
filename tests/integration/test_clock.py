"""Wall-clock steps under a real daemon (libfaketime): checks and renewal retries keep
their rhythm, and each step is logged once as daemon.clock_jump.

libfaketime reads its offset from a file at every call and leaves the monotonic clock
alone, as an NTP step does; the daemon's renewal command always fails, so its retries
(1 s, 2 s, 4 s, ...) are the rhythm watched.
"""

from __future__ import annotations

import datetime as dt
import os
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

from certdrop import config as configuration
from certdrop.daemon import state as daemon_state
from support.daemon import RunningDaemon, drop
from support.faults import faketime_env, set_faketime
from support.pkitools import ec_key, issue, rsa_key

CA = issue("Clock Test Root", ec_key(660), ca=True)


def put_in_use(d: RunningDaemon, name: str, service: str) -> None:
    """A certificate two thirds through its life, imported and assigned (no daemon)."""
    now = dt.datetime.now(dt.UTC)
    cert = issue(f"{name}.example.test", rsa_key(661), CA, sans=[f"{name}.example.test"],
                 not_before=now - dt.timedelta(days=60), not_after=now + dt.timedelta(days=10))
    config = configuration.load(d.config_path, d.root)
    old_umask = os.umask(0o077)
    try:
        daemon_state.prepare_folders(config)
        drop(config.inbox, f"{name}.pem", cert.pem + CA.pem + cert.key_pem())
        with daemon_state.state_lock(config.state):
            ctx, sink = daemon_state.open_context(config)
            try:
                outcome = ctx.intake.process(f"{name}.pem")
            finally:
                ctx.intake.close()
                ctx.inventory.close()
                sink.close()
    finally:
        os.umask(old_umask)
    assert outcome is not None and outcome.recorded == [name], outcome
    d.cli("assign", name, service)


def test_clock_steps_back_and_forth_keep_retries_going_and_are_logged_once(
    daemon_factory: Callable[..., RunningDaemon], tmp_path: Path
) -> None:
    """A day back, then a day forward: renewal retries go on at their delays (not a day
    later), the expiry check keeps running, and each step is one daemon.clock_jump."""
    offset = tmp_path / "faketime"
    env = faketime_env(offset)
    folder = tmp_path / "web"
    folder.mkdir()
    d = daemon_factory(
        f"""
[expiry]
check_interval_seconds = 1
[renewal]
command = ["false"]
retry_base_seconds = 1
[services.web]
role = "https"
cert_file = "{folder}/fullchain.pem"
key_file = "{folder}/key.pem"
""",
        env=env,
    )
    put_in_use(d, "web", "web")
    d.start()
    d.wait_for("renewal.failed", attempt=1, timeout=20)
    set_faketime(offset, "-1d")
    back = d.wait_for("daemon.clock_jump", timeout=15)
    assert -86400 - 30 < back["seconds"] < -86400 + 30 and back["renewals_moved"] == 1
    d.wait_for("renewal.failed", attempt=2, timeout=15)
    d.wait_for("renewal.failed", attempt=3, timeout=15)
    set_faketime(offset, "+0")
    forward = _second_jump(d)
    assert 86400 - 30 < forward["seconds"] < 86400 + 30
    d.wait_for("renewal.failed", attempt=4, timeout=20)
    time.sleep(2)
    jumps = [e for e in d.events() if e["event"] == "daemon.clock_jump"]
    assert len(jumps) == 2, jumps
    assert d.stop() == 0


def _second_jump(d: RunningDaemon) -> dict[str, object]:
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline:
        jumps = [e for e in d.events() if e["event"] == "daemon.clock_jump"]
        if len(jumps) >= 2:
            return jumps[1]
        time.sleep(0.05)
    raise AssertionError("the step forward was not logged")


STEADY = """
import threading, time
first, start = time.time(), time.monotonic()
glitches = []
def spin():
    for _ in range(50000):
        if time.time() - first - (time.monotonic() - start) > 3600:
            glitches.append(1)
threads = [threading.Thread(target=spin) for _ in range(4)]
[t.start() for t in threads]
[t.join() for t in threads]
print(len(glitches))
"""


def test_the_faked_clock_stays_put_across_threads(tmp_path: Path) -> None:
    """The harness itself: four threads reading a clock set a day back never see the real
    time (the single-threaded libfaketime build did, some 2,000 times in 400,000 reads)."""
    offset = tmp_path / "faketime"
    env = {**os.environ, **faketime_env(offset)}
    set_faketime(offset, "-1d")
    out = subprocess.run(
        [sys.executable, "-c", STEADY], env=env, capture_output=True, text=True, timeout=60,
        check=True,
    )
    assert out.stdout.strip() == "0", out
