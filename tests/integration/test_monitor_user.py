"""Monitors are not root: with ``state_group`` set, a member of that group runs `status`,
`check` and `check --daemon` against a real daemon's state; a non-member gets one line
naming the path and the fix, never a traceback. Run as a real system user made for the
test (useradd), with subprocess's user=/group=/extra_groups=."""

from __future__ import annotations

import json
import os
import stat
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from certdrop import config as configuration
from certdrop.errors import ConfigError
from support.accounts import Account, as_user, monitor_account, python_for, shared_folder
from support.daemon import RunningDaemon, drop
from support.pkitools import ec_key, hierarchy


@dataclass
class Setup:
    account: Account
    daemon: RunningDaemon
    python: list[str]
    env: dict[str, str]

    def certdrop(self, *args: str, in_group: bool = True) -> tuple[int, str, str]:
        argv = [*self.python, "-m", "certdrop", "--config", str(self.daemon.config_path), *args]
        done = as_user(self.account, argv, env=self.env, in_group=in_group)
        assert "Traceback" not in done.stderr + done.stdout, done.stderr
        return done.returncode, done.stdout, done.stderr


@pytest.fixture
def setup() -> Iterator[Setup]:
    """A running daemon (root) whose state_group is a new group, one certificate
    deployed, and a new system user who may or may not be in that group."""
    with monitor_account() as account, shared_folder() as root:
        (root / "svc").mkdir()
        d = RunningDaemon(
            root,
            f'state_group = "{account.group}"\n'
            '[services.web]\nrole = "https"\ncert_file = "svc/c.pem"\nkey_file = "svc/k.pem"\n',
        )
        # As it would be installed: root-owned, readable by the group only.
        os.chown(d.config_path, 0, account.gid)
        d.config_path.chmod(0o640)
        try:
            d.start()
            h = hierarchy("monitor.example.test", slot=74, leaf_key=ec_key(475))
            drop(d.inbox, "web.pem", h.chain_pem + h.leaf.key_pem())
            d.wait_for("drop.accepted", file="web.pem")
            d.cli("assign", "web", "web")
            deadline = time.monotonic() + 10
            while '"state": "ok"' not in (d.state / "status.json").read_text():
                assert time.monotonic() < deadline, "status.json never showed the deploy"
                time.sleep(0.05)
            python, env = python_for(account)
            yield Setup(account, d, python, env)
        finally:
            d.kill()


def mode(path: Path) -> tuple[int, int, int]:
    st = os.lstat(path)
    return stat.S_IMODE(st.st_mode), st.st_uid, st.st_gid


def test_the_state_opens_to_the_group_and_no_further(setup: Setup) -> None:
    """state/ is 0750 and status.json 0640 with the group; the database, its WAL, the
    status log, the lock, deployed/ and the deployed key stay root-only; the control
    socket is 0660 for the group (read-only requests, see below)."""
    state, gid = setup.daemon.state, setup.account.gid
    assert mode(state) == (0o750, 0, gid)
    assert mode(state / "status.json") == (0o640, 0, gid)
    assert mode(state / "control.sock") == (0o660, 0, gid)
    for private in ("inventory.sqlite3", "inventory.sqlite3-wal", "status.log", "lock"):
        assert mode(state / private)[:2] == (0o600, 0), private
    assert mode(state / "deployed")[:2] == (0o700, 0)
    assert mode(setup.daemon.root / "svc" / "k.pem")[:2] == (0o600, 0)


