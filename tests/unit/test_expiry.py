"""The pure expiry core: warning thresholds, renewal timing, retry delays, names."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from certdrop.pki import expiry, names
from certdrop.pki.expiry import Lifetime, Policy

T0 = datetime(2026, 1, 1, tzinfo=UTC)
DAY = timedelta(days=1)


def life(days: float, start: datetime = T0) -> Lifetime:
    return Lifetime(start, start + timedelta(days=days))


# -- warnings_due -----------------------------------------------------------------------
def test_no_warning_before_the_first_threshold():
    """Nothing is due while the certificate is outside every threshold."""
    lt = life(90)
    assert expiry.warnings_due(lt.not_before, lt.not_after, (30, 7), set(), T0 + 59 * DAY) == ()


def test_crossing_a_threshold_makes_it_due():
    """Reaching 30 days before expiry makes the 30-day threshold due."""
    lt = life(90)
    assert expiry.warnings_due(lt.not_before, lt.not_after, (30, 7), set(), T0 + 60 * DAY) == (
        "30",
    )


def test_a_warned_threshold_is_not_due_again():
    """A threshold already remembered is never due again."""
    lt = life(90)
    assert expiry.warnings_due(lt.not_before, lt.not_after, (30, 7), {"30"}, T0 + 70 * DAY) == ()


def test_several_crossed_thresholds_come_loosest_first():
    """A first look with 5 days left finds 30, 14 and 7 due, loosest first."""
    lt = life(90)
    due = expiry.warnings_due(lt.not_before, lt.not_after, (7, 30, 14, 1), set(), T0 + 85 * DAY)
    assert due == ("30", "14", "7")


def test_expired_is_due_once_at_the_end():
    """At not_after 'expired' joins the due labels; remembered, it does not come back."""
    lt = life(90)
    assert expiry.warnings_due(lt.not_before, lt.not_after, (), set(), lt.not_after) == ("expired",)
    assert expiry.warnings_due(lt.not_before, lt.not_after, (), {"expired"}, lt.not_after) == ()


def test_thresholds_before_the_start_do_not_apply():
    """A 10-day certificate is never warned about at 30 or 14 days, only at 7 and 1."""
    lt = life(10)
    assert expiry.applicable_thresholds(lt.not_before, lt.not_after, (30, 14, 7, 1)) == (7, 1)
    due = expiry.warnings_due(lt.not_before, lt.not_after, (30, 14, 7, 1), set(), T0 + 9.5 * DAY)
    assert due == ("7", "1")


def test_a_threshold_at_exactly_the_start_does_not_apply():
    """A 14-day certificate was within 14 days from birth: no news, no warning."""
    lt = life(14)
    assert expiry.applicable_thresholds(lt.not_before, lt.not_after, (14, 7)) == (7,)


moments = st.integers(min_value=-5 * 86400, max_value=120 * 86400).map(
    lambda s: T0 + timedelta(seconds=s)
)
threshold_sets = st.lists(st.integers(min_value=0, max_value=100), max_size=6)


@settings(max_examples=300, deadline=None)
@given(
    lifetime_days=st.integers(min_value=1, max_value=100),
    thresholds=threshold_sets,
    checks=st.lists(moments, min_size=1, max_size=30),
)
def test_each_label_comes_out_exactly_once_however_often_the_check_runs(
    lifetime_days: int, thresholds: list[int], checks: list[datetime]
):
    """Checks at any times, remembering what they found, emit each crossed label once."""
    lt = life(lifetime_days)
    warned: set[str] = set()
    emitted: list[str] = []
    for now in sorted(checks):
        due = expiry.warnings_due(lt.not_before, lt.not_after, thresholds, warned, now)
        assert not set(due) & warned
        emitted += due
        warned |= set(due)
    last = max(checks)
    crossed = {
        str(d)
        for d in expiry.applicable_thresholds(lt.not_before, lt.not_after, thresholds)
        if last >= lt.not_after - timedelta(days=d)
    }
    if last >= lt.not_after:
        crossed.add("expired")
    assert sorted(emitted) == sorted(crossed)


# -- renewal timing ---------------------------------------------------------------------
def test_renewal_starts_when_a_third_is_left():
    """With renew_before_days 0, a 90-day certificate renews 30 days before its end."""
    lt = life(90)
    assert expiry.renewal_point(lt.not_before, lt.not_after, 0) == T0 + 60 * DAY
    assert not expiry.renewal_due(
        lt.not_before, lt.not_after, 0, T0 + 60 * DAY - timedelta(seconds=1)
    )
    assert expiry.renewal_due(lt.not_before, lt.not_after, 0, T0 + 60 * DAY)


def test_renew_before_days_overrides_the_third():
    """renew_before_days = 10 renews a 90-day certificate 10 days before its end."""
    lt = life(90)
    assert expiry.renewal_point(lt.not_before, lt.not_after, 10) == T0 + 80 * DAY


def test_renew_before_days_longer_than_the_lifetime_renews_at_once():
    """A renewal point before not_before is clamped to not_before."""
    lt = life(5)
    assert expiry.renewal_point(lt.not_before, lt.not_after, 30) == lt.not_before


def test_a_short_certificate_renews_after_two_thirds_of_minutes():
    """A 6-minute test certificate is due for renewal with 2 minutes left."""
    lt = Lifetime(T0, T0 + timedelta(minutes=6))
    assert not expiry.renewal_due(lt.not_before, lt.not_after, 0, T0 + timedelta(minutes=3))
    assert expiry.renewal_due(lt.not_before, lt.not_after, 0, T0 + timedelta(minutes=4))


@settings(max_examples=300, deadline=None)
@given(
    lifetime_seconds=st.integers(min_value=60, max_value=400 * 86400),
    renew_before=st.integers(min_value=0, max_value=400),
    a=moments,
    b=moments,
)
def test_renewal_due_never_flips_back(
    lifetime_seconds: int, renew_before: int, a: datetime, b: datetime
):
    """Once due, a renewal stays due at every later moment, and its point lies in the lifetime."""
    nb, na = T0, T0 + timedelta(seconds=lifetime_seconds)
    point = expiry.renewal_point(nb, na, renew_before)
    assert nb <= point <= na
    early, late = sorted((a, b))
    if expiry.renewal_due(nb, na, renew_before, early):
        assert expiry.renewal_due(nb, na, renew_before, late)


def test_overdue_at_the_last_threshold():
    """An open renewal is overdue at the tightest applicable threshold."""
    lt = life(90)
    assert expiry.overdue_point(lt.not_before, lt.not_after, (30, 7, 1), 0) == lt.not_after - DAY


def test_overdue_at_expiry_when_no_threshold_applies():
    """Without applicable thresholds the renewal is overdue when the certificate expires."""
    lt = Lifetime(T0, T0 + timedelta(minutes=6))
    assert expiry.overdue_point(lt.not_before, lt.not_after, (30, 14, 7, 1), 0) == lt.not_after


def test_never_overdue_before_renewal_starts():
    """A renewal point after the last threshold moves the overdue point with it."""
    lt = life(90)
    assert expiry.overdue_point(lt.not_before, lt.not_after, (30,), 10) == lt.not_after - 10 * DAY


# -- retry delays -----------------------------------------------------------------------
def test_retry_delays_double_from_the_base():
    """Failed attempts wait base, 2x, 4x, 8x."""
    got = [expiry.retry_delay(n, 0.5).total_seconds() for n in range(1, 5)]
    assert got == [0.5, 1.0, 2.0, 4.0]


def test_retry_delays_stop_growing_at_the_cap():
    """However many attempts failed, the wait is at most six hours."""
    assert expiry.retry_delay(10_000, 300) == timedelta(hours=6)


def test_a_base_above_the_cap_is_kept():
    """A base larger than the cap is what the operator meant."""
    assert expiry.retry_delay(3, 86400) == DAY


@pytest.mark.parametrize(("attempts", "base"), [(0, 1.0), (-1, 1.0), (1, 0.0), (1, -5.0)])
def test_retry_delay_refuses_nonsense(attempts: int, base: float):
    """Attempts start at 1 and the base must be positive."""
    with pytest.raises(ValueError, match=r"attempts|base"):
        expiry.retry_delay(attempts, base)


@given(st.integers(min_value=1, max_value=10_000), st.floats(min_value=0.01, max_value=1e6))
def test_retry_delays_never_shrink(attempts: int, base: float):
    """The next delay is never shorter than this one."""
    assert expiry.retry_delay(attempts + 1, base) >= expiry.retry_delay(attempts, base)


# -- assess -----------------------------------------------------------------------------
POLICY = Policy(warn_days=(30, 14, 7, 1))


def test_assess_is_ok_far_from_expiry():
    """Early in its life a certificate is ok, warns nothing and is not due."""
    found = expiry.assess(life(90), set(), POLICY, T0 + DAY)
    assert (found.level, found.warn, found.renewal_due, found.exit_code) == ("ok", None, False, 0)


def test_assess_announces_only_the_tightest_new_threshold():
    """First seen with 5 days left: one warning (7 days), 30 and 14 remembered silently."""
    found = expiry.assess(life(90), set(), POLICY, T0 + 85 * DAY)
    assert found.warn == 7
    assert set(found.remember) == {"30", "14", "7"}
    assert (found.level, found.exit_code) == ("warning", 1)


def test_assess_is_overdue_at_the_last_threshold():
    """With a day or less left the check is critical and announces the overdue renewal."""
    found = expiry.assess(life(90), {"30", "14", "7"}, POLICY, T0 + 89.5 * DAY)
    assert (found.level, found.exit_code, found.overdue, found.warn) == ("overdue", 2, True, 1)
    again = expiry.assess(life(90), {"30", "14", "7", "1", "overdue"}, POLICY, T0 + 89.6 * DAY)
    assert (again.overdue, again.warn, again.remember) == (False, None, ())


def test_assess_expired_says_expired_not_warning():
    """An expired certificate is critical and announces expiry, not a late threshold."""
    found = expiry.assess(life(90), set(), POLICY, T0 + 91 * DAY)
    assert (found.level, found.expired, found.warn, found.exit_code) == ("expired", True, None, 2)
    assert "expired" in found.remember


@settings(max_examples=300, deadline=None)
@given(lifetime_days=st.integers(min_value=1, max_value=120), a=moments, b=moments)
def test_the_level_only_gets_worse_as_time_passes(lifetime_days: int, a: datetime, b: datetime):
    """For a certificate left alone, the check's exit code never improves with time."""
    lt = life(lifetime_days)
    early, late = sorted((a, b))
    assert (
        expiry.assess(lt, set(), POLICY, early).exit_code
        <= expiry.assess(lt, set(), POLICY, late).exit_code
    )


