"""Size and count limits: absurd keys, too many certificates or SANs, deep request files."""

from __future__ import annotations

from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.serialization import pkcs7

from certdrop import config as configuration
from certdrop.errors import ConfigError, InvalidRequest, Rejection
from certdrop.intake.request_toml import fields_from_toml
from certdrop.limits import DEFAULT_LIMITS, Limits
from certdrop.pki import keys
from certdrop.pki.csr import RequestFields, differences
from certdrop.pki.parse import derives_keys, parse, summary
from support import costly, pkitools


def rejected(data: bytes, limits: Limits = DEFAULT_LIMITS) -> Rejection:
    with pytest.raises(Rejection) as caught:
        parse(data, (), limits)
    return caught.value


def key_pem(key: keys.PrivateKey) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.TraditionalOpenSSL,
        serialization.NoEncryption(),
    )


# -- keys -----------------------------------------------------------------------------------


def test_huge_key_with_huge_exponent_says_both_not_key_mismatch() -> None:
    """The issue's 16384-bit key with a 16384-bit exponent is key_too_large, naming both."""
    key = costly.absurd_rsa(16384, (1 << 16383) + 1)
    drop = costly.certificate_for(key).public_bytes(serialization.Encoding.PEM) + key_pem(key)
    found = rejected(drop)
    assert found.code == "key_too_large"
    assert "16384 bits; the limit is limits.max_rsa_bits = 8192" in found.reason
    assert "public exponent has 16384 bits" in found.reason
    assert "limits.max_rsa_exponent_bits = 64" in found.reason


def test_large_exponent_alone_is_named() -> None:
    """A normal-sized key whose exponent exceeds the limit is refused for the exponent."""
    key = costly.absurd_rsa(2048, (1 << 100) + 1)
    found = rejected(key_pem(key))
    assert found.code == "key_too_large"
    assert "the private key: the RSA key's public exponent has 101 bits" in found.reason
    assert "max_rsa_bits" not in found.reason


def test_certificate_alone_with_an_absurd_key_is_refused() -> None:
    """The public key of a certificate is checked too (verifying with it costs the time)."""
    key = costly.absurd_rsa(16384, 65537)
    found = rejected(costly.certificate_for(key).public_bytes(serialization.Encoding.DER))
    assert found.code == "key_too_large"
    assert found.reason.startswith("the certificate's key: the RSA key has 16384 bits")


def test_even_exponent_is_refused() -> None:
    """An even public exponent (possible in a DER key) is named, not a mismatch."""
    found = rejected(key_pem(costly.absurd_rsa(2048, 65536)))
    assert found.code == "key_too_large"
    assert "public exponent 65536 is not odd and at least 3" in found.reason


def test_raised_rsa_limit_admits_a_16384_bit_key() -> None:
    """max_rsa_bits is a setting: at 16384 the size passes (the exponent still counts)."""
    key = costly.absurd_rsa(16384, 65537)
    assert keys.size_problem(key, Limits(max_rsa_bits=16384)) is None
    assert keys.size_problem(key, Limits()) is not None


def test_usual_keys_pass() -> None:
    """RSA 2048/4096 with e=65537 and EC keys have no size problem."""
    assert keys.size_problem(pkitools.rsa_key(0), Limits()) is None
    assert keys.size_problem(pkitools.rsa_key(1, 4096), Limits()) is None
    assert keys.size_problem(pkitools.ec_key(0), Limits()) is None


# -- counts ---------------------------------------------------------------------------------


def _cas(count: int) -> list[x509.Certificate]:
    root = pkitools.issue("Count Root", pkitools.ec_key(50), ca=True)
    key = pkitools.ec_key(51)
    return [pkitools.issue(f"Count CA {i}", key, root, ca=True).cert for i in range(count)]


def test_too_many_certificates_in_pem_and_pkcs7() -> None:
    """More certificates than max_certificates is refused with the count and the limit."""
    certs = _cas(11)
    limits = Limits(max_certificates=10)
    pem = b"".join(c.public_bytes(serialization.Encoding.PEM) for c in certs)
    p7 = pkcs7.serialize_certificates(certs, serialization.Encoding.DER)
    for data in (pem, p7):
        found = rejected(data, limits)
        assert found.code == "too_many_certificates"
        assert "holds 11 certificates; the limit is limits.max_certificates = 10" in found.reason
    assert len(parse(pem, (), Limits(max_certificates=11)).certs) == 11


def test_too_many_sans_in_a_certificate_and_a_csr() -> None:
    """A certificate or CSR naming more SANs than max_sans is refused as too_many_sans."""
    sans = [f"h{i}.example.test" for i in range(21)]
    limits = Limits(max_sans=20)
    cert = pkitools.issue("many.example.test", pkitools.rsa_key(0), sans=sans)
    csr = (
        x509.CertificateSigningRequestBuilder()
        .subject_name(pkitools.name("many.example.test"))
        .add_extension(x509.SubjectAlternativeName([x509.DNSName(s) for s in sans]), False)
        .sign(pkitools.rsa_key(0), hashes.SHA256())
    )
    for data, what in ((cert.pem, "certificate"), (csr.public_bytes(serialization.Encoding.PEM), "certificate request")):
        found = rejected(data, limits)
        assert found.code == "too_many_sans"
        assert f"a {what} in the file names 21 subject alternative names" in found.reason
    assert parse(cert.pem, (), Limits(max_sans=21)).certs


# -- requests -------------------------------------------------------------------------------


