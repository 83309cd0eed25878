"""ZK system contracts on a real py-evm chain, without proofs (no npm needed): Poseidon on chain
vs Python, the incremental tree vs the Python mirror, who may join, studies, root history,
attestations, and the proof encodings."""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Iterator
from pathlib import Path

import pytest
import rlp
from eth_utils import keccak

from contracts.artifacts import load_artifact
from contracts.zk_bindings import AttributeRegistry, PoseidonT3, ResearchConsent
from genesis.system import POSEIDON_T3_ADDRESS, SYSTEM_CONTRACTS
from node.zk.groth16 import Proof, ProofFormatError
from node.zk.identity import attribute_commitment, identity_commitment, study_id
from node.zk.merkle import MerkleTree, root_from_path, zero_hashes
from node.zk.poseidon import FIELD, poseidon
from tests.contract_chain import Consortium
from tests.zk_support import view_revert, zk_revert

RC = ResearchConsent()
AR = AttributeRegistry()
DUMMY_PROOF = [1, 2, 3, 4, 5, 6, 7, 8]


@pytest.fixture
def cons(tmp_path: Path) -> Iterator[Consortium]:
    consortium = Consortium(tmp_path)
    try:
        yield consortium
    finally:
        consortium.close()


def test_poseidon_matches_circomlib_vectors_and_the_chain(cons: Consortium) -> None:
    # circomlibjs test vectors
    assert poseidon([1, 2]) == (
        7853200120776062878684798364095072458815029376092732009249414926327459813530)
    assert poseidon([1]) == (
        18586133768512220936620570745912940619677854269274689475585506675881198879027)
    on_chain = PoseidonT3()
    for left, right in [(0, 0), (1, 2), (FIELD - 1, 12345), (2**200, 7)]:
        assert on_chain.hash(cons.call_fn(), left, right) == poseidon([left, right])
    with pytest.raises(ValueError):
        poseidon([FIELD])
    with pytest.raises(ValueError):
        poseidon([1, 2, 3])


def test_poseidon_creation_code_deploys_the_predeployed_runtime(cons: Consortium) -> None:
    artifact = load_artifact("PoseidonT3")
    sender = cons.address("outsider")
    state = cons.chain.chain.state_at(cons.chain.chain.head)
    created = keccak(rlp.encode([sender, state.get_nonce(sender)]))[12:]
    deployed = cons.chain.send(cons.keys["outsider"], None, artifact.bytecode)
    assert deployed.success is True
    state = cons.chain.chain.state_at(cons.chain.chain.head)
    assert state.get_code(created) == state.get_code(POSEIDON_T3_ADDRESS)
    assert state.get_code(POSEIDON_T3_ADDRESS) == artifact.deployed_bytecode


def test_genesis_predeploys_the_zk_contracts() -> None:
    for name in ("poseidonT3", "membershipVerifier", "attributeVerifier", "researchConsent",
                 "attributeRegistry"):
        artifact, address = SYSTEM_CONTRACTS[name]
        assert load_artifact(artifact).deployed_bytecode, name
        assert address[:2] == bytes.fromhex("4d4c")


def test_empty_tree_and_solidity_zeros_match_python(cons: Consortium) -> None:
    zeros = zero_hashes()
    assert RC.current_root(cons.call_fn()) == zeros[20] == MerkleTree().root
    source = (Path(__file__).resolve().parents[1] / "contracts" / "src" / "zk" /
              "MerkleZeros.sol").read_text()
    found = [int(v, 16) for v in re.findall(r"z\[\d+\] = (0x[0-9a-f]{64});", source)]
    assert tuple(found) == zeros


def test_joins_mirror_the_python_tree_and_fit_a_block(cons: Consortium) -> None:
    call = cons.call_fn()
    tree = MerkleTree()
    commitments = [identity_commitment(s) for s in (11, 22, 33)]
    # a patient themselves, an admin of the patient's hospital, a delegate of the patient
    cons.ok("pat-2", cons.medledger.set_delegate(cons.address("doc-a"), True))
    joins = [("pat-1", RC.join_research(commitments[0])),
             ("admin-b", RC.join_research_for(cons.address("pat-3"), commitments[1])),
             ("doc-a", RC.join_research_for(cons.address("pat-2"), commitments[2]))]
    for (who, data), commitment in zip(joins, commitments, strict=True):
        result = cons.ok(who, data, to=RC.address)
        index = tree.insert(commitment)
        assert RC.current_root(call) == tree.root
        assert result.gas_used < 1_500_000  # genesis gas limit: 30M
        [event] = RC.decode_logs(result.logs)
        assert event.name == "ResearchConsentGiven"
        assert event.args["leafIndex"] == index and event.args["commitment"] == commitment
        assert event.args["root"] == tree.root and event.args["by"] == cons.address(who)
    assert RC.leaf_count(call) == 3
    assert RC.leaf_of(call, cons.address("pat-3")) == 1
    assert RC.leaf_of(call, cons.address("doc-b")) is None
    path = tree.path(2)
    assert root_from_path(commitments[2], path) == tree.root and path.indices[:2] == (0, 1)


