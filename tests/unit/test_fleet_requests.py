"""A request from the fleet is recorded only when its CSR and sealed key belong together."""

from __future__ import annotations

from cryptography.hazmat.primitives.serialization import Encoding

from certdrop.fleet.records import Request
from certdrop.fleet.requests import opened
from certdrop.pki import keys
from certdrop.pki.csr import build_csr, generate_key
from certdrop.pki.fields import RequestFields

FIELDS = RequestFields.from_values(cn="req.fleet.test", key_type="ec")


def _request() -> tuple[Request, bytes]:
    key = generate_key(FIELDS.key_type, FIELDS.key_size)
    csr = build_csr(key, FIELDS).public_bytes(Encoding.PEM).decode()
    return Request(keys.key_id(key.public_key()), "web", csr, "", None), keys.to_pem(key)


def test_a_csr_with_its_own_key_opens() -> None:
    """The CSR comes back when it, its key and the record's key id agree."""
    record, key_pem = _request()
    assert not isinstance(opened(record, key_pem), str)


def test_another_key_or_key_id_is_refused() -> None:
    """A sealed key of another request, or a record naming another key, is refused."""
    record, key_pem = _request()
    other, other_pem = _request()
    assert "different keys" in str(opened(record, other_pem))
    assert "different keys" in str(opened(Request(other.key_id, "web", record.csr_pem, "", None), key_pem))


def test_garbage_is_refused_with_a_reason() -> None:
    """A CSR that does not parse gives a reason, not an exception."""
    record, key_pem = _request()
    assert "unreadable" in str(opened(Request(record.key_id, "web", "junk", "", None), key_pem))
