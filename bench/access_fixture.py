"""The MedLedger state behind the read path's `eth_call canAccess`, identical on every system.

MedLedger is a genesis predeploy on medledger (its constructor never runs), so the peers get the
same runtime code and the same storage words written directly: on medledger through the genesis
`alloc`, on Hardhat with hardhat_setCode/hardhat_setStorageAt, on Ganache with
evm_setAccountCode/evm_setAccountStorageAt. The state: two member hospitals, a doctor of
hospital 2, a patient with one record held by hospital 1, and the patient's treatment grant on
that record to the doctor. The measured call, canAccess(doctor, record, treatment), therefore
walks the consent path (record -> account -> not own hospital -> record grant -> hospital still a
member) and answers true; the benchmark checks that answer on every system before timing it.
"""

from __future__ import annotations

from typing import Any

from contracts.artifacts import load_artifact
from contracts.bindings import MedLedger, Purpose, Role
from genesis.schema import AllocAccount
from genesis.system import (
    ACCOUNT_ACTIVE_BIT,
    ACCOUNT_HOSPITAL_SHIFT,
    MEDLEDGER_ADDRESS,
    Member,
    mapping_slot,
    medledger_storage,
)

SLOT_RECORDS = 5  # MedLedger storage layout (tests/test_contracts_genesis.py checks it)
SLOT_RECORD_GRANTS = 7
REC_HOSPITAL_SHIFT = 160
REC_TYPE_SHIFT = 192
REC_VERSIONS_SHIFT = 208
FAR_FUTURE = 2**39  # grant expiry (seconds): never reached

ADMINS = (b"\xad" * 19 + b"\x01", b"\xad" * 19 + b"\x02")
DOCTOR = b"\xd0" * 19 + b"\x02"
PATIENT = b"\xfa" * 19 + b"\x01"
RECORD_ID = b"\x5e" * 32
RESOURCE_TYPE = 1


def medledger_storage_words() -> dict[int, int]:
    """MedLedger's storage: genesis members plus the doctor, patient, record and grant."""
    storage = medledger_storage([Member("hospital-1", ADMINS[0]), Member("hospital-2", ADMINS[1])])
    accounts = 3
    storage[mapping_slot(DOCTOR, accounts)] = (
        int(Role.DOCTOR) | ACCOUNT_ACTIVE_BIT | (2 << ACCOUNT_HOSPITAL_SHIFT))
    storage[mapping_slot(PATIENT, accounts)] = (
        int(Role.PATIENT) | ACCOUNT_ACTIVE_BIT | (1 << ACCOUNT_HOSPITAL_SHIFT))
    storage[mapping_slot(RECORD_ID, SLOT_RECORDS)] = (
        int.from_bytes(PATIENT, "big") | (1 << REC_HOSPITAL_SHIFT)
        | (RESOURCE_TYPE << REC_TYPE_SHIFT) | (1 << REC_VERSIONS_SHIFT))
    grants = mapping_slot(DOCTOR, SLOT_RECORD_GRANTS)
    storage[mapping_slot(RECORD_ID, grants)] = (1 << int(Purpose.TREATMENT)) | (FAR_FUTURE << 8)
    return storage


def medledger_alloc() -> dict[bytes, AllocAccount]:
    """The genesis alloc entry that predeploys MedLedger with that state (medledger)."""
    code = load_artifact("MedLedger").deployed_bytecode
    return {MEDLEDGER_ADDRESS: AllocAccount(nonce=1, code=code,
                                            storage=medledger_storage_words())}


def can_access_request() -> dict[str, str]:
    """The eth_call request object: canAccess(doctor, record, treatment)."""
    data = MedLedger().encode("canAccess", DOCTOR, RECORD_ID, int(Purpose.TREATMENT))
    return {"to": "0x" + MEDLEDGER_ADDRESS.hex(), "data": "0x" + data.hex()}


def install_requests(system: str) -> list[tuple[str, list[Any]]]:
    """JSON-RPC calls that put the same code and storage on a Hardhat or Ganache node."""
    code = "0x" + load_artifact("MedLedger").deployed_bytecode.hex()
    address = "0x" + MEDLEDGER_ADDRESS.hex()
    words = medledger_storage_words()
    if system == "hardhat":
        calls: list[tuple[str, list[Any]]] = [("hardhat_setCode", [address, code]),
                                              ("hardhat_setNonce", [address, "0x1"])]
        calls += [("hardhat_setStorageAt", [address, hex(slot), "0x" + f"{value:064x}"])
                  for slot, value in words.items()]
        return calls
    if system == "ganache":
        calls = [("evm_setAccountCode", [address, code]),
                 ("evm_setAccountNonce", [address, "0x1"])]
        calls += [("evm_setAccountStorageAt", [address, "0x" + f"{slot:064x}",
                                               "0x" + f"{value:064x}"])
                  for slot, value in words.items()]
        return calls
    raise ValueError(f"no way to install MedLedger state on {system!r}")
