"""The commands operators reach for: status filters, assign --dry-run, rename, delete,
unassign, held, renew. In process through main(argv) on real files and a real
inventory, plus a running daemon where the daemon's part matters."""

from __future__ import annotations

import datetime as dt
import json
import select
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

from certdrop.daemon import state as daemon_state
from certdrop.pki import keys
from certdrop.store.inventory import Inventory
from support.cli import INTERMEDIATE, Workspace, bundle, leaf
from support.daemon import RunningDaemon, drop
from support.pkitools import NOW, ec_key, issue

SERVICES = """
[services.web]
role = "https"
cert_file = "live/web.pem"
key_file = "live/web.key"
reload = ["true"]

[services.mail]
role = "smtp-server"
combined_file = "live/mail.pem"
hostname = "mail.example.test"
"""


def one_line(err: str) -> bool:
    return err.count("\n") == 1 and "Traceback" not in err


def workspace(tmp_path: Path, extra: str = "") -> Workspace:
    (tmp_path / "live").mkdir(parents=True, exist_ok=True)
    return Workspace(tmp_path, SERVICES + extra)


def expiring(slot: int, cn: str, days: int, *sans: str):
    """A leaf from the test CA that ends ``days`` from now."""
    return issue(
        cn, ec_key(740 + slot), INTERMEDIATE, sans=sans or (f"{slot}.example.test",),
        not_after=NOW + dt.timedelta(days=days),
    )  # fmt: skip


def db_bytes(state: Path) -> bytes:
    """The database file and its WAL, as bytes on disk."""
    found = b""
    for suffix in ("", "-wal"):
        path = state / f"inventory.sqlite3{suffix}"
        if path.exists():
            found += path.read_bytes()
    return found


def stored_key(state: Path, name: str) -> bytes:
    inventory = Inventory(state / "inventory.sqlite3", readonly=True)
    try:
        key = inventory.key_pem(name)
    finally:
        inventory.close()
    assert key is not None
    return key


# -- status filters ----------------------------------------------------------------------
def test_status_filters_by_status_expiry_service_and_name(tmp_path: Path) -> None:
    """Each filter narrows the certificates; --service narrows the services too; a
    pattern is a shell glob over the whole name; --sort expiry puts the soonest first."""
    ws = workspace(tmp_path)
    ws.drop("本番 soon.pem", bundle(expiring(1, "本番", 5)))
    ws.drop("本番 later.pem", bundle(expiring(2, "本番2", 40)))
    ws.drop("web late.pem", bundle(expiring(3, "web", 300)))
    assert ws.run("csr", "asked", "--cn", "asked.example.test").code == 0
    assert ws.run("assign", "本番 soon", "web").code == 0

    def names(*args: str) -> list[str]:
        result = ws.run("status", "--json", *args)
        assert result.code == 0, result.err
        return [c["name"] for c in result.json()["certificates"]]

    assert names() == ["asked", "web late", "本番 later", "本番 soon"]
    assert names("--status", "in_use") == ["本番 soon"]
    assert names("--status", "requested") == ["asked"]
    assert names("--expiring", "30") == ["本番 soon"]
    assert names("--expiring", "60", "--status", "unused") == ["本番 later"]
    assert names("--service", "web") == ["本番 soon"]
    assert names("本番*") == ["本番 later", "本番 soon"]
    assert names("*late*") == ["web late", "本番 later"]
    assert names("--sort", "expiry") == ["本番 soon", "本番 later", "web late", "asked"]
    only_web = ws.run("status", "--json", "--service", "web").json()["services"]
    assert [s["name"] for s in only_web] == ["web"]
    table = ws.run("status", "--expiring", "30").out
    assert "本番 soon" in table and "web late" not in table
    for bad in (["--service", "nope"], ["--expiring", "soon"], ["--status", "gone"],
                ["--sort", "size"]):  # fmt: skip
        result = ws.run("status", *bad)
        assert result.code == 1 and one_line(result.err) and result.out == "", bad


