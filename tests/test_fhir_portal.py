"""The FHIR port's additions for the web UI on a real node: `$me`, `$records`, `$grants`,
`$break-glass-cases` (with break-glass by account and an on-chain review), the opt-in
`block`/`audit` live events, the `/rpc` JSON-RPC proxy and the static `/ui/` files."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from contracts.bindings import MedLedger
from node.fhir.static import DEFAULT_UI_DIR, resolve
from tests.fhir_fixtures.harness import (
    FhirNode,
    address_of,
    create_patient,
    observation,
    start_fhir_node,
)
from tests.fhir_fixtures.wsclient import WsClient
from tests.test_fhir_api import consent

ACCOUNT = "urn:medledger:account"


@pytest.fixture(scope="module")
def fhir(tmp_path_factory: pytest.TempPathFactory) -> Iterator[FhirNode]:
    node = start_fhir_node(tmp_path_factory.mktemp("portal"))
    node.service.rpc = node.node.dispatcher  # as node/runtime.py wires it
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


def test_me_names_role_hospital_and_patient_refs(fhir: FhirNode, patient1: str) -> None:
    me = fhir.client("pat-1").get("/$me").json()
    assert me["address"] == "0x" + address_of("pat-1").hex()
    assert me["role"] == "patient" and me["hospital"] == 1 and me["hospitalName"] == "Hospital A"
    assert me["patientRefs"] == [patient1]
    assert me["serviceDelegate"] is True
    assert me["node"]["serviceAccount"] == "0x" + address_of("service-a").hex()
    assert me["node"]["medledger"] == "0x" + MedLedger().address.hex()
    doctor = fhir.client("doc-b").get("/$me").json()
    assert doctor["role"] == "doctor" and doctor["hospital"] == 2
    assert "patientRefs" not in doctor
    assert httpx.get(fhir.base + "/fhir/$me").status_code == 401


def test_records_are_metadata_for_the_patient_and_auditors(fhir: FhirNode, patient1: str) -> None:
    oid = fhir.client("doc-a").post("/Observation", json=observation(patient1)).json()["id"]
    fhir.wait_block()
    before = len(fhir.audit_events())
    listed = fhir.client("pat-1").get("/$records", params={"patient": patient1})
    assert listed.status_code == 200, listed.text
    records = {(r["resourceType"], r["id"]): r for r in listed.json()["records"]}
    assert ("Observation", oid) in records and ("Patient", patient1.split("/")[1]) in records
    entry = records[("Observation", oid)]
    assert entry["version"] == 1 and entry["deleted"] is False
    assert entry["recordId"] == "0x" + fhir.record_id("Observation", oid).hex()
    assert "valueQuantity" not in json.dumps(listed.json())  # nothing decrypted
    fhir.wait_block()
    assert len(fhir.audit_events()) == before  # so nothing logged as a read
    assert fhir.client("auditor-a").get("/$records", params={"patient": patient1}
                                        ).status_code == 200
    assert fhir.client("doc-b").get("/$records", params={"patient": patient1}).status_code == 403
    assert fhir.client("pat-2").get("/$records", params={"patient": patient1}).status_code == 403
    assert fhir.client("pat-1").get("/$records").status_code == 400
    assert fhir.client("pat-1").get("/$records", params={"patient": "Patient/nope"}
                                    ).status_code == 404


def test_grants_follow_the_chain(fhir: FhirNode, patient1: str) -> None:
    pat = fhir.client("pat-1")
    assert pat.get("/$grants", params={"patient": patient1}).json()["grants"] == []
    made = pat.post("/Consent", json=consent(patient1, address_of("doc-b")))
    assert made.status_code == 201, made.text
    grants = pat.get("/$grants", params={"patient": patient1}).json()["grants"]
    assert len(grants) == 1
    (grant,) = grants
    assert grant["grantee"] == {"kind": "account", "account": "0x" + address_of("doc-b").hex()}
    assert grant["scopeKind"] == "type" and grant["target"] == "all records"
    assert grant["purposes"] == ["TREAT"]
    assert grant["consent"] == f"Consent/{made.json()['id']}"
    assert grant["expiry"] > grant["granted"]
    # The doctor now finds the patient; the patient revokes through the Consent.
    found = fhir.client("doc-b").get("/Patient").json()
    assert patient1.split("/")[1] in {e["resource"]["id"] for e in found["entry"]}
    assert pat.delete(f"/{grant['consent']}").status_code == 204
    assert pat.get("/$grants", params={"patient": patient1}).json()["grants"] == []
    assert fhir.client("doc-b").get("/$grants", params={"patient": patient1}
                                    ).status_code == 403


def test_break_glass_by_account_reaches_the_review_queue(fhir: FhirNode, patient2: str) -> None:
    account = "0x" + address_of("pat-2").hex()
    request = {"resourceType": "Parameters", "parameter": [
        {"name": "patient", "valueString": account},
        {"name": "reason", "valueCode": "unable-to-consent"}]}
    opened = fhir.client("doc-b").post("/$break-glass", json=request)
    assert opened.status_code == 200, opened.text
    assert patient2.split("/")[1] in {e["resource"]["id"] for e in opened.json()["entry"]}
    unknown = {**request, "parameter": [{"name": "patient", "valueString": "0x" + "11" * 20},
                                        request["parameter"][1]]}
    assert fhir.client("doc-b").post("/$break-glass", json=unknown).status_code == 404

    fhir.wait_block()
    queue = fhir.client("auditor-a").get("/$break-glass-cases")
    assert queue.status_code == 200, queue.text
    body = queue.json()
    assert body["canReview"] is True
    case = next(c for c in body["cases"] if c["patient"] == account)
    assert case["status"] == "pending" and case["reason"] == "unable-to-consent"
    # On chain the hospital's FHIR service account opened it; this node knows who asked.
    assert case["clinician"] == "0x" + address_of("service-a").hex()
    assert case["requestedBy"] == "0x" + address_of("doc-b").hex()
    assert case["patientRef"] == patient2 and case["clinicianHospital"] == 1
    assert case["until"] > case["opened"]
    assert fhir.client("admin-a").get("/$break-glass-cases").json()["canReview"] is False
    assert fhir.client("doc-a").get("/$break-glass-cases").status_code == 403

    fhir.send_tx("auditor-a", fhir.medledger.encode("reviewBreakGlass", case["case"], True,
                                                    b"\x00" * 32))
    after = fhir.client("auditor-a").get("/$break-glass-cases").json()["cases"]
    reviewed = next(c for c in after if c["case"] == case["case"])
    assert reviewed["status"] == "justified"
    assert reviewed["reviewer"] == "0x" + address_of("auditor-a").hex()


def test_live_block_and_audit_events_are_opt_in(fhir: FhirNode, patient1: str) -> None:
    host = fhir.base.replace("http://", "")
    token = fhir.bearer("pat-1")
    with WsClient(f"{host}/fhir/$live?token={token}&include=block,audit") as ws:
        oid = fhir.client("doc-a").post("/Observation", json=observation(patient1)).json()["id"]
        seen: list[dict] = []
        while not ({"block", "audit", "version"} <= {m["event"] for m in seen}):
            seen.append(ws.receive_json(timeout=30))
    kinds = {m["event"]: m for m in seen}
    assert kinds["version"]["resource"] == f"Observation/{oid}"
    assert kinds["audit"] == {"event": "audit", "patient": patient1}
    block = kinds["block"]
    assert block["number"] >= 1 and block["hash"].startswith("0x") and block["transactions"] >= 1
    # Without include= only the original kinds arrive (the version event first).
    with WsClient(f"{host}/fhir/$live?token={token}") as ws:
        fhir.client("doc-a").post("/Observation", json=observation(patient1))
        assert ws.receive_json(timeout=30)["event"] == "version"


def test_rpc_proxy_allows_reads_and_raw_transactions_only(fhir: FhirNode) -> None:
    url = fhir.base + "/rpc"

    def call(method: str, *params: object) -> dict:
        return httpx.post(url, json={"jsonrpc": "2.0", "id": 7, "method": method,
                                     "params": list(params)}, timeout=30).json()

    assert call("eth_chainId")["result"] == hex(fhir.node.chain.chain_id)
    validators = call("qbft_getValidatorsByBlockNumber", "latest")["result"]
    assert len(validators) == 1
    refused = call("admin_peers")
    assert refused["error"]["code"] == -32601 and refused["id"] == 7
    assert call("qbft_proposeValidatorVote", "0x" + "22" * 20, True)["error"]["code"] == -32601
    batch = httpx.post(url, json=[{"jsonrpc": "2.0", "id": 1, "method": "eth_blockNumber"},
                                  {"jsonrpc": "2.0", "id": 2, "method": "txpool_content"}]).json()
    assert [b["id"] for b in batch if "error" in b] == [2]
    both = httpx.post(url, json=[{"jsonrpc": "2.0", "id": 1, "method": "eth_blockNumber"},
                                 {"jsonrpc": "2.0", "id": 2, "method": "eth_chainId"}]).json()
    assert {b["id"] for b in both if "result" in b} == {1, 2}
    plain = httpx.post(url, content=b'{"jsonrpc":"2.0","id":1,"method":"eth_chainId"}',
                       headers={"Content-Type": "text/plain"})
    assert plain.status_code == 415  # a cross-origin simple request cannot get through
    assert httpx.get(url).status_code == 405
    assert httpx.post(url, content=b"{nope", headers={"Content-Type": "application/json"}
                      ).json()["error"]["code"] == -32700


def test_static_ui_is_served_with_a_strict_policy(fhir: FhirNode) -> None:
    if not (DEFAULT_UI_DIR / "index.html").is_file():
        pytest.fail("web/dist is not built (node web/check-build.mjs --write)")
    root = httpx.get(fhir.base + "/")
    assert root.status_code == 308 and root.headers["location"] == "/ui/"
    index = httpx.get(fhir.base + "/ui/")
    assert index.status_code == 200
    assert index.headers["content-type"].startswith("text/html")
    assert "script-src 'self'" in index.headers["content-security-policy"]
    assert index.headers["cache-control"] == "no-cache"
    assert '<div id="root">' in index.text
    script = index.text.split('src="', 1)[1].split('"', 1)[0]
    assert script.startswith("/ui/assets/")
    asset = httpx.get(fhir.base + script)
    assert asset.status_code == 200 and "javascript" in asset.headers["content-type"]
    assert "immutable" in asset.headers["cache-control"]
    assert httpx.get(fhir.base + "/ui/patient/deep/link").text == index.text  # app shell
    assert httpx.get(fhir.base + "/ui/assets/missing.js").status_code == 404
    assert httpx.post(fhir.base + "/ui/").status_code == 405
    assert httpx.get(fhir.base + "/fhir/metadata").status_code == 200  # FHIR untouched


def test_static_paths_never_leave_the_ui_dir(tmp_path: Path) -> None:
    ui = tmp_path / "dist"
    (ui / "assets").mkdir(parents=True)
    (ui / "index.html").write_text("<html></html>")
    (ui / "assets" / "a.js").write_text("1")
    (tmp_path / "secret.txt").write_text("no")
    (ui / "link.txt").symlink_to(tmp_path / "secret.txt")
    assert resolve(ui, "/ui/") == (ui / "index.html").resolve()
    assert resolve(ui, "/ui/assets/a.js") == (ui / "assets" / "a.js").resolve()
    assert resolve(ui, "/ui/../secret.txt") is None
    assert resolve(ui, "/ui/%2e%2e/secret.txt") is None
    assert resolve(ui, "/ui/link.txt") is None
    assert resolve(ui, "/ui/assets/none.js") is None
    assert resolve(ui, "/ui/clinician") == ui.resolve() / "index.html"
    assert resolve(tmp_path / "absent", "/ui/") is None
