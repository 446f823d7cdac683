"""Internationalised domain names: --cn, --san and hostname accept Unicode, converted
exactly as the idna package converts them (UTS 46), and shown back in both forms."""

from __future__ import annotations

import idna
import pytest

from certdrop.errors import InvalidRequest
from certdrop.pki import domains
from certdrop.pki.fields import RequestFields


def fullwidth(text: str) -> str:
    """ASCII letters as their full-width forms (as an IME types them)."""
    return "".join(chr(ord(c) + 0xFEE0) for c in text)


# The last: full-width EXAMPLE, the ideographic full stop, full-width com.
UNICODE_NAMES = [
    "例え.jp", "bücher.example", "日本語.例え.テスト", "Straße.de",
    fullwidth("EXAMPLE") + "\u3002" + fullwidth("com"),
]  # fmt: skip


@pytest.mark.parametrize("name", UNICODE_NAMES)
def test_a_labels_are_what_the_idna_package_makes(name: str) -> None:
    """to_ascii equals idna.encode(name, uts46=True), and to_unicode reads it back."""
    expected = idna.encode(name, uts46=True).decode("ascii")
    assert domains.to_ascii(name) == expected
    assert domains.to_unicode(expected) == idna.decode(expected)


def test_a_wildcard_keeps_its_star() -> None:
    """*.例え.jp -> *.xn--r8jz45g.jp and back."""
    a = domains.to_ascii("*.例え.jp")
    assert a == "*." + idna.encode("例え.jp", uts46=True).decode()
    assert domains.to_unicode(a) == "*.例え.jp"


@pytest.mark.parametrize("name", ["例え..jp", "a b.例", "\u200d例.jp"])
def test_names_idna_refuses_raise_with_the_reason(name: str) -> None:
    """An empty label, a space or a joiner is refused with idna's own reason."""
    with pytest.raises(ValueError, match=r"\S"):
        domains.to_ascii(name)


def test_text_that_is_not_a_domain_stays_text() -> None:
    """A CN like 本番 証明書 or Müller GmbH is subject text, not a host name."""
    assert domains.looks_like_domain("例え.jp") and domains.looks_like_domain("例え。jp")
    for text in ("本番 証明書", "Müller GmbH", "例え", "plain.ascii"):
        assert not domains.looks_like_domain(text)


def test_a_request_converts_cn_and_sans() -> None:
    """--cn 例え.jp --san bücher.example ask for A-labels; the CN becomes the SAN too."""
    fields = RequestFields.from_values(cn="例え.jp")
    a = idna.encode("例え.jp", uts46=True).decode()
    assert fields.cn == a and fields.sans == (a,)
    more = RequestFields.from_values(cn="例え.jp", sans=["bücher.example", "*.例え.jp"])
    assert more.sans == (idna.encode("bücher.example", uts46=True).decode(), f"*.{a}")


def test_a_plain_text_cn_is_kept_with_given_sans() -> None:
    """A CN that is not a domain name is kept as written (within 64 UTF-8 bytes)."""
    fields = RequestFields.from_values(cn="本番 証明書", sans=["mail.example.com"])
    assert fields.cn == "本番 証明書"


def test_a_bad_unicode_san_is_one_named_problem() -> None:
    """The reason names the SAN and IDNA."""
    with pytest.raises(InvalidRequest) as raised:
        RequestFields.from_values(cn="a.example", sans=["例え..jp"])
    assert raised.value.problems == [
        "SAN '例え..jp' is not a valid internationalised domain name (IDNA): Empty Label"
    ]
