"""Bad input to a running node gets the right JSON-RPC error, and the node keeps serving."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from eth_account import Account

from tests.helpers import CHAIN_ID, USER_KEYS, USERS, transfer
from tests.nodeproc import NodeProcess, new_node

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def live(tmp_path_factory: pytest.TempPathFactory) -> Iterator[NodeProcess]:
    node = new_node(Path(tmp_path_factory.mktemp("bad-input"))).start()
    try:
        yield node
    finally:
        node.stop()


def post(node: NodeProcess, body: bytes | str | object) -> httpx.Response:
    if isinstance(body, bytes | str):
        return httpx.post(node.http, content=body, headers={"content-type": "application/json"})
    return httpx.post(node.http, json=body)


def call(node: NodeProcess, method: str, *params: object) -> dict:  # type: ignore[type-arg]
    return post(node, {"jsonrpc": "2.0", "id": 7, "method": method, "params": list(params)}).json()


def still_serving(node: NodeProcess) -> None:
    reply = call(node, "eth_chainId")
    assert reply == {"jsonrpc": "2.0", "id": 7, "result": hex(CHAIN_ID)}


def error_of(reply: dict) -> tuple[int, str]:  # type: ignore[type-arg]
    assert "error" in reply, reply
    return reply["error"]["code"], reply["error"]["message"]


def test_malformed_json(live: NodeProcess) -> None:
    reply = post(live, b'{"jsonrpc": "2.0", "id": 1, "method": ').json()
    assert reply["id"] is None and reply["error"]["code"] == -32700
    still_serving(live)


def test_invalid_requests(live: NodeProcess) -> None:
    assert error_of(post(live, {"id": 1, "method": "eth_chainId"}).json())[0] == -32600
    assert error_of(post(live, []).json())[0] == -32600
    assert error_of(post(live, {"jsonrpc": "2.0", "id": 1, "method": 5}).json())[0] == -32600
    code, message = error_of(call(live, "eth_noSuchMethod"))
    assert code == -32601 and "eth_noSuchMethod" in message
    still_serving(live)


@pytest.mark.parametrize(
    ("method", "params", "fragment"),
    [
        ("eth_getBalance", ["0x1234", "latest"], "invalid argument 0"),
        ("eth_getBalance", ["0x" + "11" * 20, "yesterday"], "invalid argument 1"),
        ("eth_getBlockByNumber", ["0x01", False], "leading zero"),
        ("eth_getBlockByNumber", ["latest"], "missing value"),
        ("eth_getTransactionByHash", ["0xzz"], "invalid argument 0"),
        ("eth_chainId", [1], "too many arguments"),
        ("eth_sendRawTransaction", ["not hex"], "invalid argument 0"),
        ("eth_getLogs", [{"blockHash": "0x" + "00" * 32, "fromBlock": "0x0"}], "BlockHash"),
    ],
)
def test_wrong_params(live: NodeProcess, method: str, params: list, fragment: str) -> None:  # type: ignore[type-arg]
    code, message = error_of(call(live, method, *params))
    assert code == -32602
    assert fragment.lower() in message.lower()
    still_serving(live)


def test_oversized_body_and_batch(live: NodeProcess) -> None:
    huge = b'{"jsonrpc":"2.0","id":1,"method":"eth_chainId","params":["' + b"a" * (6 << 20) + b'"]}'
    response = post(live, huge)
    assert response.status_code == 413
    assert response.json()["error"]["code"] == -32600
    batch = [{"jsonrpc": "2.0", "id": i, "method": "eth_chainId", "params": []}
             for i in range(1001)]
    reply = post(live, batch).json()
    assert isinstance(reply, dict) and "too large" in reply["error"]["message"]
    still_serving(live)


def test_invalid_signature_wrong_chain_and_replay(live: NodeProcess) -> None:
    key = USER_KEYS[2]
    good = transfer(key, 0)
    # Flip a byte inside s: the signature no longer recovers the sender or is invalid.
    tampered = bytearray(good)
    tampered[-5] ^= 0x55
    code, message = error_of(call(live, "eth_sendRawTransaction", "0x" + bytes(tampered).hex()))
    assert code in (-32000, -32602), message
    assert "sender" in message or "signature" in message or "decode" in message or (
        "insufficient funds" in message  # recovers some unfunded random address
    )

    code, message = error_of(
        call(live, "eth_sendRawTransaction", "0x" + transfer(key, 0, chain_id=CHAIN_ID + 1).hex())
    )
    assert code == -32000 and "chain id" in message

    legacy = Account.sign_transaction(
        {"nonce": 0, "to": "0x" + "42" * 20, "value": 1, "gas": 21_000, "gasPrice": 10**10},
        key,
    )
    code, message = error_of(
        call(live, "eth_sendRawTransaction", "0x" + bytes(legacy.raw_transaction).hex())
    )
    assert code == -32000 and "EIP-155" in message

    # A transaction behind a nonce gap stays pending: sending it again is "already known".
    gapped = transfer(key, 3)
    assert "result" in call(live, "eth_sendRawTransaction", "0x" + gapped.hex())
    code, message = error_of(call(live, "eth_sendRawTransaction", "0x" + gapped.hex()))
    assert code == -32000 and message == "already known"

    first = call(live, "eth_sendRawTransaction", "0x" + good.hex())
    tx_hash = first["result"]
    deadline = time.monotonic() + 30
    while call(live, "eth_getTransactionReceipt", tx_hash)["result"] is None:
        assert time.monotonic() < deadline, "transaction never sealed"
        time.sleep(0.2)
    code, message = error_of(call(live, "eth_sendRawTransaction", "0x" + good.hex()))
    assert code == -32000 and message == "nonce too low"

    broke = transfer(key, 1, value=10**30)
    code, message = error_of(call(live, "eth_sendRawTransaction", "0x" + broke.hex()))
    assert code == -32000 and message.startswith("insufficient funds")
    still_serving(live)


def test_reverting_call_returns_code_3_with_data(live: NodeProcess) -> None:
    # Code that always reverts with Error("nope"): store the revert data in memory and revert.
    reason = b"nope"
    revert_data = (
        bytes.fromhex("08c379a0") + (32).to_bytes(32, "big") + len(reason).to_bytes(32, "big")
        + reason.ljust(32, b"\x00")
    )
    code = b""
    for offset in range(0, len(revert_data), 32):
        code += b"\x7f" + revert_data[offset:offset + 32].ljust(32, b"\x00")
        code += b"\x60" + bytes([offset]) + b"\x52"  # PUSH1 offset MSTORE
    code += b"\x60" + bytes([len(revert_data)]) + b"\x60\x00\xfd"  # PUSH1 len PUSH1 0 REVERT
    target = "0x" + "77" * 20
    reply = call(
        live, "eth_call", {"from": "0x" + USERS[0].hex(), "to": target},
        "latest", {target: {"code": "0x" + code.hex()}},
    )
    assert reply["error"]["code"] == 3
    assert reply["error"]["message"] == "execution reverted: nope"
    assert reply["error"]["data"] == "0x" + revert_data.hex()
    still_serving(live)


def test_log_range_cap(live: NodeProcess) -> None:
    too_wide = {"fromBlock": "0x0", "toBlock": hex(10_000)}
    code, message = error_of(call(live, "eth_getLogs", too_wide))
    assert code == -32005 and "max block range" in message
    code, _ = error_of(call(live, "eth_getFilterChanges", "0x1234"))
    assert code == -32000
    still_serving(live)
