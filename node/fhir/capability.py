"""GET /fhir/metadata: the CapabilityStatement of what this server really does."""

from __future__ import annotations

from typing import Any

from fhir.resources.R4B import get_fhir_model_class

from contracts.resource_types import resource_type_code
from node.fhir.searchparams import CODE_ELEMENTS

SOFTWARE_VERSION = "0.1.0"
_TYPES = ("AllergyIntolerance", "Binary", "CarePlan", "Condition", "Consent",
          "DiagnosticReport", "DocumentReference", "Encounter", "ImagingStudy", "Immunization",
          "Medication", "MedicationRequest", "MedicationStatement", "Observation", "Patient",
          "Practitioner", "Procedure", "ServiceRequest", "Specimen", "FamilyMemberHistory",
          "Goal", "Device", "Organization", "Location", "Questionnaire",
          "QuestionnaireResponse", "RelatedPerson", "CareTeam", "Coverage", "Provenance")
_PARAMS = [("_id", "token"), ("_lastUpdated", "date"), ("patient", "reference"),
           ("subject", "reference"), ("code", "token"), ("date", "date"), ("status", "token")]


def supported_types() -> list[str]:
    out = []
    for name in _TYPES:
        resource_type_code(name)
        get_fhir_model_class(name)
        out.append(name)
    return sorted(out)


def capability_statement(base: str) -> dict[str, Any]:
    resources: list[dict[str, Any]] = []
    for name in supported_types():
        interactions = ["read", "vread", "update", "delete", "history-instance",
                        "history-type", "create", "search-type"]
        resources.append({
            "type": name,
            "versioning": "versioned-update",
            "readHistory": True,
            "updateCreate": True,
            "conditionalCreate": False,
            "conditionalUpdate": False,
            "conditionalDelete": "not-supported",
            "interaction": [{"code": c} for c in interactions],
            "searchParam": [{"name": n, "type": t} for n, t in _PARAMS],
        })
    resources.append({"type": "AuditEvent", "interaction": [{"code": "search-type"}],
                      "searchParam": [{"name": "patient", "type": "reference"}]})
    return {
        "resourceType": "CapabilityStatement",
        "status": "active",
        "date": "2026-11-25",
        "kind": "instance",
        "software": {"name": "medledger", "version": SOFTWARE_VERSION},
        "implementation": {"description": "medledger hospital node FHIR API", "url": base},
        "fhirVersion": "4.0.1",
        "format": ["application/fhir+json", "json"],
        "rest": [{
            "mode": "server",
            "documentation": (
                "Records are encrypted, registered on chain and access-checked per read "
                f"(canAccess); code search covers {', '.join(CODE_ELEMENTS)}."),
            "security": {
                "cors": False,
                "description": "EIP-191 signed requests (X-Medledger-*) or a bearer token from "
                               "POST /auth/token; TLS when configured.",
            },
            "resource": resources,
            "interaction": [{"code": "transaction"}, {"code": "batch"}],
            "operation": [{"name": "break-glass",
                           "definition": f"{base}/OperationDefinition/break-glass"}],
        }],
    }
