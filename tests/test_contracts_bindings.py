"""The eth_abi bindings agree with web3.py (a dev-only, independent ABI implementation) and
reject what the ABI does not accept."""

from __future__ import annotations

from typing import Any

import pytest
from eth_abi import encode
from eth_utils import keccak, to_checksum_address
from hexbytes import HexBytes
from web3 import Web3

from contracts.artifacts import load_artifact
from contracts.bindings import (
    BindingError,
    ContractError,
    LogEntry,
    MedLedger,
    Purpose,
    decode_revert,
    hospital_grantee,
    purposes_mask,
    system_contracts,
)

GRANTEE = bytes.fromhex("11" * 20)
PATIENT = bytes.fromhex("22" * 20)
RECORD = keccak(b"record")


def _web3_contract(binding: Any) -> Any:
    """The same contract through web3.py, from the committed artifact's ABI."""
    abi = load_artifact(binding.name).abi
    return Web3().eth.contract(address=to_checksum_address(binding.address), abi=abi)


def test_calldata_matches_web3() -> None:
    m = MedLedger()
    w3c = _web3_contract(m)
    cases: list[tuple[bytes, str, list[Any]]] = [
        (m.grant(GRANTEE, RECORD, 9, 1_800_000_000), "grant",
         [to_checksum_address(GRANTEE), RECORD, 9, 1_800_000_000]),
        (m.grant_records(GRANTEE, [RECORD, keccak(b"2")], 1, 5), "grantRecords",
         [to_checksum_address(GRANTEE), [RECORD, keccak(b"2")], 1, 5]),
        (m.create_record(RECORD, PATIENT, "Patient", b"\x01\x55\x12", b"\x33" * 32),
         "createRecord", [RECORD, to_checksum_address(PATIENT), 103, b"\x01\x55\x12",
                          b"\x33" * 32]),
        (m.log_access(RECORD, Purpose.RESEARCH), "logAccess", [RECORD, 3, 0, 0]),
    ]
    for data, fn, args in cases:
        assert HexBytes(data) == HexBytes(w3c.encode_abi(fn, args=args)), fn


def test_event_decoding_matches_web3() -> None:
    m = MedLedger()
    topic = m.event_topic("AccessGranted")
    log = LogEntry(
        address=m.address,
        topics=(topic, PATIENT.rjust(32, b"\x00"), GRANTEE.rjust(32, b"\x00"), RECORD),
        data=encode(["uint8", "uint8", "uint40", "address"], [1, 9, 123, PATIENT]),
    )
    event = m.decode_log(log)
    assert event is not None and event.name == "AccessGranted"
    assert event.args == {"patient": PATIENT, "grantee": GRANTEE, "scope": RECORD,
                          "scopeKind": 1, "purposes": 9, "expiry": 123, "by": PATIENT}
    web3_event = _web3_contract(m).events.AccessGranted().process_log({
        "address": to_checksum_address(m.address), "topics": [HexBytes(t) for t in log.topics],
        "data": HexBytes(log.data), "blockHash": HexBytes(b"\x00" * 32), "blockNumber": 1,
        "transactionHash": HexBytes(b"\x00" * 32), "transactionIndex": 0, "logIndex": 0,
    })
    assert web3_event["args"]["grantee"] == to_checksum_address(GRANTEE)
    assert web3_event["args"]["expiry"] == 123
    # Logs of other contracts or unknown events are not ours.
    assert m.decode_log(LogEntry(b"\x01" * 20, log.topics, log.data)) is None
    assert m.decode_log(LogEntry(m.address, (keccak(b"x"),), b"")) is None
    with pytest.raises(BindingError, match="indexed topics"):
        m.decode_log(LogEntry(m.address, log.topics[:2], log.data))


def test_revert_decoding() -> None:
    m = MedLedger()
    data = keccak(text="GrantNotFound(address,bytes32)")[:4] + encode(
        ["address", "bytes32"], [GRANTEE, RECORD])
    error = decode_revert(data)
    assert error == ContractError("GrantNotFound", {"grantee": GRANTEE, "scope": RECORD})
    assert str(error).startswith("GrantNotFound(grantee=0x1111")
    governance_error = keccak(text="AlreadyVoted(uint256,uint32)")[:4] + encode(
        ["uint256", "uint32"], [4, 2])
    assert decode_revert(governance_error) == ContractError("AlreadyVoted", {"id": 4, "member": 2})
    message = keccak(text="Error(string)")[:4] + encode(["string"], ["nope"])
    assert m.decode_error(message) == ContractError("Error", {"message": "nope"})
    assert decode_revert(b"\xde\xad\xbe\xef") is None
    assert decode_revert(data[:10]) is None  # truncated


def test_bad_calls_are_refused_before_sending() -> None:
    m = MedLedger()
    with pytest.raises(BindingError, match="no function 'nope'"):
        m.encode("nope")
    with pytest.raises(BindingError, match="takes 4 arguments, got 1"):
        m.encode("grant", GRANTEE)
    with pytest.raises(BindingError, match="cannot encode"):
        m.grant(GRANTEE, RECORD, 256, 1)  # purposes is a uint8
    with pytest.raises(BindingError, match="unknown FHIR resource type"):
        m.create_record(RECORD, PATIENT, "Nonsense", b"\x01\x02", b"\x00" * 32)
    with pytest.raises(BindingError, match="no event"):
        m.event_topic("Nope")
    with pytest.raises(BindingError, match="at least one purpose"):
        purposes_mask()
    with pytest.raises(BindingError, match="out of range"):
        hospital_grantee(0)
    with pytest.raises(BindingError, match="20 bytes"):
        MedLedger(b"\x01")


def test_helpers() -> None:
    assert purposes_mask(Purpose.TREATMENT, Purpose.RESEARCH) == 0b1001
    assert hospital_grantee(2).hex() == "686f7370" + "00" * 12 + "00000002"
    medledger, governance, nodes, accounts = system_contracts()
    assert {b.name for b in (medledger, governance, nodes, accounts)} == {
        "MedLedger", "ConsortiumGovernance", "NodeAllowList", "AccountAllowList"}
    assert medledger.selector("canAccess") == keccak(text="canAccess(address,bytes32,uint8)")[:4]
