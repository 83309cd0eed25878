"""Proof files: what `medledger zk prove` writes and `verify` / `submit` read.

{"kind": "membership" | "attribute", "proof": <snarkjs proof>, "publicSignals": [...],
 "provingMs": ...}; publicSignals in circuit order (membership: root, studyId, nullifier,
signalHash; attribute: commitment, threshold, op, context), decimal strings as snarkjs writes.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from contracts.zk_bindings import AttributeRegistry, ResearchConsent
from node.zk.groth16 import Proof, ProofFormatError, load_verifying_key, parse_public, verify
from node.zk.prover import AttributeOp, AttributeProof, MembershipProof

AnyProof = MembershipProof | AttributeProof


def proof_document(proof: AnyProof) -> dict[str, Any]:
    kind = "membership" if isinstance(proof, MembershipProof) else "attribute"
    return {"kind": kind, "proof": proof.proof.to_snarkjs(),
            "publicSignals": [str(v) for v in proof.public], "provingMs": proof.proving_ms}


def write_proof(path: Path, proof: AnyProof) -> None:
    path.write_text(json.dumps(proof_document(proof), indent=2) + "\n", encoding="utf-8")


def parse_proof(document: Any) -> AnyProof:
    if not isinstance(document, dict):
        raise ProofFormatError("a proof file holds a JSON object")
    kind = document.get("kind")
    proof = Proof.from_snarkjs(document.get("proof") or {})
    public = parse_public(document.get("publicSignals") or [])
    if len(public) != 4:
        raise ProofFormatError(f"expected 4 public signals, got {len(public)}")
    ms = float(document.get("provingMs") or 0.0)
    if kind == "membership":
        return MembershipProof(proof, public[0], public[1], public[2], public[3], ms)
    if kind == "attribute":
        if public[2] not in (0, 1):
            raise ProofFormatError(f"attribute op must be 0 or 1, got {public[2]}")
        return AttributeProof(proof, public[0], public[1], AttributeOp(public[2]), public[3], ms)
    raise ProofFormatError(f"unknown proof kind {kind!r} (membership or attribute)")


def read_proof(path: Path) -> AnyProof:
    try:
        document = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise ProofFormatError(f"cannot read proof file {path}: {exc}") from exc
    return parse_proof(document)


def verify_offline(proof: AnyProof) -> bool:
    """py_ecc verification against the committed verification key (no chain, no npm)."""
    circuit = "membership" if isinstance(proof, MembershipProof) else "attribute"
    return verify(load_verifying_key(circuit), proof.proof, proof.public)


def submission(proof: AnyProof) -> tuple[bytes, bytes]:
    """(contract address, calldata) of the transaction that puts the proof on chain."""
    words = proof.proof.to_calldata()
    if isinstance(proof, MembershipProof):
        contract = ResearchConsent()
        return contract.address, contract.enroll(
            proof.study_id, proof.root, proof.nullifier, proof.signal_hash, words)
    registry = AttributeRegistry()
    return registry.address, registry.prove_attribute(
        proof.commitment, proof.op, proof.threshold, proof.context, words)
