"""Opening a drop in a child process: the second line of defence around ``pki.parse``.

The first line reads every key derivation's cost from the file's structure and refuses
what exceeds the limits (:mod:`certdrop.pki.kdf`). What it cannot see (a shrouded key
bag inside an encrypted PKCS#12 content, or a parser bug) runs here: one persistent
child, started on first use, opens every drop under ``limits.open_seconds`` of CPU time
(RLIMIT_CPU, raised per drop), the same in wall-clock time (the parent's timeout), and
``limits.open_memory_mib`` of address space (RLIMIT_AS). A drop that hits a bound, or
that crashes the child, is rejected ``processing_failed``; the child is replaced for the
next one. In the daemon the worker does not wait for it: :meth:`Opener.open_later` queues
the drop for the opener's own thread and calls back with the result, so other drops, the
control socket's commands and the watchdog carry on meanwhile.

The wire format is JSON lines (base64 bytes), not pickle: the parent never runs what a
child compromised by a hostile file might send. Keys cross the pipe unencrypted, between
two processes of the same user, and are never written anywhere.
"""

from __future__ import annotations

import base64
import contextlib
import dataclasses
import json
import math
import os
import queue
import resource
import select
import signal
import subprocess
import sys
import threading
import time
import weakref
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives import serialization

import certdrop
from certdrop.errors import Rejection
from certdrop.limits import MIB, Limits
from certdrop.pki.keys import PrivateKey
from certdrop.pki.parse import Parsed, parse

# A reply holds at most a drop's worth of DER (max_file_bytes) in base64, plus framing.
_WALL_MARGIN = 2.0  # seconds the parent waits beyond the CPU budget (start-up, pipes)


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def _unb64(text: object) -> bytes:
    if not isinstance(text, str):
        raise ValueError("not base64 text")
    return base64.b64decode(text, validate=True)


