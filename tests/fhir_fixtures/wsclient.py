"""A minimal blocking WebSocket client (wsproto over a socket) for the live-update test."""

from __future__ import annotations

import json
import socket
import time
from typing import Any

from wsproto import ConnectionType, WSConnection
from wsproto.events import (
    AcceptConnection,
    CloseConnection,
    RejectConnection,
    Request,
    TextMessage,
)


class WsClient:
    def __init__(self, url: str) -> None:
        hostport, _, path = url.partition("/")
        host, _, port = hostport.partition(":")
        self.sock = socket.create_connection((host, int(port)), timeout=10)
        self.ws = WSConnection(ConnectionType.CLIENT)
        self.sock.sendall(self.ws.send(Request(host=hostport, target="/" + path)))
        self.accepted = False
        self.closed = False
        self._pending: list[Any] = []
        self._text = ""
        self._pump(until=lambda: self.accepted or self.closed, timeout=10)

    def __enter__(self) -> WsClient:
        return self

    def __exit__(self, *exc: object) -> None:
        try:
            if self.accepted and not self.closed:
                self.sock.sendall(self.ws.send(CloseConnection(code=1000)))
        except OSError:
            pass
        self.sock.close()

    def _pump(self, until: Any, timeout: float) -> None:
        deadline = time.time() + timeout
        while not until():
            if time.time() > deadline:
                raise TimeoutError("websocket: nothing received")
            self.sock.settimeout(max(0.01, deadline - time.time()))
            try:
                data = self.sock.recv(65536)
            except TimeoutError:
                continue
            if not data:
                self.closed = True
                return
            self.ws.receive_data(data)
            for event in self.ws.events():
                if isinstance(event, AcceptConnection):
                    self.accepted = True
                elif isinstance(event, (RejectConnection, CloseConnection)):
                    self.closed = True
                elif isinstance(event, TextMessage):
                    self._text += event.data
                    if event.message_finished:
                        self._pending.append(json.loads(self._text))
                        self._text = ""

    def receive_json(self, timeout: float) -> Any:
        self._pump(until=lambda: bool(self._pending) or self.closed, timeout=timeout)
        if not self._pending:
            raise ConnectionError("websocket closed")
        return self._pending.pop(0)

    def closed_by_server(self, timeout: float) -> bool:
        self._pump(until=lambda: self.closed, timeout=timeout)
        return self.closed and not self.accepted
