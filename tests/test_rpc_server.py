"""JSON-RPC transport and dispatch: a real hypercorn server on a loopback port, driven by httpx,
the websockets client and web3.py 8 (HTTP and WebSocket providers)."""

from __future__ import annotations

import asyncio
import base64
import json
import os
import socket
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from functools import partial
from typing import Any

import httpx
import pytest
import structlog
import trio
from websockets.exceptions import ConnectionClosed, InvalidStatus
from websockets.sync.client import ClientConnection
from websockets.sync.client import connect as ws_connect

from node.rpc.dispatch import CallContext, Dispatcher
from node.rpc.errors import (
    INTERNAL_ERROR,
    INVALID_PARAMS,
    INVALID_REQUEST,
    LIMIT_EXCEEDED,
    METHOD_NOT_FOUND,
    PARSE_ERROR,
    SERVER_ERROR,
    RpcError,
    invalid_params,
)
from node.rpc.filters import FilterManager
from node.rpc.server import RpcApp, RpcServerConfig, serve_rpc
from node.rpc.subscriptions import SubscriptionHub, WsConnection

JSON = {"content-type": "application/json"}
SECRET = "secret-internal-detail-7f3a"
CLIENT_VERSION = "medledger/v0.1.0-test/python3.11"


# -- a real server in a background thread with its own trio loop ---------------------------


@dataclass
class Server:
    port: int
    dispatcher: Dispatcher
    hub: SubscriptionHub
    token: trio.lowlevel.TrioToken
    notified: list[Any] = field(default_factory=list)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/"

    @property
    def ws_url(self) -> str:
        return f"ws://127.0.0.1:{self.port}/"

    def in_loop(self, fn: Any, *args: Any) -> Any:
        """Run fn on the server's trio thread; also a barrier behind earlier publish_threadsafe."""
        return trio.from_thread.run_sync(fn, *args, trio_token=self.token)


def _ticks_matcher(params: list[Any]) -> Any:
    """Demo subscription kind: integers, optionally only those >= params[0]."""
    if len(params) > 1 or (params and not isinstance(params[0], int)):
        raise invalid_params("ticks takes at most one integer: the minimum")
    minimum = params[0] if params else 0
    return lambda event: [event] if event >= minimum else []


def _build(notified: list[Any], max_batch: int) -> tuple[Dispatcher, SubscriptionHub]:
    dispatcher = Dispatcher(max_batch=max_batch)
    hub = SubscriptionHub()

    async def echo(params: list[Any], ctx: CallContext) -> Any:
        return {"params": params, "transport": ctx.transport}

    async def fail(params: list[Any], ctx: CallContext) -> Any:
        raise RpcError(SERVER_ERROR, "custom failure", "0xdead")

    async def boom(params: list[Any], ctx: CallContext) -> Any:
        raise ValueError(SECRET)

    async def unserializable(params: list[Any], ctx: CallContext) -> Any:
        return {SECRET: object()}

    async def slow(params: list[Any], ctx: CallContext) -> Any:
        await trio.sleep(params[0])
        return "slow done"

    async def note(params: list[Any], ctx: CallContext) -> Any:
        notified.append(params)
        return None

    async def named(params: Any, ctx: CallContext) -> Any:
        return params

    async def client_version(params: list[Any], ctx: CallContext) -> str:
        return CLIENT_VERSION

    for name, handler in [
        ("test_echo", echo), ("test_fail", fail), ("test_boom", boom),
        ("test_unserializable", unserializable), ("test_slow", slow), ("test_note", note),
        ("web3_clientVersion", client_version),
    ]:
        dispatcher.register(name, handler)
    dispatcher.register("test_named", named, named_params=True)
    hub.register_kind("ticks", _ticks_matcher)
    hub.register_kind("newPendingTransactions", lambda params: lambda event: [event])
    hub.install(dispatcher)
    return dispatcher, hub


@contextmanager
def running_server(max_batch: int = 5, **config: Any) -> Iterator[Server]:
    settings: dict[str, Any] = {"port": 0, "max_body_bytes": 4096, "max_ws_message_bytes": 4096}
    settings.update(config)
    server_config = RpcServerConfig(**settings)
    notified: list[Any] = []
    dispatcher, hub = _build(notified, max_batch)
    app = RpcApp(dispatcher, hub, server_config)
    started = threading.Event()
    box: dict[str, Any] = {}

    async def main() -> None:
        box["shutdown"] = trio.Event()
        box["token"] = trio.lowlevel.current_trio_token()
        async with trio.open_nursery() as nursery:
            box["port"] = await nursery.start(
                partial(serve_rpc, app, server_config, shutdown=box["shutdown"])
            )
            started.set()

    def run() -> None:
        try:
            trio.run(main)
        except BaseException as exc:  # surfaced to the test below
            box["error"] = exc
        finally:
            started.set()

    thread = threading.Thread(target=run, name="rpc-test-server", daemon=True)
    thread.start()
    assert started.wait(10), "server did not start"
    if "error" in box:
        raise box["error"]
    server = Server(box["port"], dispatcher, hub, box["token"], notified)
    try:
        yield server
    finally:
        box["token"].run_sync_soon(box["shutdown"].set)
        thread.join(10)
        assert not thread.is_alive(), "server did not shut down"
        assert "error" not in box, box.get("error")


