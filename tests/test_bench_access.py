"""The read benchmark's canAccess fixture really walks MedLedger's grant path on a real chain."""

from __future__ import annotations

from pathlib import Path

from bench import access_fixture
from contracts.bindings import MedLedger, Purpose
from genesis.schema import Genesis, QbftParams
from genesis.system import MEDLEDGER_ADDRESS
from node.chain import Chain
from node.rpc import execution
from node.rpc.params import parse_call_request
from tests.helpers import CHAIN_ID, VALIDATOR


def can_access(chain: Chain, grantee: bytes, purpose: Purpose) -> bool:
    data = MedLedger().encode("canAccess", grantee, access_fixture.RECORD_ID, int(purpose))
    request = parse_call_request({"to": "0x" + MEDLEDGER_ADDRESS.hex(),
                                  "data": "0x" + data.hex()}, 0)
    return bool(int.from_bytes(execution.call(chain, chain.head, request), "big"))


def test_fixture_grants_the_doctor_treatment_access_only(tmp_path: Path) -> None:
    genesis = Genesis(chain_id=CHAIN_ID, validators=(VALIDATOR,), qbft=QbftParams(),
                      alloc=access_fixture.medledger_alloc(), system_contracts={})
    chain = Chain(tmp_path, genesis)
    try:
        request = access_fixture.can_access_request()
        assert request["to"] == "0x" + MEDLEDGER_ADDRESS.hex()
        assert can_access(chain, access_fixture.DOCTOR, Purpose.TREATMENT)
        # The grant covers treatment only, and only this doctor (not hospital 1's admin).
        assert not can_access(chain, access_fixture.DOCTOR, Purpose.RESEARCH)
        assert not can_access(chain, access_fixture.ADMINS[0], Purpose.TREATMENT)
    finally:
        chain.close()


def test_peer_install_requests_write_the_same_words() -> None:
    words = access_fixture.medledger_storage_words()
    for system, method in (("hardhat", "hardhat_setStorageAt"),
                           ("ganache", "evm_setAccountStorageAt")):
        calls = access_fixture.install_requests(system)
        writes = {int(params[1], 16): int(params[2], 16)
                  for name, params in calls if name == method}
        assert writes == words
        assert all(len(params[2]) == 66 for name, params in calls if name == method)
