"""Certificate chains: order, verify and judge them. Pure: ``now`` is passed in."""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime

from cryptography import x509
from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.serialization import Encoding

from certdrop.pki.pool import Issuers, issuers

MAX_DEPTH = 8
TOO_DEEP = " (chain too deep)"  # how Chain.broken marks a chain cut at MAX_DEPTH


def fingerprint(cert: x509.Certificate) -> str:
    """sha256 hex of the certificate's DER: the identity status and probes use."""
    return cert.fingerprint(hashes.SHA256()).hex()


def is_ca(cert: x509.Certificate) -> bool:
    """True for a certificate that may issue others (basicConstraints CA:TRUE)."""
    try:
        return bool(cert.extensions.get_extension_for_class(x509.BasicConstraints).value.ca)
    except (x509.ExtensionNotFound, ValueError):
        return False


def is_self_signed(cert: x509.Certificate) -> bool:
    return cert.issuer == cert.subject and issued_by(cert, cert)


def issued_by(cert: x509.Certificate, issuer: x509.Certificate) -> bool:
    """True when ``issuer``'s name and signature both vouch for ``cert``."""
    try:
        cert.verify_directly_issued_by(issuer)
    except Exception:  # noqa: BLE001 - ValueError, TypeError, InvalidSignature, unsupported algs
        return False
    return True


@dataclass(frozen=True)
class Chain:
    """A leaf and the intermediates that issue it, in issuing order, without the root.

    ``root`` is the trusted anchor the chain ends at, if one was found; ``broken`` names a
    certificate whose issuer is present by name but whose signature does not verify.
    """

    leaf: x509.Certificate
    intermediates: tuple[x509.Certificate, ...]
    root: x509.Certificate | None
    broken: str | None = None

    @property
    def bundle(self) -> tuple[x509.Certificate, ...]:
        return (self.leaf, *self.intermediates)

    @property
    def trusted(self) -> bool:
        return self.root is not None and self.broken is None


@dataclass(frozen=True)
class Anchors:
    """Trusted roots indexed by subject, built once and shared by every chain check.

    It remembers which certificates it has verified (a verdict on two immutable
    certificates never changes): every drop from one CA re-checks the same intermediate
    against the same root, and that signature check is a tenth of a drop's cost.
    """

    by_subject: Mapping[bytes, tuple[x509.Certificate, ...]]
    _verdicts: dict[x509.Certificate, x509.Certificate | None] = field(
        default_factory=dict, compare=False, repr=False
    )

    @classmethod
    def from_certs(cls, roots: Iterable[x509.Certificate]) -> Anchors:
        index: dict[bytes, list[x509.Certificate]] = {}
        for root in roots:
            index.setdefault(root.subject.public_bytes(), []).append(root)
        return cls({k: tuple(v) for k, v in index.items()})

    def issuer_of(self, cert: x509.Certificate) -> x509.Certificate | None:
        if not self.by_subject:
            return None
        if cert in self._verdicts:
            return self._verdicts[cert]
        found = next(
            (a for a in self.by_subject.get(cert.issuer.public_bytes(), ()) if issued_by(cert, a)),
            None,
        )
        # Only issuing certificates recur; remembering leaves would hold every one in memory.
        if is_ca(cert) and len(self._verdicts) < 1024:
            self._verdicts[cert] = found
        return found


NO_ANCHORS = Anchors({})


