"""Child processes for operator commands (reloads, renewal hand-offs).

posix_spawn rather than Popen: the daemon blocks SIGTERM/SIGINT/SIGHUP in every thread
(it sigwaits for them) and a child inherits that mask, so a reload that starts a daemon,
or lego, would ignore SIGTERM forever. Popen cannot reset the mask without preexec_fn,
which is unsafe in a threaded process; posix_spawn's setsigmask does it in C. Each child
gets its own session, so a timeout can end its whole process group.
"""

from __future__ import annotations

import os
import select
import signal
import time
from collections.abc import Mapping, Sequence


class Child:
    """A spawned process: poll and wait like Popen, for a PID we reap ourselves."""

    def __init__(self, pid: int) -> None:
        self.pid = pid
        self.returncode: int | None = None

    def poll(self) -> int | None:
        if self.returncode is None:
            try:
                pid, status = os.waitpid(self.pid, os.WNOHANG)
            except ChildProcessError:  # reaped elsewhere; the code is lost
                self.returncode = -signal.SIGKILL
                return self.returncode
            if pid:
                self.returncode = os.waitstatus_to_exitcode(status)
        return self.returncode

    def wait(self, timeout: float) -> int | None:
        """The exit code, or None if the child still runs after ``timeout`` seconds."""
        if self.poll() is not None or timeout <= 0:
            return self.returncode
        try:
            # A pidfd becomes readable when the child exits: no polling loop.
            fd = os.pidfd_open(self.pid)
        except (OSError, AttributeError):
            fd = -1
        if fd >= 0:
            try:
                select.select([fd], [], [], timeout)
            finally:
                os.close(fd)
            return self.poll()
        deadline = time.monotonic() + timeout
        while self.poll() is None and time.monotonic() < deadline:
            time.sleep(0.01)
        return self.returncode


def spawn(argv: Sequence[str], *, stdout: int, env: Mapping[str, str] | None = None) -> Child:
    """Start ``argv`` (no shell) in a new session with an empty signal mask.

    stdin is /dev/null; stdout and stderr both go to the file descriptor ``stdout``.
    """
    if not argv:
        raise ValueError("the command is empty")
    null = os.open(os.devnull, os.O_RDONLY)
    try:
        pid = os.posix_spawnp(
            argv[0],
            list(argv),
            os.environ if env is None else dict(env),
            file_actions=[
                (os.POSIX_SPAWN_DUP2, null, 0),
                (os.POSIX_SPAWN_DUP2, stdout, 1),
                (os.POSIX_SPAWN_DUP2, stdout, 2),
            ],
            setsid=True,
            setsigmask=(),
            # Python ignores these; an ignored signal would stay ignored across exec.
            setsigdef=(signal.SIGPIPE, signal.SIGXFSZ),
        )
    finally:
        os.close(null)
    return Child(pid)


def spawn_piped(argv: Sequence[str], env: Mapping[str, str] | None) -> tuple[Child, int]:
    """Like :func:`spawn`, returning the read end of the child's stdout+stderr pipe."""
    read_end, write_end = os.pipe()
    try:
        child = spawn(argv, stdout=write_end, env=env)
    except BaseException:
        os.close(read_end)
        raise
    finally:
        os.close(write_end)
    return child, read_end


def end_group(child: Child, grace: float) -> None:
    """Wait for the command; TERM then KILL whatever of its process group is left."""
    child.wait(timeout=0 if child.poll() is None else grace)
    for sig in (signal.SIGTERM, signal.SIGKILL):
        try:
            os.killpg(child.pid, sig)
        except (ProcessLookupError, PermissionError):
            break
        deadline = time.monotonic() + grace
        while time.monotonic() < deadline and group_alive(child.pid):
            child.poll()
            time.sleep(0.02)
    child.wait(timeout=grace)


def group_alive(pgid: int) -> bool:
    """True while a live (not zombie) process is in group ``pgid``.

    kill(-pgid, 0) would count zombies too: orphans whose reaper is slow (or a PID 1
    that never reaps, as in some containers) would hold every stop for the full grace.
    """
    with os.scandir("/proc") as entries:
        for entry in entries:
            if not entry.name.isdigit():
                continue
            try:
                with open(f"/proc/{entry.name}/stat", "rb") as f:
                    stat = f.read()
            except OSError:
                continue
            fields = stat[stat.rindex(b")") + 2 :].split()
            if int(fields[2]) == pgid and fields[0] not in (b"Z", b"X"):
                return True
    return False
