"""Metrics and health of an in-process node, scraped over real HTTP while it makes blocks."""

from __future__ import annotations

import json
import re
from pathlib import Path

import httpx
import trio

from genesis.schema import load_genesis
from node.health import HealthPolicy, readiness
from node.metrics import NodeMetrics, NodeSnapshot, instrument_dispatcher
from node.ops_server import OpsApp, serve_ops
from node.runtime import Node, NodeConfig
from tests.helpers import USER_KEYS, VALIDATOR_KEY, transfer, write_node_files


def sample(text: str, name: str, labels: str = "") -> float:
    """One sample's value from Prometheus text (labels as written, e.g. '{method="x"}')."""
    pattern = re.escape(name + labels) + r" ([0-9.e+-]+)$"
    match = re.search(pattern, text, re.MULTILINE)
    assert match is not None, f"{name}{labels} not in scrape"
    return float(match.group(1))


def make_node(tmp_path: Path) -> Node:
    genesis_path, _, _ = write_node_files(tmp_path)
    config = NodeConfig(
        datadir=tmp_path / "data", genesis=load_genesis(genesis_path),
        validator_key=VALIDATOR_KEY, rpc_port=0, ws_port=None, empty_block_period=1,
    )
    return Node(config)


async def wait_for_head(client: httpx.AsyncClient, url: str, above: float) -> str:
    """A scrape once the head passed `above` and the one transaction sent is in a block."""
    with trio.fail_after(15):
        while True:
            text = (await client.get(url)).text
            if (sample(text, "medledger_chain_head_block") > above
                    and sample(text, "medledger_block_transactions_total") >= 1):
                return text
            await trio.sleep(0.2)


def test_metrics_move_as_blocks_are_made(tmp_path: Path) -> None:
    async def main() -> None:
        node = make_node(tmp_path)
        metrics = NodeMetrics()
        metrics.bind(node)
        wrapped = instrument_dispatcher(node.dispatcher, metrics)
        assert wrapped == len(node.dispatcher.methods()) > 10
        async with trio.open_nursery() as nursery:
            await nursery.start(node.run)
            port = await nursery.start(serve_ops, OpsApp(metrics, HealthPolicy()), "127.0.0.1", 0)
            base = f"http://127.0.0.1:{port}"
            rpc = f"http://127.0.0.1:{node.rpc_port}"
            async with httpx.AsyncClient(timeout=10) as client:
                first = (await client.get(base + "/metrics")).text
                head0 = sample(first, "medledger_chain_head_block")
                assert sample(first, "medledger_up") == 1
                assert sample(first, "medledger_qbft_is_validator") == 1
                assert sample(first, "medledger_p2p_peers") == 0

                # RPC calls: one that succeeds, one with bad params, one unknown method.
                for body in (
                    {"jsonrpc": "2.0", "id": 1, "method": "eth_blockNumber", "params": []},
                    {"jsonrpc": "2.0", "id": 2, "method": "eth_getBalance", "params": ["zz"]},
                    {"jsonrpc": "2.0", "id": 3, "method": "no_such", "params": []},
                ):
                    await client.post(rpc, json=body)
                raw = transfer(USER_KEYS[0], 0)
                reply = await client.post(rpc, json={
                    "jsonrpc": "2.0", "id": 4, "method": "eth_sendRawTransaction",
                    "params": ["0x" + raw.hex()]})
                assert "result" in reply.json(), reply.text

                later = await wait_for_head(client, base + "/metrics", head0 + 1)
                assert sample(later, "medledger_chain_finalized_block") == sample(
                    later, "medledger_chain_head_block")
                assert sample(later, "medledger_blocks_total", '{origin="sealed"}') >= 2
                assert sample(later, "medledger_block_time_seconds_count") >= 2
                assert sample(later, "medledger_block_time_seconds_sum") >= 2  # >= 1 s each
                assert sample(later, "medledger_block_transactions_total") == 1
                assert sample(later, "medledger_txpool_transactions") == 0
                assert sample(later, "medledger_sync_progress_ratio") == 1
                method = '{method="eth_blockNumber"}'
                assert sample(later, "medledger_rpc_requests_total", method) == 1
                assert sample(later, "medledger_rpc_request_duration_seconds_count", method) == 1
                assert sample(later, "medledger_rpc_errors_total",
                              '{code="-32602",method="eth_getBalance"}') == 1
                assert "no_such" not in later
                assert sample(later, "medledger_break_glass_opened_total") == 0

                live = await client.get(base + "/health/liveness")
                assert live.status_code == 200 and live.json()["status"] == "alive"
                ready = await client.get(base + "/health/readiness")
                assert ready.status_code == 200, ready.text
                assert ready.json()["head"] >= head0 + 2
                assert (await client.get(base + "/nope")).status_code == 404
                assert (await client.post(base + "/metrics")).status_code == 405
            nursery.cancel_scope.cancel()

    trio.run(main)


