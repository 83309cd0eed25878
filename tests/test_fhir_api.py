"""FHIR API end to end on a real node: auth, CRUD, history, search, consent on chain,
break-glass, the audit trail, fhirclient, TLS."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import httpx
import pytest

from node.fhir.auth import sign_request
from tests.fhir_fixtures.harness import (
    FhirNode,
    address_of,
    create_patient,
    key_of,
    observation,
    patient_resource,
    start_fhir_node,
)


@pytest.fixture(scope="module")
def fhir(tmp_path_factory: pytest.TempPathFactory) -> Iterator[FhirNode]:
    node = start_fhir_node(tmp_path_factory.mktemp("fhir"))
    try:
        yield node
    finally:
        node.stop()


@pytest.fixture(scope="module")
def patient1(fhir: FhirNode) -> str:
    return create_patient(fhir, "pat-1", "One")


@pytest.fixture(scope="module")
def patient2(fhir: FhirNode) -> str:
    return create_patient(fhir, "pat-2", "Two")


def access_logs(fhir: FhirNode, record_id: bytes) -> list[tuple[int, int]]:
    fhir.wait_block()
    return [(e.args["action"], e.args["outcome"]) for e in fhir.audit_events()
            if e.args["recordId"] == record_id]


def issue(response: httpx.Response) -> dict:
    body = response.json()
    assert body["resourceType"] == "OperationOutcome"
    return body["issue"][0]


# --------------------------------------------------------------------------- authentication


def test_metadata_lists_what_is_supported(fhir: FhirNode) -> None:
    response = httpx.get(fhir.base + "/fhir/metadata")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("application/fhir+json")
    cap = response.json()
    assert cap["resourceType"] == "CapabilityStatement" and cap["fhirVersion"] == "4.0.1"
    types = {r["type"]: r for r in cap["rest"][0]["resource"]}
    assert {"Patient", "Observation", "Consent", "AuditEvent"} <= set(types)
    assert {i["code"] for i in types["Observation"]["interaction"]} >= {
        "read", "vread", "update", "create", "search-type", "history-instance"}


def test_no_anonymous_access(fhir: FhirNode, patient1: str) -> None:
    response = httpx.get(fhir.base + f"/fhir/{patient1}")
    assert response.status_code == 401
    assert issue(response)["code"] == "login"
    bad = httpx.get(fhir.base + f"/fhir/{patient1}", headers={"Authorization": "Bearer nope"})
    assert bad.status_code == 401


def test_signed_request_and_replay(fhir: FhirNode, patient1: str) -> None:
    target = f"/fhir/{patient1}"
    headers = sign_request(key_of("doc-a"), "GET", target, b"")
    first = httpx.get(fhir.base + target, headers=headers)
    assert first.status_code == 200, first.text
    assert first.json()["name"][0]["family"] == "One"
    replay = httpx.get(fhir.base + target, headers=headers)
    assert replay.status_code == 401 and "replayed" in issue(replay)["diagnostics"]
    # A signature over another path does not authorize this one.
    other = sign_request(key_of("doc-a"), "GET", "/fhir/Patient", b"")
    assert httpx.get(fhir.base + target, headers=other).status_code == 401
    stale = sign_request(key_of("doc-a"), "GET", target, b"", timestamp=int(time.time()) - 3600)
    assert httpx.get(fhir.base + target, headers=stale).status_code == 401


def test_unregistered_identity_is_refused(fhir: FhirNode) -> None:
    headers = sign_request(key_of("stranger"), "POST", "/auth/token", b"")
    response = httpx.post(fhir.base + "/auth/token", headers=headers)
    assert response.status_code == 403


def test_token_logoff(fhir: FhirNode, patient1: str) -> None:
    headers = sign_request(key_of("nurse-a"), "POST", "/auth/token", b"")
    token = httpx.post(fhir.base + "/auth/token", headers=headers).json()["access_token"]
    auth = {"Authorization": f"Bearer {token}"}
    assert httpx.get(fhir.base + f"/fhir/{patient1}", headers=auth).status_code == 200
    assert httpx.delete(fhir.base + "/auth/token", headers=auth).status_code == 204
    assert httpx.get(fhir.base + f"/fhir/{patient1}", headers=auth).status_code == 401


# --------------------------------------------------------------------------- interactions


def test_create_read_update_history_delete(fhir: FhirNode, patient1: str) -> None:
    client = fhir.client("doc-a")
    created = client.post("/Observation", json=observation(patient1, value=70))
    assert created.status_code == 201
    oid = created.json()["id"]
    assert created.headers["location"].endswith(f"/Observation/{oid}/_history/1")
    assert created.headers["etag"] == 'W/"1"'

    read = client.get(f"/Observation/{oid}")
    assert read.status_code == 200 and read.json()["valueQuantity"]["value"] == 70
    update = {**read.json(), "valueQuantity": {**read.json()["valueQuantity"], "value": 75}}
    stale = client.put(f"/Observation/{oid}", json=update, headers={"If-Match": 'W/"7"'})
    assert stale.status_code == 412
    ok = client.put(f"/Observation/{oid}", json=update, headers={"If-Match": 'W/"1"'})
    assert ok.status_code == 200 and ok.json()["meta"]["versionId"] == "2"

    assert client.get(f"/Observation/{oid}").json()["valueQuantity"]["value"] == 75
    v1 = client.get(f"/Observation/{oid}/_history/1")
    assert v1.status_code == 200 and v1.json()["valueQuantity"]["value"] == 70
    history = client.get(f"/Observation/{oid}/_history").json()
    assert history["type"] == "history" and history["total"] == 2
    assert [e["resource"]["meta"]["versionId"] for e in history["entry"]] == ["2", "1"]
    type_history = client.get("/Observation/_history").json()
    assert {e["resource"]["id"] for e in type_history["entry"]} >= {oid}

    assert client.delete(f"/Observation/{oid}").status_code == 204
    gone = client.get(f"/Observation/{oid}")
    assert gone.status_code == 410
    assert client.get(f"/Observation/{oid}/_history/2").status_code == 200
    assert client.get("/Observation/does-not-exist").status_code == 404


def test_update_cannot_move_a_record_to_another_patient(fhir: FhirNode, patient1: str,
                                                       patient2: str) -> None:
    client = fhir.client("doc-a")
    made = client.post("/Observation", json=observation(patient1)).json()
    moved = {**made, "subject": {"reference": patient2}}
    response = client.put(f"/Observation/{made['id']}", json=moved)
    assert response.status_code == 422 and "another patient" in issue(response)["diagnostics"]


def test_put_creates_with_client_id(fhir: FhirNode, patient1: str) -> None:
    client = fhir.client("doc-a")
    body = {**observation(patient1), "id": "client-chosen-1"}
    response = client.put("/Observation/client-chosen-1", json=body)
    assert response.status_code == 201
    assert client.get("/Observation/client-chosen-1").json()["id"] == "client-chosen-1"
    mismatch = client.put("/Observation/other-id", json=body)
    assert mismatch.status_code == 400


@pytest.mark.parametrize(
    ("change", "fragment"),
    [
        ({"status": "done"}, "Observation.status"),
        ({"code": {"coding": [{"system": "http://loinc.org", "code": "8867-5"}]}},
         "mod-10 check digit"),
        ({"code": {"coding": [{"system": "http://snomed.info/sct", "code": "38341004"}]}},
         "Verhoeff"),
        ({"code": {"coding": [{"system": "http://hl7.org/fhir/sid/icd-10-cm",
                               "code": "E11.99"}]}}, "ICD-10-CM"),
        ({"effectiveDateTime": "yesterday"}, "effectiveDateTime"),
    ],
)
def test_invalid_resources_are_422(fhir: FhirNode, patient1: str, change: dict,
                                   fragment: str) -> None:
    response = fhir.client("doc-a").post("/Observation", json={**observation(patient1),
                                                               **change})
    assert response.status_code == 422
    assert fragment in issue(response)["diagnostics"]


def test_valid_codes_accepted(fhir: FhirNode, patient1: str) -> None:
    condition = {"resourceType": "Condition", "subject": {"reference": patient1},
                 "clinicalStatus": {"coding": [{
                     "system": "http://terminology.hl7.org/CodeSystem/condition-clinical",
                     "code": "active"}]},
                 "code": {"coding": [
                     {"system": "http://hl7.org/fhir/sid/icd-10-cm", "code": "E11.9"},
                     {"system": "http://snomed.info/sct", "code": "44054006"}]}}
    assert fhir.client("doc-a").post("/Condition", json=condition).status_code == 201
    bad = {**condition, "clinicalStatus": {"coding": [{
        "system": "http://terminology.hl7.org/CodeSystem/condition-clinical", "code": "meh"}]}}
    assert fhir.client("doc-a").post("/Condition", json=bad).status_code == 422


def test_bad_requests(fhir: FhirNode) -> None:
    client = fhir.client("doc-a")
    assert client.post("/Observation", content=b"{not json").status_code == 400
    assert client.post("/Observation", json={"resourceType": "Patient"}).status_code == 400
    assert client.post("/Nonsense", json={"resourceType": "Nonsense"}).status_code == 400
    assert client.get("/Observation", params={"flavour": "x"}).status_code == 400
    assert client.get("/metadata", params={"_format": "xml"}).status_code == 415
    gender = client.post("/Patient", json={**patient_resource("pat-1", "X"), "gender": "robot"})
    assert gender.status_code == 422 and "gender" in issue(gender)["diagnostics"]
    unknown = client.post("/Observation", json=observation("Patient/unknown"))
    assert unknown.status_code == 422 and "which patient" in issue(unknown)["diagnostics"]


def test_patients_cannot_write(fhir: FhirNode, patient1: str) -> None:
    response = fhir.client("pat-1").post("/Observation", json=observation(patient1))
    assert response.status_code == 403


def test_search(fhir: FhirNode, patient2: str) -> None:
    client = fhir.client("doc-a")
    made = []
    for i, (code, day) in enumerate([("8867-4", "2023-01-05"), ("8310-5", "2023-02-05"),
                                     ("8867-4", "2023-03-05"), ("2339-0", "2023-04-05")]):
        obs = observation(patient2, code=code, value=60 + i, when=f"{day}T08:00:00Z")
        if i == 3:
            obs["status"] = "preliminary"
        made.append(client.post("/Observation", json=obs).json()["id"])

    def ids(**params: str) -> set[str]:
        bundle = client.get("/Observation", params={"patient": patient2, **params}).json()
        assert bundle["type"] == "searchset"
        return {e["resource"]["id"] for e in bundle["entry"]}

    assert ids() == set(made)
    assert ids(code="8867-4") == {made[0], made[2]}
    assert ids(code="http://loinc.org|8310-5") == {made[1]}
    assert ids(code="http://other|8310-5") == set()
    assert ids(date="ge2023-02-01") == set(made[1:])
    assert ids(date="2023-03") == {made[2]}
    assert ids(status="preliminary") == {made[3]}
    assert ids(_id=made[0]) == {made[0]}
    assert ids(subject=patient2, code="8867-4,2339-0") == {made[0], made[2], made[3]}
    assert ids(_lastUpdated=f"ge{datetime.now(UTC).year}") == set(made)

    page = client.get("/Observation", params={"patient": patient2, "_count": "3"}).json()
    assert page["total"] == 4 and len(page["entry"]) == 3
    nxt = [link["url"] for link in page["link"] if link["relation"] == "next"]
    rest = httpx.get(nxt[0], headers=client.headers).json()
    assert len(rest["entry"]) == 1
    seen = {e["resource"]["id"] for e in page["entry"] + rest["entry"]}
    assert seen == set(made)
    counted = client.get("/Observation", params={"patient": patient2, "_count": "0"}).json()
    assert counted["total"] == 4 and "entry" not in counted or counted["entry"] == []
    assert [link["relation"] for link in counted["link"]] == ["self"]


def test_transaction_bundle_resolves_references(fhir: FhirNode) -> None:
    bundle = {"resourceType": "Bundle", "type": "transaction", "entry": [
        {"fullUrl": "urn:uuid:61ebe359-bfdc-4613-8bf2-c5e300945f0a",
         "resource": patient_resource("pat-1", "Tx"),
         "request": {"method": "POST", "url": "Patient"}},
        {"fullUrl": "urn:uuid:88f151c0-a954-468a-88bd-5ae15c08e059",
         "resource": observation("urn:uuid:61ebe359-bfdc-4613-8bf2-c5e300945f0a"),
         "request": {"method": "POST", "url": "Observation"}},
    ]}
    response = fhir.client("doc-a").post("", json=bundle)
    assert response.status_code == 200, response.text
    out = response.json()
    assert out["type"] == "transaction-response"
    patient_id = out["entry"][0]["resource"]["id"]
    obs = out["entry"][1]["resource"]
    assert obs["subject"]["reference"] == f"Patient/{patient_id}"
    assert out["entry"][1]["response"]["status"].startswith("201")
    read = fhir.client("doc-a").get(f"/Observation/{obs['id']}")
    assert read.json()["subject"]["reference"] == f"Patient/{patient_id}"


def test_transaction_is_all_or_nothing_on_validation(fhir: FhirNode, patient1: str) -> None:
    bundle = {"resourceType": "Bundle", "type": "transaction", "entry": [
        {"resource": observation(patient1, value=1), "request": {"method": "POST",
                                                                 "url": "Observation"}},
        {"resource": {**observation(patient1), "status": "bogus"},
         "request": {"method": "POST", "url": "Observation"}},
    ]}
    client = fhir.client("doc-a")
    before = client.get("/Observation", params={"patient": patient1, "_count": "0"}).json()
    assert client.post("", json=bundle).status_code == 422
    after = client.get("/Observation", params={"patient": patient1, "_count": "0"}).json()
    assert after["total"] == before["total"]


# --------------------------------------------------------------------------- consent and audit


def consent(patient_ref: str, grantee: bytes, *, end: int | None = None,
            data: list[str] | None = None) -> dict:
    provision: dict = {
        "type": "permit",
        "actor": [{"role": {"coding": [{
            "system": "http://terminology.hl7.org/CodeSystem/v3-ParticipationType",
            "code": "PRCP"}]},
            "reference": {"identifier": {"system": "urn:medledger:account",
                                         "value": "0x" + grantee.hex()}}}],
        "purpose": [{"system": "http://terminology.hl7.org/CodeSystem/v3-ActReason",
                     "code": "TREAT"}],
    }
    if end is not None:
        provision["period"] = {"end": datetime.fromtimestamp(end, UTC).isoformat()}
    if data is not None:
        provision["data"] = [{"meaning": "instance", "reference": {"reference": r}}
                             for r in data]
    return {"resourceType": "Consent", "status": "active",
            "scope": {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/consentscope",
                                  "code": "patient-privacy"}]},
            "category": [{"coding": [{"system": "http://loinc.org", "code": "59284-0"}]}],
            "patient": {"reference": patient_ref}, "provision": provision}


def test_consent_grant_and_revoke(fhir: FhirNode, patient1: str) -> None:
    created = fhir.client("doc-a").post("/Observation", json=observation(patient1))
    oid = created.json()["id"]
    record_id = fhir.record_id("Observation", oid)
    doc_b = fhir.client("doc-b")
    assert doc_b.get(f"/Observation/{oid}").status_code == 403

    # Only the patient (or a delegate) manages consent.
    grant = consent(patient1, address_of("doc-b"), data=[f"Observation/{oid}"])
    assert fhir.client("doc-a").post("/Consent", json=grant).status_code == 403
    made = fhir.client("pat-1").post("/Consent", json=grant)
    assert made.status_code == 201, made.text
    assert fhir.view("recordGrant", address_of("doc-b"), record_id)[0] == 1
    read = doc_b.get(f"/Observation/{oid}")
    assert read.status_code == 200 and read.json()["id"] == oid

    assert fhir.client("pat-1").delete(f"/Consent/{made.json()['id']}").status_code == 204
    assert fhir.view("recordGrant", address_of("doc-b"), record_id) == (0, 0)
    assert doc_b.get(f"/Observation/{oid}").status_code == 403
    # Search shows only what the caller may read.
    found = doc_b.get("/Observation", params={"_id": oid}).json()
    assert found["total"] == 0


def test_consent_expiry(fhir: FhirNode, patient1: str) -> None:
    oid = fhir.client("doc-a").post("/Observation", json=observation(patient1)).json()["id"]
    end = int(time.time()) + 4
    grant = consent(patient1, address_of("doc-b"), end=end, data=[f"Observation/{oid}"])
    assert fhir.client("pat-1").post("/Consent", json=grant).status_code == 201
    doc_b = fhir.client("doc-b")
    assert doc_b.get(f"/Observation/{oid}").status_code == 200
    time.sleep(max(0.0, end - time.time()) + 1.1)
    assert doc_b.get(f"/Observation/{oid}").status_code == 403


def test_every_read_leaves_one_audit_event(fhir: FhirNode, patient1: str) -> None:
    oid = fhir.client("doc-a").post("/Observation", json=observation(patient1)).json()["id"]
    record_id = fhir.record_id("Observation", oid)
    assert access_logs(fhir, record_id) == []
    client = fhir.client("nurse-a")
    assert client.get(f"/Observation/{oid}").status_code == 200
    assert access_logs(fhir, record_id) == [(0, 0)]
    assert client.get(f"/Observation/{oid}/_history/1").status_code == 200
    assert client.get("/Observation", params={"_id": oid}).json()["total"] == 1
    assert access_logs(fhir, record_id) == [(0, 0)] * 3
    assert fhir.client("doc-b").get(f"/Observation/{oid}").status_code == 403
    assert access_logs(fhir, record_id) == [(0, 0)] * 3 + [(0, 2)]  # denied: serious failure


def test_break_glass_and_patient_audit_trail(fhir: FhirNode, patient2: str) -> None:
    oid = fhir.client("doc-a").post("/Observation", json=observation(patient2)).json()["id"]
    doc_b = fhir.client("doc-b")
    assert doc_b.get(f"/Observation/{oid}").status_code == 403
    no_reason = {"resourceType": "Parameters", "parameter": [
        {"name": "patient", "valueReference": {"reference": patient2}}]}
    assert doc_b.post("/$break-glass", json=no_reason).status_code == 422
    request = {"resourceType": "Parameters", "parameter": [
        {"name": "patient", "valueReference": {"reference": patient2}},
        {"name": "reason", "valueCode": "life-threatening"}]}
    assert fhir.client("nurse-a").post("/$break-glass", json={
        **request, "parameter": [request["parameter"][0], {"name": "reason",
                                                           "valueCode": "0"}]}
    ).status_code == 422
    opened = doc_b.post("/$break-glass", json=request)
    assert opened.status_code == 200, opened.text
    returned = {e["resource"]["id"] for e in opened.json()["entry"]}
    assert oid in returned and patient2.split("/")[1] in returned
    assert doc_b.get(f"/Observation/{oid}").status_code == 200
    # Nobody else rides on doc-b's emergency window.
    assert fhir.client("pat-1").get(f"/Observation/{oid}").status_code == 403

    fhir.wait_block()
    trail = fhir.client("pat-2").get("/AuditEvent", params={"patient": patient2})
    assert trail.status_code == 200
    events = [e["resource"] for e in trail.json()["entry"]]
    subtypes = [e["subtype"][0]["code"] for e in events if e.get("subtype")]
    assert "BreakGlassOpened" in json.dumps(events)
    assert len([e for e in events if "AccessLogged" in json.dumps(e)]) >= 2
    assert subtypes
    auditor = fhir.client("auditor-a").get("/AuditEvent", params={"patient": patient2})
    assert auditor.status_code == 200 and auditor.json()["total"] == len(events)
    assert doc_b.get("/AuditEvent", params={"patient": patient2}).status_code == 403


# --------------------------------------------------------------------------- fhirclient


def test_fhirclient_reads_and_searches(fhir: FhirNode, patient1: str) -> None:
    from fhirclient import client as smart_client
    from fhirclient.models.observation import Observation
    from fhirclient.models.patient import Patient

    oid = fhir.client("doc-a").post("/Observation",
                                    json=observation(patient1, code="8310-5")).json()["id"]
    smart = smart_client.FHIRClient(settings={"app_id": "medledger-test",
                                              "api_base": fhir.base + "/fhir/"})
    smart.server.session.headers["Authorization"] = f"Bearer {fhir.bearer('doc-a')}"
    patient = Patient.read(patient1.split("/")[1], smart.server)
    assert patient.name[0].family == "One" and patient.gender == "female"
    found = Observation.where(struct={"subject": patient1, "code": "8310-5"}).perform_resources(
        smart.server)
    assert oid in {o.id for o in found}
    assert all(o.subject.reference == patient1 for o in found)


# --------------------------------------------------------------------------- live updates


def test_live_updates_over_websocket(fhir: FhirNode, patient1: str) -> None:
    from tests.fhir_fixtures.wsclient import WsClient

    url = fhir.base.replace("http://", "") + f"/fhir/$live?token={fhir.bearer('pat-1')}"
    with WsClient(url) as ws:
        oid = fhir.client("doc-a").post("/Observation", json=observation(patient1)).json()["id"]
        message = ws.receive_json(timeout=20)
        assert message == {"event": "version", "resource": f"Observation/{oid}", "version": 1,
                           "patient": patient1}
    with WsClient(fhir.base.replace("http://", "") + "/fhir/$live?token=bad") as ws:
        assert ws.closed_by_server(timeout=5)


def test_tls_listener(tmp_path: Path) -> None:
    from tests.fhir_fixtures.tls import self_signed

    cert, key = self_signed(tmp_path)
    node = start_fhir_node(tmp_path / "tls", certfile=cert, keyfile=key)
    try:
        base = node.base.replace("http://", "https://")
        response = httpx.get(base + "/fhir/metadata", verify=str(cert))
        assert response.status_code == 200
        with pytest.raises(httpx.HTTPError):
            httpx.get(node.base + "/fhir/metadata", timeout=5)
    finally:
        node.stop()
