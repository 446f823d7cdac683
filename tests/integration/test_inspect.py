"""`certdrop inspect FILE...`: the verdict a drop would get, from the real pipeline, with
the state folder byte-identical afterwards (every file under state/ hashed)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from certdrop.pki import keys
from certdrop.store.inventory import Inventory
from support.cli import INTERMEDIATE, Workspace, bundle, leaf
from support.daemon import RunningDaemon
from support.pkitools import ec_key, issue


def files(tmp_path: Path, **contents: bytes) -> dict[str, Path]:
    """Files outside the inbox to inspect: ``new_pem=...`` is written as ``new.pem``."""
    folder = tmp_path / "to-inspect"
    folder.mkdir(exist_ok=True)
    made = {}
    for key, data in contents.items():
        path = folder / ".".join(key.rsplit("_", 1))
        path.write_bytes(data)
        made[key] = path
    return made


def stocked(tmp_path: Path) -> Workspace:
    """A state with an entry, a held certificate, a request and a rejected drop."""
    ws = Workspace(tmp_path)
    ws.drop("known.pem", bundle(leaf(20, "known.example.test", "known.example.test")))
    waiting = leaf(21, "waiting.example.test", "waiting.example.test")
    assert ws.drop("waiting.crt", waiting.pem + INTERMEDIATE.pem).result == "held"
    (ws.inbox / "asked.request.toml").write_text('cn = "asked.example.test"\n')
    assert ws.run("csr", "req", "--cn", "req.example.test").code == 0
    ws.drop("junk.pem", b"not a certificate")
    return ws


def test_inspect_changes_no_byte_of_the_state(tmp_path: Path) -> None:
    """Accepted, held, paired, rejected and request files: every verdict is computed,
    and afterwards state/ holds the same files with the same bytes."""
    ws = stocked(tmp_path)
    waiting_key = leaf(21, "waiting.example.test", "waiting.example.test").key_pem()
    new = leaf(22, "新しい証明書", "new.example.test")
    paths = files(
        tmp_path,
        new_pem=bundle(new),
        waiting_key=waiting_key,
        bad_pem=new.pem + leaf(23, "other").key_pem(),
        junk_pem=b"junk",
    )
    request = tmp_path / "to-inspect" / "more.request.toml"
    request.write_text('cn = "more.example.test"\nsans = ["more.example.test"]\n')
    before = ws.state_files()
    result = ws.run("inspect", "--json", *map(str, paths.values()), str(request))
    assert result.code == 0, result.err
    assert ws.state_files() == before
    found = {f["file"]: f for f in result.json()}
    assert found["new.pem"]["result"] == "accepted" and found["new.pem"]["entries"] == ["new"]
    assert found["new.pem"]["chains"][0]["trusted"] is True
    assert found["waiting.key"]["result"] == "accepted"
    assert found["waiting.key"]["pairs"][0]["paired_with"] == "waiting.key"
    assert found["waiting.key"]["entries"] == ["waiting"]  # named after the held drop
    assert (found["bad.pem"]["result"], found["bad.pem"]["code"]) == ("rejected", "key_mismatch")
    assert found["junk.pem"]["code"] == "unsupported_content" and found["junk.pem"]["reason"]
    assert found["more.request.toml"]["result"] == "accepted"
    assert found["more.request.toml"]["csr"].endswith("outbox/more.csr")
    assert not (ws.state / "outbox" / "more.csr").exists()
    text = ws.run("inspect", str(paths["new_pem"]))
    assert "would be accepted as new" in text.out and "(trusted)" in text.out
    assert ws.state_files() == before


def test_files_count_as_dropped_one_after_the_other(tmp_path: Path) -> None:
    """A certificate and then its key: the first would be held, the second pairs with
    it; in the other order the key would be held and the certificate completes it."""
    ws = Workspace(tmp_path)
    cert = leaf(24, "pair.example.test", "pair.example.test")
    paths = files(tmp_path, pair_pem=cert.pem + INTERMEDIATE.pem, pair_key=cert.key_pem())
    before = ws.state_files()
    first, second = ws.run("inspect", "--json", str(paths["pair_pem"]), str(paths["pair_key"])).json()
    assert (first["result"], second["result"]) == ("held", "accepted")
    assert second["entries"] == ["pair"] and second["pairs"][0]["certificate"] == "pair"
    key_first = ws.run("inspect", "--json", str(paths["pair_key"]), str(paths["pair_pem"])).json()
    assert [f["result"] for f in key_first] == ["held", "accepted"]
    assert ws.state_files() == before


def test_a_certificate_for_a_pending_request_completes_it(tmp_path: Path) -> None:
    """The CA's certificate for a request made here keeps the request's name."""
    ws = Workspace(tmp_path)
    assert ws.run("csr", "本番 証明書", "--cn", "mail.example.test").code == 0
    inventory = Inventory(ws.state / "inventory.sqlite3", readonly=True)
    try:
        key_pem = inventory.key_pem("本番 証明書")
    finally:
        inventory.close()
    assert key_pem is not None
    key = keys.load_pem(key_pem)
    issued = issue("mail.example.test", key, INTERMEDIATE, sans=["mail.example.test"])
    path = files(tmp_path, issued_pem=issued.pem + INTERMEDIATE.pem)["issued_pem"]
    before = ws.state_files()
    found = ws.run("inspect", "--json", str(path)).json()[0]
    assert found["entries"] == ["本番 証明書"]
    assert found["pairs"][0]["paired_with"] == "request 本番 証明書"
    assert ws.state_files() == before


def test_a_wal_left_by_a_crash_is_read_but_not_touched(tmp_path: Path) -> None:
    """With commits still only in the WAL (no daemon holds the lock), inspect sees them
    and leaves the database and its WAL byte-identical."""
    ws = Workspace(tmp_path)
    one = leaf(25, "one.example.test", "one.example.test")
    ws.drop("one.pem", bundle(one))
    holder = Inventory(ws.state / "inventory.sqlite3")  # stays open: the WAL keeps its frames
    try:
        with holder.transaction():
            holder.set_status("one", "in_use")
        assert (ws.state / "inventory.sqlite3-wal").stat().st_size > 0
        again = files(tmp_path, again_pem=bundle(one))
        before = ws.state_files()
        found = ws.run("inspect", "--json", str(again["again_pem"])).json()[0]
        assert found["duplicate_of"] == ["one"]
        assert ws.state_files() == before
    finally:
        holder.close()


def test_inspect_beside_a_running_daemon(
    daemon_factory: Callable[..., RunningDaemon], tmp_path: Path
) -> None:
    """With the daemon holding the state, inspect still answers (as a subprocess) and
    the daemon records nothing for it."""
    ws = Workspace(tmp_path)
    d = daemon_factory(root=tmp_path).start()
    cert = issue("solo.example.test", ec_key(726), INTERMEDIATE, sans=["solo.example.test"])
    path = files(tmp_path, solo_pem=cert.pem + INTERMEDIATE.pem + cert.key_pem())["solo_pem"]
    done = d.cli("inspect", str(path))
    assert "solo.pem: would be accepted as solo" in done.stdout
    assert [e for e in d.events() if e["event"].startswith(("drop.", "cert."))] == []
    assert d.stop() == 0
    assert ws.run("status", "--json").json()["certificates"] == []


def test_inspect_bad_arguments_are_one_line(tmp_path: Path) -> None:
    """No file, or a file that cannot be read: exit 1 and one line, nothing else."""
    ws = Workspace(tmp_path)
    for args in (["inspect"], ["inspect", str(tmp_path / "missing.pem")]):
        result = ws.run(*args)
        assert (result.code, result.out) == (1, "") and result.err.count("\n") == 1
