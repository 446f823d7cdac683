"""Making the machine misbehave for a real daemon: small tmpfs mounts that fill up, read-only
bind mounts, a stepped wall clock (libfaketime), resource limits, and a systemd notify
socket that counts watchdog pings.

Mounting needs root (these tests run as root here); each mount is undone in ``finally``
by the context manager that made it.
"""

from __future__ import annotations

import contextlib
import errno
import os
import resource
import shutil
import socket
import subprocess
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

# The thread-safe build: without its lock, libfaketime re-reading the timestamp file puts
# "+0" in a shared buffer first, and another thread parsing it meanwhile gets the real time
# (about 2,000 times in 400,000 time.time() calls from 4 threads here), which a daemon
# with threads rightly logs as clock steps there and back.
FAKETIME = Path("/usr/lib/x86_64-linux-gnu/faketime/libfaketimeMT.so.1")
MIB = 1024 * 1024


def need_root() -> None:
    """Skip (fail when CI=true) unless we may mount."""
    if os.geteuid() == 0 and shutil.which("mount"):
        return
    reason = "mounting tmpfs and bind mounts needs root and mount(8)"
    if os.environ.get("CI") == "true":
        pytest.fail(f"{reason} (CI=true)")
    pytest.skip(reason)


def _mount(*args: str) -> None:
    subprocess.run(["mount", *args], check=True, capture_output=True, timeout=30)


def _umount(target: Path) -> None:
    for _ in range(50):  # a process may still be leaving the mount
        done = subprocess.run(["umount", str(target)], capture_output=True, timeout=30)
        if done.returncode == 0:
            return
        time.sleep(0.1)
    subprocess.run(["umount", "-l", str(target)], capture_output=True, timeout=30)


@contextlib.contextmanager
def tmpfs(target: Path, size: str) -> Iterator[Path]:
    """A tmpfs of ``size`` on ``target`` (made if missing); unmounted afterwards."""
    need_root()
    target.mkdir(parents=True, exist_ok=True)
    _mount("-t", "tmpfs", "-o", f"size={size},mode=0700", "tmpfs", str(target))
    try:
        yield target
    finally:
        _umount(target)


@contextlib.contextmanager
def read_only_over(target: Path) -> Iterator[Path]:
    """A read-only bind of ``target`` mounted over it: every new open, create or rename
    under ``target`` then fails with EROFS, while descriptors a running daemon holds
    stay writable (remounting a mount read-only fails with EBUSY while it has writers,
    and a disk going read-only under a daemon looks like this to every new write)."""
    need_root()
    _mount("--bind", str(target), str(target))
    try:
        _mount("-o", "remount,bind,ro", str(target))
        yield target
    finally:
        _umount(target)


@contextlib.contextmanager
def writable_alias(target: Path, alias: Path) -> Iterator[Path]:
    """``target`` also reachable, writable, at ``alias`` (an uploader's view of an inbox
    that is read-only for the daemon)."""
    need_root()
    alias.mkdir(parents=True, exist_ok=True)
    _mount("--bind", str(target), str(alias))
    try:
        yield alias
    finally:
        _umount(alias)


def fill(folder: Path) -> Path:
    """Write a filler file in ``folder`` until its file system has no byte left."""
    filler = folder / ".filler"
    fd = os.open(filler, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        for size in (1 << 20, 4096, 1):
            while True:
                try:
                    os.write(fd, b"\0" * size)
                except OSError as exc:
                    assert exc.errno == errno.ENOSPC, exc
                    break
    finally:
        os.close(fd)
    return filler


def free(folder: Path) -> None:
    (folder / ".filler").unlink(missing_ok=True)


def limit_memory(megabytes: int) -> Callable[[], None]:
    """A preexec hook: RLIMIT_AS for the daemon (a failure cannot take the machine down)."""

    def apply() -> None:
        size = megabytes * MIB
        resource.setrlimit(resource.RLIMIT_AS, (size, size))

    return apply


def peak_rss_mib(pid: int) -> float:
    """VmHWM (peak resident set) of a live process, in MiB."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    raise AssertionError(f"no VmHWM for {pid}")


def children(pid: int) -> list[int]:
    found = []
    for task in Path(f"/proc/{pid}/task").iterdir():
        with contextlib.suppress(FileNotFoundError):
            found += [int(c) for c in (task / "children").read_text().split()]
    return found


def faketime_env(timestamp_file: Path) -> dict[str, str]:
    """libfaketime reading its offset from ``timestamp_file`` at every call; the monotonic
    clock stays real, as when NTP steps the wall clock."""
    if not FAKETIME.exists():
        reason = "libfaketime is not installed (apt-get install faketime)"
        if os.environ.get("CI") == "true":
            pytest.fail(reason)
        pytest.skip(reason)
    set_faketime(timestamp_file, "+0")
    return {
        "LD_PRELOAD": str(FAKETIME),
        "FAKETIME_TIMESTAMP_FILE": str(timestamp_file),
        "FAKETIME_NO_CACHE": "1",
        "FAKETIME_DONT_FAKE_MONOTONIC": "1",
    }


def set_faketime(timestamp_file: Path, offset: str) -> None:
    """Step the faked clock to ``offset`` ("+0", "-1d") in one rename: libfaketime reads the
    file at every call, and a write in place can be read empty, which it takes as no offset
    (a step there and back the daemon rightly logs)."""
    part = timestamp_file.with_name(timestamp_file.name + ".part")
    part.write_text(offset + "\n")
    os.replace(part, timestamp_file)


class NotifySocket:
    """An AF_UNIX datagram socket standing in for systemd's NOTIFY_SOCKET: every message
    with the monotonic time it was read. A reader thread takes them off the socket, so a
    message the daemon sent may not be here yet when its log line is: wait for it."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sock.bind(os.fspath(path))
        self.sock.settimeout(0.05)
        self.messages: list[tuple[float, str]] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._read, name="notify-sink", daemon=True)
        self._thread.start()

    def env(self, watchdog_seconds: float) -> dict[str, str]:
        return {
            "NOTIFY_SOCKET": os.fspath(self.path),
            "WATCHDOG_USEC": str(int(watchdog_seconds * 1_000_000)),
        }

    def _read(self) -> None:
        while not self._stop.is_set():
            try:
                data = self.sock.recv(4096).decode()
            except TimeoutError:
                continue
            except OSError:
                return
            self.messages.append((time.monotonic(), data))

    def texts(self) -> list[str]:
        return [m for _, m in self.messages]

    def wait_for(self, text: str, timeout: float = 10, after: int = 0) -> float:
        """When the first message from index ``after`` on starting with ``text`` came."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for at, message in list(self.messages)[after:]:
                if message.startswith(text):
                    return at
            time.sleep(0.01)
        raise AssertionError(f"no {text!r} among {self.texts()[-10:]}")

    def pings_between(self, start: float, end: float) -> int:
        return sum(start <= at <= end and m == "WATCHDOG=1" for at, m in list(self.messages))

    def close(self) -> None:
        self._stop.set()
        self._thread.join()
        self.sock.close()
