"""The control socket (``state/control.sock``): how a CLI command reaches a running daemon.

One JSON line in (``{"command", "args"}``), one JSON line out (``{"ok", "output",
"error"}``). The command runs as a job on the worker, so it never races a drop.
"""

from __future__ import annotations

import contextlib
import json
import os
import socket
import threading
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
from certdrop.errors import StateLocked, UserError


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
    sock = _connect(path)
    if sock is None:
        try:
            return _here(config, name, args, wait=LOCK_WAIT_SECONDS)
        except StateLocked:
            raise UserError(
                f"the state folder is locked but no daemon answers on {path}; "
                "is another certdrop command running?"
            ) from None
    with sock:
        return ask_daemon(sock, path, name, args)


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


def _connect(path: Path) -> socket.socket | None:
    """A connection to the daemon's control socket; None when no daemon listens."""
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        sock.connect(os.fspath(path))
    except (FileNotFoundError, ConnectionRefusedError):
        sock.close()
        return None
    except OSError as exc:
        sock.close()
        raise UserError(f"cannot reach the daemon on {path}: {exc.strerror or exc}") from None
    return sock


def ask_daemon(sock: socket.socket, path: Path, name: str, args: dict[str, Any]) -> str:
    """Send one command over a connected control socket and return its output."""
    try:
        sock.settimeout(600)
        sock.sendall(json.dumps({"command": name, "args": args}).encode() + b"\n")
        reply = json.loads(sock.makefile("rb").readline() or b"{}")
    except (OSError, ValueError) as exc:
        raise UserError(
            f"the daemon did not answer on {path} ({exc}); see its log, then try again"
        ) from None
    if not reply.get("ok"):
        raise UserError(str(reply.get("error", "the daemon refused the command")))
    return str(reply.get("output", ""))


class ControlServer:
    """Listens on the control socket (0600) and answers each connection in a thread."""

    def __init__(self, path: Path, ctx: Context, worker: Worker) -> None:
        self.path = path
        self.ctx = ctx
        self.worker = worker
        path.unlink(missing_ok=True)
        self.server = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.server.bind(os.fspath(path))
        os.chmod(path, 0o600)
        self.server.listen(8)

    def start(self) -> None:
        threading.Thread(target=self._serve, name="certdrop-control", daemon=True).start()

    def close(self) -> None:
        self.server.close()
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
                fn = COMMANDS[request["command"]]
                args = dict(request.get("args") or {})
            except (ValueError, KeyError, TypeError):
                conn.sendall(b'{"ok": false, "error": "malformed control request"}\n')
                return
            ctx = self.ctx
            job = self.worker.submit(f"command {request['command']}", lambda: fn(ctx, args))
            job.done.wait()
            if job.error is None:
                self.worker.changed()
            reply = {"ok": job.error is None, "output": job.result, "error": job.error}
            with contextlib.suppress(OSError):
                conn.sendall(json.dumps(reply, default=str).encode() + b"\n")
