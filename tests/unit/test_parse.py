"""Tests for certdrop.pki.parse: every container a drop may hold, and every way it can fail."""

from __future__ import annotations

import base64
import functools
import subprocess
import time
from collections.abc import Iterable, Sequence

import pytest
import trustme
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa
from cryptography.hazmat.primitives.serialization import pkcs7, pkcs12
from hypothesis import example, given, settings
from hypothesis import strategies as st

from certdrop.errors import Rejection
from certdrop.pki import keys
from certdrop.pki.parse import Parsed, parse
from support.pkitools import Hierarchy, Issued, ec_key, hierarchy, name, rsa_key

RIGHT = b"correct horse 7f3a"
WRONG = [b"wrong-one-1", b"Tr0ub4dor&3", b"hunter2-extra"]
CODES = {
    "truncated",
    "unsupported_content",
    "unsupported_key",
    "encrypted_key_no_passphrase",
}
FUZZ = settings(max_examples=300, deadline=None, database=None)
DER = serialization.Encoding.DER
PEM = serialization.Encoding.PEM
PKCS8 = serialization.PrivateFormat.PKCS8
TRADITIONAL = serialization.PrivateFormat.TraditionalOpenSSL


@functools.cache
def rsa_chain() -> Hierarchy:
    """root -> intermediate -> RSA leaf."""
    return hierarchy("rsa.example.test", slot=0)


@functools.cache
def ec_chain() -> Hierarchy:
    """root -> intermediate -> P-256 leaf."""
    return hierarchy("ec.example.test", leaf_key=ec_key(1), slot=1)


def leaf(kind: str) -> Issued:
    return (rsa_chain() if kind == "rsa" else ec_chain()).leaf


@functools.cache
def csr() -> x509.CertificateSigningRequest:
    return (
        x509.CertificateSigningRequestBuilder()
        .subject_name(name("csr.example.test"))
        .sign(rsa_key(3), hashes.SHA256())
    )


def key_der(key: keys.PrivateKey | ed25519.Ed25519PrivateKey, fmt: str) -> bytes:
    private_format = PKCS8 if fmt == "pkcs8" else TRADITIONAL
    return key.private_bytes(DER, private_format, serialization.NoEncryption())


def same_key(a: object, b: keys.PrivateKey) -> bool:
    """Two private keys are the same when their public halves are."""
    assert isinstance(a, rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey)
    return keys.key_id(a.public_key()) == keys.key_id(b.public_key())


def rejected(data: bytes, passphrases: Sequence[bytes] = ()) -> Rejection:
    with pytest.raises(Rejection) as caught:
        parse(data, passphrases)
    return caught.value


def secrets_of(key: keys.PrivateKey, *blobs: bytes) -> list[str]:
    """Strings that would betray a key: its base64 lines, DER hex and private numbers."""
    found = [p.decode() for p in [RIGHT, *WRONG]]
    der = key_der(key, "pkcs8")
    found += [der[i : i + 12].hex() for i in range(0, len(der) - 12, 12)]
    if isinstance(key, rsa.RSAPrivateKey):
        numbers = key.private_numbers()
        found += [str(numbers.d), f"{numbers.d:x}", str(numbers.p), f"{numbers.p:x}"]
    else:
        found += [str(key.private_numbers().private_value)]
    for blob in (key.private_bytes(PEM, PKCS8, serialization.NoEncryption()), *blobs):
        if blob.startswith(b"-----"):
            body = blob.split(b"\n")
            found += [line.decode() for line in body if len(line) >= 16 and b"-----" not in line]
        else:
            found += [base64.b64encode(blob[i : i + 12]).decode() for i in range(0, len(blob), 12)]
    return found


def assert_discreet(err: Rejection, secrets: Iterable[str]) -> None:
    """The rejection's text names no passphrase and no piece of the key."""
    text = f"{err} {err.reason}"
    for secret in secrets:
        assert secret not in text, f"the rejection text leaks {secret!r}"


