"""A 4-validator devnet whose links run through a PartitionProxy, for fault campaigns.

Each node is a real `medledger node run` process (or the Byzantine variant); node i reaches
node j at the proxy port (i, j), so links can be cut. Logs are JSON lines in ROOT/NAME.log.
"""

from __future__ import annotations

import dataclasses
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
from eth_keys import keys

from genesis.schema import dump_genesis, load_genesis
from node.chaos.proxy import PartitionProxy
from node.devnet import DevnetNode, node_command, plan_devnet

CHAIN_ID = 1337
RPC_TIMEOUT = 10.0


class ClusterError(RuntimeError):
    """The cluster did not reach an expected state in time."""


class ChaosCluster:
    def __init__(
        self, root: Path, *, validators: int = 4, user_keys: list[bytes],
        block_period: int = 1, request_timeout: int = 4, traitor: int | None = None,
        scenarios: tuple[str, ...] = (),
    ) -> None:
        self.root = root
        self.traitor = traitor  # runs node.chaos.byzantine: honest until triggered
        self.scenarios = scenarios
        users = [keys.PrivateKey(k).public_key.to_canonical_address() for k in user_keys]
        genesis, self.nodes, self.passphrase_file = plan_devnet(
            root, validators=validators, auditor=False, prefund={u: 10**24 for u in users},
            block_period=block_period, empty_block_period=1, rpc_port=0, p2p_port=0,
            chain_id=CHAIN_ID,
        )
        genesis = dataclasses.replace(
            genesis, qbft=dataclasses.replace(genesis.qbft, request_timeout_seconds=request_timeout)
        )
        self.genesis_file = root / "genesis.json"
        self.genesis_file.write_text(dump_genesis(genesis))
        self.genesis = load_genesis(self.genesis_file)
        self.proxy = PartitionProxy([n.p2p_port for n in self.nodes])
        self.processes: dict[int, subprocess.Popen[bytes]] = {}
        self.exits: list[tuple[str, int]] = []  # (node, code) of exits we did not cause
        self._client = httpx.Client(timeout=RPC_TIMEOUT)

    # -- processes -------------------------------------------------------------------------

    def log_path(self, index: int) -> Path:
        return self.root / f"{self.nodes[index].name}.log"

    def _views(self, index: int) -> list[DevnetNode]:
        """This node plus every other node as reached through the proxy."""
        node = self.nodes[index]
        return [node] + [
            dataclasses.replace(other, p2p_port=self.proxy.port(index, j))
            for j, other in enumerate(self.nodes) if j != index
        ]

    def command(self, index: int, byzantine: tuple[str, ...] | None = None) -> list[str]:
        node = self.nodes[index]
        views = self._views(index)
        if byzantine is None:
            return node_command(node, views, self.genesis_file, self.passphrase_file)
        assert node.key_path is not None
        command = [
            sys.executable, "-m", "node.chaos.byzantine",
            "--datadir", str(node.datadir), "--genesis", str(self.genesis_file),
            "--key", str(node.key_path), "--passphrase-file", str(self.passphrase_file),
            "--rpc-port", str(node.rpc_port), "--ws-port", str(node.ws_port),
            "--p2p-port", str(node.p2p_port), "--scenarios", ",".join(byzantine),
        ]
        for view in views[1:]:
            command += ["--peer", view.multiaddr()]
        return command

    def start_node(self, index: int) -> None:
        self._note_exit(index)
        byzantine = self.scenarios if index == self.traitor else None
        node = self.nodes[index]
        (node.datadir / "endpoints.json").unlink(missing_ok=True)
        with self.log_path(index).open("ab") as log:
            self.processes[index] = subprocess.Popen(
                self.command(index, byzantine), stdout=log, stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL, env={**os.environ, "PYTHONUNBUFFERED": "1"},
            )

    def start(self) -> None:
        self.proxy.start()
        for index in range(len(self.nodes)):
            self.start_node(index)
        self.wait_ready(range(len(self.nodes)))

    def wait_ready(self, indices: Any, timeout: float = 120.0) -> None:
        deadline = time.monotonic() + timeout
        pending = set(indices)
        while pending:
            for index in list(pending):
                proc = self.processes[index]
                if proc.poll() is not None:
                    raise ClusterError(f"{self.nodes[index].name} exited with {proc.returncode}; "
                                       f"see {self.log_path(index)}")
                endpoints = self.nodes[index].datadir / "endpoints.json"
                try:
                    ready = json.loads(endpoints.read_text()).get("pid") == proc.pid
                except (OSError, ValueError):
                    ready = False
                if ready and self.try_head(index) is not None:
                    pending.discard(index)
            if time.monotonic() > deadline:
                names = ", ".join(self.nodes[i].name for i in sorted(pending))
                raise ClusterError(f"nodes not ready after {timeout:.0f}s: {names}")
            time.sleep(0.2)

    def trigger_byzantine(self) -> None:
        """Make the traitor start its attacks (see node.chaos.byzantine)."""
        from node.chaos.byzantine import TRIGGER_FILE

        assert self.traitor is not None
        (self.nodes[self.traitor].datadir / TRIGGER_FILE).touch()

    def kill(self, index: int) -> None:
        """SIGKILL: no shutdown code runs (power loss, OOM kill)."""
        proc = self.processes[index]
        if proc.poll() is None:
            proc.send_signal(signal.SIGKILL)
            proc.wait()

    def stop(self, index: int, timeout: float = 30.0) -> None:
        proc = self.processes[index]
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.exits.append((self.nodes[index].name, -1))  # hung on shutdown
                proc.kill()
                proc.wait()
            else:
                if proc.returncode not in (0, -signal.SIGTERM):
                    self.exits.append((self.nodes[index].name, proc.returncode))

    def _note_exit(self, index: int) -> None:
        """Record a previous process of this node that died on its own."""
        proc = self.processes.get(index)
        if proc is not None and proc.poll() is not None and proc.returncode not in (
            0, -signal.SIGKILL, -signal.SIGTERM,
        ):
            self.exits.append((self.nodes[index].name, proc.returncode))
            self.processes.pop(index)

    def check_alive(self) -> None:
        """Note nodes that died without being told to."""
        for index, proc in list(self.processes.items()):
            if proc.poll() is not None and proc.returncode not in (-signal.SIGKILL,):
                self._note_exit(index)

    def close(self) -> None:
        for index in list(self.processes):
            self.stop(index)
        self.proxy.close()
        self._client.close()

    # -- JSON-RPC --------------------------------------------------------------------------

    def rpc(self, index: int, method: str, *params: object) -> Any:
        url = f"http://127.0.0.1:{self.nodes[index].rpc_port}"
        reply = self._client.post(url, json={"jsonrpc": "2.0", "id": 1, "method": method,
                                             "params": list(params)}).json()
        if "error" in reply:
            raise RuntimeError(f"{method}: {reply['error']}")
        return reply["result"]

    def try_rpc(self, index: int, method: str, *params: object) -> Any:
        try:
            return self.rpc(index, method, *params)
        except (httpx.HTTPError, RuntimeError, ValueError):
            return None

    def try_head(self, index: int) -> int | None:
        result = self.try_rpc(index, "eth_blockNumber")
        return None if result is None else int(result, 16)

    def block_hash(self, index: int, number: int) -> str | None:
        block = self.try_rpc(index, "eth_getBlockByNumber", hex(number), False)
        return None if not block else str(block["hash"])

    def heads(self, indices: Any = None) -> dict[int, int | None]:
        chosen = range(len(self.nodes)) if indices is None else indices
        return {i: self.try_head(i) for i in chosen}

    def wait_until(self, predicate: Callable[[], bool], timeout: float, what: str) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if predicate():
                return
            time.sleep(0.25)
        raise ClusterError(f"timed out after {timeout:.0f}s waiting for {what}; "
                           f"heads {self.heads()}")

    def wait_progress(self, indices: list[int], blocks: int, timeout: float, what: str) -> None:
        """Until every node in `indices` is `blocks` past the highest head among them now."""
        start = max((h or 0) for h in self.heads(indices).values())
        self.wait_until(
            lambda: all((h or 0) >= start + blocks for h in self.heads(indices).values()),
            timeout, what,
        )

    def wait_converged(self, timeout: float) -> int:
        """Until all nodes hold the same block at a common height; returns that height."""
        result = 0

        def converged() -> bool:
            nonlocal result
            heads = self.heads()
            if any(h is None for h in heads.values()):
                return False
            low = min(h for h in heads.values() if h is not None)
            if max(h for h in heads.values() if h is not None) - low > 1:
                return False
            hashes = {self.block_hash(i, low) for i in heads}
            result = low
            return len(hashes) == 1 and None not in hashes

        self.wait_until(converged, timeout, "all nodes to converge")
        return result

    def peer_id(self, index: int) -> str:
        from network import peer_id_from_secret

        return peer_id_from_secret(self.nodes[index].node_key)
