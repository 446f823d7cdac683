"""Tests for certdrop.pki.csr: request fields, keys, CSRs, read-back and CA differences."""

from __future__ import annotations

import dataclasses
import datetime as dt
import functools
import ipaddress
import json
from pathlib import Path
from typing import Any

import pytest
import trustme
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa
from cryptography.x509.oid import NameOID
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st
from hypothesis.provisional import domains

from certdrop.errors import InvalidRequest, UserError
from certdrop.pki.csr import (
    PrivateKey,
    RequestFields,
    build_csr,
    differences,
    fields_of,
    fields_of_certificate,
    generate_key,
)
from support.openssl_ca import openssl

FULL: dict[str, Any] = {
    "cn": "www.example.com",
    "sans": ("www.example.com", "api.example.com", "192.0.2.10"),
    "country": "de",
    "state": "Bavaria",
    "locality": "München",
    "org": "Acme",
    "ou": "Ops",
    "email": "ops@example.com",
}
FULL_SUBJECT = (
    "subject=C = DE, ST = Bavaria, L = M\\C3\\BCnchen, O = Acme, OU = Ops, "
    "CN = www.example.com, emailAddress = ops@example.com"
)
# No example database: nothing is written into the checkout.
NO_DB = settings(database=None, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@functools.cache
def ec_key() -> ec.EllipticCurvePrivateKey:
    """One P-256 key shared by the tests that only need some key."""
    key = generate_key("ec", 256)
    assert isinstance(key, ec.EllipticCurvePrivateKey)
    return key


@functools.cache
def rsa_key() -> rsa.RSAPrivateKey:
    """One RSA 2048 key shared by the tests that only need some RSA key."""
    key = generate_key("rsa", 2048)
    assert isinstance(key, rsa.RSAPrivateKey)
    return key


def openssl_verifies(path: Path, *options: str) -> bool:
    """Whether ``openssl req -verify`` accepts the CSR's self-signature.

    OpenSSL 3.0 exits 0 even when the signature is bad, so read what it says too.
    """
    result = openssl("req", "-verify", "-noout", "-in", path, *options)
    return result.returncode == 0 and "verify OK" in result.stderr + result.stdout


def write_csr(path: Path, csr: x509.CertificateSigningRequest) -> Path:
    path.write_bytes(csr.public_bytes(serialization.Encoding.PEM))
    return path


def openssl_ca_sign(tmp_path: Path, csr_path: Path, *options: str) -> x509.Certificate:
    """Sign ``csr_path`` with a fresh trustme CA through ``openssl x509 -req``."""
    ca = trustme.CA()
    ca.cert_pem.write_to_path(str(tmp_path / "ca.pem"))
    ca.private_key_pem.write_to_path(str(tmp_path / "ca.key"))
    out = tmp_path / "signed.pem"
    result = openssl(
        "x509",
        "-req",
        "-in",
        csr_path,
        "-CA",
        tmp_path / "ca.pem",
        "-CAkey",
        tmp_path / "ca.key",
        "-set_serial",
        "0x5eed",
        "-days",
        "1",
        "-out",
        out,
        *options,
    )
    assert result.returncode == 0, result.stderr
    return x509.load_pem_x509_certificate(out.read_bytes())


def self_signed(
    key: PrivateKey, subject: x509.Name, sans: list[x509.GeneralName] | None
) -> x509.Certificate:
    """A certificate with exactly this subject and these SANs, as a CA might return it."""
    start = dt.datetime(2026, 1, 1, tzinfo=dt.UTC)
    builder = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "Test CA")]))
        .public_key(key.public_key())
        .serial_number(1)
        .not_valid_before(start)
        .not_valid_after(start + dt.timedelta(days=90))
    )
    if sans is not None:
        builder = builder.add_extension(x509.SubjectAlternativeName(sans), critical=False)
    return builder.sign(key, hashes.SHA256())


def problems_of(**values: Any) -> list[str]:
    """The problems ``from_values`` reports for these values (none if they are fine)."""
    try:
        RequestFields.from_values(**values)
    except InvalidRequest as exc:
        return exc.problems
    return []


# -- from_values -------------------------------------------------------------------------------


