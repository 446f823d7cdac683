"""When to warn, when to renew and how long to wait before retrying. Pure.

Every function here is a function of a certificate's lifetime, what was already done
(the thresholds already warned about, the renewal attempts so far) and ``now``; nothing
reads a clock, a file or the inventory. The daemon's expiry check and ``certdrop check``
both call :func:`assess`, so the monitor sees exactly what the daemon acts on.

Thresholds are labelled in the ``warnings`` table as the number of days (``"30"``), plus
``"expired"`` and ``"overdue"`` for the two other once-only events.
"""

from __future__ import annotations

import re
from collections.abc import Collection, Iterable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from certdrop.pki.names import NAME_LIMIT

EXPIRED = "expired"
OVERDUE = "overdue"
EXIT_CODES = {"ok": 0, "warning": 1, "overdue": 2, "expired": 2}
RETRY_MAX = timedelta(hours=6)

_RENEWAL_SUFFIX = re.compile(r"-renewal-\d{8}(?:-\d+)?$")
_FREE_NAME_ROOM = 4  # inventory.free_name may append "-2" ... "-999"


@dataclass(frozen=True)
class Lifetime:
    """A certificate's validity window, both ends timezone-aware."""

    not_before: datetime
    not_after: datetime

    @classmethod
    def from_iso(cls, not_before: str, not_after: str) -> Lifetime:
        """From the inventory's ``2026-01-02T03:04:05Z`` strings."""
        return cls(
            _utc(datetime.fromisoformat(not_before)), _utc(datetime.fromisoformat(not_after))
        )

    @property
    def length(self) -> timedelta:
        return self.not_after - self.not_before

    def left(self, now: datetime) -> timedelta:
        return self.not_after - now


@dataclass(frozen=True)
class Policy:
    """The ``[expiry]`` settings the check depends on."""

    warn_days: tuple[int, ...] = (30, 14, 7, 1)
    renew_before_days: int = 0

    def __post_init__(self) -> None:
        # Loosest first, without repeats, whatever order the config gave.
        object.__setattr__(self, "warn_days", tuple(sorted(set(self.warn_days), reverse=True)))


def applicable_thresholds(
    not_before: datetime, not_after: datetime, thresholds: Iterable[int]
) -> tuple[int, ...]:
    """The thresholds (days before expiry, loosest first) that fall inside the lifetime.

    A threshold at or before ``not_before`` was passed before the certificate existed: a
    14-day certificate is never *newly* within 30 days of its end, so warning about it
    says nothing. Its tighter thresholds still apply.
    """
    return tuple(
        days
        for days in sorted(set(thresholds), reverse=True)
        if not_after - timedelta(days=days) > not_before
    )


def warnings_due(
    not_before: datetime,
    not_after: datetime,
    thresholds: Iterable[int],
    already_warned: Collection[str],
    now: datetime,
) -> tuple[str, ...]:
    """Labels of the thresholds crossed by ``now`` that were not warned about yet.

    Loosest first (``("30", "14")``), then ``"expired"`` once ``now`` reaches
    ``not_after``. Feeding the result back into ``already_warned`` makes every label come
    out exactly once, however often or rarely the check runs.
    """
    due = [
        str(days)
        for days in applicable_thresholds(not_before, not_after, thresholds)
        if now >= not_after - timedelta(days=days) and str(days) not in already_warned
    ]
    if now >= not_after and EXPIRED not in already_warned:
        due.append(EXPIRED)
    return tuple(due)


def renewal_point(not_before: datetime, not_after: datetime, renew_before_days: int) -> datetime:
    """When renewal starts: ``renew_before_days`` before the end when set, else when a
    third of the lifetime is left. Never before ``not_before``."""
    if renew_before_days > 0:
        point = not_after - timedelta(days=renew_before_days)
    else:
        point = not_after - (not_after - not_before) / 3
    return max(point, not_before)


def renewal_due(
    not_before: datetime, not_after: datetime, renew_before_days: int, now: datetime
) -> bool:
    """True once a certificate in use should be renewed."""
    return now >= renewal_point(not_before, not_after, renew_before_days)


def overdue_point(
    not_before: datetime, not_after: datetime, thresholds: Iterable[int], renew_before_days: int
) -> datetime:
    """When an unfinished renewal becomes overdue: at the last (tightest) applicable
    warning threshold, or at expiry when none applies; never before renewal starts."""
    applicable = applicable_thresholds(not_before, not_after, thresholds)
    last = not_after - timedelta(days=applicable[-1]) if applicable else not_after
    return max(last, renewal_point(not_before, not_after, renew_before_days))