# -- assign --dry-run --------------------------------------------------------------------
def test_assign_dry_run_shows_the_plan_and_changes_nothing(tmp_path: Path) -> None:
    """Paths, owner, group, modes and sizes of each file, the shared reload, the probe;
    afterwards state/ and the service folder are exactly as before."""
    ws = workspace(tmp_path)
    ws.drop("本番 証明書.pem", bundle(leaf(4, "本番", "mail.example.test")))
    before, live = ws.state_files(), sorted((tmp_path / "live").iterdir())
    plan = ws.run("assign", "--dry-run", "本番 証明書", "web", "mail", "--json")
    assert plan.code == 0, plan.err
    assert ws.state_files() == before and sorted((tmp_path / "live").iterdir()) == live
    data = plan.json()
    web, mail = data["services"]
    assert [(f["role"], f["mode"], f["secret"]) for f in web["files"]] == [
        ("key_file", "0600", True), ("cert_file", "0644", False)
    ]  # fmt: skip
    assert web["files"][0]["path"] == str(tmp_path / "live" / "web.key")
    assert web["files"][0]["owner"] == "root" and not web["files"][0]["exists"]
    assert web["reload"] == ["true"] and web["probe"] is None
    assert [f["role"] for f in mail["files"]] == ["combined_file"] and mail["reload"] is None
    text = ws.run("assign", "--dry-run", "本番 証明書", "web").out
    assert "write " + str(tmp_path / "live" / "web.key") in text and "nothing was changed" in text
    assert ws.run("assign", "本番 証明書", "web").code == 0
    again = ws.run("assign", "--dry-run", "本番 証明書", "web", "--json").json()
    assert again["services"][0]["unchanged"] is True
    for bad in (["--dry-run", "本番 証明書"], ["--dry-run", "nope", "web"],
                ["--dry-run", "本番 証明書", "nope"]):  # fmt: skip
        result = ws.run("assign", *bad)
        assert result.code == 1 and one_line(result.err), bad


# -- rename ------------------------------------------------------------------------------
def test_rename_moves_a_request_and_its_csr(tmp_path: Path) -> None:
    """A request keeps its key under the new name and its CSR moves in the outbox; the
    certificate the CA issues later completes it under the new name."""
    ws = workspace(tmp_path)
    made = ws.run("csr", "New certificate", "--cn", "new.example.test", "--json").json()
    old_csr = Path(made["csr"])
    assert old_csr.name == "New certificate.csr"
    csr_bytes = old_csr.read_bytes()
    done = ws.run("rename", "New certificate", "本番 新しい", "--json")
    assert done.code == 0, done.err
    new_csr = Path(done.json()["csr"])
    assert new_csr == ws.state / "outbox" / "本番 新しい.csr" and not old_csr.exists()
    assert new_csr.read_bytes() == csr_bytes
    key = stored_key(ws.state, "本番 新しい")
    issued = issue("new.example.test", keys.load_pem(key), INTERMEDIATE, sans=["new.example.test"])
    assert ws.drop("from-the-ca.crt", issued.pem + INTERMEDIATE.pem).recorded == ["本番 新しい"]
    [event] = ws.events("cert.renamed")
    assert (event["old"], event["name"], event["by"]) == ("New certificate", "本番 新しい", "rename")


def test_rename_refusals_are_one_line_and_change_nothing(tmp_path: Path) -> None:
    """An unknown OLD, a taken NEW, a NEW the name rule refuses, or the same name."""
    ws = workspace(tmp_path)
    ws.drop("a.pem", bundle(leaf(5, "a")))
    ws.drop("b.pem", bundle(leaf(6, "b")))
    before = ws.state_files()
    for args, fragment in (
        (["nope", "x"], "no certificate named 'nope'"),
        (["a", "b"], "already in use"),
        (["a", "x/y"], "contains '/'"),
        (["a", " x"], "starts or ends with a space"),
        (["a", "x\u202e"], "U+202E"),
        (["a", "a"], "already has that name"),
        (["a"], "required"),
    ):
        result = ws.run("rename", *args)
        assert result.code == 1 and one_line(result.err) and fragment in result.err, args
    assert ws.state_files() == before


# -- delete ------------------------------------------------------------------------------
def test_delete_erases_the_key_from_the_database(tmp_path: Path) -> None:
    """After delete the key's bytes are in neither the database file nor its WAL (they
    were before), a request's CSR leaves the outbox, and cert.deleted says so."""
    ws = workspace(tmp_path)
    ws.drop("gone.pem", bundle(leaf(7, "gone")))
    body = stored_key(ws.state, "gone").splitlines()[2]  # a base64 line of the key
    assert body in db_bytes(ws.state)
    done = ws.run("delete", "gone", "--json")
    assert done.code == 0 and done.json()["key_removed"] is True
    assert body not in db_bytes(ws.state)
    assert ws.run("csr", "asked", "--cn", "asked.example.test").code == 0
    assert (ws.state / "outbox" / "asked.csr").exists()
    assert ws.run("delete", "asked").code == 0
    assert not (ws.state / "outbox" / "asked.csr").exists()
    assert [e["name"] for e in ws.events("cert.deleted")] == ["gone", "asked"]
    assert ws.run("status", "--json").json()["certificates"] == []


def test_delete_is_refused_while_a_service_wants_it(tmp_path: Path) -> None:
    """The refusal names the services and the way out; nothing changes."""
    ws = workspace(tmp_path)
    ws.drop("used.pem", bundle(leaf(8, "used")))
    assert ws.run("assign", "used", "web").code == 0
    before = ws.state_files()
    result = ws.run("delete", "used")
    assert result.code == 1 and one_line(result.err)
    assert "assigned to web" in result.err and "certdrop unassign web" in result.err
    assert ws.state_files() == before
    assert ws.run("delete", "nope").code == 1