class Opener:
    """The parent's side: ``open(data, passphrases, limits)`` returns what ``parse`` would,
    or raises its Rejection, or ``processing_failed`` when a bound was hit."""

    def __init__(self) -> None:
        self._child: subprocess.Popen[bytes] | None = None
        self._finalizer: weakref.finalize[Any, Opener] | None = None
        self.started = 0  # children started (a test and the bench read it)
        self._lock = threading.Lock()  # one request at a time on the child's pipes
        self._requests: queue.Queue[_Request | None] = queue.Queue()
        self._thread: threading.Thread | None = None
        self._closing = False

    def open_later(
        self,
        data: bytes,
        passphrases: Sequence[bytes],
        limits: Limits,
        done: Callable[[Parsed | Rejection], None],
    ) -> None:
        """Open in the child from the opener's thread; ``done(result)`` is called there."""
        with self._lock:
            if self._thread is None:
                self._closing = False
                self._thread = threading.Thread(
                    target=self._serve, name="certdrop-opener", daemon=True
                )
                self._thread.start()
        self._requests.put((data, tuple(passphrases), limits, done))

    def _serve(self) -> None:
        while True:
            request = self._requests.get()
            if request is None:
                return
            data, passphrases, limits, done = request
            result: Parsed | Rejection
            try:
                result = self.open(data, passphrases, limits)
            except Rejection as rejection:
                result = rejection
            except Exception as exc:  # noqa: BLE001 - this thread must outlive any drop
                result = Rejection(
                    "processing_failed",
                    f"opening the file failed ({type(exc).__name__}); it was not imported",
                )
            if not self._closing:  # a result cut short by close() is no result
                done(result)

    def open(self, data: bytes, passphrases: Sequence[bytes], limits: Limits) -> Parsed:
        with self._lock:
            return self._open(data, passphrases, limits)

    def _open(self, data: bytes, passphrases: Sequence[bytes], limits: Limits) -> Parsed:
        child = self._running(limits)
        request = {
            "data": _b64(data),
            "passphrases": [_b64(p) for p in passphrases],
            "limits": dataclasses.asdict(limits),
        }
        try:
            assert child.stdin is not None
            child.stdin.write(json.dumps(request).encode() + b"\n")
            child.stdin.flush()
            line = self._reply(child, limits.open_seconds + _WALL_MARGIN)
        except (OSError, TimeoutError) as exc:
            self._kill()
            raise _failed(exc, limits) from None
        try:
            reply = json.loads(line)
            return _from_reply(reply)
        except Rejection:
            raise
        except (ValueError, TypeError, KeyError) as exc:
            self._kill()
            raise Rejection(
                "processing_failed",
                "opening the file in its sandbox gave an unreadable answer "
                f"({type(exc).__name__}); it was not imported. Check the file, and report it "
                "if it is a real certificate",
            ) from None

    def _running(self, limits: Limits) -> subprocess.Popen[bytes]:
        if self._child is not None and self._child.poll() is None:
            return self._child
        self._kill()
        root = str(Path(certdrop.__file__).resolve().parent.parent)
        code = (
            f"import sys; sys.path.insert(0, {root!r}); "
            "from certdrop.intake.opener import serve; serve()"
        )
        child = subprocess.Popen(
            [sys.executable, "-I", "-c", code, str(limits.open_memory_mib * MIB)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            close_fds=True,
        )
        self._child = child
        self.started += 1
        # A test or a CLI command that forgets close() still ends its child.
        self._finalizer = weakref.finalize(self, _end, child)
        return child

    @staticmethod
    def _reply(child: subprocess.Popen[bytes], seconds: float) -> bytes:
        """One line from the child within ``seconds`` of wall time, or TimeoutError."""
        assert child.stdout is not None
        fd = child.stdout.fileno()
        deadline = time.monotonic() + seconds
        chunks: list[bytes] = []
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                raise TimeoutError(f"no answer within {seconds:.0f} s")
            ready, _, _ = select.select([fd], [], [], left)
            if not ready:
                continue
            chunk = os.read(fd, 1 << 20)
            if not chunk:
                raise OSError("the child ended (killed at its CPU or memory limit, or crashed)")
            chunks.append(chunk)
            if chunk.endswith(b"\n"):
                return b"".join(chunks)

    def close(self) -> None:
        """End the opener's thread and the child (by its PID); queued drops get no
        result (they stay claimed for the next start). The next open starts afresh."""
        thread, self._thread = self._thread, None
        if thread is not None:
            self._closing = True
            self._requests.put(None)
            child = self._child
            if child is not None and child.poll() is None:
                # A drop under way ends now, not at its time limit: its read sees EOF.
                with contextlib.suppress(ProcessLookupError):
                    os.kill(child.pid, signal.SIGKILL)
            thread.join()
            while not self._requests.empty():
                self._requests.get_nowait()
        with self._lock:
            self._kill()

    def _kill(self) -> None:
        if self._finalizer is not None:
            self._finalizer()
            self._finalizer = None
        self._child = None


_Request = tuple[bytes, tuple[bytes, ...], Limits, Callable[[Parsed | Rejection], None]]


def _end(child: subprocess.Popen[bytes]) -> None:
    for stream in (child.stdin, child.stdout):
        with contextlib.suppress(OSError):
            if stream is not None:
                stream.close()
    if child.poll() is None:
        with contextlib.suppress(ProcessLookupError):
            os.kill(child.pid, signal.SIGKILL)
    child.wait()


def _failed(exc: Exception, limits: Limits) -> Rejection:
    return Rejection(
        "processing_failed",
        f"opening the file did not finish within limits.open_seconds = {limits.open_seconds} "
        f"s of CPU or wall time and limits.open_memory_mib = {limits.open_memory_mib} MiB "
        f"({exc}); it was not imported. Export it again with your tool's default settings",
    )


def _from_reply(reply: dict[str, Any]) -> Parsed:
    if not reply.get("ok"):
        raise Rejection(str(reply["code"]), str(reply["reason"]))
    certs = tuple(x509.load_der_x509_certificate(_unb64(c)) for c in reply["certs"])
    csrs = tuple(x509.load_der_x509_csr(_unb64(c)) for c in reply["csrs"])
    keys: list[PrivateKey] = []
    for text in reply["keys"]:
        key = serialization.load_der_private_key(
            _unb64(text), None, unsafe_skip_rsa_key_validation=True
        )
        if not isinstance(key, PrivateKey):
            raise ValueError("the child sent a key of another type")
        keys.append(key)
    return Parsed(certs, tuple(keys), csrs)


def _to_reply(parsed: Parsed) -> dict[str, Any]:
    der = serialization.Encoding.DER
    return {
        "ok": True,
        "certs": [_b64(c.public_bytes(der)) for c in parsed.certs],
        "csrs": [_b64(c.public_bytes(der)) for c in parsed.csrs],
        "keys": [
            _b64(
                k.private_bytes(
                    der, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
                )
            )
            for k in parsed.keys
        ],
    }


# -- the child ------------------------------------------------------------------------------


def serve() -> None:
    """The child's loop: one JSON request a line on stdin, one reply a line on stdout."""
    _die_with_parent()
    memory = int(sys.argv[1]) if len(sys.argv) > 1 else 512 * MIB
    resource.setrlimit(resource.RLIMIT_AS, (memory, memory))
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the daemon stops us; a ^C is for it
    for line in sys.stdin.buffer:
        reply = _handle(line)
        sys.stdout.buffer.write(json.dumps(reply).encode() + b"\n")
        sys.stdout.buffer.flush()


def _handle(line: bytes) -> dict[str, Any]:
    try:
        request = json.loads(line)
        limits = Limits(**request["limits"])
        data = _unb64(request["data"])
        passphrases = [_unb64(p) for p in request["passphrases"]]
    except (ValueError, TypeError, KeyError):
        return {"ok": False, "code": "processing_failed", "reason": "a malformed request"}
    used = resource.getrusage(resource.RUSAGE_SELF)
    spent = used.ru_utime + used.ru_stime
    # SIGXCPU ends the child when this drop's budget is used up; the parent sees EOF.
    soft = math.ceil(spent + limits.open_seconds)
    resource.setrlimit(resource.RLIMIT_CPU, (soft, resource.RLIM_INFINITY))
    try:
        return _to_reply(parse(data, passphrases, limits))
    except Rejection as rejection:
        return {"ok": False, "code": rejection.code, "reason": rejection.reason}
    except MemoryError:
        return {
            "ok": False,
            "code": "processing_failed",
            "reason": f"opening the file needed more than limits.open_memory_mib = "
            f"{limits.open_memory_mib} MiB; it was not imported",
        }
    except Exception as exc:  # noqa: BLE001 - parse lets none escape; if one does, say so
        return {
            "ok": False,
            "code": "processing_failed",
            "reason": f"opening the file failed ({type(exc).__name__}); it was not imported. "
            "Check the file, and report it if it is a real certificate",
        }


def _die_with_parent() -> None:
    """PR_SET_PDEATHSIG: a kill -9 of the daemon ends this child too (Linux)."""
    with contextlib.suppress(OSError, AttributeError):
        import ctypes

        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(1, signal.SIGKILL, 0, 0, 0)  # PR_SET_PDEATHSIG = 1
        if os.getppid() == 1:  # the parent died before prctl took effect
            os._exit(0)
