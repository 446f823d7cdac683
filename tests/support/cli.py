"""certdrop's command line on a temp inbox and state: in this process through
``main(argv)``, or as a real subprocess; drops processed in process (no daemon); a hash
of every file under state/ to prove a command changed nothing."""

from __future__ import annotations

import contextlib
import hashlib
import io
import json
import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from certdrop import cli
from certdrop import config as configuration
from certdrop.daemon import state as daemon_state
from certdrop.intake.work import Outcome
from support.pkitools import Issued, ec_key, issue

ROOT = issue("Names Test Root", ec_key(700), ca=True)
INTERMEDIATE = issue("Names Test Intermediate", ec_key(701), ROOT, ca=True)


def leaf(slot: int, cn: str, *sans: str) -> Issued:
    """A leaf from the test CA with the subject CN ``cn`` (any text) and DNS ``sans``."""
    return issue(cn, ec_key(710 + slot), INTERMEDIATE, sans=sans or ("leaf.example.test",))


def bundle(cert: Issued) -> bytes:
    """What an operator drops: leaf, intermediate and key in one file."""
    return cert.pem + INTERMEDIATE.pem + cert.key_pem()


@dataclass(frozen=True)
class Result:
    code: int
    out: str
    err: str

    def json(self) -> Any:
        return json.loads(self.out)


class Workspace:
    """A config (inbox, state, the test CA as trust bundle, ``services``) in ``root``."""

    def __init__(self, root: Path, services: str = "") -> None:
        self.root = root
        root.mkdir(parents=True, exist_ok=True)
        (root / "roots.pem").write_bytes(ROOT.pem)
        self.config_path = root / "certdrop.toml"
        self.config_path.write_text(
            'inbox = "inbox"\nstate = "state"\n[trust]\nca_bundle = "roots.pem"\n' + services
        )
        self.config = configuration.load(self.config_path, root)
        daemon_state.prepare_folders(self.config)
        self.inbox, self.state = self.config.inbox, self.config.state

    def run(self, *args: str) -> Result:
        """``certdrop --config FILE ARGS...`` through main(argv), output captured."""
        out, err = io.BytesIO(), io.BytesIO()
        out_text = io.TextIOWrapper(out, encoding="utf-8", write_through=True)
        err_text = io.TextIOWrapper(err, encoding="utf-8", write_through=True)
        with contextlib.redirect_stdout(out_text), contextlib.redirect_stderr(err_text):
            code = cli.main(["--config", str(self.config_path), *args])
            out_text.flush()
            err_text.flush()
        return Result(code, out.getvalue().decode("utf-8"), err.getvalue().decode("utf-8"))

    def process(self, *args: str, **options: Any) -> subprocess.CompletedProcess[str]:
        """``certdrop --config FILE ARGS...`` as a real process."""
        return subprocess.run(
            [sys.executable, "-m", "certdrop", "--config", str(self.config_path), *args],
            cwd=self.root,
            capture_output=True,
            text=True,
            encoding="utf-8",
            timeout=120,
            stdin=subprocess.DEVNULL,
            **options,
        )

    def drop(self, name: str, data: bytes) -> Outcome:
        """Drop ``data`` as ``name`` and process it in this process (no daemon runs)."""
        (self.inbox / name).write_bytes(data)
        with daemon_state.state_lock(self.state):
            ctx, sink = daemon_state.open_context(self.config)
            try:
                outcome = ctx.intake.process(name)
                daemon_state.write_status_json(self.config, ctx.inventory)
            finally:
                ctx.inventory.close()
                sink.close()
        assert outcome is not None
        return outcome

    def events(self, prefix: str = "") -> list[dict[str, Any]]:
        try:
            lines = self.config.status_log.read_text(encoding="utf-8").splitlines()
        except FileNotFoundError:
            return []
        return [e for e in map(json.loads, lines) if str(e["event"]).startswith(prefix)]

    def state_files(self) -> dict[str, str]:
        """sha256 of every file under state/ (and which files there are)."""
        found = {}
        for folder, _, files in os.walk(self.state):
            for file in files:
                path = Path(folder, file)
                found[str(path.relative_to(self.state))] = hashlib.sha256(
                    path.read_bytes()
                ).hexdigest()
        return found
