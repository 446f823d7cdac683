"""The cost and size limits of one drop: the ``[limits]`` settings, with their defaults.

Plumbing (it imports nothing of certdrop): ``config`` reads the table into a ``Limits``,
and the pure core (``pki``) checks drops against it. Every default admits what real
tools write (the README's limits table lists the measurements) while keeping the worst
drop an uploader can make to about a second of work per passphrase tried.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, fields
from typing import Any

MIB = 1024 * 1024


@dataclass(frozen=True)
class Limits:
    """Upper bounds checked on a drop's structure before any costly step."""

    # PBKDF2, the PKCS#12 KDF and the PKCS#12 MAC: each derivation, and all of one file's.
    max_kdf_iterations: int = 1_000_000
    max_kdf_total_iterations: int = 4_000_000
    # scrypt: its memory 128*r*N bytes, and its work N*r*p (summed over a file).
    max_scrypt_memory_mib: int = 64
    max_scrypt_work: int = 1_048_576
    # Sizes and counts.
    max_certificates: int = 100
    max_sans: int = 5000
    max_rsa_bits: int = 8192
    max_rsa_exponent_bits: int = 64
    # The child process that opens each drop: CPU seconds (and as many wall seconds) and
    # address space. Only what the checks above cannot see ever comes near them.
    open_seconds: int = 10
    open_memory_mib: int = 512

    @property
    def max_scrypt_memory_bytes(self) -> int:
        return self.max_scrypt_memory_mib * MIB

    @classmethod
    def from_mapping(cls, table: Mapping[str, Any], problems: list[str]) -> Limits:
        """Read a ``[limits]`` table: whole numbers of at least 1; problems are appended."""
        values: dict[str, int] = {}
        known = {f.name for f in fields(cls)}
        for key in sorted(set(table) - known):
            problems.append(f"limits.{key} is not a known setting (a typo?)")
        for key in sorted(known & set(table)):
            value = table[key]
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                problems.append(f"limits.{key} must be a whole number of at least 1, not {value!r}")
                continue
            values[key] = value
        limits = cls(**values)
        if limits.max_kdf_total_iterations < limits.max_kdf_iterations:
            problems.append(
                "limits.max_kdf_total_iterations must be at least limits.max_kdf_iterations "
                f"({limits.max_kdf_iterations}), not {limits.max_kdf_total_iterations}"
            )
        return limits


DEFAULT_LIMITS = Limits()
