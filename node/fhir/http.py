"""HTTP plumbing shared by the FHIR and DICOM routes: the parsed request and the JSON answer."""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any
from urllib.parse import parse_qsl

from node.fhir.errors import bad_request

Scope = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[MutableMapping[str, Any]]]
Send = Callable[[MutableMapping[str, Any]], Awaitable[None]]

FHIR_JSON = "application/fhir+json; charset=utf-8"


class Request:
    def __init__(self, scope: Scope, body: bytes) -> None:
        self.scope = scope
        self.method: str = scope["method"]
        self.path: str = scope["path"]
        self.query_string: str = bytes(scope.get("query_string", b"")).decode("latin-1")
        self.query = parse_qsl(self.query_string, keep_blank_values=True)
        self.headers = {k.decode("latin-1").lower(): v.decode("latin-1")
                        for k, v in scope.get("headers", [])}
        self.body = body
        scheme = scope.get("scheme", "http")
        host = self.headers.get("host", "localhost")
        root = scope.get("root_path", "")
        self.base = f"{scheme}://{host}{root}/fhir"

    @property
    def target(self) -> str:
        return self.path + (f"?{self.query_string}" if self.query_string else "")

    def json(self) -> Any:
        try:
            return json.loads(self.body)
        except (ValueError, UnicodeDecodeError):
            raise bad_request("the body is not valid JSON") from None


async def respond(send: Send, status: int, payload: Any, headers: dict[str, str]) -> None:
    body = b"" if payload is None else json.dumps(payload, separators=(",", ":")).encode()
    raw = [(k.lower().encode(), v.encode()) for k, v in headers.items()]
    if payload is not None:
        raw.append((b"content-type", FHIR_JSON.encode()))
    raw.append((b"content-length", str(len(body)).encode()))
    raw.append((b"cache-control", b"no-store"))
    await send({"type": "http.response.start", "status": status, "headers": raw})
    await send({"type": "http.response.body", "body": body})