@pytest.fixture(scope="module")
def server() -> Iterator[Server]:
    with running_server() as running:
        yield running


@pytest.fixture()
def http(server: Server) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=server.url, headers=JSON, timeout=10, trust_env=False) as client:
        yield client


def rpc(client: httpx.Client, payload: Any) -> Any:
    response = client.post("/", content=json.dumps(payload))
    assert response.status_code == 200, response.text
    assert response.headers["content-type"] == "application/json"
    return response.json()


def call(method: str, params: Any = None, request_id: Any = 1) -> dict[str, Any]:
    message: dict[str, Any] = {"jsonrpc": "2.0", "id": request_id, "method": method}
    if params is not None:
        message["params"] = params
    return message


def error_of(response: dict[str, Any]) -> tuple[int, str]:
    assert "result" not in response, response
    return response["error"]["code"], response["error"]["message"]


@contextmanager
def ws(server: Server, **kwargs: Any) -> Iterator[ClientConnection]:
    with ws_connect(server.ws_url, proxy=None, open_timeout=5, **kwargs) as connection:
        yield connection


def eventually(predicate: Any, timeout: float = 5.0) -> bool:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.01)
    return True


def ws_call(connection: ClientConnection, payload: Any) -> Any:
    connection.send(json.dumps(payload))
    return json.loads(connection.recv(timeout=5))


# -- HTTP: calls, batches, notifications -----------------------------------------------------


@pytest.mark.parametrize("request_id", [7, "abc", 2**70, 1.5, None, "0x01"])
def test_single_call_echoes_id_and_result(http: httpx.Client, request_id: Any) -> None:
    answer = rpc(http, call("test_echo", [1, "two", {"three": 3}], request_id))
    assert answer == {
        "jsonrpc": "2.0",
        "id": request_id,
        "result": {"params": [1, "two", {"three": 3}], "transport": "http"},
    }


def test_response_is_compact_json_and_keeps_big_ids_exact(http: httpx.Client) -> None:
    response = http.post("/", content=b'{"jsonrpc":"2.0","id":123456789012345678901234567890,'
                         b'"method":"test_echo"}')
    assert response.content == (
        b'{"jsonrpc":"2.0","id":123456789012345678901234567890,'
        b'"result":{"params":[],"transport":"http"}}'
    )


def test_params_null_or_missing_mean_no_arguments(http: httpx.Client) -> None:
    assert rpc(http, call("test_echo", None))["result"]["params"] == []
    payload = {"jsonrpc": "2.0", "id": 1, "method": "test_echo", "params": None}
    assert rpc(http, payload)["result"]["params"] == []


def test_batch_answers_in_order_and_skips_notifications(
    http: httpx.Client, server: Server
) -> None:
    batch = [
        call("test_echo", ["a"], 1),
        {"jsonrpc": "2.0", "method": "test_note", "params": ["in batch"]},
        call("no_such_method", [], "two"),
        5,
        call("test_fail", [], 3),
    ]
    answer = rpc(http, batch)
    assert [item["id"] for item in answer] == [1, "two", None, 3]
    assert answer[0]["result"]["params"] == ["a"]
    assert error_of(answer[1])[0] == METHOD_NOT_FOUND
    assert error_of(answer[2]) == (INVALID_REQUEST, "invalid request")
    assert answer[3]["error"] == {"code": SERVER_ERROR, "message": "custom failure",
                                  "data": "0xdead"}
    assert ["in batch"] in server.notified


def test_notifications_get_no_response(http: httpx.Client, server: Server) -> None:
    response = http.post("/", content=json.dumps(
        {"jsonrpc": "2.0", "method": "test_note", "params": ["single"]}))
    assert response.status_code == 204
    assert response.content == b""
    assert ["single"] in server.notified

    batch = [{"jsonrpc": "2.0", "method": "test_note", "params": [i]} for i in ("n1", "n2")]
    response = http.post("/", content=json.dumps(batch))
    assert response.status_code == 204
    assert ["n1"] in server.notified and ["n2"] in server.notified
    # A notification of an unknown method is silently ignored too.
    response = http.post("/", content=json.dumps({"jsonrpc": "2.0", "method": "nope"}))
    assert response.status_code == 204


# -- HTTP: every error class ---------------------------------------------------------------


