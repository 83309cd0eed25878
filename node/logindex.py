"""A persistent log index, so eth_getLogs costs what it returns instead of what it scans.

Scanning answers a query by reading every block's header (bloom) and the receipts of every
block whose bloom matches: ~1 s over 10k blocks. The index keeps, in its own LevelDB
(`<datadir>/logindex`, rebuildable from the chain at any time):

    l + number(8) + log_index(4)                -> the log (block hash, tx hash/index, address,
                                                   topics, data): answers without py-evm
    a + address(20) + number(8) + log_index(4)  -> b""  (posting list per emitting contract)
    t + position(1) + topic(32) + number + index -> b""  (posting list per topic position)
    h                                           -> number(8) + hash(32) of the last indexed block

A query intersects the posting lists of the filter's criteria over the block range (an OR list
is the union of its values' lists), reads the surviving logs and re-checks each with the same
`log_matches` the scan uses, so results are identical to the scan's. Blocks are added strictly
in order with the head marker in the same batch: the index always covers blocks 0..head exactly,
and a query scans the chain for any blocks past that head (a lagging index is slower, never
wrong). On open, an index whose head block is not on the chain (another database restored,
`db import` into a fresh datadir) is dropped and rebuilt.
"""

from __future__ import annotations

import shutil
import struct
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import plyvel
import structlog
import trio
from eth.abc import BlockAPI

from node.db import StorageError
from node.rpc.params import LogFilter, log_matches

if TYPE_CHECKING:
    from node.chain import Chain
    from node.worker import ChainWorker

log = structlog.get_logger("medledger.logindex")

INDEX_DIR = "logindex"
FORMAT_VERSION = b"1"
CATCH_UP_CHUNK = 256  # blocks per batch (and per worker call) while catching up

_VERSION = b"v"
_HEAD = b"h"
_LOG = b"l"
_ADDR = b"a"
_TOPIC = b"t"
_POSITION = struct.Struct(">QI")  # block number, log index within the block
_LOG_HEAD = struct.Struct(">32s32sI20sB")  # block hash, tx hash, tx index, address, topic count
# A posting list read for one criterion is abandoned (the criterion is then only re-checked on
# the surviving logs) once it is this many times larger than the smallest list read so far.
_SKIP_FACTOR = 8
_SKIP_FLOOR = 4096


@dataclass(frozen=True)
class RawLog:
    """One log of a block, in the order of the block's receipts (its index is its position)."""

    tx_hash: bytes
    tx_index: int
    address: bytes
    topics: tuple[bytes, ...]
    data: bytes


@dataclass(frozen=True)
class BlockLogs:
    number: int
    block_hash: bytes
    logs: tuple[RawLog, ...]


@dataclass(frozen=True)
class IndexAnswer:
    """The index's part of a query: logs of blocks first..through, in chain order."""

    logs: list[dict[str, Any]]
    through: int  # last block covered; the blocks after it, up to `last`, must be scanned


class LogIndexError(StorageError):
    """The index cannot be opened or a block cannot be added (out of order)."""


def block_logs_from_chain(chain: Chain, number: int) -> BlockLogs:
    """The logs of canonical block `number`, read from the chain (chain worker thread)."""
    header = chain.header_by_number(number)
    if header is None:
        raise LogIndexError(f"block {number} is not on the chain")
    if header.bloom == 0:  # no logs at all: the body and receipts need not be read
        return BlockLogs(number, header.hash, ())
    block = chain.block_by_header(header)
    return block_logs_from_block(chain, block)


def block_logs_from_block(chain: Chain, block: BlockAPI) -> BlockLogs:
    logs: list[RawLog] = []
    for tx_index, (tx, receipt) in enumerate(
        zip(block.transactions, chain.receipts(block), strict=True)
    ):
        tx_hash = tx.hash
        for entry in receipt.logs:
            logs.append(RawLog(tx_hash, tx_index, bytes(entry.address),
                               tuple(t.to_bytes(32, "big") for t in entry.topics),
                               bytes(entry.data)))
    return BlockLogs(block.number, block.hash, tuple(logs))


def block_logs_from_json(block: BlockAPI, logs: Sequence[dict[str, Any]]) -> BlockLogs:
    """The same from the formatted logs a final-block listener receives (no chain access)."""
    raw = tuple(
        RawLog(bytes.fromhex(item["transactionHash"][2:]), int(item["transactionIndex"], 16),
               bytes.fromhex(item["address"][2:]),
               tuple(bytes.fromhex(t[2:]) for t in item["topics"]),
               bytes.fromhex(item["data"][2:]))
        for item in sorted(logs, key=lambda item: int(item["logIndex"], 16))
    )
    return BlockLogs(block.number, block.hash, raw)


def _encode_log(block_hash: bytes, log_: RawLog) -> bytes:
    return _LOG_HEAD.pack(block_hash, log_.tx_hash, log_.tx_index, log_.address,
                          len(log_.topics)) + b"".join(log_.topics) + log_.data


