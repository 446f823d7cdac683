"""The status log: JSON Lines, one event a line, written through structlog.

structlog runs a pipeline of small processors configured here, at the edge, and bound to
one log file; nothing is configured globally, so several instances can share a process
(the tests do).

Under systemd the lines are echoed to stderr. When stderr is the journal itself
(``$JOURNAL_STREAM`` names its device and inode, see systemd.exec(5)) each echoed line
starts with the ``<N>`` syslog priority of its level (sd-daemon(3)), so
``journalctl -p warning`` shows rejections and errors; the file never carries a prefix.
"""

from __future__ import annotations

import contextlib
import errno
import json
import os
import sys
import threading
from collections import deque
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any, TextIO

import structlog
from structlog.typing import EventDict, WrappedLogger

from certdrop import jsontext
from certdrop.clock import iso, utc_now

# Field names that must never carry secrets; a value under one of them is replaced.
SECRET_FIELDS = frozenset({"key", "key_pem", "private_key", "password", "passphrase", "pem"})
# sd-daemon(3) prefixes: the syslog priority of each level.
PRIORITIES = {"debug": 7, "info": 6, "warning": 4, "error": 3, "critical": 2}


def is_journal(stream: TextIO, environ: Mapping[str, str]) -> bool:
    """True when ``stream`` is the journal stream systemd connected (JOURNAL_STREAM is
    ``DEV:INODE`` of it; a redirected stderr inherits the variable but not the inode)."""
    expected = environ.get("JOURNAL_STREAM", "")
    if not expected:
        return False
    try:
        st = os.fstat(stream.fileno())
    except (OSError, ValueError, AttributeError):
        return False
    return expected == f"{st.st_dev}:{st.st_ino}"


class StatusLogFile:
    """Appends lines to a file and reopens it when logrotate moved it away.

    Checking the path's inode before each write costs one stat; it spares a signal and
    the lines that copytruncate would lose.

    Writing never raises: when the file system refuses a line (full, read-only, EIO), the
    line goes to stderr, waits in a bounded backlog, and is written before the next line
    once the file takes lines again; ``fault`` says what failed meanwhile. A line is one
    ``write``; one cut short is truncated away, so no torn line stays behind.
    """

    BACKLOG = 1000  # lines kept while the file refuses them (the oldest are dropped)

    def __init__(
        self,
        path: Path,
        echo: TextIO | None = None,
        show: Callable[[str], None] | None = None,
        *,
        prefix: bool = False,
    ) -> None:
        self.path = path
        self.echo = echo
        self.show = show  # e.g. `certdrop run` on a terminal: each line, readable
        self.prefix = prefix  # echo with the <N> priority prefix (stderr is the journal)
        self.fault: OSError | None = None
        self._lock = threading.Lock()
        self._fd = -1
        self._inode: tuple[int, int] | None = None
        self._backlog: deque[bytes] = deque(maxlen=self.BACKLOG)
        self.dropped = 0  # backlog lines lost to the bound

    def _open(self) -> int:
        fd = os.open(self.path, os.O_RDWR | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC, 0o600)
        try:
            st = os.fstat(fd)
            if st.st_size and os.pread(fd, 1, st.st_size - 1) != b"\n":
                # End a line torn by kill -9: the next one stays parseable.
                self._write_all(fd, b"\n")
        except OSError:
            os.close(fd)
            raise
        self._inode = (st.st_dev, st.st_ino)
        return fd

    @staticmethod
    def _write_all(fd: int, data: bytes) -> None:
        """One line in one write; a short write (the disk filled up) is undone."""
        before = os.fstat(fd).st_size
        written = os.write(fd, data)
        if written != len(data):
            with contextlib.suppress(OSError):
                os.ftruncate(fd, before)
            raise OSError(errno.ENOSPC, "a short write: the file system is full")

    def _current_fd(self) -> int:
        try:
            st = os.stat(self.path)
            current: tuple[int, int] | None = (st.st_dev, st.st_ino)
        except FileNotFoundError:
            current = None
        if self._fd < 0 or current != self._inode:
            self._close_fd()
            self._fd = self._open()
        return self._fd

    def msg(self, message: str, level: str = "info") -> None:
        line = (message + "\n").encode("utf-8", "backslashreplace")
        with self._lock:
            try:
                fd = self._current_fd()
                while self._backlog:
                    self._write_all(fd, self._backlog[0])
                    self._backlog.popleft()
                self._write_all(fd, line)
                self.fault = None
            except OSError as exc:
                self._fail(exc, line)
            if self.echo is not None:
                head = f"<{PRIORITIES.get(level, 6)}>" if self.prefix else ""
                with contextlib.suppress(OSError, ValueError):
                    self.echo.write(head + message + "\n")
                    self.echo.flush()
            if self.show is not None:
                with contextlib.suppress(OSError, ValueError):
                    self.show(message)

    def _fail(self, exc: OSError, line: bytes) -> None:
        if exc.filename is None:
            exc.filename = os.fspath(self.path)
        self.fault = exc
        self._close_fd()  # reopened next time: the torn-line repair runs on open
        if len(self._backlog) == self._backlog.maxlen:
            self.dropped += 1
        self._backlog.append(line)
        if self.echo is None:  # it is lost otherwise: stderr (the journal) at least
            with contextlib.suppress(OSError, ValueError):
                sys.stderr.write(line.decode("utf-8", "backslashreplace"))
                sys.stderr.flush()

    def flush(self) -> bool:
        """Write the backlog now; True when the file takes lines again (nothing waits)."""
        with self._lock:
            if not self._backlog and self.fault is None:
                return True
            try:
                fd = self._current_fd()
                while self._backlog:
                    self._write_all(fd, self._backlog[0])
                    self._backlog.popleft()
            except OSError as exc:
                if exc.filename is None:
                    exc.filename = os.fspath(self.path)
                self.fault = exc
                self._close_fd()
                return False
            self.fault = None
            return True

    @property
    def pending(self) -> int:
        """Lines written to stderr only, so far, waiting for the file."""
        return len(self._backlog)

    def _close_fd(self) -> None:
        if self._fd >= 0:
            with contextlib.suppress(OSError):
                os.close(self._fd)
            self._fd = -1

    def close(self) -> None:
        with self._lock:
            self._close_fd()

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


