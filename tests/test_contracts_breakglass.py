"""Break-glass: emergency access without consent, a short fixed window, a mandatory reason,
always logged, visible to the patient and their hospital, reviewed once by an auditor."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from eth_utils import keccak

from contracts.bindings import (
    BreakGlassCase,
    BreakGlassReason,
    LogEntry,
    Purpose,
    ReviewStatus,
)
from tests.contract_chain import Consortium

WINDOW = 3600


@pytest.fixture
def c(tmp_path: Path) -> Iterator[Consortium]:
    consortium = Consortium(tmp_path / "chain")
    yield consortium
    consortium.close()


def test_break_glass_opens_a_fixed_window_for_treatment(c: Consortium) -> None:
    record = c.create_record("doc-a", "pat-1")
    assert not c.can_access("doc-b", record, Purpose.TREATMENT)
    assert c.view("BREAK_GLASS_WINDOW") == WINDOW

    opened = c.now + 1
    result = c.ok("doc-b", c.medledger.open_break_glass(
        c.address("pat-1"), BreakGlassReason.UNABLE_TO_CONSENT), timestamp=opened)
    [event] = c.medledger.decode_logs(result.logs)
    assert event.name == "BreakGlassOpened"
    assert event.args == {
        "patient": c.address("pat-1"),
        "patientHospital": 1,
        "clinician": c.address("doc-b"),
        "caseId": 1,
        "clinicianHospital": 2,
        "reason": BreakGlassReason.UNABLE_TO_CONSENT,
        "detailHash": b"\x00" * 32,
        "until": opened + WINDOW,
    }
    until = opened + WINDOW
    assert c.can_access("doc-b", record, Purpose.TREATMENT)
    assert not c.can_access("doc-b", record, Purpose.RESEARCH)  # treatment only
    assert not c.can_access("nurse-b", record, Purpose.TREATMENT)  # the opener only
    later = c.create_record("doc-a", "pat-1", label="later")  # covers all the patient's records
    assert c.can_access("doc-b", later, Purpose.TREATMENT)
    other = c.create_record("doc-a", "pat-2", label="other patient")
    assert not c.can_access("doc-b", other, Purpose.TREATMENT)

    assert c.can_access("doc-b", record, Purpose.TREATMENT, timestamp=until - 1)
    assert not c.can_access("doc-b", record, Purpose.TREATMENT, timestamp=until)
    assert c.view("emergencyAccessUntil", c.address("doc-b"), c.address("pat-1")) == until
    case = c.medledger.break_glass_case(c.call_fn(), 1)
    assert case == BreakGlassCase(
        c.address("doc-b"), c.address("pat-1"), opened, until,
        BreakGlassReason.UNABLE_TO_CONSENT, ReviewStatus.PENDING,
    )


def test_break_glass_needs_a_reason_and_a_clinician(c: Consortium) -> None:
    patient = c.address("pat-1")
    open_ = c.medledger.open_break_glass
    assert c.expect_revert("doc-b", open_(patient, 0)).name == "ReasonRequired"  # no reason
    assert c.expect_revert("doc-b", open_(patient, 5)).name == "InvalidReason"
    assert c.expect_revert("doc-b", open_(patient, BreakGlassReason.OTHER)).name == (
        "DetailRequired"
    )
    for caller in ("researcher-b", "auditor-b", "admin-b", "pat-2", "outsider"):
        assert c.expect_revert(caller, open_(patient, 1)).name == "NotClinician"
    assert c.expect_revert("doc-b", open_(c.address("doc-a"), 1)).name == "NotPatient"
    assert c.view("breakGlassCount") == 0
    c.ok("nurse-b", open_(patient, BreakGlassReason.OTHER, keccak(b"free-text note")))
    assert c.view("breakGlassCount") == 1


def test_patient_and_hospital_can_find_their_break_glass_events(c: Consortium) -> None:
    c.ok("doc-b", c.medledger.open_break_glass(c.address("pat-1"), 1))
    c.ok("doc-c", c.medledger.open_break_glass(c.address("pat-3"), 1))
    logs = []
    for number in range(1, c.chain.chain.head.block_number + 1):
        block = c.chain.chain.block_by_number(number)
        for receipt in c.chain.chain.receipts(block):
            logs += [
                LogEntry(bytes(log.address), tuple(t.to_bytes(32, "big") for t in log.topics),
                         bytes(log.data))
                for log in receipt.logs
            ]
    topic = c.medledger.event_topic("BreakGlassOpened")
    pat1 = c.address("pat-1").rjust(32, b"\x00")
    hospital2 = (2).to_bytes(32, "big")
    # As an eth_getLogs topic filter would: [event, patient] and [event, any, hospital].
    mine = [log for log in logs if log.topics[:2] == (topic, pat1)]
    assert [c.medledger.decode_log(log).args["clinician"] for log in mine] == [c.address("doc-b")]
    home = [log for log in logs if log.topics[0] == topic and log.topics[2] == hospital2]
    assert [c.medledger.decode_log(log).args["patient"] for log in home] == [c.address("pat-3")]


def test_review_by_an_auditor_of_either_hospital_once(c: Consortium) -> None:
    c.ok("doc-b", c.medledger.open_break_glass(c.address("pat-1"), 1))
    c.ok("doc-b", c.medledger.open_break_glass(c.address("pat-1"), 2))
    review = c.medledger.review_break_glass
    for caller in ("doc-a", "admin-a", "pat-1", "doc-b"):
        assert c.expect_revert(caller, review(1, True)).name == "NotReviewer"
    # An auditor of a third hospital has no say.
    c.ok("admin-c", c.medledger.register_staff(c.address("outsider"), keccak(b"aud-c"), 5))
    assert c.expect_revert("outsider", review(1, True)).name == "NotReviewer"

    note = keccak(b"review note")
    result = c.ok("auditor-a", review(1, True, note))  # the patient's hospital
    [event] = c.medledger.decode_logs(result.logs)
    assert event.args == {"caseId": 1, "patient": c.address("pat-1"),
                          "reviewer": c.address("auditor-a"), "justified": True, "noteHash": note}
    assert c.expect_revert("auditor-b", review(1, False)).name == "AlreadyReviewed"
    c.ok("auditor-b", review(2, False))  # the clinician's hospital
    call = c.call_fn()
    assert c.medledger.break_glass_case(call, 1).status == ReviewStatus.JUSTIFIED
    assert c.medledger.break_glass_case(call, 2).status == ReviewStatus.UNJUSTIFIED
    assert c.expect_revert("auditor-a", review(3, True)).name == "UnknownBreakGlass"