def test_policy_orders_thresholds_loosest_first():
    """Thresholds in any order, with repeats, become one descending tuple."""
    assert Policy(warn_days=(1, 30, 7, 30)).warn_days == (30, 7, 1)


def test_lifetime_reads_the_inventory_format():
    """The inventory's Z-suffixed strings become aware UTC datetimes."""
    lt = Lifetime.from_iso("2026-01-01T00:00:00Z", "2026-04-01T00:00:00Z")
    assert lt.not_before == T0 and lt.length == timedelta(days=90)


# -- names ------------------------------------------------------------------------------
def test_renewal_name_carries_the_date():
    """gw renewed on 2026-03-02 becomes gw-renewal-20260302."""
    assert (
        expiry.renewal_name("gw", datetime(2026, 3, 2, 23, 0, tzinfo=UTC)) == "gw-renewal-20260302"
    )


def test_a_renewal_of_a_renewal_does_not_grow_the_name():
    """The previous renewal suffix (and a -N) is replaced, not stacked."""
    now = datetime(2026, 6, 1, tzinfo=UTC)
    assert expiry.renewal_name("gw-renewal-20260302", now) == "gw-renewal-20260601"
    assert expiry.renewal_name("gw-renewal-20260302-2", now) == "gw-renewal-20260601"


@given(st.text(min_size=1, max_size=128).map(names.normal).filter(lambda n: names.name_problem(n) is None))
def test_renewal_names_stay_valid(name: str):
    """Any valid name gives a renewal name that is valid too, with room for a -N."""
    got = expiry.renewal_name(name, T0)
    assert names.name_problem(got) is None and names.name_problem(got + "-999") is None
    assert got.endswith("-renewal-20260101")
