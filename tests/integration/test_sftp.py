"""The SFTP drop channel for real: OpenSSH's sshd with a chrooted drop user whose upload
folder is the daemon's inbox, and uploads with paramiko and the ``sftp`` client.

internal-sftp writes straight to the final name and reports a close event even for an
upload cut off mid-file, so these tests show that a closed-but-partial file is never
imported, and that a complete re-upload under the same name then goes through.
"""

from __future__ import annotations

import json
import socket
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from support.daemon import RunningDaemon
from support.pkitools import ec_key, hierarchy
from support.process import need
from support.sshd import Sshd


class BusySshd(Sshd):
    """The test sshd, taking up to 100 unauthenticated connections at once (default 10)."""

    def config_text(self) -> str:
        return super().config_text().replace("Match User", "MaxStartups 100\nMatch User", 1)


@pytest.fixture
def channel(
    tmp_path: Path, daemon_factory: Callable[..., RunningDaemon]
) -> Iterator[tuple[BusySshd, RunningDaemon]]:
    """A running sshd and a daemon whose inbox is the drop user's upload folder."""
    need("sshd")
    need("sftp")
    with BusySshd(tmp_path / "sshd") as sshd:
        root = tmp_path / "certdrop"
        root.mkdir()
        (root / "certdrop.toml").write_text(f'inbox = "{sshd.inbox}"\nstate = "state"\n')
        daemon = daemon_factory(root=root)
        daemon.inbox = sshd.inbox
        try:
            daemon.start()
            yield sshd, daemon
        finally:
            daemon.kill()  # before sshd's exit removes the inbox under it


def full_drop(slot: int) -> tuple[bytes, str]:
    """A chain + key drop (EC leaf: fast to make) and its leaf fingerprint."""
    h = hierarchy(f"sftp{slot}.example.test", slot=slot, leaf_key=ec_key(500 + slot))
    return h.chain_pem + h.leaf.key_pem(), h.leaf.sha256


def upload(sshd: Sshd, name: str, data: bytes, pieces: int = 1, pause: float = 0.0) -> None:
    """Write ``data`` to inbox/name through paramiko in ``pieces``, pausing between them."""
    step = len(data) // pieces + 1
    with (
        sshd.paramiko_client() as client,
        client.open_sftp() as sftp,
        sftp.open(f"/inbox/{name}", "wb") as remote,
    ):
        for i in range(0, len(data), step):
            remote.write(data[i : i + step])
            remote.flush()
            time.sleep(pause)


def inventory_fingerprints(daemon: RunningDaemon) -> list[str]:
    status = json.loads(daemon.cli("status", "--json").stdout)
    return sorted(c["sha256"] for c in status["certificates"])


def drop_events(daemon: RunningDaemon, name: str) -> list[str]:
    return [e["event"] for e in daemon.events() if e.get("file") == name]


def test_paramiko_and_sftp_cli_uploads_are_accepted(
    channel: tuple[BusySshd, RunningDaemon], tmp_path: Path
) -> None:
    """A paramiko put and an `sftp` batch put both end in exactly one drop.accepted."""
    sshd, daemon = channel
    expected = []
    for slot, put in ((1, sshd.sftp_put_paramiko), (2, sshd.sftp_put_cli)):
        data, sha = full_drop(slot)
        local = tmp_path / f"local{slot}.pem"
        local.write_bytes(data)
        put(local, f"upload{slot}.pem")
        expected.append(sha)
    for slot in (1, 2):
        event = daemon.wait_for("drop.accepted", file=f"upload{slot}.pem")
        assert event["certificates"] == [f"upload{slot}"]
    time.sleep(0.3)
    assert drop_events(daemon, "upload1.pem") == ["drop.accepted"]
    assert drop_events(daemon, "upload2.pem") == ["drop.accepted"]
    assert inventory_fingerprints(daemon) == sorted(expected)
    assert sorted(p.name for p in sshd.inbox.iterdir()) == [".claimed"]


def test_slow_upload_in_pieces_is_read_once_whole(channel: tuple[BusySshd, RunningDaemon]) -> None:
    """An upload written in 8 pieces with pauses is processed once, after its close."""
    sshd, daemon = channel
    data, sha = full_drop(3)
    began = time.monotonic()
    upload(sshd, "slow.pem", data, pieces=8, pause=0.15)
    event = daemon.wait_for("drop.accepted", file="slow.pem")
    # Nothing was read before the close: the event came after the last piece.
    assert time.monotonic() - began >= 8 * 0.15 and event["certificates"] == ["slow"]
    time.sleep(0.3)
    assert drop_events(daemon, "slow.pem") == ["drop.accepted"]
    assert inventory_fingerprints(daemon) == [sha]


