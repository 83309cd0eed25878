"""Fuzzing every decoder that reads bytes from another node: RLP sync messages and tx batches
(network/codec.py), QBFT messages (consensus/messages.py), QBFT extraData
(consensus/extradata.py), gossiped blocks (node/consensus_blocks.py) and the node's own gossip
handlers (node/runtime.py). Random bytes and mutations of valid encodings must decode or
raise the module's own error; nothing else may escape, and valid encodings round-trip."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import pytest
import rlp
import trio
from eth_utils import keccak
from hypothesis import given, settings
from hypothesis import strategies as st

from consensus.extradata import ExtraDataError, QbftExtraData, Vote
from consensus.messages import (
    MessageError,
    decode_message,
    sign_commit,
    sign_prepare,
    sign_proposal,
    sign_round_change,
)
from consensus.seals import seal_hash, sign_seal
from network import Validation
from network.codec import (
    BlocksRequest,
    ChainStatus,
    StatusRequest,
    decode_reply,
    decode_request,
    decode_tx_batch,
    encode_blocks_reply,
    encode_error_reply,
    encode_request,
    encode_status_reply,
    encode_tx_batch,
)
from network.errors import CodecError
from node.consensus_blocks import EvmConsensusBlock
from node.runtime import Node, NodeConfig
from tests.fuzz.conftest import examples
from tests.fuzz.stats import case
from tests.helpers import USER_KEYS, VALIDATOR_KEY, make_genesis, transfer

KEYS = [keccak(b"fuzz key %d" % i) for i in range(3)]


def mutations(data: bytes) -> st.SearchStrategy[bytes]:
    """`data` truncated, extended, or with bytes flipped/overwritten."""
    n = len(data)
    flip = st.tuples(st.integers(0, max(n - 1, 0)), st.integers(1, 255)).map(
        lambda t: data[: t[0]] + bytes([data[t[0]] ^ t[1]]) + data[t[0] + 1:] if n else data)
    cut = st.integers(0, n).map(lambda k: data[:k])
    extend = st.binary(min_size=1, max_size=64).map(lambda tail: data + tail)
    splice = st.tuples(st.integers(0, n), st.binary(max_size=16)).map(
        lambda t: data[: t[0]] + t[1] + data[t[0] + len(t[1]):])
    return st.one_of(flip, cut, extend, splice)


def rlp_items(depth: int = 3) -> st.SearchStrategy[Any]:
    """Arbitrary RLP structures: well-formed RLP, ill-formed for every schema."""
    return st.recursive(st.binary(max_size=40),
                        lambda inner: st.lists(inner, max_size=6), max_leaves=20)


def garbage() -> st.SearchStrategy[bytes]:
    return st.one_of(st.binary(max_size=300), rlp_items().map(rlp.encode))


def only_raises(fn: Callable[[bytes], Any], data: bytes,
                allowed: tuple[type[BaseException], ...]) -> Any:
    """fn(data), or None when it raised one of `allowed`; anything else fails the test."""
    try:
        return fn(data)
    except allowed:
        return None


# ------------------------------------------------------------------------- network codec


STATUS = ChainStatus(1337, b"\x01" * 32, 12, b"\x02" * 32, ((5, b"\x03" * 32),))
SYNC_SAMPLES = [
    encode_request(StatusRequest(STATUS)),
    encode_request(BlocksRequest(5, 10)),
    encode_status_reply(STATUS),
    encode_blocks_reply([b"\xc0", b"block bytes"]),
    encode_error_reply("no such block"),
    encode_tx_batch([transfer(USER_KEYS[0], 0), transfer(USER_KEYS[1], 3)]),
]


@settings(max_examples=examples(250))
@given(st.one_of(garbage(), st.sampled_from(SYNC_SAMPLES).flatmap(mutations)))
def test_network_codec_raises_only_codec_errors(data: bytes) -> None:
    case()
    for decoder in (decode_request, decode_reply, decode_tx_batch):
        only_raises(decoder, data, (CodecError,))


@settings(max_examples=examples(250))
@given(st.lists(st.binary(min_size=1, max_size=200), min_size=1, max_size=20),
       st.integers(0, 2**64 - 1), st.integers(1, 2**64 - 1))
def test_network_codec_round_trips(txs: list[bytes], start: int, count: int) -> None:
    case()
    assert decode_tx_batch(encode_tx_batch(txs)) == txs
    try:
        request = BlocksRequest(start, count)
        encoded = encode_request(request)
    except (CodecError, ValueError):
        return  # out of the request's range: refused when encoding already
    assert decode_request(encoded) == request


# ----------------------------------------------------------------------------- QBFT wire


def _qbft_samples() -> list[bytes]:
    digest = keccak(b"block")
    prepare = sign_prepare(KEYS[0], 3, 1, digest)
    rc = sign_round_change(KEYS[1], 3, 2, prepared_round=1, prepared_digest=digest,
                           prepared_block=b"\xc0block", prepares=(prepare,))
    return [
        prepare.encode(),
        sign_commit(KEYS[1], 3, 1, digest).encode(),
        sign_round_change(KEYS[2], 4, 0).encode(),
        rc.encode(),
        sign_proposal(KEYS[0], 3, 2, b"\xc3block", round_changes=(rc,),
                      prepares=(prepare,)).encode(),
    ]


QBFT_SAMPLES = _qbft_samples()


@settings(max_examples=examples(250))
@given(st.one_of(garbage(), st.sampled_from(QBFT_SAMPLES).flatmap(mutations)))
def test_qbft_decoder_raises_only_message_errors(data: bytes) -> None:
    case()
    message = only_raises(decode_message, data, (MessageError,))
    if message is not None:
        assert len(message.author) == 20
        # Whatever decodes re-encodes to a message that decodes the same way.
        again = decode_message(message.encode())
        assert (again.height, again.round, again.author) == (message.height, message.round,
                                                              message.author)


def test_qbft_samples_decode() -> None:
    assert [type(decode_message(raw)).__name__ for raw in QBFT_SAMPLES] == [
        "Prepare", "Commit", "RoundChange", "RoundChange", "Proposal"]


# ---------------------------------------------------------------------------- extraData


extra_data = st.builds(
    QbftExtraData,
    vanity=st.binary(min_size=32, max_size=32),
    validators=st.lists(st.binary(min_size=20, max_size=20), max_size=5).map(tuple),
    vote=st.one_of(st.none(), st.builds(Vote, st.binary(min_size=20, max_size=20),
                                        st.booleans())),
    round=st.integers(0, 2**32 - 1),
    commit_seals=st.lists(st.binary(min_size=65, max_size=65), max_size=4).map(tuple),
)


@settings(max_examples=examples(250))
@given(extra_data)
def test_extradata_round_trips(extra: QbftExtraData) -> None:
    case()
    assert QbftExtraData.decode(extra.encode()) == extra


@settings(max_examples=examples(250))
@given(st.one_of(garbage(), extra_data.flatmap(lambda e: mutations(e.encode()))))
def test_extradata_raises_only_extradata_errors(data: bytes) -> None:
    case()
    decoded = only_raises(QbftExtraData.decode, data, (ExtraDataError,))
    if decoded is not None:
        assert QbftExtraData.decode(decoded.encode()) == decoded


# ------------------------------------------------- the node's gossip handlers, for real


@pytest.fixture(scope="module")
def node(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Node]:
    """A real node (chain in LevelDB, txpool, QBFT driver, sync) whose gossip handlers get
    the fuzzed payloads; its P2P host is never started."""
    datadir = tmp_path_factory.mktemp("gossip") / "node"
    node = Node(NodeConfig(datadir=datadir, genesis=make_genesis(), validator_key=VALIDATOR_KEY,
                           rpc_port=0, ws_port=None, p2p_port=0))
    try:
        yield node
    finally:
        node.chain.close()


def _sealed_block(node: Node) -> bytes:
    """Block 1 sealed by the validator but not stored here: a valid gossiped block."""
    chain = node.chain
    built = chain.build_block([], timestamp=chain.head.timestamp + 1,
                              proposer=node.address, round_number=0)
    chain.discard_built()
    block = node.block_ops.with_seals(EvmConsensusBlock.wrap(built.block), [
        sign_seal(seal_hash(built.block.header), VALIDATOR_KEY)])
    return node.block_ops.encode_block(block.block)


@settings(max_examples=examples(250))
@given(data=st.data())
def test_gossip_handlers_validate_and_never_crash(node: Node, data: st.DataObject) -> None:
    case()
    valid_block = getattr(node, "_fuzz_block", None)
    if valid_block is None:
        valid_block = node._fuzz_block = _sealed_block(node)  # type: ignore[attr-defined]
    samples = {"qbft": QBFT_SAMPLES, "tx": [encode_tx_batch([transfer(USER_KEYS[0], 0)])],
               "block": [valid_block]}
    topic = data.draw(st.sampled_from(sorted(samples)), label="topic")
    payload = data.draw(st.one_of(garbage(), st.sampled_from(samples[topic]).flatmap(mutations)),
                        label="payload")
    handler = {"qbft": node._gossip_qbft, "tx": node._gossip_tx,
               "block": node._gossip_block}[topic]
    head = node.chain.head.block_number

    async def deliver() -> Validation:
        return await handler("12D3KooWfuzz", payload)

    verdict = trio.run(deliver)
    assert isinstance(verdict, Validation)
    if node.chain.head.block_number != head:  # only the validator's sealed block extends it
        assert topic == "block" and verdict == Validation.ACCEPT
        assert node.block_ops.encode_block(node.chain.block_by_number(head + 1)) == valid_block
