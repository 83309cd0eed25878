"""Operating a running 4-validator network: a rolling restart that changes every node's TOML
config and rolls out a fork (genesis update) before the fork block; finality never stops.

One network and one rollout carry both changes, as operators would in one maintenance
window; it keeps the multi-process test time down."""

from __future__ import annotations

import dataclasses
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import pytest

from genesis.schema import ContractUpgrade, Fork, Genesis, QbftChanges, dump_genesis
from genesis.system import MEDLEDGER_ADDRESS
from node.devnet import DevnetNode, DevnetSupervisor, free_ports, plan_devnet
from tests.helpers import USER_KEYS, USERS, transfer

pytestmark = [pytest.mark.slow, pytest.mark.timeout(480)]  # restarts are slow under load

NEW_CODE = bytes.fromhex("602a60005260206000f3")  # returns 42 to every call
# Idle, the chain makes a block every EMPTY_PERIOD seconds, so FORK_MARGIN blocks leave the
# rollout at least FORK_MARGIN * EMPTY_PERIOD seconds; afterwards transactions (a block per
# second) take the chain to the fork quickly.
EMPTY_PERIOD = 5
FORK_MARGIN = 30


def rpc(url: str, method: str, *params: object) -> object:
    reply = httpx.post(url, timeout=10, json={
        "jsonrpc": "2.0", "id": 1, "method": method, "params": list(params)}).json()
    if "error" in reply:
        raise RuntimeError(f"{method}: {reply['error']}")
    return reply["result"]


