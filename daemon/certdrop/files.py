"""Crash-safe file writes: temp name in the same folder, fsync, rename, fsync the folder."""

from __future__ import annotations

import contextlib
import errno
import os
import secrets
from collections.abc import Iterator
from pathlib import Path
from typing import BinaryIO


def atomic_write(path: Path, data: bytes, mode: int = 0o600) -> None:
    """Replace ``path`` with ``data``; readers see the old or the new file, never a mix."""
    with replacing(path, mode) as out:
        out.write(data)


@contextlib.contextmanager
def replacing(path: Path, mode: int = 0o600, gid: int = -1) -> Iterator[BinaryIO]:
    """Write a new ``path`` through the yielded file; it replaces the old one atomically
    when the block ends, and is discarded if the block raises. ``gid`` (-1: keep) is set
    before the first byte, like the mode."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    # The name is this process's own: one left by an earlier failed write (the disk was
    # full or read-only, so it could not be removed then) goes now, or every later
    # write would fail on it.
    with contextlib.suppress(FileNotFoundError):
        tmp.unlink()
    fd = _create(tmp, mode, -1, gid)
    try:
        with os.fdopen(fd, "wb") as out:
            yield out
            out.flush()
            os.fsync(out.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):  # the original error is the one to report
            tmp.unlink()
        raise
    fsync_dir(path.parent)


def write_new(path: Path, data: bytes, mode: int, uid: int = -1, gid: int = -1) -> None:
    """Create ``path`` (it must not exist), write ``data`` and fsync it."""
    fd = _create(path, mode, uid, gid)
    try:
        view = memoryview(data)
        while view:
            view = view[os.write(fd, view) :]
        os.fsync(fd)
    except BaseException:
        os.close(fd)
        with contextlib.suppress(FileNotFoundError):
            path.unlink()
        raise
    os.close(fd)


def publish(path: Path, data: bytes, mode: int, *, replace: bool = False) -> None:
    """Write a new file ``path`` that appears whole or not at all.

    The bytes go to an exclusive temp file in the same folder (mode set before the first
    byte), fsynced; without ``replace`` it is then hard-linked to ``path``, which fails with
    FileExistsError if anything is there (even a dangling symlink), so nothing is ever
    overwritten; with ``replace`` it is renamed over ``path`` (a symlink is replaced, not
    followed). File systems without hard links get a check, then a rename.
    """
    tmp = path.with_name(f".{path.name}.{secrets.token_hex(4)}.tmp")
    try:
        write_new(tmp, data, mode)
        if replace:
            os.replace(tmp, path)
        else:
            try:
                os.link(tmp, path, follow_symlinks=False)
            except FileExistsError:
                raise
            except OSError as exc:
                if exc.errno not in (errno.EPERM, errno.EOPNOTSUPP, errno.EMLINK):
                    raise
                if os.path.lexists(path):
                    raise FileExistsError(errno.EEXIST, "File exists", str(path)) from None
                os.rename(tmp, path)
    finally:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
    fsync_dir(path.parent)


def _create(path: Path, mode: int, uid: int = -1, gid: int = -1) -> int:
    """Create ``path`` exclusively; owner and mode are set before the first byte is
    written (no window with wider permissions), so this is safe for keys. -1 keeps the
    uid or gid."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600)
    try:
        if uid != -1 or gid != -1:
            os.fchown(fd, uid, gid)
        os.fchmod(fd, mode)  # after chown, which may clear bits; the umask may have narrowed it
    except BaseException:
        os.close(fd)
        with contextlib.suppress(FileNotFoundError):
            path.unlink()
        raise
    return fd


def fsync_dir(folder: Path) -> None:
    """Make a rename or unlink in ``folder`` durable."""
    fd = os.open(folder, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def private_dir(path: Path) -> Path:
    """Create ``path`` (and parents) as 0700 if missing; tighten it if it is wider."""
    path.mkdir(mode=0o700, parents=True, exist_ok=True)
    if path.stat().st_mode & 0o077:
        path.chmod(0o700)
    return path


def remove_stale_temps(folder: Path) -> list[str]:
    """Remove the ``.NAME.PID.tmp`` files a writer killed mid-write left in ``folder``.

    Only for the holder of the state lock, who is the only writer of these folders. The
    folder is opened without following a symlink (the uploader owns inbox/rejected).
    """
    try:
        fd = os.open(folder, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW)
    except OSError:
        return []  # missing, or not a real folder: nothing of ours to clean
    removed = []
    try:
        for name in os.listdir(fd):
            pid = name[:-4].rpartition(".")[2] if name.endswith(".tmp") else ""
            if name.startswith(".") and pid.isdigit():
                with contextlib.suppress(FileNotFoundError, IsADirectoryError):
                    os.unlink(name, dir_fd=fd)
                    removed.append(name)
    finally:
        os.close(fd)
    return removed
