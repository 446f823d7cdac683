"""The fleet's decision rules: the later decision wins deterministically, leases expire."""

from __future__ import annotations

import pytest
from fleet_helpers import Gw, sha
from hypothesis import given
from hypothesis import strategies as st

from certdrop.errors import UserError
from certdrop.fleet.records import Envelope, Lease, Withdrawal
from certdrop.fleet.rules import (
    decided_ms,
    effective_assignment,
    held_keys,
    keys_to_seal,
    lease_action,
    publish_action,
    resolve_targets,
    stale_gateways,
    stamp_after,
    withdrawal_action,
)

A, B, C = Gw("gw-a"), Gw("gw-b"), Gw("gw-c")


def test_later_decision_wins_and_gateway_name_breaks_ties() -> None:
    """Of two decisions for one service the later wins; at the same ms the greater name wins."""
    early, late = A.assign("gw-b", "web", "x", 100), C.assign("gw-b", "web", "y", 200)
    assert effective_assignment("gw-b", "web", [late, early]) == late
    tie_a, tie_c = A.assign("gw-b", "web", "x", 300), C.assign("gw-b", "web", "y", 300)
    assert effective_assignment("gw-b", "web", [tie_c, tie_a]) == tie_c


def test_star_and_named_assignments_compete_by_time() -> None:
    """A later '*/web' overrides an earlier 'gw-b/web' on gw-b, and the reverse."""
    named, star = A.assign("gw-b", "web", "x", 100), B.assign("*", "web", "y", 200)
    assert effective_assignment("gw-b", "web", [named, star]) == star
    newer_named = A.assign("gw-b", "web", "z", 300)
    assert effective_assignment("gw-b", "web", [named, star, newer_named]) == newer_named
    assert effective_assignment("gw-c", "web", [named, star, newer_named]) == star


def test_other_services_and_gateways_do_not_count() -> None:
    """Decisions for another service or another gateway leave this one unassigned."""
    decisions = [A.assign("gw-c", "web", "x", 100), A.assign("*", "mta", "y", 100)]
    assert effective_assignment("gw-b", "web", decisions) is None


def test_an_unassignment_is_a_decision_too() -> None:
    """A later decision with no certificate wins over an earlier assignment."""
    won = effective_assignment(
        "gw-b", "web", [A.assign("*", "web", "x", 100), A.assign("gw-b", "web", None, 200)]
    )
    assert won is not None and won.record.sha256 is None  # type: ignore[attr-defined]


@given(st.permutations(list(range(6))), st.lists(st.integers(0, 3), min_size=6, max_size=6))
def test_every_reader_picks_the_same_winner(perm: list[int], times: list[int]) -> None:
    """Whatever order the records arrive in, the winner is the same (the fleet converges)."""
    gws = [A, B, C]
    decisions = [
        gws[i % 3].assign("*" if i % 2 else "gw-b", "web", f"cert-{i}", times[i]) for i in range(6)
    ]
    first = effective_assignment("gw-b", "web", decisions)
    assert effective_assignment("gw-b", "web", [decisions[i] for i in perm]) == first


def test_a_new_decision_is_stamped_after_what_was_seen() -> None:
    """A gateway whose clock is behind still stamps its decision after the one it saw."""
    seen = [C.assign("*", "web", "x", 5000)]
    assert stamp_after(1000, seen) == 5001
    assert stamp_after(9000, seen) == 9000
    assert stamp_after(7, []) == 7


def test_publish_writes_newer_and_drops_older_decisions() -> None:
    """Publishing over nothing or an older decision writes; over a later one it is dropped."""
    old, new = A.assign("*", "web", "x", 100), B.assign("*", "web", "y", 200)
    assert publish_action(None, old) == "write"
    assert publish_action(old, new) == "write"
    assert publish_action(new, old) == "superseded"
    assert publish_action(new, new) == "done"  # a put that timed out but committed


def test_certificates_are_never_overwritten() -> None:
    """The same certificate published by a second gateway finds it done, not replaced."""
    assert publish_action(A.certificate("x"), B.certificate("x")) == "done"


