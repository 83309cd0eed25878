"""`POST /rpc` on the FHIR port: the node's JSON-RPC for the web UI, same origin, read-mostly.

The browser signs its own transactions (a patient's `setDelegate`, an auditor's
`reviewBreakGlass`, an admin's `registerStaff`) with ethers and sends them raw; it reads
blocks, validators and logs. Only the methods below pass (no admin_, no votes, no
subscriptions: live updates come over `/fhir/$live`). Like the RPC port, it takes JSON
content types only, so another origin's page cannot post here without a CORS preflight,
which this endpoint never grants.
"""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any

from node.fhir.http import Scope, Send
from node.rpc.dispatch import CallContext

if TYPE_CHECKING:
    from node.rpc.dispatch import Dispatcher

ALLOWED_METHODS = frozenset({
    "eth_chainId", "net_version", "eth_blockNumber", "eth_getBlockByNumber",
    "eth_getBlockByHash", "eth_getTransactionCount", "eth_getBalance", "eth_gasPrice",
    "eth_maxPriorityFeePerGas", "eth_feeHistory", "eth_estimateGas", "eth_call",
    "eth_sendRawTransaction", "eth_getTransactionReceipt", "eth_getTransactionByHash",
    "eth_getLogs", "eth_getCode", "qbft_getValidatorsByBlockNumber", "qbft_getSignerMetrics",
})
JSON_TYPES = frozenset({"application/json", "application/json-rpc"})
MAX_BODY_BYTES = 1024 * 1024
MAX_BATCH = 100


def _error(request_id: Any, code: int, message: str) -> dict[str, Any]:
    return {"jsonrpc": "2.0", "id": request_id, "error": {"code": code, "message": message}}


def refused(body: bytes) -> list[dict[str, Any]] | dict[str, Any] | None:
    """The error answer when the request names a method outside ALLOWED_METHODS (or is not a
    JSON-RPC object/batch); None when it may go to the dispatcher unchanged."""
    try:
        parsed = json.loads(body)
    except (ValueError, UnicodeDecodeError):
        return _error(None, -32700, "parse error")
    batch = parsed if isinstance(parsed, list) else [parsed]
    if not batch or len(batch) > MAX_BATCH:
        return _error(None, -32600, f"a batch holds 1 to {MAX_BATCH} requests")
    errors = []
    for item in batch:
        if not isinstance(item, dict):
            return _error(None, -32600, "invalid request")
        method = item.get("method")
        if method not in ALLOWED_METHODS:
            errors.append(_error(item.get("id"), -32601,
                                 f"method {str(method)[:64]!r} is not available on /rpc"))
    if not errors:
        return None
    return errors if isinstance(parsed, list) else errors[0]


async def serve_rpc_proxy(dispatcher: Dispatcher | None, scope: Scope, body: bytes,
                          send: Send) -> None:
    if scope["method"] != "POST":
        await _send(send, 405, b'{"error":"POST a JSON-RPC request"}', [(b"allow", b"POST")])
        return
    headers = {k.decode("latin-1").lower(): v.decode("latin-1")
               for k, v in scope.get("headers", [])}
    content_type = headers.get("content-type", "").split(";")[0].strip().lower()
    if content_type not in JSON_TYPES:
        await _send(send, 415, b'{"error":"Content-Type must be application/json"}')
        return
    if dispatcher is None:
        await _send(send, 404, b'{"error":"this node attached no JSON-RPC to the FHIR port"}')
        return
    refusal = refused(body)
    if refusal is not None:
        await _send(send, 200, json.dumps(refusal).encode())
        return
    answer = await dispatcher.handle_bytes(body, CallContext("http"))
    await _send(send, 200, answer or b"")


async def _send(send: Send, status: int, body: bytes,
                extra: list[tuple[bytes, bytes]] | None = None) -> None:
    await send({"type": "http.response.start", "status": status,
                "headers": [(b"content-type", b"application/json"),
                            (b"cache-control", b"no-store"),
                            (b"content-length", str(len(body)).encode()), *(extra or [])]})
    await send({"type": "http.response.body", "body": body})
