"""Key-value operations on one JetStream bucket, and the errors they end in (as data).

Used on the engine's event loop (:mod:`certdrop.fleet.engine`). Failures are
:class:`Unavailable` (no connection, no quorum, a timeout: a write's outcome is then
unknown, it may still commit) or :class:`Conflict` (a compare-and-swap lost); anything
else the engine refuses is an :class:`EngineError`.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, Literal, TypeVar

import nats.errors
import nats.js.errors
from nats.js.kv import KeyValue

T = TypeVar("T")
Decision = Literal["write", "done", "superseded"]
_KV_DELETED = ("DEL", "PURGE")


class EngineError(Exception):
    """The engine refused or failed an operation; the message says which and why."""


class Unavailable(EngineError):
    """No answer in time (no connection, no quorum): a write's outcome is unknown."""


class Conflict(EngineError):
    """A compare-and-swap lost: the key is not at the revision the writer expected."""


@dataclass(frozen=True)
class Entry:
    """One key's value as read or watched; ``value`` None: the key was deleted."""

    bucket: str
    key: str
    value: bytes | None
    revision: int


def _unavailable(exc: BaseException) -> Unavailable:
    return Unavailable(f"the fleet engine did not answer ({type(exc).__name__}: {exc})")


async def guard(coro: Awaitable[T]) -> T:
    """Turn nats-py's exceptions into the two this module promises (and EngineError)."""
    try:
        return await coro
    except nats.js.errors.KeyWrongLastSequenceError as exc:
        raise Conflict(f"compare-and-swap lost: {exc.description}") from None
    except (
        TimeoutError,
        nats.errors.TimeoutError,
        nats.errors.NoRespondersError,
        nats.errors.ConnectionClosedError,
        nats.errors.ConnectionReconnectingError,
        nats.errors.OutboundBufferLimitError,
        nats.errors.StaleConnectionError,
        nats.js.errors.ServiceUnavailableError,
        nats.js.errors.NoStreamResponseError,
    ) as exc:
        raise _unavailable(exc) from None
    except nats.js.errors.APIError as exc:
        if exc.code == 503 or exc.err_code in (10008, 10023):  # no quorum / no leader
            raise _unavailable(exc) from None
        raise EngineError(f"the fleet engine refused: {exc.description or exc}") from None


def entry_of(bucket: str, raw: Any) -> Entry:
    deleted = raw.operation in _KV_DELETED
    return Entry(bucket, raw.key, None if deleted else bytes(raw.value or b""), raw.revision or 0)


async def aget(kv: KeyValue, bucket: str, key: str) -> Entry | None:
    """The key's current entry, None when it does not exist or was deleted."""
    found = await guard(_get_or_none(kv, key))
    if found is None:
        return None
    return Entry(bucket, key, bytes(found.value or b""), found.revision or 0)


async def _get_or_none(kv: KeyValue, key: str) -> KeyValue.Entry | None:
    try:
        return await kv.get(key)
    except nats.js.errors.KeyNotFoundError:  # also a deleted key (kv.get converts it)
        return None


async def last_sequence(kv: KeyValue) -> int:
    """The bucket's last sequence as its stream leader says (0: empty); Unavailable while
    the stream has no leader (a replica answering then may be behind)."""
    info = (await guard(kv.status())).stream_info
    if info.cluster is not None and not info.cluster.leader:
        raise Unavailable("the bucket's stream has no leader yet")
    return (info.state.last_seq or 0) if info.state.messages else 0


async def snapshot(kv: KeyValue, bucket: str, timeout: float) -> list[Entry]:
    """Every current value in the bucket, at least as new as when it was asked for.

    A replay comes from a consumer the cluster places on any replica of the stream, and a
    replica that has just rejoined replays only what it has caught up to so far. So the
    replay must reach the last sequence the leader reported before it started (the last
    message is the last of its key, so a current replay delivers it); a shorter one is
    taken again, for up to ``timeout`` seconds (then Unavailable).
    """
    deadline = asyncio.get_running_loop().time() + timeout
    while True:
        floor = await last_sequence(kv)
        found, reached = await _replay(kv, bucket, timeout)
        if reached >= floor:
            return [e for e in found if e.value is not None]
        if asyncio.get_running_loop().time() > deadline:
            raise Unavailable(f"{bucket}: no replica had caught up to sequence {floor}")
        await asyncio.sleep(0.1)


async def _replay(kv: KeyValue, bucket: str, timeout: float) -> tuple[list[Entry], int]:
    """One replay (deletes included) and the highest sequence it delivered."""
    watcher = await guard(kv.watchall())
    found: list[Entry] = []
    try:
        while True:
            update = await guard(watcher.updates(timeout=timeout))  # type: ignore[no-untyped-call]
            if update is None:
                return found, max((e.revision for e in found), default=0)
            found.append(entry_of(bucket, update))
    finally:
        with contextlib.suppress(Exception):
            await watcher.stop()  # type: ignore[no-untyped-call]


async def put_decided(
    kv: KeyValue, bucket: str, key: str, value: bytes, decide: Callable[[Entry | None], Decision]
) -> Decision:
    """Publish ``value`` under ``key`` by compare-and-swap, deciding against what is there.

    ``decide`` sees the current entry (None: absent) and says whether to write. A lost
    swap reads and decides again; a timeout raises Unavailable and the caller keeps the
    record to publish later, when ``decide`` will find it "done" if the write had landed.
    """
    for _ in range(8):
        current = await aget(kv, bucket, key)
        action = decide(current)
        if action != "write":
            return action
        try:
            if current is None:
                await guard(kv.create(key, value))
            else:
                await guard(kv.update(key, value, last=current.revision))
        except Conflict:
            continue
        return "write"
    raise Conflict(f"{bucket}/{key}: eight compare-and-swaps in a row lost; trying later")


async def delete(kv: KeyValue, key: str) -> None:
    await guard(kv.delete(key))
