"""Loopback TCP proxies between devnet nodes, so a test can cut and heal links at will.

Every node dials each peer through its own proxy port (one proxy per directed pair), so
all traffic between two nodes crosses one of the two proxies of that pair. Cutting a pair
closes its live connections and refuses new ones until it is healed; libp2p then sees the
peer as gone and its dialer retries with back-off, as on a real network fault.
The proxies run on a trio loop in a background thread; the controller is synchronous.
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Iterable
from dataclasses import dataclass, field

import trio

BUFFER_BYTES = 64 * 1024


@dataclass
class _Link:
    """Traffic from node `src` to node `dst` (src dials dst's real port via `port`)."""

    src: int
    dst: int
    upstream_port: int
    port: int = 0
    cut: bool = False
    scopes: set[trio.CancelScope] = field(default_factory=set)
    connections: int = 0


class PartitionProxy:
    """Proxies for `count` nodes whose real P2P ports are `ports` (node index -> port)."""

    def __init__(self, ports: list[int], host: str = "127.0.0.1") -> None:
        self.host = host
        self._links: dict[tuple[int, int], _Link] = {
            (a, b): _Link(a, b, ports[b])
            for a in range(len(ports)) for b in range(len(ports)) if a != b
        }
        self._token: trio.lowlevel.TrioToken | None = None
        self._stop: trio.Event | None = None
        self._thread: threading.Thread | None = None
        self._ready = threading.Event()
        self._error: BaseException | None = None

    # -- lifetime ------------------------------------------------------------------------

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run_thread, name="chaos-proxy", daemon=True)
        self._thread.start()
        if not self._ready.wait(30):
            raise RuntimeError("the partition proxy did not start")
        if self._error is not None:
            raise RuntimeError(f"the partition proxy failed: {self._error!r}")

    def close(self) -> None:
        if self._token is not None and self._stop is not None:
            with contextlib.suppress(trio.RunFinishedError):
                trio.from_thread.run_sync(self._stop.set, trio_token=self._token)
        if self._thread is not None:
            self._thread.join(10)

    def port(self, src: int, dst: int) -> int:
        """The port `src` must dial to reach `dst`."""
        return self._links[(src, dst)].port

    # -- faults --------------------------------------------------------------------------

    def cut(self, pairs: Iterable[tuple[int, int]]) -> None:
        """Cut both directions of every pair (a, b)."""
        self._call(self._set_cut, list(pairs), True)

    def heal_all(self) -> None:
        self._call(self._set_cut, list(self._links), False)

    def isolate(self, node: int) -> None:
        self.cut((node, other) for other in self._nodes() if other != node)

    def split(self, side_a: Iterable[int], side_b: Iterable[int]) -> None:
        b = list(side_b)
        self.cut((a, x) for a in side_a for x in b)

    def cut_pairs(self) -> set[frozenset[int]]:
        return {frozenset((link.src, link.dst)) for link in self._links.values() if link.cut}

    def _nodes(self) -> list[int]:
        return sorted({src for src, _ in self._links})

    # -- trio side -----------------------------------------------------------------------

    def _call(self, fn: object, *args: object) -> None:
        if self._token is None:
            raise RuntimeError("the partition proxy is not running")
        trio.from_thread.run_sync(fn, *args, trio_token=self._token)  # type: ignore[arg-type]

    def _set_cut(self, pairs: list[tuple[int, int]], cut: bool) -> None:
        for a, b in pairs:
            for key in ((a, b), (b, a)):
                link = self._links[key]
                link.cut = cut
                if cut:
                    for scope in list(link.scopes):
                        scope.cancel()

    def _run_thread(self) -> None:
        try:
            trio.run(self._main)
        except BaseException as exc:  # reported to start() / close()
            self._error = exc
            self._ready.set()

    async def _main(self) -> None:
        self._token = trio.lowlevel.current_trio_token()
        self._stop = trio.Event()
        async with trio.open_nursery() as nursery:
            for link in self._links.values():
                listeners = await trio.open_tcp_listeners(0, host=self.host)
                link.port = listeners[0].socket.getsockname()[1]
                nursery.start_soon(self._serve, link, listeners[0])
            self._ready.set()
            await self._stop.wait()
            nursery.cancel_scope.cancel()

    async def _serve(self, link: _Link, listener: trio.SocketListener) -> None:
        async with listener, trio.open_nursery() as nursery:
            while True:
                stream = await listener.accept()
                if link.cut:
                    await stream.aclose()
                    continue
                nursery.start_soon(self._relay, link, stream)

    async def _relay(self, link: _Link, downstream: trio.SocketStream) -> None:
        upstream: trio.SocketStream | None = None
        with trio.CancelScope() as scope:
            link.scopes.add(scope)
            link.connections += 1
            try:
                upstream = await trio.open_tcp_stream(self.host, link.upstream_port)
                async with trio.open_nursery() as nursery:
                    nursery.start_soon(self._pump, downstream, upstream, nursery.cancel_scope)
                    nursery.start_soon(self._pump, upstream, downstream, nursery.cancel_scope)
            except OSError:
                pass  # the destination node is down: the dialer sees a closed connection
            finally:
                link.scopes.discard(scope)
        with trio.CancelScope(shield=True):
            for stream in (downstream, upstream):
                if stream is not None:
                    await trio.aclose_forcefully(stream)

    @staticmethod
    async def _pump(
        source: trio.SocketStream, sink: trio.SocketStream, done: trio.CancelScope
    ) -> None:
        try:
            while True:
                data = await source.receive_some(BUFFER_BYTES)
                if not data:
                    break
                await sink.send_all(data)
        except (trio.BrokenResourceError, trio.ClosedResourceError, OSError):
            pass
        done.cancel()  # one side ended: the connection is over in both directions
