"""JSON-RPC 2.0 request processing, independent of the transport that carried the bytes.

HTTP and WebSocket both hand raw request bytes to `Dispatcher.handle_bytes` and send
back whatever it returns, so both transports answer malformed input, batches and
handler failures identically. Handler failures that are not `RpcError` are logged
with their traceback and answered with a generic -32603: internals never leak.
"""

from __future__ import annotations

import itertools
import json
import math
import re
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import structlog
import trio

from node.rpc.errors import (
    INTERNAL_ERROR,
    INVALID_PARAMS,
    INVALID_REQUEST,
    METHOD_NOT_FOUND,
    PARSE_ERROR,
    RpcError,
)

if TYPE_CHECKING:
    from node.rpc.subscriptions import WsConnection

Handler = Callable[[list[Any], "CallContext"], Awaitable[Any]]
"""An RPC method: positional params (a dict instead only for handlers registered with
`named_params=True` when the caller sends an object) and the call context."""

MAX_JSON_DEPTH = 1000
"""Deeper requests are refused before parsing: py-evm and py_ecc raise Python's recursion limit
to 100000, and at that depth the C JSON parser overflows the thread's stack and kills the
process (a 200 kB body of brackets would do). Real JSON-RPC requests nest a few levels."""

_MAX_ECHOED_METHOD = 128
# A JSON string, or an unterminated one up to the end: matching at every quote keeps the scan
# linear (a pattern that can fail would retry from every escaped quote: quadratic).
_JSON_STRING = re.compile(rb'"[^"\\]*(?:\\.[^"\\]*)*"?', re.DOTALL)
_NOT_BRACKETS = bytes(b for b in range(256) if b not in b"[]{}")
_DEPTH_STEP = {ord("["): 1, ord("{"): 1, ord("]"): -1, ord("}"): -1}


@dataclass
class CallContext:
    """Where a call came from: handlers that only make sense on one transport check it."""

    transport: str  # "http" | "ws"
    connection: WsConnection | None = None  # set for WebSocket calls (eth_subscribe)


@dataclass(frozen=True)
class _Method:
    handler: Handler
    named_params: bool


def _reject_constant(name: str) -> Any:
    """json.loads accepts NaN/Infinity by default; they are not JSON, so refuse them."""
    raise ValueError(f"invalid JSON constant {name}")


def _nested_too_deep(body: bytes) -> bool:
    """True when brackets outside strings nest deeper than MAX_JSON_DEPTH (all in C loops).
    `body` must be UTF-8, where these ASCII bytes never occur inside multi-byte characters."""
    if body.count(b"[") + body.count(b"{") <= MAX_JSON_DEPTH:
        return False  # exact and cheap for every ordinary request
    brackets = _JSON_STRING.sub(b"", body).translate(None, _NOT_BRACKETS)
    depths = itertools.accumulate(map(_DEPTH_STEP.__getitem__, brackets))
    return max(depths, default=0) > MAX_JSON_DEPTH


def _is_valid_id(value: Any) -> bool:
    if isinstance(value, float):
        return math.isfinite(value)  # 1e400 parses to inf, which cannot be echoed as JSON
    return value is None or (isinstance(value, int | str) and not isinstance(value, bool))


def _encode(message: dict[str, Any]) -> str:
    return json.dumps(message, separators=(",", ":"), allow_nan=False)


def _error_message(request_id: Any, error: RpcError) -> str:
    return _encode({"jsonrpc": "2.0", "id": request_id, "error": error.to_json()})


