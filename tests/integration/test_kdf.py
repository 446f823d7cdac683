"""Key-derivation costs are read from the structure and refused before any passphrase try.

Real files come from openssl, cryptography and keytool; the costly ones are those files
with their parameters patched (tests/support/costly.py), so making them costs nothing and
opening them would cost minutes or gigabytes: each refusal runs under a CPU limit.
"""

from __future__ import annotations

import shutil
import subprocess
import warnings
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.serialization import pkcs12

from certdrop.errors import Rejection
from certdrop.limits import DEFAULT_LIMITS, Limits
from certdrop.pki import kdf
from certdrop.pki.parse import Parsed, parse
from support import costly, pkitools
from support.openssl_ca import must, openssl


def refusal(data: bytes, passphrases: tuple[bytes, ...] = (), limits: Limits = DEFAULT_LIMITS) -> tuple[str, str]:
    """(code, reason) of parsing ``data`` in a CPU-bounded child; ("", "") when accepted."""

    def run() -> tuple[str, str]:
        try:
            parse(data, passphrases, limits)
        except Rejection as rejection:
            return rejection.code, rejection.reason
        return "", ""

    return costly.cpu_bounded(run)


# -- what real tools write is admitted ------------------------------------------------------


@pytest.fixture(scope="module")
def openssl_files(tmp_path_factory: pytest.TempPathFactory) -> dict[str, bytes]:
    """Files as openssl 3 writes them by default (and with -legacy, -v1, -scrypt)."""
    folder = tmp_path_factory.mktemp("openssl")
    key, cert = folder / "k.pem", folder / "c.pem"
    must(openssl("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", key, "-out", cert,
                 "-subj", "/CN=tool.example.test", "-days", "2"))
    made = {
        "pkcs12": ["pkcs12", "-export", "-in", cert, "-inkey", key, "-passout", "pass:pw"],
        "pkcs12-legacy": ["pkcs12", "-export", "-legacy", "-in", cert, "-inkey", key,
                          "-passout", "pass:pw"],
        "pkcs8-v2": ["pkcs8", "-topk8", "-v2", "aes-256-cbc", "-in", key, "-passout", "pass:pw"],
        "pkcs8-scrypt": ["pkcs8", "-topk8", "-scrypt", "-in", key, "-passout", "pass:pw"],
        "pkcs8-v1": ["pkcs8", "-topk8", "-v1", "PBE-SHA1-3DES", "-in", key, "-passout", "pass:pw"],
    }
    files = {}
    for name, args in made.items():
        out = folder / name
        result = openssl(*args, "-out", out)
        if name == "pkcs12-legacy" and result.returncode != 0:
            continue  # no legacy provider on this build
        must(result)
        files[name] = out.read_bytes()
    files["traditional"] = must(
        openssl("rsa", "-in", key, "-aes256", "-traditional", "-passout", "pass:pw")
    ).stdout.encode()
    return files


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("pkcs12", [2048, 2048, 2048]),
        ("pkcs12-legacy", [2048, 2048, 2048]),
        ("pkcs8-v2", [2048]),
        ("pkcs8-v1", [2048]),
    ],
)
def test_openssl_defaults_are_read_and_opened(
    openssl_files: dict[str, bytes], name: str, expected: list[int]
) -> None:
    """openssl's defaults (2048 iterations everywhere) are read exactly and then open."""
    if name not in openssl_files:
        pytest.skip("this openssl has no legacy provider")
    data = openssl_files[name]
    der = data if name.startswith("pkcs12") else costly.pem_body(data)
    costs = kdf.pkcs12_costs(der) if name.startswith("pkcs12") else kdf.pkcs8_costs(der)
    assert sorted(c.iterations for c in costs) == expected
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # cryptography on legacy BER-ish PKCS#12
        parsed = parse(data, [b"pw"])
    assert parsed.keys


