"""What gateways share, as frozen records with one canonical byte form.

Pure: no I/O, no clock. Every record travels inside an envelope naming its bucket, its
key, the gateway that wrote it (``by``) and that gateway's decision stamp (``at``, ms since
the epoch); the envelope is what :mod:`certdrop.fleet.crypto` signs. The bytes are JSON
with sorted keys, no spaces, ASCII only and whole numbers only, so one record has exactly
one encoding and a signature over it means one thing.

A record's key in its bucket is derived from its fields (``kv_key``), and a reader checks
that the key it read matches: a valid record copied under another key is refused.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, fields
from typing import Any, ClassVar, Self

from certdrop.config import GATEWAY_NAME

VERSION = 1
MAX_RECORD_BYTES = 1_000_000  # NATS' default max_payload is 1 MiB; a chain is a few kB
MAX_PEM_CHARS = 512_000
ALL = "*"  # an assignment for this service on every gateway that has it
_ALL_TOKEN = "_all_"  # noqa: S105 - not a password; how "*" appears in a key ("*" is a NATS wildcard)

SERVICE_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}")  # as config.py allows
_HEX64 = re.compile(r"[0-9a-f]{64}")
_MAX_STAMP = 2**53  # stays exact in every JSON reader


Check = Callable[[Any], str]  # a field check: the problem, or "" when the value is fine


class RecordError(ValueError):
    """Bytes that are not a well-formed record; ``problems`` lists every one found."""

    def __init__(self, problems: list[str]) -> None:
        self.problems = problems
        super().__init__("; ".join(problems))


def canonical(value: Mapping[str, Any]) -> bytes:
    """The one byte form of a JSON object: sorted keys, no spaces, ASCII, ints only."""
    return json.dumps(
        value, sort_keys=True, separators=(",", ":"), ensure_ascii=True, allow_nan=False
    ).encode("ascii")


# -- field checks (each returns the problem, or "" when the value is fine) ---------------


def _gateway(v: Any) -> str:
    ok = isinstance(v, str) and GATEWAY_NAME.fullmatch(v)
    return "" if ok else "must be a gateway name (letters, digits, '_', '-'; 1-63)"


def _target(v: Any) -> str:
    return "" if v == ALL else _gateway(v)


def _service(v: Any) -> str:
    ok = isinstance(v, str) and SERVICE_NAME.fullmatch(v)
    return "" if ok else "must be a service name"


def _sha256(v: Any) -> str:
    ok = isinstance(v, str) and _HEX64.fullmatch(v)
    return "" if ok else "must be 64 lowercase hex digits"


def _sha256_or_none(v: Any) -> str:
    return "" if v is None else _sha256(v)


def _hex32(v: Any) -> str:
    ok = isinstance(v, str) and re.fullmatch(r"[0-9a-f]{64}", v)
    return "" if ok else "must be a 32-byte key as 64 lowercase hex digits"


def _name(v: Any) -> str:
    ok = (
        isinstance(v, str)
        and 1 <= len(v) <= 128
        and "/" not in v
        and all(c.isprintable() for c in v)
    )
    return "" if ok else "must be a certificate name (1-128 printable characters, no '/')"


def _text(limit: int) -> Check:
    def check(v: Any) -> str:
        ok = isinstance(v, str) and len(v) <= limit and v.isascii()
        return "" if ok else f"must be ASCII text of at most {limit} characters"

    return check


def _stamp(v: Any) -> str:
    ok = isinstance(v, int) and not isinstance(v, bool) and 0 <= v < _MAX_STAMP
    return "" if ok else "must be milliseconds since the epoch"


def _one_of(*allowed: str) -> Check:
    def check(v: Any) -> str:
        return "" if v in allowed else f"must be one of {', '.join(allowed)}"

    return check


def _names(v: Any) -> str:
    ok = isinstance(v, list) and len(v) <= 256 and all(not _service(s) for s in v)
    return "" if ok else "must be a list of service names"


_PEM = _text(MAX_PEM_CHARS)
_SHORT = _text(64)
_DETAIL = _text(500)


class Record:
    """Base of the shared records: its bucket, its kind, its key and its field checks."""

    KIND: ClassVar[str]
    BUCKET: ClassVar[str]
    CHECKS: ClassVar[Mapping[str, Check]]

    def kv_key(self) -> str:
        raise NotImplementedError

    def to_data(self) -> dict[str, Any]:
        return {f.name: getattr(self, f.name) for f in fields(self)}  # type: ignore[arg-type]

    @classmethod
    def from_data(cls, data: Any) -> Self:
        if not isinstance(data, dict):
            raise RecordError([f"{cls.KIND}: data must be an object"])
        problems = [f"{cls.KIND}.{k}: unknown field" for k in sorted(set(data) - set(cls.CHECKS))]
        for name, check in cls.CHECKS.items():
            if name not in data:
                problems.append(f"{cls.KIND}.{name}: missing")
            elif problem := check(data[name]):
                problems.append(f"{cls.KIND}.{name} {problem}")
        if problems:
            raise RecordError(problems)
        return cls(**{k: tuple(v) if isinstance(v, list) else v for k, v in data.items()})


@dataclass(frozen=True)
class Identity(Record):
    """A gateway's public identity, signed by its own key (it asks to join with this)."""

    KIND = "identity"
    BUCKET = "certdrop_gateways"
    CHECKS: ClassVar[Mapping[str, Check]] = {
        "gateway": _gateway,
        "sign_key": _hex32,
        "version": _SHORT,
    }
    gateway: str
    sign_key: str  # Ed25519 public key, hex; the X25519 sealing key derives from it
    version: str

    def kv_key(self) -> str:
        return f"id.{self.gateway}"