# -- unassign ------------------------------------------------------------------------------
def test_unassigned_services_are_left_alone_until_assigned_again(
    daemon_factory: Callable[..., RunningDaemon], tmp_path: Path
) -> None:
    """After unassign, a restart neither rewrites the operator's files (reconcile skips
    the service) nor auto-assigns the hostname service; assign manages them again."""
    ws = workspace(tmp_path)
    cert = leaf(9, "mail", "mail.example.test")
    ws.drop("mail.pem", bundle(cert))
    assert ws.run("assign", "mail", "web", "mail").code == 0
    done = ws.run("unassign", "web", "mail", "--json")
    assert done.code == 0 and [d["certificate"] for d in done.json()] == ["mail", "mail"]
    assert not (ws.state / "deployed" / "web.json").exists()
    (tmp_path / "live" / "web.pem").write_bytes(b"the operator's own file\n")
    status = ws.run("status", "--json").json()
    assert [(s["certificate"], s["managed"]) for s in status["services"]] == [(None, False)] * 2
    assert status["certificates"][0]["status"] == "unused"

    d = daemon_factory(root=tmp_path).start()
    drop(d.inbox, "newer.pem", bundle(leaf(10, "mail", "mail.example.test")))
    d.wait_for("drop.accepted", file="newer.pem")
    assert d.stop() == 0
    assert (tmp_path / "live" / "web.pem").read_bytes() == b"the operator's own file\n"
    assert [e for e in ws.events("service.assigned") if e["by"] == "hostname"] == []
    assert ws.run("status", "--json").json()["services"][0]["certificate"] is None

    assert ws.run("assign", "mail", "web").code == 0
    assert (tmp_path / "live" / "web.pem").read_bytes() == cert.pem + INTERMEDIATE.pem
    assert ws.run("unassign", "nope").code == 1


# -- held ----------------------------------------------------------------------------------
def test_held_lists_and_discards_pieces(tmp_path: Path) -> None:
    """Held pieces carry ids (also in status --json); --discard drops one, erases a
    held key's bytes and logs held.discarded; a bad id is one line."""
    ws = workspace(tmp_path)
    waiting = leaf(11, "待機中", "wait.example.test")
    ws.drop("待機中.crt", waiting.pem + INTERMEDIATE.pem)
    loose = issue("loose", ec_key(760), INTERMEDIATE)
    ws.drop("loose.key", loose.key_pem())
    listing = ws.run("held", "--json").json()
    assert [(h["kind"], h["from"]) for h in listing] == [("certificate", "待機中.crt"), ("key", "loose.key")]
    assert "CN=待機中" in listing[0]["description"] and listing[1]["description"] == "EC 256 key"
    assert [h["id"] for h in ws.run("status", "--json").json()["held"]] == [h["id"] for h in listing]
    text = ws.run("held").out
    assert "待機中.crt" in text and text.startswith("ID")
    key_line = keys.to_pem(keys.load_pem(loose.key_pem())).splitlines()[1]  # as held (SEC1)
    assert key_line in db_bytes(ws.state)
    done = ws.run("held", "--discard", str(listing[1]["id"]), "--json")
    assert done.code == 0 and done.json()["kind"] == "key"
    assert key_line not in db_bytes(ws.state)
    assert [h["from"] for h in ws.run("held", "--json").json()] == ["待機中.crt"]
    [event] = ws.events("held.discarded")
    assert (event["kind"], event["from"]) == ("key", "loose.key")
    for bad in (["--discard", "999"], ["--discard", "x"]):
        result = ws.run("held", *bad)
        assert result.code == 1 and one_line(result.err), bad


# -- renew ---------------------------------------------------------------------------------
HANDOFF = """
[renewal]
command = [{python}, "-c", "import sys; open(sys.argv[2] + '.seen', 'w').write(sys.argv[1])", "{{name}}", "{{csr}}"]
"""


