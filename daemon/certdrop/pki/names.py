"""The one name rule for certificate entries, a drop's entry name, and names as files.

A certificate's name is text the way an operator writes it (``本番 証明書``, ``New
certificate``): Unicode in NFC, 1-128 characters, with no character a terminal, a log
or a path would act on. What a name may not hold:

- ``/`` (the one byte a file name cannot hold) and the names ``.`` and ``..``;
- control characters (Cc: C0, DEL, C1), invisible format characters (Cf: bidi
  overrides and isolates, zero-width joiners and spaces, the BOM, soft hyphens), line
  and paragraph separators (Zl, Zp) and lone surrogates (Cs, not encodable as UTF-8):
  the same set a certificate request's subject refuses (:mod:`certdrop.pki.fields`);
- whitespace at either end (it would vanish in a shell, a table or a copy and paste).

Service names are config table names and keep the older, stricter rule
(:func:`service_name_problem`): they name files in ``state/deployed/``.
"""

from __future__ import annotations

import hashlib
import re
import unicodedata

NAME_LIMIT = 128
# Cc: controls, Cf: invisible formatting (bidi, zero-width), Cs: lone surrogates,
# Zl/Zp: line and paragraph separators. Shared with the request fields and the JSON escaper.
INVISIBLE = frozenset({"Cc", "Cf", "Cs", "Zl", "Zp"})
FALLBACK = "certificate"

_SERVICE = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}")
# ASCII a file name may carry as is: no shell, glob or quoting character.
_FILE_ASCII = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789 ._-+,@=")
# Room for a suffix and the temp name an atomic write uses (".NAME.PID.tmp") in NAME_MAX.
_FILE_BYTES = 200


def normal(name: str) -> str:
    """``name`` in NFC: the form names are stored, compared and looked up in."""
    return unicodedata.normalize("NFC", name)


def bad_character(text: str) -> str | None:
    """``U+XXXX`` of the first invisible or control character in ``text``, or None."""
    for ch in text:
        if unicodedata.category(ch) in INVISIBLE:
            return f"U+{ord(ch):04X}"
    return None


def name_problem(name: str) -> str | None:
    """Why ``name`` cannot name a certificate entry, or None when it can."""
    shown = _show(name)
    if not name:
        return "the name is empty; give 1-128 characters"
    if name != normal(name):
        return f"name {shown} is not in Unicode NFC form; normalise it first"
    if len(name) > NAME_LIMIT:
        return f"name {shown} has {len(name)} characters; the limit is {NAME_LIMIT}"
    if "/" in name:
        return f"name {shown} contains '/'; names cannot hold it"
    if name in (".", ".."):
        return f"name {shown} is not allowed; it means a folder in a path"
    bad = bad_character(name)
    if bad is not None:
        return f"name {shown} contains the control or invisible character {bad}; remove it"
    if name[0].isspace() or name[-1].isspace():
        return f"name {shown} starts or ends with a space; remove it"
    return None


def service_name_problem(name: str) -> str | None:
    """Why ``name`` cannot name a ``[services.NAME]`` table, or None when it can."""
    if not _SERVICE.fullmatch(name) or name.endswith("."):
        return (
            f"service name {name!r} is not allowed: use 1-64 letters, digits, '.', '_' or '-', "
            "starting with a letter or digit"
        )
    return None


def entry_name(file: str) -> str:
    """The entry name a drop asks for: its whole file stem (``本番 証明書.pem`` ->
    ``本番 証明書``). A run of characters a name cannot hold becomes one ``_`` (none at
    the ends), so any file name yields a valid name; ``certificate`` when none is left."""
    stem = file.rsplit(".", 1)[0] if "." in file.lstrip(".") else file
    runs: list[str] = []
    current: list[str] = []
    for ch in normal(stem):
        if ch == "/" or unicodedata.category(ch) in INVISIBLE:
            if current:
                runs.append("".join(current))
                current = []
        else:
            current.append(ch)
    if current:
        runs.append("".join(current))
    name = "_".join(runs).strip()[:NAME_LIMIT].rstrip()
    return name if name_problem(name) is None else FALLBACK


def file_name(name: str, suffix: str = "") -> str:
    """The file name for entry ``name`` (plus ``suffix``, e.g. ``.csr``).

    ``name`` itself when it is a safe POSIX file name: no shell, glob or quoting
    character (letters and digits of any script, space and ``._-+,@=`` are fine), not
    starting with ``.`` or ``-``, short enough in UTF-8. Otherwise a safe form: the
    unsafe characters as ``_`` and a short hash of the name, so two names never share a
    file (``a*b`` -> ``a_b-1c4e0f3a``).
    """
    if _safe_file(name) and len((name + suffix).encode("utf-8")) <= _FILE_BYTES:
        return name + suffix
    safe = "".join(c if not c.isascii() or c in _FILE_ASCII else "_" for c in name)
    safe = safe.lstrip(".- ")
    tag = hashlib.sha256(name.encode("utf-8", "surrogatepass")).hexdigest()[:8]
    room = _FILE_BYTES - len(suffix.encode("utf-8")) - len(tag) - 1
    clipped = safe.encode("utf-8")[:room].decode("utf-8", "ignore").rstrip()
    return f"{clipped}-{tag}{suffix}" if clipped else f"{FALLBACK}-{tag}{suffix}"


def _safe_file(name: str) -> bool:
    return (
        bool(name)
        and not name.startswith((".", "-"))
        and name_problem(name) is None
        and all(not c.isascii() or c in _FILE_ASCII for c in name)
    )


def _show(name: str) -> str:
    text = name if len(name) <= 60 else name[:57] + "..."
    return repr(text)