def test_from_values_normalises_fields() -> None:
    """Country is upper-cased, DNS SANs lower-cased, IPs canonical, duplicates dropped."""
    fields = RequestFields.from_values(
        cn=" www.example.com ",
        sans=["WWW.Example.com", "www.example.com", "2001:DB8::0:1"],
        country="de",
        org="",
        key_type="RSA",
    )
    assert fields.cn == "www.example.com"
    assert fields.sans == ("www.example.com", "2001:db8::1")
    assert fields.country == "DE"
    assert fields.org is None
    assert (fields.key_type, fields.key_size) == ("rsa", 2048)


def test_cn_becomes_the_only_san_when_none_are_given() -> None:
    """Without SANs the CN is the only SAN, as an IP SAN when the CN is an address."""
    assert RequestFields.from_values(cn="Mail.Example.org").sans == ("mail.example.org",)
    assert RequestFields.from_values(cn="10.0.0.1").sans == ("10.0.0.1",)


def test_cn_that_is_no_name_needs_sans() -> None:
    """A CN like 'Admin Console' cannot be the default SAN, so SANs must be given."""
    assert problems_of(cn="Admin Console") == [
        "no sans given and cn 'Admin Console' is not a DNS name or IP address; "
        "give at least one SAN"
    ]
    assert problems_of(cn="Admin Console", sans=["console.example.com"]) == []


def test_ec_defaults_to_p256() -> None:
    """key_type ec without a size means 256 bits."""
    fields = RequestFields.from_values(cn="a.example", key_type="ec")
    assert (fields.key_type, fields.key_size) == ("ec", 256)


def test_every_problem_is_reported_at_once() -> None:
    """One InvalidRequest lists every bad field, in field order."""
    problems = problems_of(
        cn="",
        sans=["bad_name"],
        country="DEU",
        state="x" * 129,
        locality="a\tb",
        org="o" * 65,
        ou="\u202eevil",
        email="not-an-address",
        key_type="dsa",
    )
    prefixes = [
        "cn ",
        "country ",
        "state ",
        "locality ",
        "org ",
        "ou ",
        "email ",
        "SAN ",
        "key_type ",
    ]
    assert [p.split(" ", 1)[0] + " " for p in problems] == prefixes


@pytest.mark.parametrize(
    ("values", "fragment"),
    [
        ({"cn": "   "}, "cn is empty"),
        ({"cn": "c" * 65, "sans": ["a.example"]}, "cn is 65 characters long; the limit is 64"),
        ({"cn": "a.example", "country": "D"}, "country 'D' is not two letters"),
        ({"cn": "a.example", "country": "D1"}, "country 'D1' is not two letters"),
        ({"cn": "a.example", "country": "ÄÖ"}, "country 'ÄÖ' is not two letters"),
        ({"cn": "a.example", "key_size": 1024}, "key_size 1024 is not supported for RSA"),
        ({"cn": "a.example", "key_size": 3072}, "key_size 3072 is not supported for RSA"),
        ({"cn": "a.example", "key_type": "ec", "key_size": 384}, "not supported for EC"),
        ({"cn": "a.example", "key_type": "dsa"}, "key_type 'dsa' is not supported"),
        ({"cn": "a.example", "sans": "a.example"}, "sans must be a list"),
        ({"cn": "a.example", "sans": [""]}, "sans has an empty entry"),
        ({"cn": "a.example", "sans": ["under_score.example"]}, "label 'under_score'"),
        ({"cn": "a.example", "sans": ["-a.example"]}, "label '-a'"),
        ({"cn": "a.example", "sans": ["a..example"]}, "empty label"),
        ({"cn": "a.example", "sans": ["a.example."]}, "empty label"),
        ({"cn": "a.example", "sans": ["*.com"]}, "wildcard directly above"),
        ({"cn": "a.example", "sans": ["www.*.example"]}, "wildcard other than a leading"),
        ({"cn": "a.example", "sans": ["w*.example.com"]}, "wildcard other than a leading"),
        ({"cn": "a.example", "sans": ["bücher..example"]}, "not a valid internationalised"),
        ({"cn": "a.example", "sans": ["bü cher.example"]}, "(IDNA)"),
        ({"cn": "a.example", "sans": ["256.1.1.1"]}, "all-numeric label"),
        ({"cn": "a.example", "sans": ["fe80::1%eth0"]}, "IP address with a zone"),
        ({"cn": "a.example", "sans": ["a" * 64 + ".example"]}, "longer than 63"),
        ({"cn": "a.example", "sans": [("a" * 60 + ".") * 4 + "example.com"]}, "longer than 253"),
        ({"cn": "a.example", "email": "a@b@example.com"}, "exactly one @"),
        ({"cn": "a.example", "email": "@example.com"}, "nothing before the @"),
        ({"cn": "a.example", "email": "ops@localhost"}, "not a DNS name with a dot"),
        ({"cn": "a.example", "email": "ops@exa mple.com"}, "contains a space"),
        ({"cn": "a.example", "email": "öps@example.com"}, "is not ASCII"),
        ({"cn": "a.example", "org": "Acme\x00"}, "org contains the control"),
        ({"cn": "a.example", "state": "Line\u2028Break"}, "U+2028"),
        ({"cn": "a.example\n"}, "cn contains the control or invisible character U+000A"),
    ],
)
def test_each_invalid_value_is_one_named_problem(values: dict[str, object], fragment: str) -> None:
    """Each bad value yields exactly one problem that says what is wrong."""
    problems = problems_of(**values)
    assert len(problems) == 1, problems
    assert fragment in problems[0]


