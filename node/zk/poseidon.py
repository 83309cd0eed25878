"""Poseidon over the BN254 scalar field, identical to circomlib's circuit and circomlibjs'.

The circuits hash with it, the chain hashes tree nodes with circomlibjs' generated contract, and a
client must hash the same way to build commitments, nullifiers and Merkle paths without npm. The
round constants are circomlibjs' (contracts/zk/artifacts/poseidon_constants.json, written by
scripts/gen_poseidon.mjs); only 1 and 2 inputs are needed.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from functools import cache
from pathlib import Path

FIELD = 21888242871839275222246405745257275088548364400416034343698204186575808495617
"""Order of the BN254 scalar field (the circuits' native field)."""

CONSTANTS_FILE = Path(__file__).resolve().parents[2] / "contracts" / "zk" / "artifacts" / (
    "poseidon_constants.json"
)


@cache
def _params(t: int) -> tuple[int, int, tuple[int, ...], tuple[tuple[int, ...], ...]]:
    data = json.loads(CONSTANTS_FILE.read_text(encoding="utf-8"))
    key = str(t)
    if key not in data["C"]:
        raise ValueError(f"no Poseidon constants for {t - 1} inputs")
    constants = tuple(int(c, 16) for c in data["C"][key])
    matrix = tuple(tuple(int(m, 16) for m in row) for row in data["M"][key])
    return int(data["roundsFull"]), int(data["roundsPartial"][key]), constants, matrix


def poseidon(inputs: Sequence[int]) -> int:
    """Poseidon hash of 1 or 2 field elements (each must be below FIELD)."""
    if not 1 <= len(inputs) <= 2:
        raise ValueError(f"Poseidon takes 1 or 2 inputs here, got {len(inputs)}")
    for value in inputs:
        if not isinstance(value, int) or not 0 <= value < FIELD:
            raise ValueError(f"Poseidon input must be a field element, got {value!r}")
    t = len(inputs) + 1
    rounds_full, rounds_partial, constants, matrix = _params(t)
    state = [0, *inputs]
    half = rounds_full // 2
    for r in range(rounds_full + rounds_partial):
        state = [(s + constants[r * t + i]) % FIELD for i, s in enumerate(state)]
        if r < half or r >= half + rounds_partial:
            state = [pow(s, 5, FIELD) for s in state]
        else:
            state[0] = pow(state[0], 5, FIELD)
        state = [sum(m * s for m, s in zip(row, state, strict=True)) % FIELD for row in matrix]
    return state[0]
