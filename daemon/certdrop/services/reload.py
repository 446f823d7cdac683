"""Reload commands: an argv with a timeout, its output kept short and free of PEM blocks."""

from __future__ import annotations

import contextlib
import os
import re
import signal
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass

from certdrop.spawn import spawn

OUTPUT_CHARS = 200


@dataclass(frozen=True)
class ReloadResult:
    """How a reload went: ``summary`` names the command and how it ended, ``output`` is the
    short tail of what it printed."""

    ok: bool
    summary: str
    output: str = ""
    seconds: float = 0.0

    @property
    def detail(self) -> str:
        return f"{self.summary}: {self.output}" if self.output and not self.ok else self.summary


_PEM_BLOCK = re.compile(r"-----BEGIN [A-Z0-9 ]+-----.*?(-----END [A-Z0-9 ]+-----|$)", re.S)


def short_output(raw: bytes) -> str:
    """The end of a command's output as one printable line, PEM blocks cut out."""
    text = _PEM_BLOCK.sub("[PEM block removed]", raw.decode("utf-8", "replace"))
    text = " ".join(text.split())
    text = "".join(c if c.isprintable() else "?" for c in text)
    return text if len(text) <= OUTPUT_CHARS else "..." + text[-OUTPUT_CHARS:]


def run_reload(argv: Sequence[str], timeout: float) -> ReloadResult:
    """Run a reload command (an argv, no shell) with a timeout; its whole process group
    is killed when the time is up. Output goes to a temp file, not a pipe, so a daemon
    the command leaves behind cannot hold us up; it starts with an empty signal mask
    (see certdrop.spawn), so such a daemon still obeys SIGTERM.
    """
    if not argv:
        return ReloadResult(True, "no reload command")
    started = time.monotonic()
    name = os.path.basename(argv[0])
    with tempfile.TemporaryFile() as out:
        try:
            child = spawn(argv, stdout=out.fileno())
        except OSError as exc:
            return ReloadResult(
                False, f"{argv[0]} cannot be run ({exc.strerror}); fix the service's reload"
            )
        code = child.wait(timeout)
        if code is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(child.pid, signal.SIGKILL)
            child.wait(5)
            return ReloadResult(
                False,
                f"{name} did not finish within {timeout:g} s and was killed",
                seconds=time.monotonic() - started,
            )
        size = out.seek(0, os.SEEK_END)
        out.seek(max(0, size - 4096))
        output = short_output(out.read())
    return ReloadResult(code == 0, f"{name} exited {code}", output, time.monotonic() - started)