@pytest.mark.parametrize(
    "san",
    [
        "*.example.com",
        "xn--bcher-kva.example",
        "bücher.example",
        "a-b.example",
        "1.example",
        "::1",
        "192.0.2.1",
        "localhost",
        "EXAMPLE.COM",
    ],
)
def test_valid_sans_are_accepted(san: str) -> None:
    """Wildcards, A-labels, Unicode names (converted), hyphens, digits, IPv4/IPv6 and single
    labels are fine SANs."""
    assert problems_of(cn="x.example", sans=[san]) == []


@pytest.mark.parametrize(
    ("field", "limit"), [("state", 128), ("locality", 128), ("org", 64), ("ou", 64), ("cn", 64)]
)
def test_length_limits_follow_rfc5280(field: str, limit: int) -> None:
    """A field at its RFC 5280 upper bound is accepted and one character more is not."""
    values: dict[str, object] = {"cn": "a.example", "sans": ["a.example"]}
    assert problems_of(**{**values, field: "x" * limit}) == []
    assert problems_of(**{**values, field: "x" * (limit + 1)}) == [
        f"{field} is {limit + 1} characters long; the limit is {limit}"
    ]


def test_cn_limit_counts_utf8_bytes() -> None:
    """A CN of 64 characters but more than 64 UTF-8 bytes is refused, as cryptography would."""
    assert problems_of(cn="é" * 32, sans=["a.example"]) == []
    assert problems_of(cn="é" * 33, sans=["a.example"]) == [
        "cn is 66 bytes long in UTF-8; the limit is 64"
    ]


def test_email_length_limit_is_255() -> None:
    """An e-mail address of 255 characters is accepted and one of 256 is not."""
    domain = "@" + "d" * 60 + ".example"
    assert problems_of(cn="a.example", email="l" * (255 - len(domain)) + domain) == []
    assert len(problems_of(cn="a.example", email="l" * (256 - len(domain)) + domain)) == 1


# -- from_mapping / to_mapping ------------------------------------------------------------------


def test_from_mapping_reads_a_request_table() -> None:
    """A request.toml table gives the same fields as the keyword constructor."""
    table = {**FULL, "sans": list(FULL["sans"]), "key_type": "ec", "key_size": 256}
    assert RequestFields.from_mapping(table) == RequestFields.from_values(
        **FULL,
        key_type="ec",
        key_size=256,
    )


def test_from_mapping_reports_unknown_keys_and_wrong_types_with_the_rest() -> None:
    """Unknown keys and wrongly typed values are listed along with the value problems."""
    with pytest.raises(InvalidRequest) as caught:
        RequestFields.from_mapping(
            {
                "cn": 7,
                "sans": ["ok.example", 3],
                "org": ["Acme"],
                "key_size": True,
                "key_type": 1,
                "country": "DEU",
                "common_name": "x",
            }
        )
    assert caught.value.problems == [
        "unknown keys 'common_name'; known keys are cn, sans, country, state, locality, org, "
        "ou, email, key_type, key_size",
        "cn must be a string, not int",
        "sans must be a list of strings",
        "org must be a string, not list",
        "key_type must be a string, not int",
        "key_size must be an integer, not bool",
        "country 'DEU' is not two letters; use the ISO 3166 code such as 'DE'",
    ]


