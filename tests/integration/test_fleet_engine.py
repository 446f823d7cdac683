"""The NATS wrapper against a real 3-node JetStream cluster: CAS, watches, node failures."""

from __future__ import annotations

import itertools
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from certdrop.fleet.engine import Engine, Settings
from certdrop.fleet.kv import Conflict, Entry, Unavailable, put_decided
from support.nats_cluster import NatsCluster

pytestmark = pytest.mark.real
BUCKETS = ("t_one", "t_two")


@pytest.fixture
def cluster(tmp_path: Path) -> Iterator[NatsCluster]:
    with NatsCluster(tmp_path / "nats") as running:
        yield running


class Events:
    """What an engine reported: connection changes and watched entries, thread-safely."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.connection: list[tuple[bool, str]] = []
        self.entries: list[Entry] = []

    def on_connection(self, up: bool, detail: str) -> None:
        with self.lock:
            self.connection.append((up, detail))

    def on_entries(self, batch: list[Entry]) -> None:
        with self.lock:
            self.entries.extend(batch)

    def latest(self, key: str) -> bytes | None:
        with self.lock:
            found = [e for e in self.entries if e.key == key]
        return found[-1].value if found else None

    def ups(self) -> list[bool]:
        with self.lock:
            return [up for up, _ in self.connection]


def wait(what: str, ready: Callable[[], bool], timeout: float = 15.0) -> float:
    start = time.monotonic()
    while not ready():
        if time.monotonic() - start > timeout:
            raise AssertionError(f"not within {timeout} s: {what}")
        time.sleep(0.05)
    return time.monotonic() - start


def entries_when_ready(engine: Engine, bucket: str, timeout: float = 20) -> list[Entry]:
    """A snapshot needs a consumer, which needs the meta leader: after nodes rejoin that
    election may lag the stream's own, so a snapshot is retried (bounded)."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            return engine.entries(bucket)
        except Unavailable:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.2)


@pytest.fixture
def engines() -> Iterator[Callable[..., tuple[Engine, Events]]]:
    made: list[Engine] = []

    def make(urls: list[str], timeout: float = 2.0) -> tuple[Engine, Events]:
        events = Events()
        engine = Engine(Settings(tuple(urls), timeout=timeout), BUCKETS, events.on_connection)
        made.append(engine)
        engine.start()
        assert engine.wait_ready(20), "the engine did not connect and open its buckets"
        return engine, events

    yield make
    for engine in made:
        engine.close()


def test_buckets_are_made_with_three_replicas(cluster: NatsCluster, engines: Callable[..., tuple[Engine, Events]]) -> None:
    """The engine creates its buckets as R3 streams, which every node then holds."""
    engine, _ = engines(cluster.urls)
    engine.create("t_one", "k", b"v")
    wait("a leader for KV_t_one", lambda: cluster.stream_leader("KV_t_one") is not None)
    for node in cluster.nodes:
        reply = node.monitor("/jsz?streams=true&accounts=true")
        streams = [s for a in reply["account_details"] for s in a.get("stream_detail", [])]
        config = next(s for s in streams if s["name"] == "KV_t_one")
        assert len(config["cluster"].get("replicas", [])) == 2  # the leader plus two peers


def test_compare_and_swap_refuses_a_stale_writer(cluster: NatsCluster, engines: Callable[..., tuple[Engine, Events]]) -> None:
    """A second create of a key, or an update from an old revision, loses with Conflict."""
    a, _ = engines(cluster.urls)
    b, _ = engines(cluster.urls)
    rev = a.create("t_one", "lease", b"a")
    with pytest.raises(Conflict):
        b.create("t_one", "lease", b"b")
    rev2 = b.update("t_one", "lease", b"b", last=rev)
    with pytest.raises(Conflict):
        a.update("t_one", "lease", b"a-again", last=rev)
    got = a.get("t_one", "lease")
    assert got is not None and got.value == b"b" and got.revision == rev2
    assert a.get("t_one", "missing") is None


def test_put_decided_rereads_after_losing_a_race(cluster: NatsCluster, engines: Callable[..., tuple[Engine, Events]]) -> None:
    """When another writer gets in between read and write, put_decided reads and decides again."""
    a, _ = engines(cluster.urls)
    b, _ = engines(cluster.urls)
    a.create("t_one", "k", b"1")
    seen: list[bytes | None] = []

    def decide(current: Entry | None) -> str:
        seen.append(current.value if current else None)
        if len(seen) == 1:  # sneak a write in after this read: the swap must lose
            b.update("t_one", "k", b"2", last=current.revision)  # type: ignore[union-attr]
        return "write" if current is not None and current.value != b"3" else "done"

    result = a.submit(lambda: put_decided(a.kv("t_one"), "t_one", "k", b"3", decide)).result(10)  # type: ignore[arg-type]
    assert result == "write" and seen == [b"1", b"2"]
    assert a.get("t_one", "k").value == b"3"  # type: ignore[union-attr]
    again = a.submit(lambda: put_decided(a.kv("t_one"), "t_one", "k", b"3", decide)).result(10)  # type: ignore[arg-type]
    assert again == "done"


def test_a_watch_replays_then_follows(cluster: NatsCluster, engines: Callable[..., tuple[Engine, Events]]) -> None:
    """A watch first delivers every current value, then each change and each delete."""
    writer, _ = engines(cluster.urls)
    writer.create("t_two", "old", b"before")
    reader, events = engines(cluster.urls)
    reader.watch("t_two", events.on_entries)
    wait("the replay", lambda: events.latest("old") == b"before")
    writer.create("t_two", "new", b"after")
    took = wait("the change", lambda: events.latest("new") == b"after")
    writer.delete("t_two", "old")
    wait("the delete", lambda: events.latest("old") is None and len(events.entries) >= 3)
    assert took < 5
    assert [e.key for e in reader.entries("t_two")] == ["new"]