@pytest.mark.parametrize(
    "body",
    [b"{not json", b'{"jsonrpc":"2.0","id":1,"method":"test_echo","params":[NaN]}', b"\xff\xfe\xfa",
     b""],
)
def test_parse_error(http: httpx.Client, body: bytes) -> None:
    response = http.post("/", content=body)
    assert response.status_code == 200
    assert response.json() == {
        "jsonrpc": "2.0", "id": None, "error": {"code": PARSE_ERROR, "message": "parse error"}
    }


def test_deeply_nested_json_is_refused_before_parsing(http: httpx.Client) -> None:
    response = http.post("/", content=b"[" * 1001 + b"]" * 1001)
    assert response.json()["error"] == {
        "code": PARSE_ERROR, "message": "parse error: JSON nested deeper than 1000 levels"
    }
    # Brackets inside strings do not count; 1000 levels are fine.
    assert rpc(http, call("test_echo", ["[{" * 1500]))["result"]["params"] == ["[{" * 1500]
    batch_of_one = http.post("/", content=b"[" * 1000 + b"]" * 1000).json()
    assert error_of(batch_of_one[0])[0] == INVALID_REQUEST


def test_nesting_that_would_overflow_the_c_stack_does_not_crash() -> None:
    """py-evm/py_ecc raise the recursion limit to 100000; json.loads would then segfault."""
    previous = sys.getrecursionlimit()
    sys.setrecursionlimit(max(previous, 100_000))
    try:
        answer = trio.run(Dispatcher().handle_bytes, b"[" * 200_000, CallContext("http"))
    finally:
        sys.setrecursionlimit(previous)
    assert answer is not None and json.loads(answer)["error"]["code"] == PARSE_ERROR


def test_depth_check_stays_linear_on_hostile_strings() -> None:
    """Unterminated strings full of escaped quotes: a naive string regex rescans from every
    quote (quadratic: hours for this body); the check must stay a single pass."""
    dispatcher = Dispatcher()
    for tail in (b"", b"\\"):
        body = b"[" * 1001 + b'"' + b'\\"' * 500_000 + tail
        started = time.monotonic()
        answer = trio.run(dispatcher.handle_bytes, body, CallContext("http"))
        assert time.monotonic() - started < 2
        assert answer is not None and json.loads(answer)["error"]["code"] == PARSE_ERROR


def test_only_utf8_is_accepted(http: httpx.Client) -> None:
    body = json.dumps(call("test_echo", ["é"]))
    assert http.post("/", content=body.encode("utf-8")).json()["result"]["params"] == ["é"]
    refused = http.post("/", content=body.encode("utf-16")).json()
    assert refused["error"] == {"code": PARSE_ERROR, "message": "parse error"}


@pytest.mark.parametrize(
    ("payload", "expected_id", "message"),
    [
        (5, None, "invalid request"),
        ("text", None, "invalid request"),
        ({"id": 1, "method": "test_echo"}, 1, 'jsonrpc must be "2.0"'),
        ({"jsonrpc": "1.0", "id": 1, "method": "test_echo"}, 1, 'jsonrpc must be "2.0"'),
        ({"jsonrpc": "2.0", "id": True, "method": "test_echo"}, None, "id must be"),
        ({"jsonrpc": "2.0", "id": [1], "method": "test_echo"}, None, "id must be"),
        ({"jsonrpc": "2.0", "id": 4, "method": 12}, 4, "method must be a string"),
        ({"jsonrpc": "2.0", "id": 4}, 4, "method must be a string"),
        ({"jsonrpc": "2.0", "method": 12}, None, "method must be a string"),
    ],
)
def test_invalid_request(
    http: httpx.Client, payload: Any, expected_id: Any, message: str
) -> None:
    answer = rpc(http, payload)
    assert answer["id"] == expected_id
    code, text = error_of(answer)
    assert code == INVALID_REQUEST
    assert message in text


def test_infinite_id_is_refused_not_echoed(http: httpx.Client) -> None:
    answer = http.post("/", content=b'{"jsonrpc":"2.0","id":1e400,"method":"test_echo"}').json()
    assert answer["id"] is None
    assert error_of(answer)[0] == INVALID_REQUEST


def test_method_not_found(http: httpx.Client) -> None:
    answer = rpc(http, call("eth_doesNotExist", [], 9))
    assert answer["id"] == 9
    assert error_of(answer) == (
        METHOD_NOT_FOUND, "the method eth_doesNotExist does not exist/is not available"
    )


def test_invalid_params(http: httpx.Client) -> None:
    by_name = rpc(http, call("test_echo", {"a": 1}))
    assert error_of(by_name) == (INVALID_PARAMS, "invalid params: expected an array of arguments")
    scalar = rpc(http, call("test_echo", 5))
    assert error_of(scalar)[0] == INVALID_PARAMS
    # A handler that opted in receives the object as it was sent.
    assert rpc(http, call("test_named", {"a": 1}))["result"] == {"a": 1}
    assert rpc(http, call("test_named", [1]))["result"] == [1]


