"""The audit trail: every access, request, grant, revocation, version and break-glass is an
event with who, what and why; with the block time it rebuilds a FHIR AuditEvent."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from contracts.audit import ACCOUNT_SYSTEM, RECORD_SYSTEM, audit_event
from contracts.bindings import AuditAction, AuditOutcome, Purpose, purposes_mask
from tests.contract_chain import Consortium


@pytest.fixture
def c(tmp_path: Path) -> Iterator[Consortium]:
    consortium = Consortium(tmp_path / "chain")
    yield consortium
    consortium.close()


def test_access_log_is_audit_only_and_rebuilds_an_audit_event(c: Consortium) -> None:
    record = c.create_record("doc-a", "pat-1")
    result = c.ok("doc-b", c.medledger.log_access(
        record, Purpose.TREATMENT, AuditAction.READ, AuditOutcome.MINOR_FAILURE))
    [event] = c.medledger.decode_logs(result.logs)
    assert event.name == "AccessLogged"
    assert event.args == {
        "recordId": record,
        "accessor": c.address("doc-b"),
        "purpose": Purpose.TREATMENT,
        "action": AuditAction.READ,
        "outcome": AuditOutcome.MINOR_FAILURE,
    }
    fhir = audit_event(event, result.timestamp, observer="node-a")
    assert fhir["resourceType"] == "AuditEvent"
    assert fhir["action"] == "R" and fhir["outcome"] == "4"
    assert fhir["type"]["code"] == "rest"
    assert fhir["purposeOfEvent"][0]["coding"][0]["code"] == "TREAT"
    assert fhir["agent"] == [{"who": {"identifier": {
        "system": ACCOUNT_SYSTEM, "value": "0x" + c.address("doc-b").hex()}}, "requestor": True}]
    assert fhir["entity"][0]["what"]["identifier"] == {
        "system": RECORD_SYSTEM, "value": "0x" + record.hex()}
    assert fhir["recorded"].endswith("Z") and fhir["source"]["observer"]["display"] == "node-a"

    for bad in (
        c.medledger.encode("logAccess", record, 4, 0, 0),
        c.medledger.encode("logAccess", record, 0, 5, 0),
        c.medledger.encode("logAccess", record, 0, 0, 4),
    ):
        assert c.expect_revert("doc-b", bad).name in {
            "InvalidPurpose", "InvalidAction", "InvalidOutcome"}


def test_access_request_reaches_the_patient(c: Consortium) -> None:
    record = c.create_record("doc-a", "pat-1")
    result = c.ok("researcher-b", c.medledger.request_access(record, Purpose.RESEARCH))
    [event] = c.medledger.decode_logs(result.logs)
    assert event.name == "AccessRequested"
    assert event.args == {"patient": c.address("pat-1"), "requester": c.address("researcher-b"),
                          "recordId": record, "purpose": Purpose.RESEARCH, "hospital": 2}
    assert audit_event(event, result.timestamp, observer="n")["purposeOfEvent"][0]["coding"][0][
        "code"] == "HRESCH"
    assert c.expect_revert("pat-2", c.medledger.request_access(record, 0)).name == (
        "InvalidGrantee"
    )
    assert c.expect_revert("doc-b", c.medledger.request_access(b"\x05" * 32, 0)).name == (
        "UnknownRecord"
    )


def test_every_decision_changing_action_rebuilds_an_audit_event(c: Consortium) -> None:
    record = c.create_record("doc-a", "pat-1")
    expiry = c.now + 3600
    results = [
        c.ok("doc-a", c.medledger.add_version(record, b"\x01\x55" + b"\x11" * 32, b"\x22" * 32)),
        c.ok("pat-1", c.medledger.grant(c.address("doc-b"), record,
                                        purposes_mask(Purpose.TREATMENT, Purpose.PAYMENT), expiry)),
        c.ok("pat-1", c.medledger.revoke(c.address("doc-b"), record)),
        c.ok("doc-b", c.medledger.open_break_glass(c.address("pat-1"), 1)),
        c.ok("auditor-a", c.medledger.review_break_glass(1, False)),
    ]
    rebuilt = []
    for result in results:
        [event] = c.medledger.decode_logs(result.logs)
        rebuilt.append((event.name, audit_event(event, result.timestamp, observer="node-a")))
    by_name = dict(rebuilt)
    assert [name for name, _ in rebuilt] == [
        "RecordVersionAdded", "AccessGranted", "AccessRevoked", "BreakGlassOpened",
        "BreakGlassReviewed",
    ]
    assert by_name["RecordVersionAdded"]["action"] == "U"
    granted = by_name["AccessGranted"]
    assert [p["coding"][0]["code"] for p in granted["purposeOfEvent"]] == ["TREAT", "HPAYMT"]
    assert granted["agent"][1]["who"]["identifier"]["value"] == "0x" + c.address("doc-b").hex()
    assert by_name["BreakGlassOpened"]["purposeOfEvent"][0]["coding"][0]["code"] == "ETREAT"
    assert by_name["BreakGlassReviewed"]["outcomeDesc"] == "not justified"
    with pytest.raises(ValueError, match="not an audit event"):
        audit_event(c.medledger.decode_logs(c.ok(
            "pat-1", c.medledger.set_delegate(c.address("pat-3"), True)).logs)[0], 0, observer="n")