# --- PEM --------------------------------------------------------------------------------


@pytest.mark.parametrize("kind", ["rsa", "ec"])
def test_pem_certificate_and_key_are_both_found(kind: str) -> None:
    """A PEM certificate followed by its PEM key yields that certificate and that key."""
    issued = leaf(kind)
    parsed = parse(issued.pem + issued.key_pem("pkcs8"))
    assert parsed.certs == (issued.cert,)
    assert len(parsed.keys) == 1 and same_key(parsed.keys[0], issued.key)
    assert parsed.csrs == ()


def test_openssl_text_dump_before_the_block_is_skipped() -> None:
    """The output of `openssl x509 -text` (a text dump, then the block) reads as the cert."""
    issued = leaf("rsa")
    dumped = subprocess.run(
        ["openssl", "x509", "-text"], input=issued.pem, capture_output=True, timeout=30, check=True
    ).stdout
    assert dumped.startswith(b"Certificate:") and dumped.index(b"-----BEGIN") > 500
    parsed = parse(dumped + leaf("rsa").key_pem("pkcs1"))
    assert parsed.certs == (issued.cert,)
    assert same_key(parsed.keys[0], issued.key)


def test_crlf_line_endings_are_read() -> None:
    """A bundle saved with Windows line endings parses like the original."""
    h = rsa_chain()
    data = h.chain_pem + h.leaf.key_pem("pkcs1")
    parsed = parse(data.replace(b"\n", b"\r\n"))
    assert parsed.certs == (h.leaf.cert, h.intermediates[0].cert)
    assert same_key(parsed.keys[0], h.leaf.key)


def test_utf8_bom_is_skipped() -> None:
    """A UTF-8 byte order mark before the first block (Notepad's habit) is ignored."""
    issued = leaf("ec")
    parsed = parse(b"\xef\xbb\xbf" + issued.pem)
    assert parsed.certs == (issued.cert,)


def test_x509_certificate_label_is_read() -> None:
    """The old `X509 CERTIFICATE` label reads as a certificate."""
    issued = leaf("rsa")
    parsed = parse(issued.pem.replace(b"CERTIFICATE", b"X509 CERTIFICATE"))
    assert parsed.certs == (issued.cert,)


_NOISE = st.text(st.characters(codec="utf-8", exclude_characters="-\r"), max_size=30)


@settings(max_examples=40, deadline=None, database=None)
@given(
    order=st.permutations(range(5)),
    noise=st.lists(_NOISE, min_size=6, max_size=6),
    crlf=st.booleans(),
    bom=st.booleans(),
)
def test_blocks_in_any_order_with_noise_are_all_found(
    order: list[int], noise: list[str], crlf: bool, bom: bool
) -> None:
    """Certificates, a key and a CSR in any order, with text between them, are all found."""
    h = rsa_chain()
    blocks = [
        h.leaf.pem,
        h.intermediates[0].pem,
        h.root.pem,
        h.leaf.key_pem("pkcs8"),
        csr().public_bytes(PEM),
    ]
    data = noise[0].encode() + b"\n"
    for index, text in zip(order, noise[1:], strict=True):
        data += blocks[index] + text.encode() + b"\n"
    if crlf:
        data = data.replace(b"\n", b"\r\n")
    if bom:
        data = b"\xef\xbb\xbf" + data
    parsed = parse(data)
    certs = [h.leaf.cert, h.intermediates[0].cert, h.root.cert]
    assert parsed.certs == tuple(certs[i] for i in order if i < len(certs))
    assert len(parsed.keys) == 1 and same_key(parsed.keys[0], h.leaf.key)
    assert parsed.csrs == (csr(),)