def _format_log(position: bytes, value: bytes) -> dict[str, Any]:
    """The stored log as geth's JSON (same fields as node.rpc.formatters.format_log)."""
    number, log_index = _POSITION.unpack(position)
    block_hash, tx_hash, tx_index, address, count = _LOG_HEAD.unpack_from(value)
    start = _LOG_HEAD.size
    return {
        "address": "0x" + address.hex(),
        "topics": ["0x" + value[start + 32 * i:start + 32 * (i + 1)].hex() for i in range(count)],
        "data": "0x" + value[start + 32 * count:].hex(),
        "blockNumber": hex(number),
        "transactionHash": "0x" + tx_hash.hex(),
        "transactionIndex": hex(tx_index),
        "blockHash": "0x" + block_hash.hex(),
        "logIndex": hex(log_index),
        "removed": False,
    }


def _matches(criteria: LogFilter, value: bytes) -> bool:
    _, _, _, address, count = _LOG_HEAD.unpack_from(value)
    start = _LOG_HEAD.size
    topics = [value[start + 32 * i:start + 32 * (i + 1)] for i in range(count)]
    return log_matches(criteria, address, topics)


class LogIndex:
    """The on-disk index; thread-safe (LevelDB), one writer at a time (see `LogIndexer`)."""

    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        self._db = self._open()
        if self._db.get(_VERSION) != FORMAT_VERSION:
            self._reset("format version changed" if self._db.get(_VERSION) else None)
        self._head, self._head_hash = self._read_head()

    def _open(self) -> plyvel.DB:
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            return plyvel.DB(str(self.path), create_if_missing=True)
        except (OSError, plyvel.IOError) as exc:
            if "lock" in str(exc).lower():
                raise LogIndexError(f"log index {self.path} is in use by another process") from exc
            raise LogIndexError(f"cannot open log index {self.path}: {exc}") from exc
        except plyvel.CorruptionError:
            log.warning("log index corrupt, rebuilding", path=str(self.path))
            shutil.rmtree(self.path, ignore_errors=True)
            return plyvel.DB(str(self.path), create_if_missing=True)

    def _read_head(self) -> tuple[int, bytes]:
        raw = self._db.get(_HEAD)
        if raw is None:
            return -1, b""
        return int.from_bytes(raw[:8], "big"), raw[8:]

    def _reset(self, reason: str | None) -> None:
        """Drop everything (a fresh index, or one that no longer matches the chain)."""
        if reason is not None:
            log.warning("log index dropped, it will be rebuilt", reason=reason)
        self._db.close()
        plyvel.destroy_db(str(self.path))
        self._db = plyvel.DB(str(self.path), create_if_missing=True)
        self._db.put(_VERSION, FORMAT_VERSION)
        self._head, self._head_hash = -1, b""

    @classmethod
    def open_for(cls, datadir: Path, chain: Chain) -> LogIndex:
        """Open `<datadir>/logindex` and drop it if its head block is not on `chain`."""
        index = cls(Path(datadir) / INDEX_DIR)
        try:
            index.check_against(chain)
        except Exception:
            index.close()
            raise
        return index

    def check_against(self, chain: Chain) -> None:
        if self._head < 0:
            return
        header = chain.header_by_number(self._head)
        if header is None or header.hash != self._head_hash:
            self._reset(f"indexed block {self._head} is not on this chain "
                        f"(chain head {chain.head.block_number})")

    @property
    def head(self) -> int:
        """The last indexed block: blocks 0..head are indexed (-1: none)."""
        return self._head

    def close(self) -> None:
        if not self._db.closed:
            self._db.close()

    # -- writing -------------------------------------------------------------------------------

    def add_blocks(self, blocks: Iterable[BlockLogs]) -> None:
        """Index the next blocks, in order, in one batch that also moves the head marker."""
        head, head_hash = self._head, self._head_hash
        with self._db.write_batch(transaction=True) as batch:
            for block in blocks:
                if block.number != head + 1:
                    raise LogIndexError(
                        f"log index is at block {head}, cannot add block {block.number}")
                for log_index, entry in enumerate(block.logs):
                    position = _POSITION.pack(block.number, log_index)
                    batch.put(_LOG + position, _encode_log(block.block_hash, entry))
                    batch.put(_ADDR + entry.address + position, b"")
                    for topic_position, topic in enumerate(entry.topics):
                        batch.put(_TOPIC + bytes([topic_position]) + topic + position, b"")
                head, head_hash = block.number, block.block_hash
            batch.put(_HEAD, head.to_bytes(8, "big") + head_hash)
        self._head, self._head_hash = head, head_hash

    def catch_up(self, chain: Chain, max_blocks: int = CATCH_UP_CHUNK) -> int:
        """Index up to `max_blocks` chain blocks past the head (chain worker thread)."""
        last = min(chain.head.block_number, self._head + max_blocks)
        if last <= self._head:
            return 0
        first = self._head + 1
        self.add_blocks(block_logs_from_chain(chain, n) for n in range(first, last + 1))
        return last - first + 1

    def catch_up_all(self, chain: Chain) -> int:
        """Index every block up to the chain head (offline use: tests, the benchmark)."""
        total = 0
        while (done := self.catch_up(chain)) > 0:
            total += done
        return total

    # -- reading -------------------------------------------------------------------------------

    def query(self, criteria: LogFilter, first: int, last: int, limit: int) -> IndexAnswer:
        """Matching logs of blocks first..min(last, head), stopping after `limit` of them."""
        snapshot = self._db.snapshot()
        raw_head = snapshot.get(_HEAD)
        head = -1 if raw_head is None else int.from_bytes(raw_head[:8], "big")
        through = min(last, head)
        if first > through:
            return IndexAnswer([], first - 1)  # nothing covered: scan the whole range
        start, stop = _POSITION.pack(first, 0), _POSITION.pack(through + 1, 0)
        dimensions: list[list[bytes]] = []
        if criteria.addresses:
            dimensions.append([_ADDR + a for a in criteria.addresses])
        for topic_position, wanted in enumerate(criteria.topics):
            if wanted is not None:
                dimensions.append([_TOPIC + bytes([topic_position]) + t for t in wanted])
        results: list[dict[str, Any]] = []
        if not dimensions:
            for key, value in snapshot.iterator(start=_LOG + start, stop=_LOG + stop):
                if _matches(criteria, value):
                    results.append(_format_log(key[1:], value))
                    if len(results) >= limit:
                        break
            return IndexAnswer(results, through)
        candidates = _intersect(snapshot, dimensions, start, stop)
        for position in sorted(candidates):
            value = snapshot.get(_LOG + position)
            if value is not None and _matches(criteria, value):
                results.append(_format_log(position, value))
                if len(results) >= limit:
                    break
        return IndexAnswer(results, through)