def test_openssl_scrypt_default_is_read_and_opened(openssl_files: dict[str, bytes]) -> None:
    """`openssl pkcs8 -scrypt` writes N=16384, r=8, p=1 (16 MiB): within the limits."""
    (cost,) = kdf.pkcs8_costs(costly.pem_body(openssl_files["pkcs8-scrypt"]))
    assert (cost.kind, cost.n, cost.r, cost.p) == ("scrypt", 16384, 8, 1)
    assert cost.scrypt_memory == 16 * 1024 * 1024
    assert parse(openssl_files["pkcs8-scrypt"], [b"pw"]).keys


def test_traditional_pem_encryption_still_opens(openssl_files: dict[str, bytes]) -> None:
    """Proc-Type: 4,ENCRYPTED keys (one MD5 round, a fixed cost) open as before."""
    assert b"Proc-Type: 4,ENCRYPTED" in openssl_files["traditional"]
    assert parse(openssl_files["traditional"], [b"pw"]).keys


def test_pkcs8_with_a_pkcs12_pbe_algorithm_is_known_as_encrypted(
    openssl_files: dict[str, bytes],
) -> None:
    """A DER key under pbeWithSHAAnd3-KeyTripleDES-CBC (openssl -v1) is tried with the
    passphrases; it used to be taken for an unencrypted key and refused."""
    der = costly.pem_body(openssl_files["pkcs8-v1"])
    assert kdf.encrypted_pkcs8_algorithm(der) == "1.2.840.113549.1.12.1.3"
    assert parse(der, [b"pw"]).keys


def test_cryptography_defaults_are_admitted() -> None:
    """BestAvailableEncryption (PKCS#8: 2048 iterations; PKCS#12: 20000 and a 2048 MAC)
    and the PKCS#12 builder at 50000 rounds are all within the limits and open."""
    issued = pkitools.issue("c.example.test", pkitools.rsa_key(3))
    best = serialization.BestAvailableEncryption(b"pw")
    pkcs8 = issued.key.private_bytes(
        serialization.Encoding.DER, serialization.PrivateFormat.PKCS8, best
    )
    assert [c.iterations for c in kdf.pkcs8_costs(pkcs8)] == [2048]
    default = pkcs12.serialize_key_and_certificates(b"n", issued.key, issued.cert, None, best)
    built = pkcs12.serialize_key_and_certificates(
        b"n", issued.key, issued.cert, None,
        serialization.PrivateFormat.PKCS12.encryption_builder().kdf_rounds(50000).build(b"pw"),
    )
    assert sorted(c.iterations for c in kdf.pkcs12_costs(default)) == [2048, 20000, 20000]
    assert sorted(c.iterations for c in kdf.pkcs12_costs(built)) == [2048, 50000, 50000]
    for data in (pkcs8, default, built):
        assert parse(data, [b"pw"]).keys


@pytest.mark.parametrize("legacy", [False, True])
def test_java_keytool_pkcs12_is_admitted(tmp_path: Path, legacy: bool) -> None:
    """keytool writes 10000 iterations (JDK 8u301+), 50000 and a 100000-iteration MAC in
    its legacy mode: the largest real defaults known, still within the limits."""
    keytool = shutil.which("keytool")
    if keytool is None:
        pytest.skip("keytool (a JDK) is not installed")
    store = tmp_path / "ks.p12"
    subprocess.run(
        [keytool, *(["-J-Dkeystore.pkcs12.legacy"] if legacy else []), "-genkeypair",
         "-alias", "a", "-keyalg", "RSA", "-keysize", "2048", "-dname", "CN=java.example.test",
         "-storetype", "PKCS12", "-keystore", store, "-storepass", "changeit",
         "-keypass", "changeit", "-validity", "2"],
        check=True, capture_output=True, timeout=120,
    )
    data = store.read_bytes()
    expected = [50000, 50000, 100000] if legacy else [10000, 10000, 10000]
    assert sorted(c.iterations for c in kdf.pkcs12_costs(data)) == expected
    code, _ = refusal(data, (b"changeit",))
    assert code != "kdf_too_costly"


