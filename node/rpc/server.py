"""JSON-RPC over HTTP and WebSocket on one port: a plain ASGI 3 app served by hypercorn's
trio worker, so the RPC server shares the node's single trio loop with py-libp2p.

HTTP: POST a JSON-RPC request or batch, get the JSON answer. Bodies are read only up to
`max_body_bytes` (413 beyond), only JSON content types are accepted (415 otherwise, as
geth does: a browser page cannot send those cross-origin without a CORS preflight).
WebSocket: every text or binary frame is one request or batch; each request runs in its
own task (bounded per connection) so a slow call does not hold up the connection, and
eth_subscription notifications are interleaved with responses.
"""

from __future__ import annotations

import json
import math
from collections.abc import Awaitable, Callable, MutableMapping
from dataclasses import dataclass, field
from typing import Any

import structlog
import trio

from node.asgi_serve import listen_socket, serve_asgi
from node.ratelimit import ClientRateLimiter, RateLimit, client_host
from node.rpc.dispatch import CallContext, Dispatcher
from node.rpc.errors import INVALID_REQUEST, LIMIT_EXCEEDED, RpcError
from node.rpc.subscriptions import SubscriptionHub, WsConnection

Scope = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[MutableMapping[str, Any]]]
Send = Callable[[MutableMapping[str, Any]], Awaitable[None]]

JSON_CONTENT_TYPES = frozenset(
    {"application/json", "application/json-rpc", "application/jsonrequest"}
)
CLOSE_POLICY_VIOLATION = 1008
CLOSE_TRY_AGAIN_LATER = 1013
_LIMITED_PARSE_BYTES = 64 * 1024  # a rate-limited message is parsed (for its ids) up to this
CLOSE_INTERNAL_ERROR = 1011
_JSON_HEADER = (b"content-type", b"application/json")
_DISCARD_MIN_BYTES = 1024 * 1024  # of an oversize body, up to this (or max_body_bytes) and ...
_DISCARD_SECONDS = 5.0  # ... for this long is read and dropped, so the client sees its 413