@dataclass(frozen=True)
class Founder(Record):
    """The first gateway of a fleet: the root every approval leads back to (self-signed)."""

    KIND = "founder"
    BUCKET = "certdrop_gateways"
    CHECKS: ClassVar[Mapping[str, Check]] = {"gateway": _gateway, "sign_key": _hex32}
    gateway: str
    sign_key: str

    def kv_key(self) -> str:
        return "founder"


@dataclass(frozen=True)
class Member(Record):
    """An approved gateway's decision about one identity: approved or revoked."""

    KIND = "member"
    BUCKET = "certdrop_gateways"
    CHECKS: ClassVar[Mapping[str, Check]] = {
        "gateway": _gateway,
        "sign_key": _hex32,
        "state": _one_of("approved", "revoked"),
    }
    gateway: str
    sign_key: str  # the identity decided on; a new key needs a new approval
    state: str

    def kv_key(self) -> str:
        return f"member.{self.gateway}"


@dataclass(frozen=True)
class Heartbeat(Record):
    """A gateway says it is alive, which version it runs and which services it has."""

    KIND = "heartbeat"
    BUCKET = "certdrop_gateways"
    CHECKS: ClassVar[Mapping[str, Check]] = {
        "gateway": _gateway,
        "version": _SHORT,
        "services": _names,
    }
    gateway: str
    version: str
    services: tuple[str, ...]

    def kv_key(self) -> str:
        return f"seen.{self.gateway}"


@dataclass(frozen=True)
class Certificate(Record):
    """A certificate one gateway accepted; keyed by its fingerprint (one cert, one key)."""

    KIND = "certificate"
    BUCKET = "certdrop_certs"
    CHECKS: ClassVar[Mapping[str, Check]] = {
        "sha256": _sha256,
        "name": _name,
        "key_id": _sha256,
        "cert_pem": _PEM,
        "chain_pem": _PEM,
        "renews": _sha256_or_none,
    }
    sha256: str
    name: str  # the name it had where it was accepted; a suggestion elsewhere
    key_id: str  # sha256 of the public key: where its sealed private key is found
    cert_pem: str
    chain_pem: str
    renews: str | None  # the fingerprint this one replaces, for a renewal

    def kv_key(self) -> str:
        return self.sha256


@dataclass(frozen=True)
class SealedKey(Record):
    """A private key sealed to one gateway's X25519 key (the engine sees ciphertext only)."""

    KIND = "sealed_key"
    BUCKET = "certdrop_keys"
    CHECKS: ClassVar[Mapping[str, Check]] = {
        "key_id": _sha256,
        "recipient": _gateway,
        "sealed": _text(64_000),
    }
    key_id: str
    recipient: str
    sealed: str  # base64 of a libsodium sealed box

    def kv_key(self) -> str:
        return f"{self.key_id}.{self.recipient}"


@dataclass(frozen=True)
class Assignment(Record):
    """Which certificate a service should have: on one gateway, or on every (``*``)."""

    KIND = "assignment"
    BUCKET = "certdrop_assign"
    CHECKS: ClassVar[Mapping[str, Check]] = {
        "gateway": _target,
        "service": _service,
        "sha256": _sha256_or_none,
        "name": _name,
    }
    gateway: str  # a gateway name or "*"
    service: str
    sha256: str | None  # None: unassigned
    name: str  # the certificate's name where the decision was made (for people)

    def kv_key(self) -> str:
        target = _ALL_TOKEN if self.gateway == ALL else self.gateway
        return f"{target}.{self.service}"


