"""Running ``renewal.command``: fill in its argv, run it off the worker, keep its output safe.

``fill`` and ``scrub`` are pure. :class:`CommandRun` runs one command in its own thread
and process group (so a timeout ends lego *and* the children it started), keeps only the
tail of its output, and hands a :class:`Finished` to a callback; it never touches the
inventory (the callback submits the result to the worker).
"""

from __future__ import annotations

import os
import re
import selectors
import signal
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

from certdrop.spawn import end_group, spawn_piped

OUTPUT_KEPT = 65536  # bytes of output read and kept (the tail); the rest is discarded
OUTPUT_LOGGED = 2000  # characters of scrubbed output that reach the status log
_GRACE = 2.0  # seconds between SIGTERM and SIGKILL, and for a closed pipe after exit
_POLL = 0.1  # how often a running command notices a daemon that stops


def fill(template: Sequence[str], values: Mapping[str, str]) -> list[str]:
    """``template`` with ``{csr}``, ``{name}``, ``{inbox}``, ``{outbox}`` replaced.

    Plain substring replacement, not ``str.format``: other braces (a shell snippet, a
    JSON argument) pass through untouched, and a value is never expanded again.
    """
    pattern = re.compile("|".join(re.escape("{" + key + "}") for key in values))
    return [pattern.sub(lambda m: values[m.group(0)[1:-1]], arg) for arg in template]


_PEM_KEY = re.compile(
    r"-----BEGIN [A-Z0-9 ]*PRIVATE KEY-----.*?(?:-----END [A-Z0-9 ]*PRIVATE KEY-----|\Z)",
    re.DOTALL,
)
# The tail of a key block whose BEGIN line was cut off with the head of the output.
_PEM_KEY_TAIL = re.compile(r"\A.*?-----END [A-Z0-9 ]*PRIVATE KEY-----", re.DOTALL)
_ASSIGNMENT = re.compile(
    r"(?i)\b([\w.-]*(?:password|passwd|passphrase|secret|token|hmac|api[_-]?key|"
    r"private[_-]?key|credential)[\w.-]*)(\"?\s*[=:]\s*\"?)([^\s\"',;]+)"
)
_FLAG = re.compile(
    r"(?i)(--?[\w.-]*(?:password|passphrase|secret|token|hmac|api[_-]?key)[\w.-]*[ =])(\S+)"
)
_BEARER = re.compile(r"(?i)\b(bearer|basic)\s+[A-Za-z0-9._~+/=-]{8,}")
_URL_PASSWORD = re.compile(r"(?i)\b([a-z][a-z0-9+.-]*://[^\s/:@]+:)[^\s/@]+@")


def scrub(text: str, limit: int = OUTPUT_LOGGED) -> str:
    """``text`` without secrets, cut to its last ``limit`` characters.

    Removes private-key PEM blocks (also one cut in half), ``password=...``-like
    assignments and options, bearer/basic credentials and passwords in URLs. A command
    should not print secrets; this is the belt to those braces.
    """
    cut = _PEM_KEY_TAIL.match(text)
    if cut is not None and "PRIVATE KEY-----" not in cut.group(0)[: -len("PRIVATE KEY-----")]:
        text = "[private key removed]" + text[cut.end() :]
    text = _PEM_KEY.sub("[private key removed]", text)
    text = _ASSIGNMENT.sub(r"\1\2[redacted]", text)
    text = _FLAG.sub(r"\1[redacted]", text)
    text = _BEARER.sub(r"\1 [redacted]", text)
    text = _URL_PASSWORD.sub(r"\1[redacted]@", text)
    text = text.strip()
    if len(text) > limit:
        text = "[...] " + text[-limit:]
    return text


@dataclass(frozen=True)
class Finished:
    """How one run of the command ended. ``exit_code`` is None when it did not exit
    by itself (it could not start, timed out, or the daemon stopped it)."""

    exit_code: int | None
    seconds: float
    output: str  # scrubbed and cut
    reason: str  # one sentence when it failed; "" when it exited 0
    interrupted: bool = False  # the daemon stopped it: not the command's failure

    @property
    def ok(self) -> bool:
        return self.exit_code == 0


class CommandRun:
    """One run of ``argv`` with ``timeout``, in a thread; ``done(finished)`` is called
    from that thread when it ends."""

    def __init__(
        self,
        argv: Sequence[str],
        timeout: float,
        done: Callable[[Finished], None],
        *,
        env: Mapping[str, str] | None = None,
        name: str = "certdrop-renewal",
    ) -> None:
        self.argv = list(argv)
        self.timeout = timeout
        self.done = done
        self.env = env
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name=name)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        """End the command (its whole process group) and wait for the thread."""
        self._stop.set()
        if self._thread.is_alive() and self._thread is not threading.current_thread():
            self._thread.join()

    @property
    def running(self) -> bool:
        return self._thread.is_alive()

    def wait(self) -> None:
        """Wait for the command to end by itself (within its timeout)."""
        self._thread.join()

    def _run(self) -> None:
        self.done(run(self.argv, self.timeout, self._stop, env=self.env))


def run(
    argv: Sequence[str],
    timeout: float,
    stop: threading.Event | None = None,
    *,
    env: Mapping[str, str] | None = None,
) -> Finished:
    """Run ``argv`` (no shell, stdin from /dev/null, stdout+stderr together) to its end."""
    started = time.monotonic()
    program = argv[0] if argv else "(empty command)"
    try:
        child, output_fd = spawn_piped(argv, env)
    except (OSError, ValueError, IndexError) as exc:
        why = getattr(exc, "strerror", None) or exc
        reason = f"renewal.command could not start {program}: {why}"
        return Finished(None, time.monotonic() - started, "", reason)
    tail = bytearray()
    deadline = started + timeout
    reason = ""
    interrupted = False
    exited_at: float | None = None
    try:
        with selectors.DefaultSelector() as selector:
            selector.register(output_fd, selectors.EVENT_READ)
            while True:
                now = time.monotonic()
                if stop is not None and stop.is_set():
                    interrupted, reason = True, "stopped because the daemon stopped"
                    break
                if now >= deadline:
                    reason = f"timed out after {timeout:g} s (renewal.timeout_seconds)"
                    break
                if exited_at is None and child.poll() is not None:
                    exited_at = now
                if exited_at is not None and now - exited_at > _GRACE:
                    break  # exited, but a background child still holds the pipe open
                if selector.select(min(_POLL, deadline - now)):
                    chunk = os.read(output_fd, 65536)
                    if not chunk:
                        break  # every writer closed the pipe
                    tail += chunk
                    del tail[:-OUTPUT_KEPT]
    finally:
        end_group(child, _GRACE)
        os.close(output_fd)
    exit_code = None if reason else child.returncode
    if exit_code is not None and exit_code != 0:
        reason = (
            f"{program} exited {exit_code}"
            if exit_code > 0
            else f"{program} was killed by signal {_signal_name(-exit_code)}"
        )
    output = scrub(tail.decode("utf-8", errors="replace"))
    return Finished(exit_code, time.monotonic() - started, output, reason, interrupted)


def _signal_name(number: int) -> str:
    try:
        return signal.Signals(number).name
    except ValueError:
        return str(number)