def test_internal_errors_are_logged_but_never_leak(http: httpx.Client) -> None:
    with structlog.testing.capture_logs() as logs:
        for method in ("test_boom", "test_unserializable"):
            response = http.post("/", content=json.dumps(call(method, [], 5)))
            assert SECRET not in response.text
            assert response.json() == {
                "jsonrpc": "2.0", "id": 5,
                "error": {"code": INTERNAL_ERROR, "message": "internal error"},
            }
    events = {entry["event"]: entry for entry in logs}
    assert events["rpc.handler_failed"]["method"] == "test_boom"
    assert events["rpc.handler_failed"]["exc_info"] is True
    assert events["rpc.response_not_serializable"]["method"] == "test_unserializable"


def test_empty_and_too_large_batches_get_one_error(http: httpx.Client) -> None:
    assert rpc(http, []) == {
        "jsonrpc": "2.0", "id": None, "error": {"code": INVALID_REQUEST, "message": "empty batch"}
    }
    assert len(rpc(http, [call("test_echo", [], i) for i in range(5)])) == 5  # max_batch=5
    assert rpc(http, [call("test_echo", [], i) for i in range(6)]) == {
        "jsonrpc": "2.0", "id": None,
        "error": {"code": INVALID_REQUEST, "message": "batch too large"},
    }


# -- HTTP: transport rules -------------------------------------------------------------------


TOO_LARGE = {
    "jsonrpc": "2.0", "id": None,
    "error": {"code": INVALID_REQUEST, "message": "request body too large (max 4096 bytes)"},
}


def test_body_over_limit_with_content_length_is_413(http: httpx.Client) -> None:
    padding = "x" * 5000
    response = http.post("/", content=json.dumps(call("test_echo", [padding])))
    assert response.status_code == 413
    assert response.json() == TOO_LARGE
    # Exactly at the limit is still served.
    body = json.dumps(call("test_echo", [""]))
    body = body.replace('[""]', '["' + "y" * (4096 - len(body)) + '"]')
    assert len(body) == 4096
    assert http.post("/", content=body).status_code == 200


def test_chunked_body_over_limit_is_413(server: Server) -> None:
    def chunks() -> Iterator[bytes]:
        yield b'{"jsonrpc":"2.0","id":1,"method":"test_echo","params":["'
        for _ in range(256):
            yield b"z" * 1024
        yield b'"]}'

    with httpx.Client(headers=JSON, timeout=10, trust_env=False) as client:
        response = client.post(server.url, content=chunks())
        assert "content-length" not in response.request.headers
        assert response.request.headers["transfer-encoding"] == "chunked"
        assert response.status_code == 413
        assert response.json() == TOO_LARGE
        # A small chunked body is served normally.
        small = client.post(server.url, content=iter([b'{"jsonrpc":"2.0",', b'"id":2,'
                                                      b'"method":"test_echo"}']))
        assert small.json()["id"] == 2


def _drive_http(app: RpcApp, headers: list[tuple[bytes, bytes]]) -> tuple[int, list[Any]]:
    """Feed an endless body straight into the ASGI app; returns (chunks it read, sent events)."""
    read = 0
    sent: list[Any] = []

    async def receive() -> dict[str, Any]:
        nonlocal read
        read += 1
        await trio.lowlevel.checkpoint()
        return {"type": "http.request", "body": b"q" * 1024, "more_body": True}

    async def send(message: Any) -> None:
        sent.append(message)

    scope = {"type": "http", "method": "POST", "path": "/",
             "headers": [(b"content-type", b"application/json"), *headers]}
    trio.run(app, scope, receive, send)
    return read, sent


def test_endless_body_is_dropped_not_buffered_and_refused() -> None:
    dispatcher, hub = _build([], 5)
    app = RpcApp(dispatcher, hub, RpcServerConfig(max_body_bytes=4096))
    read, sent = _drive_http(app, [])
    # 4 KiB kept at most; then at most 1 MiB read and dropped so a client can see the answer.
    assert 4 < read <= 4 + 1024 + 2
    assert sent[0]["status"] == 413 and (b"connection", b"close") in sent[0]["headers"]
    assert json.loads(sent[1]["body"]) == TOO_LARGE
    # A declared length far beyond the limit is refused before reading anything.
    read, sent = _drive_http(app, [(b"content-length", str(10**9).encode())])
    assert read == 0 and sent[0]["status"] == 413


def test_get_is_405_and_wrong_content_type_415(http: httpx.Client) -> None:
    response = http.get("/")
    assert response.status_code == 405
    assert response.headers["allow"] == "POST, OPTIONS"
    assert response.json()["error"]["code"] == INVALID_REQUEST
    response = http.put("/", content=json.dumps(call("test_echo")))
    assert response.status_code == 405

    body = json.dumps(call("test_echo"))
    for content_type in ("text/plain", "application/x-www-form-urlencoded"):
        response = http.post("/", content=body, headers={"content-type": content_type})
        assert response.status_code == 415
        assert "only application/json" in response.json()["error"]["message"]
    response = http.post("/", content=body,
                         headers={"content-type": "application/json; charset=utf-8"})
    assert response.status_code == 200


