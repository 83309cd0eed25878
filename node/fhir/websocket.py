"""WebSocket endpoint `/fhir/$live?token=<bearer token>[&include=block,audit]` for live
updates (live.py)."""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable, MutableMapping
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qs

import trio

from node.fhir.errors import FhirError

if TYPE_CHECKING:
    from node.fhir.service import FhirService

Scope = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[MutableMapping[str, Any]]]
Send = Callable[[MutableMapping[str, Any]], Awaitable[None]]
CLOSE_POLICY_VIOLATION = 1008


async def serve_live(service: FhirService, scope: Scope, receive: Receive, send: Send) -> None:
    message = await receive()
    if message["type"] != "websocket.connect":
        return
    if scope["path"].rstrip("/") != "/fhir/$live":
        await send({"type": "websocket.close", "code": CLOSE_POLICY_VIOLATION})
        return
    query = parse_qs(bytes(scope.get("query_string", b"")).decode("latin-1"))
    try:
        address = service.auth.token_address((query.get("token") or [""])[0])
        caller = await service.caller(address)
    except FhirError:
        await send({"type": "websocket.close", "code": CLOSE_POLICY_VIOLATION})
        return
    await send({"type": "websocket.accept"})
    include = ",".join(query.get("include") or []).split(",")
    sub, events = service.live.subscribe(caller, frozenset(k.strip() for k in include))
    try:
        async with trio.open_nursery() as nursery:

            async def pump() -> None:
                async for event in events:
                    await send({"type": "websocket.send", "text": json.dumps(event)})
                nursery.cancel_scope.cancel()

            nursery.start_soon(pump)
            while True:
                incoming = await receive()
                if incoming["type"] == "websocket.disconnect":
                    nursery.cancel_scope.cancel()
                    break
    finally:
        service.live.unsubscribe(sub)
