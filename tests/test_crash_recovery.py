"""SIGKILL a sealing node under load, restart it, and find every block it reported as sealed.

The seed of each run is printed so that a failure can be replayed:
MEDLEDGER_CRASH_SEED=<seed> pytest tests/test_crash_recovery.py
"""

from __future__ import annotations

import json
import os
import random
import threading
import time
from pathlib import Path

import httpx
import pytest

from genesis.schema import load_genesis
from node.chain import Chain
from tests.helpers import USER_KEYS, USERS, transfer
from tests.nodeproc import NodeProcess, new_node

pytestmark = pytest.mark.slow


class Load(threading.Thread):
    """Sends signed transfers in JSON-RPC batches until stopped; survives node restarts."""

    def __init__(self, node: NodeProcess) -> None:
        super().__init__(daemon=True)
        self.node = node
        self.stop_event = threading.Event()
        self.accepted = 0

    def run(self) -> None:
        client = httpx.Client(timeout=5)
        while not self.stop_event.is_set():
            try:
                nonces = [
                    int(self._call(client, "eth_getTransactionCount", "0x" + u.hex(), "pending"),
                        16)
                    for u in USERS
                ]
                batch = []
                for key, nonce in zip(USER_KEYS, nonces, strict=True):
                    for n in range(nonce, nonce + 25):
                        raw = transfer(key, n, value=1 + n)
                        batch.append({"jsonrpc": "2.0", "id": len(batch),
                                      "method": "eth_sendRawTransaction",
                                      "params": ["0x" + raw.hex()]})
                replies = client.post(self.node.http, json=batch).json()
                self.accepted += sum(1 for r in replies if "result" in r)
            except (httpx.HTTPError, ValueError, RuntimeError, KeyError, TypeError):
                time.sleep(0.05)  # node down or restarting
            time.sleep(0.02)

    def _call(self, client: httpx.Client, method: str, *params: object) -> str:
        reply = client.post(self.node.http, json={"jsonrpc": "2.0", "id": 1, "method": method,
                                                  "params": list(params)}).json()
        if "result" not in reply:
            raise RuntimeError(reply)
        return reply["result"]


def sealed_blocks(log_text: str) -> dict[int, str]:
    """Blocks the node reported as sealed, from its JSON log lines."""
    sealed: dict[int, str] = {}
    for line in log_text.splitlines():
        try:
            event = json.loads(line)
        except ValueError:
            continue
        if event.get("event") == "sealed block":
            sealed[event["number"]] = event["hash"]
    return sealed


def test_sigkill_under_load_loses_no_sealed_block(tmp_path: Path) -> None:
    seed = int(os.environ.get("MEDLEDGER_CRASH_SEED", random.randrange(2**32)))
    print(f"crash test seed: {seed}")
    rng = random.Random(seed)
    node = new_node(tmp_path).start("--empty-block-period", "1")
    load = Load(node)
    load.start()
    kills = 0
    try:
        for _ in range(4):
            time.sleep(rng.uniform(1.5, 4.0))
            node.kill()
            kills += 1
            node.start("--empty-block-period", "1")
            reported = sealed_blocks(node.logs())
            head = int(node.rpc("eth_blockNumber"), 16)  # type: ignore[arg-type]
            assert head >= max(reported), f"seed {seed}: head {head} lost sealed blocks"
            for number, block_hash in reported.items():
                block = node.rpc("eth_getBlockByNumber", hex(number), False)
                assert isinstance(block, dict), f"seed {seed}: block {number} missing"
                assert block["hash"] == block_hash, f"seed {seed}: block {number} changed"
    finally:
        load.stop_event.set()
        load.join(10)
        node.stop()
    assert kills == 4
    assert load.accepted > 0
    reported = sealed_blocks(node.logs())
    assert sum(1 for _ in reported) >= 4

    # Every stored block re-executes to its recorded state root on a fresh database.
    genesis = load_genesis(node.genesis)
    stored = Chain(node.datadir, genesis)
    replay = Chain(tmp_path / "replay", genesis)
    try:
        assert stored.head.block_number >= max(reported)
        total_txs = 0
        for number in range(1, stored.head.block_number + 1):
            block = stored.block_by_number(number)
            assert block is not None
            total_txs += len(block.transactions)
            imported = replay.import_block(block)
            assert imported.header.state_root == block.header.state_root
        assert replay.head.hash == stored.head.hash
        assert total_txs > 0, "the load never reached a block"
        for number, block_hash in reported.items():
            header = stored.header_by_number(number)
            assert header is not None and "0x" + header.hash.hex() == block_hash
    finally:
        stored.close()
        replay.close()
