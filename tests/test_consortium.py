"""A 4-hospital consortium as separate processes on loopback: QBFT over libp2p, end to end."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from node.devnet import DevnetNode, DevnetSupervisor, plan_devnet
from tests.helpers import USER_KEYS, USERS, transfer

pytestmark = pytest.mark.slow


def rpc(node: DevnetNode, method: str, *params: object) -> object:
    reply = httpx.post(f"http://127.0.0.1:{node.rpc_port}", timeout=10, json={
        "jsonrpc": "2.0", "id": 1, "method": method, "params": list(params)}).json()
    if "error" in reply:
        raise RuntimeError(f"{method}: {reply['error']}")
    return reply["result"]


def head(node: DevnetNode) -> int:
    return int(rpc(node, "eth_blockNumber"), 16)  # type: ignore[arg-type]


def wait_for(predicate, timeout: float, what: str) -> None:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if predicate():
                return
        except (httpx.HTTPError, RuntimeError):
            pass
        time.sleep(0.25)
    raise AssertionError(f"timed out after {timeout}s waiting for {what}")


@pytest.fixture
def consortium(tmp_path: Path) -> Iterator[tuple[DevnetSupervisor, list[DevnetNode]]]:
    _, nodes, passphrase = plan_devnet(
        tmp_path, validators=4, auditor=True, prefund={u: 10**24 for u in USERS},
        block_period=1, empty_block_period=1, rpc_port=0, p2p_port=0, chain_id=1337,
    )
    supervisor = DevnetSupervisor(tmp_path, nodes, passphrase)
    supervisor.start_all()
    try:
        supervisor.wait_ready()
        yield supervisor, nodes
    finally:
        supervisor.stop_all()


def test_four_validators_finalize_share_txs_and_survive_f_failures(
    consortium: tuple[DevnetSupervisor, list[DevnetNode]],
) -> None:
    supervisor, nodes = consortium
    validators, auditor = nodes[:4], nodes[4]
    wait_for(lambda: all(head(n) >= 3 for n in nodes), 60, "4 validators to finalize 3 blocks")
    for number in (1, 2, 3):
        hashes = {rpc(n, "eth_getBlockByNumber", hex(number), False)["hash"] for n in nodes}  # type: ignore[index]
        assert len(hashes) == 1, f"nodes disagree on block {number}"
    signers = rpc(validators[0], "qbft_getValidatorsByBlockNumber", "latest")
    assert sorted(signers) == sorted("0x" + n.address.hex() for n in validators)  # type: ignore[arg-type]

    # A transaction sent to one node is included and visible on all, auditor included.
    tx_hash = rpc(validators[2], "eth_sendRawTransaction", "0x" + transfer(USER_KEYS[0], 0).hex())
    wait_for(lambda: all(rpc(n, "eth_getTransactionReceipt", tx_hash) for n in nodes), 60,
             "the transaction on every node")
    receipt = rpc(auditor, "eth_getTransactionReceipt", tx_hash)
    assert receipt["status"] == "0x1"  # type: ignore[index]

    # f = 1: one validator down, blocks continue.
    supervisor.stop(validators[3].name)
    start = head(validators[0])
    wait_for(lambda: head(validators[0]) >= start + 3, 90, "blocks with one validator down")

    # Two down: no quorum (3 of 4), blocks stop.
    supervisor.stop(validators[2].name)
    time.sleep(3)
    stalled = head(validators[0])
    time.sleep(6)
    assert head(validators[0]) <= stalled + 1, "finalized without a quorum"

    # Restart both: blocks resume and the restarted nodes catch up.
    supervisor.start(validators[2])
    supervisor.start(validators[3])
    supervisor.wait_ready()
    wait_for(lambda: head(validators[0]) >= stalled + 3, 120, "blocks to resume")
    target = head(validators[0])
    wait_for(lambda: all(head(n) >= target for n in nodes), 60, "restarted nodes to catch up")
    final = {rpc(n, "eth_getBlockByNumber", hex(target), False)["hash"] for n in nodes}  # type: ignore[index]
    assert len(final) == 1


def validators_at(node: DevnetNode, number: int) -> list[str]:
    return sorted(rpc(node, "qbft_getValidatorsByBlockNumber", hex(number)))  # type: ignore[arg-type]


def test_validator_set_changes_by_vote_at_the_same_height_everywhere(
    consortium: tuple[DevnetSupervisor, list[DevnetNode]],
) -> None:
    _supervisor, nodes = consortium
    validators, auditor = nodes[:4], nodes[4]
    newcomer = "0x" + auditor.address.hex()
    wait_for(lambda: all(head(n) >= 1 for n in nodes), 60, "the first block")

    # admin_ and qbft_ namespaces.
    info = rpc(validators[0], "admin_nodeInfo")
    assert info["address"] == "0x" + validators[0].address.hex()  # type: ignore[index]
    wait_for(lambda: len(rpc(validators[0], "admin_peers")) == 4, 30, "4 peers")  # type: ignore[arg-type]
    assert int(rpc(validators[0], "net_peerCount"), 16) == 4  # type: ignore[arg-type]

    # Two votes of four are not a majority; the third one is.
    for node in validators[:3]:
        assert rpc(node, "qbft_proposeValidatorVote", newcomer, True) is True
    assert rpc(validators[0], "qbft_getPendingVotes") == {newcomer: True}
    wait_for(lambda: newcomer in rpc(validators[0], "qbft_getValidatorsByBlockNumber", "latest"),
             90, "the newcomer to be voted in")  # type: ignore[operator]
    for node in validators[:3]:
        assert rpc(node, "qbft_discardValidatorVote", newcomer) is True
    added_at = head(validators[0])
    while newcomer in validators_at(validators[0], added_at - 1):
        added_at -= 1
    wait_for(lambda: all(head(n) >= added_at + 3 for n in nodes), 90,
             "blocks sealed by the five validators")
    for node in nodes:
        assert newcomer not in validators_at(node, added_at - 1)
        assert newcomer in validators_at(node, added_at)
    metrics = rpc(validators[0], "qbft_getSignerMetrics")
    assert newcomer in [m["address"] for m in metrics]  # type: ignore[union-attr]

    # Remove hospital-4: three votes of five.
    leaving = "0x" + validators[3].address.hex()
    for node in (validators[0], validators[1], auditor):
        rpc(node, "qbft_proposeValidatorVote", leaving, False)
    wait_for(lambda: leaving not in rpc(validators[0], "qbft_getValidatorsByBlockNumber", "latest"),
             120, "hospital-4 to be voted out")  # type: ignore[operator]
    removed_at = head(validators[0])
    while leaving not in validators_at(validators[0], removed_at - 1):
        removed_at -= 1
    wait_for(lambda: all(head(n) >= removed_at + 2 for n in nodes), 90, "blocks after removal")
    for node in nodes:
        assert leaving in validators_at(node, removed_at - 1)
        assert leaving not in validators_at(node, removed_at)
        assert len(validators_at(node, removed_at)) == 4


def test_burst_of_1000_transactions_to_one_node_lands_everywhere(
    consortium: tuple[DevnetSupervisor, list[DevnetNode]],
) -> None:
    _supervisor, nodes = consortium
    entry = nodes[1]
    wait_for(lambda: all(head(n) >= 1 for n in nodes), 60, "the first block")
    batch = []
    for key in USER_KEYS:
        for nonce in range(250):
            raw = transfer(key, nonce, value=nonce + 1)
            batch.append({"jsonrpc": "2.0", "id": len(batch), "method": "eth_sendRawTransaction",
                          "params": ["0x" + raw.hex()]})
    replies = httpx.post(f"http://127.0.0.1:{entry.rpc_port}", json=batch, timeout=120).json()
    errors = [r["error"] for r in replies if "error" in r]
    assert errors == []

    def everywhere() -> bool:
        return all(
            int(rpc(n, "eth_getTransactionCount", "0x" + u.hex(), "latest"), 16) == 250  # type: ignore[arg-type]
            for n in nodes for u in USERS
        )

    wait_for(everywhere, 240, "all 1000 transactions in blocks on every node")
    total = 0
    for number in range(1, head(nodes[0]) + 1):
        block = rpc(nodes[0], "eth_getBlockByNumber", hex(number), False)
        total += len(block["transactions"])  # type: ignore[index]
    assert total == 1000