class Dispatcher:
    """Method registry plus the JSON-RPC 2.0 rules (ids, batches, notifications, errors)."""

    def __init__(self, *, max_batch: int = 1000, log: Any = None) -> None:
        if max_batch < 1:
            raise ValueError("max_batch must be at least 1")
        self._max_batch = max_batch
        self._methods: dict[str, _Method] = {}
        self._log = log if log is not None else structlog.get_logger("rpc")

    def register(self, name: str, handler: Handler, *, named_params: bool = False) -> None:
        """Add a method. `named_params=True` lets callers pass an object, handed over as a dict."""
        if not isinstance(name, str) or not name:
            raise ValueError("method name must be a non-empty string")
        if name in self._methods:
            raise ValueError(f"method {name} is already registered")
        self._methods[name] = _Method(handler, named_params)

    def methods(self) -> list[str]:
        """Registered method names, sorted (for rpc_modules-style introspection and logs)."""
        return sorted(self._methods)

    async def handle_bytes(self, body: bytes | str, ctx: CallContext) -> bytes | None:
        """Answer one request or batch; None when nothing is to be sent (notifications only)."""
        raw = body.encode("utf-8", "surrogatepass") if isinstance(body, str) else bytes(body)
        try:
            text = raw.decode("utf-8")  # JSON between systems is UTF-8 (RFC 8259), nothing else
        except UnicodeDecodeError:
            return _error_message(None, RpcError(PARSE_ERROR, "parse error")).encode()
        if _nested_too_deep(raw):
            message = f"parse error: JSON nested deeper than {MAX_JSON_DEPTH} levels"
            return _error_message(None, RpcError(PARSE_ERROR, message)).encode()
        try:
            payload = json.loads(text, parse_constant=_reject_constant)
        except (ValueError, RecursionError):  # JSONDecodeError is a ValueError
            return _error_message(None, RpcError(PARSE_ERROR, "parse error")).encode()

        if isinstance(payload, dict):
            single = await self._call(payload, ctx)
            return None if single is None else single.encode()
        if not isinstance(payload, list):
            return _error_message(None, RpcError(INVALID_REQUEST, "invalid request")).encode()
        if not payload:
            return _error_message(None, RpcError(INVALID_REQUEST, "empty batch")).encode()
        if len(payload) > self._max_batch:
            return _error_message(None, RpcError(INVALID_REQUEST, "batch too large")).encode()

        parts: list[str] = []
        for item in payload:
            answer = await self._call(item, ctx)
            if answer is not None:
                parts.append(answer)
            await trio.lowlevel.checkpoint()  # a long batch of cheap calls must not starve others
        if not parts:
            return None
        return ("[" + ",".join(parts) + "]").encode()

    async def _call(self, request: Any, ctx: CallContext) -> str | None:
        """One request object to its encoded response, or None for a valid notification."""
        if not isinstance(request, dict):
            return _error_message(None, RpcError(INVALID_REQUEST, "invalid request"))
        is_call = "id" in request
        request_id = request.get("id")
        if not _is_valid_id(request_id):
            return _error_message(
                None, RpcError(INVALID_REQUEST, "invalid request: id must be a string or number")
            )
        if request.get("jsonrpc") != "2.0":
            return _error_message(
                request_id, RpcError(INVALID_REQUEST, 'invalid request: jsonrpc must be "2.0"')
            )
        method_name = request.get("method")
        if not isinstance(method_name, str):
            return _error_message(
                request_id, RpcError(INVALID_REQUEST, "invalid request: method must be a string")
            )

        response: dict[str, Any] = {"jsonrpc": "2.0", "id": request_id}
        try:
            response["result"] = await self._invoke(method_name, request.get("params"), ctx)
        except RpcError as error:
            response["error"] = error.to_json()
        if not is_call:
            return None
        try:
            return _encode(response)
        except (TypeError, ValueError):
            self._log.error("rpc.response_not_serializable", method=method_name, exc_info=True)
            return _error_message(request_id, RpcError(INTERNAL_ERROR, "internal error"))

    async def _invoke(self, method_name: str, params: Any, ctx: CallContext) -> Any:
        method = self._methods.get(method_name)
        if method is None:
            shown = method_name
            if len(shown) > _MAX_ECHOED_METHOD:
                shown = shown[:_MAX_ECHOED_METHOD] + "..."
            raise RpcError(METHOD_NOT_FOUND, f"the method {shown} does not exist/is not available")
        if params is None:
            params = []
        elif isinstance(params, dict):
            if not method.named_params:
                raise RpcError(INVALID_PARAMS, "invalid params: expected an array of arguments")
        elif not isinstance(params, list):
            raise RpcError(INVALID_PARAMS, "invalid params: expected an array of arguments")
        try:
            return await method.handler(params, ctx)
        except RpcError:
            raise
        except Exception:
            self._log.error("rpc.handler_failed", method=method_name, exc_info=True)
            raise RpcError(INTERNAL_ERROR, "internal error") from None
