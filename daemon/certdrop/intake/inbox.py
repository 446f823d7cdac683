"""The inbox as files: which names are drops, claiming one, reading it without following
anything, and handing a rejection back to the uploader.

The uploader owns the inbox and may rename anything in it at any moment, including our
own ``.claimed`` and ``rejected`` folders. So both are opened with O_NOFOLLOW, checked,
and then used only through their descriptors: swapping either for a symlink afterwards
changes nothing we read or write.
"""

from __future__ import annotations

import contextlib
import errno
import os
import stat
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from certdrop import jsontext
from certdrop.errors import Rejection

CLAIMED = ".claimed"
REJECTED = "rejected"
IN_PROGRESS_SUFFIXES = (".part", ".filepart", ".tmp", "~")
_DIR = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC


def is_drop_name(name: str) -> bool:
    """True for a name the watcher should process; dot-files and partial uploads wait."""
    return (
        bool(name)
        and not name.startswith(".")
        and not name.endswith(IN_PROGRESS_SUFFIXES)
        and name != REJECTED
    )


def display_name(name: str) -> str:
    """A file name as logged and stored: bytes that are not UTF-8 (which the file system
    allows, and Python carries as lone surrogates that neither SQLite nor strict JSON
    parsers take) become ``\\xNN``."""
    return os.fsencode(name).decode("utf-8", "backslashreplace")


@dataclass
class Claim:
    """A drop moved out of the inbox: ``entry`` in the folder open as ``folder``.

    ``id`` orders claims and keys their result in the inventory. A name too long to
    carry the id in front lives alone in a sub-folder named by the id (``nested``).
    """

    id: str
    name: str
    folder: int
    entry: str
    nested: bool = False

    def close(self) -> None:
        if self.folder >= 0:
            os.close(self.folder)
            self.folder = -1


