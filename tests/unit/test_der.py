"""The bounded ASN.1 reader under the KDF checks: every malformation is Malformed, fast."""

from __future__ import annotations

import contextlib

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from certdrop.pki import der
from certdrop.pki.der import Malformed
from support import costly


def test_reads_a_sequence_its_integers_and_oid() -> None:
    """A SEQUENCE's children come back in order with their values."""
    node = der.read(bytes.fromhex("300a" "020103" "0603550403" "0500"))
    first, oid, null = node.children()
    assert first.integer() == 3
    assert oid.oid() == "2.5.4.3"
    assert null.tag == der.NULL


def test_indefinite_lengths_and_chunked_octet_strings_read_as_their_der() -> None:
    """BER (indefinite lengths, constructed OCTET STRING) reads as the same values as DER."""
    inner = costly.Tlv(0x30, children=[costly.integer(2048)])
    outer = costly.Tlv(0x30, children=[costly.Tlv(0x04, value=inner.encode())])
    outer.children[0].open()
    for data in (outer.encode(), outer.encode(indefinite=True)):
        node = der.read(data)
        (octets,) = node.children()
        assert der.read(octets.octets()).children()[0].integer() == 2048


def test_oid_with_a_large_arc() -> None:
    """Multi-byte arcs decode (1.2.840.113549 has two)."""
    assert der.decode_oid(bytes.fromhex("2a864886f70d01050d")) == "1.2.840.113549.1.5.13"


@pytest.mark.parametrize(
    ("data", "why"),
    [
        (b"", "no ASN.1 value"),
        (b"\x30", "cut short"),
        (b"\x30\x05\x02\x01", "more bytes than its container"),
        (b"\x30\x84\xff\xff\xff\xff", "more bytes"),
        (b"\x30\x85\x01\x00\x00\x00\x00", "too long"),
        (b"\x04\x80\x00\x00", "indefinite length on a primitive"),
        (b"\x30\x80\x02\x01\x01", "no end-of-contents"),
        (b"\x1f\x01\x00", "high tag"),
        (b"\x30\x00\x05\x00", "bytes follow"),
    ],
)
def test_malformed_input_is_one_error_naming_it(data: bytes, why: str) -> None:
    """Each malformation raises Malformed with a reason, never IndexError or worse."""
    with pytest.raises(Malformed, match=why):
        node = der.read(data)
        node.children()


def test_a_length_beyond_its_parent_is_refused_in_the_child() -> None:
    """A child may not reach past its parent's end even when the file is long enough."""
    data = bytes.fromhex("3003" "0205" "01") + b"\x00" * 8
    node, _ = der.read_prefix(data)
    with pytest.raises(Malformed):
        node.children()


def test_nesting_is_bounded_for_definite_and_indefinite_lengths() -> None:
    """Nesting deeper than MAX_DEPTH is refused instead of recursing without end."""
    depth = der.MAX_DEPTH + 5
    definite: costly.Tlv = costly.integer(1)
    for _ in range(depth):
        definite = costly.Tlv(0x30, children=[definite])
    indefinite = b"\x30\x80" * 10_000 + b"\x00\x00" * 10_000
    for data in (definite.encode(), indefinite):
        with pytest.raises(Malformed, match="nests deeper"):
            node = der.read(data)
            while node.constructed:
                (node,) = node.children()


def test_negative_counts_are_malformed() -> None:
    """An iteration count or size must not be negative."""
    with pytest.raises(Malformed, match="negative"):
        der.read(b"\x02\x01\xff").integer()


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=200))
def test_any_bytes_read_as_nodes_or_malformed(data: bytes) -> None:
    """Random bytes never raise anything but Malformed, however deep the reader goes."""

    def walk(node: der.Node) -> None:
        if node.constructed:
            for child in node.children():
                walk(child)

    with contextlib.suppress(Malformed):
        walk(der.read(data))