def test_who_may_join(cons: Consortium) -> None:
    error = zk_revert(cons, "doc-a", RC.address, RC.join_research(5))
    assert error.name == "NotPatient"
    error = zk_revert(cons, "admin-a", RC.address, RC.join_research_for(cons.address("pat-3"), 5))
    assert error.name == "NotPatientAgent"  # pat-3's home hospital is B
    error = zk_revert(cons, "admin-a", RC.address, RC.join_research_for(cons.address("doc-a"), 5))
    assert error.name == "NotPatient"
    for bad in (0, FIELD):
        assert zk_revert(cons, "pat-1", RC.address, RC.join_research(bad)).name == (
            "InvalidCommitment")
    cons.ok("pat-1", RC.join_research(7), to=RC.address)
    error = zk_revert(cons, "admin-a", RC.address, RC.join_research_for(cons.address("pat-1"), 8))
    assert error.name == "AlreadyJoined" and error.args["leafIndex"] == 0


def test_study_lifecycle_and_checks_before_the_proof(cons: Consortium) -> None:
    call = cons.call_fn()
    sid = study_id("diabetes-2026")
    assert zk_revert(cons, "doc-a", RC.address, RC.open_study(sid, b"\x01" * 32)).name == (
        "NotResearcher")
    assert zk_revert(cons, "researcher-a", RC.address, RC.open_study(0, b"\x01" * 32)).name == (
        "InvalidStudyId")
    result = cons.ok("researcher-a", RC.open_study(sid, b"\x01" * 32), to=RC.address)
    assert RC.decode_logs(result.logs)[0].args["protocolHash"] == b"\x01" * 32
    info = RC.study(call, sid)
    assert (info.researcher, info.hospital, info.enrolled, info.open) == (
        cons.address("researcher-a"), 1, 0, True)
    assert zk_revert(cons, "researcher-b", RC.address, RC.open_study(sid, b"\x02" * 32)).name == (
        "StudyExists")

    cons.ok("pat-1", RC.join_research(identity_commitment(99)), to=RC.address)
    root = RC.current_root(call)
    unknown = view_revert(cons, RC.address, RC.encode(
        "verifyMembership", sid, root + 1, 5, 0, DUMMY_PROOF))
    assert unknown.name == "UnknownRoot"
    invalid = view_revert(cons, RC.address, RC.encode(
        "verifyMembership", sid, root, 5, 0, DUMMY_PROOF))
    assert invalid.name == "InvalidProof"
    assert zk_revert(cons, "outsider", RC.address,
                     RC.enroll(sid + 1, root, 5, 0, DUMMY_PROOF)).name == "UnknownStudy"
    assert zk_revert(cons, "outsider", RC.address,
                     RC.enroll(sid, root, FIELD, 0, DUMMY_PROOF)).name == "NotInField"

    assert zk_revert(cons, "researcher-b", RC.address, RC.close_study(sid)).name == (
        "NotStudyOwner")
    cons.ok("admin-a", RC.close_study(sid), to=RC.address)  # an admin of the study's hospital
    assert RC.study(call, sid).open is False
    assert zk_revert(cons, "outsider", RC.address,
                     RC.enroll(sid, root, 5, 0, DUMMY_PROOF)).name == "StudyClosed"


