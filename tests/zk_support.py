"""Shared helpers for the zero-knowledge tests: reverts of the ZK contracts, the snarkjs skip."""

from __future__ import annotations

import pytest

from contracts.bindings import ContractError
from contracts.zk_bindings import decode_zk_revert
from node.zk.prover import prover_problem
from tests.contract_chain import CallReverted, Consortium

PROVER_PROBLEM = prover_problem()
requires_snarkjs = pytest.mark.skipif(
    PROVER_PROBLEM is not None,
    reason=f"proving needs snarkjs: {PROVER_PROBLEM} (CI runs `npm ci --prefix contracts/zk`)",
)


def zk_revert(
    cons: Consortium, who: str, to: bytes, data: bytes, *, timestamp: int | None = None
) -> ContractError:
    """The transaction fails on chain; returns the ZK contract's custom error it reverts with."""
    ts = timestamp if timestamp is not None else cons.now + 1
    try:
        cons.chain.call(to, data, sender=cons.address(who), timestamp=ts)
    except CallReverted as exc:
        error = decode_zk_revert(exc.data)
    else:
        raise AssertionError(f"{who}: expected a revert")
    result = cons.send(who, data, to=to, timestamp=ts)
    assert not result.success and result.logs == ()
    assert error is not None
    return error


def view_revert(cons: Consortium, to: bytes, data: bytes) -> ContractError:
    """A view call reverts; returns the decoded custom error."""
    try:
        cons.chain.call(to, data)
    except CallReverted as exc:
        error = decode_zk_revert(exc.data)
        assert error is not None
        return error
    raise AssertionError("expected the call to revert")
