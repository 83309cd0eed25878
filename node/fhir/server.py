"""serve_fhir: the FHIR API on hypercorn's trio worker, next to the node's JSON-RPC."""

from __future__ import annotations

from typing import Any

import structlog
import trio

from node.asgi_serve import listen_socket, serve_asgi
from node.fhir.app import FhirApp
from node.fhir.service import FhirService

log = structlog.get_logger("medledger.fhir")
SEND_TIMEOUT_SECONDS = 30.0


async def serve_fhir(
    service: FhirService, *, task_status: Any = trio.TASK_STATUS_IGNORED
) -> None:
    """Serve until cancelled; `task_status.started(port)` reports the bound port (port 0).

    Checks first that the service account can author records, and copies the chain's audit
    events into the local index. TLS when the config names a certificate and key."""
    await service.start()
    await service.sync_audit()
    config = service.config
    sock = listen_socket(config.host, config.port, purpose="FHIR API",
                         send_timeout=SEND_TIMEOUT_SECONDS)
    port = sock.getsockname()[1]
    log.info("fhir.listening", host=config.host, port=port, tls=config.tls,
             service_account="0x" + service.service_address.hex(), hospital=service.hospital)
    try:
        await serve_asgi(
            FhirApp(service), sock, task_status=task_status, graceful_timeout=3.0,
            certfile=str(config.certfile) if config.certfile is not None else None,
            keyfile=str(config.keyfile) if config.keyfile is not None else None,
        )
    finally:
        service.close()
