"""renewal.command: placeholders, output scrubbing, and real runs with timeouts and stops."""

from __future__ import annotations

import os
import signal
import sys
import threading
import time
from pathlib import Path

from certdrop.renewal import command as handoff
from certdrop.renewal.command import CommandRun, Finished, fill, scrub
from support.pkitools import issue, rsa_key


def test_placeholders_are_filled_inside_arguments():
    """Each placeholder is replaced wherever it appears in an argument."""
    values = {"csr": "/o/gw.csr", "name": "gw", "inbox": "/in", "outbox": "/o"}
    got = fill(["run", "--csr={csr}", "{inbox}/{name}.pem", "{outbox}"], values)
    assert got == ["run", "--csr=/o/gw.csr", "/in/gw.pem", "/o"]


def test_other_braces_and_filled_values_stay_as_they_are():
    """JSON-like braces pass through, and a value that looks like a placeholder is not expanded."""
    values = {"csr": "{name}", "name": "gw", "inbox": "/in", "outbox": "/o"}
    assert fill(['{"a": 1}', "{csr}", "{unknown}"], values) == ['{"a": 1}', "{name}", "{unknown}"]


def test_scrub_removes_private_keys():
    """A private key printed by a command never reaches the log, whole or cut in half."""
    key = issue("x", rsa_key(70)).key_pem("pkcs8").decode()
    text = f"before\n{key}after\n"
    assert "MII" not in scrub(text) and "before" in scrub(text) and "after" in scrub(text)
    assert "MII" not in scrub(key[200:] + "tail")
    assert "MII" not in scrub("head " + key[:300])


def test_scrub_removes_secret_assignments_and_options():
    """password=, token:, --hmac VALUE, bearer tokens and URL passwords are redacted."""
    text = (
        "LEGO_EAB_HMAC=c2VjcmV0 password: hunter2 --api-key abc123 "
        "Authorization: Bearer abcdefghijklmnop https://user:pw@ca.example/dir"
    )
    out = scrub(text)
    for secret in ("c2VjcmV0", "hunter2", "abc123", "abcdefghijklmnop", ":pw@"):
        assert secret not in out, secret
    assert "https://user:[redacted]@ca.example/dir" in out


def test_scrub_keeps_the_end_of_long_output():
    """Long output is cut to its last characters, where the reason usually is."""
    out = scrub("x" * 5000 + "the real reason", limit=100)
    assert out.endswith("the real reason") and len(out) <= 110 and out.startswith("[...]")


def test_a_command_that_succeeds_reports_exit_zero_and_output():
    """exit 0 with its output (stderr included) is a success."""
    done = handoff.run([sys.executable, "-c", "import sys; print('out'); print('err', file=sys.stderr)"], 30)
    assert done.ok and done.exit_code == 0 and done.reason == ""
    assert "out" in done.output and "err" in done.output


def test_a_failing_command_says_how_it_failed():
    """A non-zero exit is a failure naming the program and its code."""
    done = handoff.run(["sh", "-c", "echo 'acme: rate limited' >&2; exit 3"], 30)
    assert not done.ok and done.exit_code == 3
    assert done.reason == "sh exited 3" and "rate limited" in done.output


def test_a_missing_program_is_a_failure_not_a_crash():
    """A command that cannot start is reported with the reason."""
    done = handoff.run(["/nonexistent/lego-csr.sh"], 30)
    assert done.exit_code is None and "could not start" in done.reason


def test_a_timeout_ends_the_command_and_its_children(tmp_path: Path):
    """On timeout the whole process group ends, grandchildren included, within seconds."""
    pidfile = tmp_path / "child.pid"
    started = time.monotonic()
    done = handoff.run(["sh", "-c", f"sleep 60 & echo $! > {pidfile}; wait"], 0.5)
    assert time.monotonic() - started < 4
    assert done.exit_code is None and "timed out after 0.5 s" in done.reason
    child = int(pidfile.read_text())
    assert not _alive(child)


def test_a_background_child_holding_the_pipe_does_not_stall_a_finished_command():
    """A command that exited is done within seconds even if a child keeps stdout open."""
    started = time.monotonic()
    done = handoff.run(["sh", "-c", "sleep 60 & echo dropped"], 30)
    assert done.ok and "dropped" in done.output
    assert time.monotonic() - started < 5


def test_output_is_bounded_however_much_is_printed():
    """Megabytes of output keep only a short tail in memory and in the result."""
    done = handoff.run([sys.executable, "-c", "print('y' * 3_000_000); print('last line')"], 30)
    assert done.ok and done.output.endswith("last line") and len(done.output) < 2100


def test_stopping_a_run_interrupts_it_and_joins_its_thread():
    """stop() ends a long command at once and reports it as interrupted, not failed."""
    results: list[Finished] = []
    run = CommandRun(["sleep", "60"], 120, results.append)
    run.start()
    time.sleep(0.2)
    started = time.monotonic()
    run.stop()
    assert time.monotonic() - started < 3
    assert not run.running
    assert len(results) == 1 and results[0].interrupted and results[0].exit_code is None


def test_a_run_calls_back_from_its_own_thread():
    """The result arrives on the command's thread, never the caller's."""
    seen: list[str] = []
    finished = threading.Event()

    def done(result: Finished) -> None:
        seen.append(threading.current_thread().name)
        finished.set()

    run = CommandRun(["true"], 30, done, name="certdrop-renewal test")
    run.start()
    assert finished.wait(10)
    run.stop()
    assert seen == ["certdrop-renewal test"]


def test_the_command_does_not_inherit_the_daemons_blocked_signals():
    """Run from a thread that blocks SIGTERM (as every daemon thread does), the command
    starts with no blocked signal, so a timeout's SIGTERM ends it at once."""
    results: list[Finished] = []

    def blocked() -> None:
        signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGTERM, signal.SIGINT, signal.SIGHUP})
        results.append(handoff.run(["grep", "SigBlk", "/proc/self/status"], 30))
        started = time.monotonic()
        results.append(handoff.run(["sleep", "60"], 0.3))
        results.append(Finished(0, time.monotonic() - started, "", ""))

    thread = threading.Thread(target=blocked)
    thread.start()
    thread.join()
    mask, slept, took = results
    assert mask.output.split() == ["SigBlk:", "0000000000000000"]
    assert slept.exit_code is None and took.seconds < 1.5  # no SIGKILL grace was needed


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return False
    return state not in ("Z", "X")


def test_the_environment_is_passed_to_the_command():
    """An explicit environment reaches the command (lego reads its settings there)."""
    done = handoff.run(["sh", "-c", "echo $LEGO_EMAIL"], 30, env={**os.environ, "LEGO_EMAIL": "pki@example.test"})
    assert done.output == "pki@example.test"
