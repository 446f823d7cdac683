"""The habits of a command line operators trust: help with examples, one-line errors
with exit 1, --json, a closed pipe ending quietly, --san that never eats NAME, shell
completion, a man page from the parser, and `certdrop run` readable on a terminal.
Each new command runs once as a real subprocess here."""

from __future__ import annotations

import json
import os
import pty
import select
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
from cryptography import x509

from certdrop.cli.main import build_parser
from support.cli import INTERMEDIATE, Workspace, bundle, leaf
from support.daemon import drop

NEW_COMMANDS = ("show", "inspect", "held", "unassign", "renew", "rename", "delete", "completion")
SERVICE = """
[services.web]
role = "https"
cert_file = "live/web.pem"
key_file = "live/web.key"
"""


def one_line(err: str) -> bool:
    return err.count("\n") == 1 and "Traceback" not in err


@pytest.fixture
def ws(tmp_path: Path) -> Workspace:
    (tmp_path / "live").mkdir()
    return Workspace(tmp_path, SERVICE)


def test_every_command_has_a_summary_line_and_examples(ws: Workspace) -> None:
    """`certdrop --help` lists every command with a one-line summary, and each
    command's own --help ends in examples that use it."""
    top = ws.run("--help")
    assert top.code == 0
    commands = build_parser()._subparsers._group_actions[0].choices
    for name in (*NEW_COMMANDS, "status", "assign", "csr", "export", "check", "run"):
        [line] = [ln for ln in top.out.splitlines() if ln.split()[:1] == [name]]
        assert len(line.split(None, 1)[1]) > 10, line
        own = ws.run(name, "--help")
        assert own.code == 0 and "\nexamples:\n" in own.out, name
        assert f"certdrop {name}" in own.out.split("examples:")[1]
        assert commands[name].description


@pytest.mark.parametrize(
    "args",
    [
        ["show"],
        ["show", "nope"],
        ["show", "a", "b"],
        ["inspect"],
        ["inspect", "/nonexistent/file.pem"],
        ["held", "--discard"],
        ["held", "--discard", "-3"],
        ["held", "--discard", "42"],
        ["unassign"],
        ["unassign", "nope"],
        ["renew"],
        ["renew", "nope"],
        ["renew", "nope", "--dry-run"],
        ["rename", "only-one"],
        ["rename", "nope", "new"],
        ["delete"],
        ["delete", "nope"],
        ["completion"],
        ["completion", "fish"],
        ["status", "--expiring", "-1"],
        ["status", "--service", "nope"],
        ["status", "a", "b"],
        ["assign", "--dry-run", "nope", "web"],
        ["csr", "--cn", "x.example", "--san", "a.example", "b.example", "NAME"],
        ["csr", "bad/name", "--cn", "x.example"],
        ["export", "nope", "--json", "--no-password"],
        ["frobnicate"],
    ],
)
def test_bad_arguments_give_one_line_and_exit_1(ws: Workspace, args: list[str]) -> None:
    """Through main(argv): exit 1, nothing on stdout, one line on stderr, no traceback."""
    result = ws.run(*args)
    assert (result.code, result.out) == (1, ""), result
    assert one_line(result.err), result.err


def test_bad_arguments_as_real_processes(ws: Workspace) -> None:
    """The same for each new command as a subprocess."""
    for args in (["show"], ["inspect", "nope.pem"], ["held", "--discard", "x"], ["unassign"],
                 ["renew", "nope"], ["rename", "a"], ["delete", "nope"], ["completion", "ksh"]):  # fmt: skip
        done = ws.process(*args)
        assert (done.returncode, done.stdout) == (1, ""), args
        assert one_line(done.stderr), (args, done.stderr)


