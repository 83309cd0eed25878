"""Consent through the real node chain: grants, revocation, canAccess and every denial."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from contracts.bindings import Purpose, ScopeKind, hospital_grantee, purposes_mask
from contracts.resource_types import resource_type_code
from tests.contract_chain import Consortium

DAY = 86_400
TREATMENT = purposes_mask(Purpose.TREATMENT)


@pytest.fixture
def c(tmp_path: Path) -> Iterator[Consortium]:
    consortium = Consortium(tmp_path / "chain")
    yield consortium
    consortium.close()


def test_patient_grant_lets_doctor_read_until_revoked(c: Consortium) -> None:
    record = c.create_record("doc-a", "pat-1")
    assert not c.can_access("doc-b", record, Purpose.TREATMENT)  # a doctor without a grant

    expiry = c.now + DAY
    result = c.ok("pat-1", c.medledger.grant(c.address("doc-b"), record, TREATMENT, expiry))
    [event] = c.medledger.decode_logs(result.logs)
    assert event.name == "AccessGranted"
    assert event.args == {
        "patient": c.address("pat-1"),
        "grantee": c.address("doc-b"),
        "scope": record,
        "scopeKind": ScopeKind.RECORD,
        "purposes": TREATMENT,
        "expiry": expiry,
        "by": c.address("pat-1"),
    }
    assert c.can_access("doc-b", record, Purpose.TREATMENT)
    assert not c.can_access("doc-b", record, Purpose.RESEARCH)  # purpose not granted
    assert not c.can_access("nurse-b", record, Purpose.TREATMENT)  # grant is personal
    grant = c.medledger.record_grant(c.call_fn(), c.address("doc-b"), record)
    assert (grant.purposes, grant.expiry) == (TREATMENT, expiry)

    result = c.ok("pat-1", c.medledger.revoke(c.address("doc-b"), record))
    [event] = c.medledger.decode_logs(result.logs)
    assert event.name == "AccessRevoked"
    assert event.args["grantee"] == c.address("doc-b") and event.args["scope"] == record
    assert not c.can_access("doc-b", record, Purpose.TREATMENT)  # a revoked grant
    error = c.expect_revert("pat-1", c.medledger.revoke(c.address("doc-b"), record))
    assert error.name == "GrantNotFound"


def test_grant_expires_at_its_timestamp(c: Consortium) -> None:
    record = c.create_record("doc-a", "pat-1")
    expiry = c.now + 100
    c.ok("pat-1", c.medledger.grant(c.address("doc-b"), record, TREATMENT, expiry))
    assert c.can_access("doc-b", record, Purpose.TREATMENT, timestamp=expiry - 1)
    assert not c.can_access("doc-b", record, Purpose.TREATMENT, timestamp=expiry)
    # An expired grant stays denied on the chain itself, block after block.
    c.chain.send_block([], timestamp=expiry + 5)
    assert not c.can_access("doc-b", record, Purpose.TREATMENT)


def test_grant_rules_are_enforced(c: Consortium) -> None:
    record = c.create_record("doc-a", "pat-1")
    other = c.create_record("doc-a", "pat-2", label="other")
    grant = c.medledger.grant
    later = c.now + DAY

    # A patient granting another patient's record.
    error = c.expect_revert("pat-2", grant(c.address("doc-b"), record, TREATMENT, later))
    assert error.name == "NotPatientOrDelegate"
    assert error.args == {"caller": c.address("pat-2"), "patient": c.address("pat-1")}
    # Nor may staff, however senior, grant on the patient's behalf.
    assert c.expect_revert("doc-a", grant(c.address("doc-b"), record, TREATMENT, later)).name == (
        "NotPatientOrDelegate"
    )
    assert c.expect_revert("pat-1", grant(c.address("doc-b"), record, 0, later)).name == (
        "InvalidPurposes"
    )
    assert c.expect_revert("pat-1", grant(c.address("doc-b"), record, 0x10, later)).name == (
        "InvalidPurposes"
    )
    assert c.expect_revert("pat-1", grant(c.address("doc-b"), record, 1, c.now)).name == (
        "InvalidExpiry"
    )
    for bad in ("outsider", "admin-b", "pat-2"):  # unregistered, an admin, a patient
        error = c.expect_revert("pat-1", grant(c.address(bad), record, TREATMENT, later))
        assert error.name == "InvalidGrantee"
    assert c.expect_revert("pat-1", grant(hospital_grantee(9), record, 1, later)).name == (
        "InvalidGrantee"
    )
    unknown = b"\x77" * 32
    assert c.expect_revert("pat-1", grant(c.address("doc-b"), unknown, 1, later)).name == (
        "UnknownRecord"
    )
    assert not c.can_access("doc-b", record, Purpose.TREATMENT)
    assert not c.can_access("doc-b", other, Purpose.TREATMENT)


def test_batch_grant_and_batch_revoke(c: Consortium) -> None:
    records = [c.create_record("doc-a", "pat-1", label=f"r{i}") for i in range(4)]
    foreign = c.create_record("doc-a", "pat-2", label="foreign")
    expiry = c.now + DAY
    purposes = purposes_mask(Purpose.TREATMENT, Purpose.RESEARCH)
    result = c.ok("pat-1", c.medledger.grant_records(c.address("researcher-b"), records, purposes,
                                                     expiry))
    events = c.medledger.decode_logs(result.logs)
    assert [e.args["scope"] for e in events] == records
    for record in records:
        assert c.can_access("researcher-b", record, Purpose.RESEARCH)
        assert not c.can_access("researcher-b", record, Purpose.PAYMENT)

    # All or nothing: one record of another patient fails the whole batch.
    error = c.expect_revert(
        "pat-1", c.medledger.grant_records(c.address("doc-b"), [records[0], foreign], 1, expiry)
    )
    assert error.name == "NotPatientOrDelegate"
    assert not c.can_access("doc-b", records[0], Purpose.TREATMENT)
    assert c.expect_revert("pat-1", c.medledger.grant_records(c.address("doc-b"), [], 1,
                                                              expiry)).name == "EmptyBatch"

    c.ok("pat-1", c.medledger.revoke_records(c.address("researcher-b"), records[:3]))
    assert [c.can_access("researcher-b", r, Purpose.RESEARCH) for r in records] == [
        False, False, False, True,
    ]


def test_hospital_wide_grant_covers_its_staff_only(c: Consortium) -> None:
    record = c.create_record("doc-a", "pat-1")
    c.ok("pat-1", c.medledger.grant(hospital_grantee(2), record, TREATMENT, c.now + DAY))
    assert c.can_access("doc-b", record, Purpose.TREATMENT)
    assert c.can_access("researcher-b", record, Purpose.TREATMENT)
    assert not c.can_access("doc-c", record, Purpose.TREATMENT)
    assert not c.can_access("doc-b", record, Purpose.OPERATIONS)
    c.ok("pat-1", c.medledger.revoke(hospital_grantee(2), record))
    assert not c.can_access("doc-b", record, Purpose.TREATMENT)


def test_resource_type_and_all_records_grants(c: Consortium) -> None:
    labs = [c.create_record("doc-a", "pat-1", "Observation", label=f"lab{i}") for i in range(2)]
    note = c.create_record("doc-a", "pat-1", "DocumentReference", label="note")
    others_lab = c.create_record("doc-a", "pat-2", "Observation", label="pat2-lab")
    expiry = c.now + DAY
    result = c.ok("pat-1", c.medledger.grant_resource_type(
        c.address("pat-1"), c.address("doc-b"), "Observation", TREATMENT, expiry))
    [event] = c.medledger.decode_logs(result.logs)
    assert event.args["scopeKind"] == ScopeKind.RESOURCE_TYPE
    assert int.from_bytes(event.args["scope"], "big") == resource_type_code("Observation")
    assert all(c.can_access("doc-b", r, Purpose.TREATMENT) for r in labs)
    assert not c.can_access("doc-b", note, Purpose.TREATMENT)
    assert not c.can_access("doc-b", others_lab, Purpose.TREATMENT)
    # A record created after the grant is covered too.
    later_lab = c.create_record("doc-a", "pat-1", "Observation", label="later")
    assert c.can_access("doc-b", later_lab, Purpose.TREATMENT)

    # Type 0: every record of the patient, here for one hospital and for research only.
    c.ok("pat-1", c.medledger.grant_resource_type(
        c.address("pat-1"), hospital_grantee(3), 0, purposes_mask(Purpose.RESEARCH), expiry))
    assert c.can_access("doc-c", note, Purpose.RESEARCH)
    assert not c.can_access("doc-c", note, Purpose.TREATMENT)
    assert not c.can_access("doc-c", others_lab, Purpose.RESEARCH)

    error = c.expect_revert("pat-2", c.medledger.grant_resource_type(
        c.address("pat-1"), c.address("doc-b"), "Observation", TREATMENT, expiry))
    assert error.name == "NotPatientOrDelegate"
    c.ok("pat-1", c.medledger.revoke_resource_type(c.address("pat-1"), c.address("doc-b"),
                                                   "Observation"))
    assert not c.can_access("doc-b", labs[0], Purpose.TREATMENT)
    error = c.expect_revert("pat-1", c.medledger.revoke_resource_type(
        c.address("pat-1"), c.address("doc-b"), "Observation"))
    assert error.name == "GrantNotFound"


def test_implicit_access_and_who_is_never_allowed(c: Consortium) -> None:
    record = c.create_record("doc-a", "pat-1")
    # The patient reads their own records; the authoring hospital's clinicians treat.
    assert all(c.can_access("pat-1", record, p) for p in Purpose)
    assert c.can_access("doc-a", record, Purpose.TREATMENT)
    assert c.can_access("nurse-a", record, Purpose.TREATMENT)
    assert not c.can_access("doc-a", record, Purpose.RESEARCH)
    assert not c.can_access("researcher-a", record, Purpose.TREATMENT)
    assert not c.can_access("auditor-a", record, Purpose.OPERATIONS)
    assert not c.can_access("admin-a", record, Purpose.TREATMENT)
    assert not c.can_access("pat-2", record, Purpose.TREATMENT)
    assert not c.can_access("outsider", record, Purpose.TREATMENT)
    assert not c.can_access("doc-b", b"\x55" * 32, Purpose.TREATMENT)  # unknown record
    error = c.chain.call
    with pytest.raises(Exception, match="InvalidPurpose"):
        error(c.medledger.address,
              c.medledger.encode("canAccess", c.address("doc-a"), record, 4))


def test_deactivated_staff_and_suspended_member_lose_access(c: Consortium) -> None:
    record = c.create_record("doc-a", "pat-1")
    c.ok("pat-1", c.medledger.grant(c.address("doc-b"), record, TREATMENT, c.now + DAY))
    c.ok("admin-b", c.medledger.set_account_active(c.address("doc-b"), False))
    assert not c.can_access("doc-b", record, Purpose.TREATMENT)
    c.ok("admin-b", c.medledger.set_account_active(c.address("doc-b"), True))
    assert c.can_access("doc-b", record, Purpose.TREATMENT)

    # Suspension by consortium vote (2 of 3 members): hospital B's staff lose access.
    governance = c.governance
    data = c.medledger.set_member_active(2, False)
    c.ok("admin-a", governance.propose(c.medledger.address, data), to=governance.address)
    c.ok("admin-c", governance.vote(1), to=governance.address)
    assert not c.can_access("doc-b", record, Purpose.TREATMENT)
    assert c.can_access("doc-a", record, Purpose.TREATMENT)


def test_delegate_manages_consent_and_reads(c: Consortium) -> None:
    record = c.create_record("doc-a", "pat-1")
    expiry = c.now + DAY
    assert c.expect_revert("pat-3", c.medledger.grant(c.address("doc-b"), record, 1,
                                                      expiry)).name == "NotPatientOrDelegate"
    result = c.ok("pat-1", c.medledger.set_delegate(c.address("pat-3"), True))
    [event] = c.medledger.decode_logs(result.logs)
    assert event.name == "DelegateChanged" and event.args["enabled"] is True
    assert c.view("isDelegate", c.address("pat-1"), c.address("pat-3"))
    assert c.can_access("pat-3", record, Purpose.TREATMENT)  # a representative reads

    result = c.ok("pat-3", c.medledger.grant(c.address("doc-b"), record, TREATMENT, expiry))
    [event] = c.medledger.decode_logs(result.logs)
    assert event.args["patient"] == c.address("pat-1") and event.args["by"] == c.address("pat-3")
    assert c.can_access("doc-b", record, Purpose.TREATMENT)

    c.ok("pat-1", c.medledger.set_delegate(c.address("pat-3"), False))
    assert not c.can_access("pat-3", record, Purpose.TREATMENT)
    assert c.expect_revert("pat-3", c.medledger.revoke(c.address("doc-b"), record)).name == (
        "NotPatientOrDelegate"
    )
    # Only patients have delegates, and only registered accounts can be one.
    assert c.expect_revert("doc-a", c.medledger.set_delegate(c.address("pat-3"), True)).name == (
        "NotPatient"
    )
    assert c.expect_revert("pat-1", c.medledger.set_delegate(c.address("outsider"),
                                                             True)).name == "InvalidDelegate"
    assert c.expect_revert("pat-1", c.medledger.set_delegate(c.address("pat-1"),
                                                             True)).name == "InvalidDelegate"


def test_can_access_through_the_node_eth_call(c: Consortium) -> None:
    """The node's own eth_call / eth_estimateGas path (pending block at wall-clock time)."""
    record = c.create_record("doc-a", "pat-1")
    year_2100 = 4_102_444_800
    c.ok("pat-1", c.medledger.grant(c.address("doc-b"), record, TREATMENT, year_2100))
    m = c.medledger

    def node_can_access(who: str, purpose: Purpose) -> bool:
        data = m.encode("canAccess", c.address(who), record, int(purpose))
        return bool(m.decode("canAccess", c.chain.node_call(m.address, data)))

    assert node_can_access("doc-b", Purpose.TREATMENT)
    assert not node_can_access("doc-b", Purpose.RESEARCH)
    assert not node_can_access("doc-c", Purpose.TREATMENT)
    estimate = c.chain.node_estimate_gas(
        m.address, m.encode("canAccess", c.address("doc-b"), record, 0))
    execution, total = c.chain.call_gas(
        m.address, m.encode("canAccess", c.address("doc-b"), record, 0))
    assert execution < 10_000 and estimate == total
