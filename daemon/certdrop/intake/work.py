"""The values one drop's processing passes around, and the trust anchors it reads."""

from __future__ import annotations

import ssl
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from cryptography import x509
from cryptography.utils import CryptographyDeprecationWarning

from certdrop.pki import chain as chains


def load_anchors(ca_bundle: Path | None) -> chains.Anchors:
    """Trusted roots: ``trust.ca_bundle`` if set, else the system store."""
    path = ca_bundle or Path(ssl.get_default_verify_paths().openssl_cafile)
    try:
        with warnings.catch_warnings():
            # System stores carry a few old roots with negative serials; they still anchor.
            warnings.simplefilter("ignore", CryptographyDeprecationWarning)
            roots = x509.load_pem_x509_certificates(path.read_bytes())
    except (OSError, ValueError):
        return chains.NO_ANCHORS
    return chains.Anchors.from_certs(roots)


@dataclass
class Outcome:
    """What became of one drop."""

    file: str
    result: str  # accepted | held | rejected
    recorded: list[str] = field(default_factory=list)
    code: str = ""
    reason: str = ""


@dataclass
class Work:
    """Changes planned for one drop, and the events to log once they are committed."""

    recorded: list[str] = field(default_factory=list)
    held: list[dict[str, str]] = field(default_factory=list)
    duplicates: list[str] = field(default_factory=list)
    intermediates: int = 0
    events: list[tuple[str, str, dict[str, Any]]] = field(default_factory=list)
    leaf_chains: list[chains.Chain] = field(default_factory=list)  # for `certdrop inspect`

    def event(self, level: str, event: str, /, **fields: Any) -> None:
        self.events.append((level, event, fields))
