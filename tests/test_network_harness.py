"""Shared harness for the network tests: real P2P nodes on 127.0.0.1 driven by trio.

Imported by the other tests/test_network_*.py modules; its own tests check the harness itself.
"""

from __future__ import annotations

import functools
import os
from collections.abc import Callable, Coroutine
from dataclasses import dataclass, field
from typing import Any

import trio

from network import (
    AllowList,
    ChainStatus,
    NetworkConfig,
    P2PNode,
    Validation,
    address_from_secret,
)

CHAIN_ID = 1337
GENESIS = b"\x01" * 32
OTHER_GENESIS = b"\x02" * 32
LOOPBACK = "/ip4/127.0.0.1/tcp/"
WAIT = 15.0  # upper bound for anything to happen; typically milliseconds (shared 2-core CI)


def trio_test(fn: Callable[..., Coroutine[Any, Any, None]]) -> Callable[..., None]:
    """Run an async test under trio (pytest-trio is not a dependency)."""

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> None:
        trio.run(functools.partial(fn, *args, **kwargs))

    return wrapper


class FakeChain:
    """A real SyncProvider over a dict of block number -> raw block bytes."""

    def __init__(
        self,
        blocks: dict[int, bytes] | None = None,
        *,
        chain_id: int = CHAIN_ID,
        genesis_hash: bytes = GENESIS,
        delay: float = 0.0,
    ) -> None:
        self.chain = dict(blocks if blocks is not None else {0: b"genesis-block"})
        self.chain_id = chain_id
        self.genesis_hash = genesis_hash
        self.delay = delay
        self.block_calls: list[tuple[int, int]] = []

    async def status(self) -> ChainStatus:
        head = max(self.chain)
        return ChainStatus(self.chain_id, self.genesis_hash, head, bytes([head % 256]) * 32)

    async def blocks(self, start: int, count: int) -> list[bytes]:
        self.block_calls.append((start, count))
        if self.delay:
            await trio.sleep(self.delay)
        result = []
        for number in range(start, start + count):
            if number not in self.chain:
                break
            result.append(self.chain[number])
        return result


@dataclass
class Collector:
    """A gossip handler that records what it sees and answers with a configurable verdict."""

    verdict: Callable[[bytes], Validation] = lambda _payload: Validation.ACCEPT
    seen: list[tuple[str, bytes]] = field(default_factory=list)
    _changed: trio.Event = field(default_factory=trio.Event)

    async def __call__(self, sender: str, payload: bytes) -> Validation:
        self.seen.append((sender, payload))
        self._changed.set()
        self._changed = trio.Event()
        return self.verdict(payload)

    def payloads(self) -> list[bytes]:
        return [payload for _, payload in self.seen]

    async def wait_for(self, payload: bytes, timeout: float = WAIT) -> str:
        """The sender of `payload` once it has arrived."""
        with trio.fail_after(timeout):
            while True:
                for sender, seen in self.seen:
                    if seen == payload:
                        return sender
                await self._changed.wait()


def new_key() -> bytes:
    return os.urandom(32)


def make_node(
    key: bytes,
    allowlist: AllowList,
    chain: FakeChain | None = None,
    *,
    static_peers: tuple[str, ...] = (),
    port: int = 0,
    genesis_hash: bytes = GENESIS,
    **tuning: Any,
) -> P2PNode:
    for spec in static_peers:
        assert spec.startswith(LOOPBACK), f"tests dial loopback only, not {spec}"
    config = NetworkConfig(
        chain_id=CHAIN_ID,
        genesis_hash=genesis_hash,
        listen_host="127.0.0.1",
        listen_port=port,
        static_peers=static_peers,
        **tuning,
    )
    provider = chain if chain is not None else FakeChain(genesis_hash=genesis_hash)
    return P2PNode(config, key, allowlist, provider)


def allow(*keys: bytes) -> AllowList:
    return AllowList(address_from_secret(key) for key in keys)


class Runner:
    """Starts nodes in a nursery and stops them individually (as a crash or shutdown would)."""

    def __init__(self, nursery: trio.Nursery) -> None:
        self._nursery = nursery
        self._scopes: dict[int, tuple[trio.CancelScope, trio.Event]] = {}

    async def start(self, node: P2PNode) -> P2PNode:
        scope = trio.CancelScope()
        stopped = trio.Event()

        async def run(task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
            try:
                with scope:
                    await node.run(task_status=task_status)
            finally:
                stopped.set()

        await self._nursery.start(run)
        self._scopes[id(node)] = (scope, stopped)
        assert node.listen_addrs and all(a.startswith(LOOPBACK) for a in node.listen_addrs)
        return node

    async def stop(self, node: P2PNode) -> None:
        scope, stopped = self._scopes.pop(id(node))
        scope.cancel()
        with trio.fail_after(10):
            await stopped.wait()


async def wait_until(predicate: Callable[[], bool], timeout: float = WAIT) -> None:
    with trio.fail_after(timeout):
        while not predicate():
            await trio.sleep(0.02)


async def wait_mesh(nodes: list[P2PNode], kinds: tuple[str, ...] = ("tx", "qbft", "block")) -> None:
    """Until each node has each of its connected peers in its gossip mesh for `kinds`."""

    def ready() -> bool:
        for node in nodes:
            peers = {p.peer_id for p in node.peers()}
            if not peers:
                return False
            for kind in kinds:
                if not peers <= node.gossip_peers(kind):
                    return False
        return True

    await wait_until(ready)


def connected(a: P2PNode, b: P2PNode) -> bool:
    return b.peer_id in {p.peer_id for p in a.peers()}


@trio_test
async def test_harness_nodes_listen_on_loopback_and_handshake() -> None:
    ka, kb = new_key(), new_key()
    allowlist = allow(ka, kb)
    async with trio.open_nursery() as nursery:
        runner = Runner(nursery)
        a = await runner.start(make_node(ka, allowlist))
        b = await runner.start(make_node(kb, allowlist, static_peers=(a.listen_addrs[0],)))
        with trio.fail_after(WAIT):
            await b.wait_connected(a.peer_id)
        (peer,) = b.peers()
        assert peer.peer_id == a.peer_id
        assert peer.address == address_from_secret(ka) == a.address
        assert peer.direction == "outbound" and peer.static
        assert peer.addrs == (a.listen_addrs[0].split("/p2p/")[0],)
        assert peer.status is not None and peer.status.genesis_hash == GENESIS
        await wait_until(lambda: connected(a, b))
        (back,) = a.peers()
        assert back.direction == "inbound" and not back.static
        nursery.cancel_scope.cancel()
