"""Fuzzing the FHIR REST API of a real node (chain, contracts, record store, HTTP): schemathesis
over the API's own OpenAPI description (GET /openapi.json), random and mutated FHIR bodies,
and DICOM uploads (random bytes and mutated real DICOM files). Properties: never a 5xx
(every failure must be a client error with a reason), every error is an OperationOutcome,
no hang (pytest-timeout), and the server keeps serving afterwards."""

from __future__ import annotations

import copy
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import schemathesis
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st
from hypothesis.control import currently_in_test_context
from pydicom.data import get_testdata_file

from node.fhir.openapi import openapi_document
from tests.fhir_fixtures.harness import (
    FhirNode,
    address_of,
    observation,
    patient_resource,
    start_fhir_node,
)
from tests.fuzz.conftest import examples
from tests.fuzz.stats import case as count_case

pytestmark = [pytest.mark.slow, pytest.mark.timeout(900)]

SCHEMA = schemathesis.openapi.from_dict(openapi_document())


@schemathesis.serializer("application/dicom")
def _dicom_body(ctx: Any, value: Any) -> bytes | None:
    """Generated DICOM bodies (binary strings) go out as they are."""
    if value is None:
        return None
    return value if isinstance(value, bytes) else str(value).encode()


@pytest.fixture(scope="module")
def fhir(tmp_path_factory: pytest.TempPathFactory) -> Iterator[FhirNode]:
    node = start_fhir_node(tmp_path_factory.mktemp("fhir-fuzz"))
    try:
        yield node
    finally:
        node.stop()


@pytest.fixture(scope="module")
def patient(fhir: FhirNode) -> str:
    response = fhir.client("doc-a").post("/Patient", json=patient_resource("pat-1", "Fuzz"))
    assert response.status_code == 201, response.text
    return f"Patient/{response.json()['id']}"


def auth(fhir: FhirNode) -> dict[str, str]:
    return {"Authorization": f"Bearer {fhir.bearer('doc-a')}"}


def assert_fhir_answer(response: httpx.Response | Any) -> None:
    """No server error; an error is an OperationOutcome with a diagnostic."""
    status = response.status_code
    if currently_in_test_context():
        event(f"HTTP {status}")
    assert status < 500, (status, response.text[:500])
    if status >= 400:
        body = response.json()
        assert body["resourceType"] == "OperationOutcome", body
        assert body["issue"] and body["issue"][0]["code"], body


def test_openapi_document_is_served(fhir: FhirNode) -> None:
    response = httpx.get(fhir.base + "/openapi.json")
    assert response.status_code == 200
    assert response.headers["content-type"] == "application/json"
    doc = response.json()
    assert doc["openapi"].startswith("3.0") and "/fhir/{type}/{id}" in doc["paths"]
    assert doc == json.loads(json.dumps(openapi_document()))


@SCHEMA.parametrize()
@settings(max_examples=examples(6), suppress_health_check=list(HealthCheck), deadline=None)
def test_openapi_operations(case: schemathesis.Case, fhir: FhirNode, patient: str) -> None:
    count_case()
    headers = {**(case.headers or {}), **auth(fhir)}
    response = case.call(base_url=fhir.base, headers=headers, timeout=120)
    if case.operation.path == "/auth/token" and case.method.upper() == "DELETE":
        fhir.tokens.clear()  # the fuzzer may have logged our token off: get a new one
    assert_fhir_answer(response)


# -- FHIR bodies ------------------------------------------------------------------------------

json_values = st.recursive(
    st.one_of(st.none(), st.booleans(), st.integers(-(2**64), 2**64), st.text(max_size=30),
              st.floats(allow_nan=False, allow_infinity=False)),
    lambda inner: st.one_of(st.lists(inner, max_size=4),
                            st.dictionaries(st.text(max_size=12), inner, max_size=5)),
    max_leaves=15)


def mutated(resource: dict[str, Any]) -> st.SearchStrategy[dict[str, Any]]:
    """The resource with one field replaced, deleted, or added."""

    def apply(args: tuple[int, str, Any]) -> dict[str, Any]:
        index, action, value = args
        out = copy.deepcopy(resource)
        keys = sorted(out)
        key = keys[index % len(keys)]
        if action == "replace":
            out[key] = value
        elif action == "delete":
            out.pop(key)
        else:
            out[f"x{index}"] = value
        return out

    return st.tuples(st.integers(0, 50), st.sampled_from(["replace", "delete", "add"]),
                     json_values).map(apply)


@settings(max_examples=examples(25))
@given(data=st.data())
def test_fhir_bodies_never_cause_server_errors(fhir: FhirNode, patient: str,
                                               data: st.DataObject) -> None:
    count_case()
    rtype = data.draw(st.sampled_from(["Patient", "Observation", "Consent", "Bundle"]))
    seeds = {"Patient": patient_resource("pat-2", "Mut"),
             "Observation": observation(patient),
             "Consent": {"resourceType": "Consent", "status": "active"},
             "Bundle": {"resourceType": "Bundle", "type": "transaction",
                        "entry": [{"request": {"method": "POST", "url": "Observation"},
                                   "resource": observation(patient)}]}}
    body = data.draw(st.one_of(
        st.binary(max_size=200),
        json_values.map(lambda v: json.dumps(v).encode()),
        mutated(seeds[rtype]).map(lambda r: json.dumps(r).encode()),
    ), label="body")
    url = "/fhir" if rtype == "Bundle" else f"/fhir/{rtype}"
    method = data.draw(st.sampled_from(["POST", "PUT"])) if rtype != "Bundle" else "POST"
    if method == "PUT":
        url += "/" + data.draw(st.sampled_from(["fuzz-1", "x" * 70, "..", "%00"]))
    response = httpx.request(method, fhir.base + url, content=body, timeout=120,
                             headers={**auth(fhir), "Content-Type": "application/fhir+json"})
    assert_fhir_answer(response)


