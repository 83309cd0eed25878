"""`medledger node run --fhir-port ...` serves the FHIR API next to JSON-RPC."""

from __future__ import annotations

import json
import time
from pathlib import Path

import httpx
import pytest
from eth_account import Account
from eth_utils import keccak, to_checksum_address

from contracts.bindings import MedLedger, Role
from genesis.builder import new_consortium
from genesis.schema import dump_genesis
from genesis.system import Member
from node.keystore import write_keystore
from node.records.keys import generate_private_key, save_private_key
from tests.fhir_fixtures.harness import address_of, key_of
from tests.helpers import PASSPHRASE
from tests.nodeproc import NodeProcess

pytestmark = pytest.mark.slow


def send(node: NodeProcess, actor: str, data: bytes, to: bytes) -> None:
    sender = to_checksum_address(address_of(actor))
    nonce = int(node.rpc("eth_getTransactionCount", sender, "pending"), 16)  # type: ignore[arg-type]
    tx = {"type": 2, "chainId": 1337, "nonce": nonce, "to": to_checksum_address(to), "value": 0,
          "data": data, "gas": 500_000, "maxFeePerGas": 10**10, "maxPriorityFeePerGas": 10**8}
    raw = bytes(Account.sign_transaction(tx, key_of(actor)).raw_transaction)
    tx_hash = node.rpc("eth_sendRawTransaction", "0x" + raw.hex())
    deadline = time.monotonic() + 60
    while (receipt := node.rpc("eth_getTransactionReceipt", tx_hash)) is None:
        assert time.monotonic() < deadline, "transaction never final"
        time.sleep(0.2)
    assert receipt["status"] == "0x1"  # type: ignore[index]


def test_node_run_serves_fhir(tmp_path: Path) -> None:
    actors = ("admin-a", "service-a")
    genesis, keys = new_consortium(
        1, predeploy_system=True, members=[Member("Hospital A", address_of("admin-a"))],
        prefund={address_of(a): 10**24 for a in actors}, empty_block_period_seconds=2,
    )
    files = tmp_path / "files"
    files.mkdir()
    (files / "genesis.json").write_text(dump_genesis(genesis))
    write_keystore(files / "validator.json", keys[0], PASSPHRASE, kdf_iterations=2**4)
    write_keystore(files / "service.json", key_of("service-a"), PASSPHRASE, kdf_iterations=2**4)
    save_private_key(files / "record.pem", generate_private_key(), PASSPHRASE)
    (files / "pass.txt").write_text(PASSPHRASE)
    node = NodeProcess(datadir=tmp_path / "node", genesis=files / "genesis.json",
                       key=files / "validator.json", passphrase=files / "pass.txt").start()
    ml = MedLedger()
    try:
        # The hospital admin registers the FHIR service account as a doctor first.
        send(node, "admin-a", ml.register_staff(address_of("service-a"), keccak(b"service-a"),
                                                Role.DOCTOR), ml.address)
    finally:
        node.stop()
    node.start("--fhir-port", "0", "--fhir-key", str(files / "service.json"),
               "--fhir-record-key", str(files / "record.pem"))
    try:
        fhir = json.loads((node.datadir / "endpoints.json").read_text())["fhir"]
        metadata = httpx.get(f"{fhir}/fhir/metadata", timeout=10)
        assert metadata.status_code == 200
        assert metadata.json()["resourceType"] == "CapabilityStatement"
        anonymous = httpx.get(f"{fhir}/fhir/Patient", timeout=10)
        assert anonymous.status_code == 401
        assert anonymous.json()["resourceType"] == "OperationOutcome"
    finally:
        node.stop()