@pytest.mark.parametrize(
    ("kind", "fmt", "label"),
    [
        ("rsa", "pkcs1", b"RSA PRIVATE KEY"),
        ("rsa", "pkcs8", b"PRIVATE KEY"),
        ("ec", "sec1", b"EC PRIVATE KEY"),
        ("ec", "pkcs8", b"PRIVATE KEY"),
    ],
)
def test_pem_private_key_forms_are_read(kind: str, fmt: str, label: bytes) -> None:
    """RSA keys as PKCS#1 or PKCS#8 and EC keys as SEC1 or PKCS#8 PEM all load."""
    issued = leaf(kind)
    data = issued.key_pem(fmt)
    assert data.startswith(b"-----BEGIN " + label + b"-----")
    parsed = parse(data)
    assert parsed.certs == () and len(parsed.keys) == 1
    assert same_key(parsed.keys[0], issued.key)


def test_ec_parameters_block_before_a_sec1_key_is_ignored() -> None:
    """`openssl ecparam -genkey` output (EC PARAMETERS, then the key) loads the key."""
    issued = leaf("ec")
    params = b"-----BEGIN EC PARAMETERS-----\nBggqhkjOPQMBBw==\n-----END EC PARAMETERS-----\n"
    parsed = parse(params + issued.key_pem("sec1"))
    assert same_key(parsed.keys[0], issued.key)


def test_trustme_bundle_is_read() -> None:
    """A trustme leaf's full PEM (key, certificate, chain) yields one key and two certs."""
    server = trustme.CA().create_child_ca().issue_cert("trustme.example.test")
    parsed = parse(server.private_key_and_cert_chain_pem.bytes())
    expected = [x509.load_pem_x509_certificate(b.bytes()) for b in server.cert_chain_pems]
    assert len(expected) == 2 and parsed.certs == tuple(expected)
    assert len(parsed.keys) == 1
    assert keys.cert_key_id(parsed.certs[0]) == keys.key_id(parsed.keys[0].public_key())


def test_pem_csr_is_read() -> None:
    """A PEM certificate request comes back as a CSR."""
    assert parse(csr().public_bytes(PEM)).csrs == (csr(),)


# --- DER --------------------------------------------------------------------------------


@pytest.mark.parametrize("kind", ["rsa", "ec"])
def test_der_certificate_is_read(kind: str) -> None:
    """A bare DER certificate yields that certificate."""
    issued = leaf(kind)
    assert parse(issued.der) == Parsed(certs=(issued.cert,))


@pytest.mark.parametrize(
    ("kind", "fmt"), [("rsa", "pkcs8"), ("ec", "pkcs8"), ("rsa", "pkcs1"), ("ec", "sec1")]
)
def test_der_private_key_forms_are_read(kind: str, fmt: str) -> None:
    """DER keys load as PKCS#8 (RSA, EC), PKCS#1 (RSA) and SEC1 (EC)."""
    issued = leaf(kind)
    parsed = parse(key_der(issued.key, fmt))
    assert parsed.certs == () and len(parsed.keys) == 1
    assert same_key(parsed.keys[0], issued.key)


def test_der_csr_is_read() -> None:
    """A DER certificate request comes back as a CSR."""
    assert parse(csr().public_bytes(DER)).csrs == (csr(),)


# --- PKCS#7 and PKCS#12 -----------------------------------------------------------------


@pytest.mark.parametrize("encoding", [PEM, DER], ids=["pem", "der"])
def test_pkcs7_bundle_yields_every_certificate(encoding: serialization.Encoding) -> None:
    """A PKCS#7 bundle, PEM or DER, yields all of its certificates."""
    h = rsa_chain()
    certs = [h.leaf.cert, h.intermediates[0].cert, h.root.cert]
    parsed = parse(pkcs7.serialize_certificates(certs, encoding))
    assert set(parsed.certs) == set(certs) and len(parsed.certs) == 3
    assert parsed.keys == ()


def p12(issued: Issued, cas: Sequence[Issued], password: bytes | None) -> bytes:
    encryption: serialization.KeySerializationEncryption = (
        serialization.BestAvailableEncryption(password)
        if password
        else serialization.NoEncryption()
    )
    return pkcs12.serialize_key_and_certificates(
        b"drop", issued.key, issued.cert, [c.cert for c in cas], encryption
    )


