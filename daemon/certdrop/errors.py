"""The project's errors. Each one carries data a person can act on.

``UserError`` and its kin end a CLI command with exit 1 and a one-line message;
``Rejection`` ends a drop in ``inbox/rejected/`` with a code and a reason. Messages
never contain key bytes or passphrases.
"""

from __future__ import annotations


class CertdropError(Exception):
    """Base of every error certdrop raises on purpose."""


class UserError(CertdropError):
    """A mistake the operator can fix: a bad argument, an unknown name, a bad file."""


class ConfigError(UserError):
    """The configuration is invalid; ``problems`` lists every problem found."""

    def __init__(self, source: str, problems: list[str]) -> None:
        self.source = source
        self.problems = list(problems)
        super().__init__(f"{source}: " + "; ".join(self.problems))


class InvalidRequest(UserError):
    """Fields for a certificate request are invalid; ``problems`` lists them all."""

    def __init__(self, problems: list[str]) -> None:
        self.problems = list(problems)
        super().__init__("; ".join(self.problems))


class StateLocked(UserError):
    """Another certdrop process holds the state folder."""


class Rejection(CertdropError):
    """A drop (or a piece of one) that certdrop will not accept.

    ``code`` is stable and machine-readable (``key_mismatch``, ``expired``, ...);
    ``reason`` is one sentence saying what is wrong and what to do.
    """

    def __init__(self, code: str, reason: str) -> None:
        self.code = code
        self.reason = reason
        super().__init__(f"{code}: {reason}")


def permission_message(exc: OSError) -> str:
    """One line for a file this user may not read: the path and the fix (monitors that
    are not root read the state through ``state_group``)."""
    path = exc.filename or "a file certdrop needs"
    return (
        f"{path}: permission denied; run as root, or (to read status and check) set "
        "state_group in the config and add this user to that group"
    )
