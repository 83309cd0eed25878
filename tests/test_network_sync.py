"""The /medledger/sync/1 protocol between real nodes: handshake, block download, limits, abuse."""

from __future__ import annotations

import struct

import pytest
import rlp
import trio
from libp2p.peer.id import ID

from network import (
    MAX_BLOCKS_PER_REQUEST,
    ChainMismatchError,
    ChainStatus,
    NotRunningError,
    P2PNode,
    PeerNotConnectedError,
    SyncError,
)
from network.codec import (
    MAX_REQUEST_BYTES,
    BlocksRequest,
    ErrorReply,
    StatusRequest,
    decode_reply,
    decode_request,
    encode_request,
)
from network.scoring import PENALTY_MALFORMED
from network.sync import MAX_RESPONSE_BYTES, SYNC_PROTOCOL, read_frame, write_frame
from tests.test_network_harness import (
    CHAIN_ID,
    GENESIS,
    OTHER_GENESIS,
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


def numbered_chain(head: int, size: int = 16) -> FakeChain:
    return FakeChain({n: b"block-%d|" % n + b"\x00" * size for n in range(head + 1)})


async def pair(
    runner: Runner,
    server_chain: FakeChain,
    client_chain: FakeChain | None = None,
    **tuning: object,
) -> tuple[P2PNode, P2PNode]:
    """A serving node and a client that has it as a static peer, connected and handshaken."""
    ks, kc = new_key(), new_key()
    allowlist = allow(ks, kc)
    server = await runner.start(make_node(ks, allowlist, server_chain, **tuning))
    client = await runner.start(
        make_node(kc, allowlist, client_chain, static_peers=(server.listen_addrs[0],), **tuning)
    )
    with trio.fail_after(WAIT):
        await client.wait_connected(server.peer_id)
        await server.wait_connected(client.peer_id)
    return server, client


async def raw_sync_stream(node: P2PNode, peer: P2PNode):  # type: ignore[no-untyped-def]
    return await node._host.new_stream(ID.from_base58(peer.peer_id), [SYNC_PROTOCOL])  # type: ignore[union-attr]


@trio_test
async def test_status_and_blocks() -> None:
    server_chain = numbered_chain(300)
    async with trio.open_nursery() as nursery:
        server, client = await pair(Runner(nursery), server_chain)
        status = await client.request_status(server.peer_id)
        assert status == await server_chain.status()
        assert status.head_number == 300
        # The handshake at connect time already recorded both statuses.
        (info,) = client.peers()
        assert info.status == status
        blocks = await client.request_blocks(server.peer_id, 5, 3)
        assert blocks == [server_chain.chain[5], server_chain.chain[6], server_chain.chain[7]]
        # Past the head: what the peer has, possibly nothing.
        assert await client.request_blocks(server.peer_id, 299, 10) == [
            server_chain.chain[299],
            server_chain.chain[300],
        ]
        assert await client.request_blocks(server.peer_id, 1000, 5) == []
        # The node asks for at most 128 blocks per request.
        full = await client.request_blocks(server.peer_id, 0, MAX_BLOCKS_PER_REQUEST)
        assert full == [server_chain.chain[n] for n in range(MAX_BLOCKS_PER_REQUEST)]
        for start, count in ((0, 0), (0, MAX_BLOCKS_PER_REQUEST + 1), (-1, 1)):
            with pytest.raises(ValueError):
                await client.request_blocks(server.peer_id, start, count)
        # Requests never dial: an unknown peer is an error, not a connection attempt.
        stranger = make_node(new_key(), allow()).peer_id
        with pytest.raises(PeerNotConnectedError):
            await client.request_status(stranger)
        with pytest.raises(SyncError, match="not a peer id"):
            await client.request_status("not-a-peer")
        nursery.cancel_scope.cancel()
    with pytest.raises(NotRunningError):
        await client.request_status(server.peer_id)


@trio_test
async def test_response_byte_budget_and_misbehaving_provider() -> None:
    # 1.5 MiB blocks: the 8 MiB budget fits 5, the first block is always sent.
    big = {n: bytes([n]) * (1536 * 1024) for n in range(10)}
    server_chain = FakeChain(big)
    async with trio.open_nursery() as nursery:
        server, client = await pair(Runner(nursery), server_chain)
        blocks = await client.request_blocks(server.peer_id, 0, 10)
        assert blocks == [big[n] for n in range(5)]
        assert sum(map(len, blocks)) <= MAX_RESPONSE_BYTES
        # A provider returning more than asked is trimmed; one returning junk is an error reply.
        server_chain.chain = {n: b"b%d" % n for n in range(200)}
        assert len(await client.request_blocks(server.peer_id, 0, 2)) == 2

        async def broken_blocks(start: int, count: int) -> list[bytes]:
            return ["not bytes"]  # type: ignore[list-item]

        server_chain.blocks = broken_blocks  # type: ignore[method-assign]
        with pytest.raises(SyncError, match="refused blocks: internal error"):
            await client.request_blocks(server.peer_id, 0, 2)
        # The server survives its provider's bug and keeps serving.
        assert (await client.request_status(server.peer_id)).head_number == 199
        nursery.cancel_scope.cancel()


class BrokenChain(FakeChain):
    async def status(self) -> ChainStatus:
        raise RuntimeError("database closed")


@trio_test
async def test_a_failing_local_provider_does_not_crash_the_node() -> None:
    # The client's own chain fails: its connect-time handshake fails quietly, explicit calls
    # see the provider's error, the server answers "internal error", and both keep running.
    async with trio.open_nursery() as nursery:
        runner = Runner(nursery)
        server = await runner.start(make_node(new_key(), allow(), BrokenChain()))
        assert server.listen_addrs
        nursery.cancel_scope.cancel()
    async with trio.open_nursery() as nursery:
        server, client = await pair(Runner(nursery), numbered_chain(2), BrokenChain())
        with pytest.raises(RuntimeError, match="database closed"):
            await client.request_status(server.peer_id)
        with pytest.raises(SyncError, match="status handshake required"):
            await client.request_blocks(server.peer_id, 0, 1)
        # The server asks the client for its status: the client replies "internal error".
        with pytest.raises(SyncError, match="internal error"):
            await server.request_status(client.peer_id)
        assert connected(client, server)
        nursery.cancel_scope.cancel()


@trio_test
async def test_mismatched_genesis_disconnects_both_ways() -> None:
    ka, kb = new_key(), new_key()
    allowlist = allow(ka, kb)
    async with trio.open_nursery() as nursery:
        runner = Runner(nursery)
        a = await runner.start(make_node(ka, allowlist))
        b = await runner.start(
            make_node(kb, allowlist, static_peers=(a.listen_addrs[0],), genesis_hash=OTHER_GENESIS)
        )
        # The connect-time handshake finds the mismatch and both sides drop and ban the peer.
        await wait_until(lambda: b.scores.ban_remaining(a.peer_id) > 0)
        await wait_until(lambda: a.scores.ban_remaining(b.peer_id) > 0)
        await wait_until(lambda: not connected(a, b) and not connected(b, a))
        # B's dialer does not hammer A while the ban lasts.
        await trio.sleep(0.5)
        assert not connected(a, b)
        nursery.cancel_scope.cancel()


@trio_test
async def test_request_status_reports_chain_mismatch() -> None:
    # The server's chain reports a different chain id than its (and our) config: a node whose
    # provider and config disagree is treated as on another chain.
    wrong = FakeChain(chain_id=CHAIN_ID + 1)
    async with trio.open_nursery() as nursery:
        server, client = await pair(Runner(nursery), FakeChain())
        server._provider = wrong  # type: ignore[attr-defined]
        server._sync._provider = wrong  # type: ignore[union-attr]
        with pytest.raises(ChainMismatchError, match="chain id 1338"):
            await client.request_status(server.peer_id)
        await wait_until(lambda: not connected(client, server))
        nursery.cancel_scope.cancel()


@trio_test
async def test_blocks_require_the_status_handshake() -> None:
    async with trio.open_nursery() as nursery:
        server, client = await pair(Runner(nursery), numbered_chain(3))
        server._sync.forget(client.peer_id)  # type: ignore[union-attr]
        with pytest.raises(SyncError, match="status handshake required"):
            await client.request_blocks(server.peer_id, 0, 1)
        await client.request_status(server.peer_id)
        assert len(await client.request_blocks(server.peer_id, 0, 1)) == 1
        nursery.cancel_scope.cancel()


@trio_test
async def test_garbage_on_the_sync_stream_does_not_crash_the_server() -> None:
    async with trio.open_nursery() as nursery:
        server, client = await pair(Runner(nursery), numbered_chain(3), request_timeout=0.5)
        at_server = Collector()
        server.set_handler("tx", at_server)

        # 1. A valid frame holding garbage RLP: error reply, sender penalised.
        stream = await raw_sync_stream(client, server)
        await write_frame(stream, b"\xff\x00garbage", 1)
        reply = decode_reply(await read_frame(stream, 1024, 1))
        assert reply == ErrorReply("malformed request")
        assert server.scores.score(client.peer_id) == pytest.approx(-PENALTY_MALFORMED, abs=0.5)
        # 2. A frame announcing 4 GiB: refused before reading the body.
        stream = await raw_sync_stream(client, server)
        await stream.write(struct.pack(">I", 0xFFFFFFFF) + b"x" * 100)
        reply = decode_reply(await read_frame(stream, 1024, 1))
        assert isinstance(reply, ErrorReply)
        # 3. Half a frame, then silence: the server times out and resets the stream.
        stream = await raw_sync_stream(client, server)
        await stream.write(b"\x00\x00")
        with pytest.raises(Exception):  # noqa: B017 - reset or EOF, depending on timing
            with trio.fail_after(3):
                data = await stream.read(10)
                if not data:
                    raise EOFError
        # 4. Open and close at once.
        stream = await raw_sync_stream(client, server)
        await stream.close()

        # The server still serves sync and gossip, to this client too: the two malformed
        # requests cost 40 points, short of a ban; truncated or empty requests cost nothing.
        await trio.sleep(0.6)
        assert (await client.request_status(server.peer_id)).head_number == 3
        await wait_mesh([server, client], kinds=("tx",))
        await client.publish("tx", b"after garbage")
        await at_server.wait_for(b"after garbage")
        assert server.scores.score(client.peer_id) == pytest.approx(-2 * PENALTY_MALFORMED, abs=1)

        # 5. A well-formed request of an unknown kind is the third malformed one: ban.
        stream = await raw_sync_stream(client, server)
        await write_frame(stream, rlp.encode([9, 1]), 1)
        await wait_until(lambda: not connected(server, client))
        assert server.scores.ban_remaining(client.peer_id) > 0
        nursery.cancel_scope.cancel()


@trio_test
async def test_malformed_replies_are_rejected_by_the_requester() -> None:
    """A server speaking the protocol wrongly: the client raises SyncError, penalises it, and
    both stay up (the fake server here is a raw handler on an allowed node)."""
    async with trio.open_nursery() as nursery:
        server, client = await pair(Runner(nursery), numbered_chain(3), request_timeout=0.5)
        replies = [
            rlp.encode([2, [b"a", b"b", b"c"]]),  # more blocks than asked for
            b"\x01\x02\x03",  # not RLP
            rlp.encode([1, CHAIN_ID, GENESIS]),  # truncated status
        ]

        async def bad_server(stream):  # type: ignore[no-untyped-def]
            await read_frame(stream, MAX_REQUEST_BYTES, 1)
            await write_frame(stream, replies.pop(0), 1)
            await stream.close()

        async def silent_server(stream):  # type: ignore[no-untyped-def]
            await trio.sleep(5)

        server._host.set_stream_handler(SYNC_PROTOCOL, silent_server)  # type: ignore[union-attr]
        with pytest.raises(SyncError, match="timed out"):
            await client.request_status(server.peer_id)
        assert client.scores.score(server.peer_id) == 0  # slow is not malicious

        server._host.set_stream_handler(SYNC_PROTOCOL, bad_server)  # type: ignore[union-attr]
        with pytest.raises(SyncError, match="unexpected reply"):
            await client.request_blocks(server.peer_id, 0, 2)
        with pytest.raises(SyncError, match="malformed reply"):
            await client.request_blocks(server.peer_id, 0, 2)
        assert connected(client, server)
        # The third malformed reply in a row gets the server banned and disconnected.
        with pytest.raises(SyncError, match="malformed reply"):
            await client.request_status(server.peer_id)
        await wait_until(lambda: not connected(client, server))
        assert client.scores.ban_remaining(server.peer_id) > 0
        nursery.cancel_scope.cancel()


@trio_test
async def test_sync_requests_do_not_break_gossip() -> None:
    """Regression for the py-libp2p "stream-close bug": after A (requester) opens, closes and
    resets sync streams to B - including a timeout that makes A reset while B still writes -
    gossip must still flow A -> B and B -> A."""
    server_chain = numbered_chain(50)
    async with trio.open_nursery() as nursery:
        b, a = await pair(Runner(nursery), server_chain, request_timeout=0.3)
        at_a, at_b = Collector(), Collector()
        a.set_handler("block", at_a)
        b.set_handler("block", at_b)
        await wait_mesh([a, b], kinds=("block",))
        await a.publish("block", b"before")
        await at_b.wait_for(b"before")

        for round_ in range(5):
            await a.request_status(b.peer_id)
            assert len(await a.request_blocks(b.peer_id, round_, 10)) == 10
        # B answers too slowly: A times out and resets the stream, then B writes its reply
        # into the reset stream (the exception that, escaping a handler, stops gossip).
        server_chain.delay = 0.6
        for _ in range(2):
            with pytest.raises(SyncError, match="timed out"):
                await a.request_blocks(b.peer_id, 0, 5)
        await trio.sleep(0.8)
        server_chain.delay = 0
        # Raw streams that A closes or resets before (or while) B answers.
        for finish in ("close", "reset", "close-after-request", "reset-after-request"):
            stream = await raw_sync_stream(a, b)
            if finish.endswith("after-request"):
                await write_frame(stream, encode_request(BlocksRequest(0, 3)), 1)
            await (stream.close() if finish.startswith("close") else stream.reset())
        await trio.sleep(0.3)

        await a.publish("block", b"A after sync")
        assert await at_b.wait_for(b"A after sync") == a.peer_id
        await b.publish("block", b"B after sync")
        assert await at_a.wait_for(b"B after sync") == b.peer_id
        assert connected(a, b) and connected(b, a)
        nursery.cancel_scope.cancel()


def test_sync_codec_round_trips_and_rejects() -> None:
    status = ChainStatus(CHAIN_ID, GENESIS, 12, b"\x09" * 32)
    assert decode_request(encode_request(StatusRequest(status))) == StatusRequest(status)
    assert decode_request(encode_request(BlocksRequest(7, 128))) == BlocksRequest(7, 128)
    assert decode_reply(rlp.encode([1, CHAIN_ID, GENESIS, 12, b"\x09" * 32])) == status
    bad = [
        b"",
        b"\xc0",  # empty list
        rlp.encode([1, CHAIN_ID, GENESIS, 12]),  # short status
        rlp.encode([1, CHAIN_ID, b"\x01" * 31, 12, b"\x09" * 32]),  # short hash
        rlp.encode([2, b"\x00\x07", 1]),  # non-canonical integer
        rlp.encode([2, 0, 0]),  # zero blocks
        rlp.encode([2, 0, 1, 5]),  # extra field
        rlp.encode([[2], 0, 1]),  # kind is a list
        rlp.encode([2, 0, 1]) + b"\x00",  # trailing bytes
        b"\xc1" * 2000,  # deep nesting
        rlp.encode([1, b"\xff" * 9, GENESIS, 1, GENESIS]),  # chain id above 2**64
    ]
    from network import CodecError

    for data in bad:
        with pytest.raises(CodecError):
            decode_request(data)
    with pytest.raises(CodecError):
        decode_request(b"\x80" * (MAX_REQUEST_BYTES + 1))
