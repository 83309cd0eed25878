"""Wire encodings: transaction batches for gossip and the messages of the sync protocol.

Everything is RLP. Decoders are strict (exact shapes, canonical integers, bounded sizes) because
their input comes from other nodes: a malformed message must raise CodecError, never anything else.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import rlp
from rlp.exceptions import RLPException

from network.config import DEFAULT_MAX_MESSAGE_BYTES, HASH_LENGTH
from network.errors import CodecError, MessageTooLargeError

MAX_TX_BATCH_ITEMS = 10_000
MAX_BLOCKS_PER_REQUEST = 128
MAX_STATUS_FORKS = 64  # genesis allows as many forks (genesis.schema.MAX_FORKS)
MAX_REQUEST_BYTES = 4096  # a status request with MAX_STATUS_FORKS forks fits
UINT64_MAX = 2**64 - 1

# Message kinds of the sync protocol (first list element of every request and response).
KIND_ERROR = 0
KIND_STATUS = 1
KIND_BLOCKS = 2


def _decode(data: bytes) -> object:
    if not isinstance(data, bytes | bytearray | memoryview):
        raise CodecError(f"expected bytes, got {type(data).__name__}")
    try:
        return rlp.decode(bytes(data), strict=True)
    except (RLPException, RecursionError) as exc:
        raise CodecError(f"invalid RLP: {exc}") from None


def _uint(item: object, what: str, maximum: int = UINT64_MAX) -> int:
    if not isinstance(item, bytes):
        raise CodecError(f"{what}: expected an integer, got a list")
    if item[:1] == b"\x00":
        raise CodecError(f"{what}: integer with leading zero bytes")
    value = int.from_bytes(item, "big")
    if value > maximum:
        raise CodecError(f"{what}: integer out of range")
    return value


def _hash(item: object, what: str) -> bytes:
    if not isinstance(item, bytes) or len(item) != HASH_LENGTH:
        raise CodecError(f"{what}: expected 32 bytes")
    return item


def _list(item: object, what: str) -> list[object]:
    if not isinstance(item, list):
        raise CodecError(f"{what}: expected a list")
    return item


# --------------------------------------------------------------------------- transaction batches


def encode_tx_batch(
    txs: Sequence[bytes],
    *,
    max_bytes: int = DEFAULT_MAX_MESSAGE_BYTES,
    max_items: int = MAX_TX_BATCH_ITEMS,
) -> bytes:
    """One gossip payload carrying many raw (signed, RLP/typed) transactions."""
    if not txs:
        raise CodecError("a transaction batch needs at least one transaction")
    if len(txs) > max_items:
        raise MessageTooLargeError(f"{len(txs)} transactions exceed the batch limit {max_items}")
    for index, tx in enumerate(txs):
        if not isinstance(tx, bytes) or not tx:
            raise CodecError(f"transaction {index} must be non-empty bytes")
    data = rlp.encode(list(txs))
    if len(data) > max_bytes:
        raise MessageTooLargeError(f"batch of {len(data)} bytes exceeds {max_bytes}")
    return data


def decode_tx_batch(
    data: bytes,
    *,
    max_bytes: int = DEFAULT_MAX_MESSAGE_BYTES,
    max_items: int = MAX_TX_BATCH_ITEMS,
) -> list[bytes]:
    """The raw transactions of a batch; CodecError if it is not a bounded list of byte strings."""
    if len(data) > max_bytes:
        raise MessageTooLargeError(f"batch of {len(data)} bytes exceeds {max_bytes}")
    items = _list(_decode(data), "batch")
    if not items:
        raise CodecError("empty transaction batch")
    if len(items) > max_items:
        raise CodecError(f"{len(items)} transactions exceed the batch limit {max_items}")
    for index, item in enumerate(items):
        if not isinstance(item, bytes) or not item:
            raise CodecError(f"transaction {index}: expected non-empty bytes")
    return items  # type: ignore[return-value]


def split_tx_batches(
    txs: Sequence[bytes],
    *,
    max_bytes: int = DEFAULT_MAX_MESSAGE_BYTES,
    max_items: int = MAX_TX_BATCH_ITEMS,
) -> list[bytes]:
    """Encode `txs` in order as few batches as the limits allow (one tx too big: CodecError)."""
    list_overhead = 9  # the longest RLP list prefix
    batches: list[bytes] = []
    current: list[bytes] = []
    size = list_overhead
    for index, tx in enumerate(txs):
        if not isinstance(tx, bytes) or not tx:
            raise CodecError(f"transaction {index} must be non-empty bytes")
        item_size = len(rlp.encode(tx))
        if item_size + list_overhead > max_bytes:
            raise MessageTooLargeError(f"transaction {index} alone exceeds {max_bytes} bytes")
        if current and (size + item_size > max_bytes or len(current) == max_items):
            batches.append(encode_tx_batch(current, max_bytes=max_bytes, max_items=max_items))
            current, size = [], list_overhead
        current.append(tx)
        size += item_size
    if current:
        batches.append(encode_tx_batch(current, max_bytes=max_bytes, max_items=max_items))
    return batches


# --------------------------------------------------------------------------- sync protocol


@dataclass(frozen=True)
class ChainStatus:
    """What a node tells its peers about its chain in the sync handshake."""

    chain_id: int
    genesis_hash: bytes
    head_number: int
    head_hash: bytes
    # The genesis fork schedule: (block, keccak of the fork's rules), ascending. Peers compare
    # it so that a node missing a fork is refused before it can split the chain.
    forks: tuple[tuple[int, bytes], ...] = ()

    def __post_init__(self) -> None:
        for name in ("chain_id", "head_number"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int):
                raise CodecError(f"{name} must be an integer")
            if not 0 <= value <= UINT64_MAX:
                raise CodecError(f"{name} must be an integer between 0 and 2**64-1")
        for name in ("genesis_hash", "head_hash"):
            value = getattr(self, name)
            if not isinstance(value, bytes) or len(value) != HASH_LENGTH:
                raise CodecError(f"{name} must be 32 bytes")
        forks = tuple(self.forks)
        if len(forks) > MAX_STATUS_FORKS:
            raise CodecError(f"forks: more than {MAX_STATUS_FORKS} entries")
        previous = 0
        for entry in forks:
            if not isinstance(entry, tuple) or len(entry) != 2:
                raise CodecError("forks: each entry is (block, digest)")
            block, digest = entry
            if isinstance(block, bool) or not isinstance(block, int) or not 0 < block <= UINT64_MAX:
                raise CodecError("forks: block must be an integer between 1 and 2**64-1")
            if block <= previous:
                raise CodecError("forks: blocks must be strictly ascending")
            if not isinstance(digest, bytes) or len(digest) != HASH_LENGTH:
                raise CodecError("forks: digest must be 32 bytes")
            previous = block
        object.__setattr__(self, "forks", forks)

    def same_chain(self, other: ChainStatus) -> bool:
        return self.chain_id == other.chain_id and self.genesis_hash == other.genesis_hash

    def _fields(self) -> list[object]:
        forks = [[block, digest] for block, digest in self.forks]
        return [self.chain_id, self.genesis_hash, self.head_number, self.head_hash, forks]

    @classmethod
    def _from_fields(cls, fields: list[object]) -> ChainStatus:
        # Four fields: a peer from before fork schedules, i.e. one without forks.
        if len(fields) not in (4, 5):
            raise CodecError(
                "status: expected chain id, genesis hash, head number, head hash, forks"
            )
        forks: list[tuple[int, bytes]] = []
        if len(fields) == 5:
            entries = _list(fields[4], "status.forks")
            if len(entries) > MAX_STATUS_FORKS:
                raise CodecError(f"status.forks: more than {MAX_STATUS_FORKS} entries")
            for entry in entries:
                pair = _list(entry, "status.forks entry")
                if len(pair) != 2:
                    raise CodecError("status.forks: each entry is [block, digest]")
                forks.append((_uint(pair[0], "status.forks block"),
                              _hash(pair[1], "status.forks digest")))
        return cls(
            chain_id=_uint(fields[0], "status.chainId"),
            genesis_hash=_hash(fields[1], "status.genesisHash"),
            head_number=_uint(fields[2], "status.headNumber"),
            head_hash=_hash(fields[3], "status.headHash"),
            forks=tuple(forks),
        )


@dataclass(frozen=True)
class StatusRequest:
    """The requester's own status; the responder checks it before answering with its own."""

    status: ChainStatus


