"""Keeps the configured static peers connected, redialling with capped exponential back-off."""

from __future__ import annotations

import random
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

import multiaddr
import structlog
import trio
from libp2p.peer.id import ID
from libp2p.peer.peerinfo import info_from_p2p_addr

log = structlog.get_logger("medledger.p2p")

INITIAL_BACKOFF = 0.5
DIAL_TIMEOUT = 10.0
STABLE_SECONDS = 5.0  # a connection that lived this long resets the back-off


class Signal:
    """A broadcast wake-up: `wait()` returns at the next `notify()`."""

    def __init__(self) -> None:
        self._event = trio.Event()

    def notify(self) -> None:
        self._event.set()
        self._event = trio.Event()

    async def wait(self) -> None:
        await self._event.wait()


@dataclass(frozen=True)
class StaticPeer:
    peer_id: ID
    addr: multiaddr.Multiaddr  # without the /p2p suffix
    spec: str  # as configured

    @classmethod
    def parse(cls, spec: str) -> StaticPeer:
        """A multiaddr ending in /p2p/<peer id>; ValueError naming the problem otherwise."""
        try:
            info = info_from_p2p_addr(multiaddr.Multiaddr(spec))
        except Exception as exc:
            raise ValueError(f"bad peer multiaddr {spec!r}: {exc}") from None
        if len(info.addrs) != 1:
            raise ValueError(f"peer multiaddr {spec!r} needs exactly one transport address")
        addr = info.addrs[0]
        names = [p.name for p in addr.protocols()]
        if names[1:] != ["tcp"] or names[0] not in ("ip4", "ip6", "dns4", "dns6"):
            raise ValueError(
                f"peer multiaddr {spec!r} must be /ip4|ip6|dns4|dns6/<host>/tcp/<port>/p2p/<id>"
            )
        return cls(info.peer_id, addr, spec)


class StaticPeerDialer:
    """One task per static peer: wait while connected, dial when not, back off on failure."""

    def __init__(
        self,
        *,
        is_connected: Callable[[str], bool],
        refusal: Callable[[str], str | None],
        dial: Callable[[ID, multiaddr.Multiaddr], Awaitable[None]],
        connections_changed: Signal,
        permissions_changed: Signal,
        max_backoff: float,
    ) -> None:
        self._is_connected = is_connected
        self._refusal = refusal
        self._dial = dial
        self._connections_changed = connections_changed
        self._permissions_changed = permissions_changed
        self._max_backoff = max_backoff
        self._peers: dict[str, StaticPeer] = {}
        self._scopes: dict[str, trio.CancelScope] = {}
        self._nursery: trio.Nursery | None = None

    @property
    def peers(self) -> dict[str, StaticPeer]:
        return dict(self._peers)

    def add(self, peer: StaticPeer) -> None:
        key = peer.peer_id.to_base58()
        self.remove(key)
        self._peers[key] = peer
        if self._nursery is not None:
            self._nursery.start_soon(self._keep_connected, peer)

    def remove(self, peer_id: str) -> bool:
        scope = self._scopes.pop(peer_id, None)
        if scope is not None:
            scope.cancel()
        return self._peers.pop(peer_id, None) is not None

    async def run(self) -> None:
        async with trio.open_nursery() as nursery:
            self._nursery = nursery
            for peer in self._peers.values():
                nursery.start_soon(self._keep_connected, peer)
            try:
                await trio.sleep_forever()
            finally:
                self._nursery = None
                nursery.cancel_scope.cancel()

    async def _keep_connected(self, peer: StaticPeer) -> None:
        key = peer.peer_id.to_base58()
        with trio.CancelScope() as scope:
            self._scopes[key] = scope
            try:
                await self._loop(key, peer)
            finally:
                if self._scopes.get(key) is scope:
                    del self._scopes[key]

    async def _loop(self, key: str, peer: StaticPeer) -> None:
        backoff = INITIAL_BACKOFF
        connected_at: float | None = None
        refused_logged: str | None = None
        while True:
            if self._is_connected(key):
                await self._connections_changed.wait()
                continue
            if connected_at is not None:
                # A connection that dropped soon after it was made counts as a failure, so a
                # peer that accepts and then hangs up is not redialled in a tight loop.
                stable = trio.current_time() - connected_at >= STABLE_SECONDS
                connected_at = None
                if stable:
                    backoff = INITIAL_BACKOFF
                else:
                    backoff = await self._pause(backoff)
            reason = self._refusal(key)
            if reason is not None:
                if reason != refused_logged:
                    log.info("not dialling static peer", peer=key, reason=reason)
                    refused_logged = reason
                with trio.move_on_after(min(backoff, self._max_backoff)):
                    await self._permissions_changed.wait()
                continue
            refused_logged = None
            try:
                with trio.fail_after(DIAL_TIMEOUT):
                    await self._dial(peer.peer_id, peer.addr)
            except Exception as exc:
                log.info(
                    "dial failed",
                    peer=key,
                    addr=str(peer.addr),
                    error=str(exc) or repr(exc),
                    retry_in=round(backoff, 2),
                )
                backoff = await self._pause(backoff)
            else:
                connected_at = trio.current_time()

    async def _pause(self, backoff: float) -> float:
        """Sleep about `backoff` seconds (with jitter); the next, doubled, capped back-off."""
        await trio.sleep(backoff * random.uniform(0.8, 1.2))
        return min(backoff * 2, self._max_backoff)
