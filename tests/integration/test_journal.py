"""Under systemd, stderr is the journal: every echoed event line carries the sd-daemon(3)
``<N>`` priority of its level, so ``journalctl -p warning`` shows rejections and errors.

systemd does not run here, so the test does what systemd does: it connects the daemon's
stderr to a file and puts that file's ``DEV:INODE`` in JOURNAL_STREAM (systemd.exec(5)).
"""

from __future__ import annotations

import json
import os
import re
import socket
from collections.abc import Callable
from pathlib import Path

from support.daemon import RunningDaemon, drop
from support.pkitools import ec_key, hierarchy

PRIORITY = {"debug": 7, "info": 6, "warning": 4, "error": 3, "critical": 2}
LINE = re.compile(r"<([0-7])>(\{.*\})")


def stream_id(path: Path) -> str:
    path.touch()
    st = os.stat(path)
    return f"{st.st_dev}:{st.st_ino}"


def test_echoed_lines_carry_their_syslog_priority(
    daemon_factory: Callable[..., RunningDaemon], tmp_path: Path
) -> None:
    """With JOURNAL_STREAM naming stderr, each echoed line is <N> + the same JSON as the
    status log: <6> for info, <4> for a rejected drop, <3> for an error; the status log
    itself never gets a prefix."""
    with socket.socket() as taken:  # a busy metrics port: metrics.failed, level error
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        busy = taken.getsockname()[1]
        stderr = tmp_path / "daemon.stderr"  # where RunningDaemon sends stdout and stderr
        d = daemon_factory(
            f'[metrics]\nlisten = "127.0.0.1:{busy}"\n',
            env={"JOURNAL_STREAM": stream_id(stderr)},
        ).start()
        d.wait_for("metrics.failed")
    h = hierarchy("journal.example.test", slot=73, leaf_key=ec_key(474))
    drop(d.inbox, "good.pem", h.chain_pem + h.leaf.key_pem())
    drop(d.inbox, "junk.pem", b"junk")
    d.wait_for("drop.accepted", file="good.pem")
    d.wait_for("drop.rejected", file="junk.pem")
    assert d.stop() == 0

    lines = stderr.read_text().splitlines()
    parsed = [LINE.fullmatch(line) for line in lines]
    assert all(parsed), [line for line, m in zip(lines, parsed, strict=True) if not m]
    echoed = [(int(m.group(1)), json.loads(m.group(2))) for m in parsed if m]
    assert all(n == PRIORITY[e["level"]] for n, e in echoed)
    by_event = {e["event"]: n for n, e in echoed}
    assert by_event["daemon.started"] == 6 and by_event["drop.accepted"] == 6
    assert by_event["drop.rejected"] == 4 and by_event["metrics.failed"] == 3
    # The same events as the file, in the same order; the file has no prefixes.
    logged = d.log_path.read_text().splitlines()
    assert not any(line.startswith("<") for line in logged)
    assert [m.group(2) for m in parsed if m] == logged


def test_no_prefix_when_stderr_is_not_the_journal(
    daemon_factory: Callable[..., RunningDaemon], tmp_path: Path
) -> None:
    """A JOURNAL_STREAM inherited by a process whose stderr was redirected elsewhere (the
    inode differs) means no prefix: under systemd (INVOCATION_ID) the lines are echoed
    plain, as before."""
    other = tmp_path / "elsewhere"
    d = daemon_factory(
        env={"JOURNAL_STREAM": stream_id(other), "INVOCATION_ID": "0123456789abcdef"}
    ).start()
    assert d.stop() == 0
    lines = (tmp_path / "daemon.stderr").read_text().splitlines()
    assert lines and all(line.startswith("{") for line in lines), lines
    assert [json.loads(line)["event"] for line in lines] == ["daemon.started", "daemon.stopped"]