@dataclass(frozen=True)
class RpcServerConfig:
    """Where and how the JSON-RPC server listens; the defaults match geth's HTTP/WS limits."""

    host: str = "127.0.0.1"
    port: int = 8545
    max_body_bytes: int = 5 * 1024 * 1024
    max_ws_message_bytes: int = 5 * 1024 * 1024
    cors_origins: tuple[str, ...] = ()  # browser origins allowed (HTTP CORS and WS Origin); "*"
    ws_queue_size: int = 10_000  # outbound messages per WS connection before it is dropped
    ws_max_concurrent_requests: int = 32  # in-flight requests per WS connection
    shutdown_grace_seconds: float = 3.0  # open connections get this long to finish on shutdown
    send_timeout_seconds: float = 30.0  # a peer that accepts no data this long is disconnected
    # Per client IP: HTTP requests and WebSocket messages (a batch counts once); off by default
    # here, the node sets its configured limit (node/config.py: rpc.rate_limit).
    rate_limit: RateLimit = field(default_factory=RateLimit)

    def __post_init__(self) -> None:
        if not 0 <= self.port <= 65535:
            raise ValueError(f"port must be between 0 and 65535, got {self.port}")
        for name in ("max_body_bytes", "max_ws_message_bytes", "ws_queue_size",
                     "ws_max_concurrent_requests"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be positive")
        if self.shutdown_grace_seconds < 0:
            raise ValueError("shutdown_grace_seconds must not be negative")
        if self.send_timeout_seconds <= 0:
            raise ValueError("send_timeout_seconds must be positive")
        if isinstance(self.cors_origins, str):
            raise ValueError("cors_origins must be a tuple of origins, not a string")


def _error_body(message: str, code: int = INVALID_REQUEST) -> bytes:
    error = RpcError(code, message).to_json()
    return _dumps({"jsonrpc": "2.0", "id": None, "error": error})


def _dumps(value: Any) -> bytes:
    return json.dumps(value, separators=(",", ":")).encode()


def _header(scope: Scope, name: bytes) -> str | None:
    for key, value in scope.get("headers", ()):
        if key.lower() == name:
            return bytes(value).decode("latin-1")
    return None


def _remote(scope: Scope) -> str:
    client = scope.get("client")
    return f"{client[0]}:{client[1]}" if client else ""


class _TooLarge(Exception):
    pass


class _Disconnected(Exception):
    pass


class RpcApp:
    """The ASGI 3 application: JSON-RPC over HTTP POST and WebSocket, on any path."""

    def __init__(
        self,
        dispatcher: Dispatcher,
        hub: SubscriptionHub,
        config: RpcServerConfig,
        log: Any = None,
        limiter: ClientRateLimiter | None = None,
    ) -> None:
        """`limiter`: share one per-client budget between listeners (HTTP and WS ports);
        default: this app's own, from `config.rate_limit`."""
        self.dispatcher = dispatcher
        self.hub = hub
        self.config = config
        self.log = log if log is not None else structlog.get_logger("rpc")
        self._any_origin = "*" in config.cors_origins
        self._origins = frozenset(_normalize_origin(o) for o in config.cors_origins if o != "*")
        self.limiter = limiter if limiter is not None else ClientRateLimiter(config.rate_limit)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        kind = scope["type"]
        if kind == "http":
            await self._http(scope, receive, send)
        elif kind == "websocket":
            await self._websocket(scope, receive, send)
        elif kind == "lifespan":
            await self._lifespan(receive, send)

    # -- lifespan ---------------------------------------------------------------------------

    @staticmethod
    async def _lifespan(receive: Receive, send: Send) -> None:
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                await send({"type": "lifespan.shutdown.complete"})
                return

    # -- CORS -------------------------------------------------------------------------------

    def _allowed_origin(self, origin: str | None) -> str | None:
        """The Access-Control-Allow-Origin value for this request's Origin, or None."""
        if origin is None:
            return None
        if self._any_origin:
            return "*"
        return origin if _normalize_origin(origin) in self._origins else None

    def _cors_headers(self, origin: str | None) -> list[tuple[bytes, bytes]]:
        allowed = self._allowed_origin(origin)
        if allowed is None:
            return []
        headers = [(b"access-control-allow-origin", allowed.encode("latin-1"))]
        if allowed != "*":
            headers.append((b"vary", b"Origin"))
        return headers

    # -- HTTP -------------------------------------------------------------------------------

    async def _http(self, scope: Scope, receive: Receive, send: Send) -> None:
        cors = self._cors_headers(_header(scope, b"origin"))
        method = scope.get("method", "")
        if method == "OPTIONS":
            headers = [(b"allow", b"POST, OPTIONS")]
            if cors:
                headers += cors + [
                    (b"access-control-allow-methods", b"POST, OPTIONS"),
                    (b"access-control-allow-headers", b"Content-Type"),
                    (b"access-control-max-age", b"600"),
                ]
            await send({"type": "http.response.start", "status": 204, "headers": headers})
            await send({"type": "http.response.body", "body": b""})
            return
        limit = self.config.max_body_bytes
        discard = max(limit, _DISCARD_MIN_BYTES)
        refusal: tuple[int, str, list[tuple[bytes, bytes]]] | None = None
        content_type = (_header(scope, b"content-type") or "").split(";", 1)[0].strip().lower()
        wait = self.limiter.check(client_host(scope))
        if wait is not None:
            self.log.info("rpc.rate_limited", remote=_remote(scope))
            retry = str(max(1, math.ceil(wait))).encode()
            refusal = (429, self.limiter.message(), [(b"retry-after", retry)])
        elif method != "POST":
            message = "method not allowed: send JSON-RPC requests with POST"
            refusal = (405, message, [(b"allow", b"POST, OPTIONS")])
        elif content_type not in JSON_CONTENT_TYPES:
            message = "invalid content type, only application/json is supported"
            refusal = (415, message, [])
        if refusal is not None:
            status, message, extra = refusal
            try:
                if not await _discard_body(receive, discard):
                    extra.append((b"connection", b"close"))
            except _Disconnected:
                return
            code = LIMIT_EXCEEDED if status == 429 else INVALID_REQUEST
            await _respond(send, status, _error_body(message, code), cors + extra)
            return

        declared = _header(scope, b"content-length")
        declared = declared.strip() if declared is not None else None
        # str.isdigit() also accepts digits like '²' that int() refuses.
        numeric = declared is not None and declared.isascii() and declared.isdigit()
        length = int(declared) if numeric else None  # type: ignore[arg-type]
        try:
            if length is not None and length > limit:
                if length <= limit + discard:
                    await _discard_body(receive, discard)
                raise _TooLarge
            body = await _read_body(receive, limit, discard)
        except _TooLarge:
            # The connection cannot be reused: the rest of the body was not read.
            await _respond(
                send, 413, _error_body(f"request body too large (max {limit} bytes)"),
                [*cors, (b"connection", b"close")],
            )
            return
        except _Disconnected:
            return

        answer = await self.dispatcher.handle_bytes(body, CallContext(transport="http"))
        if answer is None:  # notifications only: nothing to say
            await send({"type": "http.response.start", "status": 204, "headers": cors})
            await send({"type": "http.response.body", "body": b""})
            return
        await _respond(send, 200, answer, cors)

    # -- WebSocket --------------------------------------------------------------------------

    async def _websocket(self, scope: Scope, receive: Receive, send: Send) -> None:
        first = await receive()
        if first["type"] != "websocket.connect":
            return
        origin = _header(scope, b"origin")
        if origin is not None and self._allowed_origin(origin) is None:
            # Browsers do not apply CORS to WebSocket: the server must refuse foreign pages.
            self.log.info("rpc.ws_origin_refused", origin=origin, remote=_remote(scope))
            await send({"type": "websocket.close", "code": CLOSE_POLICY_VIOLATION})
            return
        if self.limiter.check(client_host(scope)) is not None:
            self.log.info("rpc.rate_limited", remote=_remote(scope))
            await send({"type": "websocket.close", "code": CLOSE_TRY_AGAIN_LATER,
                        "reason": self.limiter.message()})
            return
        await send({"type": "websocket.accept"})

        connection = WsConnection(
            max_queue=self.config.ws_queue_size, remote=_remote(scope), log=self.log
        )
        try:
            async with trio.open_nursery() as nursery:
                connection.attach(nursery.cancel_scope)
                nursery.start_soon(self._ws_writer, connection, send)
                await self._ws_reader(connection, receive, nursery, client_host(scope))
                nursery.cancel_scope.cancel()  # client gone: stop the writer and open requests
        finally:
            self.hub.drop_connection(connection)
        if connection.close_code is None:
            connection.mark_disconnected()
            return
        await send(
            {
                "type": "websocket.close",
                "code": connection.close_code,
                "reason": connection.close_reason,
            }
        )

    async def _ws_reader(
        self, connection: WsConnection, receive: Receive, nursery: trio.Nursery,
        client: str | None = None,
    ) -> None:
        limiter = trio.Semaphore(self.config.ws_max_concurrent_requests)
        limit = self.config.max_ws_message_bytes
        while True:
            message = await receive()
            if message["type"] == "websocket.disconnect":
                return
            if message["type"] != "websocket.receive":
                continue
            text = message.get("text")
            if text is not None:
                data = text.encode("utf-8", "surrogatepass")  # invalid: a parse error, no crash
            else:
                data = bytes(message.get("bytes") or b"")
            if len(data) > limit:
                await connection.send(
                    _error_body(f"message too large (max {limit} bytes)").decode()
                )
                continue
            if self.limiter.check(client) is not None:
                await connection.send(_limited_answer(data, self.limiter.message()))
                continue
            await limiter.acquire()  # backpressure: stop reading while too many are in flight
            nursery.start_soon(self._ws_request, connection, data, limiter)

    async def _ws_request(
        self, connection: WsConnection, data: bytes, limiter: trio.Semaphore
    ) -> None:
        try:
            answer = await self.dispatcher.handle_bytes(
                data, CallContext(transport="ws", connection=connection)
            )
            if answer is not None:
                await connection.send(answer.decode())
        except Exception:
            self.log.error("rpc.ws_request_failed", connection=connection.id, exc_info=True)
            connection.close(CLOSE_INTERNAL_ERROR, "internal error")
        finally:
            limiter.release()

    @staticmethod
    async def _ws_writer(connection: WsConnection, send: Send) -> None:
        async with connection.outbound() as outbound:
            async for text in outbound:
                await send({"type": "websocket.send", "text": text})


def _limited_answer(data: bytes, message: str) -> str:
    """-32005 for every request in a rate-limited WebSocket message, under the request's own
    id so the client's pending call fails instead of waiting; id null when unparsable."""
    try:
        request = json.loads(data) if len(data) <= _LIMITED_PARSE_BYTES else None
    except ValueError:
        request = None
    error = RpcError(LIMIT_EXCEEDED, message).to_json()
    items = request if isinstance(request, list) else [request]
    answers = []
    for item in items:
        request_id = item.get("id") if isinstance(item, dict) else None
        if not isinstance(request_id, str | int | float) or isinstance(request_id, bool):
            request_id = None
        answers.append({"jsonrpc": "2.0", "id": request_id, "error": error})
    payload = answers if isinstance(request, list) and answers else answers[0]
    return json.dumps(payload, separators=(",", ":"), allow_nan=False)


def _normalize_origin(origin: str) -> str:
    return origin.strip().rstrip("/").lower()


async def _respond(
    send: Send, status: int, body: bytes, headers: list[tuple[bytes, bytes]]
) -> None:
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [_JSON_HEADER, (b"content-length", str(len(body)).encode()), *headers],
        }
    )
    await send({"type": "http.response.body", "body": body})