def wait_for(predicate: Callable[[], bool], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if predicate():
                return
        except (httpx.HTTPError, RuntimeError, OSError):
            pass
        time.sleep(0.25)
    raise AssertionError(f"timed out after {timeout}s waiting for {what}")


class Network:
    """The planned nodes, each run as `medledger node run` with flags or a TOML config."""

    def __init__(self, root: Path, *, empty_block_period: int = EMPTY_PERIOD) -> None:
        self.root = root
        self.genesis, self.nodes, self.passphrase = plan_devnet(
            root, validators=4, auditor=False, prefund={USERS[0]: 10**24}, block_period=1,
            empty_block_period=empty_block_period, rpc_port=0, p2p_port=0, chain_id=1337,
        )
        self.supervisor = DevnetSupervisor(root, self.nodes, self.passphrase)
        self.urls: dict[str, str] = {n.name: f"http://127.0.0.1:{n.rpc_port}" for n in self.nodes}

    def start_with_config(self, node: DevnetNode, config: Path) -> None:
        (node.datadir / "endpoints.json").unlink(missing_ok=True)
        log = (self.root / f"{node.name}.log").open("ab")
        self.supervisor.processes[node.name] = subprocess.Popen(
            [sys.executable, "-m", "node", "node", "run", "--config", str(config)],
            stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
            env={**os.environ, "PYTHONUNBUFFERED": "1"},
        )

    def wait_started(self, node: DevnetNode) -> dict[str, object]:
        proc = self.supervisor.processes[node.name]
        endpoints = node.datadir / "endpoints.json"
        deadline = time.monotonic() + 90
        while time.monotonic() < deadline:
            assert proc.poll() is None, self.log(node)
            if endpoints.exists():
                info = json.loads(endpoints.read_text())
                if info.get("pid") == proc.pid:
                    self.urls[node.name] = str(info["http"])
                    return info
            time.sleep(0.1)
        raise AssertionError(f"{node.name} did not start:\n{self.log(node)}")

    def log(self, node: DevnetNode) -> str:
        return (self.root / f"{node.name}.log").read_text(errors="replace")[-4000:]

    def head(self, node: DevnetNode) -> int:
        return int(rpc(self.urls[node.name], "eth_blockNumber"), 16)  # type: ignore[arg-type]

    def best_head(self, exclude: str | None = None) -> int:
        heads = []
        for node in self.nodes:
            if node.name == exclude:
                continue
            try:
                heads.append(self.head(node))
            except (httpx.HTTPError, RuntimeError):
                continue
        return max(heads, default=-1)

    def wait_progress(self, since: int, blocks: int, what: str, exclude: str | None = None) -> int:
        """Block until the network's head passed `since + blocks`: finality keeps going."""
        wait_for(lambda: self.best_head(exclude) >= since + blocks, 60, what)
        return self.best_head(exclude)

    def block_hash(self, node: DevnetNode, number: int) -> str:
        block = rpc(self.urls[node.name], "eth_getBlockByNumber", hex(number), False)
        assert isinstance(block, dict)
        return str(block["hash"])

    def assert_agree(self, number: int) -> None:
        wait_for(lambda: all(self.head(n) >= number for n in self.nodes), 60,
                 f"every node at block {number}")
        hashes = {n.name: self.block_hash(n, number) for n in self.nodes}
        assert len(set(hashes.values())) == 1, hashes

    def stop(self, node: DevnetNode) -> None:
        self.supervisor.stop(node.name, signal.SIGTERM)

    def push_to(self, number: int) -> None:
        """Send transfers (a block each second) until every node is at block `number`."""
        url = self.urls[self.nodes[0].name]
        nonce = int(str(rpc(url, "eth_getTransactionCount", "0x" + USERS[0].hex(), "pending")),
                    16)
        deadline = time.monotonic() + 120
        while not all(self.head(n) >= number for n in self.nodes):
            assert time.monotonic() < deadline, f"the chain did not reach block {number}"
            rpc(url, "eth_sendRawTransaction", "0x" + transfer(USER_KEYS[0], nonce).hex())
            nonce += 1
            time.sleep(0.5)


@pytest.fixture
def network(tmp_path: Path) -> Iterator[Network]:
    net = Network(tmp_path)
    try:
        yield net
    finally:
        net.supervisor.stop_all()


def with_fork(genesis: Genesis, block: int) -> Genesis:
    fork = Fork(
        block=block, name="medLedgerV2", gas_limit=25_000_000,
        qbft=QbftChanges(request_timeout_seconds=3),
        system_contracts={MEDLEDGER_ADDRESS: ContractUpgrade(code=NEW_CODE)},
    )
    return dataclasses.replace(genesis, forks=(fork,))


def write_config(
    net: Network, node: DevnetNode, *, rpc_port: int, ws_port: int,
    metrics_port: int | None, level: str,
) -> Path:
    peers = ", ".join(f'"{other.multiaddr()}"' for other in net.nodes if other is not node)
    metrics = (f"[metrics]\nenabled = true\nport = {metrics_port}\n"
               if metrics_port is not None else "")
    path = net.root / f"{node.name}.toml"
    path.write_text(
        f'[node]\ndatadir = "{node.datadir}"\ngenesis = "{net.root / "genesis.json"}"\n'
        f'key = "{node.key_path}"\npassphrase_file = "{net.passphrase}"\n'
        f"[rpc]\nport = {rpc_port}\nws_port = {ws_port}\n"
        f"[p2p]\nenabled = true\nport = {node.p2p_port}\npeers = [{peers}]\n"
        f'[log]\nlevel = "{level}"\nformat = "json"\n{metrics}'
    )
    return path


def test_rolling_restart_with_new_config_and_fork_keeps_finalizing(network: Network) -> None:
    net = network
    for node in net.nodes:
        config = write_config(net, node, rpc_port=node.rpc_port, ws_port=node.ws_port,
                              metrics_port=None, level="info")
        net.start_with_config(node, config)
    for node in net.nodes:
        net.wait_started(node)
    head = net.wait_progress(0, 1, "the first blocks")
    address = "0x" + MEDLEDGER_ADDRESS.hex()
    old_code = rpc(net.urls["hospital-1"], "eth_getCode", address, "latest")
    assert old_code not in ("0x", "0x" + NEW_CODE.hex())

    # The operators agree on a fork block ahead of the chain and update every genesis file;
    # each node picks it up when it is restarted.
    fork_block = head + FORK_MARGIN
    tmp = net.root / "genesis.json.new"
    tmp.write_text(dump_genesis(with_fork(net.genesis, fork_block)))
    tmp.replace(net.root / "genesis.json")

    for node in net.nodes:
        before = net.best_head()
        net.stop(node)
        rpc_port, ws_port, metrics_port = free_ports(3)
        config = write_config(net, node, rpc_port=rpc_port, ws_port=ws_port,
                              metrics_port=metrics_port, level="debug")
        net.start_with_config(node, config)
        info = net.wait_started(node)
        # Three validators are a quorum: blocks were finalized while this one was away.
        net.wait_progress(before, 1, f"blocks while {node.name} restarted", exclude=node.name)
        # The new configuration is live: RPC on its new port, metrics on.
        assert net.urls[node.name] == f"http://127.0.0.1:{rpc_port}"
        assert info["ops"] == f"http://127.0.0.1:{metrics_port}"
        metrics = httpx.get(f"http://127.0.0.1:{metrics_port}/metrics", timeout=10).text
        assert "medledger_chain_finalized_block" in metrics
        target = net.best_head(exclude=node.name)
        wait_for(lambda n=node, h=target: net.head(n) >= h, 60, f"{node.name} catching up")

    rolled_out_at = net.best_head()
    assert rolled_out_at < fork_block, (
        f"the rollout took until block {rolled_out_at}, past the fork block {fork_block}"
    )
    net.push_to(fork_block + 2)
    net.assert_agree(fork_block + 2)  # finality went on across the fork, one chain
    for node in net.nodes:
        url = net.urls[node.name]
        assert rpc(url, "eth_getCode", address, hex(fork_block - 1)) == old_code
        assert rpc(url, "eth_getCode", address, "latest") == "0x" + NEW_CODE.hex()
        assert int(str(rpc(url, "eth_call", {"to": address, "data": "0x"}, "latest")), 16) == 42
        block = rpc(url, "eth_getBlockByNumber", hex(fork_block), False)
        assert isinstance(block, dict) and int(block["gasLimit"], 16) == 25_000_000
    # While the rollout was half done, nodes saw the other schedule and said so.
    logs = "".join((net.root / f"{n.name}.log").read_text() for n in net.nodes)
    assert "fork schedules differ ahead of the chain" in logs