def _render(
    _: WrappedLogger, __: str, event_dict: EventDict
) -> tuple[tuple[str], dict[str, str]]:
    # UTF-8 text (本番, not \u672c\u756a); controls, ANSI escapes, bidi overrides and odd
    # bytes stay \u escapes (certdrop.jsontext).
    line = jsontext.dumps(event_dict, default=str, separators=(", ", ": "))
    # structlog passes (args, kwargs) on to the sink: the level travels beside the line.
    return (line,), {"level": str(event_dict.get("level", "info"))}


Logger = structlog.typing.FilteringBoundLogger
RECENT_BYTES = 4 * 1024 * 1024  # how far back `certdrop show` looks in the status log


def recent(
    path: Path, wanted: Callable[[dict[str, Any]], bool], limit: int = 20
) -> list[dict[str, Any]]:
    """The last ``limit`` events of the status log that ``wanted`` keeps, from its last
    RECENT_BYTES (a rotated-away file is not read); lines that do not parse are skipped."""
    try:
        with open(path, "rb") as f:
            size = f.seek(0, os.SEEK_END)
            f.seek(max(0, size - RECENT_BYTES))
            data = f.read()
    except FileNotFoundError:
        return []
    lines = data.split(b"\n")
    if size > RECENT_BYTES:
        lines = lines[1:]  # the first line was cut
    found: list[dict[str, Any]] = []
    for line in lines:
        try:
            event = json.loads(line)
        except ValueError:
            continue
        if isinstance(event, dict) and wanted(event):
            found.append(event)
    return found[-limit:]


def open_log(
    path: Path, *, echo: bool | None = None, show: Callable[[str], None] | None = None
) -> tuple[Logger, StatusLogFile]:
    """A bound logger writing the status log at ``path``; each JSON line also to stderr
    when ``echo`` (None: under systemd, or when stderr is the journal), and to ``show``
    when given (`certdrop run` on a terminal)."""
    journal = is_journal(sys.stderr, os.environ)
    if echo is None:
        under_systemd = not sys.stderr.isatty() and "INVOCATION_ID" in os.environ
        echo = show is None and (journal or under_systemd)
    sink = StatusLogFile(path, sys.stderr if echo else None, show, prefix=journal)
    logger: Logger = structlog.wrap_logger(
        sink,
        processors=[_level, _redact, _timestamp, _order, _render],
        wrapper_class=structlog.make_filtering_bound_logger(0),
        cache_logger_on_first_use=True,
    )
    return logger, sink