def test_any_path_is_served(http: httpx.Client) -> None:
    response = http.post("/some/path", content=json.dumps(call("test_echo")))
    assert response.json()["result"]["transport"] == "http"


def test_no_cors_headers_unless_configured(http: httpx.Client) -> None:
    response = http.post("/", content=json.dumps(call("test_echo")),
                         headers={"origin": "https://app.example"})
    assert response.status_code == 200
    assert "access-control-allow-origin" not in response.headers


def test_cors_when_configured() -> None:
    with running_server(cors_origins=("https://app.example",)) as server, httpx.Client(
        base_url=server.url, headers=JSON, timeout=10, trust_env=False
    ) as client:
        body = json.dumps(call("test_echo"))
        allowed = client.post("/", content=body, headers={"origin": "https://app.example"})
        assert allowed.headers["access-control-allow-origin"] == "https://app.example"
        assert allowed.headers["vary"] == "Origin"
        other = client.post("/", content=body, headers={"origin": "https://evil.example"})
        assert "access-control-allow-origin" not in other.headers

        preflight = client.options("/", headers={
            "origin": "https://app.example",
            "access-control-request-method": "POST",
            "access-control-request-headers": "content-type",
        })
        assert preflight.status_code == 204
        assert preflight.headers["access-control-allow-origin"] == "https://app.example"
        assert "POST" in preflight.headers["access-control-allow-methods"]
        assert preflight.headers["access-control-allow-headers"] == "Content-Type"
        refused = client.options("/", headers={"origin": "https://evil.example",
                                               "access-control-request-method": "POST"})
        assert "access-control-allow-origin" not in refused.headers

        # Browsers skip CORS for WebSocket, so the server checks Origin itself.
        with ws(server, origin="https://app.example") as connection:
            assert ws_call(connection, call("test_echo"))["result"]["transport"] == "ws"
        with pytest.raises(InvalidStatus) as refused_ws:
            ws_connect(server.ws_url, proxy=None, origin="https://evil.example")
        assert refused_ws.value.response.status_code == 403

    with running_server(cors_origins=("*",)) as server, httpx.Client(
        base_url=server.url, headers=JSON, timeout=10, trust_env=False
    ) as client:
        response = client.post("/", content=json.dumps(call("test_echo")),
                               headers={"origin": "https://anything.example"})
        assert response.headers["access-control-allow-origin"] == "*"


def test_serve_rpc_reports_a_clear_error_when_the_port_is_taken(server: Server) -> None:
    config = RpcServerConfig(port=server.port)
    dispatcher, hub = _build([], 5)

    async def main() -> None:
        await serve_rpc(RpcApp(dispatcher, hub, config), config)

    with pytest.raises(OSError, match=f"cannot listen for JSON-RPC on 127.0.0.1:{server.port}"):
        trio.run(main)


def test_config_validation() -> None:
    with pytest.raises(ValueError, match="port"):
        RpcServerConfig(port=70000)
    with pytest.raises(ValueError, match="max_body_bytes"):
        RpcServerConfig(max_body_bytes=0)
    with pytest.raises(ValueError, match="cors_origins"):
        RpcServerConfig(cors_origins="*")  # type: ignore[arg-type]


# -- WebSocket -------------------------------------------------------------------------------


def test_ws_call_batch_and_binary_frames(server: Server) -> None:
    with ws(server) as connection:
        assert ws_call(connection, call("test_echo", [1], "a")) == {
            "jsonrpc": "2.0", "id": "a", "result": {"params": [1], "transport": "ws"}
        }
        batch = ws_call(connection, [call("test_echo", [], 1), call("nope", [], 2)])
        assert [item["id"] for item in batch] == [1, 2]
        assert error_of(batch[1])[0] == METHOD_NOT_FOUND
        connection.send(json.dumps(call("test_echo", [], 3)).encode())  # binary frame
        assert json.loads(connection.recv(timeout=5))["id"] == 3
        assert ws_call(connection, [])["error"]["message"] == "empty batch"
        connection.send("{broken")
        assert json.loads(connection.recv(timeout=5))["error"]["code"] == PARSE_ERROR


def test_ws_notification_gets_no_response(server: Server) -> None:
    with ws(server) as connection:
        connection.send(json.dumps({"jsonrpc": "2.0", "method": "test_note", "params": ["ws"]}))
        assert ws_call(connection, call("test_echo", [], 1))["id"] == 1  # next frame is this
    assert ["ws"] in server.notified