@dataclass(frozen=True)
class BlocksRequest:
    start: int
    count: int


@dataclass(frozen=True)
class ErrorReply:
    reason: str


SyncRequest = StatusRequest | BlocksRequest


def encode_request(request: SyncRequest) -> bytes:
    if isinstance(request, StatusRequest):
        return rlp.encode([KIND_STATUS, *request.status._fields()])
    check_blocks_range(request.start, request.count)
    return rlp.encode([KIND_BLOCKS, request.start, request.count])


def check_blocks_range(start: int, count: int) -> None:
    """ValueError unless 0 <= start and 1 <= count <= MAX_BLOCKS_PER_REQUEST."""
    if not isinstance(start, int) or isinstance(start, bool) or not 0 <= start <= UINT64_MAX:
        raise ValueError(f"start must be a block number, got {start!r}")
    if not isinstance(count, int) or isinstance(count, bool) or count < 1:
        raise ValueError(f"count must be a positive integer, got {count!r}")
    if count > MAX_BLOCKS_PER_REQUEST:
        raise ValueError(f"count {count} exceeds the limit of {MAX_BLOCKS_PER_REQUEST} blocks")


def decode_request(data: bytes) -> SyncRequest:
    if len(data) > MAX_REQUEST_BYTES:
        raise MessageTooLargeError(f"request of {len(data)} bytes exceeds {MAX_REQUEST_BYTES}")
    fields = _list(_decode(data), "request")
    if not fields:
        raise CodecError("request: empty list")
    kind = _uint(fields[0], "request.kind", 255)
    if kind == KIND_STATUS:
        return StatusRequest(ChainStatus._from_fields(fields[1:]))
    if kind == KIND_BLOCKS:
        if len(fields) != 3:
            raise CodecError("blocks request: expected start and count")
        start = _uint(fields[1], "request.start")
        count = _uint(fields[2], "request.count")
        try:
            check_blocks_range(start, count)
        except ValueError as exc:
            raise CodecError(f"blocks request: {exc}") from None
        return BlocksRequest(start, count)
    raise CodecError(f"request: unknown kind {kind}")


