"""Which files a service gets, with which bytes and modes. Pure: bytes and values in and out.

A service reads its certificate in one of two layouts (``[services.NAME]``):

- ``cert_file`` (leaf, then intermediates) with ``key_file``, and optionally ``chain_file``
  (intermediates only);
- ``combined_file``: the key first, then the leaf, then the intermediates (postfix's
  ``*_tls_chain_files``). One file, so one rename switches certificate and key together.

:func:`plan` lists the files in *install order*: the key first, the certificate last. The
certificate file is the one that makes a new pair visible, so it is renamed last: a reader
between the two renames sees the old certificate with the new key, never a new certificate
with an old key (and nginx's reload refuses such a pair instead of half-applying it).
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import re
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Protocol

from certdrop.pki import chain as chains
from certdrop.pki import keys

# The order files are renamed into place; see the module docstring for why.
INSTALL_ORDER = ("key_file", "combined_file", "chain_file", "cert_file")
_PEM_CERT = re.compile(
    rb"-----BEGIN CERTIFICATE-----\s*(?P<body>[A-Za-z0-9+/=\s]+?)-----END CERTIFICATE-----"
)


class FileLayout(Protocol):
    """Where a service reads its files and in which form: plain values (a
    ``config.ServiceConfig`` is one), so the core needs no configuration module."""

    @property
    def cert_file(self) -> Path | None: ...
    @property
    def key_file(self) -> Path | None: ...
    @property
    def chain_file(self) -> Path | None: ...
    @property
    def combined_file(self) -> Path | None: ...
    @property
    def key_format(self) -> str: ...
    @property
    def mode(self) -> int: ...
    @property
    def key_mode(self) -> int: ...


@dataclass(frozen=True)
class ServiceFile:
    """One file of a service: where it goes, what it holds and its permission bits.

    ``secret`` marks a file holding the private key; its bytes never reach a log.
    """

    role: str
    path: Path
    data: bytes
    mode: int
    secret: bool

    def __repr__(self) -> str:  # keep key bytes out of tracebacks and assertion output
        return f"ServiceFile({self.role}, {self.path}, {len(self.data)} bytes, {self.mode:04o})"


def plan(
    service: FileLayout, cert_pem: bytes, chain_pem: bytes, key_pem: bytes
) -> tuple[ServiceFile, ...]:
    """The files ``service`` needs for a certificate, in install order.

    ``cert_pem`` is the leaf, ``chain_pem`` its intermediates (leaf's issuer first) and
    ``key_pem`` the key in any PEM form certdrop stores; it is written in the service's
    ``key_format``.
    """
    key = keys.to_pem(keys.load_pem(key_pem), service.key_format)
    full_chain = _lines(cert_pem) + _lines(chain_pem)
    found: list[ServiceFile] = []
    if service.combined_file is not None:
        found.append(
            ServiceFile(
                "combined_file",
                service.combined_file,
                key + full_chain,
                service.key_mode,
                True,
            )
        )
    if service.key_file is not None:
        found.append(ServiceFile("key_file", service.key_file, key, service.key_mode, True))
    if service.chain_file is not None:
        found.append(
            ServiceFile("chain_file", service.chain_file, _lines(chain_pem), service.mode, False)
        )
    if service.cert_file is not None:
        found.append(ServiceFile("cert_file", service.cert_file, full_chain, service.mode, False))
    return tuple(sorted(found, key=lambda f: INSTALL_ORDER.index(f.role)))


def _lines(pem: bytes) -> bytes:
    """PEM blocks ending in exactly one newline, so concatenations stay well formed."""
    return pem.strip() + b"\n" if pem.strip() else b""


def pair_problem(cert_pem: bytes, chain_pem: bytes, key_pem: bytes, now: datetime) -> str | None:
    """Why this certificate, chain and key must not be deployed at ``now``, or None.

    Checked before any file is touched: postfix reloads "successfully" with a mismatched
    pair and then serves no certificate at all.
    """
    try:
        certs = [*chains.from_pem(cert_pem), *chains.from_pem(chain_pem)]
        key = keys.load_pem(key_pem)
    except (ValueError, TypeError) as exc:
        return f"the stored certificate or key cannot be read ({exc}); drop it again"
    if not certs:
        return "the entry has no certificate yet (a pending request); drop the issued certificate"
    if not keys.proves_possession(key, certs[0].public_key()):
        return "the stored key does not belong to the certificate; drop the matching pair again"
    for cert in certs:
        problem = chains.validity_problem(cert, now)
        if problem is not None:
            return problem[1]
    return None


def leaf_sha256(data: bytes) -> str | None:
    """sha256 hex of the first certificate in a PEM file (the leaf a service serves), if any.

    Works on a cert_file and on a combined_file (whose key block comes first).
    """
    match = _PEM_CERT.search(data)
    if match is None:
        return None
    try:
        der = base64.b64decode(b"".join(match["body"].split()), validate=True)
    except (binascii.Error, ValueError):
        return None
    return hashlib.sha256(der).hexdigest()


def served_sha256(files: Sequence[ServiceFile]) -> str | None:
    """The fingerprint a service reading ``files`` will serve: the leaf of its cert file."""
    for role in ("combined_file", "cert_file"):
        for file in files:
            if file.role == role:
                return leaf_sha256(file.data)
    return None