def test_replaced_roots_stay_valid_for_the_window_only(cons: Consortium) -> None:
    cons.ok("pat-1", RC.join_research(identity_commitment(1)), to=RC.address)
    first = RC.current_root(cons.call_fn())
    replaced = cons.ok("pat-2", RC.join_research(identity_commitment(2)), to=RC.address)
    window = int(RC.call(cons.call_fn(), "ROOT_VALIDITY"))
    assert window == 3600
    assert RC.is_known_root(cons.call_fn(replaced.timestamp + window - 1), first)
    assert not RC.is_known_root(cons.call_fn(replaced.timestamp + window), first)
    current = RC.current_root(cons.call_fn())
    assert RC.is_known_root(cons.call_fn(replaced.timestamp + 10 * window), current)
    assert not RC.is_known_root(cons.call_fn(), 0)


def test_attestations(cons: Consortium) -> None:
    call = cons.call_fn()
    commitment = attribute_commitment(42, 777)
    patient = cons.address("pat-1")
    assert zk_revert(cons, "researcher-a", AR.address, AR.attest(commitment, patient, 1)).name == (
        "NotClinician")
    assert zk_revert(cons, "doc-a", AR.address,
                     AR.attest(commitment, cons.address("doc-b"), 1)).name == "NotPatient"
    assert zk_revert(cons, "doc-a", AR.address, AR.attest(0, patient, 1)).name == (
        "InvalidCommitment")
    result = cons.ok("nurse-a", AR.attest(commitment, patient, 1), to=AR.address)
    [event] = AR.decode_logs(result.logs)
    assert event.name == "AttributeAttested" and event.args["hospital"] == 1
    assert AR.attestation(call, commitment) == type(AR.attestation(call, commitment))(
        patient, 1, 1, False)
    assert zk_revert(cons, "doc-b", AR.address, AR.attest(commitment, patient, 2)).name == (
        "AlreadyAttested")

    checks = [(2, 10, 0, "InvalidOp"), (0, 2**64, 0, "InvalidThreshold"),
              (0, 10, FIELD, "NotInField"), (0, 10, 0, "InvalidProof")]
    for op, threshold, context, name in checks:
        data = AR.encode("verifyAttribute", commitment, op, threshold, context, DUMMY_PROOF)
        assert view_revert(cons, AR.address, data).name == name
    assert view_revert(cons, AR.address, AR.encode(
        "verifyAttribute", commitment + 1, 0, 1, 0, DUMMY_PROOF)).name == "UnknownCommitment"

    assert zk_revert(cons, "doc-b", AR.address, AR.revoke_attestation(commitment)).name == (
        "NotAttestingHospital")
    cons.ok("admin-a", AR.revoke_attestation(commitment), to=AR.address)
    assert AR.attestation(call, commitment).revoked is True
    assert view_revert(cons, AR.address, AR.encode(
        "verifyAttribute", commitment, 0, 1, 0, DUMMY_PROOF)).name == "Revoked"


def test_proof_encodings_round_trip_and_reject_garbage() -> None:
    proof = Proof((1, 2), ((3, 4), (5, 6)), (7, 8))
    assert proof.to_calldata() == [1, 2, 4, 3, 6, 5, 7, 8]
    assert Proof.from_calldata(proof.to_calldata()) == proof
    assert Proof.from_snarkjs(proof.to_snarkjs()) == proof
    with pytest.raises(ProofFormatError):
        Proof.from_snarkjs({"pi_a": ["1", "2", "1"], "pi_b": [["1"]], "pi_c": ["1", "2", "1"]})
    with pytest.raises(ProofFormatError):
        Proof.from_snarkjs({**proof.to_snarkjs(), "curve": "bls12381"})
    with pytest.raises(ProofFormatError):
        Proof.from_calldata([1, 2, 3])


@pytest.mark.parametrize("circuit", ["membership", "attribute"])
def test_committed_keys_verifier_and_build_info_belong_together(circuit: str) -> None:
    """A rebuild must replace the zkey, the verification key and the Solidity verifier together."""
    root = Path(__file__).resolve().parents[1] / "contracts"
    vk = json.loads((root / "zk" / "artifacts" / f"{circuit}.vkey.json").read_text())
    source = (root / "src" / "zk" / f"{circuit.capitalize()}Verifier.sol").read_text()
    constants = {name: int(value) for name, value in
                 re.findall(r"uint256 constant (\w+)\s*=\s*(\d+);", source)}
    assert (constants["alphax"], constants["alphay"]) == tuple(map(int, vk["vk_alpha_1"][:2]))
    for name in ("beta", "gamma", "delta"):
        (x0, x1), (y0, y1) = vk[f"vk_{name}_2"][:2]
        # snarkjs writes Fp2 coordinates imaginary part first (x1 = c1, x2 = c0)
        assert [constants[f"{name}{k}"] for k in ("x1", "x2", "y1", "y2")] == [
            int(x1), int(x0), int(y1), int(y0)]
    for index, (x, y, _) in enumerate(vk["IC"]):
        assert (constants[f"IC{index}x"], constants[f"IC{index}y"]) == (int(x), int(y))
    info = json.loads((root / "zk" / "artifacts" / "build-info.json").read_text())
    for name, digest in info["circuits"][circuit]["files"].items():
        data = (root / "zk" / "artifacts" / name).read_bytes()
        assert hashlib.sha256(data).hexdigest() == digest, name
    ptau = (root / "zk" / info["ptau"]["file"]).read_bytes()
    assert hashlib.sha256(ptau).hexdigest() == info["ptau"]["sha256"]