def test_from_mapping_needs_cn() -> None:
    """A table without cn says so."""
    with pytest.raises(InvalidRequest, match="cn is missing"):
        RequestFields.from_mapping({"sans": ["a.example"]})


def test_to_mapping_round_trips_through_json() -> None:
    """to_mapping output survives JSON and reads back as equal fields."""
    fields = RequestFields.from_values(**FULL)
    assert RequestFields.from_mapping(json.loads(json.dumps(fields.to_mapping()))) == fields


def test_invalid_request_is_a_user_error() -> None:
    """The CLI shows InvalidRequest as a one-line user error."""
    with pytest.raises(UserError, match="cn is empty"):
        RequestFields.from_values(cn="")


# -- properties ----------------------------------------------------------------------------


optional_text = st.none() | st.text(max_size=140)


@NO_DB
@given(
    cn=st.text(max_size=80),
    sans=st.lists(st.text(max_size=30) | st.ip_addresses().map(str), max_size=4),
    country=optional_text,
    state=optional_text,
    locality=optional_text,
    org=optional_text,
    ou=optional_text,
    email=st.none() | st.text(max_size=40) | st.emails(),
    key_type=st.sampled_from(["rsa", "ec", "RSA"]) | st.text(max_size=4),
    key_size=st.none() | st.sampled_from([256, 2048, 4096]) | st.integers(),
)
def test_arbitrary_text_raises_only_invalid_request(**values: Any) -> None:
    """Any text in any field gives fields or an InvalidRequest, never another error."""
    try:
        fields = RequestFields.from_values(**values)
    except InvalidRequest as exc:
        assert exc.problems
        event("rejected")
        return
    event("accepted")
    # Whatever validation lets through must make a CSR that reads back the same.
    csr = build_csr(ec_key(), fields)
    assert fields_of(csr) == dataclasses.replace(fields, key_type="ec", key_size=256)


plain_text = (
    st.text(
        st.characters(blacklist_categories=("Cc", "Cf", "Cs", "Zl", "Zp")), min_size=1, max_size=64
    )
    .map(str.strip)
    .filter(bool)
)


@NO_DB
@given(
    cn=plain_text,
    sans=st.lists(domains(max_length=120) | st.ip_addresses().map(str), min_size=1, max_size=5),
    country=st.none() | st.from_regex(r"[A-Za-z]{2}", fullmatch=True),
    org=st.none() | plain_text,
    ou=st.none() | plain_text,
    locality=st.none() | plain_text,
    email=st.none() | st.emails().filter(lambda e: len(e) <= 255 and "." in e.split("@")[1]),
)
def test_valid_fields_round_trip_through_csr_and_json(**values: Any) -> None:
    """Fields that validate make a CSR whose fields read back equal, and survive JSON."""
    try:
        fields = RequestFields.from_values(key_type="ec", **values)
    except InvalidRequest:
        event("rejected")
        return  # e.g. an st.emails() local part with a space; covered by the test above
    event("accepted")
    assert fields_of(build_csr(ec_key(), fields)) == fields
    assert RequestFields.from_mapping(json.loads(json.dumps(fields.to_mapping()))) == fields


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=20),
    lambda inner: (
        st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=5), inner, max_size=3)
    ),
    max_leaves=6,
)


@NO_DB
@given(
    st.dictionaries(
        st.sampled_from(["cn", "sans", "country", "org", "email", "key_type", "key_size"])
        | st.text(max_size=8),
        json_values,
        max_size=6,
    )
)
def test_arbitrary_mappings_raise_only_invalid_request(table: dict[str, object]) -> None:
    """Any TOML/JSON-shaped table gives fields or an InvalidRequest, never another error."""
    try:
        RequestFields.from_mapping(table)
    except InvalidRequest as exc:
        assert exc.problems


# -- keys and CSRs -------------------------------------------------------------------------


def test_generate_key_makes_the_asked_kind() -> None:
    """RSA keys have e=65537 and the asked size; EC keys are on P-256."""
    key = rsa_key()
    assert (key.key_size, key.public_key().public_numbers().e) == (2048, 65537)
    assert isinstance(ec_key().curve, ec.SECP256R1)


@pytest.mark.parametrize(("key_type", "key_size"), [("rsa", 1024), ("ec", 384), ("dsa", 2048)])
def test_generate_key_refuses_other_kinds(key_type: str, key_size: int) -> None:
    """Sizes and types outside the policy are an InvalidRequest, not a weak key."""
    with pytest.raises(InvalidRequest, match="cannot generate"):
        generate_key(key_type, key_size)