def test_leases_are_taken_only_when_free_or_expired() -> None:
    """A free lease is acquired, its holder extends it, others wait until expiry + grace."""
    held = A.sign(Lease(sha("c"), "gw-a", 10_000))
    assert lease_action(None, "gw-b", 0, 600, 30).kind == "acquire"
    assert lease_action(held, "gw-a", 9_000, 600, 30).kind == "extend"
    busy = lease_action(held, "gw-b", 10_020, 600, 30)
    assert (busy.kind, busy.holder, busy.expires) == ("busy", "gw-a", 10_000)
    taken = lease_action(held, "gw-b", 10_031, 600, 30)
    assert (taken.kind, taken.holder, taken.expires) == ("take_over", "gw-b", 10_631)


def test_every_key_is_sealed_to_every_approved_gateway_once() -> None:
    """Only the missing (key, recipient) pairs are planned; held keys are listed per gateway."""
    sealed = [("k1", "gw-a"), ("k1", "gw-b"), ("k2", "gw-a")]
    assert keys_to_seal(["k1", "k2"], ["gw-a", "gw-b", "gw-c"], sealed) == [
        ("k1", "gw-c"),
        ("k2", "gw-b"),
        ("k2", "gw-c"),
    ]
    assert held_keys("gw-a", sealed) == ["k1", "k2"] and held_keys("gw-c", sealed) == []


def test_gateways_not_seen_for_a_while_are_named() -> None:
    """A gateway whose last heartbeat is older than the limit is stale; others are not."""
    assert stale_gateways({"gw-a": 1000, "gw-b": 9000}, 10_000, 5000) == ["gw-a"]


def test_publishing_a_lease_never_takes_a_live_one_from_another_gateway() -> None:
    """Two gateways racing for a lease: whoever finds the other's live lease there backs
    off, even with a later stamp; an expired lease, garbage, or a forged one is taken."""
    from certdrop.fleet.publish import judge
    from certdrop.fleet.trust import membership

    fleet, _ = membership(A.founder(), [A.approve(B)])
    held_by_a = A.sign(Lease(sha("c"), "gw-a", 10_000), at=100)
    b_wants = B.sign(Lease(sha("c"), "gw-b", 20_000), at=9_999)
    assert judge(held_by_a.encode(), b_wants, fleet, now_ms=5_000) == "superseded"
    assert judge(held_by_a.encode(), b_wants, fleet, now_ms=80_001) == "write"  # expired + grace
    assert judge(None, b_wants, fleet, now_ms=5_000) == "write"
    assert judge(b"garbage", b_wants, fleet, now_ms=5_000) == "write"
    forged = C.sign(Lease(sha("c"), "gw-c", 10**9), at=100)  # gw-c is not approved
    assert judge(forged.encode(), b_wants, fleet, now_ms=5_000) == "write"
    assert judge(held_by_a.encode(), A.sign(Lease(sha("c"), "gw-a", 30_000), 200), fleet, 5_000) == "write"


def test_a_stale_decision_is_not_forced_over_a_newer_one() -> None:
    """judge() drops an older assignment and finds a repeat of the stored one done."""
    from certdrop.fleet.publish import judge
    from certdrop.fleet.trust import membership

    fleet, _ = membership(A.founder(), [A.approve(B)])
    newer = B.assign("*", "web", "y", 200)
    assert judge(newer.encode(), A.assign("*", "web", "x", 100), fleet, 0) == "superseded"
    assert judge(newer.encode(), newer, fleet, 0) == "done"


def test_an_override_takes_a_live_lease_and_changes_nothing_else() -> None:
    """`renew --take-over`: another gateway's live lease is taken; a free, expired or
    own lease is taken as without the override."""
    held = A.sign(Lease(sha("c"), "gw-a", 10_000))
    forced = lease_action(held, "gw-b", 5_000, 600, 30, override=True)
    assert (forced.kind, forced.holder, forced.expires) == ("override", "gw-b", 5_600)
    assert lease_action(None, "gw-b", 0, 600, 30, override=True).kind == "acquire"
    assert lease_action(held, "gw-a", 9_000, 600, 30, override=True).kind == "extend"
    assert lease_action(held, "gw-b", 10_031, 600, 30, override=True).kind == "take_over"


def test_only_an_override_is_written_over_another_gateways_live_lease() -> None:
    """judge() lets a taken-over lease replace a live one; without the override it backs off."""
    from certdrop.fleet.publish import judge
    from certdrop.fleet.trust import membership

    fleet, _ = membership(A.founder(), [A.approve(B)])
    held_by_a = A.sign(Lease(sha("c"), "gw-a", 10_000), at=100)
    b_wants = B.sign(Lease(sha("c"), "gw-b", 20_000), at=200)
    assert judge(held_by_a.encode(), b_wants, fleet, 5_000) == "superseded"
    assert judge(held_by_a.encode(), b_wants, fleet, 5_000, override=True) == "write"


