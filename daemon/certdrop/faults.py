"""Storage faults: the machine, not a drop, is what went wrong.

A full, read-only, failing or over-quota file system (ENOSPC, EROFS, EIO, EDQUOT), seen
as an OSError or as SQLite's FULL / READONLY / IOERR / CANTOPEN, is no reason to reject a
drop or to stop the daemon: the daemon keeps the drop claimed, says ``daemon.degraded``
and tries again (see :mod:`certdrop.daemon.worker`). :func:`storage_fault` tells such an
error from every other one.
"""

from __future__ import annotations

import errno
import os
import sqlite3

from certdrop.errors import CertdropError

STORAGE_ERRNOS = frozenset({errno.ENOSPC, errno.EROFS, errno.EIO, errno.EDQUOT})
# SQLite's primary result codes (the low byte of an extended code).
_SQLITE = {13: errno.ENOSPC, 8: errno.EROFS, 10: errno.EIO, 14: errno.EIO}


class StorageFault(CertdropError):
    """Writing or reading ``path`` failed for a reason of the file system (``errno``)."""

    def __init__(self, path: str, error: int, detail: str = "") -> None:
        self.path = path
        self.errno = error
        self.detail = detail
        super().__init__(f"{path}: {describe(error)}{f' ({detail})' if detail else ''}")

    @property
    def name(self) -> str:
        """The errno's symbol, as events carry it: ENOSPC, EROFS, EIO, EDQUOT."""
        return errno.errorcode.get(self.errno, str(self.errno))


def describe(error: int) -> str:
    return f"{errno.errorcode.get(error, error)} ({os.strerror(error)})"


def storage_fault(
    exc: BaseException, where: str = "", database: str = "", _depth: int = 0
) -> StorageFault | None:
    """The StorageFault ``exc`` is (or wraps), else None. An OSError without a file name
    is taken to be about ``where``; SQLite's errors (which name no file) about
    ``database``."""
    if isinstance(exc, StorageFault):
        return exc
    if isinstance(exc, OSError) and exc.errno in STORAGE_ERRNOS:
        path = exc.filename if isinstance(exc.filename, str) else where
        return StorageFault(path or "?", exc.errno, exc.strerror or "")
    if isinstance(exc, sqlite3.DatabaseError):
        code = getattr(exc, "sqlite_errorcode", None)
        if isinstance(code, int) and code & 0xFF in _SQLITE:
            return StorageFault(database or "the inventory", _SQLITE[code & 0xFF], str(exc))
    cause = exc.__cause__ or exc.__context__
    if cause is not None and cause is not exc and _depth < 4:
        return storage_fault(cause, where, database, _depth + 1)
    return None
