"""Process helpers for real services: free ports, bounded waits, stopping a whole tree by PID."""

from __future__ import annotations

import contextlib
import hashlib
import os
import shutil
import signal
import socket
import subprocess
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from types import TracebackType
from typing import Self

import pytest

LOOPBACK = "127.0.0.1"
DROP_USER = "certdrop-drop"
# The sshd chroot must be root-owned on a path with no group/world-writable component,
# which rules out /tmp (1777); every Sshd gets its own folder here and removes it.
SSHD_ROOT = Path("/srv/certdrop-tests")
READY_TIMEOUT = 15.0
COMMAND_TIMEOUT = 30.0
SBIN = ("/usr/sbin", "/sbin", "/usr/local/sbin")


# --------------------------------------------------------------------------- helpers


def need(binary: str) -> str:
    """Return the path of ``binary``; skip the test without it (fail it when CI=true)."""
    found = shutil.which(binary) or shutil.which(binary, path=os.pathsep.join(SBIN))
    if found:
        return found
    reason = f"{binary} is not installed; install it (apt-get install ...) to run this test"
    if os.environ.get("CI") == "true":
        pytest.fail(f"{reason} (CI=true, so a missing service is a failure)")
    pytest.skip(reason)


def free_port() -> int:
    """Return a TCP port on 127.0.0.1 that nothing listened on a moment ago."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((LOOPBACK, 0))
        port: int = sock.getsockname()[1]
        return port


def sha256_hex(der: bytes) -> str:
    """Return the lowercase sha256 hex of ``der`` (a certificate fingerprint)."""
    return hashlib.sha256(der).hexdigest()


def run(
    argv: list[str],
    *,
    timeout: float = COMMAND_TIMEOUT,
    env: Mapping[str, str] | None = None,
    input_text: str | None = None,
) -> subprocess.CompletedProcess[str]:
    """Run ``argv``; raise RuntimeError with its output unless it exits 0."""
    proc = subprocess.run(
        argv,
        capture_output=True,
        text=True,
        timeout=timeout,
        env=env,
        input=input_text,
        stdin=None if input_text is not None else subprocess.DEVNULL,
        check=False,
    )
    if proc.returncode != 0:
        raise RuntimeError(
            f"{argv[0]} exited {proc.returncode}: {' '.join(argv)}\n"
            f"{proc.stdout}{proc.stderr}".rstrip()
        )
    return proc


def write_private(path: Path, data: bytes) -> None:
    """Write key material 0600 from the start (never world-readable, even briefly)."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as out:
        out.write(data)


def port_open(port: int) -> bool:
    try:
        with socket.create_connection((LOOPBACK, port), timeout=0.5):
            return True
    except OSError:
        return False


def banner(port: int) -> bytes:
    """Return the first bytes a server sends on connect, b'' if none."""
    try:
        with socket.create_connection((LOOPBACK, port), timeout=1.0) as sock:
            return sock.recv(64)
    except OSError:
        return b""


# ------------------------------------------------------------------ process trees


def proc_stat(pid: int) -> tuple[str, int, int] | None:
    """(state, ppid, starttime) of ``pid`` from /proc, None if it is gone."""
    try:
        data = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    fields = data[data.rindex(")") + 2 :].split()
    return fields[0], int(fields[1]), int(fields[19])


def any_alive(pids: list[int]) -> list[int]:
    """Those of ``pids`` that still run (zombies count as gone)."""
    return [pid for pid in pids if (stat := proc_stat(pid)) is not None and stat[0] not in "ZX"]


def alive(pid: int, starttime: int) -> bool:
    stat = proc_stat(pid)
    return stat is not None and stat[2] == starttime and stat[0] not in ("Z", "X")