def test_withdrawals_keep_the_chain_tree_and_the_mirror_in_step(cons: Consortium) -> None:
    """Inserts and removals interleaved so that removals hit frontier nodes a later insert
    reads: after every step the contract's root equals the Python mirror's."""
    call = cons.call_fn()
    patients = [keccak(f"zk patient {i}".encode())[:20] for i in range(9)]
    cons.chain.send_block([
        (cons.keys["admin-a"], cons.medledger.address,
         cons.medledger.register_patient(p, keccak(b"person" + p))) for p in patients])
    tree = MerkleTree()
    commitment = {p: identity_commitment(i + 1000) for i, p in enumerate(patients)}

    def join(i: int) -> None:
        # send without the ok() preflight call: each tree update is 20-40 Poseidon calls
        assert cons.send("admin-a", RC.join_research_for(patients[i], commitment[patients[i]]),
                         to=RC.address).success
        tree.insert(commitment[patients[i]])
        assert RC.current_root(call) == tree.root

    def leave(i: int) -> None:
        index = tree.index_of(commitment[patients[i]])
        before = RC.current_root(call)
        result = cons.send("admin-a", RC.leave_research_for(
            patients[i], commitment[patients[i]], tree.path(index).siblings), to=RC.address)
        assert result.success
        tree.remove(index)
        assert RC.current_root(call) == tree.root
        assert RC.decode_logs(result.logs)[0].args["leafIndex"] == index
        assert result.gas_used < 2_500_000
        assert not RC.is_known_root(call, before)  # invalid at once, no window

    for step in (*(("join", i) for i in range(5)), ("leave", 4), ("join", 5), ("leave", 1),
                 ("join", 6), ("leave", 6), ("leave", 5), ("join", 7), ("leave", 0),
                 ("join", 8)):
        join(step[1]) if step[0] == "join" else leave(step[1])
    assert RC.has_left(call, patients[4]) and not RC.has_left(call, patients[2])
    assert RC.leaf_count(call) == 9
    # a root from before the last withdrawal stays invalid even inside the time window
    assert not RC.is_known_root(call, MerkleTree(commitment[p] for p in patients[:5]).root)


def test_withdrawal_rules(cons: Consortium) -> None:
    tree = MerkleTree()
    for name in ("pat-1", "pat-2"):
        cons.ok(name, RC.join_research(identity_commitment(len(tree.leaves) + 1)), to=RC.address)
        tree.insert(identity_commitment(len(tree.leaves) + 1))
    path = tree.path(0)
    mine = identity_commitment(1)
    assert zk_revert(cons, "pat-3", RC.address, RC.leave_research(mine, path.siblings)).name == (
        "NotJoined")
    wrong = [path.siblings[0] + 1, *path.siblings[1:]]
    assert zk_revert(cons, "pat-1", RC.address, RC.leave_research(mine, wrong)).name == (
        "StalePath")
    assert zk_revert(cons, "admin-b", RC.address, RC.leave_research_for(
        cons.address("pat-1"), mine, path.siblings)).name == "NotPatientAgent"
    cons.ok("pat-1", RC.leave_research(mine, path.siblings), to=RC.address)
    tree.remove(0)
    assert RC.current_root(cons.call_fn()) == tree.root
    assert zk_revert(cons, "pat-1", RC.address, RC.leave_research(
        mine, tree.path(0).siblings)).name == "AlreadyLeft"
    assert zk_revert(cons, "pat-1", RC.address, RC.join_research(77)).name == "AlreadyJoined"
    with pytest.raises(KeyError):
        tree.index_of(mine)