def test_losing_the_stream_leader_changes_nothing_visible(cluster: NatsCluster, engines: Callable[..., tuple[Engine, Events]]) -> None:
    """kill -9 of the bucket's leader: writes go on (after an election) and none is lost."""
    engine, events = engines(cluster.urls)
    engine.watch("t_one", events.on_entries)
    engine.create("t_one", "k0", b"0")
    leader = cluster.stream_leader("KV_t_one")
    assert leader is not None
    cluster.node(leader).kill()
    written, unavailable = [], 0
    deadline = time.monotonic() + 30
    for i in range(1, 21):
        while True:
            try:
                engine.create("t_one", f"k{i}", str(i).encode())
                break
            except Conflict:
                break  # a put that timed out had committed after all: it is there
            except Unavailable:
                unavailable += 1
                assert time.monotonic() < deadline, "writes did not resume after the leader died"
                time.sleep(0.2)
        written.append(f"k{i}")
    survivors = [n for n in cluster.nodes if n.running()]
    other, _ = engines([n.url for n in survivors])
    assert sorted(e.key for e in entries_when_ready(other, "t_one")) == sorted(["k0", *written])
    wait("the watch saw every write", lambda: all(events.latest(k) is not None for k in written), 45)
    new_leader = cluster.stream_leader("KV_t_one")
    assert new_leader not in (None, leader)


def test_two_nodes_down_fails_fast_and_the_outbox_keeps_the_writes(cluster: NatsCluster, engines: Callable[..., tuple[Engine, Events]]) -> None:
    """With one node of three left writes fail as Unavailable (no hang), stay queued, and
    all land once the nodes return; a write that timed out but committed is not doubled."""
    engine, _ = engines(cluster.urls, timeout=1.5)
    engine.create("t_one", "warm", b"up")
    cluster.nodes[1].stop()
    cluster.nodes[2].stop()
    outbox = [(f"q{i}", str(i).encode()) for i in range(5)]
    for key, value in outbox:
        start = time.monotonic()
        with pytest.raises(Unavailable):
            engine.create("t_one", key, value)
        assert time.monotonic() - start < 5  # bounded by the timeout, not a hang
    assert len(outbox) == 5  # nothing was taken out of the queue
    cluster.nodes[1].start()
    cluster.nodes[2].start()
    for node in cluster.nodes[1:]:
        node.wait_healthy()

    def drain() -> bool:
        while outbox:
            key, value = outbox[0]
            decide = lambda cur, v=value: "done" if cur is not None and cur.value == v else "write"  # noqa: E731
            try:
                engine.submit(lambda k=key, v=value, d=decide: put_decided(engine.kv("t_one"), "t_one", k, v, d)).result(10)  # type: ignore[misc]
            except Unavailable:
                return False
            outbox.pop(0)
        return True

    wait("the outbox drained", drain, timeout=40)
    # Right after the nodes return one replica often still catches up, and each snapshot's
    # consumer lands on any replica: several in a row make a stale one likely to show.
    every = ["q0", "q1", "q2", "q3", "q4", "warm"]
    for _ in range(10):
        assert sorted(e.key for e in entries_when_ready(engine, "t_one")) == every
    for _ in range(5):  # a watch's replay, what a gateway converges from, is current too
        batches: list[list[Entry]] = []
        engine.watch("t_one", batches.append)
        wait("a watch's replay", lambda b=batches: bool(b), timeout=30)
        assert sorted(e.key for e in batches[0]) == every


def test_reconnect_is_reported_and_the_watch_catches_up(cluster: NatsCluster, engines: Callable[..., tuple[Engine, Events]]) -> None:
    """When the engine's server goes away it says disconnected, then connected once it is
    back on a node (nats-py learns the others from the cluster), and its watch delivers
    what was written meanwhile through another node."""
    first = cluster.nodes[0]
    lone, events = engines([first.url])
    lone.watch("t_two", events.on_entries)
    others, _ = engines([n.url for n in cluster.nodes[1:]])
    assert events.ups() == [True]
    first.stop()
    wait("disconnected reported", lambda: False in events.ups())
    others.create("t_two", "meanwhile", b"written while cut off")
    first.start()
    first.wait_healthy()
    wait("reconnected reported", lambda: events.ups()[-1:] == [True], timeout=30)
    wait("the missed write", lambda: events.latest("meanwhile") == b"written while cut off", timeout=30)
    ups = events.ups()
    assert ups[:3] == [True, False, True]
    assert all(a != b for a, b in itertools.pairwise(ups))  # changes only, never repeats


def test_an_engine_with_no_server_keeps_trying_and_closes_cleanly(tmp_path: Path) -> None:
    """No server at all: the engine reports disconnected once, refuses calls as
    Unavailable, and close() ends its thread."""
    events = Events()
    engine = Engine(Settings(("nats://127.0.0.1:1",), timeout=0.5), BUCKETS, events.on_connection)
    engine.start()
    try:
        wait("disconnected reported", lambda: events.ups() == [False])
        with pytest.raises(Unavailable):
            engine.get("t_one", "k")
        time.sleep(1.5)
        assert events.ups() == [False]
    finally:
        engine.close()
