"""JSON as UTF-8 text a person can read, with nothing a terminal would act on.

``json.dumps(ensure_ascii=True)`` wrote ``本番`` as ``\\u672c\\u756a``. Here names and
subjects stay readable, while every character of :data:`certdrop.pki.names.INVISIBLE`
(C0 and C1 controls, DEL, bidi overrides and isolates, zero-width characters, line and
paragraph separators, lone surrogates) is still written as a ``\\uXXXX`` escape, so a
line of the status log or of ``status --json`` can be ``cat`` to a terminal safely and
every parser reads back exactly the same strings.
"""

from __future__ import annotations

import json
import re
import unicodedata
from typing import Any

from certdrop.pki.names import INVISIBLE

# json.dumps already escapes C0 controls, '"' and '\'; everything else is looked at here.
_CANDIDATE = re.compile("[\x7f-\U0010ffff]")


def _escape(match: re.Match[str]) -> str:
    ch = match.group(0)
    if unicodedata.category(ch) not in INVISIBLE:
        return ch
    code = ord(ch)
    if code <= 0xFFFF:
        return f"\\u{code:04x}"
    code -= 0x10000  # astral (e.g. U+E0001 LANGUAGE TAG): a UTF-16 surrogate pair
    return f"\\u{0xD800 + (code >> 10):04x}\\u{0xDC00 + (code & 0x3FF):04x}"


def escape(text: str) -> str:
    """JSON text with every invisible or control character as a ``\\u`` escape. Only
    valid inside JSON: outside strings JSON has no such characters to escape."""
    if text.isascii() and "\x7f" not in text:
        return text  # the common case costs one scan
    return _CANDIDATE.sub(_escape, text)


def dumps(value: Any, **options: Any) -> str:
    """``json.dumps`` as UTF-8 text (``ensure_ascii=False``), controls still escaped."""
    return escape(json.dumps(value, ensure_ascii=False, **options))


def encode(value: Any, **options: Any) -> bytes:
    """:func:`dumps` as UTF-8 bytes."""
    return dumps(value, **options).encode("utf-8")
