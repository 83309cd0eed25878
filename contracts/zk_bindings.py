"""Bindings for the zero-knowledge system contracts (ResearchConsent, AttributeRegistry, the
Groth16 verifiers and circomlibjs' Poseidon), in the style of contracts.bindings: transaction
methods return calldata to sign, views take a CallFn. Proofs are passed as the contracts'
uint256[8] (node.zk.groth16.Proof.to_calldata()).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from functools import cache
from typing import Any

from contracts.artifacts import load_artifact
from contracts.bindings import CallFn, Contract, ContractError
from genesis.system import (
    ATTRIBUTE_REGISTRY_ADDRESS,
    ATTRIBUTE_VERIFIER_ADDRESS,
    MEMBERSHIP_VERIFIER_ADDRESS,
    POSEIDON_T3_ADDRESS,
    RESEARCH_CONSENT_ADDRESS,
)


@cache
def _abi(name: str) -> tuple[dict[str, Any], ...]:
    return tuple(load_artifact(name).abi)


def _words(proof: Sequence[int]) -> list[int]:
    words = [int(w) for w in proof]
    if len(words) != 8:
        raise ValueError(f"a proof is 8 uint256 words, got {len(words)}")
    return words


def _siblings(siblings: Sequence[int]) -> list[int]:
    values = [int(v) for v in siblings]
    if len(values) != 20:
        raise ValueError(f"a Merkle path has 20 siblings, got {len(values)}")
    return values


@dataclass(frozen=True)
class StudyInfo:
    researcher: bytes  # zero address: no such study
    hospital: int
    enrolled: int
    open: bool


@dataclass(frozen=True)
class Attestation:
    patient: bytes
    hospital: int
    kind: int
    revoked: bool


class ResearchConsent(Contract):
    """Research-consent tree, studies and anonymous enrolment."""

    def __init__(self, address: bytes = RESEARCH_CONSENT_ADDRESS) -> None:
        super().__init__("ResearchConsent", _abi("ResearchConsent"), address)

    def join_research(self, commitment: int) -> bytes:
        return self.encode("joinResearch", commitment)

    def join_research_for(self, patient: bytes, commitment: int) -> bytes:
        return self.encode("joinResearchFor", patient, commitment)

    def leave_research(self, commitment: int, siblings: Sequence[int]) -> bytes:
        return self.encode("leaveResearch", commitment, _siblings(siblings))

    def leave_research_for(self, patient: bytes, commitment: int,
                           siblings: Sequence[int]) -> bytes:
        return self.encode("leaveResearchFor", patient, commitment, _siblings(siblings))

    def has_left(self, call: CallFn, patient: bytes) -> bool:
        return bool(self.call(call, "hasLeft", patient))

    def open_study(self, study_id: int, protocol_hash: bytes) -> bytes:
        return self.encode("openStudy", study_id, protocol_hash)

    def close_study(self, study_id: int) -> bytes:
        return self.encode("closeStudy", study_id)

    def enroll(
        self, study_id: int, root: int, nullifier: int, signal_hash: int, proof: Sequence[int]
    ) -> bytes:
        return self.encode("enroll", study_id, root, nullifier, signal_hash, _words(proof))

    def verify_membership(
        self, call: CallFn, study_id: int, root: int, nullifier: int, signal_hash: int,
        proof: Sequence[int],
    ) -> bool:
        """Reverts (CallFn raises) with the reason when the proof would be refused."""
        return bool(self.call(call, "verifyMembership", study_id, root, nullifier, signal_hash,
                              _words(proof)))

    def current_root(self, call: CallFn) -> int:
        return int(self.call(call, "currentRoot"))

    def leaf_count(self, call: CallFn) -> int:
        return int(self.call(call, "leafCount"))

    def leaf_of(self, call: CallFn, patient: bytes) -> int | None:
        """The patient's leaf index, or None if the patient has not joined."""
        stored = int(self.call(call, "leafOf", patient))
        return stored - 1 if stored else None

    def is_known_root(self, call: CallFn, root: int) -> bool:
        return bool(self.call(call, "isKnownRoot", root))

    def study(self, call: CallFn, study_id: int) -> StudyInfo:
        researcher, hospital, enrolled, is_open = self.call(call, "study", study_id)
        return StudyInfo(researcher, int(hospital), int(enrolled), bool(is_open))

    def nullifier_used(self, call: CallFn, nullifier: int) -> bool:
        return bool(self.call(call, "nullifierUsed", nullifier))


class AttributeRegistry(Contract):
    """Attested attribute commitments and predicate proofs over them."""

    def __init__(self, address: bytes = ATTRIBUTE_REGISTRY_ADDRESS) -> None:
        super().__init__("AttributeRegistry", _abi("AttributeRegistry"), address)

    def attest(self, commitment: int, patient: bytes, kind: int) -> bytes:
        return self.encode("attest", commitment, patient, kind)

    def revoke_attestation(self, commitment: int) -> bytes:
        return self.encode("revokeAttestation", commitment)

    def prove_attribute(
        self, commitment: int, op: int, threshold: int, context: int, proof: Sequence[int]
    ) -> bytes:
        return self.encode("proveAttribute", commitment, int(op), threshold, context,
                           _words(proof))

    def verify_attribute(
        self, call: CallFn, commitment: int, op: int, threshold: int, context: int,
        proof: Sequence[int],
    ) -> bool:
        return bool(self.call(call, "verifyAttribute", commitment, int(op), threshold, context,
                              _words(proof)))

    def attestation(self, call: CallFn, commitment: int) -> Attestation:
        patient, hospital, kind, revoked = self.call(call, "attestation", commitment)
        return Attestation(patient, int(hospital), int(kind), bool(revoked))


class Groth16Verifier(Contract):
    """A snarkjs-exported verifier: verifyProof(a, b, c, publicSignals[4])."""

    def __init__(self, name: str, address: bytes) -> None:
        super().__init__(name, _abi(name), address)

    def verify_proof(self, call: CallFn, proof: Sequence[int], public: Sequence[int]) -> bool:
        w = _words(proof)
        return bool(self.call(call, "verifyProof", w[0:2], [w[2:4], w[4:6]], w[6:8],
                              [int(v) for v in public]))


def membership_verifier() -> Groth16Verifier:
    return Groth16Verifier("MembershipVerifier", MEMBERSHIP_VERIFIER_ADDRESS)


def attribute_verifier() -> Groth16Verifier:
    return Groth16Verifier("AttributeVerifier", ATTRIBUTE_VERIFIER_ADDRESS)


class PoseidonT3(Contract):
    """circomlibjs' Poseidon for 2 inputs (the uint256[2] overload of its ABI)."""

    def __init__(self, address: bytes = POSEIDON_T3_ADDRESS) -> None:
        abi = [e for e in _abi("PoseidonT3") if e["inputs"][0]["type"] == "uint256[2]"]
        super().__init__("PoseidonT3", abi, address)

    def hash(self, call: CallFn, left: int, right: int) -> int:
        return int(self.call(call, "poseidon", [left, right]))


def zk_contracts() -> tuple[ResearchConsent, AttributeRegistry]:
    return ResearchConsent(), AttributeRegistry()


def decode_zk_revert(data: bytes) -> ContractError | None:
    """Decode revert data from ResearchConsent or AttributeRegistry (custom errors first)."""
    for contract in zk_contracts():
        error = contract.decode_error(data)
        if error is not None:
            return error
    return None
