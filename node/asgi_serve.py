"""Serving an ASGI app with hypercorn on the node's trio loop: one way for every listener.

The listening socket is bound here, so bind errors are plain OSErrors that name what
listens and where, and port 0 resolves to the real port before the server starts
(`task_status.started(port)`).
"""

from __future__ import annotations

import logging
import socket
from typing import Any

import trio
from hypercorn.config import Config as HypercornConfig
from hypercorn.trio import serve as hypercorn_serve


def listen_socket(
    host: str, port: int, *, purpose: str, send_timeout: float | None = None
) -> socket.socket:
    """A bound TCP socket for `purpose` (used in error messages).

    hypercorn writes to a connection in a shielded scope, so a peer that stops reading (a
    stuck WebSocket subscriber) would block that connection, and the server's shutdown,
    forever. With `send_timeout`, TCP_USER_TIMEOUT (inherited by accepted sockets; on Linux
    it also covers a zero receive window) makes the kernel drop such a peer, which ends the
    blocked write.
    """
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
    except socket.gaierror as exc:
        raise OSError(f"cannot resolve {purpose} listen address {host!r}: {exc}") from exc
    family, kind, proto, _, address = infos[0]
    sock = socket.socket(family, kind, proto)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        if send_timeout is not None and hasattr(socket, "TCP_USER_TIMEOUT"):
            milliseconds = max(1, int(send_timeout * 1000))
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_USER_TIMEOUT, milliseconds)
        sock.bind(address)
    except OSError as exc:
        sock.close()
        raise OSError(exc.errno, f"cannot listen for {purpose} on {host}:{port}: {exc}") from exc
    return sock


class _PortStatus:
    """Turns hypercorn's started(binds) into started(port) for the caller."""

    def __init__(self, inner: trio.TaskStatus[int], port: int) -> None:
        self._inner = inner
        self._port = port

    def started(self, value: Any = None) -> None:
        self._inner.started(self._port)


async def serve_asgi(
    app: Any,
    sock: socket.socket,
    *,
    task_status: trio.TaskStatus[int] = trio.TASK_STATUS_IGNORED,
    graceful_timeout: float = 1.0,
    websocket_max_message_size: int | None = None,
    shutdown: trio.Event | None = None,
    certfile: str | None = None,
    keyfile: str | None = None,
) -> None:
    """Serve `app` on `sock` (hypercorn takes ownership) until cancelled or `shutdown` is set;
    TLS when a certificate and key are given."""
    port = sock.getsockname()[1]
    hyper = HypercornConfig()
    hyper.bind = [f"fd://{sock.detach()}"]  # hypercorn now owns (and closes) the socket
    if websocket_max_message_size is not None:
        hyper.websocket_max_message_size = websocket_max_message_size
    if certfile is not None and keyfile is not None:
        hyper.certfile = certfile
        hyper.keyfile = keyfile
    hyper.graceful_timeout = graceful_timeout
    hyper.accesslog = None
    hyper.errorlog = logging.getLogger("hypercorn.error")  # the node's logging config decides
    hyper.include_server_header = False
    await hypercorn_serve(
        app,
        hyper,
        shutdown_trigger=shutdown.wait if shutdown is not None else None,
        task_status=_PortStatus(task_status, port),  # type: ignore[arg-type]
        mode="asgi",
    )
