"""Fleet membership: approvals lead back to the founder; revocation withdraws what it signed."""

from __future__ import annotations

from fleet_helpers import Gw, sha

from certdrop.fleet.records import Founder, Heartbeat, Lease, Member, ServiceState
from certdrop.fleet.trust import EMPTY, cascade, check, membership

A, B, C, D = Gw("gw-a"), Gw("gw-b"), Gw("gw-c"), Gw("gw-d")


def test_no_founder_means_no_fleet() -> None:
    """Without a founder record nobody is approved, whatever member records exist."""
    fleet, _ = membership(None, [A.approve(B)])
    assert fleet == EMPTY


def test_the_founder_alone_is_approved() -> None:
    """A fleet of one: its founder approved itself."""
    fleet, rejected = membership(A.founder(), [])
    assert set(fleet.approved) == {"gw-a"} and fleet.approved_by == {"gw-a": "gw-a"}
    assert rejected == []


def test_approvals_chain_back_to_the_founder_in_any_order() -> None:
    """C approved by B approved by A is in, whatever order the records are read in."""
    for members in ([B.approve(C), A.approve(B)], [A.approve(B), B.approve(C)]):
        fleet, rejected = membership(A.founder(), members)
        assert set(fleet.approved) == {"gw-a", "gw-b", "gw-c"}
        assert fleet.approved_by["gw-c"] == "gw-b" and rejected == []


def test_a_forged_founder_is_no_founder() -> None:
    """A founder record signed by a key other than the one it names founds nothing."""
    forged = B.sign(Founder("gw-a", A.sign_key))
    fleet, rejected = membership(forged, [])
    assert fleet == EMPTY and rejected[0][1].startswith("founder")


def test_an_approval_from_outside_the_fleet_is_rejected() -> None:
    """D, never approved, cannot approve C: C stays out and the record is reported."""
    fleet, rejected = membership(A.founder(), [D.approve(C)])
    assert "gw-c" not in fleet.approved
    assert [r for _, r in rejected] == ["member record for gw-c not signed by an approved gateway"]


def test_an_approval_signed_with_a_stolen_name_is_rejected() -> None:
    """A member record that says it is by gw-a but is signed by D's key is refused."""
    forged = D.key.sign(Member("gw-c", C.sign_key, "approved"), "gw-a", 1000)
    fleet, rejected = membership(A.founder(), [forged])
    assert "gw-c" not in fleet.approved and len(rejected) == 1


def test_revoking_withdraws_the_approvals_it_signed() -> None:
    """Revoking B also takes out C, which only B approved; cascade() names both."""
    before, _ = membership(A.founder(), [A.approve(B), B.approve(C)])
    assert cascade(before, "gw-b") == ["gw-b", "gw-c"]
    after, _ = membership(A.founder(), [A.approve(B, at=2000, state="revoked"), B.approve(C)])
    assert set(after.approved) == {"gw-a"} and set(after.revoked) == {"gw-b"}


def test_a_chain_cascades_through_every_step() -> None:
    """Revoking B takes out C (approved by B) and D (approved by C)."""
    fleet, _ = membership(A.founder(), [A.approve(B), B.approve(C), C.approve(D)])
    assert cascade(fleet, "gw-b") == ["gw-b", "gw-c", "gw-d"]
    assert cascade(fleet, "gw-d") == ["gw-d"]


def test_the_founder_cannot_be_revoked() -> None:
    """A revocation of the founder, even by an approved gateway, is refused and changes nothing."""
    fleet, rejected = membership(A.founder(), [A.approve(B), B.approve(A, state="revoked")])
    assert set(fleet.approved) == {"gw-a", "gw-b"}
    assert [r for _, r in rejected] == ["the founder cannot be revoked"]


def test_a_new_identity_needs_a_new_approval() -> None:
    """B restarted with a new key: its new identity is pending, its old key stays approved."""
    b2 = Gw("gw-b")
    fleet, _ = membership(A.founder(), [A.approve(B)], [b2.identity()])
    assert fleet.approved["gw-b"].sign_key == B.sign_key
    assert fleet.pending["gw-b"].sign_key == b2.sign_key
    assert check(b2.certificate(), fleet) == "bad signature"


def test_identities_asking_to_join_are_pending() -> None:
    """An unapproved gateway's self-signed identity is pending; a forged one is rejected."""
    forged = D.key.sign(C.identity().record, "gw-c", 1000)
    fleet, rejected = membership(A.founder(), [], [B.identity(), forged, A.identity()])
    assert set(fleet.pending) == {"gw-b"}
    assert [r for _, r in rejected] == ["identity: bad signature"]


def test_records_from_approved_gateways_pass_and_others_do_not() -> None:
    """A certificate from an approved gateway passes; from a pending one it is refused."""
    fleet, _ = membership(A.founder(), [A.approve(B)], [C.identity()])
    assert check(B.certificate(), fleet) is None
    assert check(C.certificate(), fleet) == "gw-c is not an approved gateway"


def test_a_gateway_speaks_only_for_its_own_services_and_leases() -> None:
    """gw-b cannot write gw-a's service state, nor a lease held by gw-a."""
    fleet, _ = membership(A.founder(), [A.approve(B)])
    state = ServiceState("gw-a", "web", "https", None, None, "ok", "")
    assert check(B.sign(state), fleet) == "gw-b wrote about gateway gw-a"
    assert check(A.sign(state), fleet) is None
    assert check(B.sign(Lease(sha("c"), "gw-a", 9)), fleet) == "gw-b wrote a lease held by gw-a"


def test_heartbeats_come_from_pending_gateways_too() -> None:
    """A pending gateway's heartbeat is accepted (status shows it), a forged one is not."""
    fleet, _ = membership(A.founder(), [], [C.identity()])
    beat = Heartbeat("gw-c", "0.1.0", ("web",))
    assert check(C.sign(beat), fleet) is None
    assert check(D.key.sign(beat, "gw-c", 1), fleet) == "bad signature"
    assert (
        check(D.sign(Heartbeat("gw-d", "0.1.0", ())), fleet) == "gw-d has no identity in the fleet"
    )
