"""A node that missed 100+ blocks catches up over the sync protocol, then follows."""

from __future__ import annotations

import dataclasses
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from consensus.seals import seal_hash, sign_seal
from genesis.schema import dump_genesis
from network import peer_id_from_secret
from node.chain import Chain
from node.devnet import free_ports
from node.keystore import write_keystore
from tests.helpers import (
    PASSPHRASE,
    USER_KEYS,
    VALIDATOR,
    VALIDATOR_KEY,
    decode,
    make_genesis,
    transfer,
)

pytestmark = pytest.mark.slow

AUDITOR_KEY = bytes([0x5A]) * 32
HISTORY = 120


def rpc(port: int, method: str, *params: object) -> object:
    reply = httpx.post(f"http://127.0.0.1:{port}", timeout=10, json={
        "jsonrpc": "2.0", "id": 1, "method": method, "params": list(params)}).json()
    if "error" in reply:
        raise RuntimeError(reply["error"])
    return reply["result"]


def start(args: list[str], log: Path) -> subprocess.Popen[bytes]:
    return subprocess.Popen([sys.executable, "-m", "node", "node", "run", *args],
                            stdout=log.open("ab"), stderr=subprocess.STDOUT,
                            stdin=subprocess.DEVNULL, env={**os.environ, "PYTHONUNBUFFERED": "1"})


def wait_endpoint(datadir: Path, proc: subprocess.Popen[bytes], log: Path) -> None:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        assert proc.poll() is None, log.read_text()
        path = datadir / "endpoints.json"
        if path.exists() and json.loads(path.read_text()).get("pid") == proc.pid:
            return
        time.sleep(0.1)
    raise AssertionError("node did not start")


def test_node_offline_for_120_blocks_catches_up_and_follows(tmp_path: Path) -> None:
    from eth_keys import keys

    auditor_address = keys.PrivateKey(AUDITOR_KEY).public_key.to_canonical_address()
    genesis = dataclasses.replace(make_genesis(empty_block_period=1),
                                  node_allowlist=(auditor_address,))
    genesis_file = tmp_path / "genesis.json"
    genesis_file.write_text(dump_genesis(genesis))
    key_file = tmp_path / "validator.json"
    write_keystore(key_file, VALIDATOR_KEY, PASSPHRASE, kdf_iterations=2**4)
    passphrase = tmp_path / "pass.txt"
    passphrase.write_text(PASSPHRASE)

    # The validator's history: 120 sealed blocks with transactions, written while the
    # auditor was away.
    chain = Chain(tmp_path / "validator", genesis)
    start_time = int(time.time()) - HISTORY - 5
    for number in range(1, HISTORY + 1):
        txs = [decode(transfer(USER_KEYS[number % 4], number // 4))]
        built = chain.build_block(txs, timestamp=start_time + number, proposer=VALIDATOR)
        chain.commit_sealed(built, [sign_seal(seal_hash(built.block.header), VALIDATOR_KEY)])
    history_head = chain.head.hash
    chain.close()

    auditor_dir = tmp_path / "auditor"
    auditor_dir.mkdir()
    (auditor_dir / "p2p.key").write_text(AUDITOR_KEY.hex())
    rpc_v, rpc_a, p2p_v, p2p_a = free_ports(4)
    validator_addr = f"/ip4/127.0.0.1/tcp/{p2p_v}/p2p/{peer_id_from_secret(VALIDATOR_KEY)}"
    validator = start(["--datadir", str(tmp_path / "validator"), "--genesis", str(genesis_file),
                       "--key", str(key_file), "--passphrase-file", str(passphrase),
                       "--rpc-port", str(rpc_v), "--ws-port", "0", "--p2p-port", str(p2p_v),
                       "--log-format", "json"], tmp_path / "validator.log")
    auditor = start(["--datadir", str(auditor_dir), "--genesis", str(genesis_file),
                     "--rpc-port", str(rpc_a), "--ws-port", "0", "--p2p-port", str(p2p_a),
                     "--peer", validator_addr, "--log-format", "json"], tmp_path / "auditor.log")
    try:
        wait_endpoint(tmp_path / "validator", validator, tmp_path / "validator.log")
        wait_endpoint(auditor_dir, auditor, tmp_path / "auditor.log")
        deadline = time.monotonic() + 120
        while int(rpc(rpc_a, "eth_blockNumber"), 16) < HISTORY:  # type: ignore[arg-type]
            assert time.monotonic() < deadline, "the auditor did not catch up"
            time.sleep(0.5)
        block = rpc(rpc_a, "eth_getBlockByNumber", hex(HISTORY), False)
        assert block["hash"] == "0x" + history_head.hex()  # type: ignore[index]
        # ... and then follows new blocks.
        target = int(rpc(rpc_v, "eth_blockNumber"), 16) + 3  # type: ignore[arg-type]
        while int(rpc(rpc_a, "eth_blockNumber"), 16) < target:  # type: ignore[arg-type]
            assert time.monotonic() < deadline + 60, "the auditor stopped following"
            time.sleep(0.5)
        same = rpc(rpc_v, "eth_getBlockByNumber", hex(target), False)["hash"]  # type: ignore[index]
        assert rpc(rpc_a, "eth_getBlockByNumber", hex(target), False)["hash"] == same  # type: ignore[index]
    finally:
        for proc in (auditor, validator):
            proc.send_signal(signal.SIGTERM)
        for proc in (auditor, validator):
            try:
                proc.wait(30)
            except subprocess.TimeoutExpired:
                proc.kill()
