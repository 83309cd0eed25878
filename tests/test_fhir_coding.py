"""Terminology, binding and authentication checks without a node."""

from __future__ import annotations

import time

import pytest

from node.fhir.auth import Authenticator, parse_signed, sign_request
from node.fhir.coding import (
    coding_errors,
    icd10cm_error,
    loinc_check_digit,
    loinc_error,
    snomed_error,
    verhoeff_valid,
)
from node.fhir.errors import FhirError
from node.fhir.validation import validate_resource
from tests.fhir_fixtures.harness import address_of, key_of


@pytest.mark.parametrize("code", ["38341003", "22298006", "44054006", "73211009",
                                  "900000000000207008", "71341001:272741003=7771000"])
def test_snomed_valid(code: str) -> None:
    assert snomed_error(code) is None


@pytest.mark.parametrize(("code", "why"), [
    ("38341004", "Verhoeff"), ("38341030", "partition"), ("012345", "leading zero"),
    ("T-15460", "digits"), ("71341001:272741003=7771001", "7771001"),
])
def test_snomed_invalid(code: str, why: str) -> None:
    problem = snomed_error(code)
    assert problem is not None and why in problem


def test_verhoeff_catches_every_single_digit_error() -> None:
    code = "22298006"
    for i in range(len(code)):
        for d in "0123456789":
            if d != code[i]:
                assert not verhoeff_valid(code[:i] + d + code[i + 1:])


@pytest.mark.parametrize("code", ["8867-4", "2339-0", "8310-5", "59284-0", "LA6724-4"])
def test_loinc_valid(code: str) -> None:
    assert loinc_error(code) is None


def test_loinc_invalid() -> None:
    assert loinc_check_digit("12345") == 5  # LOINC's documented worked example
    assert "check digit" in str(loinc_error("8867-5"))
    assert "NNNNN-C" in str(loinc_error("8867"))
    assert "NNNNN-C" in str(loinc_error("ABC-1"))


def test_icd10cm_full_list() -> None:
    assert icd10cm_error("E11.9") is None
    assert icd10cm_error("S72.001A") is None
    assert icd10cm_error("E11.99") is not None
    assert icd10cm_error("XYZ") is not None


def test_unknown_systems_are_not_checked() -> None:
    resource = {"code": {"coding": [{"system": "http://example.org", "code": "whatever"},
                                    {"system": "http://loinc.org", "code": "1-1"}]}}
    assert [p for p, _ in coding_errors(resource)] == ["code.coding[1]"]


def test_binding_and_structure_errors_are_422() -> None:
    with pytest.raises(FhirError) as exc:
        validate_resource({"resourceType": "Patient", "gender": "robot"})
    assert exc.value.status == 422 and exc.value.code == "code-invalid"
    with pytest.raises(FhirError) as exc:
        validate_resource({"resourceType": "Observation", "code": {"text": "x"}})
    assert exc.value.status == 422 and exc.value.code == "structure"  # status is required
    with pytest.raises(FhirError) as exc:
        validate_resource({"resourceType": "Unicorn"})
    assert exc.value.status == 400


def headers_dict(headers: dict[str, str]) -> dict[str, str]:
    return {k.lower(): v for k, v in headers.items()}


def test_signed_requests_and_tokens() -> None:
    auth = Authenticator(token_ttl=0.3)
    headers = headers_dict(sign_request(key_of("doc-a"), "POST", "/fhir/Patient", b"{}"))
    signed = parse_signed(headers)
    assert signed is not None
    import hashlib

    digest = hashlib.sha256(b"{}").hexdigest()
    assert auth.verify_signed(signed, "POST", "/fhir/Patient", digest) == address_of("doc-a")
    with pytest.raises(FhirError, match="replayed"):
        auth.verify_signed(signed, "POST", "/fhir/Patient", digest)
    other = parse_signed(headers_dict(sign_request(key_of("doc-a"), "POST", "/fhir/Patient",
                                                   b"{}")))
    assert other is not None
    with pytest.raises(FhirError, match="signature"):  # body changed
        auth.verify_signed(other, "POST", "/fhir/Patient", hashlib.sha256(b"{ }").hexdigest())
    token, ttl = auth.issue_token(address_of("doc-a"))
    assert auth.token_address(token) == address_of("doc-a")
    time.sleep(0.4)
    with pytest.raises(FhirError, match="expired"):  # automatic logoff
        auth.token_address(token)


def test_non_ascii_digits_are_not_a_snomed_id() -> None:
    # str.isdigit() accepts '²' and '٣'; the check digit needs ASCII digits.
    from node.fhir.coding import snomed_error

    assert snomed_error("²²²²²²") is not None
    assert snomed_error("٣٣٣٣٣٣٣") is not None