KNOWN = {"gw-a": {"web", "mail"}, "gw-b": {"web"}, "gw-c": set()}


def test_targets_name_this_gateway_another_or_every_one() -> None:
    """A bare SERVICE is this gateway's; GATEWAY/SERVICE and */SERVICE pass when some
    gateway has that service; repeats count once."""
    found = resolve_targets(["mail", "gw-b/web", "*/web", "gw-b/web"], "gw-a", KNOWN)
    assert found == [("gw-a", "mail"), ("gw-b", "web"), ("*", "web")]
    assert resolve_targets(["*/mail"], "gw-c", KNOWN) == [("*", "mail")]


@pytest.mark.parametrize(
    ("targets", "problem"),
    [
        (["gw-x/web"], "no gateway named 'gw-x' in the fleet"),
        (["gw-b/mail"], "gw-b has no service named 'mail' (it has: web)"),
        (["gw-c/web"], "gw-c has no service named 'web' (it has: none)"),
        (["*/smtp"], "no gateway of the fleet has a service named 'smtp'"),
        (["smtp"], "gw-a has no service named 'smtp' (it has: mail, web)"),
        (["a/b/web"], "no gateway named 'a/b' in the fleet"),
    ],
)
def test_an_unknown_gateway_or_service_is_named(targets: list[str], problem: str) -> None:
    """Each unknown target is refused with a message naming it and where to look."""
    with pytest.raises(UserError) as caught:
        resolve_targets(["web", *targets], "gw-a", KNOWN)
    assert str(caught.value) == f"{problem}; `certdrop fleet status` lists them"


def test_every_unknown_target_is_named_at_once() -> None:
    """Two bad targets: one error naming both."""
    with pytest.raises(UserError, match=r"'gw-x'.*'smtp'"):
        resolve_targets(["gw-x/web", "*/smtp"], "gw-a", KNOWN)


def withdrawal(gw: Gw, at: int, cert: str = "leaf") -> Envelope:
    return gw.sign(Withdrawal(sha(cert), sha("key-" + cert), "web"), at)


def test_a_certificate_and_its_withdrawal_are_ordered_by_when_they_were_decided() -> None:
    """Under one fingerprint the later of certificate and withdrawal wins, whoever writes
    last: an old certificate row published late is superseded, a new drop wins."""
    old_cert = A.sign(A.certificate("leaf").record, 1000)
    gone = withdrawal(B, 2000)
    new_drop = C.sign(A.certificate("leaf").record, 3000)
    assert publish_action(old_cert, gone) == "write"
    assert publish_action(gone, old_cert) == "superseded"
    assert publish_action(gone, new_drop) == "write"
    assert publish_action(new_drop, gone) == "superseded"
    assert publish_action(gone, gone) == "done"
    assert publish_action(old_cert, new_drop) == "done"  # certificates are still immutable


def test_a_gateway_applies_a_withdrawal_once_keeps_what_it_uses_and_its_newer_drop() -> None:
    """Each withdrawal is applied once; a copy a service here wants is kept; a certificate
    recorded here after the withdrawal (waiting in the outbox) is a newer decision."""
    gone = withdrawal(B, 2000)
    assert withdrawal_action(gone, None, None, wanted=False) == "delete"
    assert withdrawal_action(gone, None, None, wanted=True) == "keep"
    assert withdrawal_action(gone, (2000, "gw-b"), None, wanted=False) == "applied"
    assert withdrawal_action(gone, (1500, "gw-a"), None, wanted=False) == "delete"
    assert withdrawal_action(gone, None, 2500, wanted=False) == "newer"
    assert withdrawal_action(gone, None, 1500, wanted=False) == "delete"  # a stale row


def test_an_outbox_stamp_reads_to_the_millisecond() -> None:
    """The trigger's ms stamp and an older row's second stamp both read; junk reads None."""
    assert decided_ms("1970-01-01T00:00:01.250Z") == 1250
    assert decided_ms("1970-01-01T00:00:02Z") == 2000
    assert decided_ms("yesterday") is None
    assert decided_ms("1970-01-01T00:00:02") is None  # no zone: not ours
