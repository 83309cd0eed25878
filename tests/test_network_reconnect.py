"""Static peers stay connected: a restarted peer is redialled with back-off."""

from __future__ import annotations

import time

import pytest
import trio
import trio.testing

from network import NetworkError, peer_id_from_secret
from network.dialer import Signal, StaticPeer, StaticPeerDialer
from tests.test_network_harness import (
    WAIT,
    Collector,
    FakeChain,
    Runner,
    allow,
    connected,
    make_node,
    new_key,
    trio_test,
    wait_mesh,
    wait_until,
)


@trio_test
async def test_dialer_reconnects_to_a_restarted_peer() -> None:
    ka, kb = new_key(), new_key()
    allowlist = allow(ka, kb)
    async with trio.open_nursery() as nursery:
        runner = Runner(nursery)
        b = await runner.start(make_node(kb, allowlist))
        b_addrs = list(b.listen_addrs)
        port = int(b_addrs[0].split("/tcp/")[1].split("/")[0])
        a = await runner.start(
            make_node(ka, allowlist, static_peers=(b_addrs[0],), reconnect_max_backoff=2.0)
        )
        with trio.fail_after(WAIT):
            await a.wait_connected(b.peer_id)

        # B goes away (as in a crash or a restart); A notices.
        await runner.stop(b)
        assert b.listen_addrs == [] and b.peers() == []
        with pytest.raises(OSError):  # the stopped node no longer listens
            await trio.open_tcp_stream("127.0.0.1", port)
        await wait_until(lambda: a.peers() == [])
        await trio.sleep(1.0)  # A's dialer fails a few times meanwhile

        # B comes back on the same port with the same key and no static peers of its own:
        # only A's dialer can restore the connection.
        chain = FakeChain({0: b"genesis-block", 1: b"block-1"})
        restarted = await runner.start(make_node(kb, allowlist, chain, port=port))
        assert restarted.peer_id == b.peer_id and restarted.listen_addrs == b_addrs
        started = time.monotonic()
        with trio.fail_after(10):
            await a.wait_connected(b.peer_id)
        assert time.monotonic() - started < 5  # the back-off is capped at 2 s here
        (info,) = a.peers()
        assert info.static and info.status is not None and info.status.head_number == 1

        # Gossip and sync work on the new connection.
        at_b = Collector()
        restarted.set_handler("block", at_b)
        await wait_mesh([a, restarted], kinds=("block",))
        await a.publish("block", b"after restart")
        await at_b.wait_for(b"after restart")
        assert await a.request_blocks(b.peer_id, 1, 1) == [b"block-1"]
        nursery.cancel_scope.cancel()


@trio_test
async def test_add_and_remove_peer_at_runtime() -> None:
    ka, kb = new_key(), new_key()
    allowlist = allow(ka, kb)
    async with trio.open_nursery() as nursery:
        runner = Runner(nursery)
        b = await runner.start(make_node(kb, allowlist))
        a = await runner.start(make_node(ka, allowlist))
        assert a.peers() == []
        await a.add_peer(b.listen_addrs[0])
        with trio.fail_after(WAIT):
            await a.wait_connected(b.peer_id)
        await a.remove_peer(b.peer_id)
        await wait_until(lambda: not connected(a, b) and not connected(b, a))
        await trio.sleep(1.0)  # no longer a static peer: not redialled
        assert a.peers() == [] and b.peers() == []
        for bad in (
            "/ip4/127.0.0.1/tcp/1",  # no /p2p
            a.listen_addrs[0],  # itself
            "/ip4/127.0.0.1/udp/1/p2p/" + b.peer_id,  # not tcp
            "not a multiaddr",
        ):
            try:
                await a.add_peer(bad)
            except ValueError:
                continue
            raise AssertionError(f"add_peer accepted {bad!r}")
        nursery.cancel_scope.cancel()


def test_dialer_backs_off_exponentially_up_to_the_cap() -> None:
    attempts: list[float] = []

    async def failing_dial(peer_id: object, addr: object) -> None:
        attempts.append(trio.current_time())
        raise OSError("connection refused")

    async def main() -> None:
        dialer = StaticPeerDialer(
            is_connected=lambda _peer: False,
            refusal=lambda _peer: None,
            dial=failing_dial,
            connections_changed=Signal(),
            permissions_changed=Signal(),
            max_backoff=30.0,
        )
        dialer.add(StaticPeer.parse(f"/ip4/127.0.0.1/tcp/9/p2p/{peer_id_from_secret(new_key())}"))
        with trio.move_on_after(200):
            await dialer.run()

    trio.run(main, clock=trio.testing.MockClock(autojump_threshold=0))
    gaps = [later - earlier for earlier, later in zip(attempts, attempts[1:], strict=False)]
    expected = [0.5, 1, 2, 4, 8, 16, 30, 30, 30]
    assert len(gaps) >= len(expected)
    for gap, nominal in zip(gaps, expected, strict=False):
        assert nominal * 0.8 <= gap <= nominal * 1.2


@trio_test
async def test_a_taken_port_is_an_error_not_a_shared_listener() -> None:
    # py-libp2p listens with SO_REUSEPORT: without the check a second node would "start" and
    # share the port, the kernel splitting incoming connections between the two.
    ka, kb = new_key(), new_key()
    async with trio.open_nursery() as nursery:
        a = await Runner(nursery).start(make_node(ka, allow(ka)))
        port = int(a.listen_addrs[0].split("/tcp/")[1].split("/")[0])
        with pytest.raises(NetworkError, match="Address already in use"):
            await make_node(kb, allow(kb), port=port).run()
        nursery.cancel_scope.cancel()


@trio_test
async def test_a_restarted_node_is_heard_even_after_a_burst_before_its_restart() -> None:
    # Message ids are (origin, seqno). py-libp2p starts seqnos at the wall-clock second and
    # adds one per message: after a burst, a restarted node would reuse seqnos its peer still
    # holds as seen, and everything it published would be dropped for minutes.
    ka, kb = new_key(), new_key()
    allowlist = allow(ka, kb)
    async with trio.open_nursery() as nursery:
        runner = Runner(nursery)
        b = await runner.start(make_node(kb, allowlist))
        b_addr = b.listen_addrs[0]
        port = int(b_addr.split("/tcp/")[1].split("/")[0])
        a = await runner.start(
            make_node(ka, allowlist, static_peers=(b_addr,), reconnect_max_backoff=1.0)
        )
        at_a = Collector()
        a.set_handler("tx", at_a)
        await wait_mesh([a, b], kinds=("tx",))
        for n in range(200):
            await b.publish("tx", b"before %d" % n)
        await at_a.wait_for(b"before 199")

        await runner.stop(b)
        await wait_until(lambda: a.peers() == [])
        restarted = await runner.start(make_node(kb, allowlist, port=port))
        with trio.fail_after(WAIT):
            await a.wait_connected(restarted.peer_id)
        await wait_mesh([a, restarted], kinds=("tx",))
        await restarted.publish("tx", b"after restart")
        await at_a.wait_for(b"after restart")
        nursery.cancel_scope.cancel()
