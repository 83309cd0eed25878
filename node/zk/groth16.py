"""Groth16 (BN254) proofs in snarkjs' JSON formats, and their verification in pure Python.

Auditors and nodes check proofs with py_ecc alone (no npm, no chain); the check is the one the
snarkjs Solidity verifier makes with the bn128 precompiles: public inputs below the scalar field,
proof points on their curves (B also in the prime-order subgroup, as EIP-197 requires), and
e(-A, B) * e(alpha, beta) * e(vk_x, gamma) * e(C, delta) == 1 with
vk_x = IC[0] + sum(input_i * IC[i + 1]).
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any

from py_ecc.optimized_bn128 import (
    FQ,
    FQ2,
    FQ12,
    add,
    b,
    b2,
    curve_order,
    field_modulus,
    final_exponentiate,
    is_inf,
    is_on_curve,
    multiply,
    neg,
    pairing,
)

ARTIFACTS_DIR = Path(__file__).resolve().parents[2] / "contracts" / "zk" / "artifacts"
CIRCUITS = ("membership", "attribute")

G1 = tuple[int, int]
G2 = tuple[tuple[int, int], tuple[int, int]]  # ((x.c0, x.c1), (y.c0, y.c1)), x = c0 + c1 * u


class ProofFormatError(ValueError):
    """A proof, verification key or public input list that is malformed."""


def _int(value: Any, what: str) -> int:
    try:
        number = int(value)
    except (TypeError, ValueError):
        raise ProofFormatError(f"{what}: not an integer: {value!r}") from None
    if number < 0 or number >= 2**256:
        raise ProofFormatError(f"{what}: out of range: {value!r}")
    return number


def _g1(value: Any, what: str) -> G1:
    if not isinstance(value, Sequence) or len(value) not in (2, 3) or (
        len(value) == 3 and str(value[2]) != "1"
    ):
        raise ProofFormatError(f"{what}: expected an affine G1 point [x, y, 1]")
    return _int(value[0], f"{what}.x"), _int(value[1], f"{what}.y")


def _g2(value: Any, what: str) -> G2:
    if not isinstance(value, Sequence) or len(value) not in (2, 3):
        raise ProofFormatError(f"{what}: expected an affine G2 point [[x0, x1], [y0, y1], [1, 0]]")
    if len(value) == 3 and [str(v) for v in value[2]] != ["1", "0"]:
        raise ProofFormatError(f"{what}: expected an affine G2 point (z = [1, 0])")
    coords = []
    for index, name in ((0, "x"), (1, "y")):
        pair = value[index]
        if not isinstance(pair, Sequence) or len(pair) != 2:
            raise ProofFormatError(f"{what}.{name}: expected two coordinates")
        coords.append((_int(pair[0], f"{what}.{name}0"), _int(pair[1], f"{what}.{name}1")))
    return coords[0], coords[1]


@dataclass(frozen=True)
class Proof:
    """A Groth16 proof (affine coordinates as integers)."""

    a: G1
    b: G2
    c: G1

    @classmethod
    def from_snarkjs(cls, data: Mapping[str, Any]) -> Proof:
        if not isinstance(data, Mapping):
            raise ProofFormatError("proof must be a JSON object")
        if data.get("protocol", "groth16") != "groth16" or data.get("curve", "bn128") != "bn128":
            raise ProofFormatError("only groth16 proofs on bn128 are supported")
        return cls(_g1(data.get("pi_a"), "pi_a"), _g2(data.get("pi_b"), "pi_b"),
                   _g1(data.get("pi_c"), "pi_c"))

    def to_snarkjs(self) -> dict[str, Any]:
        (bx, by) = self.b
        return {
            "pi_a": [str(self.a[0]), str(self.a[1]), "1"],
            "pi_b": [[str(bx[0]), str(bx[1])], [str(by[0]), str(by[1])], ["1", "0"]],
            "pi_c": [str(self.c[0]), str(self.c[1]), "1"],
            "protocol": "groth16",
            "curve": "bn128",
        }

    def to_calldata(self) -> list[int]:
        """The contracts' uint256[8]: a, b with each Fp2 coordinate as (c1, c0) (EIP-197), c."""
        (bx, by) = self.b
        return [self.a[0], self.a[1], bx[1], bx[0], by[1], by[0], self.c[0], self.c[1]]

    @classmethod
    def from_calldata(cls, words: Sequence[int]) -> Proof:
        if len(words) != 8:
            raise ProofFormatError(f"calldata proof has 8 words, got {len(words)}")
        w = [_int(v, f"proof[{i}]") for i, v in enumerate(words)]
        return cls((w[0], w[1]), ((w[3], w[2]), (w[5], w[4])), (w[6], w[7]))


