"""canAccess against a plain Python model of the access rules, over every actor, record,
purpose and several points in time: the gas-saving hints must never change an answer."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from contracts.bindings import Purpose, Role, hospital_grantee, purposes_mask
from contracts.resource_types import resource_type_code
from tests.contract_chain import ADMINS, PATIENTS, STAFF, Consortium

WINDOW = 3600
CLINICIANS = (Role.DOCTOR, Role.NURSE)


@dataclass
class Model:
    """The rules of MedLedger.canAccess, written for clarity instead of gas."""

    records: dict[bytes, tuple[bytes, int, int]] = field(default_factory=dict)
    accounts: dict[bytes, tuple[int, int]] = field(default_factory=dict)  # role, hospital
    record_grants: dict[tuple[bytes, bytes], tuple[int, int]] = field(default_factory=dict)
    type_grants: dict[tuple[bytes, bytes, int], tuple[int, int]] = field(default_factory=dict)
    delegates: set[tuple[bytes, bytes]] = field(default_factory=set)
    emergency: dict[tuple[bytes, bytes], int] = field(default_factory=dict)

    def allows(self, who: bytes, record: bytes, purpose: Purpose, now: int) -> bool:
        if record not in self.records:
            return False
        patient, hospital, rtype = self.records[record]
        if who == patient:
            return True
        if who not in self.accounts:
            return False
        role, own = self.accounts[who]
        if not Role.DOCTOR <= role <= Role.AUDITOR:
            return (patient, who) in self.delegates
        bit = 1 << purpose

        def valid(grant: tuple[int, int] | None) -> bool:
            return grant is not None and bool(grant[0] & bit) and now < grant[1]

        clinical_treatment = purpose == Purpose.TREATMENT and role in CLINICIANS
        return (
            (clinical_treatment and own == hospital)
            or (patient, who) in self.delegates
            or (clinical_treatment and self.emergency.get((who, patient), 0) > now)
            or any(
                valid(self.record_grants.get((key, record)))
                or valid(self.type_grants.get((key, patient, rtype)))
                or valid(self.type_grants.get((key, patient, 0)))
                for key in (who, hospital_grantee(own))
            )
        )


def test_can_access_matches_the_model(tmp_path: Path) -> None:
    c = Consortium(tmp_path / "chain")
    try:
        _run(c)
    finally:
        c.close()


def _run(c: Consortium) -> None:
    m, model, a = c.medledger, Model(), c.address
    for name, (hospital, role) in STAFF.items():
        model.accounts[a(name)] = (role, hospital)
    for name, hospital in PATIENTS.items():
        model.accounts[a(name)] = (Role.PATIENT, hospital)
    for hospital, name in ADMINS.items():
        model.accounts[a(name)] = (Role.ADMIN, hospital)

    def record(author: str, patient: str, rtype: str, label: str) -> bytes:
        record_id = c.create_record(author, patient, rtype, label=label)
        model.records[record_id] = (a(patient), STAFF[author][0], resource_type_code(rtype))
        return record_id

    r1 = record("doc-a", "pat-1", "Observation", "r1")
    r2 = record("doc-a", "pat-1", "DocumentReference", "r2")
    r3 = record("nurse-a", "pat-2", "Observation", "r3")
    r4 = record("doc-b", "pat-3", "Condition", "r4")
    r5 = record("doc-b", "pat-3", "Observation", "r5")
    t0 = c.now

    def grant(patient: str, grantee: bytes, rec: bytes, purposes: int, expiry: int) -> None:
        c.ok(patient, m.grant(grantee, rec, purposes, expiry))
        model.record_grants[(grantee, rec)] = (purposes, expiry)

    def grant_type(patient: str, grantee: bytes, rtype: str | int, purposes: int,
                   expiry: int) -> None:
        c.ok(patient, m.grant_resource_type(a(patient), grantee, rtype, purposes, expiry))
        code = resource_type_code(rtype)
        model.type_grants[(grantee, a(patient), code)] = (purposes, expiry)

    treat_research = purposes_mask(Purpose.TREATMENT, Purpose.RESEARCH)
    grant("pat-1", a("doc-b"), r1, treat_research, t0 + 100)
    grant("pat-1", hospital_grantee(3), r2, purposes_mask(Purpose.OPERATIONS), t0 + 1000)
    grant_type("pat-1", a("researcher-b"), "Observation", purposes_mask(Purpose.RESEARCH),
               t0 + 1000)
    grant_type("pat-2", hospital_grantee(2), 0, purposes_mask(Purpose.PAYMENT), t0 + 50)
    grant("pat-1", a("auditor-b"), r1, purposes_mask(Purpose.OPERATIONS), t0 + 1000)
    for delegate in ("pat-2", "doc-c"):
        c.ok("pat-3", m.set_delegate(a(delegate), True))
        model.delegates.add((a("pat-3"), a(delegate)))
    grant("pat-3", a("nurse-a"), r4, purposes_mask(Purpose.TREATMENT), t0 + 1000)
    c.ok("pat-3", m.revoke(a("nurse-a"), r4))
    del model.record_grants[(a("nurse-a"), r4)]
    grant_type("pat-3", a("researcher-a"), "Condition", purposes_mask(Purpose.RESEARCH),
               t0 + 1000)
    c.ok("pat-3", m.revoke_resource_type(a("pat-3"), a("researcher-a"), "Condition"))
    del model.type_grants[(a("researcher-a"), a("pat-3"), resource_type_code("Condition"))]
    opened = c.ok("doc-c", m.open_break_glass(a("pat-1"), 1))
    model.emergency[(a("doc-c"), a("pat-1"))] = opened.timestamp + WINDOW

    actors = [*STAFF, *PATIENTS, *ADMINS.values(), "outsider"]
    records = [r1, r2, r3, r4, r5, b"\x99" * 32]
    mismatches = []
    checked = allowed = 0
    for now in (c.now, t0 + 60, t0 + 200, opened.timestamp + WINDOW + 1):
        for actor in actors:
            for rec in records:
                for purpose in Purpose:
                    expected = model.allows(a(actor), rec, purpose, now)
                    allowed += expected
                    if c.can_access(actor, rec, purpose, timestamp=now) != expected:
                        mismatches.append((now - t0, actor, records.index(rec), purpose.name,
                                           expected))
                    checked += 1
    assert mismatches == []
    assert checked == 4 * len(actors) * len(records) * len(Purpose)
    assert 100 < allowed < checked - 1000, allowed  # both answers are well represented
