"""Internationalised domain names: Unicode as people write them, A-labels as DNS and
certificates hold them.

``例え.jp`` becomes ``xn--r8jz45g.jp`` through the ``idna`` package with UTS 46
mapping (``uts46=True``): full-width letters and the ideographic full stop are mapped,
case is folded, and what IDNA 2008 forbids is refused with its reason. ASCII names are
left to the DNS checks of :mod:`certdrop.pki.fields` (they allow what IDNA would refuse
in a host name, e.g. ``_`` is not, but an upper-case letter is folded the same way).
"""

from __future__ import annotations

import idna

WILDCARD = "*."


def to_ascii(name: str) -> str:
    """The A-label form of a DNS name (a leading ``*.`` kept); ``ValueError`` with the
    reason for a name IDNA refuses."""
    wildcard = name.startswith(WILDCARD)
    rest = name[len(WILDCARD) :] if wildcard else name
    try:
        encoded = idna.encode(rest, uts46=True).decode("ascii")
    except (idna.IDNAError, UnicodeError) as exc:
        raise ValueError(str(exc) or type(exc).__name__) from None
    return WILDCARD + encoded if wildcard else encoded


def to_unicode(name: str) -> str:
    """The U-label form of a DNS name (``xn--r8jz45g.jp`` -> ``例え.jp``); the name
    itself when it holds no A-label or one that does not decode."""
    if "xn--" not in name.lower():
        return name
    wildcard = name.startswith(WILDCARD)
    rest = name[len(WILDCARD) :] if wildcard else name
    try:
        decoded = idna.decode(rest)
    except (idna.IDNAError, UnicodeError):
        return name
    return WILDCARD + decoded if wildcard else decoded


def looks_like_domain(text: str) -> bool:
    """True for non-ASCII text that IDNA turns into a dotted DNS name (``例え.jp``,
    ``例え。jp``), false for a plain-text name (``本番 証明書``, ``Müller GmbH``)."""
    if text.isascii():
        return False
    try:
        return "." in to_ascii(text)
    except ValueError:
        return False
