"""Fleet records: one canonical byte form, signed, and refused when anything is off."""

from __future__ import annotations

import contextlib
import json

import pytest
from fleet_helpers import Gw, sha
from hypothesis import given
from hypothesis import strategies as st

from certdrop.fleet.crypto import verify
from certdrop.fleet.records import (
    KINDS,
    MAX_RECORD_BYTES,
    Assignment,
    Certificate,
    Envelope,
    Founder,
    Heartbeat,
    Identity,
    Lease,
    Member,
    RecordError,
    Request,
    SealedKey,
    ServiceState,
    Withdrawal,
    canonical,
    decode,
)
from certdrop.pki.fields import RequestFields

A = Gw("gw-a")
FIELDS = canonical(RequestFields.from_values(cn="www.example.test", org="Ëxample").to_mapping())
CSR = "-----BEGIN CERTIFICATE REQUEST-----\n"

SAMPLES = [
    Identity("gw-a", A.sign_key, "0.1.0"),
    Founder("gw-a", A.sign_key),
    Member("gw-b", A.sign_key, "approved"),
    Heartbeat("gw-a", "0.1.0", ("admin-console", "mta")),
    Certificate(sha("c"), "wëb console", sha("k"), "-----BEGIN CERTIFICATE-----\n", "", sha("old")),
    SealedKey(sha("k"), "gw-b", "c2VhbGVk"),
    Request(sha("k"), "本番 web", CSR, FIELDS.decode(), sha("old")),
    # U+3000, the ideographic space Japanese names are typed with (str.isprintable: False)
    Certificate(sha("d"), "本番\u3000証明書", sha("k"), "-----BEGIN CERTIFICATE-----\n", "", None),
    Assignment("*", "admin-console", sha("c"), "web"),
    Assignment("gw-b", "admin-console", None, "web"),
    ServiceState("gw-a", "admin-console", "https", sha("c"), None, "pending", "reloading"),
    Lease(sha("c"), "gw-a", 5000),
    Withdrawal(sha("c"), sha("k"), "wëb console"),
]


def _doc(envelope: Envelope) -> dict[str, object]:
    return dict(json.loads(envelope.encode()))


def _raw(doc: dict[str, object]) -> bytes:
    return canonical(doc)


def test_every_kind_has_a_sample() -> None:
    """The samples cover every record kind, so the round trip below covers them all."""
    assert {type(s).KIND for s in SAMPLES} == set(KINDS)


@pytest.mark.parametrize("record", SAMPLES, ids=lambda r: type(r).KIND)
def test_round_trip(record: object) -> None:
    """A signed record decodes from its bytes to an equal envelope whose signature verifies."""
    env = A.sign(record, at=1234)  # type: ignore[arg-type]
    back = decode(env.encode(), env.record.BUCKET, env.record.kv_key())
    assert back == env
    assert verify(back, A.key.public)


def test_canonical_form_is_sorted_compact_ascii() -> None:
    """Canonical JSON sorts keys, has no spaces and escapes non-ASCII, so one record has one encoding."""
    assert canonical({"b": 1, "a": "é"}) == b'{"a":"\\u00e9","b":1}'


def test_a_record_under_another_key_is_refused() -> None:
    """A valid assignment copied under another service's key is refused (no replay across keys)."""
    env = A.sign(Assignment("gw-b", "admin-console", sha("c"), "web"))
    with pytest.raises(RecordError, match="found under"):
        decode(env.encode(), "certdrop_assign", "gw-b.mta")


def test_a_record_in_the_wrong_bucket_is_refused() -> None:
    """A certificate record read from the keys bucket is refused."""
    env = A.sign(SAMPLES[4])
    with pytest.raises(RecordError, match="does not belong"):
        decode(env.encode(), "certdrop_keys", env.record.kv_key())


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (lambda d: d.update(v=2), "version"),
        (lambda d: d.update(kind="nonsense"), "unknown kind"),
        (lambda d: d.update(by="gw.a"), "by must be a gateway name"),
        (lambda d: d.update(at=-1), "at must be"),
        (lambda d: d.update(at=True), "at must be"),
        (lambda d: d.update(sig="00"), "sig must be"),
        (lambda d: d.update(extra=1), "unknown fields"),
        (lambda d: d["data"].pop("service"), "service: missing"),
        (lambda d: d["data"].update(colour="red"), "unknown field"),
        (lambda d: d["data"].update(sha256="ABC"), "sha256 must be"),
        (lambda d: d["data"].update(gateway="a/b"), "gateway must be"),
        (lambda d: d.update(data=[1]), "data must be an object"),
        (lambda d: d["data"].update(name="a/b"), "name must be a certificate name: .*'/'"),
        (lambda d: d["data"].update(name="x\u202e"), "name must be .*U\\+202E"),
        (lambda d: d["data"].update(name=" web"), "name must be .*space"),
        (lambda d: d["data"].update(name=""), "name must be .*empty"),
        (lambda d: d["data"].update(name=7), "name must be a certificate name"),
    ],
)
def test_malformed_fields_are_named(change: object, message: str) -> None:
    """Each malformed field is refused with a problem that names it."""
    env = A.sign(Assignment("gw-b", "admin-console", sha("c"), "web"))
    doc = _doc(env)
    change(doc)  # type: ignore[operator]
    with pytest.raises(RecordError, match=message):
        decode(_raw(doc), "certdrop_assign", "gw-b.admin-console")


