"""Proving through snarkjs on the client side (node + contracts/zk/node_modules).

Only whoever makes a proof (a patient's app, a test, the bench) needs npm; nodes and auditors
verify with `node.zk.groth16` in pure Python, the chain with the predeployed verifiers.
"""

from __future__ import annotations

import json
import shutil
import subprocess
from collections.abc import Mapping
from dataclasses import dataclass
from enum import IntEnum
from pathlib import Path
from typing import Any

from node.zk.groth16 import Proof, parse_public
from node.zk.identity import MAX_ATTRIBUTE_VALUE, attribute_commitment, identity_commitment
from node.zk.identity import nullifier as make_nullifier
from node.zk.merkle import MerkleTree
from node.zk.poseidon import FIELD

ZK_DIR = Path(__file__).resolve().parents[2] / "contracts" / "zk"
PROVE_SCRIPT = ZK_DIR / "scripts" / "prove.mjs"
PROVE_TIMEOUT = 300.0


class ProverUnavailable(RuntimeError):
    """node or contracts/zk/node_modules (snarkjs) is missing."""


class ProofError(RuntimeError):
    """snarkjs could not make the proof: the statement is false (e.g. not a member)."""


class AttributeOp(IntEnum):
    GE = 0  # value >= threshold
    LT = 1  # value < threshold


def prover_problem() -> str | None:
    """Why proving cannot work here, or None when node and snarkjs are available."""
    if shutil.which("node") is None:
        return "node (Node.js) is not installed"
    if not (ZK_DIR / "node_modules" / "snarkjs").is_dir():
        return "contracts/zk/node_modules is missing: run `npm ci --prefix contracts/zk`"
    return None


@dataclass(frozen=True)
class ProofRun:
    proof: Proof
    public: list[int]
    proving_ms: float  # snarkjs fullProve time (witness + proof), without node start-up


def prove(circuit: str, inputs: Mapping[str, Any], *, timeout: float = PROVE_TIMEOUT) -> ProofRun:
    """Run snarkjs groth16 fullProve for `circuit` on `inputs` (numbers as ints or lists)."""
    problem = prover_problem()
    if problem:
        raise ProverUnavailable(problem)

    def encode(value: Any) -> Any:
        if isinstance(value, list | tuple):
            return [encode(v) for v in value]
        return str(int(value))

    payload = json.dumps({name: encode(value) for name, value in inputs.items()})
    try:
        result = subprocess.run(
            ["node", str(PROVE_SCRIPT), circuit], input=payload, capture_output=True, text=True,
            timeout=timeout, check=False,
        )
    except subprocess.TimeoutExpired as exc:
        raise ProofError(f"snarkjs took longer than {timeout:.0f} s") from exc
    if result.returncode != 0:
        message = result.stderr.strip().splitlines()
        raise ProofError(message[-1] if message else f"snarkjs exited {result.returncode}")
    out = json.loads(result.stdout)
    return ProofRun(Proof.from_snarkjs(out["proof"]), parse_public(out["publicSignals"]),
                    float(out["provingMs"]))


@dataclass(frozen=True)
class MembershipProof:
    """An enrolment proof: public inputs in circuit order [root, studyId, nullifier, signalHash]."""

    proof: Proof
    root: int
    study_id: int
    nullifier: int
    signal_hash: int
    proving_ms: float = 0.0

    @property
    def public(self) -> list[int]:
        return [self.root, self.study_id, self.nullifier, self.signal_hash]


@dataclass(frozen=True)
class AttributeProof:
    """A predicate proof: public inputs in circuit order [commitment, threshold, op, context]."""

    proof: Proof
    commitment: int
    threshold: int
    op: AttributeOp
    context: int
    proving_ms: float = 0.0

    @property
    def public(self) -> list[int]:
        return [self.commitment, self.threshold, int(self.op), self.context]


def _field(value: int, what: str) -> int:
    if not isinstance(value, int) or not 0 <= value < FIELD:
        raise ValueError(f"{what} must be a field element, got {value!r}")
    return value


def prove_membership(
    secret: int, tree: MerkleTree, study_id: int, signal_hash: int = 0
) -> MembershipProof:
    """Prove that Poseidon(secret) is a leaf of `tree` (the chain's tree, mirrored), for a study."""
    _field(study_id, "study id")
    _field(signal_hash, "signal hash")
    leaf = identity_commitment(secret)
    try:
        index = tree.index_of(leaf)
    except KeyError:
        raise ProofError("this identity is not in the research-consent tree") from None
    path = tree.path(index)
    nullifier = make_nullifier(secret, study_id)
    run = prove("membership", {
        "root": path.root, "studyId": study_id, "nullifier": nullifier, "signalHash": signal_hash,
        "secret": secret, "pathElements": path.siblings, "pathIndices": path.indices,
    })
    return MembershipProof(run.proof, path.root, study_id, nullifier, signal_hash, run.proving_ms)


def prove_attribute(
    value: int, salt: int, op: AttributeOp, threshold: int, context: int = 0
) -> AttributeProof:
    """Prove `value op threshold` for the commitment Poseidon(value, salt)."""
    op = AttributeOp(op)
    if not 0 <= threshold <= MAX_ATTRIBUTE_VALUE:
        raise ValueError(f"threshold must be an unsigned 64-bit integer, got {threshold}")
    _field(context, "context")
    commitment = attribute_commitment(value, salt)
    holds = value >= threshold if op is AttributeOp.GE else value < threshold
    if not holds:
        raise ProofError(f"the committed value does not satisfy {op.name} {threshold}")
    run = prove("attribute", {
        "commitment": commitment, "threshold": threshold, "op": int(op), "context": context,
        "value": value, "salt": salt,
    })
    return AttributeProof(run.proof, commitment, threshold, op, context, run.proving_ms)
