"""The trust store the verdicts are for: ``trust.ca_bundle`` (else the system store) and
``trust.profile``, read at first use after start-up and after each reload.

One :class:`TrustStore` is shared by intake (the verdict recorded for each drop), the
hostname assignment (the verdict for a service's role and name) and the re-judging of the
inventory when the store's fingerprint changes. It is read lazily: a CLI command that
judges nothing never pays for parsing the system store.
"""

from __future__ import annotations

import hashlib
import ssl
import warnings
from pathlib import Path

from cryptography import x509
from cryptography.utils import CryptographyDeprecationWarning

from certdrop.config import Config
from certdrop.pki.trust import Profile, Verifier


def bundle_path(config: Config) -> Path:
    return config.ca_bundle or Path(ssl.get_default_verify_paths().openssl_cafile)


def _read(config: Config) -> bytes:
    try:
        return bundle_path(config).read_bytes()
    except OSError:
        return b""


def load_verifier(config: Config, data: bytes | None = None) -> Verifier:
    """A verifier for the configured store; an unreadable store trusts nothing (every
    verdict then says to set trust.ca_bundle; `certdrop check` reports the file)."""
    profile: Profile = "webpki" if config.trust_profile == "webpki" else "rfc5280"
    with warnings.catch_warnings():
        # System stores carry a few old roots with negative serials, which cryptography
        # warns about when their extensions are first read (here); they still anchor.
        warnings.simplefilter("ignore", CryptographyDeprecationWarning)
        try:
            certs = x509.load_pem_x509_certificates(_read(config) if data is None else data)
        except ValueError:
            certs = []
        return Verifier.build(certs, profile)


def fingerprint(config: Config, data: bytes) -> str:
    """What the stored verdicts were judged against: the profile and the store's bytes."""
    return hashlib.sha256(config.trust_profile.encode() + b"\0" + data).hexdigest()


class TrustStore:
    """The current verifier, read on first use; :meth:`load` takes a new configuration
    (start-up, reload) and reads the store again when it is next needed.

    :attr:`fingerprint` (the profile and the store file's content hash) is read at once:
    it decides whether the inventory must be judged again, and costs no parsing.
    """

    def __init__(self, config: Config) -> None:
        self._verifier: Verifier | None = None
        self.load(config)

    def load(self, config: Config) -> None:
        self._config, self._verifier = config, None
        self._data = _read(config)
        self.fingerprint = fingerprint(config, self._data)

    @property
    def verifier(self) -> Verifier:
        if self._verifier is None:
            self._verifier = load_verifier(self._config, self._data)
        return self._verifier