def test_every_problem_is_reported_at_once() -> None:
    """A record with several bad fields lists all of them, not only the first."""
    env = A.sign(Assignment("gw-b", "admin-console", sha("c"), "web"))
    doc = _doc(env)
    doc["data"] = {"gateway": "", "service": "", "sha256": 1, "name": ""}
    with pytest.raises(RecordError) as caught:
        decode(_raw(doc), "certdrop_assign", "gw-b.admin-console")
    assert len(caught.value.problems) == 4


def test_non_canonical_bytes_are_refused() -> None:
    """The same JSON with a space added is refused: only the canonical form is accepted."""
    env = A.sign(Lease(sha("c"), "gw-a", 5))
    raw = env.encode().replace(b'"at":', b'"at": ')
    with pytest.raises(RecordError, match="canonical"):
        decode(raw, "certdrop_leases", sha("c"))


@pytest.mark.parametrize("raw", [b"1.5", b'{"at": 1.0}', b"NaN", b"\xff", b"[]", b"{"])
def test_floats_and_garbage_are_refused(raw: bytes) -> None:
    """Floats, NaN, non-ASCII bytes and non-objects are refused as malformed records."""
    with pytest.raises(RecordError):
        decode(raw, "certdrop_leases", sha("c"))


def test_oversized_records_are_refused_before_parsing() -> None:
    """A record larger than the engine's message limit is refused by its size alone."""
    with pytest.raises(RecordError, match="more than"):
        decode(b" " * (MAX_RECORD_BYTES + 1), "certdrop_certs", sha("c"))


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ('{"cn":"x.test"', "canonical JSON"),  # not JSON
        ('{"cn": "x.test"}', "canonical JSON"),  # JSON, not its one canonical form
        ('{"cn":"x.test","colour":"red"}', "canonical JSON"),  # a key no request has
        ('{"cn":"","sans":[]}', "canonical JSON"),  # a request drop would refuse it
        ('"x.test"', "canonical JSON"),
        (None, "canonical JSON"),
    ],
)
def test_a_request_with_bad_fields_is_refused(fields: object, message: str) -> None:
    """A request's fields must be the canonical JSON of fields a request drop accepts."""
    env = A.sign(Request(sha("k"), "web", CSR, "", None))
    doc = _doc(env)
    doc["data"]["fields"] = fields  # type: ignore[index]
    with pytest.raises(RecordError, match=message):
        decode(_raw(doc), "certdrop_certs", f"req.{sha('k')}")


def test_a_request_is_keyed_by_its_key_and_every_problem_named() -> None:
    """A request lives under req.KEY_ID in the certificates bucket; a copy under another
    key is refused, and bad fields are all named at once."""
    env = A.sign(Request(sha("k"), "web", CSR, FIELDS.decode(), None))
    assert env.record.kv_key() == f"req.{sha('k')}"
    with pytest.raises(RecordError, match="found under"):
        decode(env.encode(), "certdrop_certs", f"req.{sha('j')}")
    doc = _doc(env)
    doc["data"].update(key_id="K", name="a/b", csr_pem="é", renews="")  # type: ignore[attr-defined]
    with pytest.raises(RecordError) as caught:
        decode(_raw(doc), "certdrop_certs", f"req.{sha('k')}")
    assert len(caught.value.problems) == 4


def test_unsigned_envelopes_do_not_encode() -> None:
    """An envelope without a signature cannot be turned into bytes to publish."""
    with pytest.raises(ValueError, match="signed"):
        Envelope(SAMPLES[0], "gw-a", 1).encode()


@given(st.binary(max_size=300))
def test_any_bytes_give_a_record_or_a_record_error(raw: bytes) -> None:
    """Arbitrary bytes from the engine never raise anything but RecordError."""
    with contextlib.suppress(RecordError):
        decode(raw, "certdrop_assign", "gw-b.admin-console")


@given(st.integers(min_value=0), st.integers(min_value=0, max_value=255))
def test_a_changed_byte_never_passes(position: int, value: int) -> None:
    """Changing any byte of a signed record makes it malformed or its signature fail."""
    env = A.sign(Assignment("gw-b", "admin-console", sha("c"), "web"))
    raw = bytearray(env.encode())
    i = position % len(raw)
    if raw[i] == value:
        return
    raw[i] = value
    try:
        back = decode(bytes(raw), "certdrop_assign", "gw-b.admin-console")
    except RecordError:
        return
    assert not verify(back, A.key.public)


def test_a_withdrawal_is_a_tombstone_under_its_certificates_key() -> None:
    """A withdrawal lives where its certificate did (same bucket, same key), so one
    replaces the other and a late reader sees "withdrawn" rather than nothing."""
    cert = SAMPLES[4]
    gone = Withdrawal(sha("c"), sha("k"), "web")
    assert (gone.BUCKET, gone.kv_key()) == (cert.BUCKET, cert.kv_key())  # type: ignore[attr-defined]
    with pytest.raises(RecordError, match=r"withdrawal\.key_id"):
        Withdrawal.from_data({"sha256": sha("c"), "key_id": "nope", "name": "web"})
