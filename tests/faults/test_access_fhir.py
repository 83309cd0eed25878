"""Access security of the FHIR API on a real node: loopback by default, per-client rate
limits (HTTP 429 OperationOutcome with Retry-After), read-only (auditor) nodes refuse every
write (resources, bundles, break-glass, DICOM) but still serve reads, and body size limits."""

from __future__ import annotations

import socket
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import trio

from node.asgi_serve import listen_socket, serve_asgi
from node.fhir import FhirConfig
from node.fhir.app import FhirApp
from node.ratelimit import DEFAULT_FHIR_LIMIT, ClientRateLimiter, RateLimit
from node.records.keys import generate_private_key
from node.runtime import Node, NodeConfig
from tests.fhir_fixtures.harness import (
    FhirNode,
    address_of,
    key_of,
    observation,
    patient_resource,
    start_fhir_node,
)
from tests.helpers import make_genesis

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def fhir(tmp_path_factory: pytest.TempPathFactory) -> Iterator[FhirNode]:
    node = start_fhir_node(tmp_path_factory.mktemp("fhir-access"))
    try:
        yield node
    finally:
        node.stop()


@pytest.fixture(scope="module")
def patient(fhir: FhirNode) -> str:
    response = fhir.client("doc-a").post("/Patient", json=patient_resource("pat-1", "Acc"))
    assert response.status_code == 201, response.text
    return f"Patient/{response.json()['id']}"


def serve_app(fhir: FhirNode, app: FhirApp) -> str:
    """Serve another FhirApp over the same service on a free loopback port; its base URL."""

    async def start() -> int:
        sock = listen_socket("127.0.0.1", 0, purpose="FHIR test")
        port = int(sock.getsockname()[1])
        trio.lowlevel.spawn_system_task(serve_asgi, app, sock)  # ends with the node's loop
        return port

    base = f"http://127.0.0.1:{fhir.run(start)}"
    deadline = time.monotonic() + 30
    while True:
        try:
            httpx.get(base + "/openapi.json", timeout=5)
            return base
        except httpx.TransportError:
            assert time.monotonic() < deadline, "test FHIR listener did not start"
            time.sleep(0.05)


@pytest.fixture(scope="module")
def auditor_base(fhir: FhirNode) -> str:
    """The same FHIR service as a read-only (auditor) node serves it."""
    app = FhirApp(fhir.service)
    app.read_only = True
    return serve_app(fhir, app)


def bearer(fhir: FhirNode, actor: str = "doc-a") -> dict[str, str]:
    return {"Authorization": f"Bearer {fhir.bearer(actor)}",
            "Content-Type": "application/fhir+json"}


def issue(response: httpx.Response) -> dict[str, Any]:
    body = response.json()
    assert body["resourceType"] == "OperationOutcome", body
    return dict(body["issue"][0])


def test_defaults() -> None:
    config = FhirConfig(datadir=Path("/x"))
    assert config.host == "127.0.0.1" and config.read_only is False
    assert config.rate_limit == DEFAULT_FHIR_LIMIT and config.rate_limit.enabled
    assert not config.rate_limit.limit_loopback


def test_fhir_listens_on_loopback(fhir: FhirNode) -> None:
    port = int(fhir.base.rsplit(":", 1)[1])
    probe = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    try:
        probe.connect(("10.255.255.255", 1))
        other = probe.getsockname()[0]
    except OSError:
        other = None
    finally:
        probe.close()
    if other is not None and not other.startswith("127."):
        with pytest.raises(OSError), socket.create_connection((other, port), timeout=3):
            pass


def test_read_only_node_refuses_every_write(fhir: FhirNode, patient: str,
                                            auditor_base: str) -> None:
    headers = bearer(fhir)
    writes = [
        ("POST", "/fhir/Observation", observation(patient)),
        ("PUT", f"/fhir/{patient}", patient_resource("pat-1", "Changed")),
        ("DELETE", f"/fhir/{patient}", None),
        ("POST", "/fhir", {"resourceType": "Bundle", "type": "batch", "entry": []}),
        ("POST", "/fhir/$break-glass", {"resourceType": "Parameters", "parameter": []}),
        ("POST", "/fhir/Consent", {"resourceType": "Consent", "status": "active"}),
    ]
    for method, path, body in writes:
        response = httpx.request(method, auditor_base + path, json=body, headers=headers)
        assert response.status_code == 405, (method, path, response.text)
        assert "read-only" in issue(response)["diagnostics"]
    dicom = httpx.post(auditor_base + "/dicom", content=b"\0" * 200, headers={
        **headers, "Content-Type": "application/dicom",
        "X-Medledger-Patient": "0x" + address_of("pat-1").hex()})
    assert dicom.status_code == 405 and "read-only" in issue(dicom)["diagnostics"]
    # Reads, logins and the capability statement still work.
    assert httpx.get(auditor_base + f"/fhir/{patient}", headers=headers).status_code == 200
    assert httpx.get(auditor_base + "/fhir/metadata").status_code == 200
    assert httpx.get(auditor_base + "/openapi.json").status_code == 200
    # The patient was not changed by the refused update.
    read = fhir.client("doc-a").get(f"/{patient}").json()
    assert read["name"][0]["family"] == "Acc"


def test_rate_limit_per_client(fhir: FhirNode, patient: str) -> None:
    app = FhirApp(fhir.service)
    base = serve_app(fhir, app)
    app.limiter = ClientRateLimiter(RateLimit(rate=1.0, burst=4, limit_loopback=True))
    statuses = []
    with httpx.Client(timeout=30) as client:
        for _ in range(25):
            response = client.get(base + "/fhir/metadata")
            statuses.append(response.status_code)
            if response.status_code == 429:
                assert issue(response)["code"] == "throttled"
                assert "rate limit exceeded" in issue(response)["diagnostics"]
                assert int(response.headers["retry-after"]) >= 1
    assert statuses[:4] == [200] * 4 and 429 in statuses
    # The node's own listener (loopback exempt by default) is unaffected.
    assert httpx.get(fhir.base + "/fhir/metadata").status_code == 200


def test_body_size_limit(fhir: FhirNode) -> None:
    limit = fhir.service.config.max_body_bytes
    body = b'{"resourceType":"Patient","x":"' + b"a" * (limit + 10) + b'"}'
    response = httpx.post(fhir.base + "/fhir/Patient", content=body, headers=bearer(fhir),
                          timeout=120)
    assert response.status_code == 413
    assert issue(response)["code"] == "too-costly"


def test_read_only_node_config_reaches_the_fhir_api(tmp_path: Path) -> None:
    """NodeConfig(read_only=True) makes the node's FHIR service read-only, and a read-only
    node with a validator key is refused."""
    config = FhirConfig(datadir=tmp_path / "fhir", port=0)
    with pytest.raises(ValueError, match="read-only"):
        Node(NodeConfig(datadir=tmp_path / "a", genesis=make_genesis(),
                        validator_key=key_of("x"), read_only=True, rpc_port=0, ws_port=None))
    node = Node(NodeConfig(datadir=tmp_path / "b", genesis=make_genesis(), validator_key=None,
                           read_only=True, rpc_port=0, ws_port=None, fhir=config,
                           fhir_key=key_of("service-a"), fhir_record_key=generate_private_key()))
    try:
        assert node.fhir is not None and node.fhir.config.read_only
        assert FhirApp(node.fhir).read_only
        assert node.driver is None
    finally:
        node.fhir.close()
        node.chain.close()

