"""Small builders for the fleet unit tests: gateways with fresh keys and signed records."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field

from certdrop.fleet.crypto import GatewayKey
from certdrop.fleet.records import (
    Assignment,
    Certificate,
    Envelope,
    Founder,
    Identity,
    Member,
    Record,
)


def sha(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


@dataclass
class Gw:
    """A gateway in a test: its name and a freshly generated identity."""

    name: str
    key: GatewayKey = field(default_factory=GatewayKey.generate)

    @property
    def sign_key(self) -> str:
        return self.key.public.sign_key

    def sign(self, record: Record, at: int = 1000) -> Envelope:
        return self.key.sign(record, self.name, at)

    def founder(self) -> Envelope:
        return self.sign(Founder(self.name, self.sign_key))

    def identity(self) -> Envelope:
        return self.sign(Identity(self.name, self.sign_key, "0.1.0"))

    def approve(self, other: Gw, at: int = 1000, state: str = "approved") -> Envelope:
        return self.sign(Member(other.name, other.sign_key, state), at)

    def assign(self, target: str, service: str, cert: str | None, at: int) -> Envelope:
        return self.sign(Assignment(target, service, None if cert is None else sha(cert), "c"), at)

    def certificate(self, cert: str = "leaf") -> Envelope:
        return self.sign(
            Certificate(
                sha(cert), "web", sha("key-" + cert), "-----BEGIN CERTIFICATE-----\n", "", None
            )
        )
