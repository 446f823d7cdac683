"""Trust in the shell, in process (issue 10): the [trust] config, the inventory's schema
migration, intake's recorded verdict and bundle, re-judging, and the status snapshot."""

from __future__ import annotations

import dataclasses
import datetime as dt
import json
import sqlite3
from collections.abc import Iterator
from pathlib import Path

import pytest

from certdrop import config as configuration
from certdrop.errors import ConfigError
from certdrop.intake.pipeline import Intake
from certdrop.intake.rejudge import FINGERPRINT, rejudge
from certdrop.pki.trust import PROFILES
from certdrop.store import snapshot
from certdrop.store.eventlog import open_log
from certdrop.store.inventory import Inventory
from certdrop.store.truststore import TrustStore
from support.trustkit import NOW, Cert, intermediate, leaf, root


def write(tmp_path: Path, body: str) -> Path:
    path = tmp_path / "certdrop.toml"
    path.write_text(f'inbox = "inbox"\nstate = "state"\n{body}')
    return path


def problems(tmp_path: Path, body: str) -> str:
    with pytest.raises(ConfigError) as caught:
        configuration.load(write(tmp_path, body), tmp_path)
    return str(caught.value)


def test_profile_defaults_to_rfc5280_and_takes_webpki(tmp_path: Path) -> None:
    """[trust] profile is rfc5280 unless set; webpki is taken as written."""
    assert configuration.load(write(tmp_path, ""), tmp_path).trust_profile == "rfc5280"
    cfg = configuration.load(write(tmp_path, '[trust]\nprofile = "webpki"\n'), tmp_path)
    assert cfg.trust_profile == "webpki"


def test_unknown_profile_is_a_config_error_listing_the_choices(tmp_path: Path) -> None:
    """A profile outside the two is refused with both names in the message."""
    message = problems(tmp_path, '[trust]\nprofile = "strict"\n')
    assert "trust.profile" in message and all(f'"{p}"' in message for p in PROFILES)


def test_a_hostname_that_is_no_name_is_a_config_error(tmp_path: Path) -> None:
    """services.X.hostname must be an IP address or a valid (IDNA) domain name."""
    body = (
        '[services.web]\nrole = "https"\nhostname = "bad..name"\n'
        'cert_file = "c.pem"\nkey_file = "k.pem"\n'
    )
    assert "services.web.hostname 'bad..name' is neither" in problems(tmp_path, body)


class Shell:
    """An intake on a real inventory file and status log, trusting ``roots``."""

    def __init__(self, tmp_path: Path, roots: list[Cert], profile: str = "rfc5280") -> None:
        (tmp_path / "inbox").mkdir(exist_ok=True)
        (tmp_path / "state").mkdir(exist_ok=True, mode=0o700)
        (tmp_path / "roots.pem").write_bytes(b"".join(r.pem for r in roots))
        path = write(tmp_path, f'[trust]\nca_bundle = "roots.pem"\nprofile = "{profile}"\n')
        self.config = configuration.load(path, tmp_path)
        self.log, self.sink = open_log(self.config.status_log, echo=False)
        self.inventory = Inventory(self.config.state / "inventory.sqlite3")
        self.intake = Intake(self.config, self.inventory, self.log)

    def take(self, name: str, lf: Cert, *chain: Cert) -> None:
        data = lf.pem + b"".join(c.pem for c in chain) + lf.key_pem()
        (self.config.inbox / f"{name}.pem").write_bytes(data)
        outcome = self.intake.process(f"{name}.pem")
        assert outcome is not None and outcome.result == "accepted", outcome

    def events(self, name: str) -> list[dict[str, object]]:
        lines = self.config.status_log.read_text().splitlines()
        return [e for e in map(json.loads, lines) if e["event"] == name]

    def close(self) -> None:
        self.inventory.close()
        self.sink.close()


@pytest.fixture
def shells(tmp_path: Path) -> Iterator[list[Shell]]:
    opened: list[Shell] = []
    yield opened
    for shell in opened:
        shell.close()


