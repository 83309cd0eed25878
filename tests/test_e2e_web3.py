"""web3.py 8, unchanged, against a real `medledger node run` subprocess over HTTP and WebSocket."""

from __future__ import annotations

import asyncio

import pytest
from eth_account import Account
from web3 import AsyncWeb3, Web3, WebSocketProvider
from web3.exceptions import ContractCustomError, ContractLogicError
from web3.middleware import ExtraDataToPOAMiddleware

from contracts.artifacts import load_artifact
from tests.helpers import CHAIN_ID, USER_KEYS
from tests.nodeproc import NodeProcess

pytestmark = pytest.mark.slow

ACCOUNT = Account.from_key(USER_KEYS[0])


def http_web3(node: NodeProcess) -> Web3:
    w3 = Web3(Web3.HTTPProvider(node.http, request_kwargs={"timeout": 30}))
    w3.middleware_onion.inject(ExtraDataToPOAMiddleware, layer=0)
    return w3


def test_web3_http_deploy_call_logs_filters(node: NodeProcess) -> None:
    w3 = http_web3(node)
    assert w3.is_connected()
    assert w3.eth.chain_id == CHAIN_ID
    assert w3.client_version.startswith("medledger/")
    artifact = load_artifact("EventProbe")
    probe_factory = w3.eth.contract(abi=artifact.abi, bytecode=artifact.bytecode)

    deploy_tx = probe_factory.constructor(7).build_transaction(
        {"from": ACCOUNT.address, "nonce": w3.eth.get_transaction_count(ACCOUNT.address),
         "chainId": CHAIN_ID}
    )
    signed = ACCOUNT.sign_transaction(deploy_tx)
    receipt = w3.eth.wait_for_transaction_receipt(
        w3.eth.send_raw_transaction(signed.raw_transaction), timeout=60, poll_latency=0.2
    )
    assert receipt["status"] == 1
    address = receipt["contractAddress"]
    assert w3.eth.get_code(address) == artifact.deployed_bytecode
    probe = w3.eth.contract(address=address, abi=artifact.abi)
    assert probe.functions.get().call() == 7

    log_filter = w3.eth.filter({"address": address})
    block_filter = w3.eth.filter("latest")

    set_tx = probe.functions.set(99).build_transaction(
        {"from": ACCOUNT.address, "nonce": w3.eth.get_transaction_count(ACCOUNT.address, "pending"),
         "chainId": CHAIN_ID}
    )
    receipt = w3.eth.wait_for_transaction_receipt(
        w3.eth.send_raw_transaction(ACCOUNT.sign_transaction(set_tx).raw_transaction),
        timeout=60, poll_latency=0.2,
    )
    assert receipt["status"] == 1
    assert probe.functions.get().call() == 99
    assert probe.functions.get().call(block_identifier=receipt["blockNumber"] - 1) == 7

    events = probe.events.ValueChanged().process_receipt(receipt)
    assert [(e.args.by, e.args.oldValue, e.args.newValue) for e in events] == [
        (ACCOUNT.address, 7, 99)
    ]
    logs = w3.eth.get_logs({"fromBlock": 0, "toBlock": "latest", "address": address})
    assert len(logs) == 1 and logs[0]["transactionHash"] == receipt["transactionHash"]
    decoded = probe.events.ValueChanged().process_log(logs[0])
    assert decoded.args.newValue == 99
    by_topic = w3.eth.get_logs({
        "fromBlock": 0, "address": address,
        "topics": [None, None, "0x" + (7).to_bytes(32, "big").hex()],
    })
    assert len(by_topic) == 1
    assert w3.eth.get_logs({"fromBlock": 0, "address": address,
                            "topics": [None, None, "0x" + (8).to_bytes(32, "big").hex()]}) == []

    changes = log_filter.get_new_entries()
    assert [c["transactionHash"] for c in changes] == [receipt["transactionHash"]]
    assert log_filter.get_new_entries() == []
    assert len(log_filter.get_all_entries()) == 1
    assert receipt["blockHash"] in block_filter.get_new_entries()
    assert w3.eth.uninstall_filter(log_filter.filter_id) is True

    block = w3.eth.get_block(receipt["blockNumber"], full_transactions=True)
    assert block["transactions"][receipt["transactionIndex"]]["hash"] == receipt["transactionHash"]
    tx = w3.eth.get_transaction(receipt["transactionHash"])
    assert tx["from"] == ACCOUNT.address and tx["to"] == address

    with pytest.raises(ContractLogicError, match="not allowed"):
        probe.functions.fail("not allowed").call()
    with pytest.raises(ContractCustomError):
        probe.functions.failCustom(5).call()
    assert w3.eth.estimate_gas(
        {"from": ACCOUNT.address, "to": address, "data": probe.encode_abi("set", [5])}
    ) > 21_000
    history = w3.eth.fee_history(4, "latest", [50])
    assert len(history["baseFeePerGas"]) == len(history["gasUsedRatio"]) + 1


def test_web3_websocket_subscriptions(node: NodeProcess) -> None:
    artifact = load_artifact("EventProbe")

    async def scenario() -> None:
        async with AsyncWeb3(WebSocketProvider(node.ws)) as w3:
            w3.middleware_onion.inject(ExtraDataToPOAMiddleware, layer=0)
            assert await w3.eth.chain_id == CHAIN_ID
            factory = w3.eth.contract(abi=artifact.abi, bytecode=artifact.bytecode)
            nonce = await w3.eth.get_transaction_count(ACCOUNT.address)
            deploy = await factory.constructor(1).build_transaction(
                {"from": ACCOUNT.address, "nonce": nonce, "chainId": CHAIN_ID}
            )
            tx_hash = await w3.eth.send_raw_transaction(
                ACCOUNT.sign_transaction(deploy).raw_transaction
            )
            receipt = await w3.eth.wait_for_transaction_receipt(tx_hash, timeout=60,
                                                                poll_latency=0.2)
            address = receipt["contractAddress"]
            probe = w3.eth.contract(address=address, abi=artifact.abi)

            logs_sub = await w3.eth.subscribe("logs", {"address": address})
            heads_sub = await w3.eth.subscribe("newHeads")
            set_tx = await probe.functions.set(42).build_transaction(
                {"from": ACCOUNT.address, "nonce": nonce + 1, "chainId": CHAIN_ID}
            )
            signed_set = ACCOUNT.sign_transaction(set_tx)
            sent = await w3.eth.send_raw_transaction(signed_set.raw_transaction)

            got_log = None
            got_head = False
            async def collect() -> None:
                nonlocal got_log, got_head
                async for message in w3.socket.process_subscriptions():
                    if message["subscription"] == logs_sub:
                        got_log = message["result"]
                    elif message["subscription"] == heads_sub:
                        got_head = True
                    if got_log is not None and got_head:
                        return

            await asyncio.wait_for(collect(), timeout=60)
            assert got_log is not None
            assert got_log["transactionHash"] == sent
            assert got_log["address"] == address
            assert await w3.eth.unsubscribe(logs_sub) is True
            receipt = await w3.eth.wait_for_transaction_receipt(sent, timeout=60, poll_latency=0.2)
            assert receipt["status"] == 1

    asyncio.run(scenario())