def encode_status_reply(status: ChainStatus) -> bytes:
    return rlp.encode([KIND_STATUS, *status._fields()])


def encode_blocks_reply(blocks: Sequence[bytes]) -> bytes:
    return rlp.encode([KIND_BLOCKS, list(blocks)])


def encode_error_reply(reason: str) -> bytes:
    return rlp.encode([KIND_ERROR, reason.encode("utf-8", "replace")[:512]])


def decode_reply(data: bytes) -> ChainStatus | list[bytes] | ErrorReply:
    """A status, a list of raw blocks, or the responder's error message."""
    fields = _list(_decode(data), "reply")
    if not fields:
        raise CodecError("reply: empty list")
    kind = _uint(fields[0], "reply.kind", 255)
    if kind == KIND_STATUS:
        return ChainStatus._from_fields(fields[1:])
    if kind == KIND_BLOCKS:
        if len(fields) != 2:
            raise CodecError("blocks reply: expected one list of blocks")
        blocks = _list(fields[1], "blocks reply")
        if len(blocks) > MAX_BLOCKS_PER_REQUEST:
            raise CodecError(f"blocks reply: {len(blocks)} blocks exceed the limit")
        for index, block in enumerate(blocks):
            if not isinstance(block, bytes) or not block:
                raise CodecError(f"blocks reply: block {index} is not a byte string")
        return blocks  # type: ignore[return-value]
    if kind == KIND_ERROR:
        if len(fields) != 2 or not isinstance(fields[1], bytes):
            raise CodecError("error reply: expected one reason string")
        return ErrorReply(fields[1].decode("utf-8", "replace"))
    raise CodecError(f"reply: unknown kind {kind}")
