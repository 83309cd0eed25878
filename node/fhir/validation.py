"""Resource validation: R4B structure (`fhir.resources`), required code bindings the library
leaves unchecked, and terminology codes (coding.py). Any failure is a 422 OperationOutcome
(400 when the body is not a FHIR resource at all)."""

from __future__ import annotations

import re
from typing import Any

from fhir.resources.R4B import get_fhir_model_class
from pydantic import ValidationError

from node.fhir.coding import coding_errors
from node.fhir.errors import FhirError, bad_request

_ID = re.compile(r"^[A-Za-z0-9\-.]{1,64}$")

# Required bindings on `code` elements (type -> element -> allowed codes), FHIR R4.
_OBS_STATUS = {"registered", "preliminary", "final", "amended", "corrected", "cancelled",
               "entered-in-error", "unknown"}
_REQUEST_STATUS = {"draft", "active", "on-hold", "revoked", "completed", "entered-in-error",
                   "unknown"}
_EVENT_STATUS = {"preparation", "in-progress", "not-done", "on-hold", "stopped", "completed",
                 "entered-in-error", "unknown"}
REQUIRED_BINDINGS: dict[str, dict[str, set[str]]] = {
    "Patient": {"gender": {"male", "female", "other", "unknown"}},
    "Practitioner": {"gender": {"male", "female", "other", "unknown"}},
    "RelatedPerson": {"gender": {"male", "female", "other", "unknown"}},
    "Person": {"gender": {"male", "female", "other", "unknown"}},
    "Observation": {"status": _OBS_STATUS},
    "DiagnosticReport": {"status": {"registered", "partial", "preliminary", "final", "amended",
                                    "corrected", "appended", "cancelled", "entered-in-error",
                                    "unknown"}},
    "Encounter": {"status": {"planned", "arrived", "triaged", "in-progress", "onleave",
                             "finished", "cancelled", "entered-in-error", "unknown"}},
    "Procedure": {"status": _EVENT_STATUS},
    "MedicationRequest": {
        "status": {"active", "on-hold", "cancelled", "completed", "entered-in-error",
                   "stopped", "draft", "unknown"},
        "intent": {"proposal", "plan", "order", "original-order", "reflex-order",
                   "filler-order", "instance-order", "option"},
    },
    "ServiceRequest": {"status": _REQUEST_STATUS,
                       "intent": {"proposal", "plan", "directive", "order", "original-order",
                                  "reflex-order", "filler-order", "instance-order", "option"}},
    "Immunization": {"status": {"completed", "entered-in-error", "not-done"}},
    "Consent": {"status": {"draft", "proposed", "active", "rejected", "inactive",
                           "entered-in-error"}},
    "ImagingStudy": {"status": {"registered", "available", "cancelled", "entered-in-error",
                                "unknown"}},
    "AllergyIntolerance": {"type": {"allergy", "intolerance"},
                           "criticality": {"low", "high", "unable-to-assess"}},
    "CarePlan": {"status": _REQUEST_STATUS,
                 "intent": {"proposal", "plan", "order", "option"}},
}
# Required bindings on CodeableConcept elements (system fixed by the value set).
_CONDITION_CLINICAL = "http://terminology.hl7.org/CodeSystem/condition-clinical"
_CONDITION_VER = "http://terminology.hl7.org/CodeSystem/condition-ver-status"
REQUIRED_CONCEPT_BINDINGS: dict[str, dict[str, tuple[str, set[str]]]] = {
    "Condition": {
        "clinicalStatus": (_CONDITION_CLINICAL, {"active", "recurrence", "relapse", "inactive",
                                                 "remission", "resolved"}),
        "verificationStatus": (_CONDITION_VER, {"unconfirmed", "provisional", "differential",
                                                "confirmed", "refuted", "entered-in-error"}),
    },
}


def check_id(value: str) -> str:
    if not _ID.match(value):
        raise bad_request(f"invalid resource id {value!r} (1-64 of A-Z a-z 0-9 - .)")
    return value


def validate_resource(data: Any, expected_type: str | None = None) -> dict[str, Any]:
    """Check `data` as an R4B resource; returns it unchanged (the stored form is what the
    client sent, so a round trip returns the same JSON)."""
    if not isinstance(data, dict) or not isinstance(data.get("resourceType"), str):
        raise bad_request("the body is not a FHIR resource (no resourceType)")
    rtype = data["resourceType"]
    if expected_type is not None and rtype != expected_type:
        raise bad_request(f"resourceType {rtype!r} does not match the URL ({expected_type})")
    try:
        model = get_fhir_model_class(rtype)
    except (KeyError, ValueError):
        raise bad_request(f"unknown resource type {rtype!r}") from None
    try:
        model.model_validate(data)
    except ValidationError as exc:
        problems = [f"{'.'.join(str(p) for p in e['loc'])}: {e['msg']}" for e in exc.errors()]
        raise FhirError(422, "structure", "; ".join(problems[:20]),
                        expression=[str(p.split(':')[0]) for p in problems[:20]]) from None
    problems = binding_errors(data) + [f"{p}: {m}" for p, m in coding_errors(data)]
    if problems:
        raise FhirError(422, "code-invalid", "; ".join(problems[:20]),
                        expression=[p.split(":")[0] for p in problems[:20]])
    return data


def binding_errors(resource: dict[str, Any]) -> list[str]:
    rtype = resource["resourceType"]
    errors = []
    for element, allowed in REQUIRED_BINDINGS.get(rtype, {}).items():
        value = resource.get(element)
        if value is not None and value not in allowed:
            errors.append(f"{rtype}.{element}: {value!r} is not in the required value set "
                          f"({', '.join(sorted(allowed))})")
    for element, (system, allowed) in REQUIRED_CONCEPT_BINDINGS.get(rtype, {}).items():
        concept = resource.get(element)
        if not isinstance(concept, dict):
            continue
        for coding in concept.get("coding", []):
            if coding.get("system") == system and coding.get("code") not in allowed:
                errors.append(f"{rtype}.{element}: {coding.get('code')!r} is not in {system}")
    return errors