@dataclass(frozen=True)
class VerifyingKey:
    alpha: G1
    beta: G2
    gamma: G2
    delta: G2
    ic: tuple[G1, ...]

    @property
    def n_public(self) -> int:
        return len(self.ic) - 1

    @classmethod
    def from_snarkjs(cls, data: Mapping[str, Any]) -> VerifyingKey:
        if data.get("protocol") != "groth16" or data.get("curve") != "bn128":
            raise ProofFormatError("only groth16 verification keys on bn128 are supported")
        ic = tuple(_g1(p, f"IC[{i}]") for i, p in enumerate(data.get("IC") or []))
        if len(ic) != int(data.get("nPublic", -1)) + 1:
            raise ProofFormatError("IC length does not match nPublic")
        return cls(_g1(data["vk_alpha_1"], "vk_alpha_1"), _g2(data["vk_beta_2"], "vk_beta_2"),
                   _g2(data["vk_gamma_2"], "vk_gamma_2"), _g2(data["vk_delta_2"], "vk_delta_2"), ic)


@cache
def load_verifying_key(circuit: str) -> VerifyingKey:
    """The committed verification key of `membership` or `attribute`."""
    if circuit not in CIRCUITS:
        raise ValueError(f"unknown circuit {circuit!r} (known: {', '.join(CIRCUITS)})")
    path = ARTIFACTS_DIR / f"{circuit}.vkey.json"
    return VerifyingKey.from_snarkjs(json.loads(path.read_text(encoding="utf-8")))


def _to_g1(point: G1) -> tuple[FQ, FQ, FQ] | None:
    x, y = point
    if x >= field_modulus or y >= field_modulus:
        return None
    if x == 0 and y == 0:
        return (FQ(1), FQ(1), FQ(0))  # the point at infinity, as the precompiles encode it
    p = (FQ(x), FQ(y), FQ(1))
    return p if is_on_curve(p, b) else None


def _to_g2(point: G2) -> tuple[FQ2, FQ2, FQ2] | None:
    (x0, x1), (y0, y1) = point
    if max(x0, x1, y0, y1) >= field_modulus:
        return None
    if x0 == x1 == y0 == y1 == 0:
        return (FQ2.one(), FQ2.one(), FQ2.zero())
    p = (FQ2([x0, x1]), FQ2([y0, y1]), FQ2.one())
    if not is_on_curve(p, b2) or not is_inf(multiply(p, curve_order)):
        return None
    return p


def verify(vk: VerifyingKey, proof: Proof, public_inputs: Sequence[int]) -> bool:
    """True iff the proof is valid for these public inputs; never raises on a bad proof."""
    if len(public_inputs) != vk.n_public:
        raise ProofFormatError(f"expected {vk.n_public} public inputs, got {len(public_inputs)}")
    if any(not isinstance(v, int) or not 0 <= v < curve_order for v in public_inputs):
        return False
    a, c, b_point = _to_g1(proof.a), _to_g1(proof.c), _to_g2(proof.b)
    if a is None or c is None or b_point is None:
        return False
    vk_x = _to_g1(vk.ic[0])
    assert vk_x is not None, "verification key point off the curve"
    for value, ic in zip(public_inputs, vk.ic[1:], strict=True):
        point = _to_g1(ic)
        assert point is not None, "verification key point off the curve"
        vk_x = add(vk_x, multiply(point, value))
    alpha, beta = _to_g1(vk.alpha), _to_g2(vk.beta)
    gamma, delta = _to_g2(vk.gamma), _to_g2(vk.delta)
    assert alpha and beta and gamma and delta, "verification key point off the curve"
    product = FQ12.one()
    for g2, g1 in ((b_point, neg(a)), (beta, alpha), (gamma, vk_x), (delta, c)):
        product *= pairing(g2, g1, final_exponentiate=False)  # 1 when either is infinity
    return final_exponentiate(product) == FQ12.one()


def parse_public(values: Sequence[Any]) -> list[int]:
    """snarkjs publicSignals (decimal strings) as integers."""
    return [_int(v, f"publicSignals[{i}]") for i, v in enumerate(values)]