@pytest.mark.parametrize("kind", ["rsa", "ec"])
def test_pkcs12_without_password_is_read(kind: str) -> None:
    """An unencrypted PKCS#12 yields its key, certificate and CA certificates."""
    h = rsa_chain() if kind == "rsa" else ec_chain()
    parsed = parse(p12(h.leaf, h.intermediates, None))
    assert parsed.certs == (h.leaf.cert, h.intermediates[0].cert)
    assert len(parsed.keys) == 1 and same_key(parsed.keys[0], h.leaf.key)


@pytest.mark.parametrize("kind", ["rsa", "ec"])
def test_pkcs12_password_is_found_among_wrong_ones(kind: str) -> None:
    """A password-protected PKCS#12 opens with the right passphrase among wrong ones."""
    h = rsa_chain() if kind == "rsa" else ec_chain()
    parsed = parse(p12(h.leaf, h.intermediates, RIGHT), [*WRONG, RIGHT])
    assert parsed.certs == (h.leaf.cert, h.intermediates[0].cert)
    assert same_key(parsed.keys[0], h.leaf.key)


def test_pkcs12_with_unknown_password_is_rejected_discreetly() -> None:
    """A PKCS#12 none of the passphrases opens is encrypted_key_no_passphrase, quietly."""
    h = rsa_chain()
    data = p12(h.leaf, h.intermediates, RIGHT)
    err = rejected(data, WRONG)
    assert err.code == "encrypted_key_no_passphrase"
    assert_discreet(err, secrets_of(h.leaf.key, data))


# --- encrypted keys ---------------------------------------------------------------------


@pytest.mark.parametrize("kind", ["rsa", "ec"])
@pytest.mark.parametrize("encoding", [PEM, DER], ids=["pem", "der"])
def test_encrypted_pkcs8_opens_with_the_right_passphrase(
    kind: str, encoding: serialization.Encoding
) -> None:
    """An encrypted PKCS#8 key, PEM or DER, opens with the right passphrase among wrong ones."""
    issued = leaf(kind)
    data = issued.key.private_bytes(encoding, PKCS8, serialization.BestAvailableEncryption(RIGHT))
    parsed = parse(data, [*WRONG[:2], RIGHT, WRONG[2]])
    assert same_key(parsed.keys[0], issued.key)


@pytest.fixture(scope="module")
def traditional_rsa(tmp_path_factory: pytest.TempPathFactory) -> bytes:
    """An RSA key encrypted by `openssl rsa -aes256 -traditional` (Proc-Type: 4,ENCRYPTED)."""
    tmp = tmp_path_factory.mktemp("openssl")
    (tmp / "key.pem").write_bytes(leaf("rsa").key_pem("pkcs1"))
    (tmp / "pass").write_bytes(RIGHT + b"\n")
    data = subprocess.run(
        ["openssl", "rsa", "-in", str(tmp / "key.pem"), "-aes256", "-traditional",
         "-passout", f"file:{tmp / 'pass'}"],
        capture_output=True, timeout=30, check=True,
    ).stdout  # fmt: skip
    assert b"Proc-Type: 4,ENCRYPTED" in data and b"DEK-Info: AES-256-CBC" in data
    return data


def test_openssl_traditional_encrypted_rsa_key_opens(traditional_rsa: bytes) -> None:
    """An `openssl rsa -aes256` key (Proc-Type: 4,ENCRYPTED) opens with the right passphrase."""
    parsed = parse(traditional_rsa, [*WRONG, RIGHT])
    assert same_key(parsed.keys[0], leaf("rsa").key)


def test_traditional_encrypted_ec_key_opens() -> None:
    """A SEC1 EC key with Proc-Type: 4,ENCRYPTED opens with the right passphrase."""
    issued = leaf("ec")
    data = issued.key_pem("sec1", RIGHT)
    assert b"Proc-Type: 4,ENCRYPTED" in data
    parsed = parse(issued.pem + data, [WRONG[0], RIGHT])
    assert same_key(parsed.keys[0], issued.key)