def test_each_new_command_runs_as_a_subprocess(ws: Workspace, tmp_path: Path) -> None:
    """show, inspect, held, status filters, assign --dry-run, rename, unassign, delete,
    renew --dry-run and completion, each once as `python -m certdrop`, with --json."""
    cert = leaf(30, "本番", "web.example.test")
    ws.drop("本番 証明書.pem", bundle(cert))
    ws.drop("alone.crt", leaf(31, "alone").pem + INTERMEDIATE.pem)

    def run(*args: str) -> Any:
        done = ws.process(*args)
        assert done.returncode == 0 and done.stderr == "", (args, done.stderr)
        return json.loads(done.stdout) if "--json" in args else done.stdout

    assert run("show", "本番 証明書", "--json")["sha256"] == cert.sha256
    (tmp_path / "again.pem").write_bytes(bundle(cert))
    assert run("inspect", "--json", str(tmp_path / "again.pem"))[0]["duplicate_of"] == ["本番 証明書"]
    held = run("held", "--json")
    assert [h["from"] for h in held] == ["alone.crt"]
    assert run("status", "--json", "--status", "unused", "本番*")["certificates"][0]["name"] == "本番 証明書"
    plan = run("assign", "--dry-run", "本番 証明書", "web", "--json")
    assert plan["services"][0]["files"][0]["mode"] == "0600"
    assert "would be" not in str(run("assign", "本番 証明書", "web"))
    assert "renew 本番 証明書: would start a renewal" in str(run("renew", "本番 証明書", "--dry-run"))
    assert run("rename", "本番 証明書", "本番", "--json")["name"] == "本番"
    assert run("unassign", "web", "--json")[0]["certificate"] == "本番"
    assert run("delete", "本番", "--json")["key_removed"] is True
    assert run("held", "--discard", str(held[0]["id"]), "--json")["from"] == "alone.crt"
    assert "-F _shtab_certdrop certdrop" in str(run("completion", "bash"))
    assert str(run("completion", "zsh")).startswith("#compdef certdrop")


def test_san_is_repeated_and_never_takes_the_name(ws: Workspace) -> None:
    """`--san a --san b NAME` asks for both SANs; `--san a NAME` leaves NAME the name;
    `--san a b NAME` is an error that creates nothing rather than a SAN named NAME."""
    made = ws.run("csr", "--cn", "a.example", "--san", "a.example", "--san", "b.example",
                  "both", "--json")  # fmt: skip
    assert made.code == 0 and made.json()["sans"] == ["a.example", "b.example"]
    after = ws.run("csr", "--cn", "c.example", "--san", "c.example", "本番 証明書")
    assert after.code == 0 and after.out.strip().endswith("本番 証明書.csr")
    csr = x509.load_pem_x509_csr(Path(after.out.strip()).read_bytes())
    assert csr.extensions[0].value.get_values_for_type(x509.DNSName) == ["c.example"]
    before = ws.state_files()
    eaten = ws.run("csr", "--cn", "x.example", "--san", "a.example", "b.example", "NAME")
    assert eaten.code == 1 and "unrecognized arguments: NAME" in eaten.err
    assert ws.state_files() == before


def test_a_closed_pipe_ends_quietly(ws: Workspace) -> None:
    """`status --json | head -c 10`: the reader is gone before certdrop writes; exit
    141 (as a shell reports SIGPIPE) with nothing on stderr, no traceback."""
    ws.drop("p.pem", bundle(leaf(32, "p")))
    for args in (["status", "--json"], ["status"], ["show", "p", "--json"], ["held"]):
        read, write = os.pipe()
        os.close(read)  # the reader went away
        try:
            done = subprocess.run(
                [sys.executable, "-m", "certdrop", "--config", str(ws.config_path), *args],
                stdout=write, stderr=subprocess.PIPE, timeout=60, stdin=subprocess.DEVNULL,
            )  # fmt: skip
        finally:
            os.close(write)
        assert (done.returncode, done.stderr) == (141, b""), (args, done.stderr)


def test_a_reader_that_stops_early_leaves_no_traceback(ws: Workspace) -> None:
    """A real `| head -c 10` over a long output: head gets its bytes, stderr stays empty."""
    for i in range(3):
        ws.drop(f"many-{i}.pem", bundle(leaf(33 + i, f"many-{i}")))
    shell = f"{sys.executable} -m certdrop --config '{ws.config_path}' completion bash | head -c 10"
    done = subprocess.run(["bash", "-c", f"set -o pipefail; {shell}"], capture_output=True,
                          timeout=60)  # fmt: skip
    assert len(done.stdout) == 10 and b"Traceback" not in done.stderr and done.stderr == b""


def test_completion_scripts_are_valid_shell(ws: Workspace, tmp_path: Path) -> None:
    """The bash script passes `bash -n` and offers every command and option."""
    script = ws.run("completion", "bash").out
    path = tmp_path / "certdrop.bash"
    path.write_text(script)
    assert subprocess.run(["bash", "-n", str(path)], capture_output=True).returncode == 0
    for word in (*NEW_COMMANDS, "--dry-run", "--expiring", "--discard"):
        assert word in script
    zsh = ws.run("completion", "zsh").out
    assert zsh.startswith("#compdef certdrop") and "inspect" in zsh
    if shutil.which("zsh"):
        (tmp_path / "_certdrop").write_text(zsh)
        assert subprocess.run(["zsh", "-n", str(tmp_path / "_certdrop")]).returncode == 0