def test_the_verdict_and_the_validated_path_are_recorded(
    tmp_path: Path, shells: list[Shell]
) -> None:
    """A trusted leaf is stored with the path the verifier validated (the good one of two
    same-named intermediates); an untrusted one with its detail, and cert.untrusted."""
    r = root()
    expired = intermediate("Issuing CA", r, not_before=NOW - 90 * dt.timedelta(days=1),
                           not_after=NOW - dt.timedelta(days=1))  # fmt: skip
    good = intermediate("Issuing CA", r)
    sub_limit = intermediate("Limited CA", r, slot=5, path_length=0)
    sub = intermediate("Sub CA", sub_limit, slot=6)
    shell = Shell(tmp_path, [r])
    shells.append(shell)
    shell.take("ok", leaf("ok.example.test", good, 30), expired, good)
    shell.take("deep", leaf("deep.example.test", sub, 31), sub, sub_limit)
    ok, deep = shell.inventory.entry("ok"), shell.inventory.entry("deep")
    assert ok is not None and ok.trusted and ok.trust_detail == ""
    assert ok.chain_pem == good.pem
    assert deep is not None and not deep.trusted
    assert deep.trust_detail == "intermediate CN=Limited CA has pathLenConstraint 0 but issues CN=Sub CA"
    (warning,) = shell.events("cert.untrusted")
    assert warning["name"] == "deep" and warning["detail"] == deep.trust_detail
    shown = {c["name"]: c for c in snapshot.certificates(shell.config, shell.inventory)}
    assert shown["deep"]["trust_detail"] == deep.trust_detail and "trust_detail" not in shown["ok"]


def test_an_old_database_gains_the_trust_detail_column(tmp_path: Path) -> None:
    """Opening a database made before issue 10 adds trust_detail with ALTER TABLE and keeps
    every row."""
    path = tmp_path / "inventory.sqlite3"
    Inventory(path).close()
    db = sqlite3.connect(path)
    with db:
        db.execute("ALTER TABLE certificates DROP COLUMN trust_detail")
        db.execute(
            "INSERT INTO certificates (name, status, key_id, key_pem, trusted, created) "
            "VALUES ('old', 'unused', 'k', x'00', 1, '2026-01-01T00:00:00Z')"
        )
    db.close()
    inventory = Inventory(path)
    try:
        entry = inventory.entry("old")
        assert entry is not None and entry.trusted and entry.trust_detail == ""
    finally:
        inventory.close()


def test_rejudge_runs_only_when_the_fingerprint_changed(
    tmp_path: Path, shells: list[Shell]
) -> None:
    """The inventory is judged again only for a new store: each flip is written and logged
    once, and the new fingerprint is kept."""
    a, b = root(), root("Other Root", slot=8)
    ca_b = intermediate("Other CA", b, slot=9)
    shell = Shell(tmp_path, [a])
    shells.append(shell)
    shell.take("b", leaf("b.example.test", ca_b, 32), ca_b)
    assert not shell.inventory.entry("b").trusted  # type: ignore[union-attr]
    trust = TrustStore(shell.config)
    assert rejudge(shell.inventory, shell.log, trust, NOW) == []  # first time: no flips
    assert shell.inventory.meta(FINGERPRINT) == trust.fingerprint
    assert rejudge(shell.inventory, shell.log, trust, NOW) == []  # unchanged: skipped
    (tmp_path / "roots.pem").write_bytes(a.pem + b.pem)
    trust.load(shell.config)
    assert rejudge(shell.inventory, shell.log, trust, NOW) == ["b"]
    (changed,) = shell.events("cert.trust_changed")
    assert (changed["name"], changed["from"], changed["to"]) == ("b", False, True)
    assert shell.inventory.entry("b").trusted  # type: ignore[union-attr]
    assert rejudge(shell.inventory, shell.log, trust, NOW) == []


@pytest.mark.parametrize(
    ("change", "differs"),
    [("nothing", False), ("profile", True), ("a root", True), ("a comment", True)],
)
def test_the_fingerprint_is_the_profile_and_the_store_content(
    tmp_path: Path, change: str, differs: bool
) -> None:
    """The trust store's fingerprint changes with the profile and the bundle's bytes."""
    r = root()
    (tmp_path / "roots.pem").write_bytes(r.pem)
    config = configuration.load(write(tmp_path, '[trust]\nca_bundle = "roots.pem"\n'), tmp_path)
    before = TrustStore(config).fingerprint
    if change == "profile":
        config = dataclasses.replace(config, trust_profile="webpki")
    elif change == "a root":
        (tmp_path / "roots.pem").write_bytes(r.pem + root("Other Root", slot=8).pem)
    elif change == "a comment":
        (tmp_path / "roots.pem").write_bytes(b"# roots\n" + r.pem)
    assert (TrustStore(config).fingerprint != before) is differs
