"""A small bounded reader of DER (and the BER that PKCS#12 files may use). Pure.

Only as much ASN.1 as :mod:`certdrop.pki.kdf` needs to find cost parameters before any
key derivation: tag, length, content, children. Every length is checked against its
parent, nesting is limited to :data:`MAX_DEPTH`, and any malformation is one
:class:`Malformed` (never an IndexError or a RecursionError), so a hostile file costs
time linear in its size and nothing more.

Indefinite lengths and constructed OCTET STRINGs (BER) are accepted because PKCS#12
writers other than OpenSSL (NSS, some Java versions) emit them and OpenSSL reads them.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

MAX_DEPTH = 32

INTEGER = 0x02
OCTET_STRING = 0x04
NULL = 0x05
OID = 0x06
SEQUENCE = 0x30
SET = 0x31
CONSTRUCTED = 0x20


def context(number: int) -> int:
    """The tag of ``[number]`` constructed (EXPLICIT, or IMPLICIT over a SEQUENCE)."""
    return 0xA0 | number


class Malformed(ValueError):
    """The bytes are not the ASN.1 structure they claim to be; ``args[0]`` says where."""


@dataclass(frozen=True)
class Node:
    """One TLV: ``tag`` is the identifier octet, ``body`` the content as given (for an
    indefinite length: the children followed by nothing, end-of-contents removed)."""

    tag: int
    body: bytes
    indefinite: bool = False
    depth: int = 0

    @property
    def constructed(self) -> bool:
        return bool(self.tag & CONSTRUCTED)

    def children(self) -> list[Node]:
        """The nodes inside a constructed node, in order."""
        if not self.constructed:
            raise Malformed(f"tag {self.tag:#04x} is primitive; it has no children")
        return list(_iterate(self.body, 0, len(self.body), self.depth + 1))

    def expect(self, tag: int, what: str) -> Node:
        if self.tag != tag:
            raise Malformed(f"{what}: expected tag {tag:#04x}, found {self.tag:#04x}")
        return self

    def integer(self) -> int:
        """A non-negative INTEGER (a negative one is malformed for every field read here)."""
        self.expect(INTEGER, "integer")
        if not self.body:
            raise Malformed("an INTEGER has no content")
        value = int.from_bytes(self.body, "big", signed=True)
        if value < 0:
            raise Malformed("a count or size is negative")
        return value

    def oid(self) -> str:
        """The dotted form of an OBJECT IDENTIFIER."""
        self.expect(OID, "object identifier")
        return decode_oid(self.body)

    def octets(self) -> bytes:
        """The value of an OCTET STRING, joining the segments of a constructed (BER) one."""
        if self.tag == OCTET_STRING:
            return self.body
        if self.tag == OCTET_STRING | CONSTRUCTED:
            return b"".join(child.octets() for child in self.children())
        raise Malformed(f"expected an OCTET STRING, found tag {self.tag:#04x}")


def read(data: bytes) -> Node:
    """The one node ``data`` holds; trailing bytes are malformed."""
    nodes = _iterate(data, 0, len(data), 0)
    first = next(nodes, None)
    if first is None:
        raise Malformed("no ASN.1 value")
    if next(nodes, None) is not None:
        raise Malformed("bytes follow the ASN.1 value")
    return first


def read_prefix(data: bytes) -> tuple[Node, int]:
    """The first node of ``data`` and where it ends (a file may carry trailing noise)."""
    node, end = _one(data, 0, len(data), 0)
    return node, end


def decode_oid(body: bytes) -> str:
    if not body or body[-1] & 0x80 or len(body) > 64:
        raise Malformed("an OBJECT IDENTIFIER is malformed")
    arcs: list[int] = []
    value = 0
    for byte in body:
        value = (value << 7) | (byte & 0x7F)
        if not byte & 0x80:
            arcs.append(value)
            value = 0
    first = min(arcs[0] // 40, 2)
    return ".".join(str(a) for a in (first, arcs[0] - 40 * first, *arcs[1:]))


def _iterate(data: bytes, start: int, end: int, depth: int) -> Iterator[Node]:
    pos = start
    while pos < end:
        node, pos = _one(data, pos, end, depth)
        yield node


def _one(data: bytes, pos: int, end: int, depth: int) -> tuple[Node, int]:
    """Read the TLV at ``pos`` that must end by ``end``; return it and where it ends."""
    if depth > MAX_DEPTH:
        raise Malformed(f"the structure nests deeper than {MAX_DEPTH} levels")
    if end - pos < 2:
        raise Malformed("a value is cut short")
    tag = data[pos]
    if tag & 0x1F == 0x1F:
        raise Malformed("a high tag number, which these structures never use")
    first = data[pos + 1]
    pos += 2
    if first == 0x80:
        if not tag & CONSTRUCTED:
            raise Malformed("an indefinite length on a primitive value")
        body_start = pos
        # The children run until end-of-contents (00 00); reading them finds it.
        while True:
            if end - pos < 2:
                raise Malformed("an indefinite length has no end-of-contents")
            if data[pos] == 0 and data[pos + 1] == 0:
                return Node(tag, data[body_start:pos], True, depth), pos + 2
            _, pos = _one(data, pos, end, depth + 1)
    if first & 0x80:
        count = first & 0x7F
        if count > 4 or end - pos < count:
            raise Malformed("a length field is too long or cut short")
        length = int.from_bytes(data[pos : pos + count], "big")
        pos += count
    else:
        length = first
    if length > end - pos:
        raise Malformed("a value declares more bytes than its container holds")
    return Node(tag, data[pos : pos + length], False, depth), pos + length
