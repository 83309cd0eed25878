"""newPendingTransactions and newHeads over a raw WebSocket, and the pending-transaction filter."""

from __future__ import annotations

import json
import time

import pytest
from websockets.sync.client import connect

from tests.helpers import USER_KEYS, transfer
from tests.nodeproc import NodeProcess

pytestmark = pytest.mark.slow


def test_pending_subscription_heads_and_pending_filter(node: NodeProcess) -> None:
    pending_filter = node.rpc("eth_newPendingTransactionFilter")
    with connect(node.ws, open_timeout=10) as ws:
        ws.send(json.dumps({"jsonrpc": "2.0", "id": 1, "method": "eth_subscribe",
                            "params": ["newPendingTransactions"]}))
        pending_sub = json.loads(ws.recv(timeout=10))["result"]
        ws.send(json.dumps({"jsonrpc": "2.0", "id": 2, "method": "eth_subscribe",
                            "params": ["newHeads"]}))
        heads_sub = json.loads(ws.recv(timeout=10))["result"]
        ws.send(json.dumps({"jsonrpc": "2.0", "id": 3, "method": "eth_subscribe",
                            "params": ["noSuchKind"]}))
        assert json.loads(ws.recv(timeout=10))["error"]["code"] == -32602

        tx_hash = node.rpc("eth_sendRawTransaction", "0x" + transfer(USER_KEYS[3], 0).hex())
        seen_pending = None
        head = None
        deadline = time.monotonic() + 30
        while (seen_pending is None or head is None) and time.monotonic() < deadline:
            message = json.loads(ws.recv(timeout=30))
            params = message["params"]
            if params["subscription"] == pending_sub:
                seen_pending = params["result"]
            elif params["subscription"] == heads_sub:
                head = params["result"]
        assert seen_pending == tx_hash
        assert head is not None and int(head["number"], 16) >= 1
        assert set(head) >= {"hash", "parentHash", "stateRoot", "extraData", "baseFeePerGas"}
    assert node.rpc("eth_getFilterChanges", pending_filter) == [tx_hash]
    assert node.rpc("eth_getFilterChanges", pending_filter) == []
    assert node.rpc("eth_uninstallFilter", pending_filter) is True
    assert node.rpc("eth_uninstallFilter", pending_filter) is False