def process_tree(roots: Mapping[int, int]) -> dict[int, int]:
    """The live ``roots`` ({pid: starttime}) and all their descendants, parents first.

    A root whose start time differs is a recycled PID and is left out, with its children.
    """
    children: dict[int, list[tuple[int, int]]] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            stat = proc_stat(int(entry.name))
            if stat is not None:
                children.setdefault(stat[1], []).append((int(entry.name), stat[2]))
    found = {pid: start for pid, start in roots.items() if alive(pid, start)}
    todo = list(found)
    while todo:
        for pid, start in children.get(todo.pop(0), []):
            if pid not in found:
                found[pid] = start
                todo.append(pid)
    return found


class ServiceProcess:
    """One started daemon: its Popen, its log file, and how to stop its whole tree."""

    def __init__(
        self, name: str, argv: list[str], log: Path, env: Mapping[str, str] | None = None
    ) -> None:
        self.name = name
        self.argv = argv
        self.log = log
        with log.open("ab") as out:
            # A new session, so a Ctrl-C in the test run reaches pytest, not the daemon.
            self.popen = subprocess.Popen(
                argv,
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                env=env,
                start_new_session=True,
            )

    @property
    def pid(self) -> int:
        return self.popen.pid

    def running(self) -> bool:
        return self.popen.poll() is None

    def pids(self) -> list[int]:
        """The live processes of this service: the started one and all its descendants."""
        root = proc_stat(self.popen.pid) if self.popen.returncode is None else None
        return list(process_tree({self.popen.pid: root[2]})) if root is not None else []

    def log_tail(self, chars: int = 3000) -> str:
        try:
            return self.log.read_text(errors="replace")[-chars:]
        except OSError:
            return ""

    def wait_until(
        self,
        ready: Callable[[], bool],
        what: str,
        timeout: float = READY_TIMEOUT,
        extra_log: Callable[[], str] = str,
    ) -> float:
        """Poll ``ready`` until true; return the seconds it took. Raise if the daemon dies."""
        start = time.monotonic()
        while True:
            if ready():
                return time.monotonic() - start
            if not self.running():
                raise RuntimeError(
                    f"{self.name} exited {self.popen.returncode} before "
                    f"{what}:\n{self.log_tail()}{extra_log()}"
                )
            if time.monotonic() - start > timeout:
                raise RuntimeError(
                    f"{self.name} did not get {what} within {timeout:g} s:\n"
                    f"{self.log_tail()}{extra_log()}"
                )
            time.sleep(0.02)

    def stop(
        self, main_pid: int | None = None, sig: int = signal.SIGTERM, grace: float = 5.0
    ) -> None:
        """Signal ``main_pid`` (default: the started process), then SIGKILL what is left.

        The tree is taken from /proc before signalling, and only processes with the same
        start time are killed, so a recycled PID is never hit.
        """
        root = proc_stat(self.popen.pid) if self.popen.returncode is None else None
        tree = process_tree({self.popen.pid: root[2]}) if root is not None else {}
        target = main_pid if main_pid in tree else self.popen.pid
        if target in tree:
            with contextlib.suppress(ProcessLookupError):
                os.kill(target, sig)
            deadline = time.monotonic() + grace
            while alive(target, tree[target]) and time.monotonic() < deadline:
                self.popen.poll()  # reaps the started process if it was the target
                time.sleep(0.02)
        for _ in range(3):  # a dying parent may still fork; look again
            tree = process_tree(tree)
            if not tree:
                break
            for pid in reversed(list(tree)):
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)
            time.sleep(0.05)
        try:
            self.popen.wait(timeout=grace)
        except subprocess.TimeoutExpired:
            self.popen.kill()
            self.popen.wait(timeout=grace)


class Service:
    """Context-manager plumbing: start in ``_start``, stop in ``stop``, stop on a failed start."""

    def _start(self) -> None:
        raise NotImplementedError

    def stop(self) -> None:
        raise NotImplementedError

    def __enter__(self) -> Self:
        try:
            self._start()
        except BaseException:
            self.stop()
            raise
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()


# --------------------------------------------------------------------------- nginx
