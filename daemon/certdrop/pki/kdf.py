"""What opening an encrypted container would cost, read from its structure. Pure.

Every passphrase certdrop tries runs the container's key derivations: the PKCS#12 MAC,
the PBE of each encrypted content and shrouded key bag, PBKDF2 or scrypt of an encrypted
PKCS#8 key. Their parameters sit in the file, so an uploader chooses the cost (10^8
iterations, scrypt N=2^24). :func:`pkcs12_costs` and :func:`pkcs8_costs` read those
parameters without deriving anything, and :func:`check` refuses a file whose parameters
exceed the :class:`~certdrop.limits.Limits` with ``kdf_too_costly`` before any
passphrase is tried.

A shrouded key bag inside an *encrypted* content is only visible after that content is
decrypted, so its parameters cannot be read here; the child process that opens
containers (its CPU-time, memory and wall-clock limits) bounds that case.

Traditional PEM encryption (``Proc-Type: 4,ENCRYPTED``) derives with one MD5 round
(EVP_BytesToKey): a fixed cost, nothing to check.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from certdrop.errors import Rejection
from certdrop.limits import MIB, Limits
from certdrop.pki import der
from certdrop.pki.der import Malformed, Node

_PKCS5 = "1.2.840.113549.1.5."
PBES2 = _PKCS5 + "13"
PBKDF2 = _PKCS5 + "12"
PBMAC1 = _PKCS5 + "14"
SCRYPT = "1.3.6.1.4.1.11591.4.11"
# PBES1 (RFC 8018 A.3): pbeWithMD2/MD5/SHA1 And DES/RC2-CBC.
PBES1 = frozenset(_PKCS5 + n for n in ("1", "3", "4", "6", "10", "11"))
# PKCS#12 PBE (RFC 7292 appendix C): pbeWithSHAAnd128BitRC4 ... pbeWithSHAAnd40BitRC2-CBC.
PKCS12_PBE = frozenset(f"1.2.840.113549.1.12.1.{n}" for n in range(1, 7))
ENCRYPTION_OIDS = PBES1 | PKCS12_PBE | {PBES2}

DATA = "1.2.840.113549.1.7.1"
ENCRYPTED_DATA = "1.2.840.113549.1.7.6"
_BAG = "1.2.840.113549.1.12.10.1."
SHROUDED_KEY_BAG = _BAG + "2"
SAFE_CONTENTS_BAG = _BAG + "6"


@dataclass(frozen=True)
class Cost:
    """One key derivation a passphrase try would run. ``where`` names it for a person."""

    where: str
    kind: str  # "iterations" (PBKDF2, PKCS#12 KDF, PBES1) or "scrypt"
    iterations: int = 0
    n: int = 0
    r: int = 0
    p: int = 0

    @property
    def scrypt_memory(self) -> int:
        # scrypt's table V is 128*r*N bytes; the rest (128*r*(p+2)) is bounded by the work.
        return 128 * self.r * self.n

    @property
    def scrypt_work(self) -> int:
        return self.n * self.r * self.p


def is_encryption_algorithm(oid: str) -> bool:
    """True for an OID that starts an EncryptedPrivateKeyInfo certdrop can bound."""
    return oid in ENCRYPTION_OIDS


def pkcs8_costs(data: bytes) -> list[Cost]:
    """The derivations of an EncryptedPrivateKeyInfo (RFC 5958): one, or Malformed."""
    node, _ = der.read_prefix(data)
    fields = node.expect(der.SEQUENCE, "EncryptedPrivateKeyInfo").children()
    if len(fields) != 2:
        raise Malformed("an EncryptedPrivateKeyInfo has two fields")
    return [_algorithm_cost(fields[0], "the key's encryption")]


def encrypted_pkcs8_algorithm(data: bytes) -> str | None:
    """The encryption OID when ``data`` (DER) is an EncryptedPrivateKeyInfo, else None."""
    try:
        node, _ = der.read_prefix(data)
        fields = node.expect(der.SEQUENCE, "").children()
        if len(fields) != 2 or fields[1].tag not in (der.OCTET_STRING, der.OCTET_STRING | 0x20):
            return None
        algorithm = fields[0].expect(der.SEQUENCE, "").children()
        oid = algorithm[0].oid() if algorithm else ""
    except Malformed:
        return None
    return oid if oid.startswith(("1.2.840.113549.1.5.", "1.2.840.113549.1.12.1.")) else None


def pkcs12_costs(data: bytes) -> list[Cost]:
    """Every derivation of a PFX (RFC 7292) visible without a passphrase, or Malformed.

    That is the MAC (or PBMAC1, RFC 9579), the PBE of every encrypted content, and every
    shrouded key bag in plain (``data``) contents, nested safe-contents bags included.
    """
    node, _ = der.read_prefix(data)
    pfx = node.expect(der.SEQUENCE, "PFX").children()
    if len(pfx) not in (2, 3) or pfx[0].integer() != 3:
        raise Malformed("a PFX is SEQUENCE { version 3, authSafe, macData OPTIONAL }")
    costs: list[Cost] = []
    if len(pfx) == 3:
        costs.append(_mac_cost(pfx[2]))
    content_type, content = _content_info(pfx[1])
    if content_type != DATA:
        raise Malformed("the PFX's authSafe is not password-protected data (public-key mode?)")
    safe = der.read(_explicit(content, "authSafe").octets())
    for index, info in enumerate(safe.expect(der.SEQUENCE, "AuthenticatedSafe").children(), 1):
        kind, body = _content_info(info)
        if kind == DATA:
            contents = der.read(_explicit(body, "SafeContents").octets())
            costs.extend(_bag_costs(contents, f"content {index}"))
        elif kind == ENCRYPTED_DATA:
            costs.append(_encrypted_data_cost(_explicit(body, "EncryptedData"), index))
        # Enveloped (public-key) contents: OpenSSL skips them, so they cost nothing.
    return costs


def check(costs: Iterable[Cost], limits: Limits, what: str) -> None:
    """Refuse (``kdf_too_costly``) when one derivation, or all together, exceed the limits."""
    costs = list(costs)
    for cost in costs:
        problem = _one_problem(cost, limits)
        if problem is not None:
            raise Rejection("kdf_too_costly", f"{what}: {problem}. {_FIX}")
    total = sum(c.iterations for c in costs)
    if total > limits.max_kdf_total_iterations:
        raise Rejection(
            "kdf_too_costly",
            f"{what}: its {len(costs)} key derivations take {total} iterations together; the "
            f"limit is limits.max_kdf_total_iterations = {limits.max_kdf_total_iterations}. "
            f"{_FIX}",
        )
    work = sum(c.scrypt_work for c in costs)
    if work > limits.max_scrypt_work:
        raise Rejection(
            "kdf_too_costly",
            f"{what}: its scrypt derivations take N*r*p = {work} together; the limit is "
            f"limits.max_scrypt_work = {limits.max_scrypt_work}. {_FIX}",
        )


_FIX = (
    "Export it again with your tool's default settings (openssl uses 2048 iterations or "
    "scrypt N=16384, r=8, p=1), or raise the limit if you trust the uploader"
)


def _one_problem(cost: Cost, limits: Limits) -> str | None:
    if cost.kind == "iterations":
        if cost.iterations > limits.max_kdf_iterations:
            return (
                f"{cost.where} uses {cost.iterations} iterations; the limit is "
                f"limits.max_kdf_iterations = {limits.max_kdf_iterations}"
            )
        return None
    if cost.scrypt_memory > limits.max_scrypt_memory_bytes:
        return (
            f"{cost.where} uses scrypt with N={cost.n}, r={cost.r}, p={cost.p}, which needs "
            f"{_mib(cost.scrypt_memory)} MiB of memory; the limit is "
            f"limits.max_scrypt_memory_mib = {limits.max_scrypt_memory_mib}"
        )
    if cost.scrypt_work > limits.max_scrypt_work:
        return (
            f"{cost.where} uses scrypt with N={cost.n}, r={cost.r}, p={cost.p}, work "
            f"N*r*p = {cost.scrypt_work}; the limit is limits.max_scrypt_work = "
            f"{limits.max_scrypt_work}"
        )
    return None


def _mib(size: int) -> str:
    return f"{size / MIB:.0f}" if size >= MIB else f"{size / MIB:.2f}"


# -- the structures ---------------------------------------------------------------------


def _content_info(node: Node) -> tuple[str, Node | None]:
    """ContentInfo ::= SEQUENCE { contentType OID, content [0] EXPLICIT ANY OPTIONAL }."""
    fields = node.expect(der.SEQUENCE, "ContentInfo").children()
    if not fields or len(fields) > 2:
        raise Malformed("a ContentInfo is SEQUENCE { contentType, [0] content }")
    return fields[0].oid(), fields[1] if len(fields) == 2 else None


def _explicit(node: Node | None, what: str) -> Node:
    if node is None:
        raise Malformed(f"the {what} is missing")
    inner = node.expect(der.context(0), what).children()
    if len(inner) != 1:
        raise Malformed(f"the {what} is not one value")
    return inner[0]


def _mac_cost(node: Node) -> Cost:
    """MacData ::= SEQUENCE { mac DigestInfo, macSalt, iterations INTEGER DEFAULT 1 }."""
    fields = node.expect(der.SEQUENCE, "MacData").children()
    if len(fields) not in (2, 3):
        raise Malformed("a MacData is SEQUENCE { mac, macSalt, iterations }")
    digest = fields[0].expect(der.SEQUENCE, "DigestInfo").children()
    if len(digest) != 2:
        raise Malformed("a DigestInfo is SEQUENCE { algorithm, digest }")
    algorithm = digest[0].expect(der.SEQUENCE, "AlgorithmIdentifier").children()
    if algorithm and algorithm[0].oid() == PBMAC1:
        # RFC 9579: the iterations are PBKDF2's; MacData.iterations is then ignored.
        if len(algorithm) != 2:
            raise Malformed("PBMAC1 has no parameters")
        params = algorithm[1].expect(der.SEQUENCE, "PBMAC1-params").children()
        if len(params) != 2:
            raise Malformed("PBMAC1-params is SEQUENCE { keyDerivationFunc, messageAuthScheme }")
        return _kdf_cost(params[0], "the PKCS#12 MAC (PBMAC1)")
    iterations = fields[2].integer() if len(fields) == 3 else 1
    return Cost("the PKCS#12 MAC", "iterations", iterations=iterations)


def _encrypted_data_cost(node: Node, index: int) -> Cost:
    """EncryptedData ::= SEQUENCE { version, EncryptedContentInfo SEQUENCE {
    contentType, contentEncryptionAlgorithm, [0] IMPLICIT encryptedContent OPTIONAL } }."""
    fields = node.expect(der.SEQUENCE, "EncryptedData").children()
    if len(fields) < 2:
        raise Malformed("an EncryptedData is SEQUENCE { version, encryptedContentInfo }")
    info = fields[1].expect(der.SEQUENCE, "EncryptedContentInfo").children()
    if len(info) < 2:
        raise Malformed("an EncryptedContentInfo has no algorithm")
    return _algorithm_cost(info[1], f"the encrypted content {index}")


def _bag_costs(contents: Node, where: str) -> list[Cost]:
    """SafeContents ::= SEQUENCE OF SafeBag { bagId, [0] EXPLICIT bagValue, attributes }."""
    costs: list[Cost] = []
    bags = contents.expect(der.SEQUENCE, "SafeContents").children()
    for number, bag in enumerate(bags, 1):
        fields = bag.expect(der.SEQUENCE, "SafeBag").children()
        if len(fields) < 2:
            raise Malformed("a SafeBag is SEQUENCE { bagId, [0] bagValue, ... }")
        kind = fields[0].oid()
        if kind == SHROUDED_KEY_BAG:
            value = _explicit(fields[1], "shrouded key bag")
            key = value.expect(der.SEQUENCE, "EncryptedPrivateKeyInfo").children()
            if len(key) != 2:
                raise Malformed("an EncryptedPrivateKeyInfo has two fields")
            costs.append(_algorithm_cost(key[0], f"the shrouded key bag {number} in {where}"))
        elif kind == SAFE_CONTENTS_BAG:
            inner = _explicit(fields[1], "safe contents bag")
            costs.extend(_bag_costs(inner, f"bag {number} in {where}"))
    return costs


def _algorithm_cost(node: Node, where: str) -> Cost:
    """The derivation an encryption AlgorithmIdentifier asks for."""
    fields = node.expect(der.SEQUENCE, "AlgorithmIdentifier").children()
    if len(fields) != 2:
        raise Malformed(f"{where} has no parameters")
    oid = fields[0].oid()
    if oid == PBES2:
        params = fields[1].expect(der.SEQUENCE, "PBES2-params").children()
        if len(params) != 2:
            raise Malformed("PBES2-params is SEQUENCE { keyDerivationFunc, encryptionScheme }")
        return _kdf_cost(params[0], where)
    if oid in PBES1 or oid in PKCS12_PBE:
        # PBEParameter and pkcs-12PbeParams: SEQUENCE { salt OCTET STRING, iterations }.
        params = fields[1].expect(der.SEQUENCE, "PBE parameters").children()
        if len(params) != 2:
            raise Malformed("PBE parameters are SEQUENCE { salt, iterationCount }")
        return Cost(where, "iterations", iterations=params[1].integer())
    raise Malformed(f"{where} uses the algorithm {oid}, which certdrop does not open")


def _kdf_cost(node: Node, where: str) -> Cost:
    fields = node.expect(der.SEQUENCE, "keyDerivationFunc").children()
    if len(fields) != 2:
        raise Malformed(f"the key derivation of {where} has no parameters")
    oid = fields[0].oid()
    params = fields[1].expect(der.SEQUENCE, "KDF parameters").children()
    if oid == PBKDF2:
        # PBKDF2-params ::= SEQUENCE { salt, iterationCount, keyLength OPTIONAL, prf DEFAULT }
        if len(params) < 2:
            raise Malformed("PBKDF2-params has no iteration count")
        return Cost(f"{where} (PBKDF2)", "iterations", iterations=params[1].integer())
    if oid == SCRYPT:
        # scrypt-params ::= SEQUENCE { salt, costParameter N, blockSize r, parallelization p, ... }
        if len(params) < 4:
            raise Malformed("scrypt-params lacks N, r or p")
        n, r, p = (params[i].integer() for i in (1, 2, 3))
        return Cost(f"{where} (scrypt)", "scrypt", n=n, r=r, p=p)
    raise Malformed(f"{where} derives its key with {oid}, which certdrop does not open")
