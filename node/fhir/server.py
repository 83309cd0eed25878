"""serve_fhir: the FHIR API on hypercorn's trio worker, next to the node's JSON-RPC."""

from __future__ import annotations

import logging
from typing import Any

import structlog
import trio
from hypercorn.config import Config as HypercornConfig
from hypercorn.trio import serve as hypercorn_serve

from node.asgi_serve import listen_socket
from node.fhir.app import FhirApp
from node.fhir.service import FhirService

log = structlog.get_logger("medledger.fhir")
SEND_TIMEOUT_SECONDS = 30.0


class _PortStatus:
    """Turns hypercorn's started(binds) into started(port)."""

    def __init__(self, inner: Any, port: int) -> None:
        self._inner = inner
        self._port = port

    def started(self, value: Any = None) -> None:
        self._inner.started(self._port)


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
    hyper = HypercornConfig()
    hyper.bind = [f"fd://{sock.detach()}"]  # hypercorn now owns (and closes) the socket
    if config.certfile is not None and config.keyfile is not None:
        hyper.certfile = str(config.certfile)
        hyper.keyfile = str(config.keyfile)
    hyper.graceful_timeout = 3.0
    hyper.accesslog = None
    hyper.errorlog = logging.getLogger("hypercorn.error")
    hyper.include_server_header = False
    log.info("fhir.listening", host=config.host, port=port, tls=config.tls,
             service_account="0x" + service.service_address.hex(), hospital=service.hospital)
    try:
        await hypercorn_serve(
            FhirApp(service),  # type: ignore[arg-type]
            hyper,
            task_status=_PortStatus(task_status, port),  # type: ignore[arg-type]
            mode="asgi",
        )
    finally:
        service.close()
