"""The module that runs the NATS connection: JetStream key-value buckets behind a threaded API.

The daemon is threaded and nats-py is asyncio, so an :class:`Engine` runs its own event
loop in its own thread ("certdrop-fleet"). Other threads call the blocking methods
(``get``, ``create``, ``update``, ``entries``), which wait at most ``timeout`` seconds, or
hand a coroutine to :meth:`Engine.submit` and get a future back. Watch callbacks run on
the engine thread and must only hand their batch on (the daemon enqueues it for its
worker).

Failures are data: :class:`Unavailable` (no quorum, no connection, a timeout: a write's
outcome is then unknown, it may still commit), :class:`Conflict` (compare-and-swap lost).
So callers never retry a write blindly; they read again and decide again
(:func:`certdrop.fleet.kv.put_decided`).

Connecting never gives up: the first connection is retried with a growing pause, later
ones by nats-py's reconnect. After every reconnect the watches are started afresh, which
replays the latest value of every key, so a gateway that was cut off converges. A replay
is handed on only once it reaches the stream's last sequence as the leader reported it
when the watch started: the cluster places a watch's consumer on any replica, and one that
has just rejoined replays only what it has caught up to (certdrop issue 14).
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import ssl
import threading
from collections.abc import Callable, Coroutine
from dataclasses import dataclass, field
from typing import Any

import nats
import nats.errors
import nats.js.errors
from nats.aio.client import Client
from nats.js.api import KeyValueConfig, StorageType
from nats.js.kv import KeyValue

from certdrop.fleet.kv import (
    EngineError,
    Entry,
    T,
    Unavailable,
    aget,
    entry_of,
    guard,
    last_sequence,
    snapshot,
)

BATCH_MAX = 500  # entries handed on at once; a replay of 10,000 keys comes in 20 jobs


@dataclass(frozen=True)
class Settings:
    """How to reach the engine (the ``[fleet]`` table's connection keys)."""

    servers: tuple[str, ...]
    name: str = "certdrop"
    tls_ca: str = ""
    tls_cert: str = ""
    tls_key: str = ""
    creds: str = ""
    replicas: int = 3
    timeout: float = 3.0  # one operation; a put needs a quorum of the stream's replicas


@dataclass
class _Watch:
    bucket: str
    on_entries: Callable[[list[Entry]], None]
    task: asyncio.Task[None] | None = None


@dataclass
class _State:
    connected: bool | None = None  # None: nothing reported yet
    closing: bool = False
    buckets: dict[str, KeyValue] = field(default_factory=dict)


class Engine:
    """A connection to NATS JetStream with the fleet's buckets, on its own thread."""

    def __init__(
        self,
        settings: Settings,
        buckets: tuple[str, ...],
        on_connection: Callable[[bool, str], None] = lambda up, detail: None,
    ) -> None:
        self.settings = settings
        self.bucket_names = buckets
        self.on_connection = on_connection
        self._state = _State()
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._run, name="certdrop-fleet", daemon=True)
        self._nc: Client | None = None
        self._ready = threading.Event()  # connected and every bucket opened
        self._watches: list[_Watch] = []
        self._connector: concurrent.futures.Future[None] | None = None
        self._troubled = False  # a call came back Unavailable since the watches started

    # -- lifecycle (any thread) -------------------------------------------------------------
    def start(self) -> None:
        self._thread.start()
        self._connector = asyncio.run_coroutine_threadsafe(self._connect_forever(), self._loop)

    def wait_ready(self, timeout: float) -> bool:
        """True once connected with the buckets open (within ``timeout`` seconds)."""
        return self._ready.wait(timeout)

    @property
    def connected(self) -> bool:
        return bool(self._state.connected) and self._ready.is_set()

    def close(self, timeout: float = 5.0) -> None:
        if not self._thread.is_alive():
            return
        self._state.closing = True
        with contextlib.suppress(Exception):
            asyncio.run_coroutine_threadsafe(self._close(), self._loop).result(timeout)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(timeout)

    def _run(self) -> None:
        asyncio.set_event_loop(self._loop)
        self._loop.run_forever()
        # nats-py leaves helper tasks behind; end them here, not at garbage collection.
        pending = asyncio.all_tasks(self._loop)
        for task in pending:
            task.cancel()
        self._loop.run_until_complete(asyncio.gather(*pending, return_exceptions=True))
        self._loop.close()

    async def _close(self) -> None:
        if self._connector is not None:
            self._connector.cancel()
        for watch in self._watches:
            if watch.task is not None:
                watch.task.cancel()
        if self._nc is not None:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self._nc.close(), 3)

    # -- connecting -------------------------------------------------------------------------
    def _tls(self) -> ssl.SSLContext | None:
        s = self.settings
        wants_tls = any(u.startswith("tls://") for u in s.servers)
        if not (s.tls_ca or s.tls_cert or wants_tls):
            return None
        context = ssl.create_default_context(cafile=s.tls_ca or None)
        if s.tls_cert:
            context.load_cert_chain(s.tls_cert, s.tls_key or None)
        return context

    async def _connect_forever(self) -> None:
        pause = 0.5
        while not self._state.closing:
            try:
                self._nc = await nats.connect(
                    servers=list(self.settings.servers),
                    name=self.settings.name,
                    tls=self._tls(),
                    user_credentials=self.settings.creds or None,
                    connect_timeout=2,
                    reconnect_time_wait=1,
                    max_reconnect_attempts=-1,
                    ping_interval=5,
                    max_outstanding_pings=2,
                    allow_reconnect=True,
                    disconnected_cb=self._disconnected,
                    reconnected_cb=self._reconnected,
                    error_cb=self._error,
                )
            except (TimeoutError, OSError, nats.errors.Error, ssl.SSLError) as exc:
                self._report(False, f"cannot connect: {type(exc).__name__}: {exc}")
                await asyncio.sleep(pause)
                pause = min(pause * 2, 10.0)
                continue
            await self._open_buckets()
            return

    async def _open_buckets(self) -> None:
        """Open (or create, replicas=N) every bucket; retried until it works."""
        assert self._nc is not None
        js = self._nc.jetstream(timeout=self.settings.timeout)
        while not self._state.closing:
            try:
                for name in self.bucket_names:
                    if name not in self._state.buckets:
                        self._state.buckets[name] = await guard(self._bucket(js, name))
            except EngineError as exc:
                self._report(False, f"cannot open the buckets: {exc}")
                await asyncio.sleep(1.0)
                continue
            self._ready.set()
            self._report(True, "connected")
            for watch in self._watches:
                self._start_watch(watch)
            return

    async def _bucket(self, js: Any, name: str) -> KeyValue:
        kv = await self._open_bucket(js, name)
        # Reads go through the stream leader, never "direct" from any replica: a replica
        # that was cut off may hold a write the cluster never committed, and a
        # compare-and-swap decided on that would drop a record from the outbox.
        kv._direct = False
        return kv

    async def _open_bucket(self, js: Any, name: str) -> KeyValue:
        try:
            kv: KeyValue = await js.key_value(name)
            return kv
        except nats.js.errors.BucketNotFoundError:
            config = KeyValueConfig(
                bucket=name,
                history=1,
                replicas=self.settings.replicas,
                storage=StorageType.FILE,
            )
            made: KeyValue = await js.create_key_value(config)
            return made

    def _report(self, up: bool, detail: str) -> None:
        """Tell ``on_connection`` about a change only (the first report always counts)."""
        if up == self._state.connected:
            return
        self._state.connected = up
        self.on_connection(up, detail)

    async def _disconnected(self) -> None:
        self._report(False, "disconnected")

    async def _reconnected(self) -> None:
        if self._ready.is_set():  # else the first _open_buckets is still retrying
            self._report(True, "reconnected")
            for watch in self._watches:
                self._start_watch(watch)  # a fresh replay: what changed meanwhile arrives

    async def _error(self, exc: Exception) -> None:
        # nats.connect retries a failed first connection by itself and reports each try
        # here; later connection errors show as disconnects, the rest on the call.
        if not self._ready.is_set():
            self._report(False, f"cannot connect: {type(exc).__name__}: {exc}")

    # -- calls (any thread but the engine's) -------------------------------------------------
    def submit(self, make: Callable[[], Coroutine[Any, Any, T]]) -> concurrent.futures.Future[T]:
        """Run ``make()`` on the engine's loop; the future has its result or exception."""
        return asyncio.run_coroutine_threadsafe(self._call(make), self._loop)

    async def _call(self, make: Callable[[], Coroutine[Any, Any, T]]) -> T:
        # A stream that lost its leader may leave a watch's consumer stalled for a while
        # (nats-py resets it only after missed heartbeats); once a call succeeds after one
        # came back Unavailable, the watches are started afresh, so nothing waits on that.
        try:
            result = await make()
        except Unavailable:
            self._troubled = True
            raise
        if self._troubled:
            self._troubled = False
            for watch in self._watches:
                self._start_watch(watch)
        return result

    def _wait(self, make: Callable[[], Coroutine[Any, Any, T]], calls: int = 1) -> T:
        """The result of ``make()``, which may take ``calls`` operations' timeouts."""
        future = self.submit(make)
        try:
            return future.result(self.settings.timeout * calls + 2)
        except concurrent.futures.TimeoutError:
            future.cancel()
            raise Unavailable("the fleet engine did not answer in time") from None

    def kv(self, bucket: str) -> KeyValue:
        """The opened bucket, or Unavailable while not connected."""
        found = self._state.buckets.get(bucket)
        if found is None or not self._ready.is_set():
            raise Unavailable("not connected to the fleet engine")
        return found

    def get(self, bucket: str, key: str) -> Entry | None:
        return self._wait(lambda: aget(self.kv(bucket), bucket, key))

    def create(self, bucket: str, key: str, value: bytes) -> int:
        return self._wait(lambda: guard(self.kv(bucket).create(key, value)))

    def update(self, bucket: str, key: str, value: bytes, last: int) -> int:
        return self._wait(lambda: guard(self.kv(bucket).update(key, value, last=last)))

    def delete(self, bucket: str, key: str) -> None:
        self._wait(lambda: guard(self.kv(bucket).delete(key)))

    def entries(self, bucket: str) -> list[Entry]:
        """Every current value in ``bucket`` (a one-off replay, as new as the stream
        leader's last sequence when it started: a lagging replica's replay is taken again)."""
        timeout = self.settings.timeout
        return self._wait(lambda: snapshot(self.kv(bucket), bucket, timeout), calls=3)

    # -- watches ----------------------------------------------------------------------------
    def watch(self, bucket: str, on_entries: Callable[[list[Entry]], None]) -> None:
        """Call ``on_entries`` (on the engine thread) with every current value and then
        with every change, in batches; started again after each reconnect."""
        watch = _Watch(bucket, on_entries)
        self._watches.append(watch)
        if self._ready.is_set():
            self._loop.call_soon_threadsafe(self._start_watch, watch)

    def resync(self) -> None:
        """Start every watch afresh: a full replay (a safety net for anything missed)."""
        for watch in self._watches:
            self._loop.call_soon_threadsafe(self._start_watch, watch)

    def _start_watch(self, watch: _Watch) -> None:
        if watch.task is not None:
            watch.task.cancel()
        watch.task = self._loop.create_task(self._follow(watch))

    async def _follow(self, watch: _Watch) -> None:
        while not self._state.closing:
            try:
                kv = self.kv(watch.bucket)
                floor = await last_sequence(kv)
                watcher = await guard(kv.watchall())
            except (EngineError, Unavailable):
                await asyncio.sleep(1.0)
                continue
            try:
                await _drain_watcher(watcher, watch, floor)
            except asyncio.CancelledError:
                with contextlib.suppress(Exception):
                    await asyncio.wait_for(watcher.stop(), 1)  # type: ignore[no-untyped-call]
                raise
            except _Behind:  # another consumer, likely on another (or a caught-up) replica
                with contextlib.suppress(Exception):
                    await asyncio.wait_for(watcher.stop(), 1)  # type: ignore[no-untyped-call]
                await asyncio.sleep(0.2)
            except Exception:  # noqa: BLE001 - a broken watch is started again, never lost
                await asyncio.sleep(1.0)


class _Behind(Exception):
    """A watch's replay ended short of the stream's last sequence: its replica lags."""


async def _drain_watcher(watcher: Any, watch: _Watch, floor: int) -> None:
    """Hand the replay on once it reaches ``floor`` (the leader's last sequence before the
    watch started: a replica that has just rejoined replays only what it holds so far, and
    handing that on would show gateways an older fleet), then every change as it comes."""
    batch: list[Entry] = []
    current = floor == 0
    while True:
        try:
            update = await watcher.updates(timeout=0.05 if batch and current else 30.0)
        except nats.errors.TimeoutError:
            update = "idle"
        if update is None and not current:
            raise _Behind
        if isinstance(update, str) or update is None:  # quiet, or the replay is complete
            if batch and current:
                watch.on_entries(batch)
                batch = []
            continue
        batch.append(entry_of(watch.bucket, update))
        current = current or batch[-1].revision >= floor
        if len(batch) >= BATCH_MAX and current:
            watch.on_entries(batch)
            batch = []