def test_ber_pkcs12_reads_the_same_costs_and_opens() -> None:
    """Indefinite lengths (as NSS writes) read the same parameters; cryptography opens it."""
    p12 = costly.pkcs12_file(b"pw")
    ber = costly.parse(p12).encode(indefinite=True)
    assert ber != p12
    assert kdf.pkcs12_costs(ber) == kdf.pkcs12_costs(p12)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # cryptography: "falling back to BER"
        assert parse(ber, [b"pw"]).keys


# -- what costs too much is refused before any derivation -----------------------------------


def test_pkcs12_mac_of_a_hundred_million_iterations_is_refused() -> None:
    """The issue's 3 KB file (22 s before) is refused naming the MAC and the limit."""
    data = costly.with_mac_iterations(costly.pkcs12_file(b""), 10**8)
    code, reason = refusal(data, (b"a", b"b"))
    assert code == "kdf_too_costly"
    assert "PKCS#12 MAC uses 100000000 iterations" in reason
    assert "limits.max_kdf_iterations = 1000000" in reason


def test_pkcs12_mac_iterations_default_to_one_when_absent() -> None:
    """MacData without iterations means 1 (RFC 7292), as macOS writes it."""
    root = costly.parse(costly.pkcs12_file(b"pw"))
    del root[2].children[2]
    (mac, *_) = kdf.pkcs12_costs(root.encode())
    assert (mac.where, mac.iterations) == ("the PKCS#12 MAC", 1)


def test_pkcs12_shrouded_key_bag_iterations_are_refused() -> None:
    """A cheap MAC does not hide a costly key bag."""
    data = costly.with_bag_iterations(costly.pkcs12_file(b"pw"), 10**8)
    code, reason = refusal(data, (b"pw",))
    assert code == "kdf_too_costly"
    assert "shrouded key bag 1" in reason and "100000000 iterations" in reason


def test_pkcs12_pbmac1_iterations_are_read_from_its_pbkdf2() -> None:
    """RFC 9579 PBMAC1 carries its cost in PBKDF2-params, not in MacData.iterations."""
    root = costly.parse(costly.pkcs12_file(b"pw"))
    pbkdf2 = costly.Tlv(0x30, children=[
        costly.Tlv(0x06, value=bytes.fromhex("2a864886f70d01050c")),
        costly.Tlv(0x30, children=[costly.Tlv(0x04, value=b"s" * 16), costly.integer(10**9)]),
    ])
    hmac = costly.Tlv(0x30, children=[costly.Tlv(0x06, value=bytes.fromhex("2a864886f70d0209"))])
    params = costly.Tlv(0x30, children=[pbkdf2, hmac])
    root[2][0].children[0] = costly.Tlv(0x30, children=[
        costly.Tlv(0x06, value=bytes.fromhex("2a864886f70d01050e")), params
    ])
    code, reason = refusal(root.encode())
    assert code == "kdf_too_costly"
    assert "PBMAC1" in reason and "1000000000 iterations" in reason


def test_all_derivations_of_a_file_count_together() -> None:
    """Each derivation within the limit, their sum over it: refused by the total."""
    data = costly.pkcs12_file(b"pw")  # three derivations of 2048
    limits = Limits(max_kdf_iterations=2048, max_kdf_total_iterations=4096)
    code, reason = refusal(data, (b"pw",), limits)
    assert code == "kdf_too_costly"
    assert "3 key derivations take 6144 iterations" in reason
    assert "limits.max_kdf_total_iterations = 4096" in reason


@pytest.mark.parametrize("pem", [False, True])
def test_pkcs8_pbkdf2_iterations_are_refused(pem: bool) -> None:
    """An encrypted PKCS#8 key with 10^8 PBKDF2 rounds, DER or PEM, is refused untried."""
    data = costly.with_pbkdf2_iterations(costly.encrypted_pkcs8(), 10**8)
    if pem:
        data = costly.to_pem(data, "ENCRYPTED PRIVATE KEY")
    code, reason = refusal(data, (b"secret", b"other"))
    assert code == "kdf_too_costly"
    assert "the encrypted private key" in reason and "(PBKDF2) uses 100000000" in reason


