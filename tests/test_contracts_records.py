"""The records registry: versions are append-only, only the author's hospital adds them, and
the version digest on chain proves the CID and SHA3-256 carried by the event."""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from pathlib import Path

import pytest
from eth_utils import keccak

from contracts.bindings import RecordInfo, version_digest
from contracts.resource_types import resource_type_code, resource_type_name
from tests.contract_chain import CID, Consortium


@pytest.fixture
def c(tmp_path: Path) -> Iterator[Consortium]:
    consortium = Consortium(tmp_path / "chain")
    yield consortium
    consortium.close()


def test_create_and_append_versions(c: Consortium) -> None:
    record_id = keccak(b"encounter-1")
    plaintext = b'{"resourceType": "Observation", "status": "final"}'
    sha3 = hashlib.sha3_256(plaintext).digest()
    result = c.ok("doc-a", c.medledger.create_record(
        record_id, c.address("pat-1"), "Observation", CID, sha3))
    [event] = c.medledger.decode_logs(result.logs)
    assert event.name == "RecordVersionAdded"
    assert event.args == {
        "recordId": record_id,
        "patient": c.address("pat-1"),
        "author": c.address("doc-a"),
        "hospital": 1,
        "version": 1,
        "resourceType": resource_type_code("Observation"),
        "contentHash": sha3,
        "cid": CID,
    }
    call = c.call_fn()
    assert c.medledger.record(call, record_id) == RecordInfo(
        c.address("pat-1"), 1, resource_type_code("Observation"), 1
    )
    # Anyone holding the event can prove it against the chain.
    expected = version_digest(record_id, 1, CID, sha3, c.address("doc-a"), result.timestamp)
    assert c.medledger.version_digest(call, record_id, 1) == expected

    cid2 = bytes.fromhex("01701220") + keccak(b"v2")  # a dag-pb CID is accepted too
    sha3_2 = hashlib.sha3_256(b"amended").digest()
    result2 = c.ok("nurse-a", c.medledger.add_version(record_id, cid2, sha3_2))
    [event2] = c.medledger.decode_logs(result2.logs)
    assert (event2.args["version"], event2.args["author"]) == (2, c.address("nurse-a"))
    assert c.medledger.record(call, record_id).versions == 2
    # History is append-only: version 1's digest is unchanged.
    assert c.medledger.version_digest(call, record_id, 1) == expected
    assert c.medledger.version_digest(call, record_id, 2) == version_digest(
        record_id, 2, cid2, sha3_2, c.address("nurse-a"), result2.timestamp
    )
    assert c.medledger.version_digest(call, record_id, 3) == b"\x00" * 32
    assert resource_type_name(event2.args["resourceType"]) == "Observation"


def test_only_the_authors_hospital_adds_versions(c: Consortium) -> None:
    record_id = c.create_record("doc-a", "pat-1")
    error = c.expect_revert("doc-b", c.medledger.add_version(record_id, CID, keccak(b"x")))
    assert error.name == "NotRecordHospital"
    assert error.args == {"caller": c.address("doc-b"), "hospital": 1}
    for caller in ("researcher-a", "auditor-a", "admin-a", "pat-1"):
        assert c.expect_revert(caller, c.medledger.add_version(record_id, CID,
                                                               keccak(b"x"))).name == (
            "NotClinician"
        )
    assert c.expect_revert("doc-a", c.medledger.add_version(b"\x01" * 32, CID,
                                                            keccak(b"x"))).name == "UnknownRecord"
    assert c.medledger.record(c.call_fn(), record_id).versions == 1


def test_record_ids_are_unique_and_inputs_checked(c: Consortium) -> None:
    record_id = c.create_record("doc-a", "pat-1", label="taken")
    create = c.medledger.create_record
    h = keccak(b"h")
    pat = c.address("pat-1")
    assert c.expect_revert("doc-b", create(record_id, pat, "Observation", CID, h)).name == (
        "RecordExists"
    )
    fresh = keccak(b"fresh")
    cases = [
        ("researcher-a", create(fresh, pat, "Observation", CID, h), "NotClinician"),
        ("doc-a", create(b"\x00" * 32, pat, "Observation", CID, h), "InvalidRecordId"),
        ("doc-a", create(fresh, c.address("doc-b"), "Observation", CID, h), "NotPatient"),
        ("doc-a", create(fresh, c.address("outsider"), "Observation", CID, h), "NotPatient"),
        ("doc-a", create(fresh, pat, 0, CID, h), "InvalidResourceType"),
        ("doc-a", create(fresh, pat, "Observation", b"\x01", h), "InvalidCid"),
        ("doc-a", create(fresh, pat, "Observation", b"\x01" * 129, h), "InvalidCid"),
        ("doc-a", create(fresh, pat, "Observation", CID, b"\x00" * 32), "InvalidContentHash"),
    ]
    for caller, data, name in cases:
        assert c.expect_revert(caller, data).name == name
    assert c.medledger.record(c.call_fn(), fresh).patient == b"\x00" * 20


def test_deactivated_clinician_cannot_write(c: Consortium) -> None:
    record_id = c.create_record("doc-a", "pat-1")
    c.ok("admin-a", c.medledger.set_account_active(c.address("doc-a"), False))
    assert c.expect_revert("doc-a", c.medledger.add_version(record_id, CID,
                                                            keccak(b"x"))).name == "NotClinician"
