"""The partition proxy relays bytes both ways, and a cut drops live and new connections."""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator

import pytest

from node.chaos.proxy import PartitionProxy


class EchoServer(threading.Thread):
    """A loopback TCP server that echoes every byte back."""

    def __init__(self) -> None:
        super().__init__(daemon=True)
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = self.listener.getsockname()[1]

    def run(self) -> None:
        while True:
            try:
                conn, _ = self.listener.accept()
            except OSError:
                return
            threading.Thread(target=self._echo, args=(conn,), daemon=True).start()

    @staticmethod
    def _echo(conn: socket.socket) -> None:
        with conn:
            while data := conn.recv(4096):
                conn.sendall(data)


@pytest.fixture
def proxy() -> Iterator[PartitionProxy]:
    servers = [EchoServer() for _ in range(3)]
    for server in servers:
        server.start()
    proxy = PartitionProxy([s.port for s in servers])
    proxy.start()
    try:
        yield proxy
    finally:
        proxy.close()
        for server in servers:
            server.listener.close()


def _echo(port: int, payload: bytes) -> bytes:
    with socket.create_connection(("127.0.0.1", port), timeout=5) as conn:
        conn.sendall(payload)
        received = b""
        while len(received) < len(payload):
            try:
                chunk = conn.recv(65536)
            except ConnectionResetError:  # the proxy refused the connection
                break
            if not chunk:
                break
            received += chunk
        return received


def _closed_by_peer(conn: socket.socket, timeout: float = 5.0) -> bool:
    conn.settimeout(timeout)
    try:
        return conn.recv(1) == b""
    except ConnectionResetError:
        return True


def test_relays_until_cut_then_heals(proxy: PartitionProxy) -> None:
    payload = bytes(range(256)) * 1000
    assert _echo(proxy.port(0, 1), payload) == payload
    assert len({proxy.port(a, b) for a in range(3) for b in range(3) if a != b}) == 6

    live = socket.create_connection(("127.0.0.1", proxy.port(0, 1)), timeout=5)
    live.sendall(b"ping")
    assert live.recv(4) == b"ping"
    proxy.isolate(1)
    assert proxy.cut_pairs() == {frozenset((0, 1)), frozenset((1, 2))}
    assert _closed_by_peer(live)  # the live connection was dropped
    live.close()
    for src, dst in ((0, 1), (1, 0), (2, 1), (1, 2)):
        assert _echo(proxy.port(src, dst), b"x") == b"", f"{src}->{dst} still open"
    assert _echo(proxy.port(0, 2), b"still up") == b"still up"

    proxy.heal_all()
    assert proxy.cut_pairs() == set()
    assert _echo(proxy.port(1, 0), b"healed") == b"healed"


def test_split_cuts_only_across_sides(proxy: PartitionProxy) -> None:
    proxy.split([0], [1, 2])
    time.sleep(0.05)
    assert _echo(proxy.port(1, 2), b"same side") == b"same side"
    assert _echo(proxy.port(0, 2), b"across") == b""