def retry_delay(
    attempts: int, base_seconds: float = 300.0, cap: timedelta = RETRY_MAX
) -> timedelta:
    """The wait after the ``attempts``-th failed attempt: base, 2x, 4x, ... up to ``cap``.

    The cap never undercuts the base (a base above six hours is taken as meant).
    """
    if attempts < 1:
        raise ValueError(f"attempts counts failed attempts and starts at 1, not {attempts}")
    if base_seconds <= 0:
        raise ValueError(f"base_seconds must be positive, not {base_seconds}")
    limit = max(cap.total_seconds(), base_seconds)
    # Doubling in floats, capped before timedelta sees it: 2**1000 x base would overflow.
    return timedelta(seconds=min(base_seconds * 2.0 ** min(attempts - 1, 100), limit))


@dataclass(frozen=True)
class Assessment:
    """What one check finds for one certificate in use at ``now``."""

    level: str  # ok | warning | overdue | expired
    threshold: int | None  # the tightest applicable threshold crossed, in days
    remember: tuple[str, ...]  # labels to add to the warnings table
    warn: int | None  # emit expiry.warning for this threshold
    expired: bool  # emit expiry.expired
    overdue: bool  # emit renewal.overdue
    renewal_due: bool
    renew_at: datetime
    overdue_at: datetime

    @property
    def exit_code(self) -> int:
        return EXIT_CODES[self.level]


def assess(
    lifetime: Lifetime, already_warned: Collection[str], policy: Policy, now: datetime
) -> Assessment:
    """Everything the expiry check decides for one certificate in use.

    Only the tightest newly crossed threshold is announced: a certificate first seen
    with 5 days left gets one warning for 7 days, and 30 and 14 are remembered as passed,
    not announced all at once. The level is a state (what a monitor shows now), the
    events are edges (each emitted once; the caller remembers ``remember``).
    """
    nb, na = lifetime.not_before, lifetime.not_after
    applicable = applicable_thresholds(nb, na, policy.warn_days)
    crossed = [d for d in applicable if now >= na - timedelta(days=d)]
    due = warnings_due(nb, na, policy.warn_days, already_warned, now)
    renew_at = renewal_point(nb, na, policy.renew_before_days)
    overdue_at = overdue_point(nb, na, policy.warn_days, policy.renew_before_days)
    is_expired = now >= na
    is_overdue = now >= overdue_at
    new_thresholds = [label for label in due if label != EXPIRED]
    remember = list(due)
    if is_overdue and OVERDUE not in already_warned:
        remember.append(OVERDUE)
    if is_expired:
        level = "expired"
    elif is_overdue:
        level = "overdue"
    elif crossed:
        level = "warning"
    else:
        level = "ok"
    return Assessment(
        level=level,
        threshold=crossed[-1] if crossed else None,
        remember=tuple(remember),
        # Once expired, expiry.expired says it all; a late threshold warning would not.
        warn=int(new_thresholds[-1]) if new_thresholds and not is_expired else None,
        expired=EXPIRED in due,
        overdue=is_overdue and OVERDUE not in already_warned,
        renewal_due=now >= renew_at,
        renew_at=renew_at,
        overdue_at=overdue_at,
    )


def renewal_name(cert_name: str, now: datetime) -> str:
    """The name of the entry that renews ``cert_name``: ``<name>-renewal-<YYYYMMDD>``.

    A renewal of a renewal does not grow the name (``gw-renewal-20260101`` is renewed as
    ``gw-renewal-20260401``), and the base is shortened so that the name, with a
    ``-N`` that ``free_name`` may add, stays within the characters names may have.
    """
    suffix = f"-renewal-{now.astimezone(UTC):%Y%m%d}"
    base = _RENEWAL_SUFFIX.sub("", cert_name) or cert_name
    base = base[: NAME_LIMIT - len(suffix) - _FREE_NAME_ROOM].rstrip("._- ") or "certificate"
    return base + suffix


def days(delta: timedelta) -> float:
    """``delta`` in days, to one decimal: what the events and ``check`` show."""
    return round(delta.total_seconds() / 86400, 1)


def _utc(moment: datetime) -> datetime:
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)
