"""JSON as UTF-8 text a person can read, with nothing a terminal would act on.

``json.dumps(ensure_ascii=True)`` wrote ``本番`` as ``\\u672c\\u756a``. Here names and
subjects stay readable, while every character of :data:`certdrop.pki.names.INVISIBLE`
(C0 and C1 controls, DEL, bidi overrides and isolates, zero-width characters, line and
paragraph separators, lone surrogates) is still written as a ``\\uXXXX`` escape, so a
line of the status log or of ``status --json`` can be ``cat`` to a terminal safely and
every parser reads back exactly the same strings.
"""

from __future__ import annotations

import functools
import json
import re
import unicodedata
from typing import Any

from certdrop.pki.names import INVISIBLE

# json.dumps already escapes C0 controls, '"' and '\\'. The BMP blocks where the other
# INVISIBLE characters live (Unicode 14; a unit test checks this against unicodedata):
# DEL and C1, the soft hyphen, Arabic and Syriac format marks, the Mongolian vowel
# separator, zero-width and bidi marks, separators, word joiners and isolates,
# surrogates, the BOM and the interlinear annotation marks; then everything beyond the
# BMP as one range (a few format marks and the tags live there; one wide range is far
# cheaper for the regex engine than several narrow astral ones). Matches are still
# checked by category, so the class may be wider than the set but never narrower; CJK,
# Latin, Cyrillic, ... text is left alone without a look.
_CANDIDATE = re.compile(
    "[\x7f-\x9f\xad\u0600-\u0605\u061c\u06dd\u070f\u0890-\u0891\u08e2\u180e"
    "\u200b-\u200f\u2028-\u202e\u2060-\u206f\ud800-\udfff\ufeff\ufff9-\U0010ffff]"
)


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


@functools.cache
def _encoder(options: tuple[tuple[str, Any], ...]) -> json.JSONEncoder:
    # json.dumps builds a new encoder per call unless every option is its default.
    return json.JSONEncoder(ensure_ascii=False, **dict(options))


def dumps(value: Any, **options: Any) -> str:
    """``json.dumps`` as UTF-8 text (``ensure_ascii=False``), controls still escaped.
    ``options`` are json.dumps's (``indent``, ``separators``, ``default``, ...)."""
    key = tuple(sorted(options.items())) if options else ()
    return escape(_encoder(key).encode(value))


def encode(value: Any, **options: Any) -> bytes:
    """:func:`dumps` as UTF-8 bytes."""
    return dumps(value, **options).encode("utf-8")
