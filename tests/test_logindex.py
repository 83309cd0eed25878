"""The persistent log index answers eth_getLogs exactly like the block scan it replaces."""

from __future__ import annotations

import random
from pathlib import Path
from typing import Any

import httpx
import pytest
import rlp
import trio
from eth_account import Account
from eth_utils import keccak, to_checksum_address

from consensus.seals import seal_hash, sign_seal
from genesis.schema import Genesis
from node.chain import Chain
from node.logindex import INDEX_DIR, BlockLogs, LogIndex, LogIndexError, RawLog
from node.rpc.errors import RpcError
from node.rpc.eth_api import EthApi, EthApiConfig
from node.rpc.filters import FilterManager
from node.rpc.params import log_matches, parse_log_filter
from node.rpc.subscriptions import SubscriptionHub
from node.runtime import Node, NodeConfig
from node.txpool import TxPool
from node.worker import ChainWorker
from tests.helpers import CHAIN_ID, USER_KEYS, VALIDATOR, VALIDATOR_KEY, decode, make_genesis
from tests.helpers import address_of as key_address

TOPICS = [bytes([0xA0 + i]) * 32 for i in range(4)]


def emitter_code(topic_count: int) -> bytes:
    """Init code of a contract whose every call emits LOG<topic_count>: the topics are the first
    32 * topic_count bytes of the calldata, the data is the rest."""
    k = 32 * topic_count
    runtime = b""
    for i in reversed(range(topic_count)):
        runtime += bytes([0x60, 32 * i, 0x35])  # PUSH1 32i CALLDATALOAD
    runtime += bytes([0x60, k, 0x36, 0x03])  # data length = CALLDATASIZE - k
    runtime += bytes([0x80, 0x60, k, 0x60, 0, 0x37])  # CALLDATACOPY(0, k, length)
    runtime += bytes([0x60, 0, 0xA0 + topic_count, 0x00])  # LOGn(0, length, topics...) STOP
    init = bytes([0x60, len(runtime), 0x80, 0x60, 11, 0x60, 0, 0x39, 0x60, 0, 0xF3])
    return init + runtime


def contract_address(sender: bytes, nonce: int) -> bytes:
    return keccak(rlp.encode([sender, nonce]))[12:]


def signed_tx(key: bytes, nonce: int, to: bytes | None, data: bytes) -> bytes:
    tx: dict[str, Any] = {"type": 2, "chainId": CHAIN_ID, "nonce": nonce, "value": 0,
                          "gas": 200_000, "maxFeePerGas": 2 * 10**9,
                          "maxPriorityFeePerGas": 10**8, "data": data}
    if to is not None:
        tx["to"] = to_checksum_address(to)
    return bytes(Account.sign_transaction(tx, key).raw_transaction)


class LogChain:
    """A chain whose blocks hold random logs from a few emitter contracts."""

    def __init__(self, datadir: Path, genesis: Genesis) -> None:
        self.chain = Chain(datadir, genesis)
        self.nonces = [0] * len(USER_KEYS)
        self.emitters: list[tuple[bytes, int]] = []  # (address, topic count)

    def tx(self, user: int, to: bytes | None, data: bytes) -> Any:
        nonce = self.nonces[user]
        self.nonces[user] += 1
        return decode(signed_tx(USER_KEYS[user], nonce, to, data))

    def block(self, txs: list[Any]) -> None:
        built = self.chain.build_block(txs, timestamp=self.chain.head.timestamp + 1,
                                       proposer=VALIDATOR)
        assert not built.rejected, built.rejected
        self.chain.commit_sealed(built, [sign_seal(seal_hash(built.block.header), VALIDATOR_KEY)])

    def deploy_emitters(self) -> None:
        deployer = key_address(USER_KEYS[0])
        txs = []
        for count in (0, 1, 2, 3, 4, 2, 1):
            self.emitters.append((contract_address(deployer, self.nonces[0]), count))
            txs.append(self.tx(0, None, emitter_code(count)))
        self.block(txs)

    def random_blocks(self, rng: random.Random, blocks: int) -> None:
        for _ in range(blocks):
            txs = []
            for _ in range(rng.choice((0, 0, 1, 2, 3, 5))):
                address, count = rng.choice(self.emitters)
                topics = b"".join(rng.choice(TOPICS) for _ in range(count))
                data = rng.randbytes(rng.choice((0, 5, 40)))
                txs.append(self.tx(rng.randrange(1, len(USER_KEYS)), address, topics + data))
            if rng.random() < 0.1:  # a transfer: a transaction without logs
                txs.append(self.tx(1, b"\x42" * 20, b""))
            self.block(txs)


@pytest.fixture(scope="module")
def log_chain(tmp_path_factory: pytest.TempPathFactory) -> Any:
    datadir = tmp_path_factory.mktemp("logchain")
    genesis = make_genesis()
    built = LogChain(datadir, genesis)
    built.deploy_emitters()
    built.random_blocks(random.Random(8), 100)
    yield built, datadir, genesis
    built.chain.close()


