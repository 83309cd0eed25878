"""Fuzzing the JSON-RPC API of a real `medledger node run` over HTTP and WebSocket: every
registered method with random and near-valid params, raw transactions (valid ones mutated),
and raw request bodies. Properties: the server always answers (no hang, no dropped
connection), with the request's id and the JSON-RPC error code the input deserves; never an
internal error (-32603 means a handler raised something unexpected) and never a traceback
in the node's log."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from websockets.sync.client import connect as ws_connect

from node.runtime import Node, NodeConfig
from tests.fuzz.conftest import examples
from tests.fuzz.stats import case
from tests.helpers import USER_KEYS, USERS, VALIDATOR, make_genesis, transfer
from tests.nodeproc import NodeProcess, new_node

pytestmark = [pytest.mark.slow, pytest.mark.timeout(600)]  # a node subprocess

INTERNAL_ERROR = -32603
# Codes a well-behaved answer may carry: parse error, invalid request, method not found,
# invalid params, server errors (-32000 txpool/execution, -32001 not found, -32005 limits),
# EIP-1474 -32004 and 3 (execution reverted).
EXPECTED_CODES = {-32700, -32600, -32601, -32602, -32000, -32001, -32002, -32003, -32004,
                  -32005, -32006, 3}
NOT_OVER_HTTP = {"eth_subscribe", "eth_unsubscribe"}


def _methods() -> list[str]:
    """Every method a default node registers (read from a node built in-process)."""
    import tempfile

    with tempfile.TemporaryDirectory() as tmp:
        node = Node(NodeConfig(datadir=Path(tmp), genesis=make_genesis(),
                               validator_key=None, rpc_port=0, ws_port=None))
        try:
            return node.dispatcher.methods()
        finally:
            node.chain.close()


METHODS = _methods()


@pytest.fixture(scope="module")
def node(tmp_path_factory: pytest.TempPathFactory) -> Iterator[NodeProcess]:
    proc = new_node(tmp_path_factory.mktemp("rpcfuzz")).start("--empty-block-period", "1")
    # A little history for the block/tx/log readers to find.
    for nonce in range(3):
        proc.rpc("eth_sendRawTransaction", "0x" + transfer(USER_KEYS[0], nonce).hex())
    try:
        yield proc
        assert "Traceback" not in proc.logs()
        assert "rpc.handler_failed" not in proc.logs()
    finally:
        proc.stop()


@pytest.fixture(scope="module")
def client(node: NodeProcess) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=node.http, timeout=30, trust_env=False,
                      headers={"Content-Type": "application/json"}) as http:
        yield http


# -- strategies -------------------------------------------------------------------------------

json_scalars = st.one_of(st.none(), st.booleans(), st.integers(-(2**70), 2**70),
                         st.floats(allow_nan=False, allow_infinity=False), st.text(max_size=40))
json_values = st.recursive(json_scalars, lambda inner: st.one_of(
    st.lists(inner, max_size=4), st.dictionaries(st.text(max_size=12), inner, max_size=4)),
    max_leaves=12)


def hex_bytes(min_size: int = 0, max_size: int = 64) -> st.SearchStrategy[str]:
    return st.binary(min_size=min_size, max_size=max_size).map(lambda b: "0x" + b.hex())


quantities = st.one_of(st.integers(0, 2**260).map(hex), st.sampled_from(
    ["0x", "0x0", "0x00", "0x01", "0xzz", "12", "-0x1", "0x" + "f" * 70]))
addresses = st.one_of(hex_bytes(20, 20), st.sampled_from(
    ["0x" + USERS[0].hex(), "0x" + VALIDATOR.hex(), "0x" + "00" * 20]), hex_bytes(0, 30))
hashes = st.one_of(hex_bytes(32, 32), hex_bytes(0, 40))
tags = st.sampled_from(["latest", "earliest", "pending", "safe", "finalized", "0x0", "0x1",
                        "0x2", "0xffffffffffffffff", "LATEST", ""])
block_ids = st.one_of(tags, quantities, hashes,
                      st.fixed_dictionaries({"blockHash": hashes}),
                      st.fixed_dictionaries({"blockNumber": quantities}))
call_objects = st.fixed_dictionaries({}, optional={
    "from": addresses, "to": st.one_of(addresses, st.none()), "gas": quantities,
    "gasPrice": quantities, "maxFeePerGas": quantities, "maxPriorityFeePerGas": quantities,
    "value": quantities, "data": hex_bytes(0, 100), "input": hex_bytes(0, 100),
    "nonce": quantities, "type": st.sampled_from(["0x0", "0x1", "0x2", "0x3", "0x4", "0x9"]),
    "accessList": json_values, "chainId": quantities,
})
filters = st.fixed_dictionaries({}, optional={
    "fromBlock": block_ids, "toBlock": block_ids, "blockHash": hashes,
    "address": st.one_of(addresses, st.lists(addresses, max_size=3)),
    "topics": st.lists(st.one_of(st.none(), hashes, st.lists(hashes, max_size=3)),
                       max_size=5),
})
param_values = st.one_of(json_values, quantities, addresses, hashes, tags, block_ids,
                         call_objects, filters, st.booleans())
params = st.one_of(st.lists(param_values, max_size=4), json_values)


def raw_transactions() -> st.SearchStrategy[bytes]:
    valid = st.builds(lambda k, n, v, gas: transfer(USER_KEYS[k], n, value=v, gas=gas),
                      st.integers(0, 3), st.integers(0, 5), st.integers(0, 10**25),
                      st.sampled_from([21_000, 20_000, 10**9]))

    def mutate(raw: bytes) -> st.SearchStrategy[bytes]:
        return st.one_of(
            st.just(raw),
            st.integers(0, len(raw) - 1).map(lambda i: raw[:i]),
            st.tuples(st.integers(0, len(raw) - 1), st.integers(1, 255)).map(
                lambda t: raw[: t[0]] + bytes([raw[t[0]] ^ t[1]]) + raw[t[0] + 1:]),
            st.binary(max_size=8).map(lambda tail: raw + tail),
        )

    return st.one_of(st.binary(max_size=200), valid.flatmap(mutate))


# -- checks -----------------------------------------------------------------------------------


def check_answer(answer: Any, request_id: Any) -> None:
    assert isinstance(answer, dict), answer
    assert answer.get("jsonrpc") == "2.0"
    assert answer.get("id") == request_id, answer
    assert ("result" in answer) != ("error" in answer), answer
    if "error" in answer:
        code = answer["error"]["code"]
        assert code != INTERNAL_ERROR, answer
        assert code in EXPECTED_CODES, answer
        assert isinstance(answer["error"]["message"], str) and answer["error"]["message"]


def post(client: httpx.Client, payload: Any) -> Any:
    response = client.post("/", content=json.dumps(payload))
    assert response.status_code == 200, response.text
    return response.json()


# -- properties -------------------------------------------------------------------------------


@settings(max_examples=examples(150))
@given(method=st.sampled_from(METHODS), params=params, request_id=st.integers(0, 2**31))
def test_every_method_answers_random_params(client: httpx.Client, method: str, params: Any,
                                            request_id: int) -> None:
    case()
    answer = post(client, {"jsonrpc": "2.0", "id": request_id, "method": method,
                           "params": params})
    check_answer(answer, request_id)
    if method in NOT_OVER_HTTP:
        assert "error" in answer
    if not isinstance(params, list | dict) and "error" in answer:
        assert answer["error"]["code"] in (-32600, -32602), answer


@settings(max_examples=examples(60))
@given(raw=raw_transactions())
def test_send_raw_transaction_decodes_or_refuses(client: httpx.Client, raw: bytes) -> None:
    case()
    answer = post(client, {"jsonrpc": "2.0", "id": 1, "method": "eth_sendRawTransaction",
                           "params": ["0x" + raw.hex()]})
    check_answer(answer, 1)
    if "result" in answer:
        assert len(bytes.fromhex(answer["result"][2:])) == 32
    else:
        assert answer["error"]["code"] in (-32602, -32000, -32003), answer


@settings(max_examples=examples(60))
@given(body=st.one_of(
    st.binary(max_size=200),
    json_values.map(lambda v: json.dumps(v).encode()),
    st.lists(st.fixed_dictionaries({"jsonrpc": st.sampled_from(["2.0", "1.0", 2]),
                                    "method": st.one_of(st.sampled_from(METHODS), json_values),
                                    "id": json_values, "params": params}),
             max_size=5).map(lambda v: json.dumps(v).encode()),
))
def test_raw_bodies_get_json_rpc_errors(client: httpx.Client, body: bytes) -> None:
    case()
    response = client.post("/", content=body)
    assert response.status_code in (200, 204), response.text
    if response.status_code == 204:
        return  # notifications only: nothing to answer
    answer = response.json()
    for item in answer if isinstance(answer, list) else [answer]:
        assert "result" in item or item["error"]["code"] != INTERNAL_ERROR, item
        if "error" in item:
            assert item["error"]["code"] in EXPECTED_CODES, item
    try:
        parsed = json.loads(body)
    except ValueError:
        assert answer["error"]["code"] == -32700
        return
    if not isinstance(parsed, dict | list) or parsed == []:
        assert answer["error"]["code"] == -32600


def test_error_codes_for_known_bad_requests(client: httpx.Client) -> None:
    assert post(client, {"jsonrpc": "2.0", "id": 1, "method": "eth_getBalance",
                         "params": ["0x12", "latest"]})["error"]["code"] == -32602
    assert post(client, {"jsonrpc": "2.0", "id": 1, "method": "nope_nope",
                         "params": []})["error"]["code"] == -32601
    assert post(client, {"jsonrpc": "2.0", "id": 1})["error"]["code"] == -32600
    assert client.post("/", content=b"{bad json").json()["error"]["code"] == -32700


@settings(max_examples=examples(30))
@given(method=st.sampled_from(METHODS), params=params)
def test_websocket_answers_random_params(node: NodeProcess, method: str, params: Any) -> None:
    case()
    with ws_connect(node.ws, open_timeout=30) as conn:
        conn.send(json.dumps({"jsonrpc": "2.0", "id": "w", "method": method, "params": params}))
        answer = json.loads(conn.recv(timeout=30))
        check_answer(answer, "w")
