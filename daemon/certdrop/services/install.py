"""A service's files on disk: install a set, keep the last good set, put it back.

Install: every file is written to ``.NAME.certdrop-tmp`` in its own folder (created 0600,
given its owner and mode, written, fsynced) before the first rename; then the renames run
in the plan's order (key first, certificate last) and each folder is fsynced. A failure
before the first rename changes nothing.

The last good set of a service is kept in ``state/deployed/SERVICE.json`` (0600 in the
0700 state folder): the files as they were before certdrop first wrote them, replaced by
each set a probe proved. It lives in state rather than as ``FILE.certdrop-prev`` beside
the service's files because a crash in the middle of a deploy must not turn the half-done
files into "the previous ones", and because a second copy of a key does not belong in
folders the operator shares with the service (backups, config management, globbing).
"""

from __future__ import annotations

import base64
import contextlib
import json
import os
import stat
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from certdrop.errors import CertdropError
from certdrop.files import atomic_write, fsync_dir, private_dir, write_new
from certdrop.pki.layout import INSTALL_ORDER, ServiceFile, leaf_sha256

TMP_SUFFIX = ".certdrop-tmp"
KEEP = -1  # uid/gid: leave as created (the daemon's own)


class FileError(CertdropError):
    """A service file could not be written, read or restored; ``reason`` says which and why.

    ``changed`` is True when some file had already been renamed into place.
    """

    def __init__(self, reason: str, *, changed: bool = False) -> None:
        self.reason = reason
        self.changed = changed
        super().__init__(reason)


@dataclass(frozen=True)
class SavedFile:
    """A file as it was: its bytes (None if it did not exist) or the target of a symlink."""

    role: str
    path: Path
    data: bytes | None
    mode: int = 0o600
    uid: int = KEEP
    gid: int = KEEP
    link: str | None = None

    def __repr__(self) -> str:  # keep key bytes out of tracebacks
        size = "absent" if self.data is None else f"{len(self.data)} bytes"
        return f"SavedFile({self.role}, {self.path}, {size})"


@dataclass(frozen=True)
class Saved:
    """The last good set of a service's files, and the fingerprint they serve if known."""

    sha256: str | None
    files: tuple[SavedFile, ...]

    def served_sha256(self) -> str | None:
        """What a service reading these files serves: the recorded proof, else the leaf."""
        if self.sha256:
            return self.sha256
        for role in ("combined_file", "cert_file"):
            for file in self.files:
                if file.role == role and file.data is not None:
                    return leaf_sha256(file.data)
        return None


# -- the last good set ------------------------------------------------------------------
def _saved_path(state: Path, service: str) -> Path:
    return state / "deployed" / f"{service}.json"


def load_saved(state: Path, service: str) -> Saved | None:
    """The last good set recorded for ``service``, or None if there is none."""
    try:
        data = json.loads(_saved_path(state, service).read_bytes())
        return Saved(
            data.get("sha256"),
            tuple(
                SavedFile(
                    f["role"],
                    Path(f["path"]),
                    base64.b64decode(f["data"]) if f.get("data") is not None else None,
                    int(f.get("mode", 0o600)),
                    int(f.get("uid", KEEP)),
                    int(f.get("gid", KEEP)),
                    f.get("link"),
                )
                for f in data["files"]
            ),
        )
    except FileNotFoundError:
        return None
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise FileError(
            f"{_saved_path(state, service)} (the previous files of {service}) cannot be read "
            f"({type(exc).__name__}); move it away to start over from the files on disk"
        ) from None


def _store(state: Path, service: str, saved: Saved) -> None:
    record: dict[str, Any] = {
        "service": service,
        "sha256": saved.sha256,
        "files": [
            {
                "role": f.role,
                "path": str(f.path),
                "data": None if f.data is None else base64.b64encode(f.data).decode(),
                "mode": f.mode,
                "uid": f.uid,
                "gid": f.gid,
                "link": f.link,
            }
            for f in saved.files
        ],
    }
    private_dir(state / "deployed")
    atomic_write(_saved_path(state, service), json.dumps(record, indent=1).encode(), 0o600)


def forget_baseline(state: Path, service: str) -> bool:
    """Drop the last good set of ``service`` (``certdrop unassign``: the files on disk are
    the operator's again, so a later assign keeps those, not ours); True if there was one."""
    try:
        _saved_path(state, service).unlink()
    except FileNotFoundError:
        return False
    fsync_dir(state / "deployed")
    return True


def keep_baseline(state: Path, service: str, files: Sequence[ServiceFile]) -> Saved:
    """The set to roll back to; any planned path it lacks is first read from disk and kept.

    On the first deploy that is the operator's files; after a proven deploy it is that
    deploy's files. Stored before anything is written, so a crash cannot lose it.
    """
    saved = load_saved(state, service) or Saved(None, ())
    known = {f.path for f in saved.files}
    missing = [read_current(f.role, f.path) for f in files if f.path not in known]
    if missing:
        saved = Saved(saved.sha256, (*saved.files, *missing))
        _store(state, service, saved)
    return saved


