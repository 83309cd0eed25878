"""FHIR errors: every failure leaves the API as an OperationOutcome with a fitting status."""

from __future__ import annotations

from typing import Any


class FhirError(Exception):
    """An error answer: HTTP `status`, OperationOutcome issue `code`, human `diagnostics`."""

    def __init__(
        self, status: int, code: str, diagnostics: str, *, expression: list[str] | None = None
    ) -> None:
        super().__init__(diagnostics)
        self.status = status
        self.code = code
        self.diagnostics = diagnostics
        self.expression = expression or []

    def outcome(self) -> dict[str, Any]:
        return operation_outcome(self.code, self.diagnostics, expression=self.expression)


def operation_outcome(
    code: str, diagnostics: str, *, severity: str = "error", expression: list[str] | None = None
) -> dict[str, Any]:
    issue: dict[str, Any] = {"severity": severity, "code": code, "diagnostics": diagnostics}
    if expression:
        issue["expression"] = expression
    return {"resourceType": "OperationOutcome", "issue": [issue]}


def bad_request(message: str) -> FhirError:
    return FhirError(400, "invalid", message)


def unauthorized(message: str) -> FhirError:
    return FhirError(401, "login", message)


def forbidden(message: str) -> FhirError:
    return FhirError(403, "forbidden", message)


def not_found(message: str) -> FhirError:
    return FhirError(404, "not-found", message)


def unprocessable(message: str, expression: list[str] | None = None) -> FhirError:
    return FhirError(422, "processing", message, expression=expression)