def test_openssl_traditional_key_without_its_passphrase_is_rejected(
    traditional_rsa: bytes,
) -> None:
    """With only wrong passphrases the traditional key is encrypted_key_no_passphrase."""
    err = rejected(traditional_rsa, WRONG)
    assert err.code == "encrypted_key_no_passphrase"
    assert_discreet(err, secrets_of(leaf("rsa").key, traditional_rsa))


@pytest.mark.parametrize("kind", ["rsa", "ec"])
@pytest.mark.parametrize("encoding", [PEM, DER], ids=["pem", "der"])
@pytest.mark.parametrize("passphrases", [[], WRONG, [b""]], ids=["none", "wrong", "empty"])
def test_encrypted_key_without_its_passphrase_is_rejected_discreetly(
    kind: str, encoding: serialization.Encoding, passphrases: list[bytes]
) -> None:
    """An encrypted key no passphrase opens is encrypted_key_no_passphrase, naming no secret."""
    issued = leaf(kind)
    data = issued.key.private_bytes(encoding, PKCS8, serialization.BestAvailableEncryption(RIGHT))
    err = rejected(data, passphrases)
    assert err.code == "encrypted_key_no_passphrase"
    assert_discreet(err, secrets_of(issued.key, data))


def test_unencrypted_key_ignores_passphrases() -> None:
    """A plain key loads even when passphrases are configured."""
    issued = leaf("rsa")
    assert same_key(parse(issued.key_pem("pkcs1"), WRONG).keys[0], issued.key)


# --- truncation -------------------------------------------------------------------------


def block_interiors(data: bytes) -> list[tuple[int, int]]:
    """(first, last) cut positions strictly inside each PEM block of ``data``."""
    spans = []
    start = data.find(b"-----BEGIN ")
    while start != -1:
        body = data.index(b"\n", start) + 1
        end = data.index(b"-----", data.index(b"-----END ", body) + 9) + 5
        spans.append((body, end - 1))
        start = data.find(b"-----BEGIN ", end)
    return spans


@given(st.data())
@settings(max_examples=60, deadline=None, database=None)
def test_pem_cut_inside_any_block_is_truncated(data: st.DataObject) -> None:
    """A PEM file that stops anywhere inside a block (body or END line) is truncated."""
    h = rsa_chain()
    full = h.chain_pem + h.leaf.key_pem("pkcs8")
    first, last = data.draw(st.sampled_from(block_interiors(full)))
    cut = data.draw(st.integers(first, last))
    err = rejected(full[:cut], [RIGHT])
    assert err.code == "truncated"
    assert_discreet(err, secrets_of(h.leaf.key))