def test_scrypt_memory_is_refused() -> None:
    """scrypt N=2^24 (16 GiB; the daemon was OOM-killed) is refused by its memory."""
    data = costly.with_scrypt(costly.encrypted_pkcs8(), 2**24, 8, 1)
    code, reason = refusal(costly.to_pem(data, "ENCRYPTED PRIVATE KEY"), (b"secret",))
    assert code == "kdf_too_costly"
    assert "N=16777216, r=8, p=1" in reason and "16384 MiB" in reason
    assert "limits.max_scrypt_memory_mib = 64" in reason


def test_scrypt_parallelism_is_refused_by_its_work() -> None:
    """scrypt p=4000 (minutes a passphrase, with little memory) is refused by its work."""
    data = costly.with_scrypt(costly.encrypted_pkcs8(), 2**14, 8, 4000)
    code, reason = refusal(data, (b"secret",))
    assert code == "kdf_too_costly"
    assert "N*r*p = 524288000" in reason and "limits.max_scrypt_work = 1048576" in reason


def test_raised_limits_admit_what_they_name() -> None:
    """The limits are settings: raising one admits a file the default refuses."""
    issued = pkitools.issue("raised.example.test", pkitools.rsa_key(5))
    rounds = serialization.PrivateFormat.PKCS12.encryption_builder().kdf_rounds(1_500_000)
    data = pkcs12.serialize_key_and_certificates(
        b"n", issued.key, issued.cert, None, rounds.build(b"secret")
    )
    assert refusal(data, (b"secret",))[0] == "kdf_too_costly"
    raised = Limits(max_kdf_iterations=2_000_000)
    assert refusal(data, (b"secret",), raised) == ("", "")


def test_unknown_key_derivation_is_refused_as_unreadable() -> None:
    """A PBES2 KDF certdrop cannot bound (an unknown OID) is not handed to OpenSSL."""
    root = costly.parse(costly.encrypted_pkcs8())
    root[0][1][0].children[0] = costly.Tlv(0x06, value=bytes.fromhex("2b0601040182370101"))
    code, reason = refusal(root.encode(), (b"secret",))
    assert code == "unsupported_content"
    assert "cannot be read" in reason and "does not open" in reason


def test_truncated_container_structure_is_unreadable_not_a_crash() -> None:
    """Cut-down inner structures end in unsupported_content (or truncated), nothing else."""
    p12 = costly.pkcs12_file(b"pw")
    root = costly.parse(p12)
    inner = costly.authenticated_safe(root)
    inner.children = []  # an AuthenticatedSafe with no contents: fine, nothing costs
    assert kdf.pkcs12_costs(root.encode())[0].where == "the PKCS#12 MAC"
    root[1][1][0].opened = False
    root[1][1][0].value = b"\x30\x05\x02"
    code, _ = refusal(root.encode())
    assert code == "unsupported_content"


def test_secrets_never_appear_in_reasons() -> None:
    """A refusal names parameters and limits, never a passphrase."""
    data = costly.with_mac_iterations(costly.pkcs12_file(b"hunter2"), 10**8)
    _, reason = refusal(data, (b"hunter2",))
    assert "hunter2" not in reason


def test_the_fix_hint_names_the_tool_defaults() -> None:
    """The reason says how to make an acceptable file."""
    data = costly.with_mac_iterations(costly.pkcs12_file(b""), 10**7)
    _, reason = refusal(data)
    assert "openssl uses 2048 iterations" in reason


def test_parsed_result_type_unchanged_for_plain_files() -> None:
    """An unencrypted PEM drop parses as before (no KDF check on the way)."""
    issued = pkitools.issue("plain.example.test", pkitools.rsa_key(4))
    parsed = parse(issued.pem + issued.key_pem())
    assert isinstance(parsed, Parsed) and parsed.certs and parsed.keys
