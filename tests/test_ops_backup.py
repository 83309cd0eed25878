"""Backups: RLP export -> import into a fresh datadir, replay verification, snapshots under load."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import httpx
import plyvel
import pytest
import rlp
import trio

from consensus.seals import seal_hash, sign_seal
from genesis.schema import dump_genesis, load_genesis
from node.backup import BackupError, export_blocks, import_blocks
from node.chain import Chain
from node.rpc.ops_api import install_ops_rpc
from node.runtime import Node, NodeConfig
from tests.helpers import USER_KEYS, VALIDATOR, VALIDATOR_KEY, decode, make_genesis, transfer


def cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "node.cli_db", *args],
                          capture_output=True, text=True, timeout=60)


def ok(*args: str) -> dict[str, Any]:
    result = cli(*args)
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)


def build_chain(datadir: Path, blocks: int) -> tuple[bytes, bytes]:
    """A chain of `blocks` sealed blocks with transfers; returns (head hash, state root)."""
    chain = Chain(datadir, make_genesis())
    try:
        nonce = 0
        for _ in range(blocks):
            txs = [decode(transfer(USER_KEYS[0], nonce + i, value=7 + i)) for i in range(3)]
            nonce += 3
            built = chain.build_block(txs, timestamp=chain.head.timestamp + 1, proposer=VALIDATOR)
            chain.commit_sealed(built, [sign_seal(seal_hash(built.block.header), VALIDATOR_KEY)])
        return chain.head.hash, chain.head.state_root
    finally:
        chain.close()


@pytest.fixture
def source(tmp_path: Path) -> tuple[Path, Path, bytes, bytes]:
    genesis = tmp_path / "genesis.json"
    genesis.write_text(dump_genesis(make_genesis()))
    head_hash, state_root = build_chain(tmp_path / "src", 6)
    return tmp_path / "src", genesis, head_hash, state_root


def test_export_import_into_fresh_datadir_gives_same_head_and_state(
    tmp_path: Path, source: tuple[Path, Path, bytes, bytes]
) -> None:
    datadir, genesis, head_hash, state_root = source
    export = tmp_path / "chain.rlp"
    summary = ok("export", "--datadir", str(datadir), "--genesis", str(genesis),
                 "--out", str(export))
    assert summary["blocks"] == 6 and summary["last"] == 6
    assert export.stat().st_size == summary["bytes"]

    result = ok("import", "--datadir", str(tmp_path / "restored"), "--genesis", str(genesis),
                "--in", str(export))
    assert result["imported"] == 6 and result["head"] == 6
    assert result["hash"] == "0x" + head_hash.hex()
    assert result["stateRoot"] == "0x" + state_root.hex()
    restored = Chain(tmp_path / "restored", load_genesis(genesis))
    try:
        assert restored.head.hash == head_hash and restored.head.state_root == state_root
        assert restored.state_at(restored.head).get_nonce(decode(
            transfer(USER_KEYS[0], 0)).sender) == 18
    finally:
        restored.close()

    # Re-running the import is harmless: every block is already there.
    again = ok("import", "--datadir", str(tmp_path / "restored"), "--genesis", str(genesis),
               "--in", str(export))
    assert again["imported"] == 0 and again["skipped"] == 6

    refused = cli("export", "--datadir", str(datadir), "--genesis", str(genesis),
                  "--out", str(export))
    assert refused.returncode != 0 and "refusing to overwrite" in refused.stderr


def test_import_refuses_tampered_and_truncated_exports(
    tmp_path: Path, source: tuple[Path, Path, bytes, bytes]
) -> None:
    datadir, genesis_path, _, _ = source
    genesis = load_genesis(genesis_path)
    chain = Chain(datadir, genesis)
    export = tmp_path / "chain.rlp.gz"
    try:
        export_blocks(chain, export)
        block4 = chain.block_by_number(4)
        assert block4 is not None
        # A block whose transfer value was changed: its seals and roots no longer match.
        tx = block4.transactions[0]
        forged_tx = decode(transfer(USER_KEYS[0], tx.nonce, value=10**20))
        forged = block4.copy(transactions=[forged_tx, *block4.transactions[1:]])
        plain = tmp_path / "plain.rlp"
        export_blocks(chain, plain, last=3)
    finally:
        chain.close()

    tampered = tmp_path / "tampered.rlp"
    tampered.write_bytes(plain.read_bytes() + rlp.encode(forged))
    target = Chain(tmp_path / "t", genesis)
    try:
        with pytest.raises(BackupError, match="block #4 .* is invalid"):
            import_blocks(target, tampered)
        assert target.head.block_number == 3  # the good blocks before it are kept
    finally:
        target.close()

    truncated = tmp_path / "truncated.rlp"
    truncated.write_bytes(plain.read_bytes()[:-10])
    result = cli("import", "--datadir", str(tmp_path / "u"), "--genesis", str(genesis_path),
                 "--in", str(truncated))
    assert result.returncode != 0 and "truncated" in result.stderr

    # The gzip export restores too.
    target = Chain(tmp_path / "g", genesis)
    try:
        assert import_blocks(target, export).head_number == 6
    finally:
        target.close()


def test_verify_replays_and_detects_a_damaged_state(
    tmp_path: Path, source: tuple[Path, Path, bytes, bytes]
) -> None:
    datadir, genesis, head_hash, state_root = source
    report = ok("verify", "--datadir", str(datadir), "--genesis", str(genesis))
    assert report["ok"] and report["blocks"] == 6
    assert report["hash"] == "0x" + head_hash.hex() and report["accountsChecked"] == 4

    # Remove the head's state root node: the blocks still replay, the stored state is broken.
    db = plyvel.DB(str(datadir / "chaindata"))
    assert db.get(state_root) is not None
    db.delete(state_root)
    db.close()
    result = cli("verify", "--datadir", str(datadir), "--genesis", str(genesis))
    assert result.returncode != 0
    assert "verification failed" in result.stderr and "head state is incomplete" in result.stderr

    missing = cli("verify", "--datadir", str(tmp_path / "nothing"), "--genesis", str(genesis))
    assert missing.returncode != 0 and "no chain database" in missing.stderr


def test_snapshot_of_a_running_node_under_load_opens_and_verifies(tmp_path: Path) -> None:
    genesis_path = tmp_path / "genesis.json"
    genesis_path.write_text(dump_genesis(make_genesis()))
    genesis = load_genesis(genesis_path)
    snapshots = [tmp_path / "snap1", tmp_path / "snap2"]
    infos: list[dict[str, Any]] = []

    async def main() -> int:
        node = Node(NodeConfig(datadir=tmp_path / "live", genesis=genesis,
                               validator_key=VALIDATOR_KEY, rpc_port=0, ws_port=None,
                               empty_block_period=1))
        install_ops_rpc(node.dispatcher, node)
        async with trio.open_nursery() as nursery:
            await nursery.start(node.run)
            rpc = f"http://127.0.0.1:{node.rpc_port}"
            async def load() -> None:
                nonce = 0
                async with httpx.AsyncClient(timeout=30) as loader:
                    while True:
                        batch = [{"jsonrpc": "2.0", "id": i, "method": "eth_sendRawTransaction",
                                  "params": ["0x" + transfer(USER_KEYS[1], nonce + i).hex()]}
                                 for i in range(40)]
                        nonce += 40
                        await loader.post(rpc, json=batch)
                        await trio.sleep(0.05)

            async with trio.open_nursery() as load_nursery, httpx.AsyncClient(
                timeout=30
            ) as client:
                load_nursery.start_soon(load)
                for dest in snapshots:
                    await trio.sleep(1.5)
                    reply = (await client.post(rpc, json={
                        "jsonrpc": "2.0", "id": 1, "method": "admin_snapshot",
                        "params": [str(dest)]})).json()
                    assert "result" in reply, reply
                    infos.append(reply["result"])
                bad = (await client.post(rpc, json={
                    "jsonrpc": "2.0", "id": 2, "method": "admin_snapshot",
                    "params": [str(snapshots[0])]})).json()
                assert "already exists" in bad["error"]["message"]
                relative = (await client.post(rpc, json={
                    "jsonrpc": "2.0", "id": 3, "method": "admin_snapshot",
                    "params": ["relative/dir"]})).json()
                assert relative["error"]["code"] == -32602
                load_nursery.cancel_scope.cancel()
            nursery.cancel_scope.cancel()
        return 0

    trio.run(main)
    assert int(infos[1]["number"], 16) > int(infos[0]["number"], 16) >= 1
    live = Chain(tmp_path / "live", genesis)
    try:
        for info in infos:
            header = live.header_by_number(int(info["number"], 16))
            assert header is not None and "0x" + header.hash.hex() == info["hash"]
        loaded = sum(len(live.block_or_raise(n).transactions)
                     for n in range(1, int(infos[1]["number"], 16) + 1))
        assert loaded > 0  # the snapshots were taken while transactions were being included
    finally:
        live.close()
    report = ok("verify", "--datadir", str(snapshots[1]), "--genesis", str(genesis_path))
    assert report["hash"] == infos[1]["hash"] and report["stateRoot"] == infos[1]["stateRoot"]
    manifest = json.loads((snapshots[1] / "snapshot.json").read_text())
    assert manifest["head_hash"] == infos[1]["hash"]
    assert not list(tmp_path.glob(".snap*.partial"))


def test_snapshot_of_a_stopped_datadir(
    tmp_path: Path, source: tuple[Path, Path, bytes, bytes]
) -> None:
    datadir, genesis, head_hash, _ = source
    dest = tmp_path / "copy"
    info = ok("snapshot", "--datadir", str(datadir), "--genesis", str(genesis),
              "--dest", str(dest))
    assert info["hash"] == "0x" + head_hash.hex() and info["keys"] > 0
    copy = Chain(dest, load_genesis(genesis))
    try:
        assert copy.head.hash == head_hash
    finally:
        copy.close()
    usage = cli("snapshot", "--dest", str(tmp_path / "x"))
    assert usage.returncode != 0 and "either --rpc" in usage.stderr