def test_metrics_off_serves_health_only(tmp_path: Path) -> None:
    async def main() -> None:
        metrics = NodeMetrics()
        async with trio.open_nursery() as nursery:
            app = OpsApp(metrics, serve_metrics=False)
            port = await nursery.start(serve_ops, app, "127.0.0.1", 0)
            async with httpx.AsyncClient(timeout=5) as client:
                base = f"http://127.0.0.1:{port}"
                assert (await client.get(base + "/metrics")).status_code == 404
                assert (await client.get(base + "/health/liveness")).status_code == 200
                # Nothing bound: the node cannot be read, so it is not ready.
                assert (await client.get(base + "/health/readiness")).status_code == 503
            nursery.cancel_scope.cancel()

    trio.run(main)


def test_dashboard_uses_only_exported_metrics() -> None:
    metrics = NodeMetrics()
    metrics.snapshot = NodeSnapshot(
        head_number=5, head_timestamp=0, txpool_size=0, networked=False, peers=0,
        sync_highest_seen=0, sync_imported=0, round_changes=0, validators=1, is_validator=True,
        read_at=0.0,
    )
    families = set(re.findall(r"^# TYPE (\S+) ", metrics.render().decode(), re.MULTILINE))
    dashboard = (Path(__file__).parent.parent / "docker" / "grafana-dashboard.json").read_text()
    exprs = [target["expr"] for panel in json.loads(dashboard)["panels"]
             for target in panel["targets"]]
    used = set(re.findall(r"medledger_[a-z0-9_]+", " ".join(exprs)))
    assert len(used) > 15
    for name in used:
        base = re.sub(r"_(bucket|total|count|sum)$", "", name)
        assert name in families or base in families, name


def test_readiness_rule() -> None:
    def snap(head: int, highest: int, peers: int, networked: bool = True) -> NodeSnapshot:
        return NodeSnapshot(head_number=head, head_timestamp=0, txpool_size=0,
                            networked=networked, peers=peers, sync_highest_seen=highest,
                            sync_imported=0, round_changes=0, validators=4, is_validator=False,
                            read_at=0.0)

    policy = HealthPolicy(max_lag_blocks=2, min_peers=1)
    assert readiness(snap(10, 12, 1), policy).ready
    behind = readiness(snap(10, 13, 1), policy)
    assert not behind.ready and "3 blocks behind" in behind.reasons[0]
    alone = readiness(snap(10, 10, 0), policy)
    assert not alone.ready and "0 peers" in alone.reasons[0]
    assert readiness(snap(10, 0, 0, networked=False), policy).ready  # single-validator chain
    assert not readiness(None, policy).ready


def test_break_glass_openings_are_counted_from_block_logs() -> None:
    from contracts.bindings import MedLedger
    from genesis.system import MEDLEDGER_ADDRESS

    metrics = NodeMetrics()
    topic = "0x" + MedLedger().event_topic("BreakGlassOpened").hex()
    opened = {"address": "0x" + MEDLEDGER_ADDRESS.hex(), "topics": [topic, "0x" + "00" * 32]}
    elsewhere = {"address": "0x" + "11" * 20, "topics": [topic]}

    class FakeBlock:  # only what block_final reads
        number = 1
        transactions = ()

        class header:  # noqa: N801
            block_number = 1
            timestamp = 10
            parent_hash = b"\x00" * 32

    trio.run(metrics.block_final, FakeBlock(), [opened, opened, elsewhere], "imported")
    text = metrics.render().decode()
    assert sample(text, "medledger_break_glass_opened_total") == 2
    assert sample(text, "medledger_blocks_total", '{origin="imported"}') == 1


def test_gossip_verdicts_are_counted_through_the_wrapped_handlers(tmp_path: Path) -> None:
    from network import Validation

    genesis_path, _, _ = write_node_files(tmp_path)
    node = Node(NodeConfig(datadir=tmp_path / "data", genesis=load_genesis(genesis_path),
                           validator_key=VALIDATOR_KEY, rpc_port=0, ws_port=None, p2p_port=0))
    try:
        metrics = NodeMetrics()
        metrics.bind(node)
        assert node.p2p is not None
        node.p2p.set_handler("tx", node._gossip_tx)  # what Node.run does
        handler = node.p2p._pending_handlers["tx"]

        async def deliver() -> None:
            assert await handler("peer", b"\x01garbage") is Validation.REJECT

        trio.run(deliver)
        text = metrics.render().decode()
        assert sample(text, "medledger_gossip_messages_total", '{kind="tx",verdict="reject"}') == 1
    finally:
        node.chain.close()
