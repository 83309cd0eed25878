"""Rebuild FHIR R4 AuditEvent resources from MedLedger's audit events.

The chain keeps who / what / why in the event and "when" in the block that holds it, so any node
can turn its logs into the AuditEvent resources HIPAA's audit controls ask for.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from contracts.bindings import AuditAction, AuditOutcome, Event, Purpose

_EVENT_TYPE = "http://terminology.hl7.org/CodeSystem/audit-event-type"
_DICOM = "http://dicom.nema.org/resources/ontology/DCM"
_ACT_REASON = "http://terminology.hl7.org/CodeSystem/v3-ActReason"
_SUBTYPE = "urn:medledger:audit-event"
ACCOUNT_SYSTEM = "urn:medledger:account"
RECORD_SYSTEM = "urn:medledger:record"

_PURPOSE_CODES = {
    Purpose.TREATMENT: ("TREAT", "treatment"),
    Purpose.PAYMENT: ("HPAYMT", "healthcare payment"),
    Purpose.OPERATIONS: ("HOPERAT", "healthcare operations"),
    Purpose.RESEARCH: ("HRESCH", "healthcare research"),
}
_ACTIONS = {
    AuditAction.READ: "R",
    AuditAction.CREATE: "C",
    AuditAction.UPDATE: "U",
    AuditAction.DELETE: "D",
    AuditAction.EXECUTE: "E",
}
_OUTCOMES = {
    AuditOutcome.SUCCESS: "0",
    AuditOutcome.MINOR_FAILURE: "4",
    AuditOutcome.SERIOUS_FAILURE: "8",
    AuditOutcome.MAJOR_FAILURE: "12",
}
# event name -> (type system, type code, display, action)
_KINDS: dict[str, tuple[str, str, str, str]] = {
    "AccessLogged": (_EVENT_TYPE, "rest", "RESTful Operation", ""),
    "AccessRequested": (_EVENT_TYPE, "rest", "RESTful Operation", "E"),
    "RecordVersionAdded": (_DICOM, "110110", "Patient Record", ""),
    "AccessGranted": (_DICOM, "110110", "Patient Record", "U"),
    "AccessRevoked": (_DICOM, "110110", "Patient Record", "U"),
    "BreakGlassOpened": (_DICOM, "110113", "Security Alert", "E"),
    "BreakGlassReviewed": (_DICOM, "110113", "Security Alert", "U"),
}


def _hex(value: bytes) -> str:
    return "0x" + value.hex()


def _account(address: bytes, *, requestor: bool, role: str | None = None) -> dict[str, Any]:
    agent: dict[str, Any] = {
        "who": {"identifier": {"system": ACCOUNT_SYSTEM, "value": _hex(address)}},
        "requestor": requestor,
    }
    if role is not None:
        agent["type"] = {"text": role}
    return agent


def _entity(system: str, value: bytes, role_code: str, role_display: str) -> dict[str, Any]:
    return {
        "what": {"identifier": {"system": system, "value": _hex(value)}},
        "role": {
            "system": "http://terminology.hl7.org/CodeSystem/object-role",
            "code": role_code,
            "display": role_display,
        },
    }


def _purpose(purpose: int, *, emergency: bool = False) -> list[dict[str, Any]]:
    if emergency:
        code, display = "ETREAT", "emergency treatment"
    else:
        code, display = _PURPOSE_CODES[Purpose(purpose)]
    return [{"coding": [{"system": _ACT_REASON, "code": code, "display": display}]}]


def audit_event(event: Event, block_timestamp: int, *, observer: str) -> dict[str, Any]:
    """A FHIR R4 AuditEvent (as JSON) for one decoded MedLedger audit event.

    `block_timestamp` is the timestamp of the block holding the log (the event's "when");
    `observer` names the node that reports it.
    """
    if event.name not in _KINDS:
        raise ValueError(f"{event.name} is not an audit event")
    system, code, display, action = _KINDS[event.name]
    args = event.args
    resource: dict[str, Any] = {
        "resourceType": "AuditEvent",
        "type": {"system": system, "code": code, "display": display},
        "subtype": [{"system": _SUBTYPE, "code": event.name}],
        "action": action,
        "recorded": datetime.fromtimestamp(block_timestamp, UTC).isoformat().replace("+00:00", "Z"),
        "outcome": "0",
        "source": {"observer": {"display": observer}},
    }
    entities: list[dict[str, Any]] = []
    if event.name == "AccessLogged":
        resource["action"] = _ACTIONS[AuditAction(args["action"])]
        resource["outcome"] = _OUTCOMES[AuditOutcome(args["outcome"])]
        resource["purposeOfEvent"] = _purpose(args["purpose"])
        agents = [_account(args["accessor"], requestor=True)]
        entities.append(_entity(RECORD_SYSTEM, args["recordId"], "4", "Domain Resource"))
    elif event.name == "AccessRequested":
        resource["purposeOfEvent"] = _purpose(args["purpose"])
        agents = [_account(args["requester"], requestor=True)]
        entities.append(_entity(RECORD_SYSTEM, args["recordId"], "4", "Domain Resource"))
        entities.append(_entity(ACCOUNT_SYSTEM, args["patient"], "1", "Patient"))
    elif event.name == "RecordVersionAdded":
        resource["action"] = "C" if args["version"] == 1 else "U"
        agents = [_account(args["author"], requestor=True)]
        entities.append(_entity(RECORD_SYSTEM, args["recordId"], "4", "Domain Resource"))
        entities.append(_entity(ACCOUNT_SYSTEM, args["patient"], "1", "Patient"))
    elif event.name in ("AccessGranted", "AccessRevoked"):
        agents = [
            _account(args["by"], requestor=True),
            _account(args["grantee"], requestor=False, role="grantee"),
        ]
        if event.name == "AccessGranted":
            resource["purposeOfEvent"] = [
                p for bit in Purpose if args["purposes"] & (1 << bit) for p in _purpose(bit)
            ]
        entities.append(_entity(ACCOUNT_SYSTEM, args["patient"], "1", "Patient"))
        scope = {"system": _SUBTYPE + ":scope", "value": _hex(args["scope"])}
        entities.append({"what": {"identifier": scope}})
    elif event.name == "BreakGlassOpened":
        resource["purposeOfEvent"] = _purpose(Purpose.TREATMENT, emergency=True)
        agents = [_account(args["clinician"], requestor=True)]
        entities.append(_entity(ACCOUNT_SYSTEM, args["patient"], "1", "Patient"))
    else:  # BreakGlassReviewed
        resource["outcomeDesc"] = "justified" if args["justified"] else "not justified"
        agents = [_account(args["reviewer"], requestor=True)]
        entities.append(_entity(ACCOUNT_SYSTEM, args["patient"], "1", "Patient"))
    resource["agent"] = agents
    resource["entity"] = entities
    return resource