def save_good(
    state: Path, service: str, files: Sequence[ServiceFile], uid: int, gid: int, sha256: str
) -> None:
    """Record ``files`` as the service's last good set (a probe proved ``sha256``)."""
    _store(
        state,
        service,
        Saved(sha256, tuple(SavedFile(f.role, f.path, f.data, f.mode, uid, gid) for f in files)),
    )


def read_current(role: str, path: Path) -> SavedFile:
    """The file at ``path`` as it is now (absent, a symlink, or a regular file)."""
    try:
        st = os.lstat(path)
    except FileNotFoundError:
        return SavedFile(role, path, None)
    except OSError as exc:
        raise FileError(f"cannot look at {path}: {exc.strerror}") from None
    if stat.S_ISLNK(st.st_mode):
        return SavedFile(
            role, path, b"", st.st_mode & 0o777, st.st_uid, st.st_gid, os.readlink(path)
        )
    if not stat.S_ISREG(st.st_mode):
        raise FileError(f"{path} is not a regular file; point the service's {role} at a file")
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise FileError(f"cannot read {path}: {exc.strerror}") from None
    return SavedFile(role, path, data, stat.S_IMODE(st.st_mode), st.st_uid, st.st_gid)


# -- writing ----------------------------------------------------------------------------
def _temp(path: Path) -> Path:
    return path.with_name(f".{path.name}{TMP_SUFFIX}")


def _write_temp(path: Path, data: bytes, mode: int, uid: int, gid: int) -> Path:
    tmp = _temp(path)
    with contextlib.suppress(FileNotFoundError):
        os.unlink(tmp)  # left by a crash
    write_new(tmp, data, mode, uid, gid)
    return tmp


def _check_target(path: Path, role: str) -> None:
    if not path.parent.is_dir():
        raise FileError(
            f"the folder {path.parent} does not exist; create it or fix the service's {role}"
        )
    with contextlib.suppress(FileNotFoundError):
        if stat.S_ISDIR(os.lstat(path).st_mode):
            raise FileError(f"{path} is a folder; point the service's {role} at a file")


def _rename_all(staged: Iterable[tuple[Path, Path]]) -> None:
    folders: set[Path] = set()
    for tmp, path in staged:
        os.replace(tmp, path)
        folders.add(path.parent)
    for folder in sorted(folders):
        fsync_dir(folder)


def install(files: Sequence[ServiceFile], uid: int, gid: int) -> None:
    """Write every file to its temp name, then rename them all in order (see module doc).

    Raises FileError; if it was raised before the first rename, nothing changed.
    """
    staged: list[tuple[Path, Path]] = []
    try:
        for f in files:
            _check_target(f.path, f.role)
            try:
                staged.append((_write_temp(f.path, f.data, f.mode, uid, gid), f.path))
            except OSError as exc:
                raise FileError(
                    f"cannot write {f.path}: {exc.strerror}; nothing was changed"
                ) from None
    except FileError:
        for tmp, _ in staged:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(tmp)
        raise
    try:
        _rename_all(staged)
    except OSError as exc:
        raise FileError(
            f"cannot rename into {exc.filename2 or exc.filename}: {exc.strerror}", changed=True
        ) from None


def restore(saved: Saved, paths: Iterable[Path]) -> None:
    """Put back the saved versions of ``paths`` (a file that did not exist is removed)."""
    wanted = set(paths)
    chosen = sorted(
        (f for f in saved.files if f.path in wanted),
        key=lambda f: INSTALL_ORDER.index(f.role) if f.role in INSTALL_ORDER else 0,
    )
    staged: list[tuple[Path, Path]] = []
    try:
        for f in chosen:
            if f.data is None:
                continue
            if f.link is not None:
                tmp = _temp(f.path)
                with contextlib.suppress(FileNotFoundError):
                    os.unlink(tmp)
                os.symlink(f.link, tmp)
                staged.append((tmp, f.path))
            else:
                staged.append((_write_temp(f.path, f.data, f.mode, f.uid, f.gid), f.path))
        _rename_all(staged)
        for f in chosen:
            if f.data is None:
                with contextlib.suppress(FileNotFoundError):
                    os.unlink(f.path)
                fsync_dir(f.path.parent)
    except OSError as exc:
        for tmp, _ in staged:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(tmp)
        raise FileError(
            f"cannot restore {exc.filename or 'the previous files'}: {exc.strerror}"
        ) from None


def matches(files: Sequence[ServiceFile], uid: int, gid: int) -> bool:
    """True when every file on disk already has these bytes, mode and owner."""
    for f in files:
        try:
            st = os.lstat(f.path)
            if (
                not stat.S_ISREG(st.st_mode)
                or stat.S_IMODE(st.st_mode) != f.mode
                or (uid != KEEP and st.st_uid != uid)
                or (gid != KEEP and st.st_gid != gid)
                or st.st_size != len(f.data)
                or f.path.read_bytes() != f.data
            ):
                return False
        except OSError:
            return False
    return True