async def _read_body(receive: Receive, limit: int, discard: int) -> bytes:
    """The request body; past `limit` bytes nothing more is kept and `_TooLarge` is raised once
    up to `discard` further bytes were read and dropped (see `_discard_body`)."""
    chunks: list[bytes] = []
    size = 0
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            raise _Disconnected
        chunk = bytes(message.get("body", b""))
        size += len(chunk)
        more = message.get("more_body", False)
        if size > limit:
            if more:
                await _discard_body(receive, discard)
            raise _TooLarge
        chunks.append(chunk)
        if not more:
            return b"".join(chunks)


async def _discard_body(receive: Receive, max_bytes: int) -> bool:
    """Read and drop (never keep) a bounded rest of an oversize body before answering 413.
    Closing a socket with unread data makes the kernel reset the connection, and a client
    still sending its body would then never see the answer. Past `max_bytes` or
    `_DISCARD_SECONDS` the answer goes out anyway and the connection is closed. True when the
    whole body was read."""
    discarded = 0
    with trio.move_on_after(_DISCARD_SECONDS):
        while discarded <= max_bytes:
            message = await receive()
            if message["type"] == "http.disconnect":
                raise _Disconnected
            if not message.get("more_body", False):
                return True
            discarded += len(message.get("body", b""))
    return False


async def serve_rpc(
    app: RpcApp,
    config: RpcServerConfig,
    *,
    task_status: trio.TaskStatus[int] = trio.TASK_STATUS_IGNORED,
    shutdown: trio.Event | None = None,
) -> None:
    """Serve `app` until cancelled or `shutdown` is set; `task_status.started(port)` reports
    the port actually bound (useful with port 0). Use with `await nursery.start(...)`."""
    sock = listen_socket(config.host, config.port, purpose="JSON-RPC",
                         send_timeout=config.send_timeout_seconds)
    app.hub.bind_loop()
    app.log.info("rpc.listening", host=config.host, port=sock.getsockname()[1])
    await serve_asgi(
        app, sock, task_status=task_status, graceful_timeout=config.shutdown_grace_seconds,
        websocket_max_message_size=config.max_ws_message_bytes, shutdown=shutdown,
    )