def make_api(chain: Chain, index: LogIndex | None, max_results: int = 10_000) -> EthApi:
    return EthApi(chain, TxPool(CHAIN_ID), ChainWorker(), FilterManager(), SubscriptionHub(),
                  EthApiConfig(max_log_results=max_results), log_index=index)


def random_filter(rng: random.Random, emitters: list[tuple[bytes, int]], head: int,
                  block_hashes: list[bytes]) -> dict[str, Any]:
    value: dict[str, Any] = {}
    shape = rng.random()
    if shape < 0.1:
        value["blockHash"] = "0x" + rng.choice(block_hashes).hex()
    elif shape < 0.85:
        first = rng.randrange(0, head + 1)
        value["fromBlock"] = hex(first)
        value["toBlock"] = rng.choice((hex(rng.randrange(first, head + 1)), "latest"))
    elif shape < 0.92:
        value["fromBlock"] = "earliest"
    address_choice = rng.random()
    addresses = ["0x" + a.hex() for a, _ in emitters] + ["0x" + "42" * 20]
    if address_choice < 0.3:
        value["address"] = rng.choice(addresses)
    elif address_choice < 0.55:
        value["address"] = rng.sample(addresses, rng.randrange(1, 4))
    topic_words = ["0x" + t.hex() for t in TOPICS] + ["0x" + "99" * 32]
    if rng.random() < 0.7:
        topics: list[Any] = []
        for _ in range(rng.randrange(0, 5)):
            kind = rng.random()
            if kind < 0.3:
                topics.append(None)
            elif kind < 0.65:
                topics.append(rng.choice(topic_words))
            elif kind < 0.9:
                topics.append(rng.sample(topic_words, rng.randrange(1, 4)))
            else:
                topics.append([])
        value["topics"] = topics
    return value


def query(api: EthApi, value: dict[str, Any]) -> list[dict[str, Any]] | str:
    try:
        return api._query_logs(parse_log_filter(value, 0))
    except RpcError as exc:
        return f"error {exc.code}: {exc.message}"


def reference(chain: Chain, every_log: list[dict[str, Any]], value: dict[str, Any],
              max_results: int = 10_000) -> list[dict[str, Any]] | str:
    """The full scan, in memory: every log of the chain, filtered by the criteria."""
    criteria = parse_log_filter(value, 0)
    head = chain.head.block_number

    def resolve(tag: Any, default: int) -> int:
        if tag is None:
            return default
        return {"latest": head, "earliest": 0}.get(tag, tag)  # type: ignore[arg-type]

    def wanted(log: dict[str, Any]) -> bool:
        if criteria.block_hash is not None:
            if log["blockHash"] != "0x" + criteria.block_hash.hex():
                return False
        elif not (resolve(criteria.from_block, head) <= int(log["blockNumber"], 16)
                  <= resolve(criteria.to_block, head)):
            return False
        return log_matches(criteria, bytes.fromhex(log["address"][2:]),
                           [bytes.fromhex(t[2:]) for t in log["topics"]])

    found = [log for log in every_log if wanted(log)]
    if len(found) > max_results:
        return f"error -32005: query returned more than {max_results} results"
    return found


def test_index_matches_scan_for_random_filters(log_chain: Any, tmp_path: Path) -> None:
    built, _, _ = log_chain
    chain = built.chain
    index = LogIndex(tmp_path / INDEX_DIR)
    try:
        indexed = 0
        while (done := index.catch_up(chain, max_blocks=7)) > 0:  # several chunks
            indexed += done
        head = chain.head.block_number
        assert indexed == head + 1 and index.head == head
        scan, fast = make_api(chain, None), make_api(chain, index)
        hashes = [chain.header_by_number(n).hash for n in range(head + 1)]
        every_log = [log for n in range(head + 1)
                     for log in scan.block_logs(chain.block_by_number(n))]
        rng = random.Random(1)
        nonempty = 0
        for i in range(500):
            value = random_filter(rng, built.emitters, head, hashes)
            expected = reference(chain, every_log, value)
            assert query(fast, value) == expected, value
            if i < 60:  # the node's own block scan agrees too (slow: a subset)
                assert query(scan, value) == expected, value
            nonempty += bool(expected) and not isinstance(expected, str)
        assert nonempty > 120  # the filters really select logs
        everything = query(fast, {"fromBlock": "earliest"})
        assert isinstance(everything, list) and len(everything) > 150
        assert everything == every_log
    finally:
        index.close()


