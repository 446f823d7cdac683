"""The daemon: one worker thread draining one queue; watchdog, APScheduler and the control
socket only enqueue. ``run`` blocks the signals it handles and waits for them with sigwait,
so no handler ever runs inside the worker's transactions.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import queue
import signal
import socket
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from certdrop import config as configuration
from certdrop import request_drops, status, watcher
from certdrop.errors import CertdropError, StateLocked, UserError
from certdrop.files import private_dir, remove_stale_temps, replacing
from certdrop.intake import Intake
from certdrop.inventory import Inventory
from certdrop.statuslog import Logger, StatusLogFile, open_log

SNAPSHOT_MAX_DELAY = 2.0  # seconds a burst may defer the status.json rewrite
# A file the start-up scan finds may still be written (no daemon saw it open): it waits
# until it has been unchanged this long, or until its close event comes first.
SETTLE_SECONDS = 2.0
# The watchdog stops pinging when one job has run longer than its own timeouts allow.
STALL_FLOOR_SECONDS = 600.0

# Functions that attach features (deploy, expiry, metrics) to a starting daemon.
EXTENSIONS: list[Callable[[Daemon], None]] = []


@contextlib.contextmanager
def state_lock(state: Path) -> Iterator[None]:
    """Hold the exclusive lock on the state folder, or raise StateLocked at once."""
    fd = os.open(state / "lock", os.O_RDWR | os.O_CREAT, 0o600)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise StateLocked(f"{state} is in use by another certdrop process") from None
        yield
    finally:
        os.close(fd)


def write_status_json(config: configuration.Config, inventory: Inventory) -> None:
    """Rewrite status.json atomically, streamed (0644: no secrets; monitors read it)."""
    with replacing(config.status_json, 0o644) as out:
        status.write_json(out, config, inventory)


def prepare_folders(config: configuration.Config) -> None:
    """Create the state (0700), inbox (0700: drops carry keys) and outbox (0755) folders
    if they are missing, each with its mode from the start whatever the umask."""
    private_dir(config.state)
    config.inbox.mkdir(mode=0o700, parents=True, exist_ok=True)
    if not config.outbox.is_dir():
        config.outbox.mkdir(mode=0o755, parents=True)
        config.outbox.chmod(0o755)  # CSRs are public; whoever sends them to the CA reads here


@dataclass
class Context:
    """What a command needs; owned by whichever thread holds the state lock."""

    config: configuration.Config
    inventory: Inventory
    log: Logger
    intake: Intake
    hooks: dict[str, list[Callable[..., Any]]] = field(default_factory=dict)

    def on(self, event: str, hook: Callable[..., Any]) -> None:
        self.hooks.setdefault(event, []).append(hook)


Command = Callable[[Context, dict[str, Any]], str]
COMMANDS: dict[str, Command] = {}


def command(name: str) -> Callable[[Command], Command]:
    """Register a state-changing command that works in-process or through the daemon."""

    def register(fn: Command) -> Command:
        COMMANDS[name] = fn
        return fn

    return register


def open_context(
    config: configuration.Config, *, echo: bool | None = False
) -> tuple[Context, StatusLogFile]:
    log, sink = open_log(config.status_log, echo=echo)
    inventory = Inventory(config.state / "inventory.sqlite3")
    intake = Intake(config, inventory, log)
    intake.on_request = request_drops.on_request(intake)  # NAME.request.toml drops
    ctx = Context(config, inventory, log, intake)
    return ctx, sink


def run_command(config: configuration.Config, name: str, args: dict[str, Any]) -> str:
    """Run a registered command: in this process if the state is free, else in the daemon."""
    prepare_folders(config)
    try:
        with state_lock(config.state):
            ctx, sink = open_context(config)
            try:
                output = COMMANDS[name](ctx, args)
                write_status_json(config, ctx.inventory)
                return output
            finally:
                ctx.inventory.close()
                sink.close()
    except StateLocked:
        return _ask_daemon(config.state / "control.sock", name, args)


def _ask_daemon(path: Path, name: str, args: dict[str, Any]) -> str:
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
            sock.settimeout(600)
            sock.connect(os.fspath(path))
            sock.sendall(json.dumps({"command": name, "args": args}).encode() + b"\n")
            reply = json.loads(sock.makefile("rb").readline() or b"{}")
    except (OSError, ValueError) as exc:
        raise UserError(
            f"the state folder is locked but the daemon does not answer on {path} ({exc}); "
            "is another certdrop command running?"
        ) from None
    if not reply.get("ok"):
        raise UserError(str(reply.get("error", "the daemon refused the command")))
    return str(reply.get("output", ""))


@dataclass
class _Job:
    name: str
    run: Callable[[], Any]
    done: threading.Event = field(default_factory=threading.Event)
    result: Any = None
    error: str | None = None


class Daemon:
    """``certdrop run``: watch, process, reconcile and check until told to stop."""

    def __init__(self, config: configuration.Config, *, config_path: Path | None = None) -> None:
        self.config = config
        self.config_path = config_path
        self.queue: queue.Queue[_Job | None] = queue.Queue()
        self._pending: set[str] = set()
        self._pending_lock = threading.Lock()
        self._dirty = False
        self._dirty_since = 0.0
        self.ctx: Context | None = None
        self.stopping = threading.Event()
        self.extensions: list[Callable[[Daemon], None]] = []
        self.busy: tuple[str, float] | None = None  # the worker's job and its start
        self.worker: threading.Thread | None = None
        self.observer: threading.Thread | None = None
        self.inbox_id: tuple[int, int] | None = None  # (st_dev, st_ino) the watcher watches

    # -- producers (any thread) -----------------------------------------------------
    def submit_drop(self, name: str) -> None:
        with self._pending_lock:
            if name in self._pending:
                return
            self._pending.add(name)
        self.queue.put(_Job("drop", lambda: self._drop(name)))

    def submit_found(self, name: str) -> None:
        """Submit a drop the start-up scan found, once it has settled (SETTLE_SECONDS)."""
        try:
            age = time.time() - os.lstat(self.config.inbox / name).st_ctime
        except FileNotFoundError:
            return  # claimed already, or gone
        if age >= SETTLE_SECONDS:
            self.submit_drop(name)
            return
        # Still being written, perhaps: its close event submits it; if none comes, this does.
        timer = threading.Timer(SETTLE_SECONDS - age, self.submit_found, (name,))
        timer.daemon = True
        timer.start()

    def submit(self, name: str, fn: Callable[[], Any]) -> _Job:
        job = _Job(name, fn)
        self.queue.put(job)
        return job

    # -- the worker -----------------------------------------------------------------
    def _drop(self, name: str) -> None:
        with self._pending_lock:
            self._pending.discard(name)
        assert self.ctx is not None
        outcome = self.ctx.intake.process(name)
        if outcome is not None:
            self.changed()
            for hook in self.ctx.hooks.get("after_drop", []):
                hook(outcome)

    def changed(self) -> None:
        if not self._dirty:
            self._dirty, self._dirty_since = True, time.monotonic()

    def _work(self) -> None:
        assert self.ctx is not None
        while True:
            job = self.queue.get()
            if job is None:
                break
            if self.stopping.is_set():
                # Finish only the job under way: queued drops stay in the inbox for the
                # next start, queued commands are told why they did not run.
                job.error = "certdrop is stopping; run the command again after it restarts"
                job.done.set()
                continue
            try:
                self.busy = (job.name, time.monotonic())
                job.result = job.run()
            except CertdropError as exc:
                job.error = str(exc)
            except Exception as exc:  # noqa: BLE001 - the daemon must outlive any one job
                job.error = f"internal error in {job.name}: {type(exc).__name__}"
                self.ctx.log.error(
                    "daemon.job_failed",
                    job=job.name,
                    error=type(exc).__name__,
                    detail=str(exc)[:200],
                )
            finally:
                self.busy = None
                job.done.set()
            if self._dirty and (
                self.queue.empty() or time.monotonic() - self._dirty_since > SNAPSHOT_MAX_DELAY
            ):
                self._write_snapshot()
        if self._dirty:
            self._write_snapshot()

    def _write_snapshot(self) -> None:
        assert self.ctx is not None
        self._dirty = False
        write_status_json(self.config, self.ctx.inventory)
        for hook in self.ctx.hooks.get("after_snapshot", []):
            hook()  # in the worker: e.g. metrics refresh what they serve

    # -- control socket -------------------------------------------------------------
    def _serve_control(self, server: socket.socket) -> None:
        while True:
            try:
                conn, _ = server.accept()
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
            assert ctx is not None
            job = self.submit(f"command {request['command']}", lambda: fn(ctx, args))
            job.done.wait()
            if job.error is None:
                self.changed()
            reply = {"ok": job.error is None, "output": job.result, "error": job.error}
            with contextlib.suppress(OSError):
                conn.sendall(json.dumps(reply, default=str).encode() + b"\n")

    # -- reload ---------------------------------------------------------------------
    def _reload(self) -> None:
        assert self.ctx is not None
        try:
            path = self.config_path
            new = configuration.load(path, Path.cwd())
            if (new.inbox, new.state) != (self.config.inbox, self.config.state):
                raise UserError("inbox and state cannot change on reload; restart certdrop")
        except UserError as exc:
            self.ctx.log.error(
                "daemon.reload_refused",
                reason=str(exc),
                detail="the previous configuration stays in force",
            )
            return
        self.config = new
        self.ctx.config = new
        self.ctx.intake.reconfigure(new)
        self.changed()
        self.ctx.log.info("daemon.reloaded", config=new.source, services=sorted(new.services))
        for hook in self.ctx.hooks.get("after_reload", []):
            hook()

    # -- main -----------------------------------------------------------------------
    def run(self) -> int:
        config = self.config
        prepare_folders(config)
        handled = {signal.SIGTERM, signal.SIGINT, signal.SIGHUP}
        # Block before any thread starts so every thread inherits the mask.
        signal.pthread_sigmask(signal.SIG_BLOCK, handled)
        with state_lock(config.state):
            # Left by a kill -9 in the middle of a write; a reused PID would trip O_EXCL.
            for folder in (
                config.state,
                config.state / "deployed",
                config.outbox,
                config.inbox / "rejected",
            ):
                remove_stale_temps(folder)
            ctx, sink = open_context(config, echo=None)
            self.ctx = ctx
            for extension in self.extensions:
                extension(self)
            control_path = config.state / "control.sock"
            control_path.unlink(missing_ok=True)
            server = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            server.bind(os.fspath(control_path))
            os.chmod(control_path, 0o600)
            server.listen(8)
            threading.Thread(target=self._serve_control, args=(server,), daemon=True).start()

            worker = self.worker = threading.Thread(target=self._work, name="certdrop-worker")
            worker.start()
            self.submit("recover", self._recover)
            observer = self.observer = watcher.start(config.inbox, self.submit_drop)
            inbox_stat = os.stat(config.inbox)
            self.inbox_id = (inbox_stat.st_dev, inbox_stat.st_ino)
            for name in ctx.intake.pending():
                self.submit_found(name)
            for hook in ctx.hooks.get("on_start", []):
                hook()
            # Logged once the watcher runs: a drop made after this line is never missed.
            ctx.log.info(
                "daemon.started",
                inbox=str(config.inbox),
                state=str(config.state),
                config=config.source,
                pid=os.getpid(),
            )
            notify("READY=1")
            pinger = self._start_watchdog()
            try:
                while True:
                    sig = signal.sigwait(handled)
                    if sig == signal.SIGHUP:
                        notify(f"RELOADING=1\nMONOTONIC_USEC={time.monotonic_ns() // 1000}")
                        self.submit("reload", self._reload_then_ready)
                        continue
                    break
            finally:
                notify("STOPPING=1")
                pinger.set()
                observer.stop()
                for hook in ctx.hooks.get("on_stop", []):
                    hook()
                self.stopping.set()
                self.queue.put(None)
                worker.join()
                observer.join(timeout=5)
                server.close()
                control_path.unlink(missing_ok=True)
                ctx.log.info("daemon.stopped", signal=signal.Signals(sig).name)
                ctx.inventory.close()
                sink.close()
        return 0

    def _reload_then_ready(self) -> None:
        try:
            self._reload()
        finally:
            notify("READY=1")  # ends systemd's "reloading", whether it took or was refused

    # -- the systemd watchdog -------------------------------------------------------
    def stall_seconds(self) -> float:
        """How long one job may legitimately run: its renewal or reload and probe budgets."""
        services = self.config.services.values()
        deploy = sum(s.reload_timeout_seconds + s.probe_timeout_seconds for s in services)
        return STALL_FLOOR_SECONDS + self.config.renewal_timeout_seconds + 2 * deploy

    def health(self) -> str | None:
        """None while the daemon does its job; else what is wrong (the watchdog goes quiet).

        A ping from a timer alone proves only that the process lives. This one vouches
        that the worker thread runs and is not stuck in one job beyond every timeout it
        has, and that the inbox watcher runs: otherwise drops would wait forever.
        """
        if self.worker is None or not self.worker.is_alive():
            return "the worker thread has stopped"
        observer = self.observer
        emitters = list(getattr(observer, "emitters", ()))
        if observer is None or not observer.is_alive() or not all(e.is_alive() for e in emitters):
            return "the inbox watcher has stopped"
        if self.inbox_id is not None:
            try:
                st = os.stat(self.config.inbox)
                same = (st.st_dev, st.st_ino) == self.inbox_id
            except OSError:
                same = False
            if not same:
                return f"the inbox {self.config.inbox} was removed or replaced; restart to watch it"
        busy = self.busy
        if busy is not None and time.monotonic() - busy[1] > self.stall_seconds():
            return f"the job {busy[0]!r} has run for {time.monotonic() - busy[1]:.0f} s"
        return None

    def _start_watchdog(self) -> threading.Event:
        """Ping systemd every WATCHDOG_USEC / 2 while healthy; returns the stop event."""
        stop = threading.Event()
        interval = watchdog_interval(os.environ)
        if interval is None:
            return stop

        def ping() -> None:
            reported = None
            while not stop.wait(interval):
                problem = self.health()
                if problem is None:
                    notify("WATCHDOG=1")
                elif problem != reported and self.ctx is not None:
                    self.ctx.log.error(
                        "daemon.unhealthy",
                        reason=problem,
                        detail="watchdog pings stopped; systemd will restart certdrop",
                    )
                    notify(f"STATUS=unhealthy: {problem}")
                reported = problem

        threading.Thread(target=ping, name="certdrop-watchdog", daemon=True).start()
        return stop

    def _recover(self) -> None:
        assert self.ctx is not None
        if self.ctx.intake.recover():
            self.changed()
        for hook in self.ctx.hooks.get("after_recover", []):
            hook()


def watchdog_interval(environ: Mapping[str, str]) -> float | None:
    """Seconds between watchdog pings (half of WATCHDOG_USEC), None when not asked for."""
    try:
        usec = int(environ.get("WATCHDOG_USEC", ""))
    except ValueError:
        return None
    pid = environ.get("WATCHDOG_PID", "")
    if usec <= 0 or (pid and pid != str(os.getpid())):
        return None
    return usec / 2_000_000


def notify(message: str) -> None:
    """Tell systemd (Type=notify) about our state; a no-op when not run by systemd."""
    address = os.environ.get("NOTIFY_SOCKET")
    if not address:
        return
    if address.startswith("@"):
        address = "\0" + address[1:]
    with contextlib.suppress(OSError), socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
        sock.sendto(message.encode(), address)
