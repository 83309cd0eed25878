"""qbft_* JSON-RPC on a single-validator node."""

from __future__ import annotations

import time

import pytest

from tests.helpers import USERS, VALIDATOR
from tests.nodeproc import NodeProcess

pytestmark = pytest.mark.slow


def test_qbft_namespace(node: NodeProcess) -> None:
    validator = "0x" + VALIDATOR.hex()
    assert node.rpc("qbft_getValidatorsByBlockNumber", "latest") == [validator]
    assert node.rpc("qbft_getValidatorsByBlockNumber", "0x0") == [validator]
    genesis = node.rpc("eth_getBlockByNumber", "0x0", False)
    assert node.rpc("qbft_getValidatorsByBlockHash", genesis["hash"]) == [validator]  # type: ignore[index]
    with pytest.raises(RuntimeError, match="header not found"):
        node.rpc("qbft_getValidatorsByBlockHash", "0x" + "ab" * 32)
    with pytest.raises(RuntimeError, match="-32602"):
        node.rpc("qbft_proposeValidatorVote", "0x1234", True)

    candidate = "0x" + USERS[0].hex()
    assert node.rpc("qbft_getPendingVotes") == {}
    assert node.rpc("qbft_proposeValidatorVote", candidate, True) is True
    assert node.rpc("qbft_getPendingVotes") == {candidate: True}
    assert node.rpc("qbft_discardValidatorVote", candidate) is True
    assert node.rpc("qbft_discardValidatorVote", candidate) is False
    assert node.rpc("qbft_getPendingVotes") == {}

    deadline = time.monotonic() + 60
    while int(node.rpc("eth_blockNumber"), 16) < 1:  # type: ignore[arg-type]
        assert time.monotonic() < deadline
        time.sleep(0.2)
    head = int(node.rpc("eth_blockNumber"), 16)  # type: ignore[arg-type]
    metrics = node.rpc("qbft_getSignerMetrics", "0x1", hex(head))
    assert metrics == [{
        "address": validator,
        "proposedBlockCount": hex(head),
        "lastProposedBlockNumber": hex(head),
    }]
