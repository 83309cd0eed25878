"""Consortium governance (majority of member hospitals) and the permissioning contracts the
node consults: node allow-list and account allow-list."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from eth_utils import keccak

from contracts.bindings import Role
from contracts.permissioning import (
    allowed_nodes,
    permissioning_changed,
    refresh_node_allow_list,
    transaction_allowed,
)
from network.permissions import AllowList
from tests.contract_chain import VALIDATOR, Consortium, person_id

NEW_NODE = keccak(b"auditor node")[:20]


@pytest.fixture
def c(tmp_path: Path) -> Iterator[Consortium]:
    consortium = Consortium(tmp_path / "chain")
    yield consortium
    consortium.close()


def _propose(c: Consortium, admin: str, target: bytes, data: bytes) -> None:
    c.ok(admin, c.governance.propose(target, data), to=c.governance.address)


def test_majority_of_members_adds_a_node(c: Consortium) -> None:
    call = c.call_fn()
    g = c.governance
    assert c.nodes.allowed_nodes(call) == [VALIDATOR]
    assert g.votes_needed(call) == 2  # 3 members

    result = c.ok("admin-a", g.propose(c.nodes.address, c.nodes.add_node(NEW_NODE)),
                  to=g.address)
    created, voted = g.decode_logs(result.logs)
    assert created.name == "ProposalCreated" and created.args["member"] == 1
    assert voted.args == {"id": 1, "member": 1, "admin": c.address("admin-a"), "yesVotes": 1,
                          "needed": 2}
    assert not c.nodes.is_node_allowed(call, NEW_NODE)

    # A non-member voting: staff, patients, outsiders have no vote.
    for caller in ("doc-b", "pat-1", "outsider"):
        error = c.expect_revert(caller, g.vote(1), to=g.address)
        assert error.name == "NotMemberAdmin" and error.args == {"caller": c.address(caller)}
    assert c.expect_revert("admin-a", g.vote(1), to=g.address).name == "AlreadyVoted"
    assert g.proposal(call, 1).yes_votes == 1

    result = c.ok("admin-b", g.vote(1), to=g.address)
    names = [e.name for e in g.decode_logs(result.logs)]
    assert names == ["Voted", "ProposalExecuted"]
    [added] = c.nodes.decode_logs(result.logs)
    assert added.name == "EntryAdded" and added.args == {"entry": NEW_NODE}
    assert c.nodes.allowed_nodes(call) == [VALIDATOR, NEW_NODE]
    assert c.nodes.connection_allowed(call, VALIDATOR, NEW_NODE)
    proposal = g.proposal(call, 1)
    assert proposal.executed and proposal.yes_votes == 2 and proposal.target == c.nodes.address
    assert g.has_voted(call, 1, 2) and not g.has_voted(call, 1, 3)
    assert c.expect_revert("admin-c", g.vote(1), to=g.address).name == "ProposalAlreadyExecuted"


def test_governed_contracts_refuse_direct_calls_and_bad_proposals(c: Consortium) -> None:
    g = c.governance
    for target, data in (
        (c.nodes.address, c.nodes.add_node(NEW_NODE)),
        (c.accounts.address, c.accounts.add_account(c.address("outsider"))),
    ):
        assert c.expect_revert("admin-a", data, to=target).name == "NotGovernance"
    assert c.expect_revert("admin-a", g.propose(c.address("outsider"), b"\x00" * 4),
                           to=g.address).name == "InvalidTarget"
    assert c.expect_revert("admin-a", g.propose(c.nodes.address, b"\x01"),
                           to=g.address).name == "InvalidCalldata"
    assert c.expect_revert("doc-a", g.propose(c.nodes.address, c.nodes.add_node(NEW_NODE)),
                           to=g.address).name == "NotMemberAdmin"
    assert c.expect_revert("admin-a", g.vote(7), to=g.address).name == "UnknownProposal"


def test_failing_governed_call_keeps_the_proposal_open(c: Consortium) -> None:
    g = c.governance
    _propose(c, "admin-a", c.nodes.address, c.nodes.remove_node(VALIDATOR))
    error = c.expect_revert("admin-b", g.vote(1), to=g.address)
    assert error.name == "LastEntry"  # the last node cannot be removed
    assert g.proposal(c.call_fn(), 1).yes_votes == 1
    assert not g.proposal(c.call_fn(), 1).executed


def test_proposals_expire(c: Consortium) -> None:
    g = c.governance
    _propose(c, "admin-a", c.nodes.address, c.nodes.add_node(NEW_NODE))
    deadline = g.proposal(c.call_fn(), 1).deadline
    assert deadline == c.now + 7 * 86_400
    error = c.expect_revert("admin-b", g.vote(1), to=g.address, timestamp=deadline)
    assert error.name == "ProposalExpired"


def test_new_member_joins_by_vote_and_changes_the_majority(c: Consortium) -> None:
    g = c.governance
    new_admin = c.address("guardian-admin")
    _propose(c, "admin-b", c.medledger.address,
             c.medledger.add_member("Hospital D", new_admin, person_id("admin-d")))
    c.ok("admin-c", g.vote(1), to=g.address)
    call = c.call_fn()
    assert c.medledger.member(call, 4) == ("Hospital D", True)
    assert c.medledger.member_admin_of(call, new_admin) == 4
    assert g.votes_needed(call) == 3  # 4 members now
    c.ok("guardian-admin", c.medledger.register_staff(c.address("outsider"), person_id("d-doc"),
                                                      Role.DOCTOR))
    # Suspend hospital D (3 of 4 votes): its admin loses its vote.
    _propose(c, "admin-a", c.medledger.address, c.medledger.set_member_active(4, False))
    c.ok("admin-b", g.vote(2), to=g.address)
    assert not g.proposal(call, 2).executed
    c.ok("admin-c", g.vote(2), to=g.address)
    assert c.medledger.member(call, 4) == ("Hospital D", False)
    _propose(c, "admin-a", c.nodes.address, c.nodes.add_node(NEW_NODE))
    assert c.expect_revert("guardian-admin", g.vote(3), to=g.address).name == "NotMemberAdmin"
    assert g.votes_needed(call) == 2


def test_account_allow_list(c: Consortium) -> None:
    call = c.call_fn()
    assert transaction_allowed(call, c.address("doc-a"), c.medledger.address)
    assert transaction_allowed(call, c.address("pat-3"))  # a contract creation too
    assert transaction_allowed(call, VALIDATOR)  # explicit genesis entry
    assert not transaction_allowed(call, c.address("outsider"))
    assert c.accounts.allowed_accounts(call) == [VALIDATOR]

    _propose(c, "admin-a", c.accounts.address, c.accounts.add_account(c.address("outsider")))
    result = c.ok("admin-c", c.governance.vote(1), to=c.governance.address)
    assert permissioning_changed(result.logs) == (False, True)
    assert transaction_allowed(call, c.address("outsider"))

    result = c.ok("admin-a", c.medledger.set_account_active(c.address("doc-a"), False))
    assert permissioning_changed(result.logs) == (False, True)
    assert not transaction_allowed(call, c.address("doc-a"))

    # A suspended member's staff may no longer transact; its patients still may.
    _propose(c, "admin-a", c.medledger.address, c.medledger.set_member_active(2, False))
    c.ok("admin-c", c.governance.vote(2), to=c.governance.address)
    assert not transaction_allowed(call, c.address("doc-b"))
    assert not transaction_allowed(call, c.address("admin-b"))
    assert transaction_allowed(call, c.address("pat-3"))

    _propose(c, "admin-a", c.accounts.address, c.accounts.remove_account(c.address("outsider")))
    c.ok("admin-c", c.governance.vote(3), to=c.governance.address)
    assert not transaction_allowed(call, c.address("outsider"))
    _propose(c, "admin-a", c.accounts.address, c.accounts.remove_account(c.address("outsider")))
    error = c.expect_revert("admin-c", c.governance.vote(4), to=c.governance.address)
    assert error.name == "NotAllowed"


def test_node_feeds_the_network_allow_list(c: Consortium) -> None:
    validators = (VALIDATOR,)
    network = AllowList(validators)
    changes: list[int] = []
    network.subscribe(lambda: changes.append(len(network)))
    assert refresh_node_allow_list(c.call_fn(), network, validators) == frozenset(validators)
    assert changes == []  # nothing changed

    _propose(c, "admin-a", c.nodes.address, c.nodes.add_node(NEW_NODE))
    result = c.ok("admin-b", c.governance.vote(1), to=c.governance.address)
    assert permissioning_changed(result.logs) == (True, False)
    refresh_node_allow_list(c.call_fn(), network, validators)
    assert NEW_NODE in network and changes == [2]

    _propose(c, "admin-a", c.nodes.address, c.nodes.remove_node(NEW_NODE))
    c.ok("admin-b", c.governance.vote(2), to=c.governance.address)
    refresh_node_allow_list(c.call_fn(), network, validators)
    assert NEW_NODE not in network and VALIDATOR in network
    assert allowed_nodes(c.call_fn()) == frozenset({VALIDATOR})
    # Validators stay allowed even if a vote removed them from the on-chain list.
    assert allowed_nodes(c.call_fn(), [b"\x42" * 20]) == frozenset({VALIDATOR, b"\x42" * 20})