def _postings(snapshot: Any, prefixes: list[bytes], start: bytes, stop: bytes,
              cap: int | None) -> set[bytes] | None:
    """Positions in [start, stop) under any of `prefixes`; None once more than `cap`."""
    found: set[bytes] = set()
    for prefix in prefixes:
        cut = len(prefix)
        for key in snapshot.iterator(start=prefix + start, stop=prefix + stop,
                                     include_value=False):
            found.add(key[cut:])
            if cap is not None and len(found) > cap:
                return None
    return found


def _intersect(snapshot: Any, dimensions: list[list[bytes]], start: bytes,
               stop: bytes) -> set[bytes]:
    """Positions present in every dimension's posting lists; a dimension whose lists are far
    larger than the current candidates is skipped (callers re-check every criterion)."""
    best: set[bytes] | None = None
    for prefixes in sorted(dimensions, key=len):
        cap = None if best is None else max(_SKIP_FLOOR, _SKIP_FACTOR * len(best))
        found = _postings(snapshot, prefixes, start, stop, cap)
        if found is None:
            continue
        best = found if best is None else best & found
        if not best:
            break
    return best or set()


class LogIndexer:
    """Keeps the index at the chain head inside a running node.

    `on_block` (a final-block listener) indexes a block straight from its formatted logs when it
    is the next one; otherwise (a gap, a crash, a `db import` while stopped, a catch-up still
    running) it wakes `run`, which reads the missing blocks from the chain in chunks through the
    chain worker. Both write under one lock, so blocks always go in strictly in order.
    """

    def __init__(self, index: LogIndex, chain: Chain, worker: ChainWorker) -> None:
        self.index = index
        self._chain = chain
        self._worker = worker
        self._lock = trio.Lock()
        self._wake = trio.Event()
        self.caught_up = trio.Event()

    async def on_block(self, block: BlockAPI, logs: list[dict[str, Any]]) -> None:
        if self._lock.locked() or block.number != self.index.head + 1:
            if block.number > self.index.head:
                self._wake.set()
            return
        async with self._lock:
            if block.number != self.index.head + 1:
                self._wake.set()
                return
            entry = block_logs_from_json(block, logs)
            await trio.to_thread.run_sync(self.index.add_blocks, [entry])

    async def run(self) -> None:
        while True:
            behind = await self._worker.run(
                lambda: self._chain.head.block_number - self.index.head)
            if behind > 0:
                log.info("log index catching up", indexed=self.index.head, behind=behind)
            while True:
                async with self._lock:
                    done = await self._worker.run(self.index.catch_up, self._chain)
                if done == 0:
                    break
            if behind > 0:
                log.info("log index caught up", indexed=self.index.head)
            self.caught_up.set()
            await self._wake.wait()
            self._wake = trio.Event()
