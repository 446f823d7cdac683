"""The one name rule (pki/names.py): Unicode names as operators write them, a drop's
name from its whole file stem, and names made safe where they become file names."""

from __future__ import annotations

import unicodedata

import pytest
from hypothesis import example, given
from hypothesis import strategies as st

from certdrop.pki import names
from certdrop.pki.names import entry_name, file_name, name_problem, normal, service_name_problem

valid_names = (
    st.text(min_size=1, max_size=128).map(normal).filter(lambda n: name_problem(n) is None)
)


@pytest.mark.parametrize(
    "name",
    [
        "本番 証明書",
        "テスト証明書",
        "New certificate",
        "imsva91_certificate",
        "Zertifikat für Müller",
        "сертификат",
        "شهادة",
        "web-2",
        "-leading-dash",
        "a",
        "x" * 128,
        "back\\slash and 'quotes'",
        "🔒 mail",
    ],
)
def test_names_as_operators_write_them_are_accepted(name: str) -> None:
    """Japanese, spaced, accented, Cyrillic, Arabic, emoji and 128-character names pass."""
    assert name_problem(name) is None


@pytest.mark.parametrize(
    ("name", "fragment"),
    [
        ("", "empty"),
        ("x" * 129, "129 characters; the limit is 128"),
        ("a/b", "contains '/'"),
        (".", "means a folder"),
        ("..", "means a folder"),
        ("tab\there", "U+0009"),
        ("nul\x00", "U+0000"),
        ("del\x7f", "U+007F"),
        ("c1\x85", "U+0085"),
        ("bidi\u202eevil", "U+202E"),
        ("isolate\u2066x", "U+2066"),
        ("zero\u200bwidth", "U+200B"),
        ("bom\ufeff", "U+FEFF"),
        ("line\u2028sep", "U+2028"),
        ("para\u2029sep", "U+2029"),
        ("lone\ud800", "U+D800"),
        (" leading", "starts or ends with a space"),
        ("trailing ", "starts or ends with a space"),
        ("\u3000ideographic", "starts or ends with a space"),
        ("cafe\u0301", "NFC"),
    ],
)
def test_names_that_would_break_something_are_refused(name: str, fragment: str) -> None:
    """Each refusal says what is wrong: length, '/', controls, invisible characters,
    separators, surrogates, outer spaces, non-NFC text."""
    problem = name_problem(name)
    assert problem is not None and fragment in problem


def test_nfc_is_the_stored_form() -> None:
    """A decomposed name (as some keyboards and file systems give it) normalises to NFC."""
    assert normal("cafe\u0301") == "café" and name_problem(normal("cafe\u0301")) is None


def test_service_names_keep_their_strict_rule() -> None:
    """Service names are config table names and file names in state/deployed: ASCII."""
    assert service_name_problem("admin-console") is None
    assert service_name_problem("本番") is not None
    assert service_name_problem("a b") is not None


@pytest.mark.parametrize(
    ("file", "name"),
    [
        ("本番 証明書.pem", "本番 証明書"),
        ("テスト証明書.pem", "テスト証明書"),
        ("New certificate.pem", "New certificate"),
        ("web.example.com.crt", "web.example.com"),
        ("no-extension", "no-extension"),
        ("cafe\u0301.pem", "café"),
        ("evil\u202etxt.pem", "evil_txt"),
        ("\x1b[31mred\x1b[0m.pem", "[31mred_[0m"),
        ("  spaced  .pem", "spaced"),
        ("..", "certificate"),
        ("\x00.pem", "certificate"),
    ],
)
def test_a_drop_is_named_by_its_whole_stem(file: str, name: str) -> None:
    """The stem is kept whole; runs of what a name cannot hold become one '_'."""
    assert entry_name(file) == name


@given(st.text(max_size=300))
@example("a" * 300 + ".pem")
@example(" \u3000.pem")
def test_every_file_name_gives_a_valid_entry_name(file: str) -> None:
    """Whatever a drop is called, its entry name follows the rule."""
    assert name_problem(entry_name(file)) is None


@given(valid_names)
def test_a_valid_name_survives_as_a_stem(name: str) -> None:
    """A file named NAME.pem becomes the entry NAME, unchanged."""
    assert entry_name(name + ".pem") == name


@pytest.mark.parametrize("name", ["本番 証明書", "New certificate", "web-2", "a.b_c+d,e@f=g"])
def test_safe_names_are_their_own_file_names(name: str) -> None:
    """Letters of any script, spaces and ._-+,@= need no change."""
    assert file_name(name, ".csr") == name + ".csr"


@pytest.mark.parametrize("name", ["a*b", "a?b", "$(id)", "`id`", "-rf", ".hidden", "a:b", "x\\y"])
def test_unsafe_names_get_a_safe_form(name: str) -> None:
    """Shell, glob and quoting characters, a leading '-' or '.', become a safe form."""
    made = file_name(name, ".csr")
    assert made != name + ".csr" and made.endswith(".csr")
    assert not made.startswith((".", "-"))
    assert all(c not in made for c in "*?$`:\\")


@given(valid_names, valid_names)
@example("a*b", "a?b")
@example("本" * 128, "本" * 127 + "番")
def test_file_names_are_safe_short_and_distinct(a: str, b: str) -> None:
    """A file name never holds '/', NUL or a control, never starts with '.' or '-',
    fits NAME_MAX with room for a temp name, and two names never share one."""
    for name in (a, b):
        made = file_name(name, ".csr")
        assert "/" not in made and not made.startswith((".", "-"))
        assert all(unicodedata.category(c) not in names.INVISIBLE for c in made)
        assert len(made.encode("utf-8")) <= 200
    if a != b:
        assert file_name(a, ".csr") != file_name(b, ".csr")
