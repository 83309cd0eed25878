"""Groth16 proofs made with snarkjs, verified on a real py-evm chain by the predeployed
verifiers and by py_ecc: anonymous research enrolment and attribute predicates.

Skipped (with the reason) when node or contracts/zk/node_modules is missing; CI installs it.
The rejection tests in this module run before the acceptance tests use up nullifiers.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, replace
from pathlib import Path

import pytest

from contracts.bindings import ContractError, LogEntry
from contracts.zk_bindings import (
    AttributeRegistry,
    ResearchConsent,
    attribute_verifier,
    membership_verifier,
)
from node.zk.groth16 import Proof, load_verifying_key, verify
from node.zk.identity import (
    attribute_commitment,
    identity_commitment,
    new_salt,
    new_secret,
    signal_hash,
    study_id,
)
from node.zk.merkle import MerkleTree
from node.zk.poseidon import FIELD, poseidon
from node.zk.prover import (
    AttributeOp,
    AttributeProof,
    MembershipProof,
    ProofError,
    prove,
    prove_attribute,
    prove_membership,
)
from tests.contract_chain import CallReverted, Consortium, person_id
from tests.zk_support import requires_snarkjs, view_revert, zk_revert

pytestmark = requires_snarkjs

RC = ResearchConsent()
AR = AttributeRegistry()
AGE = 1  # attribute kind: age in years


@dataclass
class World:
    cons: Consortium
    tree: MerkleTree
    secrets: dict[str, int]
    study1: int
    study2: int
    salt: int
    commitment: int  # attested age 42 of pat-1
    other_commitment: int  # attested age 17 of pat-3


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[World]:
    cons = Consortium(Path(tmp_path_factory.mktemp("zk")))
    secrets = {name: new_secret() for name in ("pat-1", "pat-2", "pat-3")}
    tree = MerkleTree()
    for name, secret in secrets.items():
        cons.ok(name, RC.join_research(identity_commitment(secret)), to=RC.address)
        tree.insert(identity_commitment(secret))
    study1, study2 = study_id("cohort-1"), study_id("cohort-2")
    cons.ok("researcher-a", RC.open_study(study1, b"\x01" * 32), to=RC.address)
    cons.ok("researcher-b", RC.open_study(study2, b"\x02" * 32), to=RC.address)
    salt = new_salt()
    commitment = attribute_commitment(42, salt)
    other = attribute_commitment(17, new_salt())
    cons.ok("doc-a", AR.attest(commitment, cons.address("pat-1"), AGE), to=AR.address)
    cons.ok("doc-b", AR.attest(other, cons.address("pat-3"), AGE), to=AR.address)
    try:
        yield World(cons, tree, secrets, study1, study2, salt, commitment, other)
    finally:
        cons.close()


@pytest.fixture(scope="module")
def membership(world: World) -> MembershipProof:
    """pat-2 proves research consent for study 1, binding a payload hash."""
    return prove_membership(world.secrets["pat-2"], world.tree, world.study1,
                            signal_hash(b"encrypted data package for cohort-1"))


@pytest.fixture(scope="module")
def age_over_18(world: World) -> AttributeProof:
    return prove_attribute(42, world.salt, AttributeOp.GE, 18, context=world.study1)


def _enroll(proof: MembershipProof) -> bytes:
    return RC.enroll(proof.study_id, proof.root, proof.nullifier, proof.signal_hash,
                     proof.proof.to_calldata())


def _prove_attr(proof: AttributeProof) -> bytes:
    return AR.prove_attribute(proof.commitment, proof.op, proof.threshold, proof.context,
                              proof.proof.to_calldata())


# ------------------------------------------------------------------------ rejections first


def test_membership_proof_for_another_study_is_rejected(
    world: World, membership: MembershipProof
) -> None:
    other = replace(membership, study_id=world.study2)
    assert zk_revert(world.cons, "outsider", RC.address, _enroll(other)).name == "InvalidProof"


def test_membership_with_tampered_public_inputs_is_rejected(
    world: World, membership: MembershipProof
) -> None:
    # Each pairing check costs about a second in py-evm (py_ecc), so these run as eth_call.
    for tampered in (replace(membership, signal_hash=membership.signal_hash + 1),
                     replace(membership, nullifier=membership.nullifier + 1)):
        assert view_revert(world.cons, RC.address, _enroll(tampered)).name == "InvalidProof"


def test_non_member_cannot_prove_or_use_a_forged_tree(world: World) -> None:
    outsider = new_secret()
    with pytest.raises(ProofError, match="not in the research-consent tree"):
        prove_membership(outsider, world.tree, world.study1)
    # A tree of its own that contains the outsider gives a valid proof of the wrong statement:
    forged_tree = MerkleTree([*world.tree.leaves, identity_commitment(outsider)])
    forged = prove_membership(outsider, forged_tree, world.study1)
    error = zk_revert(world.cons, "outsider", RC.address, _enroll(forged))
    assert error.name == "UnknownRoot" and error.args["root"] == forged_tree.root


def test_attribute_proof_with_changed_statement_is_rejected(
    world: World, age_over_18: AttributeProof
) -> None:
    variants = [
        replace(age_over_18, threshold=41),  # still true of 42, but not what was proven
        replace(age_over_18, op=AttributeOp.LT),
        replace(age_over_18, context=world.study2),
        replace(age_over_18, commitment=world.other_commitment),
    ]
    for tampered in variants:
        assert view_revert(world.cons, AR.address, _prove_attr(tampered)).name == (
            "InvalidProof"), tampered


def test_out_of_range_attribute_cannot_be_proven(world: World) -> None:
    with pytest.raises(ProofError, match="does not satisfy GE 50"):
        prove_attribute(42, world.salt, AttributeOp.GE, 50)
    # snarkjs itself refuses a false statement (the Python pre-check bypassed) ...
    with pytest.raises(ProofError):
        prove("attribute", {"commitment": world.commitment, "threshold": 50, "op": 0,
                            "context": 0, "value": 42, "salt": world.salt})
    # ... and a value outside 64 bits, which would otherwise wrap the comparison.
    big = 2**64 + 5
    with pytest.raises(ProofError):
        prove("attribute", {"commitment": poseidon([big, 1]), "threshold": 3, "op": 0,
                            "context": 0, "value": big, "salt": 1})
    # the contract refuses thresholds the circuit cannot represent
    data = AR.encode("verifyAttribute", world.commitment, 0, 2**64, 0, [0] * 8)
    assert view_revert(world.cons, AR.address, data).name == "InvalidThreshold"


def _agreement_cases(
    membership: MembershipProof, age_over_18: AttributeProof
) -> list[tuple[str, Proof, list[int], bool]]:
    p = membership.proof
    a_plus = (p.a[0], (p.a[1] + 1) % FIELD)
    b_swapped = ((p.b[0][1], p.b[0][0]), (p.b[1][1], p.b[1][0]))
    return [
        ("membership", p, membership.public, True),
        ("attribute", age_over_18.proof, age_over_18.public, True),
        ("attribute", age_over_18.proof, [age_over_18.commitment, 19, 0, age_over_18.context],
         False),
        ("membership", Proof(a_plus, p.b, p.c), membership.public, False),  # A off the curve
        ("membership", Proof(p.c, p.b, p.a), membership.public, False),
        ("membership", Proof(p.a, b_swapped, p.c), membership.public, False),  # B off the twist
        ("membership", p, [*membership.public[:3], FIELD], False),  # input not in the field
        ("membership", p, [membership.public[0] + 1, *membership.public[1:]], False),
    ]


def _check_agreement(world: World, cases: list[tuple[str, Proof, list[int], bool]]) -> None:
    call = world.cons.call_fn()
    verifiers = {"membership": membership_verifier(), "attribute": attribute_verifier()}
    for circuit, proof, public, expected in cases:
        on_chain = verifiers[circuit].verify_proof(call, proof.to_calldata(), public)
        off_chain = verify(load_verifying_key(circuit), proof, public)
        assert on_chain is off_chain is expected, (circuit, proof, public)


def test_py_ecc_agrees_with_the_chain_verifier(
    world: World, membership: MembershipProof, age_over_18: AttributeProof
) -> None:
    _check_agreement(world, _agreement_cases(membership, age_over_18)[:4])


@pytest.mark.slow
def test_py_ecc_agrees_with_the_chain_verifier_on_more_tampering(
    world: World, membership: MembershipProof, age_over_18: AttributeProof
) -> None:
    _check_agreement(world, _agreement_cases(membership, age_over_18)[4:])


# ------------------------------------------------------------------------ acceptance


def test_valid_membership_enrols_once(world: World, membership: MembershipProof) -> None:
    cons, call = world.cons, world.cons.call_fn()
    assert not RC.nullifier_used(call, membership.nullifier)
    assert RC.verify_membership(call, membership.study_id, membership.root, membership.nullifier,
                                membership.signal_hash, membership.proof.to_calldata())
    result = cons.ok("researcher-b", _enroll(membership), to=RC.address)  # any account relays
    [event] = RC.decode_logs(result.logs)
    assert event.name == "Enrolled"
    assert event.args == {"studyId": world.study1, "nullifier": membership.nullifier,
                          "signalHash": membership.signal_hash, "root": membership.root}
    assert RC.study(call, world.study1).enrolled == 1
    assert RC.nullifier_used(call, membership.nullifier)
    error = zk_revert(cons, "outsider", RC.address, _enroll(membership))
    assert error.name == "NullifierUsed"
    assert RC.study(call, world.study1).enrolled == 1


@pytest.mark.slow
def test_same_patient_other_study_gets_an_unlinkable_nullifier(
    world: World, membership: MembershipProof
) -> None:
    second = prove_membership(world.secrets["pat-2"], world.tree, world.study2)
    assert second.nullifier != membership.nullifier
    world.cons.ok("outsider", _enroll(second), to=RC.address)
    assert RC.study(world.cons.call_fn(), world.study2).enrolled == 1


def test_proof_on_a_replaced_root_is_accepted_within_the_window(world: World) -> None:
    cons = world.cons
    early = prove_membership(world.secrets["pat-3"], world.tree, world.study1)
    # a new patient joins: the root the proof used is replaced
    newcomer = "guardian-admin"
    cons.ok("admin-a", cons.medledger.register_patient(cons.address(newcomer),
                                                       person_id(newcomer)))
    joined = cons.ok(newcomer, RC.join_research(identity_commitment(new_secret())),
                     to=RC.address)
    assert RC.current_root(cons.call_fn()) != early.root
    # an hour after the root was replaced, the proof is refused before any pairing check
    try:
        cons.chain.call(RC.address, _enroll(early), timestamp=joined.timestamp + 3600)
    except CallReverted as exc:
        assert RC.decode_error(exc.data) == ContractError("UnknownRoot", {"root": early.root})
    else:
        raise AssertionError("a root replaced an hour ago must be refused")
    cons.ok("outsider", _enroll(early), to=RC.address)
    assert RC.study(cons.call_fn(), world.study1).enrolled == 2


def test_valid_attribute_proofs_are_recorded(world: World, age_over_18: AttributeProof) -> None:
    cons, call = world.cons, world.cons.call_fn()
    assert AR.verify_attribute(call, age_over_18.commitment, age_over_18.op,
                               age_over_18.threshold, age_over_18.context,
                               age_over_18.proof.to_calldata())
    result = cons.ok("researcher-a", _prove_attr(age_over_18), to=AR.address)
    [event] = AR.decode_logs(result.logs)
    assert event.name == "AttributeProven"
    assert event.args["patient"] == cons.address("pat-1") and event.args["kind"] == AGE
    assert (event.args["op"], event.args["threshold"]) == (0, 18)
    under_50 = prove_attribute(42, world.salt, AttributeOp.LT, 50)
    assert cons.send("outsider", _prove_attr(under_50), to=AR.address).success


@pytest.mark.slow
def test_withdrawn_patient_can_no_longer_enrol(world: World) -> None:
    cons, call = world.cons, world.cons.call_fn()
    secret = world.secrets["pat-1"]
    tree = _chain_tree(world)  # earlier tests may have added leaves
    assert tree.root == RC.current_root(call)
    made_before = prove_membership(secret, tree, world.study2)
    index = tree.index_of(identity_commitment(secret))
    cons.ok("pat-1", RC.leave_research(identity_commitment(secret), tree.path(index).siblings),
            to=RC.address)
    tree.remove(index)
    assert RC.current_root(call) == tree.root
    error = zk_revert(cons, "outsider", RC.address, _enroll(made_before))
    assert error.name == "UnknownRoot"
    with pytest.raises(ProofError, match="not in the research-consent tree"):
        prove_membership(secret, tree, world.study2)


def _chain_tree(world: World) -> MerkleTree:
    """The tree as the chain holds it now, from the ResearchConsentGiven logs of the world."""
    cons = world.cons
    head = cons.chain.chain.head.block_number
    leaves: dict[int, int] = {}
    for number in range(1, head + 1):
        block = cons.chain.chain.block_by_number(number)
        for receipt in cons.chain.chain.receipts(block):
            for log in receipt.logs:
                entry = LogEntry(bytes(log.address), tuple(t.to_bytes(32, "big")
                                                           for t in log.topics), bytes(log.data))
                event = RC.decode_log(entry)
                if event is not None and event.name == "ResearchConsentGiven":
                    leaves[event.args["leafIndex"]] = event.args["commitment"]
    return MerkleTree(leaves[i] for i in range(len(leaves)))