def test_truncated_block_before_a_complete_one_is_truncated() -> None:
    """A block cut short and then followed by a complete block still counts as truncated."""
    h = rsa_chain()
    cut = h.leaf.pem[: len(h.leaf.pem) // 2]
    assert rejected(cut + h.intermediates[0].pem).code == "truncated"


def test_block_with_mismatched_end_label_is_truncated() -> None:
    """A block whose END line names another label has no END: it is truncated."""
    pem = leaf("ec").pem.replace(b"END CERTIFICATE", b"END PRIVATE KEY")
    assert rejected(pem).code == "truncated"


@pytest.mark.timeout(20)
@pytest.mark.parametrize(
    "data",
    [
        b"-----BEGIN CERTIFICATE-----\n" * 37_000,
        b"-----BEGIN A-----\nx-" * 52_000,
        b"-----BEGIN CERTIFICATE-----\n" + b"A-" * 520_000,
    ],
    ids=["begin-lines", "begin-and-dashes", "one-long-body"],
)
def test_a_megabyte_of_begin_lines_is_rejected_quickly(data: bytes) -> None:
    """A 1 MiB drop (the intake limit) of BEGIN lines without END lines fails in well under 1 s."""
    started = time.monotonic()
    assert rejected(data).code == "truncated"
    assert time.monotonic() - started < 1


@functools.cache
def der_samples() -> dict[str, bytes]:
    h = rsa_chain()
    return {
        "certificate": h.leaf.der,
        "pkcs8 key": key_der(h.leaf.key, "pkcs8"),
        "pkcs1 key": key_der(h.leaf.key, "pkcs1"),
        "sec1 key": key_der(ec_chain().leaf.key, "sec1"),
        "pkcs7": pkcs7.serialize_certificates([h.leaf.cert, h.root.cert], DER),
        "pkcs12": p12(h.leaf, h.intermediates, None),
    }


@given(st.data())
@settings(max_examples=100, deadline=None, database=None)
def test_der_cut_short_is_truncated(data: st.DataObject) -> None:
    """DER of any kind that stops before its declared end is truncated."""
    kind = data.draw(st.sampled_from(sorted(der_samples())))
    full = der_samples()[kind]
    cut = data.draw(st.integers(1, len(full) - 1))
    assert rejected(full[:cut]).code == "truncated"


@pytest.mark.parametrize("cut", [1, 2, 3])
def test_der_cut_inside_its_header_is_truncated(cut: int) -> None:
    """DER cut inside its length header (even to one byte, "0") is truncated, not a crash."""
    assert rejected(leaf("rsa").der[:cut]).code == "truncated"


# --- what is not accepted ---------------------------------------------------------------


@pytest.mark.parametrize(
    "data",
    [
        b"",
        b"   \r\n\t\n",
        b"\xef\xbb\xbf",
        b"\xef\xbb\xbf\r\n",
        b"hello, this is not a certificate\n",
        b"\x00\x01\x02\x03garbage",
        b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR",
        b"-----BEGIN CERT",
        b"0\x03\x02\x01\x05",
    ],
    ids=["empty", "whitespace", "bom", "bom-newline", "text", "binary", "png", "partial-begin",
         "tiny-sequence"],
)  # fmt: skip
def test_garbage_and_empty_files_are_unsupported(data: bytes) -> None:
    """Empty files, text, foreign binaries and stray ASN.1 are unsupported_content."""
    assert rejected(data).code == "unsupported_content"


def test_der_public_key_is_unsupported() -> None:
    """A DER public key (valid ASN.1, no private key) is unsupported_content."""
    spki = (
        leaf("rsa")
        .key.public_key()
        .public_bytes(DER, serialization.PublicFormat.SubjectPublicKeyInfo)
    )
    assert rejected(spki).code == "unsupported_content"


@pytest.mark.parametrize(
    "labels",
    [["PUBLIC KEY"], ["X509 CRL", "PUBLIC KEY"], ["TRUSTED CERTIFICATE"], ["PGP MESSAGE"]],
)
def test_pem_with_only_unknown_labels_is_unsupported_and_named(labels: list[str]) -> None:
    """PEM holding only blocks of other kinds is unsupported_content naming what it found."""
    data = b"".join(
        b"-----BEGIN %s-----\nAAAA\n-----END %s-----\n" % (lb.encode(), lb.encode())
        for lb in labels
    )
    err = rejected(data)
    assert err.code == "unsupported_content"
    assert all(lb in err.reason for lb in labels)


def test_ec_parameters_alone_are_unsupported() -> None:
    """An EC PARAMETERS block without its key is unsupported_content."""
    data = b"-----BEGIN EC PARAMETERS-----\nBggqhkjOPQMBBw==\n-----END EC PARAMETERS-----\n"
    assert rejected(data).code == "unsupported_content"


@pytest.mark.parametrize(
    "label", [b"CERTIFICATE", b"PRIVATE KEY", b"PKCS7", b"CERTIFICATE REQUEST"]
)
def test_unreadable_block_is_unsupported_and_discreet(label: bytes) -> None:
    """A known label around damaged content is unsupported_content, without key bytes."""
    issued = leaf("rsa")
    body = issued.key_pem("pkcs8").split(b"\n")[1:-2]
    body[0] = body[0][:8] + b"AAAAAAAA" + body[0][16:]  # damage the ASN.1 header, not a number
    data = b"-----BEGIN %s-----\n%s\n-----END %s-----\n" % (label, b"\n".join(body), label)
    err = rejected(data)
    assert err.code == "unsupported_content"
    assert_discreet(err, secrets_of(issued.key))


@functools.cache
def ed25519_key() -> ed25519.Ed25519PrivateKey:
    return ed25519.Ed25519PrivateKey.generate()


@pytest.mark.parametrize("form", ["pem", "der", "pkcs12"])
def test_ed25519_key_is_unsupported_key(form: str) -> None:
    """An Ed25519 key, in PEM, DER or PKCS#12, is unsupported_key (not unreadable)."""
    key = ed25519_key()
    if form == "pem":
        data = key.private_bytes(PEM, PKCS8, serialization.NoEncryption())
    elif form == "der":
        data = key.private_bytes(DER, PKCS8, serialization.NoEncryption())
    else:
        data = pkcs12.serialize_key_and_certificates(
            b"ed", key, None, None, serialization.NoEncryption()
        )
    err = rejected(data)
    assert err.code == "unsupported_key"
    assert "RSA or EC" in err.reason


# --- fuzzing ----------------------------------------------------------------------------

_PREFIXES = [
    b"",
    b"0",
    b"0\x82",
    b"0\x82\x01\x00",
    b"0\x80",
    b"0\x84\xff\xff\xff\xff",
    b"0\x82\x01\x00\x02\x01\x03",
    b"\xef\xbb\xbf",
    b"-----BEGIN CERTIFICATE-----\n",
    b"-----BEGIN ENCRYPTED PRIVATE KEY-----\n",
    b"-----BEGIN RSA PRIVATE KEY-----\nProc-Type: 4,ENCRYPTED\n",
]


def check_only_rejects(data: bytes, secrets: Sequence[str] = ()) -> None:
    try:
        parsed = parse(data, [WRONG[0], RIGHT])
    except Rejection as err:
        assert err.code in CODES
        assert err.reason and "\n" not in err.reason
        assert_discreet(err, secrets)
    else:
        assert parsed, "parse returned nothing instead of rejecting"


@FUZZ
@given(st.sampled_from(_PREFIXES), st.binary(max_size=600))
@example(b"0", b"")
@example(b"-----BEGIN A-----\n", b"-----BEGIN A-----\n" * 50)
def test_arbitrary_bytes_only_ever_raise_rejection(prefix: bytes, tail: bytes) -> None:
    """Any bytes at all either parse into something or raise Rejection, nothing else."""
    check_only_rejects(prefix + tail)


@functools.cache
def fuzz_secrets() -> list[str]:
    return secrets_of(leaf("rsa").key) + secrets_of(leaf("ec").key)


@functools.cache
def splice_targets() -> list[bytes]:
    h = rsa_chain()
    return [
        h.chain_pem + h.leaf.key_pem("pkcs8", RIGHT) + csr().public_bytes(PEM),
        ec_chain().leaf.key_pem("sec1", RIGHT) + ec_chain().leaf.pem,
        pkcs7.serialize_certificates([h.leaf.cert, h.root.cert], PEM),
        *der_samples().values(),
    ]


@FUZZ
@given(st.data(), st.binary(min_size=1, max_size=40), st.integers(0, 40))
def test_bytes_spliced_into_valid_files_only_ever_raise_rejection(
    data: st.DataObject, junk: bytes, removed: int
) -> None:
    """Valid PEM/DER/PKCS#7/PKCS#12 with bytes spliced in parses or raises Rejection only."""
    target = data.draw(st.sampled_from(splice_targets()))
    at = data.draw(st.integers(0, len(target)))
    check_only_rejects(target[:at] + junk + target[at + removed :], fuzz_secrets())
