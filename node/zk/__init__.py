"""Zero-knowledge proofs for medledger (issue 10): anonymous research enrolment and attribute
predicates, Groth16 over BN254 with circuits in contracts/zk/circuits.

- `poseidon`: the Poseidon hash the circuits and the chain use (pure Python, circomlib-compatible).
- `merkle`: a client-side mirror of ResearchConsent's incremental tree (roots, paths).
- `identity`: secrets, identity commitments, nullifiers, attribute commitments, study ids.
- `groth16`: proof/verification-key formats and pure-Python (py_ecc) verification, no npm.
- `prover`: proving through snarkjs (node + contracts/zk/node_modules), client side only.
- `proofio`: proof files (`medledger zk prove` output), offline verification, submission calldata.
- `chainio`: ResearchConsent/AttributeRegistry over JSON-RPC (leaves from logs, submit proofs).
"""
