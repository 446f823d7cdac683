"""The trust store the verdicts are for: ``trust.ca_bundle`` (else the system store) and
``trust.profile``, read once at start-up and again on each reload.

One :class:`TrustStore` is shared by intake (the verdict recorded for each drop), the
hostname assignment (the verdict for a service's role and name) and the re-judging of the
inventory when the store's fingerprint changes.
"""

from __future__ import annotations

import ssl
import warnings
from pathlib import Path

from cryptography import x509
from cryptography.utils import CryptographyDeprecationWarning

from certdrop.config import Config
from certdrop.pki.trust import Profile, Verifier


def bundle_path(config: Config) -> Path:
    return config.ca_bundle or Path(ssl.get_default_verify_paths().openssl_cafile)


def load_verifier(config: Config) -> Verifier:
    """A verifier for the configured store; an unreadable store trusts nothing (every
    verdict then says to set trust.ca_bundle; `certdrop check` reports the file)."""
    profile: Profile = "webpki" if config.trust_profile == "webpki" else "rfc5280"
    with warnings.catch_warnings():
        # System stores carry a few old roots with negative serials, which cryptography
        # warns about when their extensions are first read (here); they still anchor.
        warnings.simplefilter("ignore", CryptographyDeprecationWarning)
        try:
            certs = x509.load_pem_x509_certificates(bundle_path(config).read_bytes())
        except (OSError, ValueError):
            certs = []
        return Verifier.build(certs, profile)


class TrustStore:
    """Holds the current verifier; :meth:`load` replaces it (start-up, reload)."""

    def __init__(self, config: Config) -> None:
        self.verifier = load_verifier(config)

    def load(self, config: Config) -> None:
        self.verifier = load_verifier(config)
