"""The status log: JSON Lines, one event a line, written through structlog.

structlog runs a pipeline of small processors configured here, at the edge, and bound to
one log file; nothing is configured globally, so several instances can share a process
(the tests do).
"""

from __future__ import annotations

import json
import os
import sys
import threading
from pathlib import Path
from typing import TextIO

import structlog
from structlog.typing import EventDict, WrappedLogger

from certdrop.clock import iso, utc_now

# Field names that must never carry secrets; a value under one of them is replaced.
SECRET_FIELDS = frozenset({"key", "key_pem", "private_key", "password", "passphrase", "pem"})


class StatusLogFile:
    """Appends lines to a file and reopens it when logrotate moved it away.

    Checking the path's inode before each write costs one stat; it spares a signal and
    the lines that copytruncate would lose.
    """

    def __init__(self, path: Path, echo: TextIO | None = None) -> None:
        self.path = path
        self.echo = echo
        self._lock = threading.Lock()
        self._file: TextIO | None = None
        self._inode: tuple[int, int] | None = None

    def _open(self) -> TextIO:
        fd = os.open(self.path, os.O_RDWR | os.O_APPEND | os.O_CREAT, 0o600)
        file = os.fdopen(fd, "a", encoding="utf-8", errors="backslashreplace")
        st = os.fstat(fd)
        if st.st_size and os.pread(fd, 1, st.st_size - 1) != b"\n":
            os.write(fd, b"\n")  # end a line torn by kill -9: the next one stays parseable
        self._inode = (st.st_dev, st.st_ino)
        return file

    def msg(self, message: str) -> None:
        with self._lock:
            try:
                st = os.stat(self.path)
                current: tuple[int, int] | None = (st.st_dev, st.st_ino)
            except FileNotFoundError:
                current = None
            if self._file is None or current != self._inode:
                if self._file is not None:
                    self._file.close()
                self._file = self._open()
            self._file.write(message + "\n")
            self._file.flush()
            if self.echo is not None:
                self.echo.write(message + "\n")
                self.echo.flush()

    def close(self) -> None:
        with self._lock:
            if self._file is not None:
                self._file.close()
                self._file = None

    log = debug = info = warning = error = critical = exception = msg


def _timestamp(_: WrappedLogger, __: str, event_dict: EventDict) -> EventDict:
    return {"ts": iso(utc_now()), **event_dict}


def _level(_: WrappedLogger, method: str, event_dict: EventDict) -> EventDict:
    event_dict.setdefault("level", "warning" if method == "warn" else method)
    return event_dict


def _redact(_: WrappedLogger, __: str, event_dict: EventDict) -> EventDict:
    """Defence in depth: a secret-named field never reaches the file."""
    for name in SECRET_FIELDS.intersection(event_dict):
        event_dict[name] = "[redacted]"
    return event_dict


def _order(_: WrappedLogger, __: str, event_dict: EventDict) -> EventDict:
    head = {k: event_dict.pop(k) for k in ("ts", "level", "event") if k in event_dict}
    return {**head, **event_dict}


def _render(_: WrappedLogger, __: str, event_dict: EventDict) -> str:
    # ensure_ascii keeps control characters, ANSI escapes and odd bytes as \u escapes.
    return json.dumps(event_dict, ensure_ascii=True, default=str, separators=(", ", ": "))


Logger = structlog.typing.FilteringBoundLogger


def open_log(path: Path, *, echo: bool | None = None) -> tuple[Logger, StatusLogFile]:
    """A bound logger writing the status log at ``path`` (also to stderr when asked)."""
    if echo is None:
        echo = not sys.stderr.isatty() and os.environ.get("INVOCATION_ID") is not None
    sink = StatusLogFile(path, sys.stderr if echo else None)
    logger: Logger = structlog.wrap_logger(
        sink,
        processors=[_level, _redact, _timestamp, _order, _render],
        wrapper_class=structlog.make_filtering_bound_logger(0),
        cache_logger_on_first_use=True,
    )
    return logger, sink