def test_csr_has_subject_in_usual_order_and_sans() -> None:
    """The CSR subject runs C, ST, L, O, OU, CN, emailAddress and carries DNS and IP SANs."""
    csr = build_csr(ec_key(), RequestFields.from_values(**FULL))
    assert csr.is_signature_valid
    assert isinstance(csr.signature_hash_algorithm, hashes.SHA256)
    assert [a.oid for a in csr.subject] == [
        NameOID.COUNTRY_NAME,
        NameOID.STATE_OR_PROVINCE_NAME,
        NameOID.LOCALITY_NAME,
        NameOID.ORGANIZATION_NAME,
        NameOID.ORGANIZATIONAL_UNIT_NAME,
        NameOID.COMMON_NAME,
        NameOID.EMAIL_ADDRESS,
    ]
    san = csr.extensions.get_extension_for_class(x509.SubjectAlternativeName)
    assert not san.critical
    assert san.value.get_values_for_type(x509.DNSName) == ["www.example.com", "api.example.com"]
    assert san.value.get_values_for_type(x509.IPAddress) == [ipaddress.ip_address("192.0.2.10")]


@pytest.mark.parametrize("kind", ["rsa2048", "ec"])
def test_openssl_verifies_csr_and_shows_subject(kind: str, tmp_path: Path) -> None:
    """openssl req accepts the CSR's self-signature and prints the requested subject."""
    key: PrivateKey = rsa_key() if kind == "rsa2048" else ec_key()
    path = write_csr(tmp_path / "req.csr", build_csr(key, RequestFields.from_values(**FULL)))
    assert openssl_verifies(path)
    shown = openssl("req", "-noout", "-subject", "-in", path)
    assert shown.stdout.strip() == FULL_SUBJECT


def test_openssl_verifies_rsa4096_csr(tmp_path: Path) -> None:
    """A CSR with a freshly generated RSA 4096 key passes openssl req -verify."""
    fields = RequestFields.from_values(cn="big.example", key_size=4096)
    key = generate_key(fields.key_type, fields.key_size)
    path = write_csr(tmp_path / "req.csr", build_csr(key, fields))
    assert openssl_verifies(path)
    text = openssl("req", "-noout", "-text", "-in", path)
    assert "Public-Key: (4096 bit)" in text.stdout


def test_openssl_rejects_a_tampered_csr(tmp_path: Path) -> None:
    """The openssl check is real: a CSR whose signature is broken fails verification."""
    der = bytearray(
        build_csr(ec_key(), RequestFields.from_values(cn="a.example")).public_bytes(
            serialization.Encoding.DER
        )
    )
    der[-3] ^= 0x01  # inside the signature's r/s integers
    path = tmp_path / "bad.der"
    path.write_bytes(bytes(der))
    assert not openssl_verifies(path, "-inform", "DER")


# -- a real CA -----------------------------------------------------------------------------


def test_openssl_ca_copying_the_request_makes_no_differences(tmp_path: Path) -> None:
    """A certificate signed by openssl from the CSR, extensions copied, differs in nothing."""
    fields = RequestFields.from_values(**FULL)
    path = write_csr(tmp_path / "req.csr", build_csr(rsa_key(), fields))
    cert = openssl_ca_sign(tmp_path, path, "-copy_extensions", "copy")
    assert differences(fields, cert) == []


def test_openssl_ca_adding_a_san_is_a_difference(tmp_path: Path) -> None:
    """When the CA adds a SAN, differences names it."""
    fields = RequestFields.from_values(cn="www.example.com", org="Acme")
    path = write_csr(tmp_path / "req.csr", build_csr(ec_key(), fields))
    ext = tmp_path / "ext.cnf"
    ext.write_text("subjectAltName = DNS:www.example.com, DNS:example.com\n")
    cert = openssl_ca_sign(tmp_path, path, "-extfile", str(ext))
    assert differences(fields, cert) == ["The CA added the SAN 'example.com'."]