def test_request_with_too_many_sans_is_one_problem() -> None:
    """100,000 SANs are one problem (not 100,000), checked before any name."""
    sans = [f"h{i}.example.com" for i in range(100_000)]
    with pytest.raises(InvalidRequest) as caught:
        RequestFields.from_values(cn="x.example.com", sans=sans)
    assert caught.value.problems == [
        "sans has 100000 entries; the limit is limits.max_sans = 5000. "
        "Split the names over several requests"
    ]


def test_many_sans_dedupe_in_order() -> None:
    """Duplicates (after normalising) are dropped, first occurrence kept, order kept."""
    sans = [f"H{i % 500}.Example.com" for i in range(1000)]
    fields = RequestFields.from_values(cn="x.example.com", sans=sans)
    assert fields.sans == tuple(f"h{i}.example.com" for i in range(500))


def test_many_bad_sans_are_summarised() -> None:
    """A thousand bad SANs give the first ten problems and a count of the rest."""
    sans = [f"bad_{i}!" for i in range(1000)]
    with pytest.raises(InvalidRequest) as caught:
        RequestFields.from_values(cn="x.example.com", sans=sans)
    assert len(caught.value.problems) == 11
    assert caught.value.problems[-1] == "and 990 more problems with sans"


def test_differences_with_many_sans_still_name_each_change() -> None:
    """The CA's added and removed SANs are found with set lookups, same sentences."""
    asked = RequestFields.from_values(cn="a.test", sans=[f"n{i}.a.test" for i in range(300)])
    got = pkitools.issue("a.test", pkitools.rsa_key(0), sans=[f"n{i}.a.test" for i in range(1, 301)])
    found = [s for s in differences(asked, got.cert) if "SAN" in s]
    assert found == ["The CA removed the SAN 'n0.a.test'.", "The CA added the SAN 'n300.a.test'."]


@pytest.mark.parametrize("opening", ["[", "{a="])
def test_deeply_nested_request_toml_is_invalid_request(opening: str) -> None:
    """Nesting that made tomllib raise RecursionError is an InvalidRequest with a reason."""
    closing = "]" if opening == "[" else "}"
    text = f"cn = 'x.example.com'\nsans = {opening * 5000}1{closing * 5000}\n"
    with pytest.raises(InvalidRequest) as caught:
        fields_from_toml(text.encode())
    assert "nests arrays or tables more than 16 deep" in caught.value.problems[0]


def test_a_normal_request_toml_still_reads() -> None:
    """The bounds leave ordinary files alone."""
    fields = fields_from_toml(b"cn = 'web.example.com'\nsans = ['web.example.com', 'a.example.com']\n")
    assert fields.sans == ("web.example.com", "a.example.com")


# -- settings -------------------------------------------------------------------------------


def test_limits_table_in_the_config(tmp_path: Path) -> None:
    """[limits] is read into Config.limits; unset keys keep their defaults."""
    path = tmp_path / "certdrop.toml"
    path.write_text("[limits]\nmax_kdf_iterations = 2000000\nmax_kdf_total_iterations = 8000000\n")
    loaded = configuration.load(path, tmp_path)
    assert loaded.limits.max_kdf_iterations == 2_000_000
    assert loaded.limits.max_sans == DEFAULT_LIMITS.max_sans
    assert configuration.load(None, tmp_path).limits == DEFAULT_LIMITS


def test_bad_limits_are_all_reported(tmp_path: Path) -> None:
    """Unknown keys, non-integers, booleans, zero and a total below each are problems."""
    path = tmp_path / "certdrop.toml"
    path.write_text(
        "[limits]\nmax_sanz = 3\nmax_sans = 'many'\nmax_certificates = true\n"
        "max_rsa_bits = 0\nmax_kdf_total_iterations = 10\n"
    )
    with pytest.raises(ConfigError) as caught:
        configuration.load(path, tmp_path)
    text = str(caught.value)
    for expected in (
        "limits.max_sanz is not a known setting",
        "limits.max_sans must be a whole number of at least 1, not 'many'",
        "limits.max_certificates must be a whole number of at least 1, not True",
        "limits.max_rsa_bits must be a whole number of at least 1, not 0",
        "limits.max_kdf_total_iterations must be at least limits.max_kdf_iterations",
    ):
        assert expected in text


# -- which drops go to the child ------------------------------------------------------------


def test_only_drops_that_may_derive_a_key_go_to_the_child() -> None:
    """PKCS#12 and encrypted keys (PEM or DER) may run a derivation; certificates, plain
    keys and short junk do not, and are parsed in process."""
    issued = pkitools.issue("plain.example.test", pkitools.rsa_key(0))
    assert derives_keys(costly.pkcs12_file(b""))
    assert derives_keys(costly.encrypted_pkcs8())
    assert derives_keys(costly.to_pem(costly.encrypted_pkcs8(), "ENCRYPTED PRIVATE KEY"))
    assert derives_keys(issued.key_pem(password=b"pw"))
    assert not derives_keys(issued.pem + issued.key_pem())
    assert not derives_keys(issued.der)
    assert not derives_keys(issued.key_der())
    assert not derives_keys(b"\x30\x03")


def test_a_summary_names_what_a_drop_is_without_its_secrets() -> None:
    """The poison-drop reason says what was seen: kind, blocks, size; no key bytes."""
    issued = pkitools.issue("seen.example.test", pkitools.rsa_key(0))
    pem = issued.pem + issued.key_pem()
    assert summary(pem) == f"PEM: 2 blocks (CERTIFICATE, PRIVATE KEY), {len(pem)} bytes"
    p12 = costly.pkcs12_file(b"")
    assert summary(p12) == f"PKCS#12, {len(p12)} bytes"
    assert summary(b"hello") == "not PEM or DER, 5 bytes"
