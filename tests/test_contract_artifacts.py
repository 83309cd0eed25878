"""Committed contract artifacts: loadable, equal to a fresh solc-js build, runnable on py-evm."""

from __future__ import annotations

import json
import shutil
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from eth.abc import ReceiptAPI, SignedTransactionAPI
from eth.chains.base import MiningChain
from eth.db.atomic import AtomicDB
from eth.exceptions import Revert
from eth.vm.forks import PragueVM
from eth.vm.spoof import SpoofTransaction
from eth_abi import decode, encode
from eth_account import Account
from eth_utils import keccak, to_checksum_address

from contracts.artifacts import (
    Artifact,
    ArtifactNotFoundError,
    artifacts_dir,
    available_artifacts,
    load_artifact,
)

REPO_ROOT = Path(__file__).resolve().parent.parent
CONTRACTS_DIR = REPO_ROOT / "contracts"
CHAIN_ID = 1337
GAS_PRICE_CAP = 2 * 10**9
PRIORITY_FEE = 10**9
SENDER = Account.from_key(b"\x01" * 32)
SENDER_ADDRESS = bytes.fromhex(SENDER.address[2:])

# Minimal genesis header parameters that PragueVM accepts; every other Prague field
# (parent_beacon_block_root, requests_hash, blob gas, withdrawals root) has a valid default.
GENESIS_PARAMS: dict[str, Any] = {
    "difficulty": 0,
    "gas_limit": 30_000_000,
    "base_fee_per_gas": 10**9,
    "timestamp": 1_700_000_000,
}


def selector(signature: str) -> bytes:
    return keccak(text=signature)[:4]


# --- (a) loading -------------------------------------------------------------------------------


def test_event_probe_artifact_has_expected_abi() -> None:
    artifact = load_artifact("EventProbe")
    assert artifact.name == "EventProbe"
    assert artifact.bytecode.startswith(b"\x60\x80\x60\x40")
    assert artifact.deployed_bytecode
    assert artifact.deployed_bytecode in artifact.bytecode

    by_name = {entry.get("name"): entry for entry in artifact.abi}
    constructor = [entry for entry in artifact.abi if entry["type"] == "constructor"]
    assert [inp["type"] for inp in constructor[0]["inputs"]] == ["uint256"]

    assert by_name["set"]["type"] == "function"
    assert by_name["set"]["stateMutability"] == "nonpayable"
    assert by_name["get"]["stateMutability"] == "view"
    assert [out["type"] for out in by_name["get"]["outputs"]] == ["uint256"]
    assert by_name["fail"]["stateMutability"] == "pure"
    assert [inp["type"] for inp in by_name["fail"]["inputs"]] == ["string"]
    assert [inp["type"] for inp in by_name["failCustom"]["inputs"]] == ["uint256"]

    event = by_name["ValueChanged"]
    assert event["type"] == "event"
    assert [(i["name"], i["type"], i["indexed"]) for i in event["inputs"]] == [
        ("by", "address", True),
        ("oldValue", "uint256", True),
        ("newValue", "uint256", False),
    ]
    assert by_name["Denied"]["type"] == "error"


def test_artifact_file_records_pinned_compiler_settings() -> None:
    path = artifacts_dir() / "EventProbe.json"
    text = path.read_text(encoding="utf-8")
    data = json.loads(text)
    assert text == json.dumps(data, indent=2, sort_keys=True) + "\n"
    assert data["sourceName"] == "src/test/EventProbe.sol"
    assert data["compiler"]["name"] == "solc-js"
    assert data["compiler"]["evmVersion"] == "prague"
    assert data["compiler"]["optimizer"] == {"enabled": True, "runs": 200}
    pinned = json.loads((CONTRACTS_DIR / "package.json").read_text())["dependencies"]["solc"]
    assert data["compiler"]["version"].startswith(pinned + "+commit.")


def test_unknown_artifact_lists_available_names() -> None:
    with pytest.raises(ArtifactNotFoundError) as excinfo:
        load_artifact("NoSuchContract")
    assert isinstance(excinfo.value, KeyError)
    message = str(excinfo.value)
    assert "NoSuchContract" in message
    assert "EventProbe" in message
    assert "EventProbe" in available_artifacts()
    with pytest.raises(ArtifactNotFoundError):
        load_artifact("../artifacts/EventProbe")