def test_openssl_ca_changing_the_subject_is_a_difference(tmp_path: Path) -> None:
    """When the CA rewrites the subject, differences names each changed attribute."""
    fields = RequestFields.from_values(cn="www.example.com", country="DE", org="Acme", ou="Ops")
    path = write_csr(tmp_path / "req.csr", build_csr(ec_key(), fields))
    cert = openssl_ca_sign(
        tmp_path, path, "-copy_extensions", "copy", "-subj", "/C=DE/O=Acme Ltd/CN=www.example.com"
    )
    assert differences(fields, cert) == [
        "The CA changed O from 'Acme' to 'Acme Ltd'.",
        "The CA removed OU 'Ops'.",
    ]


def test_differences_name_removed_sans_and_extra_attributes() -> None:
    """Removed SANs, added attributes and non-DNS SANs each get a sentence."""
    fields = RequestFields.from_values(cn="a.example", sans=["a.example", "b.example"])
    subject = x509.Name(
        [
            x509.NameAttribute(NameOID.COMMON_NAME, "a.example"),
            x509.NameAttribute(NameOID.SERIAL_NUMBER, "42"),
        ]
    )
    cert = self_signed(
        ec_key(),
        subject,
        [
            x509.DNSName("A.example"),
            x509.RFC822Name("ops@example.com"),
        ],
    )
    assert differences(fields, cert) == [
        "The CA added the subject attribute serialNumber=42.",
        "The CA removed the SAN 'b.example'.",
        "The CA added the SAN 'RFC822Name:ops@example.com'.",
    ]


# -- reading back --------------------------------------------------------------------------


def test_fields_of_reads_a_csr_back() -> None:
    """fields_of recovers the fields and the key's type and size from a CSR."""
    fields = RequestFields.from_values(**FULL)
    assert fields_of(build_csr(rsa_key(), fields)) == fields


def test_renewal_csr_has_the_certificates_subject_and_sans() -> None:
    """A CSR built from fields_of_certificate asks for the same subject and SANs again."""
    ca = trustme.CA()
    leaf = ca.issue_cert("www.example.com", "10.1.2.3", common_name="www.example.com")
    cert = x509.load_pem_x509_certificate(leaf.cert_chain_pems[0].bytes())
    fields = fields_of_certificate(cert, rsa_key())
    csr = build_csr(rsa_key(), fields)
    assert csr.subject == cert.subject
    sans = x509.SubjectAlternativeName
    assert (
        csr.extensions.get_extension_for_class(sans).value
        == cert.extensions.get_extension_for_class(sans).value
    )
    assert (fields.key_type, fields.key_size) == ("rsa", 2048)
    assert differences(fields, cert) == []


def test_certificate_without_cn_takes_the_first_san() -> None:
    """A SAN-only certificate renews with its first SAN as the CN."""
    cert = self_signed(
        ec_key(), x509.Name([]), [x509.DNSName("a.example"), x509.DNSName("b.example")]
    )
    fields = fields_of_certificate(cert, ec_key())
    assert (fields.cn, fields.sans) == ("a.example", ("a.example", "b.example"))


def test_certificate_without_sans_keeps_its_cn_as_san() -> None:
    """A legacy CN-only certificate renews with the CN as its only SAN."""
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "legacy.example")])
    fields = fields_of_certificate(self_signed(ec_key(), subject, None), ec_key())
    assert fields.sans == ("legacy.example",)


def test_reading_back_what_certdrop_cannot_ask_for_is_invalid() -> None:
    """Extra attributes, repeated OUs, other SAN types and other keys are all listed."""
    subject = x509.Name(
        [
            x509.NameAttribute(NameOID.DOMAIN_COMPONENT, "example"),
            x509.NameAttribute(NameOID.ORGANIZATIONAL_UNIT_NAME, "A"),
            x509.NameAttribute(NameOID.ORGANIZATIONAL_UNIT_NAME, "B"),
            x509.NameAttribute(NameOID.COMMON_NAME, "a.example"),
        ]
    )
    csr = (
        x509.CertificateSigningRequestBuilder()
        .subject_name(subject)
        .add_extension(
            x509.SubjectAlternativeName(
                [x509.DNSName("a.example"), x509.UniformResourceIdentifier("https://a.example/")]
            ),
            critical=False,
        )
        .sign(ed25519.Ed25519PrivateKey.generate(), None)
    )
    with pytest.raises(InvalidRequest) as caught:
        fields_of(csr)
    assert [p.split(" ")[:3] for p in caught.value.problems] == [
        ["the", "key", "type"],
        ["the", "subject", "attribute"],
        ["the", "subject", "has"],
        ["the", "SAN", "'UniformResourceIdentifier:https://a.example/'"],
    ]
