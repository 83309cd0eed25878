"""A local multi-hospital consortium: N validator processes (and an auditor) on loopback.

Writes a throw-away genesis and keys, starts one `medledger node run` process
per node with static peers to all the others, prints each node's RPC URL, and
stops them all on Ctrl-C (SIGINT) or SIGTERM.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import os
import secrets
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

from eth_keys import keys

from genesis.builder import generate_private_key, new_consortium
from genesis.schema import Genesis, dump_genesis
from network import peer_id_from_secret
from node.keystore import write_keystore

DEVNET_SCRYPT_N = 2**12


@dataclass(frozen=True)
class DevnetNode:
    name: str
    datadir: Path
    key_path: Path | None  # validator keystore; None for the auditor
    node_key: bytes
    rpc_port: int
    ws_port: int
    p2p_port: int
    node_key_path: Path | None = None  # encrypted node key (keystore v3) of a non-validator

    @property
    def address(self) -> bytes:
        return keys.PrivateKey(self.node_key).public_key.to_canonical_address()

    def multiaddr(self) -> str:
        return f"/ip4/127.0.0.1/tcp/{self.p2p_port}/p2p/{peer_id_from_secret(self.node_key)}"


def free_ports(count: int) -> list[int]:
    """Ports free right now on 127.0.0.1 (held open together so they are distinct)."""
    sockets = []
    try:
        for _ in range(count):
            sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            sock.bind(("127.0.0.1", 0))
            sockets.append(sock)
        return [s.getsockname()[1] for s in sockets]
    finally:
        for sock in sockets:
            sock.close()


def plan_devnet(
    root: Path,
    *,
    validators: int,
    auditor: bool,
    prefund: dict[bytes, int],
    block_period: int,
    rpc_port: int,
    p2p_port: int,
    chain_id: int,
    empty_block_period: int = 10,
    predeploy_system: bool = True,
) -> tuple[Genesis, list[DevnetNode], Path]:
    """Write genesis, keys and passphrase for a devnet under `root`; return what to start."""
    genesis, validator_keys = new_consortium(
        validators, chain_id=chain_id, block_period_seconds=block_period,
        empty_block_period_seconds=max(empty_block_period, block_period), prefund=prefund,
        predeploy_system=predeploy_system,
    )
    auditor_key = generate_private_key() if auditor else None
    if auditor_key is not None:
        auditor_address = keys.PrivateKey(auditor_key).public_key.to_canonical_address()
        genesis = dataclasses.replace(genesis, node_allowlist=(auditor_address,))
    root.mkdir(parents=True, exist_ok=True)
    (root / "genesis.json").write_text(dump_genesis(genesis))
    passphrase_file = root / "passphrase.txt"
    passphrase_file.write_text(secrets.token_urlsafe(24) + "\n")
    passphrase_file.chmod(0o600)
    passphrase = passphrase_file.read_text().strip()

    total = validators + (1 if auditor else 0)
    rpc_ports = (
        free_ports(2 * total) if rpc_port == 0 else [rpc_port + i for i in range(2 * total)]
    )
    p2p_ports = free_ports(total) if p2p_port == 0 else [p2p_port + i for i in range(total)]
    nodes: list[DevnetNode] = []
    all_keys: list[tuple[str, bytes, bool]] = [
        (f"hospital-{i + 1}", key, True) for i, key in enumerate(validator_keys)
    ]
    if auditor_key is not None:
        all_keys.append(("auditor", auditor_key, False))
    for index, (name, key, is_validator) in enumerate(all_keys):
        datadir = root / name
        datadir.mkdir(parents=True, exist_ok=True)
        # Every key is encrypted at rest, the auditor's node key too (keystore v3).
        key_file = root / "keys" / (f"{name}.json" if is_validator else f"{name}.node-key.json")
        key_file.parent.mkdir(parents=True, exist_ok=True)
        write_keystore(key_file, key, passphrase, kdf_iterations=DEVNET_SCRYPT_N)
        nodes.append(DevnetNode(
            name=name, datadir=datadir, key_path=key_file if is_validator else None,
            node_key=key, rpc_port=rpc_ports[2 * index], ws_port=rpc_ports[2 * index + 1],
            p2p_port=p2p_ports[index], node_key_path=None if is_validator else key_file,
        ))
    return genesis, nodes, passphrase_file


def node_command(
    node: DevnetNode, nodes: Sequence[DevnetNode], genesis_file: Path, passphrase_file: Path,
    *, log_format: str = "json", log_level: str = "info",
) -> list[str]:
    command = [
        sys.executable, "-m", "node", "node", "run",
        "--datadir", str(node.datadir), "--genesis", str(genesis_file),
        "--rpc-port", str(node.rpc_port), "--ws-port", str(node.ws_port),
        "--p2p-port", str(node.p2p_port), "--admin-rpc",
        "--log-format", log_format, "--log-level", log_level,
    ]
    if node.key_path is not None:
        command += ["--key", str(node.key_path), "--passphrase-file", str(passphrase_file)]
    elif node.node_key_path is not None:
        command += ["--node-key-file", str(node.node_key_path),
                    "--node-key-passphrase-file", str(passphrase_file)]
    for other in nodes:
        if other is not node:
            command += ["--peer", other.multiaddr()]
    return command


class DevnetSupervisor:
    """Starts the node processes, restarts nothing, stops them all together."""

    def __init__(self, root: Path, nodes: Sequence[DevnetNode], passphrase_file: Path) -> None:
        self.root = root
        self.nodes = list(nodes)
        self.passphrase_file = passphrase_file
        self.processes: dict[str, subprocess.Popen[bytes]] = {}

    def start(self, node: DevnetNode) -> subprocess.Popen[bytes]:
        (node.datadir / "endpoints.json").unlink(missing_ok=True)
        log = (self.root / f"{node.name}.log").open("ab")
        proc = subprocess.Popen(
            node_command(node, self.nodes, self.root / "genesis.json", self.passphrase_file),
            stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
            env={**os.environ, "PYTHONUNBUFFERED": "1"},
        )
        self.processes[node.name] = proc
        return proc

    def start_all(self) -> None:
        for node in self.nodes:
            self.start(node)

    def wait_ready(self, timeout: float = 90.0) -> None:
        deadline = time.monotonic() + timeout
        pending = {n.name: n for n in self.nodes}
        while pending and time.monotonic() < deadline:
            for name, node in list(pending.items()):
                proc = self.processes[name]
                if proc.poll() is not None:
                    raise RuntimeError(f"{name} exited with {proc.returncode}; see "
                                       f"{self.root / (name + '.log')}")
                endpoints = node.datadir / "endpoints.json"
                if endpoints.exists() and json.loads(endpoints.read_text()).get("pid") == proc.pid:
                    del pending[name]
            time.sleep(0.1)
        if pending:
            raise RuntimeError(f"nodes not ready after {timeout}s: {', '.join(pending)}")

    def stop(self, name: str, sig: int = signal.SIGTERM, timeout: float = 30.0) -> None:
        proc = self.processes.get(name)
        if proc is None or proc.poll() is not None:
            return
        proc.send_signal(sig)
        try:
            proc.wait(timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()

    def stop_all(self) -> None:
        for proc in self.processes.values():
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + 30
        for proc in self.processes.values():
            remaining = max(0.1, deadline - time.monotonic())
            try:
                proc.wait(remaining)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()

    def wait_for_signal(self, on_exit: Callable[[str, int], None]) -> None:
        """Block until SIGINT/SIGTERM, or until a node dies (reported via on_exit)."""
        stop = False

        def handler(signum: int, frame: object) -> None:
            nonlocal stop
            stop = True

        previous = {s: signal.signal(s, handler) for s in (signal.SIGINT, signal.SIGTERM)}
        try:
            while not stop:
                for name, proc in self.processes.items():
                    if proc.poll() is not None:
                        on_exit(name, proc.returncode)
                        return
                time.sleep(0.2)
        finally:
            for sig, old in previous.items():
                with contextlib.suppress(ValueError):
                    signal.signal(sig, old)
