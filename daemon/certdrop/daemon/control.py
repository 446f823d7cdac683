"""The control socket (``state/control.sock``): how a CLI command reaches a running daemon.

One JSON line in (``{"command", "args"}``), one JSON line out (``{"ok", "output",
"error"}``). A state-changing command (:data:`certdrop.daemon.commands.COMMANDS`) runs
as a job on the worker, so it never races a drop; the daemon's own requests (``health``,
``reload``) are answered by the daemon.

The socket is 0600 root, or 0660 with the ``state_group`` when one is configured, so a
monitor in that group can ask ``health``. Who asks is read from the kernel
(SO_PEERCRED), not from the request: only root (or the daemon's own user) may run
anything but the read-only requests.
"""

from __future__ import annotations

import contextlib
import json
import os
import socket
import struct
import threading
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from certdrop import config as configuration
from certdrop.daemon.commands import COMMANDS
from certdrop.daemon.state import (
    LOCK_WAIT_SECONDS,
    Context,
    open_context,
    prepare_folders,
    state_lock,
    write_status_json,
)
from certdrop.daemon.worker import Worker
from certdrop.errors import CertdropError, StateLocked, UserError

# Requests that change nothing: a member of state_group may make them.
READ_ONLY = frozenset({"health"})
# A daemon-level request: JSON-ready arguments in, output text out (CertdropError: refused).
Request = Callable[[dict[str, Any]], str]


class NotRunning(UserError):
    """No daemon answers on the control socket."""


def run_command(config: configuration.Config, name: str, args: dict[str, Any]) -> str:
    """Run a command: in this process if the state is free, else in the daemon. Locked
    with no daemon answering means a command that only reads holds the lock a moment:
    wait for it (LOCK_WAIT_SECONDS) and run here."""
    prepare_folders(config)
    try:
        return _here(config, name, args)
    except StateLocked:
        pass
    path = config.state / "control.sock"
    try:
        return ask(path, name, args)
    except NotRunning as exc:
        try:
            return _here(config, name, args, wait=LOCK_WAIT_SECONDS)
        except StateLocked:
            raise UserError(
                f"the state folder is locked but {exc}; is another certdrop command running?"
            ) from None


def _here(
    config: configuration.Config, name: str, args: dict[str, Any], *, wait: float = 0.0
) -> str:
    with state_lock(config.state, wait=wait):
        ctx, sink = open_context(config)
        try:
            output = COMMANDS[name](ctx, args)
            write_status_json(config, ctx.inventory)
            return output
        finally:
            ctx.inventory.close()
            sink.close()


def ask_daemon(path: Path, name: str, args: dict[str, Any]) -> str:
    """Ask the daemon that holds the state lock; it must answer."""
    try:
        return ask(path, name, args)
    except NotRunning as exc:
        raise UserError(
            f"the state folder is locked but {exc}; is another certdrop command running?"
        ) from None


def ask(path: Path, name: str, args: dict[str, Any] | None = None, timeout: float = 600) -> str:
    """Send one request to the daemon listening on ``path`` and return its output.

    Raises NotRunning when nothing listens, UserError (naming the fix) when this user may
    not connect or the daemon refused the request.
    """
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
            sock.settimeout(timeout)
            sock.connect(os.fspath(path))
            sock.sendall(json.dumps({"command": name, "args": args or {}}).encode() + b"\n")
            reply = json.loads(sock.makefile("rb").readline() or b"{}")
    except PermissionError:
        raise UserError(
            f"{path}: permission denied; run as root, or as a member of the group named by "
            "state_group in the config"
        ) from None
    except (FileNotFoundError, ConnectionRefusedError):
        raise NotRunning(f"no certdrop daemon answers on {path}") from None
    except (OSError, ValueError) as exc:
        raise NotRunning(f"the daemon does not answer on {path} ({exc})") from None
    if not isinstance(reply, dict) or not reply.get("ok"):
        error = reply.get("error") if isinstance(reply, dict) else None
        raise UserError(str(error or "the daemon refused the request"))
    return str(reply.get("output", ""))


def peer_uid(conn: socket.socket) -> int:
    """The uid of the process at the other end of ``conn``, as the kernel knows it."""
    creds = conn.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, struct.calcsize("3i"))
    _pid, uid, _gid = struct.unpack("3i", creds)
    return int(uid)


class ControlServer:
    """Listens on the control socket and answers each connection in a thread."""

    def __init__(
        self,
        path: Path,
        ctx: Context,
        worker: Worker,
        requests: Mapping[str, Request] | None = None,
        *,
        gid: int | None = None,
    ) -> None:
        self.path = path
        self.ctx = ctx
        self.worker = worker
        self.requests = dict(requests or {})
        self.thread: threading.Thread | None = None
        path.unlink(missing_ok=True)
        self.server = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.server.bind(os.fspath(path))
        self.share(gid)
        self.server.listen(8)

    def share(self, gid: int | None) -> None:
        """0660 with group ``gid`` (members may ask read-only requests), else 0600."""
        if gid is None:
            os.chmod(self.path, 0o600)
            return
        os.chown(self.path, -1, gid)
        os.chmod(self.path, 0o660)

    def start(self) -> None:
        self.thread = threading.Thread(target=self._serve, name="certdrop-control", daemon=True)
        self.thread.start()

    def close(self) -> None:
        # close() alone does not wake a thread blocked in accept(); shutdown() does.
        with contextlib.suppress(OSError):
            self.server.shutdown(socket.SHUT_RDWR)
        self.server.close()
        if self.thread is not None:
            self.thread.join(5)
        self.path.unlink(missing_ok=True)

    def _serve(self) -> None:
        while True:
            try:
                conn, _ = self.server.accept()
            except OSError:
                return
            threading.Thread(target=self._answer, args=(conn,), daemon=True).start()

    def _answer(self, conn: socket.socket) -> None:
        with conn:
            try:
                request = json.loads(conn.makefile("rb").readline())
                name = str(request["command"])
                args = dict(request.get("args") or {})
                if name not in self.requests and name not in COMMANDS:
                    raise KeyError(name)
            except (ValueError, KeyError, TypeError, AttributeError):
                self._reply(conn, {"ok": False, "error": "malformed control request"})
                return
            if name not in READ_ONLY and peer_uid(conn) not in (0, os.geteuid()):
                self._reply(
                    conn,
                    {"ok": False, "error": f"only root may run {name!r}; monitors may ask health"},
                )
                return
            if name in self.requests:
                try:
                    reply = {"ok": True, "output": self.requests[name](args), "error": None}
                except CertdropError as exc:
                    reply = {"ok": False, "output": None, "error": str(exc)}
                self._reply(conn, reply)
                return
            fn, ctx, worker = COMMANDS[name], self.ctx, self.worker

            def run() -> str:
                output = fn(ctx, args)
                # In the job, so the worker rewrites status.json (and the metrics) right
                # after it; marked from this thread, it could wait for the next job.
                worker.changed()
                return output

            job = worker.submit(f"command {name}", run)
            job.done.wait()
            self._reply(conn, {"ok": job.error is None, "output": job.result, "error": job.error})

    @staticmethod
    def _reply(conn: socket.socket, reply: dict[str, Any]) -> None:
        with contextlib.suppress(OSError):
            conn.sendall(json.dumps(reply, default=str).encode() + b"\n")