class Inbox:
    """The file side of intake; owned by the worker thread."""

    def __init__(self, path: Path, max_bytes: int, *, prepare: bool = True) -> None:
        self.path = path
        self.max_bytes = max_bytes
        if prepare:  # not for `certdrop inspect`, which must change nothing
            os.close(self._claimed())

    def pending(self) -> list[str]:
        """Drops in the inbox now, oldest first (for the start-up scan)."""
        found = []
        with os.scandir(self.path) as it:
            for item in it:
                if is_drop_name(item.name):
                    try:
                        found.append((item.stat(follow_symlinks=False).st_mtime, item.name))
                    except FileNotFoundError:
                        continue
        return [name for _, name in sorted(found)]

    # -- claims ---------------------------------------------------------------------
    def claim(self, name: str) -> Claim | None:
        """Move ``inbox/name`` into ``.claimed``; None when it is gone."""
        claimed = self._claimed()
        claim_id = f"{time.time_ns():020d}"
        if len(os.fsencode(name)) <= 200:
            found = Claim(claim_id, name, claimed, f"{claim_id}.{name}")
        else:  # keep the whole name: it would not fit behind the claim id
            try:
                os.mkdir(claim_id, 0o700, dir_fd=claimed)
                folder = os.open(claim_id, _DIR, dir_fd=claimed)
            finally:
                os.close(claimed)
            found = Claim(claim_id, name, folder, name, nested=True)
        try:
            moved = self._move_in(found)
        except BaseException:
            found.close()  # a full or read-only inbox: the drop stays where it is
            raise
        if moved:
            return found
        self.remove(found)
        return None

    def _move_in(self, claim: Claim) -> bool:
        """Link + unlink rather than rename: a rename out of the watched inbox is an
        unmatched IN_MOVED_FROM, which watchdog holds for 0.5 s to pair it, stalling every
        event behind it. Folders and files we may not link (protected_hardlinks) are
        renamed."""
        source = self.path / claim.name
        try:
            os.link(source, claim.entry, dst_dir_fd=claim.folder, follow_symlinks=False)
        except FileNotFoundError:
            return False
        except OSError:
            try:
                os.rename(source, claim.entry, dst_dir_fd=claim.folder)
            except FileNotFoundError:
                return False
            return True
        self.forget_twin(claim)
        return True

    def forget_twin(self, claim: Claim) -> None:
        """Unlink the inbox's copy if it is the very file claimed (never a newer upload)."""
        source = self.path / claim.name
        try:
            claimed = os.stat(claim.entry, dir_fd=claim.folder, follow_symlinks=False)
            if os.path.samestat(os.lstat(source), claimed):
                os.unlink(source)
        except FileNotFoundError:
            pass

    def leftovers(self) -> list[Claim]:
        """Claims a crash left behind, oldest first."""
        claimed = self._claimed()
        found = []
        try:
            for entry in sorted(os.listdir(claimed)):
                claim_id, dot, name = entry.partition(".")
                if dot:
                    found.append(Claim(claim_id, name, os.dup(claimed), entry))
                    continue
                try:
                    folder = os.open(entry, _DIR, dir_fd=claimed)
                except OSError:
                    continue  # not a folder of ours
                inside = os.listdir(folder)
                if inside:
                    found.append(Claim(claim_id, inside[0], folder, inside[0], nested=True))
                else:
                    os.close(folder)
                    os.rmdir(entry, dir_fd=claimed)
        finally:
            os.close(claimed)
        return found

    def remove(self, claim: Claim) -> None:
        """Forget a claim whose result is committed."""
        try:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(claim.entry, dir_fd=claim.folder)
        finally:
            claim.close()
        if claim.nested:
            claimed = self._claimed()
            try:
                with contextlib.suppress(FileNotFoundError, OSError):
                    os.rmdir(claim.id, dir_fd=claimed)
            finally:
                os.close(claimed)

    def _claimed(self) -> int:
        """A descriptor of inbox/.claimed (0700, ours), re-made if it was replaced."""
        path = self.path / CLAIMED
        for _ in range(3):
            try:
                fd = os.open(path, _DIR)
            except FileNotFoundError:
                fd = -1
            except OSError as exc:
                if exc.errno not in (errno.ENOTDIR, errno.ELOOP):
                    raise
                os.rename(path, self.path / f".claimed-suspect-{time.time_ns()}")
                fd = -1
            if fd >= 0:
                st = os.fstat(fd)
                if st.st_uid == os.geteuid() and not st.st_mode & 0o077:
                    return fd
                os.close(fd)
                os.rename(path, self.path / f".claimed-suspect-{time.time_ns()}")
            with contextlib.suppress(FileExistsError):
                os.mkdir(path, 0o700)
        raise OSError(errno.ELOOP, f"{path} keeps being replaced; not claiming drops there")

    # -- reading --------------------------------------------------------------------
    def read(self, claim: Claim) -> bytes:
        """The drop's bytes; only a regular, single-linked, small enough file is opened."""
        st = os.stat(claim.entry, dir_fd=claim.folder, follow_symlinks=False)
        if not stat.S_ISREG(st.st_mode):
            raise Rejection(
                "not_regular_file",
                f"this is a {_kind(st.st_mode)}, not a regular file; it was not opened or "
                "followed. Upload the certificate file itself",
            )
        if st.st_nlink > 1:
            raise Rejection(
                "not_regular_file",
                "this file has other hard links, so it may belong to somewhere outside the "
                "inbox; it was not read. Copy the file into the inbox instead of linking it",
            )
        limit = self.max_bytes
        if st.st_size > limit:
            raise Rejection(
                "too_large",
                f"the file has {st.st_size} bytes, more than intake.max_file_bytes ({limit}); "
                "certificates, keys and chains are far smaller. Check what was uploaded",
            )
        flags = os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_NOCTTY | os.O_CLOEXEC
        fd = os.open(claim.entry, flags, dir_fd=claim.folder)
        try:
            now = os.fstat(fd)
            if not stat.S_ISREG(now.st_mode) or now.st_ino != st.st_ino:
                raise Rejection(
                    "not_regular_file", "the file changed while it was claimed; upload it again"
                )
            chunks, size = [], 0
            while size <= limit:
                chunk = os.read(fd, min(65536, limit + 1 - size))
                if not chunk:
                    break
                chunks.append(chunk)
                size += len(chunk)
        finally:
            os.close(fd)
        if size > limit:
            raise Rejection("too_large", f"the file grew past intake.max_file_bytes ({limit})")
        return b"".join(chunks)

    # -- rejections -----------------------------------------------------------------
    def reject(self, claim: Claim, reason: dict[str, Any], announce: Any) -> None:
        """Hand a rejected drop back: ``rejected/NAME.reason.json`` first, then
        ``announce()`` (the log line), then the drop itself moves to ``rejected/NAME``.

        In that order a kill -9 in between repeats them at recovery (same file, same
        result) instead of losing them.
        """
        folder = self._rejected()
        try:
            target = self._write_reason(folder, claim, reason)
            announce()
            with contextlib.suppress(FileNotFoundError):
                os.replace(claim.entry, target, src_dir_fd=claim.folder, dst_dir_fd=folder)
            os.fsync(folder)
        finally:
            os.close(folder)
        self.remove(claim)

    def _rejected(self) -> int:
        """A descriptor of inbox/rejected, made (0755, the uploader's) if missing."""
        path = self.path / REJECTED
        for _ in range(3):
            try:
                return os.open(path, _DIR)
            except FileNotFoundError:
                pass
            except OSError as exc:
                if exc.errno not in (errno.ENOTDIR, errno.ELOOP):
                    raise
                os.rename(path, self.path / f".rejected-suspect-{time.time_ns()}")
            with contextlib.suppress(FileExistsError):
                os.mkdir(path, 0o755)
                fd = os.open(path, _DIR)
                try:
                    os.fchmod(fd, 0o755)  # the uploader reads its reasons here; umask is 077
                    self._give_to_uploader(fd)
                finally:
                    os.close(fd)
        raise OSError(errno.ELOOP, f"{path} keeps being replaced; not writing rejections there")

    def _write_reason(self, folder: int, claim: Claim, reason: dict[str, Any]) -> str:
        """Write NAME.reason.json in ``folder`` atomically; return the drop's new name."""
        target = claim.name
        if len(os.fsencode(target)) > 243:  # room for ".reason.json" within NAME_MAX
            target = os.fsdecode(os.fsencode(target)[:223]) + f".{time.time_ns()}"
        with contextlib.suppress(FileNotFoundError):
            existing = os.stat(target, dir_fd=folder, follow_symlinks=False).st_mode
            ours = os.stat(claim.entry, dir_fd=claim.folder, follow_symlinks=False).st_mode
            # rename() cannot put a folder over a file, or anything over a folder.
            if stat.S_ISDIR(existing) or stat.S_ISDIR(ours):
                target = f"{target}.{time.time_ns()}"
        data = (jsontext.dumps(reason) + "\n").encode("utf-8")
        tmp = f".reason.{os.getpid()}.tmp"
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp, dir_fd=folder)
        flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC
        fd = os.open(tmp, flags, 0o644, dir_fd=folder)
        try:
            os.fchmod(fd, 0o644)
            self._give_to_uploader(fd)
            os.write(fd, data)
            os.fsync(fd)
        finally:
            os.close(fd)
        os.replace(tmp, f"{target}.reason.json", src_dir_fd=folder, dst_dir_fd=folder)
        return target

    def _give_to_uploader(self, fd: int) -> None:
        """Rejections belong to the inbox's owner, who reads and clears them."""
        if os.geteuid() == 0:
            owner = self.path.stat()
            os.fchown(fd, owner.st_uid, owner.st_gid)


def _kind(mode: int) -> str:
    for test, name in (
        (stat.S_ISLNK, "symbolic link"),
        (stat.S_ISFIFO, "FIFO"),
        (stat.S_ISDIR, "folder"),
        (stat.S_ISSOCK, "socket"),
        (stat.S_ISCHR, "character device"),
        (stat.S_ISBLK, "block device"),
    ):
        if test(mode):
            return name
    return "special file"
