"""Search parameters: what the index stores per resource and how a query becomes SQL."""

from __future__ import annotations

import re
from typing import Any

from node.fhir.errors import bad_request

CODE_ELEMENTS = ("code", "medicationCodeableConcept", "vaccineCode")
DATE_ELEMENTS = (
    "effectiveDateTime", "effectiveInstant", "effectivePeriod", "issued", "recordedDate",
    "onsetDateTime", "performedDateTime", "performedPeriod", "period", "authoredOn",
    "occurrenceDateTime", "dateTime", "started", "date", "birthDate",
)
PATIENT_ELEMENTS = ("subject", "patient", "beneficiary")
SUPPORTED = ("_id", "_lastUpdated", "patient", "subject", "code", "date", "status", "_count")
_DATE_PREFIX = re.compile(r"^(eq|ne|gt|lt|ge|le|sa|eb)?(\d{4}(-\d{2}(-\d{2}(T[0-9:.+\-Z]+)?)?)?)$")


def patient_reference(resource: dict[str, Any]) -> str | None:
    """The Patient the resource is about ("Patient/<id>"), from subject/patient."""
    if resource.get("resourceType") == "Patient" and isinstance(resource.get("id"), str):
        return f"Patient/{resource['id']}"
    for element in PATIENT_ELEMENTS:
        value = resource.get(element)
        if isinstance(value, dict):
            ref = value.get("reference")
            if isinstance(ref, str) and ref.startswith("Patient/"):
                return ref
    return None


def extract_tokens(resource: dict[str, Any]) -> list[tuple[str, str | None, str]]:
    tokens: list[tuple[str, str | None, str]] = []
    for element in CODE_ELEMENTS:
        concept = resource.get(element)
        if isinstance(concept, dict):
            for coding in concept.get("coding", []):
                if isinstance(coding, dict) and isinstance(coding.get("code"), str):
                    tokens.append(("code", coding.get("system"), coding["code"]))
    for element in DATE_ELEMENTS:
        value = resource.get(element)
        if isinstance(value, dict):
            value = value.get("start")
        if isinstance(value, str):
            tokens.append(("date", None, value))
            break
    if isinstance(resource.get("status"), str):
        tokens.append(("status", None, resource["status"]))
    ref = patient_reference(resource)
    if ref is not None:
        tokens.append(("patient", None, ref))
    return tokens


def _date_clause(column: str, raw: str) -> tuple[str, list[Any]]:
    match = _DATE_PREFIX.match(raw)
    if match is None:
        raise bad_request(f"invalid date search value {raw!r}")
    prefix, value = match.group(1) or "eq", match.group(2)
    n = len(value)
    cut = f"substr({column}, 1, {n})"
    ops = {"eq": "=", "ne": "!=", "gt": ">", "lt": "<", "ge": ">=", "le": "<=", "sa": ">",
           "eb": "<"}
    return f"{cut} {ops[prefix]} ?", [value]


def query_clauses(params: list[tuple[str, str]]) -> list[tuple[str, list[Any]]]:
    """SQL clauses over `resources r` for the search parameters (ANDed; commas are OR)."""
    clauses: list[tuple[str, list[Any]]] = []
    for name, raw in params:
        if name in ("_count", "_offset", "_format"):
            continue
        values = [v for v in raw.split(",") if v]
        if not values:
            raise bad_request(f"empty value for search parameter {name}")
        if name == "_id":
            clauses.append((f"r.id IN ({','.join('?' * len(values))})", values))
        elif name == "_lastUpdated":
            for v in values:
                clauses.append(_date_clause("r.last_updated", v))
        elif name in ("patient", "subject"):
            refs = [v if "/" in v else f"Patient/{v}" for v in values]
            clauses.append((
                "r.record_id IN (SELECT record_id FROM tokens WHERE param = 'patient' AND value IN"
                f" ({','.join('?' * len(refs))}))", refs))
        elif name == "code" or name == "status":
            parts, args = [], []
            for v in values:
                if name == "code" and "|" in v:
                    system, code = v.split("|", 1)
                    if system:
                        parts.append("(system = ? AND value = ?)")
                        args += [system, code]
                        continue
                    v = code
                parts.append("value = ?")
                args.append(v)
            clauses.append((
                f"r.record_id IN (SELECT record_id FROM tokens WHERE param = '{name}' AND"
                f" ({' OR '.join(parts)}))", args))
        elif name == "date":
            for v in values:
                sql, args = _date_clause("value", v)
                clauses.append((
                    "r.record_id IN (SELECT record_id FROM tokens WHERE param = 'date' AND "
                    f"{sql})", args))
        else:
            raise bad_request(f"unsupported search parameter {name!r} (supported: "
                              f"{', '.join(SUPPORTED)})")
    return clauses