def test_renew_now_without_a_daemon_runs_the_command_and_waits(tmp_path: Path) -> None:
    """The same start as the scheduler's: a renewal request like the certificate, its
    CSR, renewal.command run (and waited for) with {name} and {csr}; --dry-run before
    changes nothing; a certificate no service uses is refused."""
    ws = workspace(tmp_path, HANDOFF.format(python=json.dumps(sys.executable)))
    ws.drop("本番 証明書.pem", bundle(leaf(12, "本番", "mail.example.test")))
    ws.drop("spare.pem", bundle(leaf(13, "spare")))
    assert ws.run("assign", "本番 証明書", "web").code == 0
    before = ws.state_files()
    plan = ws.run("renew", "本番 証明書", "--dry-run", "--json")
    assert plan.code == 0, plan.err
    rehearsed = plan.json()
    assert rehearsed["request"].startswith("本番 証明書-renewal-") and rehearsed["services"] == ["web"]
    assert rehearsed["sans"] == ["mail.example.test"] and rehearsed["command"][-2] == rehearsed["request"]
    assert ws.state_files() == before

    done = ws.run("renew", "本番 証明書", "--json")
    assert done.code == 0, done.err
    result = done.json()
    assert result["state"] == "handed_off" and result["request"] == rehearsed["request"]
    assert Path(result["csr"]).exists()
    assert Path(result["csr"] + ".seen").read_text() == result["request"]
    [started] = ws.events("renewal.started")
    assert started["by"] == "renew" and started["reason"] == "asked for by `certdrop renew`"
    assert [e["event"] for e in ws.events("renewal.")] == [
        "renewal.started", "renewal.attempt", "renewal.handed_off"
    ]  # fmt: skip
    again = ws.run("renew", "本番 証明書")
    assert again.code == 1 and one_line(again.err) and "awaited in the inbox" in again.err
    for name, fragment in (("spare", "not assigned to any service"), ("nope", "no certificate")):
        result = ws.run("renew", name)
        assert result.code == 1 and one_line(result.err) and fragment in result.err


def test_renew_in_fleet_mode_with_the_engine_unreachable_needs_take_over(tmp_path: Path) -> None:
    """No fleet engine answers (nothing listens on the port): renew says so and changes
    nothing; --take-over renews without the lease and logs fleet.lease_unchecked."""
    ws = workspace(tmp_path, HANDOFF.format(python=json.dumps(sys.executable)))
    ws.drop("web.pem", bundle(leaf(14, "web")))
    assert ws.run("assign", "web", "web").code == 0  # before [fleet]: no engine wait
    with ws.config_path.open("a") as config:
        config.write('[fleet]\nservers = ["nats://127.0.0.1:1"]\ngateway = "gw-a"\n')
    refused = ws.run("renew", "web")
    assert refused.code == 1 and one_line(refused.err), refused.err
    assert "the fleet engine is unreachable" in refused.err and "--take-over" in refused.err
    assert not ws.events("renewal.started")
    done = ws.run("renew", "web", "--take-over", "--json")
    assert done.code == 0, done.err
    assert done.json()["state"] == "handed_off" and done.json()["lease"]["how"] == "unchecked"
    [unchecked] = ws.events("fleet.lease_unchecked")
    assert unchecked["cert"] == "web" and unchecked["level"] == "warning"


def test_renew_through_a_running_daemon(
    daemon_factory: Callable[..., RunningDaemon], tmp_path: Path
) -> None:
    """With the daemon running, renew hands the start to it: its own renewer runs the
    command in the background and logs the hand-off."""
    ws = workspace(tmp_path, HANDOFF.format(python=json.dumps(sys.executable)))
    ws.drop("gw.pem", bundle(leaf(14, "gw", "gw.example.test")))
    assert ws.run("assign", "gw", "web").code == 0
    d = daemon_factory(root=tmp_path).start()
    done = json.loads(d.cli("renew", "gw", "--json").stdout)
    assert done["in_daemon"] is True and done["request"].startswith("gw-renewal-")
    d.wait_for("renewal.started", cert="gw", by="renew")
    d.wait_for("renewal.handed_off", cert="gw")
    assert d.stop() == 0


def test_a_slow_reader_of_status_does_not_hold_the_state(tmp_path: Path) -> None:
    """`certdrop status --json | less`: once output flows, certdrop no longer holds the
    state lock, although the reader has not taken it all (so a daemon can start)."""
    ws = workspace(tmp_path)
    big = issue("big", ec_key(790), INTERMEDIATE, sans=[f"h{i}.example.test" for i in range(4900)])  # under limits.max_sans
    ws.drop("big.pem", big.pem + INTERMEDIATE.pem + big.key_pem())
    proc = subprocess.Popen(
        [sys.executable, "-m", "certdrop", "--config", str(ws.config_path), "status", "--json"],
        stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, stdin=subprocess.DEVNULL,
    )  # fmt: skip
    assert proc.stdout is not None
    try:
        ready, _, _ = select.select([proc.stdout], [], [], 60)
        assert ready and proc.poll() is None  # writing, and blocked on the full pipe
        with daemon_state.state_lock(ws.state):  # at once: nobody holds it
            pass
        assert proc.poll() is None
        data = json.loads(proc.stdout.read())
        assert len(data["certificates"][0]["sans"]) == 4900  # some 100 kB: more than a pipe holds
        assert proc.wait(30) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(10)
        proc.stdout.close()