def test_ws_oversize_message_closes_with_1009(server: Server) -> None:
    with ws(server) as connection:
        connection.send(json.dumps(call("test_echo", ["x" * 5000])))
        with pytest.raises(ConnectionClosed) as closed:
            connection.recv(timeout=5)
        assert closed.value.rcvd is not None and closed.value.rcvd.code == 1009


def test_ws_slow_request_does_not_block_the_connection_or_others(server: Server) -> None:
    with ws(server) as first, ws(server) as second:
        first.send(json.dumps(call("test_slow", [0.5], "slow")))
        first.send(json.dumps(call("test_echo", [], "fast")))
        assert ws_call(second, call("test_echo", [], "other"))["id"] == "other"
        assert json.loads(first.recv(timeout=5))["id"] == "fast"
        assert json.loads(first.recv(timeout=5)) == {
            "jsonrpc": "2.0", "id": "slow", "result": "slow done"
        }


def test_subscribe_over_http_is_refused(http: httpx.Client) -> None:
    answer = rpc(http, call("eth_subscribe", ["ticks"]))
    assert error_of(answer) == (METHOD_NOT_FOUND, "notifications not supported")
    assert error_of(rpc(http, call("eth_unsubscribe", ["0x01"])))[0] == METHOD_NOT_FOUND


def test_ws_subscription_notifications_from_another_thread(server: Server) -> None:
    with ws(server) as connection:
        assert error_of(ws_call(connection, call("eth_subscribe", ["nope"]))) == (
            INVALID_PARAMS, "unsupported subscription type nope"
        )
        assert error_of(ws_call(connection, call("eth_subscribe", ["ticks", "x"])))[0] == (
            INVALID_PARAMS
        )
        assert error_of(ws_call(connection, call("eth_subscribe", [])))[0] == INVALID_PARAMS

        all_ticks = ws_call(connection, call("eth_subscribe", ["ticks"], 1))["result"]
        big_ticks = ws_call(connection, call("eth_subscribe", ["ticks", 3], 2))["result"]
        assert all_ticks.startswith("0x") and len(all_ticks) == 34 and all_ticks != big_ticks
        assert server.in_loop(server.hub.subscription_count, "ticks") == 2

        def chain_thread() -> None:  # stands in for the chain's worker thread
            for tick in range(1, 5):
                server.hub.publish_threadsafe("ticks", tick)

        worker = threading.Thread(target=chain_thread)
        worker.start()
        worker.join()
        server.in_loop(lambda: None)  # every publish above has run on the loop now
        received = [json.loads(connection.recv(timeout=5)) for _ in range(6)]
        assert all(m["jsonrpc"] == "2.0" and m["method"] == "eth_subscription"
                   for m in received)
        by_sub: dict[str, list[int]] = {}
        for message in received:
            by_sub.setdefault(message["params"]["subscription"], []).append(
                message["params"]["result"])
        assert by_sub == {all_ticks: [1, 2, 3, 4], big_ticks: [3, 4]}


def test_ws_unsubscribe_stops_notifications(server: Server) -> None:
    with ws(server) as connection:
        keep = ws_call(connection, call("eth_subscribe", ["ticks"], 1))["result"]
        gone = ws_call(connection, call("eth_subscribe", ["ticks"], 2))["result"]
        assert ws_call(connection, call("eth_unsubscribe", [gone], 3))["result"] is True
        assert ws_call(connection, call("eth_unsubscribe", [gone], 4))["result"] is False
        server.hub.publish_threadsafe("ticks", 10)
        server.in_loop(lambda: None)
        notification = json.loads(connection.recv(timeout=5))
        assert notification["params"] == {"subscription": keep, "result": 10}
        # Queued behind the notification; nothing for the removed subscription in between.
        assert ws_call(connection, call("test_echo", [], 5))["id"] == 5

        with ws(server) as other:  # one connection cannot cancel another's subscription
            assert ws_call(other, call("eth_unsubscribe", [keep], 1))["result"] is False
    # Dropped on disconnect (the server learns of the close just after the client does).
    assert eventually(lambda: server.in_loop(server.hub.subscription_count) == 0)


def test_slow_consumer_is_disconnected_without_blocking_the_publisher() -> None:
    with running_server(ws_queue_size=5) as server, ws(server) as connection:
        sub_id = ws_call(connection, call("eth_subscribe", ["ticks"], 1))["result"]

        def burst() -> int:  # 50 events in one go: the writer cannot drain in between
            for tick in range(50):
                server.hub.publish("ticks", tick)
            return server.hub.subscription_count()

        with structlog.testing.capture_logs() as logs:
            assert server.in_loop(burst) == 0  # publisher returned; subscriber already dropped
        assert any(entry["event"] == "rpc.ws_slow_consumer" for entry in logs)
        results = []
        with pytest.raises(ConnectionClosed) as closed:
            while True:
                message = json.loads(connection.recv(timeout=5))
                assert message["params"]["subscription"] == sub_id
                results.append(message["params"]["result"])
        assert closed.value.rcvd is not None and closed.value.rcvd.code == 1008
        assert "slow consumer" in closed.value.rcvd.reason
        assert results == list(range(len(results))) and len(results) <= 5