def test_malformed_artifacts_are_rejected(tmp_path: Path) -> None:
    (tmp_path / "Broken.json").write_text("{not json")
    with pytest.raises(ValueError, match="not valid JSON"):
        load_artifact("Broken", tmp_path)

    good = json.loads((artifacts_dir() / "EventProbe.json").read_text())
    (tmp_path / "Renamed.json").write_text(json.dumps(good))
    with pytest.raises(ValueError, match="does not match file name"):
        load_artifact("Renamed", tmp_path)

    bad_hex = dict(good, bytecode="0xzz")
    (tmp_path / "EventProbe.json").write_text(json.dumps(bad_hex))
    with pytest.raises(ValueError, match="'bytecode' is not valid hex"):
        load_artifact("EventProbe", tmp_path)


# --- (b) committed artifacts match a fresh compile -----------------------------------------------


def _node_toolchain() -> tuple[str, Path]:
    """Return (node executable, node_modules dir), installing solc with `npm ci` when absent."""
    node = shutil.which("node")
    npm = shutil.which("npm")
    if node is None or npm is None:
        pytest.skip("node/npm not installed; CI installs them to check artifacts against sources")
    node_modules = CONTRACTS_DIR / "node_modules"
    if not (node_modules / "solc").is_dir():
        subprocess.run(
            [npm, "ci", "--prefix", str(CONTRACTS_DIR), "--no-audit", "--no-fund"],
            check=True,
            capture_output=True,
            text=True,
            timeout=240,
        )
    return node, node_modules


