"""Permissioning between real nodes: only allow-listed secp256k1 identities get a connection."""

from __future__ import annotations

import multiaddr
import pytest
import trio
from libp2p import new_host
from libp2p.crypto.ed25519 import create_new_key_pair as new_ed25519_key_pair
from libp2p.crypto.x25519 import create_new_key_pair as new_x25519_key_pair
from libp2p.peer.peerinfo import info_from_p2p_addr
from libp2p.security.noise.transport import PROTOCOL_ID as NOISE_PROTOCOL_ID
from libp2p.security.noise.transport import Transport as NoiseTransport
from libp2p.stream_muxer.yamux.yamux import PROTOCOL_ID as YAMUX_PROTOCOL_ID
from libp2p.stream_muxer.yamux.yamux import Yamux

from genesis.schema import Genesis, QbftParams
from network import AllowList, address_from_secret
from network.dialer import StaticPeer
from tests.test_network_harness import (
    Collector,
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
async def test_outsider_cannot_connect_either_way_nor_inject_gossip() -> None:
    ka, kb, kc, kx = new_key(), new_key(), new_key(), new_key()
    members = allow(ka, kb, kc)  # C is a member that is offline
    async with trio.open_nursery() as nursery:
        runner = Runner(nursery)
        a = await runner.start(make_node(ka, members))
        b = await runner.start(make_node(kb, members, static_peers=(a.listen_addrs[0],)))
        # The outsider allows everyone itself and has A as a static peer (inbound to A).
        x = await runner.start(make_node(kx, allow(ka, kb, kx), static_peers=(a.listen_addrs[0],)))
        at_a = Collector()
        a.set_handler("tx", at_a)
        await wait_mesh([a, b], kinds=("tx",))  # an allowed node can

        # Outbound from A: the dialer refuses to dial an address it would not admit...
        await a.add_peer(x.listen_addrs[0])
        # ...and an impersonation (member C's peer id at X's address) fails in the handshake.
        c_peer_id = make_node(kc, members).peer_id
        await b.add_peer(x.listen_addrs[0].split("/p2p/")[0] + "/p2p/" + c_peer_id)
        # Even a direct dial past the dialer's check is refused by A's handshake gate.
        target = StaticPeer.parse(x.listen_addrs[0])
        with pytest.raises(Exception, match="security"):  # noqa: B017 - libp2p's dial error
            await a._dial(target.peer_id, target.addr)
        await trio.sleep(1.5)
        for node in (a, b):
            assert not connected(node, x) and not connected(x, node)
        assert x.peers() == []

        await x.publish("tx", b"from outsider")
        await b.publish("tx", b"from member")
        await at_a.wait_for(b"from member")
        await trio.sleep(0.2)
        assert at_a.payloads() == [b"from member"]
        nursery.cancel_scope.cancel()


@trio_test
async def test_refusal_applies_to_a_node_not_allowing_us() -> None:
    # X is on A's list, A is not on X's: A's dial reaches X and X's gate refuses it (inbound).
    ka, kx = new_key(), new_key()
    async with trio.open_nursery() as nursery:
        runner = Runner(nursery)
        x = await runner.start(make_node(kx, allow(kx)))
        a = await runner.start(make_node(ka, allow(ka, kx), static_peers=(x.listen_addrs[0],)))
        await trio.sleep(1.0)
        assert not connected(a, x) and not connected(x, a)
        nursery.cancel_scope.cancel()


@trio_test
async def test_non_secp256k1_identity_is_refused() -> None:
    ka = new_key()
    async with trio.open_nursery() as nursery:
        a = await Runner(nursery).start(make_node(ka, allow(ka)))
        key_pair = new_ed25519_key_pair()
        listen = multiaddr.Multiaddr("/ip4/127.0.0.1/tcp/0")
        stranger = new_host(
            key_pair=key_pair,
            sec_opt={
                NOISE_PROTOCOL_ID: NoiseTransport(
                    key_pair, noise_privkey=new_x25519_key_pair().private_key
                )
            },
            muxer_opt={YAMUX_PROTOCOL_ID: Yamux},  # type: ignore[dict-item]
            listen_addrs=[listen],
        )
        async with stranger.run([listen]):
            with pytest.raises(Exception), trio.fail_after(10):  # noqa: B017 - libp2p's dial error
                await stranger.connect(info_from_p2p_addr(multiaddr.Multiaddr(a.listen_addrs[0])))
            assert a.peers() == []
            assert not stranger.get_network().get_connections()
            # A will not dial it either: its peer id carries no secp256k1 key.
            await a.add_peer(str(stranger.get_addrs()[0]))
            await trio.sleep(0.5)
            assert a.peers() == []
        nursery.cancel_scope.cancel()


@trio_test
async def test_replacing_the_allowlist_drops_and_readmits_peers() -> None:
    ka, kb = new_key(), new_key()
    allowlist_a = allow(ka, kb)
    async with trio.open_nursery() as nursery:
        runner = Runner(nursery)
        a = await runner.start(make_node(ka, allowlist_a))
        b = await runner.start(make_node(kb, allow(ka, kb), static_peers=(a.listen_addrs[0],)))
        await wait_until(lambda: connected(a, b))
        at_a = Collector()
        a.set_handler("qbft", at_a)

        # B is removed on chain: A drops it at once, and refuses B's redials.
        allowlist_a.replace([address_from_secret(ka)])
        await wait_until(lambda: not connected(a, b) and not connected(b, a))
        await trio.sleep(1.0)
        assert not connected(a, b)

        # B is added back: B's dialer (backing off) gets in again.
        allowlist_a.replace([address_from_secret(ka), address_from_secret(kb)])
        await wait_until(lambda: connected(a, b))
        await wait_mesh([a, b], kinds=("qbft",))
        await b.publish("qbft", b"back")
        await at_a.wait_for(b"back")
        nursery.cancel_scope.cancel()


def test_allowlist_validation_and_listeners() -> None:
    first, second = b"\x01" * 20, b"\x02" * 20
    allowlist = AllowList([first])
    calls: list[int] = []
    unsubscribe = allowlist.subscribe(lambda: calls.append(len(allowlist)))
    assert first in allowlist and second not in allowlist
    allowlist.replace([first, second])
    allowlist.replace([second, first])  # same set: no notification
    assert calls == [2]
    with pytest.raises(ValueError, match="20-byte"):
        allowlist.replace([first, b"\x03" * 19])
    assert allowlist.addresses() == {first, second}  # a bad replacement changes nothing
    with pytest.raises(TypeError):
        AllowList(first)  # type: ignore[arg-type]
    unsubscribe()
    allowlist.replace([])
    assert calls == [2] and len(allowlist) == 0


def test_allowlist_from_genesis() -> None:
    validators = (b"\x11" * 20, b"\x22" * 20)
    auditor = b"\xaa" * 20
    genesis = Genesis(
        1337, validators, QbftParams(), {}, {}, node_allowlist=(auditor, validators[0])
    )
    assert AllowList.from_genesis(genesis).addresses() == {*validators, auditor}