def _raw_ws_client_that_never_reads(port: int) -> socket.socket:
    """A WebSocket client with a tiny receive buffer that stops reading after the handshake."""
    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    sock.connect(("127.0.0.1", port))
    key = base64.b64encode(os.urandom(16)).decode()
    sock.sendall(
        f"GET / HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
        f"Sec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n\r\n".encode()
    )
    assert sock.recv(12) == b"HTTP/1.1 101"
    message = json.dumps(call("eth_subscribe", ["big"])).encode()
    mask = os.urandom(4)
    masked = bytes(byte ^ mask[i % 4] for i, byte in enumerate(message))
    sock.sendall(bytes([0x81, 0x80 | len(message)]) + mask + masked)  # one masked text frame
    return sock


def test_stuck_subscriber_cannot_block_the_server_or_its_shutdown() -> None:
    """hypercorn's socket writes cannot be cancelled; a peer with a zero receive window would
    hold its connection (and shutdown) forever without the kernel's send timeout."""
    payload = "x" * 1_000_000
    started = time.monotonic()
    stuck: socket.socket | None = None
    try:
        with running_server(ws_queue_size=3, send_timeout_seconds=1.0,
                            shutdown_grace_seconds=0.5) as server:
            server.in_loop(server.hub.register_kind, "big", lambda params: lambda e: [payload])
            stuck = _raw_ws_client_that_never_reads(server.port)
            assert eventually(lambda: server.in_loop(server.hub.subscription_count) == 1)
            for tick in range(40):  # the writer blocks on the full socket, then the queue fills
                server.hub.publish_threadsafe("big", tick)
                time.sleep(0.005)
            assert eventually(lambda: server.in_loop(server.hub.subscription_count) == 0)
            with ws(server) as healthy:  # the server goes on serving others meanwhile
                assert ws_call(healthy, call("test_echo", [], 1))["id"] == 1
        # The stuck peer is still connected (never read, never closed) and yet shutdown ended.
        assert time.monotonic() - started < 8
    finally:
        if stuck is not None:
            stuck.close()


def test_subscription_limit_per_connection() -> None:
    hub = SubscriptionHub(max_per_connection=2)
    hub.register_kind("ticks", _ticks_matcher)
    connection = WsConnection(max_queue=10)
    hub.subscribe(connection, "ticks", [])
    hub.subscribe(connection, "ticks", [1])
    with pytest.raises(RpcError) as error:
        hub.subscribe(connection, "ticks", [])
    assert error.value.code == LIMIT_EXCEEDED
    hub.drop_connection(connection)
    assert hub.subscription_count() == 0