def test_committed_artifacts_match_fresh_compile() -> None:
    node, _ = _node_toolchain()
    result = subprocess.run(
        [node, str(CONTRACTS_DIR / "compile.mjs"), "--check"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "up to date" in result.stdout


def test_check_detects_tampered_missing_and_stale_artifacts(tmp_path: Path) -> None:
    node, node_modules = _node_toolchain()
    work = tmp_path / "contracts"
    work.mkdir()
    shutil.copy2(CONTRACTS_DIR / "compile.mjs", work / "compile.mjs")
    shutil.copy2(CONTRACTS_DIR / "package.json", work / "package.json")
    shutil.copytree(CONTRACTS_DIR / "src", work / "src")
    shutil.copytree(CONTRACTS_DIR / "artifacts", work / "artifacts")
    (work / "node_modules").symlink_to(node_modules, target_is_directory=True)

    def check() -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [node, str(work / "compile.mjs"), "--check"],
            capture_output=True,
            text=True,
            timeout=120,
        )

    assert check().returncode == 0

    probe = work / "artifacts" / "EventProbe.json"
    probe.write_text(probe.read_text().replace('"runs": 200', '"runs": 201'))
    (work / "artifacts" / "Stale.json").write_text("{}\n")
    result = check()
    assert result.returncode == 1
    assert "differs: artifacts/EventProbe.json" in result.stderr
    assert "stale (no matching contract): artifacts/Stale.json" in result.stderr

    probe.unlink()
    result = check()
    assert result.returncode == 1
    assert "missing: artifacts/EventProbe.json" in result.stderr

    # Writing mode restores byte-identical artifacts and drops the stale one.
    written = subprocess.run(
        [node, str(work / "compile.mjs")], capture_output=True, text=True, timeout=120
    )
    assert written.returncode == 0, written.stderr
    assert probe.read_bytes() == (CONTRACTS_DIR / "artifacts" / "EventProbe.json").read_bytes()
    assert not (work / "artifacts" / "Stale.json").exists()
    assert check().returncode == 0

    (work / "src" / "Broken.sol").write_text(
        "// SPDX-License-Identifier: Apache-2.0\npragma solidity ^0.8.24;\n"
        "contract Broken { function f() external { undefinedName = 1; } }\n"
    )
    result = check()
    assert result.returncode == 1
    assert "DeclarationError" in result.stderr


# --- (c) the bytecode works on a real Prague chain -----------------------------------------------


@dataclass
class ProbeChain:
    chain: MiningChain
    address: bytes
    nonce: int = 1

    def send(self, data: bytes, gas: int = 200_000) -> ReceiptAPI:
        tx = _sign(self.chain, self.nonce, to=self.address, data=data, gas=gas)
        self.nonce += 1
        _, receipts, _ = self.chain.mine_all([tx])
        return receipts[0]

    def call(self, data: bytes) -> bytes:
        vm = self.chain.get_vm()
        unsigned = vm.create_unsigned_transaction(
            nonce=vm.state.get_nonce(SENDER_ADDRESS),
            gas_price=0,
            gas=1_000_000,
            to=self.address,
            value=0,
            data=data,
        )
        return self.chain.get_transaction_result(
            SpoofTransaction(unsigned, from_=SENDER_ADDRESS), self.chain.get_canonical_head()
        )


def _sign(
    chain: MiningChain, nonce: int, *, to: bytes | None, data: bytes, gas: int
) -> SignedTransactionAPI:
    tx: dict[str, Any] = {
        "type": 2,
        "chainId": CHAIN_ID,
        "nonce": nonce,
        "value": 0,
        "gas": gas,
        "maxFeePerGas": GAS_PRICE_CAP,
        "maxPriorityFeePerGas": PRIORITY_FEE,
        "data": data,
    }
    if to is not None:
        tx["to"] = to_checksum_address(to)
    raw = bytes(SENDER.sign_transaction(tx).raw_transaction)
    return chain.get_vm().get_transaction_builder().decode(raw)


@pytest.fixture
def probe() -> Iterator[ProbeChain]:
    chain_class = MiningChain.configure(
        __name__="ArtifactTestChain", vm_configuration=((0, PragueVM),), chain_id=CHAIN_ID
    )
    genesis_state = {
        SENDER_ADDRESS: {"balance": 10**21, "nonce": 0, "code": b"", "storage": {}},
    }
    chain = chain_class.from_genesis(AtomicDB(), GENESIS_PARAMS, genesis_state)
    assert chain.get_vm().fork == "prague"

    artifact: Artifact = load_artifact("EventProbe")
    deploy = _sign(
        chain, 0, to=None, data=artifact.bytecode + encode(["uint256"], [7]), gas=1_000_000
    )
    result, receipts, computations = chain.mine_all([deploy])
    assert receipts[0].state_root == b"\x01", computations[0].error
    address = computations[0].msg.storage_address
    assert chain.get_vm().state.get_code(address) == artifact.deployed_bytecode
    assert result.imported_block.header.requests_hash is not None
    yield ProbeChain(chain=chain, address=address)


def test_deployed_probe_stores_and_emits(probe: ProbeChain) -> None:
    assert decode(["uint256"], probe.call(selector("get()"))) == (7,)

    receipt = probe.send(selector("set(uint256)") + encode(["uint256"], [99]))
    assert receipt.state_root == b"\x01"
    assert len(receipt.logs) == 1
    log = receipt.logs[0]
    assert log.address == probe.address
    assert [t.to_bytes(32, "big") for t in log.topics] == [
        keccak(text="ValueChanged(address,uint256,uint256)"),
        SENDER_ADDRESS.rjust(32, b"\x00"),
        (7).to_bytes(32, "big"),
    ]
    assert decode(["uint256"], log.data) == (99,)

    assert decode(["uint256"], probe.call(selector("get()"))) == (99,)
    assert probe.chain.get_vm().state.get_storage(probe.address, 0) == 99


def test_deployed_probe_reverts_with_error_string_and_custom_error(probe: ProbeChain) -> None:
    with pytest.raises(Revert) as excinfo:
        probe.call(selector("fail(string)") + encode(["string"], ["access denied"]))
    revert_data = excinfo.value.args[0]
    assert revert_data[:4] == selector("Error(string)")
    assert decode(["string"], revert_data[4:]) == ("access denied",)

    with pytest.raises(Revert) as excinfo:
        probe.call(selector("failCustom(uint256)") + encode(["uint256"], [42]))
    revert_data = excinfo.value.args[0]
    assert revert_data[:4] == selector("Denied(uint256)")
    assert decode(["uint256"], revert_data[4:]) == (42,)

    # A mined reverting transaction fails its receipt and leaves the value unchanged.
    receipt = probe.send(selector("fail(string)") + encode(["string"], ["nope"]))
    assert receipt.state_root == b""
    assert receipt.logs == ()
    assert decode(["uint256"], probe.call(selector("get()"))) == (7,)