def test_partial_index_scans_the_rest_and_limits_agree(log_chain: Any, tmp_path: Path) -> None:
    built, _, _ = log_chain
    chain = built.chain
    index = LogIndex(tmp_path / INDEX_DIR)
    try:
        index.catch_up(chain, max_blocks=60)  # blocks 0..59 indexed, 60..head scanned
        assert index.head == 59
        head = chain.head.block_number
        hashes = [chain.header_by_number(n).hash for n in range(head + 1)]
        rng = random.Random(2)
        for max_results in (10_000, 25):
            scan, fast = make_api(chain, None, max_results), make_api(chain, index, max_results)
            for _ in range(30):
                value = random_filter(rng, built.emitters, head, hashes)
                assert query(fast, value) == query(scan, value), value
        limited = query(make_api(chain, index, 25), {"fromBlock": "earliest"})
        assert limited == "error -32005: query returned more than 25 results"
    finally:
        index.close()


def test_blocks_must_be_added_in_order_and_atomically(tmp_path: Path) -> None:
    index = LogIndex(tmp_path / INDEX_DIR)
    entry = RawLog(b"\x01" * 32, 0, b"\x02" * 20, (TOPICS[0],), b"x")
    try:
        index.add_blocks([BlockLogs(0, b"\x00" * 32, ())])
        with pytest.raises(LogIndexError, match="at block 2, cannot add block 4"):
            index.add_blocks([BlockLogs(1, b"\x11" * 32, (entry,)),
                              BlockLogs(2, b"\x22" * 32, (entry,)),
                              BlockLogs(4, b"\x44" * 32, ())])
        assert index.head == 0
        # Nothing of the refused batch landed: block 1's log is not there.
        criteria = parse_log_filter({"fromBlock": "0x0", "toBlock": "0x1"}, 0)
        assert index.query(criteria, 0, 1, 10).logs == []
    finally:
        index.close()
    reopened = LogIndex(tmp_path / INDEX_DIR)
    try:
        assert reopened.head == 0
    finally:
        reopened.close()


def test_index_of_another_chain_is_dropped_and_rebuilt(log_chain: Any, tmp_path: Path) -> None:
    built, _, _ = log_chain
    index = LogIndex(tmp_path / "datadir" / INDEX_DIR)
    index.catch_up_all(built.chain)
    assert index.head == built.chain.head.block_number
    index.close()
    other = LogChain(tmp_path / "datadir", make_genesis())  # same genesis, different blocks
    try:
        other.block([other.tx(1, b"\x42" * 20, b"")])
        reopened = LogIndex.open_for(tmp_path / "datadir", other.chain)
        try:
            assert reopened.head == -1
            assert reopened.catch_up_all(other.chain) == 2
        finally:
            reopened.close()
        # An index that is behind but on the chain is kept.
        other.block([])
        kept = LogIndex.open_for(tmp_path / "datadir", other.chain)
        try:
            assert kept.head == 1
        finally:
            kept.close()
    finally:
        other.chain.close()


def test_node_catches_up_on_start_and_indexes_new_blocks(tmp_path: Path) -> None:
    """A datadir whose chain ran ahead of its index (a crash, `db import`): the node catches
    up in the background, then indexes its own new blocks through the final-block listener."""
    genesis = make_genesis()
    offline = LogChain(tmp_path / "node", genesis)
    try:
        offline.deploy_emitters()
        offline.random_blocks(random.Random(3), 30)
        emitters = offline.emitters
        nonces = offline.nonces
    finally:
        offline.chain.close()
    results: dict[str, Any] = {}

    async def main() -> None:
        node = Node(NodeConfig(datadir=tmp_path / "node", genesis=genesis,
                               validator_key=VALIDATOR_KEY, rpc_port=0, ws_port=None))
        assert node.log_index.head == -1
        async with trio.open_nursery() as nursery:
            await nursery.start(node.run)
            with trio.fail_after(60):
                await node.log_indexer.caught_up.wait()
            assert node.log_index.head >= 31
            address, count = emitters[2]
            raw = signed_tx(USER_KEYS[3], nonces[3], address, TOPICS[3] * count + b"new")
            async with httpx.AsyncClient(timeout=30) as client:
                reply = (await client.post(f"http://127.0.0.1:{node.rpc_port}", json={
                    "jsonrpc": "2.0", "id": 1, "method": "eth_sendRawTransaction",
                    "params": ["0x" + raw.hex()]})).json()
            assert "result" in reply, reply
            with trio.fail_after(60):
                while True:
                    where = await node.worker.run(node.chain.transaction_location, keccak(raw))
                    if where is not None and node.log_index.head >= where[0]:
                        break
                    await trio.sleep(0.05)
            criteria = parse_log_filter(
                {"fromBlock": "earliest", "topics": ["0x" + TOPICS[3].hex()]}, 0)
            results["indexed"] = await node.worker.run(node.eth._query_logs, criteria)
            results["scan"] = await node.worker.run(
                make_api(node.chain, None)._query_logs, criteria)
            nursery.cancel_scope.cancel()

    trio.run(main)
    assert results["indexed"] == results["scan"]
    assert any(log["data"].endswith(b"new".hex()) for log in results["indexed"])
