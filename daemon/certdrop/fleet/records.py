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
from collections.abc import Mapping
from dataclasses import dataclass, fields
from typing import Any, ClassVar, Self

from certdrop.fleet import checks as c
from certdrop.fleet.checks import ALL as ALL  # re-exported: the "every gateway" target
from certdrop.fleet.checks import Check, canonical

VERSION = 1
MAX_RECORD_BYTES = 1_000_000  # NATS' default max_payload is 1 MiB; a chain is a few kB
_ALL_TOKEN = "_all_"  # noqa: S105 - not a password; how "*" appears in a key ("*" is a NATS wildcard)


class RecordError(ValueError):
    """Bytes that are not a well-formed record; ``problems`` lists every one found."""

    def __init__(self, problems: list[str]) -> None:
        self.problems = problems
        super().__init__("; ".join(problems))


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
        "gateway": c.gateway,
        "sign_key": c.hex32,
        "version": c.SHORT,
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
    CHECKS: ClassVar[Mapping[str, Check]] = {"gateway": c.gateway, "sign_key": c.hex32}
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
        "gateway": c.gateway,
        "sign_key": c.hex32,
        "state": c.one_of("approved", "revoked"),
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
        "gateway": c.gateway,
        "version": c.SHORT,
        "services": c.names,
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
        "sha256": c.sha256,
        "name": c.name,
        "key_id": c.sha256,
        "cert_pem": c.PEM,
        "chain_pem": c.PEM,
        "renews": c.sha256_or_none,
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
class Withdrawal(Record):
    """A certificate deleted from the fleet (``certdrop delete`` on some gateway): a
    tombstone under the certificate's own key, so a gateway that was away sees
    "withdrawn", not "never seen". It and a :class:`Certificate` under one key are
    decisions: the later stamp wins (:func:`certdrop.fleet.rules.publish_action`)."""

    KIND = "withdrawal"
    BUCKET = "certdrop_certs"
    CHECKS: ClassVar[Mapping[str, Check]] = {
        "sha256": c.sha256,
        "key_id": c.sha256,
        "name": c.name,
    }
    sha256: str
    key_id: str  # whose sealed copies go with it
    name: str  # its name where it was deleted (for people)

    def kv_key(self) -> str:
        return self.sha256


@dataclass(frozen=True)
class Request(Record):
    """A CSR one gateway made, waiting for its CA; one key, one request (never rewritten).
    Its private key travels as a SealedKey under the same ``key_id``."""

    KIND = "request"
    BUCKET = "certdrop_certs"
    CHECKS: ClassVar[Mapping[str, Check]] = {
        "key_id": c.sha256,
        "name": c.name,
        "csr_pem": c.text(64_000),
        "fields": c.request_fields,
        "renews": c.sha256_or_none,
    }
    key_id: str  # sha256 of the CSR's public key
    name: str  # the name it has where it was made; a suggestion elsewhere
    csr_pem: str
    fields: str  # RequestFields.to_mapping() as canonical JSON; "" when it has none
    renews: str | None  # the fingerprint of the certificate a renewal request renews

    def kv_key(self) -> str:
        return f"req.{self.key_id}"


@dataclass(frozen=True)
class SealedKey(Record):
    """A private key sealed to one gateway's X25519 key (the engine sees ciphertext only)."""

    KIND = "sealed_key"
    BUCKET = "certdrop_keys"
    CHECKS: ClassVar[Mapping[str, Check]] = {
        "key_id": c.sha256,
        "recipient": c.gateway,
        "sealed": c.text(64_000),
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
        "gateway": c.target,
        "service": c.service,
        "sha256": c.sha256_or_none,
        "name": c.name,
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
        "gateway": c.gateway,
        "service": c.service,
        "role": c.SHORT,
        "desired": c.sha256_or_none,
        "proven": c.sha256_or_none,
        "state": c.one_of("ok", "pending", "failed"),
        "detail": c.DETAIL,
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
        "sha256": c.sha256,
        "holder": c.gateway,
        "expires": c.stamp,
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
        Withdrawal,
        Request,
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
    if problem := c.gateway(doc.get("by")):
        problems.append(f"by {problem}")
    if problem := c.stamp(doc.get("at")):
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
