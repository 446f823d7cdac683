"""Text for people: JSON as readable UTF-8 with controls still escaped (jsontext), and
the status table aligned by display width (cli/table.py), checked with wcwidth."""

from __future__ import annotations

import json
import unicodedata

import wcwidth
from hypothesis import example, given
from hypothesis import strategies as st

from certdrop import jsontext
from certdrop.cli import table
from certdrop.pki.names import INVISIBLE


@given(st.recursive(st.text() | st.integers() | st.none(), lambda c: st.lists(c, max_size=3)))
@example(["\x1b[31m", "\u202e", "\x85", "\U000e0001", "\ud800", "本番", "\u2028"])
def test_json_reads_back_the_same_and_holds_no_invisible_character(value: object) -> None:
    """Every value reads back unchanged, the text is UTF-8, and no control, bidi,
    zero-width, separator or surrogate character appears raw."""
    text = jsontext.dumps(value)
    assert json.loads(text) == value
    text.encode("utf-8")  # strict: a lone surrogate would raise here
    assert all(unicodedata.category(c) not in INVISIBLE for c in text)


def test_names_are_written_as_text_not_escapes() -> None:
    """本番 is written as 本番 (the issue: the log wrote \\u672c\\u756a)."""
    assert jsontext.dumps({"name": "本番 証明書"}) == '{"name": "本番 証明書"}'
    assert jsontext.dumps("a\x1bb\u202e") == '"a\\u001bb\\u202e"'


def test_safe_shows_scripts_and_escapes_controls() -> None:
    """Japanese and spaces stay; ESC and a bidi override become visible escapes."""
    assert table.safe("本番 証明書\u3000x") == "本番 証明書\u3000x"
    assert table.safe("a\x1b[2J\u202e") == "a\\x1b[2J\\u202e"


def test_clip_counts_display_columns() -> None:
    """A CJK character is two columns; a cut ends in … within the width."""
    assert table.width("本番") == 4 == wcwidth.wcswidth("本番")
    clipped = table.clip("本番証明書です", 7)
    assert clipped == "本番証…" and wcwidth.wcswidth(clipped) <= 7
    assert table.clip("cafe\u0301", 4) == "cafe\u0301"  # the accent takes no column


def columns_of(line: str, cells: list[str]) -> list[int]:
    """The display column where each cell starts in ``line`` (cells in order)."""
    starts, at = [], 0
    for cell in cells:
        index = line.index(cell, at)
        starts.append(wcwidth.wcswidth(line[:index]))
        at = index + len(cell)
    return starts


def test_status_table_with_japanese_subjects_lines_up() -> None:
    """Every row's cells start at the same display columns as the header's."""
    certs = [
        {"name": n, "status": "in_use", "subject": s, "not_after": "2027-01-01T00:00:00Z",
         "services": svc, "sha256": "ab" * 32}
        for n, s, svc in [
            ("本番 証明書", "CN=本番サーバー,O=株式会社テスト", ["smtp-in"]),
            ("web", "CN=www.example.com", ["admin-console", "user-console"]),
            ("テスト", "CN=テスト,OU=開発部", []),
        ]
    ]  # fmt: skip
    data = {"certificates": certs, "held": [], "services": []}
    lines = table.render(data).splitlines()
    header, rows = lines[1], lines[2:5]
    heads = ["NAME", "STATUS", "SUBJECT", "EXPIRES", "SERVICES", "SHA256"]
    expected = columns_of(header, heads)
    for row, cert in zip(rows, certs, strict=True):
        cells = [
            cert["name"], "in_use", cert["subject"], "2027-01-01",
            ",".join(cert["services"]) or "-", "abababababababab",
        ]  # fmt: skip
        assert columns_of(row, cells) == expected, row


def test_a_long_japanese_cell_is_clipped_to_its_column() -> None:
    """A subject wider than its 48 columns is cut by display width, and the next column
    still starts where the header says."""
    subject = "CN=" + "長" * 40
    cert = {"name": "x", "status": "unused", "subject": subject, "not_after": None,
            "services": [], "sha256": None}  # fmt: skip
    lines = table.render({"certificates": [cert], "held": [], "services": []}).splitlines()
    header, row = lines[1], lines[2]
    shown = table.clip(subject, 48)
    assert shown.endswith("…") and wcwidth.wcswidth(shown) <= 48
    heads = columns_of(header, ["NAME", "STATUS", "SUBJECT", "EXPIRES"])
    assert columns_of(row, ["x", "unused", shown, "-"]) == heads


def test_the_escaper_looks_at_every_invisible_character_python_knows() -> None:
    """Every code point of an INVISIBLE category (past the C0 controls json escapes
    itself) is within the escaper's candidate blocks, for this Python's Unicode."""
    missed = [
        f"U+{code:04X}"
        for code in range(0x7F, 0x110000)
        if unicodedata.category(chr(code)) in INVISIBLE
        and not jsontext._CANDIDATE.fullmatch(chr(code))
    ]
    assert missed == []


def test_run_prints_events_as_readable_inert_lines() -> None:
    """`certdrop run` on a terminal: the start line says what is watched and how many
    drops wait; other events become `time event key=value` with controls escaped."""
    from certdrop.cli.run import readable

    started = readable(jsontext.dumps({
        "ts": "2026-01-02T03:04:05Z", "level": "info", "event": "daemon.started",
        "inbox": "/srv/inbox", "state": "/var/lib/certdrop", "config": "c.toml",
        "waiting": 2, "services": ["web"],
    }))  # fmt: skip
    assert started.startswith("03:04:05 certdrop watches /srv/inbox for drops (2 waiting)")
    line = readable(jsontext.dumps({
        "ts": "2026-01-02T03:04:06Z", "level": "warning", "event": "drop.rejected",
        "file": "本番 証明書\x1b[2J.pem", "code": "truncated", "reason": "cut off",
    }))  # fmt: skip
    assert line.startswith("03:04:06 WARN drop.rejected file=")
    assert "本番 証明書" in line and "\x1b" not in line and "code=truncated" in line