def cut_off_upload(sshd: Sshd, name: str, data: bytes) -> None:
    """Write ``data`` to inbox/name, then kill the connection with the file still open."""
    client = sshd.paramiko_client()
    try:
        sftp = client.open_sftp()
        remote = sftp.open(f"/inbox/{name}", "wb")
        remote.write(data)
        remote.flush()  # acknowledged by the server: the bytes are in the file
        transport = client.get_transport()
        assert transport is not None
        transport.sock.shutdown(socket.SHUT_RDWR)  # type: ignore[union-attr]
    finally:
        client.close()


@pytest.mark.parametrize("where", ["certificate", "key"])
def test_upload_cut_off_mid_file_is_rejected_as_truncated_then_reupload_works(
    channel: tuple[BusySshd, RunningDaemon], where: str
) -> None:
    """A connection killed inside a PEM block leaves a partial file that is rejected as
    truncated (never imported); the complete re-upload under the same name is accepted."""
    sshd, daemon = channel
    data, sha = full_drop(4 if where == "certificate" else 5)
    cut = data.index(b"-----END", 40) - 30 if where == "certificate" else len(data) - 100
    cut_off_upload(sshd, "cut.pem", data[:cut])
    event = daemon.wait_for("drop.rejected", file="cut.pem")
    assert event["code"] == "truncated"
    assert "truncated" in event["reason"]
    reason = json.loads((sshd.inbox / "rejected" / "cut.pem.reason.json").read_text())
    assert reason["code"] == "truncated" and "upload it again" in reason["reason"]
    assert inventory_fingerprints(daemon) == []

    upload(sshd, "cut.pem", data)
    daemon.wait_for("drop.accepted", file="cut.pem")
    assert inventory_fingerprints(daemon) == [sha]
    assert drop_events(daemon, "cut.pem") == ["drop.rejected", "drop.accepted"]


def test_upload_cut_between_blocks_holds_the_certificate_and_reupload_completes_it(
    channel: tuple[BusySshd, RunningDaemon],
) -> None:
    """Cut off just after the chain's last END line, the drop holds a certificate (never
    imports it); the complete re-upload records it and leaves nothing held."""
    sshd, daemon = channel
    data, sha = full_drop(6)
    cut = data.index(b"-----BEGIN PRIVATE KEY")
    cut_off_upload(sshd, "between.pem", data[:cut])
    daemon.wait_for("drop.held", file="between.pem")
    status = json.loads(daemon.cli("status", "--json").stdout)
    assert status["certificates"] == [] and [h["kind"] for h in status["held"]] == ["certificate"]
    upload(sshd, "between.pem", data)
    daemon.wait_for("drop.accepted", file="between.pem")
    status = json.loads(daemon.cli("status", "--json").stdout)
    assert [c["sha256"] for c in status["certificates"]] == [sha]
    assert status["held"] == []


def test_fifty_parallel_uploads_are_all_accepted(channel: tuple[BusySshd, RunningDaemon]) -> None:
    """50 uploads on 50 SSH connections at once each end in one drop.accepted."""
    sshd, daemon = channel
    count = 50
    drops = [full_drop(100 + i) for i in range(count)]
    errors: list[BaseException] = []
    start = threading.Barrier(count)

    def upload(i: int) -> None:
        try:
            with sshd.paramiko_client() as client, client.open_sftp() as sftp:
                start.wait(timeout=60)
                with sftp.open(f"/inbox/par{i:02d}.pem", "wb") as remote:
                    data = drops[i][0]
                    remote.write(data[: len(data) // 2])
                    remote.flush()
                    remote.write(data[len(data) // 2 :])
        except BaseException as exc:
            errors.append(exc)
            start.abort()

    threads = [threading.Thread(target=upload, args=(i,)) for i in range(count)]
    began = time.monotonic()
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    assert errors == []
    for i in range(count):
        daemon.wait_for("drop.accepted", file=f"par{i:02d}.pem", timeout=60)
    elapsed = time.monotonic() - began
    print(f"{count} parallel SFTP uploads accepted in {elapsed:.1f} s")
    time.sleep(0.3)
    results = [e for e in daemon.events() if e["event"].startswith("drop.")]
    assert len(results) == count
    assert inventory_fingerprints(daemon) == sorted(sha for _, sha in drops)
    assert sorted(p.name for p in sshd.inbox.iterdir()) == [".claimed"]