def test_a_member_runs_status_and_check(setup: Setup) -> None:
    """A member reads the snapshot: `status` (table and JSON) and `check` (exit 0, from
    status.json, with the same verdict as root's), and `check --daemon` asks the daemon's
    health over the control socket."""
    code, out, err = setup.certdrop("status", "--json")
    assert (code, err) == (0, "")
    status = json.loads(out)
    assert [c["name"] for c in status["certificates"]] == ["web"]
    assert status["services"][0]["state"] == "ok"
    code, out, _ = setup.certdrop("status")
    assert code == 0 and "web" in out

    code, out, err = setup.certdrop("check", "--json")
    member = json.loads(out)
    assert (code, err) == (0, ""), out
    assert member["source"] == "status.json" and member["certificates"][0]["name"] == "web"
    root = json.loads(setup.daemon.cli("check", "--json").stdout)
    assert root["source"] == "inventory"
    keep = ("name", "sha256", "not_after", "level", "services", "renew_at", "overdue_at")
    assert [{k: c[k] for k in keep} for c in member["certificates"]] == [
        {k: c[k] for k in keep} for c in root["certificates"]
    ]

    code, out, err = setup.certdrop("check", "--daemon")
    assert (code, err) == (0, ""), out
    assert out.startswith("CERTDROP OK - 1 certificate(s) in use, web expires in ")


def test_a_member_runs_show_from_the_snapshot(setup: Setup) -> None:
    """`show` by a member gives the certificate object of status.json and its services,
    and says where it came from; an unknown name is one line and exit 1."""
    code, out, err = setup.certdrop("show", "web", "--json")
    assert (code, err) == (0, ""), out
    data = json.loads(out)
    root = json.loads(setup.daemon.cli("show", "web", "--json").stdout)
    for key in ("name", "status", "subject", "sans", "sha256", "not_after", "trusted"):
        assert data[key] == root[key], key
    assert [d["service"] for d in data["deployments"]] == [d["service"] for d in root["deployments"]]
    assert "status.json" in data["source"] and data["events"] == []
    code, out, err = setup.certdrop("show", "web")
    assert code == 0 and out.startswith("web (in_use)") and "status.json" in out
    code, out, err = setup.certdrop("show", "nothing-here")
    assert (code, out) == (1, "") and err.count("\n") == 1 and "no certificate named" in err


def test_a_member_may_not_change_anything(setup: Setup) -> None:
    """Through the control socket a member may ask health only: `reload` is refused by
    the daemon (it reads the caller's uid from the kernel); `csr` fails on the state
    folder's permissions; each says so in one line."""
    code, out, err = setup.certdrop("reload")
    assert (code, out) == (1, "")
    assert err == "certdrop: only root may run 'reload'; monitors may ask health\n"
    code, out, err = setup.certdrop("csr", "new", "--cn", "new.example.test")
    assert code == 1 and err.count("\n") == 1 and "permission denied" in err, err
    assert "new" not in json.loads(setup.daemon.cli("status", "--json").stdout)["certificates"]


def test_a_non_member_gets_one_line_naming_the_path(setup: Setup) -> None:
    """Outside the group: `status` exits 1 and `check` 3 (UNKNOWN), each with one line
    naming the file and the fix; no traceback."""
    setup.daemon.config_path.chmod(0o644)  # the config readable; the state still is not
    code, out, err = setup.certdrop("status", in_group=False)
    state = setup.daemon.state
    assert (code, out) == (1, "")
    assert err.startswith(f"certdrop: {state / 'inventory.sqlite3'}: permission denied; run as root")
    assert err.count("\n") == 1
    code, out, err = setup.certdrop("check", in_group=False)
    assert code == 3 and err == ""
    first = out.splitlines()[0]
    assert first.startswith("CERTDROP UNKNOWN - ") and str(state) in first and "state_group" in first

    setup.daemon.config_path.chmod(0o640)  # as installed: the config is the group's too
    code, out, err = setup.certdrop("check", in_group=False)
    assert code == 3 and out.count("\n") == 1
    assert out.startswith(f"CERTDROP UNKNOWN - {setup.daemon.config_path}: cannot be read by this user")
    code, out, err = setup.certdrop("status", in_group=False)
    assert code == 1 and err.count("\n") == 1 and "cannot be read by this user" in err


def test_the_group_may_not_be_missing() -> None:
    """A state_group that does not exist is a config error naming it."""
    with pytest.raises(ConfigError, match="state_group: there is no group 'cdt-nonexistent'"):
        configuration.from_mapping({"state_group": "cdt-nonexistent"}, base=Path("/tmp"), source="t")
