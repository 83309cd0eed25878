"""Operations the web UI needs beyond plain FHIR REST (all GET, JSON, authenticated):

* `$me`: who the caller is on chain (role, hospital), and for a patient the Patient
  references on this server and whether this node's service account is a delegate (needed
  before the node can submit consent).
* `$records?patient=`: the patient's records on this server as metadata only (type, id,
  version, last update): nothing is decrypted, so nothing is logged on chain.
* `$grants?patient=`: the grants in force, rebuilt from the chain's AccessGranted /
  AccessRevoked events, with the Consent that made each (to revoke it) where this node has one.
* `$break-glass-cases`: break-glass cases of the auditor's (or admin's) hospital, as the
  patient's or the clinician's, with their review status.

The patient operations follow the audit trail's rule: the patient, a delegate or an auditor
of the patient's or this node's hospital.
"""

from __future__ import annotations

import time
from typing import Any

from contracts.bindings import HOSPITAL_KEY_PREFIX, Role
from contracts.resource_types import resource_type_name
from genesis.system import decode_member_name
from node.fhir.errors import bad_request, forbidden, not_found
from node.fhir.service import Caller, FhirService, hex_account

REASONS = {1: "life-threatening", 2: "unable-to-consent", 3: "urgent-consent-unobtainable",
           4: "other"}
PURPOSE_BITS = {0: "TREAT", 1: "HPAYMT", 2: "HOPERAT", 3: "HRESCH"}


def role_name(role: int) -> str:
    try:
        return Role(role).name.lower()
    except ValueError:
        return "none"


def grantee_label(grantee: bytes) -> dict[str, Any]:
    if grantee[:16] == HOSPITAL_KEY_PREFIX:
        return {"kind": "hospital", "hospital": int.from_bytes(grantee[16:], "big"),
                "account": hex_account(grantee)}
    return {"kind": "account", "account": hex_account(grantee)}


async def me(service: FhirService, caller: Caller) -> dict[str, Any]:
    name, active = await service.chainio.view("member", caller.hospital)
    out: dict[str, Any] = {
        "address": hex_account(caller.address), "role": role_name(caller.role),
        "hospital": caller.hospital, "hospitalName": decode_member_name(bytes(name)),
        "hospitalActive": bool(active), "node": {
            "hospital": service.hospital, "serviceAccount": hex_account(service.service_address),
            "medledger": hex_account(service.medledger.address)},
    }
    if caller.role == Role.PATIENT:
        out["patientRefs"] = service.index.patient_refs(caller.address)
        out["serviceDelegate"] = bool(await service.chainio.view(
            "isDelegate", caller.address, service.service_address))
    return out


def _patient_param(service: FhirService, query: dict[str, str]) -> tuple[str, bytes]:
    ref = query.get("patient")
    if not ref:
        raise bad_request("this operation needs patient=Patient/<id>")
    ref = ref if "/" in ref else f"Patient/{ref}"
    patient = service.index.patient_account(ref)
    if patient is None:
        raise not_found(f"{ref} is not known")
    return ref, patient


async def records(service: FhirService, caller: Caller, query: dict[str, str]
                  ) -> dict[str, Any]:
    ref, patient = _patient_param(service, query)
    await service.require_trail_reader(caller, patient)
    rows = service.index.search(None, [("r.patient = ?", [patient])])
    return {"patient": ref, "records": [
        {"resourceType": r.rtype, "id": r.id, "version": r.version,
         "lastUpdated": r.last_updated, "deleted": r.deleted,
         "recordId": "0x" + r.record_id.hex()} for r in rows]}


async def grants(service: FhirService, caller: Caller, query: dict[str, str]
                 ) -> dict[str, Any]:
    ref, patient = _patient_param(service, query)
    await service.require_trail_reader(caller, patient)
    await service.sync_audit()
    granted = service.medledger.event_topic("AccessGranted")
    revoked = service.medledger.event_topic("AccessRevoked")
    active: dict[tuple[bytes, int, bytes], dict[str, Any]] = {}
    for event, block_time in service.audit_events(patient, {granted, revoked}):
        key = (event.args["grantee"], int(event.args["scopeKind"]), event.args["scope"])
        if event.name == "AccessGranted":
            active[key] = {"purposes": int(event.args["purposes"]),
                           "expiry": int(event.args["expiry"]), "granted": block_time}
        else:
            active.pop(key, None)
    consents = service.index.consents_by_grant()
    now = int(time.time())
    out = []
    for (grantee, kind, scope), terms in active.items():
        if terms["expiry"] <= now:
            continue
        if kind == 1:
            row = service.index.resource_by_record(scope)
            target = f"{row.rtype}/{row.id}" if row else "0x" + scope.hex()
        else:
            code = int.from_bytes(scope, "big")
            target = "all records" if code == 0 else f"all {resource_type_name(code)} records"
        consent_row = service.index.resource_by_record(consents[(grantee, kind, scope)]) if (
            grantee, kind, scope) in consents else None
        out.append({
            "grantee": grantee_label(grantee), "scopeKind": "record" if kind == 1 else "type",
            "scope": "0x" + scope.hex(), "target": target,
            "purposes": [c for bit, c in PURPOSE_BITS.items() if terms["purposes"] & (1 << bit)],
            "expiry": terms["expiry"], "granted": terms["granted"],
            "consent": (f"Consent/{consent_row.id}" if consent_row is not None
                        and not consent_row.deleted else None),
        })
    out.sort(key=lambda g: g["granted"], reverse=True)
    return {"patient": ref, "grants": out}


async def break_glass_cases(service: FhirService, caller: Caller) -> dict[str, Any]:
    if caller.role not in (Role.AUDITOR, Role.ADMIN):
        raise forbidden("break-glass cases are for auditors and hospital admins")
    await service.sync_audit()
    opened = service.medledger.event_topic("BreakGlassOpened")
    reviewed = service.medledger.event_topic("BreakGlassReviewed")
    cases: dict[int, dict[str, Any]] = {}
    for event, block_time in service.audit_events(None, {opened, reviewed}):
        case_id = int(event.args["caseId"])
        if event.name == "BreakGlassOpened":
            hospitals = (int(event.args["patientHospital"]),
                         int(event.args["clinicianHospital"]))
            if caller.hospital not in hospitals:
                continue
            refs = service.index.patient_refs(event.args["patient"])
            requester = service.index.break_glass_requester(case_id)
            cases[case_id] = {
                "case": case_id, "patient": hex_account(event.args["patient"]),
                "patientRef": refs[0] if refs else None, "patientHospital": hospitals[0],
                "clinician": hex_account(event.args["clinician"]),
                "clinicianHospital": hospitals[1],
                # On chain the clinician is the node's service account when the case was
                # opened through a FHIR node; the node that did it knows the person.
                "requestedBy": None if requester is None else hex_account(requester),
                "reason": REASONS.get(int(event.args["reason"]), str(event.args["reason"])),
                "detailHash": "0x" + event.args["detailHash"].hex(), "opened": block_time,
                "until": int(event.args["until"]), "status": "pending", "reviewer": None,
            }
        elif case_id in cases:
            cases[case_id]["status"] = ("justified" if event.args["justified"]
                                        else "unjustified")
            cases[case_id]["reviewer"] = hex_account(event.args["reviewer"])
            cases[case_id]["reviewed"] = block_time
    ordered = sorted(cases.values(), key=lambda c: c["case"], reverse=True)
    return {"hospital": caller.hospital, "canReview": caller.role == Role.AUDITOR,
            "cases": ordered}
