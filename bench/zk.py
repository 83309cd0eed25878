"""Zero-knowledge proofs: gas per on-chain verification, snarkjs proving time and pure-Python
(py_ecc) verification time, on a real chain (py-evm, Prague) with the genesis predeploys.

Run alone: uv run python -m bench.zk [--quick]; part `zk` of `python -m bench`.
Needs node + `npm ci --prefix contracts/zk` for proving; reported as pending without it.
"""

from __future__ import annotations

import json
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

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
from node.zk.prover import AttributeOp, prove_attribute, prove_membership, prover_problem
from tests.contract_chain import Consortium

RC = ResearchConsent()
AR = AttributeRegistry()
PATIENTS = ("pat-1", "pat-2", "pat-3")


def _timed(fn: Callable[[], object], repeats: int) -> tuple[float, list[float]]:
    """Median wall time in ms of `repeats` runs (and all of them)."""
    times = []
    for _ in range(repeats):
        started = time.perf_counter()
        fn()
        times.append((time.perf_counter() - started) * 1000)
    return statistics.median(times), times


def _verifier_gas(c: Consortium, verifier: Any, proof: Proof, public: list[int]) -> int:
    data = verifier.encode("verifyProof", *_split(proof.to_calldata()), public)
    return c.chain.call_gas(verifier.address, data)[0]


def _split(words: list[int]) -> tuple[list[int], list[list[int]], list[int]]:
    return words[0:2], [words[2:4], words[4:6]], words[6:8]


def run_zk(quick: bool, workdir: Path) -> dict[str, Any]:
    problem = prover_problem()
    if problem:
        return {"status": "pending", "reason": f"proving needs snarkjs: {problem}"}
    repeats = 1 if quick else 3
    workdir.mkdir(parents=True, exist_ok=True)
    c = Consortium(workdir)
    try:
        return {"status": "ok", "result": _measure(c, repeats)}
    finally:
        c.close()


def _measure(c: Consortium, repeats: int) -> dict[str, Any]:
    gas: dict[str, int] = {}
    secrets = {name: new_secret() for name in PATIENTS}
    tree = MerkleTree()
    inserts = []
    for name in PATIENTS:
        commitment = identity_commitment(secrets[name])
        inserts.append(c.ok(name, RC.join_research(commitment), to=RC.address).gas_used)
        tree.insert(commitment)
    gas["tree insert (first leaf, cold frontier)"] = inserts[0]
    gas["tree insert (later leaf)"] = max(inserts[1:])
    sid = study_id("bench-study")
    gas["open study"] = c.ok("researcher-a", RC.open_study(sid, b"\x00" * 32),
                             to=RC.address).gas_used

    # membership
    membership_runs = []
    for _ in range(repeats):
        started = time.perf_counter()
        membership = prove_membership(secrets["pat-2"], tree, sid, signal_hash(b"bench"))
        membership_runs.append(((time.perf_counter() - started) * 1000, membership.proving_ms))
    words = membership.proof.to_calldata()
    gas["membership: verifier contract (execution)"] = _verifier_gas(
        c, membership_verifier(), membership.proof, membership.public)
    gas["membership: enroll transaction"] = c.ok("outsider", RC.enroll(
        sid, membership.root, membership.nullifier, membership.signal_hash, words),
        to=RC.address).gas_used

    # attribute
    salt = new_salt()
    commitment = attribute_commitment(42, salt)
    gas["attest commitment"] = c.ok("doc-a", AR.attest(commitment, c.address("pat-1"), 1),
                                    to=AR.address).gas_used
    attribute_runs = []
    for _ in range(repeats):
        started = time.perf_counter()
        attribute = prove_attribute(42, salt, AttributeOp.GE, 18, context=sid)
        attribute_runs.append(((time.perf_counter() - started) * 1000, attribute.proving_ms))
    gas["attribute: verifier contract (execution)"] = _verifier_gas(
        c, attribute_verifier(), attribute.proof, attribute.public)
    gas["attribute: proveAttribute transaction"] = c.ok("outsider", AR.prove_attribute(
        commitment, attribute.op, attribute.threshold, attribute.context,
        attribute.proof.to_calldata()), to=AR.address).gas_used

    # withdrawal of research consent (pat-3 never enrolled): path check + update
    index = tree.index_of(identity_commitment(secrets["pat-3"]))
    gas["withdraw consent (leaveResearch)"] = c.ok("pat-3", RC.leave_research(
        identity_commitment(secrets["pat-3"]), tree.path(index).siblings), to=RC.address).gas_used

    membership_vk, attribute_vk = load_verifying_key("membership"), load_verifying_key("attribute")
    m_verify, _ = _timed(lambda: verify(membership_vk, membership.proof, membership.public),
                         repeats)
    a_verify, _ = _timed(lambda: verify(attribute_vk, attribute.proof, attribute.public),
                         repeats)
    info = json.loads((Path(__file__).resolve().parents[1] / "contracts" / "zk" / "artifacts" /
                       "build-info.json").read_text())
    return {
        "gas": gas,
        "timing_ms": {
            "membership": {
                "constraints": info["circuits"]["membership"]["constraints"],
                "prove_snarkjs_ms": statistics.median(r[1] for r in membership_runs),
                "prove_wall_ms": statistics.median(r[0] for r in membership_runs),
                "verify_py_ecc_ms": m_verify,
            },
            "attribute": {
                "constraints": info["circuits"]["attribute"]["constraints"],
                "prove_snarkjs_ms": statistics.median(r[1] for r in attribute_runs),
                "prove_wall_ms": statistics.median(r[0] for r in attribute_runs),
                "verify_py_ecc_ms": a_verify,
            },
        },
        "repeats": repeats,
        "notes": [
            "prove_snarkjs_ms: groth16.fullProve (witness + proof) inside node; prove_wall_ms adds "
            "starting node and loading the wasm and zkey (what `medledger zk prove` costs).",
            "Verifier rows are the execution gas of verifyProof as an eth_call; transaction rows "
            "are receipt gas (21000 and calldata included).",
            "py-evm runs the bn128 pairing precompile with py_ecc too, so a block with many proofs "
            "costs about the py_ecc time per proof to build and to import.",
        ],
    }


def zk_markdown(section: dict[str, Any]) -> list[str]:
    """Report lines for `python -m bench` (bench.report)."""
    lines = ["**7. Zero-knowledge proofs** (Groth16, BN254)", ""]
    if section.get("status") != "ok":
        return [*lines, f"{section.get('status')}: {section.get('reason', '')}", ""]
    result = section["result"]
    lines += ["| operation | gas |", "|---|---:|"]
    lines += [f"| {name} | {value:,} |" for name, value in result["gas"].items()]
    lines += ["", "| circuit | constraints | prove (snarkjs) ms | prove incl. start-up ms "
              "| verify (py_ecc) ms |", "|---|---:|---:|---:|---:|"]
    for name, t in result["timing_ms"].items():
        lines.append(f"| {name} | {t['constraints']:,} | {t['prove_snarkjs_ms']:,.0f} | "
                     f"{t['prove_wall_ms']:,.0f} | {t['verify_py_ecc_ms']:,.0f} |")
    lines += ["", *[f"- {n}" for n in result["notes"]], ""]
    return lines


def main(argv: list[str]) -> int:
    with tempfile.TemporaryDirectory() as tmp:
        section = run_zk("--quick" in argv, Path(tmp))
    print("\n".join(zk_markdown(section)))
    return 0 if section["status"] == "ok" else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