# -- DICOM uploads ----------------------------------------------------------------------------

DICOM_SAMPLE = Path(str(get_testdata_file("CT_small.dcm", download=False)))


@settings(max_examples=examples(12))
@given(data=st.data())
def test_dicom_uploads_never_cause_server_errors(fhir: FhirNode, data: st.DataObject) -> None:
    count_case()
    sample = DICOM_SAMPLE.read_bytes()
    body = data.draw(st.one_of(
        st.binary(max_size=2000),
        st.integers(0, len(sample)).map(lambda n: sample[:n]),
        st.tuples(st.integers(0, 1000), st.binary(min_size=1, max_size=16)).map(
            lambda t: sample[: 128 + t[0]] + t[1] + sample[128 + t[0] + len(t[1]):]),
        st.binary(max_size=64).map(lambda junk: b"\0" * 128 + b"DICM" + junk),
    ), label="body")
    patient = data.draw(st.sampled_from(["0x" + address_of("pat-1").hex(), "0x1234",
                                         "not-an-account"]))
    response = httpx.post(fhir.base + "/dicom", content=body, timeout=120, headers={
        **auth(fhir), "Content-Type": "application/dicom", "X-Medledger-Patient": patient})
    assert_fhir_answer(response)
    if response.status_code == 201:
        rid = response.json()["id"]
        meta = httpx.get(fhir.base + f"/dicom/{rid}/metadata", headers=auth(fhir), timeout=60)
        assert meta.status_code == 200
        deid = httpx.get(fhir.base + f"/dicom/{rid}", params={"deidentified": "true"},
                         headers=auth(fhir), timeout=60)
        assert deid.status_code == 200, deid.text


@pytest.mark.parametrize("path,body", [
    ("/fhir", {"resourceType": "Bundle", "type": "transaction", "entry": True}),
    ("/fhir", {"resourceType": "Bundle", "type": "batch", "entry": [1, 2]}),
    ("/fhir", {"resourceType": "Bundle", "type": "batch", "entry": [{"request": "GET x"}]}),
    ("/fhir", {"resourceType": "Bundle", "type": "batch", "entry": [
        {"request": {"method": "PUT", "url": "Patient/p1", "ifMatch": 5},
         "resource": {"resourceType": "Patient", "id": "p1"}}]}),
    ("/fhir/$break-glass", {"resourceType": "Parameters", "parameter": 0}),
    ("/fhir/$break-glass", {"resourceType": "Parameters",
                            "parameter": [{"name": "patient", "valueReference": "x"}]}),
], ids=["entry-bool", "entry-ints", "request-str", "ifmatch-int", "params-int",
        "reference-str"])
def test_found_by_fuzzing_malformed_bodies_are_client_errors(
    fhir: FhirNode, path: str, body: Any
) -> None:
    """Regressions: each of these was a 500 (TypeError/AttributeError) before."""
    response = httpx.post(fhir.base + path, json=body, timeout=60,
                          headers={**auth(fhir), "Content-Type": "application/fhir+json"})
    assert_fhir_answer(response)
    if response.status_code >= 400:
        assert response.status_code in (400, 422), response.text
    else:  # a batch answers per entry
        entry = response.json()["entry"][0]["response"]
        assert entry["status"].startswith("4"), entry


def test_found_by_fuzzing_unstorable_dicom_is_refused_at_upload(fhir: FhirNode) -> None:
    """Regressions: these were stored, then their metadata or de-identified download was a
    500 (a damaged element decoded lazily; no File Meta / SOP Instance UID)."""
    sample = DICOM_SAMPLE.read_bytes()
    for body in (sample[:725] + b"\0" + sample[726:], b"\0" * 128 + b"DICM"):
        response = httpx.post(fhir.base + "/dicom", content=body, timeout=60, headers={
            **auth(fhir), "Content-Type": "application/dicom",
            "X-Medledger-Patient": "0x" + address_of("pat-1").hex()})
        assert response.status_code == 422, response.text
        assert "not a valid DICOM file" in response.json()["issue"][0]["diagnostics"]


def test_still_serving_after_the_fuzzing(fhir: FhirNode, patient: str) -> None:
    read = fhir.client("doc-a").get(f"/{patient}")
    assert read.status_code == 200 and read.json()["resourceType"] == "Patient"


def test_found_by_fuzzing_non_ascii_digits_are_not_version_ids(fhir: FhirNode) -> None:
    """Regression: '²' passes str.isdigit() but not int(); this vread was a 500."""
    response = httpx.get(fhir.base + "/fhir/Condition/kCTE/_history/%C2%B2",
                         headers=auth(fhir), timeout=60)
    assert_fhir_answer(response)
    assert response.status_code == 400, response.text
