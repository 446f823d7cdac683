"""Telling a storage fault (full, read-only, failing disk) from every other error."""

from __future__ import annotations

import errno
import sqlite3
from pathlib import Path

import pytest

from certdrop.faults import StorageFault, storage_fault


@pytest.mark.parametrize("code", [errno.ENOSPC, errno.EROFS, errno.EIO, errno.EDQUOT])
def test_storage_errnos_are_faults_naming_the_file(code: int) -> None:
    """ENOSPC, EROFS, EIO and EDQUOT are faults; the event names the file and errno."""
    fault = storage_fault(OSError(code, "boom", "/state/status.json"))
    assert fault is not None and fault.path == "/state/status.json" and fault.errno == code
    assert fault.name == errno.errorcode[code]


@pytest.mark.parametrize("exc", [OSError(errno.ENOENT, "gone"), OSError(errno.EACCES, "no"),
                                 ValueError("bad"), KeyError("x")])
def test_other_errors_are_not_faults(exc: Exception) -> None:
    """A missing file, a permission problem or a bug is not waited out as a fault."""
    assert storage_fault(exc) is None


def test_an_os_error_without_a_file_takes_the_given_place() -> None:
    """os.write's error names no file: the caller's ``where`` does."""
    fault = storage_fault(OSError(errno.ENOSPC, "full"), where="/srv/inbox")
    assert fault is not None and fault.path == "/srv/inbox"


def test_sqlite_read_only_is_a_fault_about_the_database(tmp_path: Path) -> None:
    """A real SQLITE_READONLY (a database opened read-only, then written) is EROFS."""
    path = tmp_path / "db.sqlite3"
    sqlite3.connect(path).execute("CREATE TABLE t (x)").connection.close()
    db = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    with pytest.raises(sqlite3.OperationalError) as caught:
        db.execute("INSERT INTO t VALUES (1)")
    db.close()
    fault = storage_fault(caught.value, database=str(path))
    assert fault is not None and fault.errno == errno.EROFS and fault.path == str(path)


def test_sqlite_errors_of_other_kinds_are_not_faults() -> None:
    """A syntax error or a constraint is a bug, not the disk."""
    db = sqlite3.connect(":memory:")
    with pytest.raises(sqlite3.OperationalError) as caught:
        db.execute("SELEKT 1")
    assert storage_fault(caught.value) is None
    db.close()


def test_a_fault_behind_another_error_is_found() -> None:
    """An error raised while handling a full disk is still that fault."""
    try:
        try:
            raise OSError(errno.ENOSPC, "full", "/state/x")
        except OSError as inner:
            raise RuntimeError("while writing") from inner
    except RuntimeError as outer:
        fault = storage_fault(outer)
    assert isinstance(fault, StorageFault) and fault.path == "/state/x"
