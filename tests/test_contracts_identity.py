"""Members, staff and patients: registration by the hospital's admin, one account per person."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from contracts.bindings import AccountInfo, Role
from genesis.system import genesis_person_id
from tests.contract_chain import HOSPITALS, Consortium, person_id


@pytest.fixture
def c(tmp_path: Path) -> Iterator[Consortium]:
    consortium = Consortium(tmp_path / "chain")
    yield consortium
    consortium.close()


def test_genesis_members_and_registered_accounts(c: Consortium) -> None:
    call = c.call_fn()
    assert c.medledger.member_count(call) == 3
    assert [c.medledger.member(call, i) for i in (1, 2, 3)] == [(h, True) for h in HOSPITALS]
    assert c.medledger.member(call, 4) == ("", False)
    assert c.medledger.member_admin_of(call, c.address("admin-b")) == 2
    assert c.medledger.member_admin_of(call, c.address("doc-b")) == 0
    assert c.medledger.account_info(call, c.address("admin-a")) == AccountInfo(Role.ADMIN, 1, True)
    assert c.medledger.account_of_person(call, genesis_person_id(c.address("admin-c"))) == (
        c.address("admin-c")
    )
    assert c.medledger.account_info(call, c.address("nurse-b")) == AccountInfo(Role.NURSE, 2, True)
    assert c.medledger.account_info(call, c.address("pat-3")) == AccountInfo(Role.PATIENT, 2, True)
    assert c.medledger.account_info(call, c.address("outsider")) == AccountInfo(0, 0, False)
    assert c.medledger.account_of_person(call, person_id("doc-a")) == c.address("doc-a")
    assert c.medledger.account_of_person(call, person_id("nobody")) is None


def test_registration_emits_audit_event(tmp_path: Path) -> None:
    c = Consortium(tmp_path / "chain", register=False)
    try:
        result = c.ok("admin-a", c.medledger.register_staff(
            c.address("doc-a"), person_id("doc-a"), Role.DOCTOR))
        [event] = c.medledger.decode_logs(result.logs)
        assert event.name == "AccountRegistered"
        assert event.args == {
            "account": c.address("doc-a"),
            "hospital": 1,
            "personId": person_id("doc-a"),
            "role": Role.DOCTOR,
            "by": c.address("admin-a"),
        }
    finally:
        c.close()


def test_only_an_admin_registers_and_only_for_its_hospital(c: Consortium) -> None:
    new = c.address("outsider")
    register = c.medledger.register_staff
    for caller in ("doc-a", "pat-1", "auditor-b", "outsider"):  # a non-admin registering staff
        error = c.expect_revert(caller, register(new, person_id("new"), Role.DOCTOR))
        assert error.name == "NotAdmin" and error.args == {"caller": c.address(caller)}
    assert c.expect_revert("doc-a", c.medledger.register_patient(new, person_id("p"))).name == (
        "NotAdmin"
    )
    # An admin manages accounts of its own hospital only.
    error = c.expect_revert("admin-b", c.medledger.set_account_active(c.address("doc-a"), False))
    assert error.name == "NotAdmin"
    assert c.expect_revert("admin-a", c.medledger.set_account_active(c.address("admin-a"),
                                                                     False)).name == (
        "CannotDeactivateSelf"
    )
    assert c.expect_revert("admin-a", c.medledger.set_account_active(new, False)).name == (
        "UnknownAccount"
    )
    assert c.medledger.account_info(c.call_fn(), new).role == 0


def test_one_account_per_person(c: Consortium) -> None:
    register = c.medledger.register_staff
    # The same person cannot get a second account, in any hospital or role.
    error = c.expect_revert("admin-b", register(c.address("outsider"), person_id("doc-a"),
                                                Role.RESEARCHER))
    assert error.name == "PersonExists"
    assert error.args == {"personId": person_id("doc-a"), "account": c.address("doc-a")}
    error = c.expect_revert("admin-a", c.medledger.register_patient(c.address("outsider"),
                                                                    person_id("pat-3")))
    assert error.name == "PersonExists"
    # And one account cannot belong to two people.
    error = c.expect_revert("admin-a", register(c.address("doc-b"), person_id("new"),
                                                Role.DOCTOR))
    assert error.name == "AccountExists"


def test_bad_registrations(c: Consortium) -> None:
    register = c.medledger.register_staff
    new = c.address("outsider")
    for role in (0, Role.PATIENT, 7):  # patients go through registerPatient
        assert c.expect_revert("admin-a", register(new, person_id("x"), role)).name == (
            "InvalidRole"
        )
    assert c.expect_revert("admin-a", register(new, b"\x00" * 32, Role.NURSE)).name == (
        "InvalidPersonId"
    )
    assert c.expect_revert("admin-a", register(b"\x00" * 20, person_id("x"),
                                               Role.NURSE)).name == "InvalidAccount"
    hospital_key = bytes.fromhex("686f7370") + b"\x00" * 12 + b"\x00\x00\x00\x01"
    assert c.expect_revert("admin-a", register(hospital_key, person_id("x"),
                                               Role.NURSE)).name == "InvalidAccount"


def test_admin_adds_an_admin_and_deactivation_is_reversible(c: Consortium) -> None:
    new = c.address("guardian-admin")
    c.ok("admin-c", c.medledger.register_staff(new, person_id("admin-2"), Role.ADMIN))
    assert c.medledger.member_admin_of(c.call_fn(), new) == 3
    # The new admin can act for hospital C.
    c.ok("guardian-admin", c.medledger.register_staff(c.address("outsider"), person_id("n"),
                                                      Role.NURSE))
    result = c.ok("admin-c", c.medledger.set_account_active(new, False))
    [event] = c.medledger.decode_logs(result.logs)
    assert event.name == "AccountStatusChanged"
    assert event.args == {"account": new, "hospital": 3, "active": False,
                          "by": c.address("admin-c")}
    assert c.medledger.member_admin_of(c.call_fn(), new) == 0
    assert c.expect_revert("guardian-admin", c.medledger.register_patient(
        b"\x99" * 20, person_id("p"))).name == "NotAdmin"
    c.ok("admin-c", c.medledger.set_account_active(new, True))
    assert c.medledger.account_info(c.call_fn(), new).active


def test_members_change_only_by_governance(c: Consortium) -> None:
    data = c.medledger.add_member("Hospital D", c.address("outsider"), person_id("admin-d"))
    error = c.expect_revert("admin-a", data)
    assert error.name == "NotGovernance"
    assert c.expect_revert("admin-a", c.medledger.set_member_active(2, False)).name == (
        "NotGovernance"
    )
    assert c.medledger.member_count(c.call_fn()) == 3
