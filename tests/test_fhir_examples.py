"""HL7's own R4 example resources (a curated subset of npm hl7.fhir.r4.examples@4.0.1,
tests/fhir_fixtures/r4-examples.json: 232 resources of 23 types) through create → read →
search → update → history on a real node, checking round-trip equality."""

from __future__ import annotations

import copy
import json
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.fhir_fixtures.harness import FhirNode, address_of, start_fhir_node

EXAMPLES = Path(__file__).parent / "fhir_fixtures" / "r4-examples.json"
BATCH = 80


def load_examples() -> list[dict[str, Any]]:
    resources = json.loads(EXAMPLES.read_text())["resources"]
    for resource in resources:
        if resource["resourceType"] == "Patient":
            # Every Patient on this server stands for a registered on-chain patient account.
            resource.setdefault("identifier", []).append(
                {"system": "urn:medledger:account", "value": "0x" + address_of("pat-1").hex()})
    return resources


def comparable(resource: dict[str, Any]) -> dict[str, Any]:
    """The resource without what the server assigns (id, meta.versionId, meta.lastUpdated)."""
    out = copy.deepcopy(resource)
    out.pop("id", None)
    meta = out.pop("meta", {})
    meta.pop("versionId", None)
    meta.pop("lastUpdated", None)
    if meta:
        out["meta"] = meta
    return out


@pytest.fixture(scope="module")
def fhir(tmp_path_factory: pytest.TempPathFactory) -> Iterator[FhirNode]:
    node = start_fhir_node(tmp_path_factory.mktemp("fhir-examples"))
    try:
        yield node
    finally:
        node.stop()


@pytest.mark.slow
def test_examples_round_trip(fhir: FhirNode) -> None:
    examples = load_examples()
    assert len(examples) >= 200
    assert len(Counter(r["resourceType"] for r in examples)) >= 10
    client = fhir.client("doc-a", **{"X-Medledger-Patient": "0x" + address_of("pat-1").hex()})

    # create, in transaction Bundles (each Bundle registers its versions in one block)
    created: list[tuple[dict[str, Any], dict[str, Any]]] = []
    for start in range(0, len(examples), BATCH):
        chunk = examples[start:start + BATCH]
        bundle = {"resourceType": "Bundle", "type": "transaction", "entry": [
            {"resource": r, "request": {"method": "POST", "url": r["resourceType"]}}
            for r in chunk]}
        response = client.post("", json=bundle)
        assert response.status_code == 200, response.text[:500]
        entries = response.json()["entry"]
        assert [e["response"]["status"] for e in entries] == ["201 Created"] * len(chunk)
        created += [(original, e["resource"]) for original, e in zip(chunk, entries,
                                                                      strict=True)]

    # read: exactly what was sent, plus the server's id and meta
    for original, stored in created:
        response = client.get(f"/{stored['resourceType']}/{stored['id']}")
        assert response.status_code == 200
        assert comparable(response.json()) == comparable(original)
        assert response.json()["meta"]["versionId"] == "1"

    # search: every type returns exactly its created resources
    by_type: dict[str, set[str]] = {}
    for _, stored in created:
        by_type.setdefault(stored["resourceType"], set()).add(stored["id"])
    for rtype, ids in by_type.items():
        bundle = client.get(f"/{rtype}", params={"_count": "500"}).json()
        assert bundle["total"] == len(ids)
        assert {e["resource"]["id"] for e in bundle["entry"]} == ids
        originals = {s["id"]: comparable(o) for o, s in created if s["resourceType"] == rtype}
        for entry in bundle["entry"]:
            assert comparable(entry["resource"]) == originals[entry["resource"]["id"]]

    # update every resource (If-Match version 1), in transaction Bundles
    updated: dict[str, dict[str, Any]] = {}
    for start in range(0, len(created), BATCH):
        chunk = created[start:start + BATCH]
        entries = []
        for _, stored in chunk:
            changed = {**stored, "implicitRules": "http://example.org/medledger-rules"}
            updated[stored["id"]] = changed
            entries.append({"resource": changed, "request": {
                "method": "PUT", "url": f"{stored['resourceType']}/{stored['id']}",
                "ifMatch": 'W/"1"'}})
        response = client.post("", json={"resourceType": "Bundle", "type": "transaction",
                                          "entry": entries})
        assert response.status_code == 200, response.text[:500]
        assert all(e["response"]["status"] == "200 OK" for e in response.json()["entry"])

    # history: version 2 is the update, version 1 the original
    for original, stored in created:
        history = client.get(f"/{stored['resourceType']}/{stored['id']}/_history").json()
        assert history["total"] == 2
        newest, oldest = (e["resource"] for e in history["entry"])
        assert newest["meta"]["versionId"] == "2" and oldest["meta"]["versionId"] == "1"
        assert comparable(newest) == comparable(updated[stored["id"]])
        assert comparable(oldest) == comparable(original)