def build_chain(
    leaf: x509.Certificate,
    candidates: Iterable[x509.Certificate] | Issuers,
    anchors: Anchors = NO_ANCHORS,
) -> Chain:
    """Order ``candidates`` into the issuing chain of ``leaf``, verifying every signature.

    ``candidates`` is a list, or an index (:class:`~certdrop.pki.pool.Issuers`) that is
    asked only for the names the chain needs: a large pool costs nothing per leaf.
    Candidates that do not belong to the chain are ignored; duplicates collapse; loops and
    chains deeper than MAX_DEPTH stop. The chain ends at a trusted anchor, or at a
    self-signed issuer, which is left out of the bundle (servers should not send the root).
    """
    index = issuers(candidates)
    chain: list[x509.Certificate] = []
    current = leaf
    used = {leaf.public_bytes(Encoding.DER)}
    while True:
        anchor = anchors.issuer_of(current)
        if anchor is not None:
            return Chain(leaf, tuple(chain), anchor)
        if current.issuer == current.subject and issued_by(current, current):
            # Self-signed but not trusted: end here, and keep it out of the bundle.
            if current is not leaf:
                chain.pop()
            return Chain(leaf, tuple(chain), None)
        named: list[x509.Certificate] = []
        seen = set(used)
        for cert in index.named(current.issuer):
            der = cert.public_bytes(Encoding.DER)
            if der not in seen:
                seen.add(der)
                named.append(cert)
        issuer = next((c for c in named if issued_by(current, c)), None)
        if issuer is None:
            broken = describe_name(current.subject) if named else None
            return Chain(leaf, tuple(chain), None, broken)
        # Counted here, so MAX_DEPTH intermediates still reach their anchor or their
        # self-signed root (which is taken one step past the limit, then dropped above).
        if len(chain) == MAX_DEPTH and not is_self_signed(issuer):
            too_deep = f"{describe_name(leaf.subject)}{TOO_DEEP}"
            return Chain(leaf, tuple(chain), None, too_deep)
        used.add(issuer.public_bytes(Encoding.DER))
        chain.append(issuer)
        current = issuer


def describe_name(name: x509.Name) -> str:
    """RFC 4514 form of a name, with anything unprintable escaped."""
    try:
        text = name.rfc4514_string()
    except ValueError:
        return "<unreadable name>"
    if text.isprintable():
        return text
    return "".join(c if c.isprintable() else f"\\x{ord(c):02x}" for c in text)


def validity_problem(cert: x509.Certificate, now: datetime) -> tuple[str, str] | None:
    """(code, reason) when ``cert`` is outside its validity window at ``now``.

    Both ends are inclusive (RFC 5280 4.1.2.5): a certificate at exactly its notAfter is
    still valid, as cryptography's verifier judges it.
    """
    if cert.not_valid_after_utc < now:
        return (
            "expired",
            f"the certificate {describe_name(cert.subject)} expired on "
            f"{cert.not_valid_after_utc:%Y-%m-%d %H:%M}Z; drop a renewed one",
        )
    if cert.not_valid_before_utc > now:
        return (
            "not_yet_valid",
            f"the certificate {describe_name(cert.subject)} is valid only from "
            f"{cert.not_valid_before_utc:%Y-%m-%d %H:%M}Z; check the clock or drop it then",
        )
    return None


def signature_problem(certs: Sequence[x509.Certificate]) -> str | None:
    """A reason when any certificate in the bundle is signed with SHA-1 or MD5."""
    for cert in certs:
        try:
            algorithm = cert.signature_hash_algorithm
        except UnsupportedAlgorithm:  # an OID cryptography does not know: refuse, don't crash
            return (
                f"the certificate {describe_name(cert.subject)} is signed with an unknown "
                f"algorithm ({cert.signature_algorithm_oid.dotted_string}); have it reissued "
                "with SHA-256"
            )
        if algorithm is None or algorithm.name in ("sha1", "md5"):
            name = "none" if algorithm is None else algorithm.name.upper()
            return (
                f"the certificate {describe_name(cert.subject)} is signed with {name}, "
                "which is refused; have it reissued with SHA-256"
            )
    return None


def sans(cert: x509.Certificate) -> list[str]:
    """DNS names and IP addresses the certificate covers."""
    try:
        ext = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except (x509.ExtensionNotFound, ValueError):
        return []
    names: list[str] = [str(n) for n in ext.get_values_for_type(x509.DNSName)]
    names += [str(ip) for ip in ext.get_values_for_type(x509.IPAddress)]
    return names


def to_pem(certs: Iterable[x509.Certificate]) -> bytes:
    """Certificates as concatenated PEM blocks, in the given order."""
    return b"".join(c.public_bytes(Encoding.PEM) for c in certs)


def from_pem(data: bytes) -> list[x509.Certificate]:
    """Certificates certdrop stored itself, in order."""
    return x509.load_pem_x509_certificates(data) if data.strip() else []