def test_failing_matcher_does_not_stop_other_subscribers() -> None:
    async def main() -> None:
        hub = SubscriptionHub()
        hub.register_kind("ticks", _ticks_matcher)
        hub.register_kind("bad", lambda params: lambda event: 1 // 0)
        good, bad = WsConnection(max_queue=10), WsConnection(max_queue=10)
        hub.subscribe(bad, "bad", [])
        good_id = hub.subscribe(good, "ticks", [])
        with structlog.testing.capture_logs() as logs:
            hub.publish("bad", 1)
        assert logs[0]["event"] == "rpc.subscription_matcher_failed"
        hub.publish("ticks", 7)
        message = json.loads(good.outbound().receive_nowait())
        assert message == {"jsonrpc": "2.0", "method": "eth_subscription",
                           "params": {"subscription": good_id, "result": 7}}

    trio.run(main)


def test_app_refuses_oversize_ws_message_itself() -> None:
    """The app's own limit, for ASGI servers that do not enforce one (hypercorn closes 1009)."""

    async def main() -> None:
        dispatcher, hub = _build([], 5)
        app = RpcApp(dispatcher, hub, RpcServerConfig(max_ws_message_bytes=100))
        to_app_send, to_app = trio.open_memory_channel[dict[str, Any]](10)
        from_app, from_app_receive = trio.open_memory_channel[dict[str, Any]](10)
        scope = {"type": "websocket", "headers": [], "client": ("127.0.0.1", 1)}
        async with trio.open_nursery() as nursery:
            nursery.start_soon(app, scope, to_app.receive, from_app.send)
            await to_app_send.send({"type": "websocket.connect"})
            assert (await from_app_receive.receive())["type"] == "websocket.accept"
            await to_app_send.send({"type": "websocket.receive", "text": "[" + " " * 200 + "]"})
            answer = json.loads((await from_app_receive.receive())["text"])
            assert answer["error"]["message"] == "message too large (max 100 bytes)"
            await to_app_send.send({"type": "websocket.receive",
                                    "bytes": json.dumps(call("test_echo")).encode()})
            assert json.loads((await from_app_receive.receive())["text"])["id"] == 1
            await to_app_send.send({"type": "websocket.disconnect", "code": 1000})

    trio.run(main)


# -- web3.py 8 against the transport ---------------------------------------------------------


def test_web3_http_provider(server: Server) -> None:
    from web3 import Web3

    w3 = Web3(Web3.HTTPProvider(server.url, request_kwargs={"timeout": 10}))
    assert w3.client_version == CLIENT_VERSION


def test_web3_websocket_provider_and_subscription(server: Server) -> None:
    from web3 import AsyncWeb3, WebSocketProvider

    tx_hash = "0x" + "ab" * 32

    async def main() -> tuple[str, str, Any]:
        async with AsyncWeb3(WebSocketProvider(server.ws_url)) as w3:
            version = await w3.client_version
            sub_id = await w3.eth.subscribe("newPendingTransactions")
            server.hub.publish_threadsafe("newPendingTransactions", tx_hash)
            async for payload in w3.socket.process_subscriptions():
                return version, sub_id, payload
        raise AssertionError("no notification")

    version, sub_id, payload = asyncio.run(asyncio.wait_for(main(), 20))
    assert version == CLIENT_VERSION
    assert payload["subscription"] == sub_id
    assert bytes(payload["result"]) == bytes.fromhex(tx_hash[2:])


# -- filters ---------------------------------------------------------------------------------


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_filters_collect_and_clear() -> None:
    manager = FilterManager(clock=FakeClock())
    blocks = manager.install("block", lambda block_hash: [block_hash])
    evens = manager.install("logs", lambda logs: [x for x in logs if x % 2 == 0], meta={"c": 1})
    assert blocks.startswith("0x") and len(blocks) == 34
    manager.push("block", "0xaa")
    manager.push("logs", [1, 2, 3, 4])
    manager.push("pending", "0xignored")
    assert manager.changes(blocks) == ["0xaa"]
    assert manager.changes(blocks) == []
    assert manager.changes(evens.upper().replace("0X", "0x")) == [2, 4]  # ids case-insensitive
    assert manager.get(evens).meta == {"c": 1}
    assert manager.uninstall(evens) is True
    assert manager.uninstall(evens) is False
    with pytest.raises(RpcError) as error:
        manager.changes(evens)
    assert (error.value.code, error.value.message) == (SERVER_ERROR, "filter not found")
    with pytest.raises(ValueError, match="unknown filter kind"):
        manager.install("blocks", lambda event: [event])


def test_filter_buffer_is_bounded() -> None:
    manager = FilterManager(max_buffer=3, clock=FakeClock())
    filter_id = manager.install("pending", lambda tx: [tx])
    for tx in range(5):
        manager.push("pending", tx)
    assert manager.get(filter_id).overflowed is True
    assert manager.changes(filter_id) == [2, 3, 4]  # the oldest were dropped
    assert manager.get(filter_id).overflowed is False


def test_filters_expire_when_idle() -> None:
    clock = FakeClock()
    manager = FilterManager(timeout_seconds=300, clock=clock)
    polled = manager.install("block", lambda h: [h])
    idle = manager.install("block", lambda h: [h])
    clock.now += 200
    manager.changes(polled)  # polling keeps a filter alive
    clock.now += 100
    assert manager.expire() == 0  # exactly at the timeout: still alive
    clock.now += 1
    with pytest.raises(RpcError, match="filter not found"):
        manager.changes(idle)  # idle for 301 s: expired on access
    assert len(manager) == 1
    clock.now += 199  # polled was last used 300 s ago
    assert manager.changes(polled) == []
    clock.now += 301
    assert manager.expire() == 1
    assert len(manager) == 0


def test_filter_limit() -> None:
    clock = FakeClock()
    manager = FilterManager(max_filters=2, timeout_seconds=10, clock=clock)
    manager.install("block", lambda h: [h])
    manager.install("block", lambda h: [h])
    with pytest.raises(RpcError) as error:
        manager.install("block", lambda h: [h])
    assert error.value.code == LIMIT_EXCEEDED
    clock.now += 11  # the expired ones make room
    manager.install("block", lambda h: [h])
    assert len(manager) == 1


def test_dispatcher_registration_rules() -> None:
    dispatcher = Dispatcher()

    async def handler(params: list[Any], ctx: CallContext) -> None:
        return None

    dispatcher.register("b_method", handler)
    dispatcher.register("a_method", handler)
    assert dispatcher.methods() == ["a_method", "b_method"]
    with pytest.raises(ValueError, match="already registered"):
        dispatcher.register("a_method", handler)
    with pytest.raises(ValueError):
        Dispatcher(max_batch=0)