@dataclass(frozen=True)
class ServiceState(Record):
    """What one gateway's service should have and what it was proven to serve."""

    KIND = "service"
    BUCKET = "certdrop_services"
    CHECKS: ClassVar[Mapping[str, Check]] = {
        "gateway": _gateway,
        "service": _service,
        "role": _SHORT,
        "desired": _sha256_or_none,
        "proven": _sha256_or_none,
        "state": _one_of("ok", "pending", "failed"),
        "detail": _DETAIL,
    }
    gateway: str
    service: str
    role: str
    desired: str | None
    proven: str | None
    state: str
    detail: str

    def kv_key(self) -> str:
        return f"{self.gateway}.{self.service}"


@dataclass(frozen=True)
class Lease(Record):
    """Who runs the renewal hand-off of one certificate, until when (ms since the epoch)."""

    KIND = "lease"
    BUCKET = "certdrop_leases"
    CHECKS: ClassVar[Mapping[str, Check]] = {
        "sha256": _sha256,
        "holder": _gateway,
        "expires": _stamp,
    }
    sha256: str
    holder: str
    expires: int

    def kv_key(self) -> str:
        return self.sha256


KINDS: Mapping[str, type[Record]] = {
    k.KIND: k
    for k in (
        Identity,
        Founder,
        Member,
        Heartbeat,
        Certificate,
        SealedKey,
        Assignment,
        ServiceState,
        Lease,
    )
}
BUCKETS = tuple(sorted({k.BUCKET for k in KINDS.values()}))


@dataclass(frozen=True)
class Envelope:
    """A record as stored: where it lives, who wrote it and when; ``sig`` signs the rest."""

    record: Record
    by: str
    at: int
    sig: bytes = b""

    @property
    def stamp(self) -> tuple[int, str]:
        """The order of decisions: later ``at`` wins, the gateway name breaks a tie."""
        return (self.at, self.by)

    def signed_part(self) -> dict[str, Any]:
        r = self.record
        return {
            "v": VERSION,
            "kind": r.KIND,
            "bucket": r.BUCKET,
            "key": r.kv_key(),
            "by": self.by,
            "at": self.at,
            "data": r.to_data(),
        }

    def message(self) -> bytes:
        """The bytes a signature covers (domain-separated from any other use of the key)."""
        return b"certdrop-fleet-record-v1\n" + canonical(self.signed_part())

    def encode(self) -> bytes:
        if len(self.sig) != 64:
            raise ValueError("an envelope is encoded only once signed")
        return canonical({**self.signed_part(), "sig": self.sig.hex()})


def decode(raw: bytes, bucket: str, key: str) -> Envelope:
    """Parse stored bytes read from ``bucket``/``key``; RecordError names what is wrong.

    This checks form only: the signature is checked by whoever knows the writer's key.
    """
    if len(raw) > MAX_RECORD_BYTES:
        raise RecordError([f"record is {len(raw)} bytes, more than {MAX_RECORD_BYTES}"])
    try:
        doc = json.loads(raw.decode("ascii"), parse_float=_no_float, parse_constant=_no_float)
    except (UnicodeDecodeError, ValueError) as exc:
        raise RecordError([f"not canonical JSON ({type(exc).__name__})"]) from None
    if not isinstance(doc, dict):
        raise RecordError(["not a JSON object"])
    problems = []
    if doc.get("v") != VERSION:
        problems.append(f"version {doc.get('v')!r} is not {VERSION}")
    kind = KINDS.get(doc.get("kind"))  # type: ignore[arg-type]
    if kind is None:
        problems.append(f"unknown kind {doc.get('kind')!r}")
    elif bucket != kind.BUCKET or doc.get("bucket") != bucket:
        problems.append(f"a {kind.KIND} record does not belong in {bucket}")
    if problem := _gateway(doc.get("by")):
        problems.append(f"by {problem}")
    if problem := _stamp(doc.get("at")):
        problems.append(f"at {problem}")
    sig = doc.get("sig")
    if not (isinstance(sig, str) and re.fullmatch(r"[0-9a-f]{128}", sig)):
        problems.append("sig must be 64 bytes as hex")
    extra = set(doc) - {"v", "kind", "bucket", "key", "by", "at", "data", "sig"}
    if extra:
        problems.append(f"unknown fields {sorted(extra)}")
    if problems or kind is None:
        raise RecordError(problems)
    record = kind.from_data(doc.get("data"))
    if record.kv_key() != key or doc.get("key") != key:
        raise RecordError([f"a record for key {record.kv_key()!r} was found under {key!r}"])
    envelope = Envelope(record, str(doc["by"]), int(doc["at"]), bytes.fromhex(str(sig)))
    if envelope.encode() != raw:
        raise RecordError(["not in canonical form (re-encoded bytes differ)"])
    return envelope


def _no_float(text: str) -> Any:
    raise ValueError(f"only whole numbers are allowed, not {text}")