def test_the_man_page_is_made_from_the_parser_and_renders(tmp_path: Path) -> None:
    """`python -m certdrop.cli.manpage` gives roff with every command; man renders it."""
    done = subprocess.run([sys.executable, "-m", "certdrop.cli.manpage"], capture_output=True,
                          text=True, timeout=60)  # fmt: skip
    assert done.returncode == 0 and done.stdout.startswith('.TH CERTDROP "1"')
    page = tmp_path / "certdrop.1"
    page.write_text(done.stdout)
    if shutil.which("man") is None:
        pytest.skip("man is not installed")
    shown = subprocess.run(["man", "-l", str(page)], capture_output=True, text=True,
                           env={**os.environ, "MANWIDTH": "100", "MANPAGER": "cat"}, timeout=60)  # fmt: skip
    assert shown.returncode == 0, shown.stderr
    for name in ("certdrop inspect", "certdrop show", "certdrop unassign", "--dry-run", "EXAMPLES",
                 "certdrop inspect server.crt server.key"):  # fmt: skip
        assert name in shown.stdout


def test_run_on_a_terminal_prints_readable_lines(ws: Workspace) -> None:
    """On a terminal `certdrop run` starts by saying what it watches and how many drops
    wait, then prints each event as a line; the status log stays JSON Lines."""
    ws.drop("seen.pem", bundle(leaf(36, "seen")))  # processed: not waiting
    (ws.inbox / "waiting 1.pem").write_bytes(bundle(leaf(37, "waiting one")))
    (ws.inbox / "waiting 2.pem").write_bytes(bundle(leaf(38, "waiting two")))
    old = time.time() - 10  # settled: found at start-up and taken at once
    for name in ("waiting 1.pem", "waiting 2.pem"):
        os.utime(ws.inbox / name, (old, old))
    master, slave = pty.openpty()
    with open(ws.root / "run.stderr", "wb") as errors:
        proc = subprocess.Popen(
            [sys.executable, "-m", "certdrop", "--config", str(ws.config_path), "run"],
            stdin=subprocess.DEVNULL, stdout=slave, stderr=errors, cwd=ws.root,
        )  # fmt: skip
    os.close(slave)
    seen = bytearray()

    def read_until(wanted: bytes, count: int = 1) -> None:
        deadline = time.monotonic() + 30
        while seen.count(wanted) < count:
            assert time.monotonic() < deadline, bytes(seen)
            ready, _, _ = select.select([master], [], [], 0.5)
            if ready:
                seen.extend(os.read(master, 65536))

    try:
        read_until(b"drop.accepted", 2)
        drop(ws.inbox, "new.pem", bundle(leaf(39, "new")))
        read_until(b"file=new.pem")
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(15)
        os.close(master)
    lines = seen.decode("utf-8").splitlines()
    assert "certdrop watches" in lines[0] and "(2 waiting)" in lines[0] and "Ctrl-C stops" in lines[0]
    accepted = [ln for ln in lines if "drop.accepted" in ln]
    assert any("file=\"waiting 1.pem\"" in ln for ln in accepted) and not any(ln.startswith("{") for ln in lines)
    log = [json.loads(ln) for ln in ws.config.status_log.read_text().splitlines()]
    assert {"daemon.started", "drop.accepted"} <= {e["event"] for e in log}
    started = next(e for e in log if e["event"] == "daemon.started" and e.get("waiting") is not None)
    assert started["waiting"] == 2 and started["services"] == ["web"]


def test_the_deploy_script_installs_man_page_and_completions(tmp_path: Path) -> None:
    """deploy/install-cli.sh writes certdrop.1 and both completion scripts under --root
    (0644), made by the certdrop it is given; a wrong --python is one line, exit 1."""
    script = Path(__file__).resolve().parents[2] / "deploy" / "install-cli.sh"
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}
    done = subprocess.run(["bash", str(script), "--python", sys.executable, "--root", str(tmp_path)],
                          capture_output=True, text=True, env=env, timeout=120)  # fmt: skip
    assert done.returncode == 0, done.stderr
    page = tmp_path / "usr/local/share/man/man1/certdrop.1"
    bash = tmp_path / "usr/share/bash-completion/completions/certdrop"
    zsh = tmp_path / "usr/local/share/zsh/site-functions/_certdrop"
    for path in (page, bash, zsh):
        assert path.stat().st_mode & 0o777 == 0o644
    assert page.read_text().startswith(".TH CERTDROP") and "inspect" in zsh.read_text()
    assert subprocess.run(["bash", "-n", str(bash)]).returncode == 0
    wrong = subprocess.run(["bash", str(script), "--python", "/nonexistent/python", "--root",
                            str(tmp_path / "x")], capture_output=True, text=True, timeout=60)  # fmt: skip
    assert wrong.returncode == 1 and wrong.stderr.count("\n") == 1 and not (tmp_path / "x").exists()
