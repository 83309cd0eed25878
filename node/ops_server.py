"""The operations listener: Prometheus `/metrics` and `/health/liveness|readiness` on loopback.

A small ASGI app served by hypercorn's trio worker on its own port, apart from JSON-RPC, so that
a firewall rule or a compose healthcheck can reach it without exposing the RPC, and metrics stay
off unless the operator turns them on. GET only; every other path is 404.
"""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

import structlog
import trio
from prometheus_client import CONTENT_TYPE_LATEST

from node.asgi_serve import listen_socket, serve_asgi
from node.health import HealthPolicy, readiness
from node.metrics import NodeMetrics

Scope = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[MutableMapping[str, Any]]]
Send = Callable[[MutableMapping[str, Any]], Awaitable[None]]

log = structlog.get_logger("medledger.ops")

METRICS_PATH = "/metrics"
LIVENESS_PATH = "/health/liveness"
READINESS_PATH = "/health/readiness"


class OpsApp:
    """ASGI 3 app answering metrics scrapes and health probes for one node."""

    def __init__(
        self, metrics: NodeMetrics, policy: HealthPolicy | None = None, *,
        serve_metrics: bool = True,
    ) -> None:
        self.metrics = metrics
        self.policy = policy if policy is not None else HealthPolicy()
        self.serve_metrics = serve_metrics

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "lifespan":
            await _lifespan(receive, send)
            return
        if scope["type"] != "http":
            if scope["type"] == "websocket":
                await send({"type": "websocket.close", "code": 1008})
            return
        path = scope.get("path", "")
        if scope.get("method") not in ("GET", "HEAD"):
            await _respond(send, 405, b"method not allowed\n", "text/plain", [(b"allow", b"GET")])
        elif path == METRICS_PATH and self.serve_metrics:
            await self.metrics.refresh()
            await _respond(send, 200, self.metrics.render(), CONTENT_TYPE_LATEST)
        elif path == LIVENESS_PATH:
            await self._liveness(send)
        elif path == READINESS_PATH:
            verdict = readiness(await self.metrics.read(), self.policy)
            await _respond_json(send, 200 if verdict.ready else 503, verdict.to_json())
        else:
            await _respond(send, 404, b"not found\n", "text/plain")

    async def _liveness(self, send: Send) -> None:
        node = self.metrics.node
        if node is not None:
            with trio.move_on_after(self.policy.liveness_timeout) as scope:
                await node.worker.run(lambda: None)
            if scope.cancelled_caught:
                message = f"chain worker blocked for over {self.policy.liveness_timeout} s"
                await _respond_json(send, 503, {"status": "dead", "reason": message})
                return
        await _respond_json(send, 200, {"status": "alive"})


async def _lifespan(receive: Receive, send: Send) -> None:
    while True:
        message = await receive()
        if message["type"] == "lifespan.startup":
            await send({"type": "lifespan.startup.complete"})
        elif message["type"] == "lifespan.shutdown":
            await send({"type": "lifespan.shutdown.complete"})
            return


async def _respond_json(send: Send, status: int, body: dict[str, Any]) -> None:
    await _respond(send, status, (json.dumps(body) + "\n").encode(), "application/json")


async def _respond(
    send: Send, status: int, body: bytes, content_type: str,
    extra: list[tuple[bytes, bytes]] | None = None,
) -> None:
    headers = [(b"content-type", content_type.encode()),
               (b"content-length", str(len(body)).encode()),
               (b"cache-control", b"no-store"), *(extra or [])]
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})


async def serve_ops(
    app: OpsApp, host: str = "127.0.0.1", port: int = 9545, *,
    task_status: trio.TaskStatus[int] = trio.TASK_STATUS_IGNORED,
) -> None:
    """Serve `app` until cancelled; `task_status.started(port)` gives the bound port (port 0)."""
    sock = listen_socket(host, port, purpose="metrics/health")
    log.info("ops.listening", host=host, port=sock.getsockname()[1], metrics=app.serve_metrics)
    await serve_asgi(app, sock, task_status=task_status)
