"""Prometheus metrics of a running node, in a registry of its own (several nodes per process).

Two kinds of values:
- gauges read from the node when Prometheus scrapes (head, txpool, peers, sync, QBFT round
  changes): `NodeMetrics.refresh()` reads them once through the chain worker, so no call site in
  the node has to remember to update them and a scrape never races a block commit;
- events counted as they happen (block times, break-glass openings, gossip verdicts, JSON-RPC
  calls, record store traffic), fed by listeners and wrappers that `bind`,
  `instrument_dispatcher` and `InstrumentedBlockstore` install from outside the node's code.
"""

from __future__ import annotations

import dataclasses
import functools
import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import structlog
import trio
from eth.abc import BlockAPI
from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from node.records.blockstore import Blockstore, ByteSource, Stat, iter_source
from node.rpc.errors import INTERNAL_ERROR, RpcError

if TYPE_CHECKING:
    from node.rpc.dispatch import Dispatcher
    from node.runtime import Node

log = structlog.get_logger("medledger.metrics")


BLOCK_TIME_BUCKETS = (0.5, 1, 2, 3, 4, 5, 7.5, 10, 15, 20, 30, 60, 120)
RPC_LATENCY_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5,
                       5, 10)
RECORD_LATENCY_BUCKETS = (0.001, 0.005, 0.01, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60)
DEFAULT_REFRESH_TIMEOUT = 5.0


@dataclass(frozen=True)
class NodeSnapshot:
    """Node values read in one worker call: what a scrape and the readiness check look at."""

    head_number: int
    head_timestamp: int
    txpool_size: int
    networked: bool
    peers: int
    sync_highest_seen: int
    sync_imported: int
    round_changes: int
    validators: int
    is_validator: bool
    read_at: float  # time.time() of the read

    @property
    def sync_target(self) -> int:
        """The highest block known anywhere (ours or a peer's)."""
        return max(self.head_number, self.sync_highest_seen)

    @property
    def blocks_behind(self) -> int:
        return self.sync_target - self.head_number


def read_snapshot(node: Node) -> NodeSnapshot:
    """Read the node's values (call in the chain worker thread: it touches the chain and pool)."""
    head = node.chain.head
    validators = node.chain.validators_after(head)
    return NodeSnapshot(
        head_number=head.block_number,
        head_timestamp=head.timestamp,
        txpool_size=len(node.txpool),
        networked=node.p2p is not None,
        peers=len(node.p2p.peers()) if node.p2p is not None else 0,
        sync_highest_seen=node.sync.highest_seen if node.sync is not None else 0,
        sync_imported=node.sync.imported if node.sync is not None else 0,
        round_changes=node.driver.round_changes if node.driver is not None else 0,
        validators=len(validators),
        is_validator=node.address is not None and node.address in validators,
        read_at=time.time(),
    )


class _SnapshotCollector(Collector):
    """Turns the last snapshot into metric families at scrape time."""

    def __init__(self, metrics: NodeMetrics) -> None:
        self._metrics = metrics

    def collect(self) -> Iterator[Metric]:
        snap = self._metrics.snapshot
        if snap is None:
            return
        up = GaugeMetricFamily("medledger_up", "1 while the node answers scrapes")
        up.add_metric([], 1)
        yield up
        yield _gauge("medledger_chain_head_block", "Number of the canonical head block",
                     snap.head_number)
        yield _gauge("medledger_chain_finalized_block",
                     "Highest finalized block (QBFT finality is immediate: the head)",
                     snap.head_number)
        yield _gauge("medledger_chain_head_timestamp_seconds", "Timestamp of the head block",
                     snap.head_timestamp)
        yield _gauge("medledger_chain_head_age_seconds",
                     "Seconds since the head block's timestamp (a stalled chain grows it)",
                     max(0.0, snap.read_at - snap.head_timestamp))
        yield _gauge("medledger_txpool_transactions", "Transactions in the pool",
                     snap.txpool_size)
        yield _gauge("medledger_p2p_peers", "Connected peers", snap.peers)
        yield _gauge("medledger_sync_highest_block",
                     "Highest block seen on the network (or our head)", snap.sync_target)
        yield _gauge("medledger_sync_blocks_behind", "Blocks between the head and the highest seen",
                     snap.blocks_behind)
        yield _gauge("medledger_sync_progress_ratio", "head / highest seen block (1 when synced)",
                     snap.head_number / snap.sync_target if snap.sync_target else 1.0)
        yield _counter("medledger_sync_imported_blocks", "Blocks imported by sync",
                       snap.sync_imported)
        yield _counter("medledger_qbft_round_changes",
                       "QBFT round timeouts that moved to a higher round", snap.round_changes)
        yield _gauge("medledger_qbft_validators", "Validators of the next block", snap.validators)
        yield _gauge("medledger_qbft_is_validator", "1 when this node is a current validator",
                     int(snap.is_validator))


def _gauge(name: str, doc: str, value: float) -> GaugeMetricFamily:
    family = GaugeMetricFamily(name, doc)
    family.add_metric([], value)
    return family


def _counter(name: str, doc: str, value: float) -> CounterMetricFamily:
    family = CounterMetricFamily(name, doc)
    family.add_metric([], value)
    return family


class NodeMetrics:
    """All metrics of one node. `bind(node)` before `node.run()`; the ops server scrapes it."""

    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry if registry is not None else CollectorRegistry()
        self.snapshot: NodeSnapshot | None = None
        self._node: Node | None = None
        self._last_block: tuple[int, int] | None = None  # (number, timestamp) seen last
        r = self.registry
        self.blocks = Counter("medledger_blocks", "Final blocks added to the chain, by origin",
                              ["origin"], registry=r)
        self.block_time = Histogram(
            "medledger_block_time_seconds", "Header timestamp difference to the parent block",
            buckets=BLOCK_TIME_BUCKETS, registry=r,
        )
        self.block_transactions = Counter("medledger_block_transactions",
                                          "Transactions in final blocks", registry=r)
        self.break_glass = Counter(
            "medledger_break_glass_opened", "BreakGlassOpened events in final blocks", registry=r,
        )
        self.gossip = Counter("medledger_gossip_messages", "Gossip messages by handler verdict",
                              ["kind", "verdict"], registry=r)
        self.rpc_requests = Counter("medledger_rpc_requests", "JSON-RPC calls by method",
                                    ["method"], registry=r)
        self.rpc_errors = Counter("medledger_rpc_errors", "JSON-RPC calls that returned an error",
                                  ["method", "code"], registry=r)
        self.rpc_latency = Histogram("medledger_rpc_request_duration_seconds",
                                     "JSON-RPC handler time by method", ["method"],
                                     buckets=RPC_LATENCY_BUCKETS, registry=r)
        self.record_bytes = Counter("medledger_record_store_bytes",
                                    "Encrypted record bytes moved, by direction (in/out)",
                                    ["direction"], registry=r)
        self.record_latency = Histogram("medledger_record_store_operation_seconds",
                                        "Record blockstore operation time", ["operation"],
                                        buckets=RECORD_LATENCY_BUCKETS, registry=r)
        self.record_errors = Counter("medledger_record_store_errors",
                                     "Record blockstore operations that failed", ["operation"],
                                     registry=r)
        self.registry.register(_SnapshotCollector(self))

    # -- wiring ----------------------------------------------------------------------------

    def bind(self, node: Node) -> None:
        """Read `node` at scrape time and count its final blocks and gossip verdicts.

        Call after `Node(...)` and before `node.run()`: gossip handlers are wrapped as the node
        sets them when it starts.
        """
        self._node = node
        if node.driver is not None:
            node.driver.add_listener(self._on_sealed)
        if node.sync is not None:
            node.sync.add_listener(self._on_imported)
        if node.p2p is not None:
            p2p = node.p2p
            set_handler = p2p.set_handler

            def counted_set_handler(kind: str, handler: Any) -> None:
                set_handler(kind, self._count_gossip(kind, handler))

            p2p.set_handler = counted_set_handler  # type: ignore[method-assign]

    @property
    def node(self) -> Node | None:
        return self._node

    async def read(self, timeout: float = DEFAULT_REFRESH_TIMEOUT) -> NodeSnapshot | None:
        """Fresh values of the bound node, read through its worker; None on a timeout."""
        node = self._node
        if node is None:
            return None
        with trio.move_on_after(timeout):
            self.snapshot = await node.worker.run(read_snapshot, node)
            return self.snapshot
        log.warning("chain worker did not answer a metrics read", timeout=timeout)
        return None

    async def refresh(self, timeout: float = DEFAULT_REFRESH_TIMEOUT) -> NodeSnapshot | None:
        """Like `read`, but keeps the last values when the worker is too busy to answer."""
        fresh = await self.read(timeout)
        return fresh if fresh is not None else self.snapshot

    def render(self) -> bytes:
        """The Prometheus text exposition of every metric (after `refresh`)."""
        return generate_latest(self.registry)

    # -- events ----------------------------------------------------------------------------

    async def _on_sealed(self, block: BlockAPI, logs: list[dict[str, Any]]) -> None:
        await self.block_final(block, logs, "sealed")

    async def _on_imported(self, block: BlockAPI, logs: list[dict[str, Any]]) -> None:
        await self.block_final(block, logs, "imported")

    async def block_final(self, block: BlockAPI, logs: list[dict[str, Any]], origin: str) -> None:
        """Count one final block: origin, block time, transactions, break-glass openings."""
        header = block.header
        self.blocks.labels(origin).inc()
        self.block_transactions.inc(len(block.transactions))
        parent_timestamp = await self._parent_timestamp(block)
        if parent_timestamp is not None:
            self.block_time.observe(max(0, header.timestamp - parent_timestamp))
        self._last_block = (header.block_number, header.timestamp)
        opened = sum(1 for entry in logs if _is_break_glass_opened(entry))
        if opened:
            self.break_glass.inc(opened)

    async def _parent_timestamp(self, block: BlockAPI) -> int | None:
        last = self._last_block
        if last is not None and last[0] == block.number - 1:
            return last[1]
        node = self._node
        if node is None:
            return None
        parent = await node.worker.run(node.chain.header_by_hash, block.header.parent_hash)
        return None if parent is None else parent.timestamp

    def _count_gossip(self, kind: str, handler: Any) -> Any:
        async def counted(peer_id: str, payload: bytes) -> Any:
            try:
                verdict = await handler(peer_id, payload)
            except BaseException:
                self.gossip.labels(kind, "error").inc()
                raise
            self.gossip.labels(kind, str(getattr(verdict, "value", verdict))).inc()
            return verdict

        return counted

    def rpc_call(self, method: str, seconds: float, error_code: int | None) -> None:
        self.rpc_requests.labels(method).inc()
        self.rpc_latency.labels(method).observe(seconds)
        if error_code is not None:
            self.rpc_errors.labels(method, str(error_code)).inc()


@functools.cache
def _break_glass_log_key() -> tuple[str, str]:
    """(address, topic0) of MedLedger's BreakGlassOpened logs, in the RPC log format."""
    from contracts.bindings import MedLedger
    from genesis.system import MEDLEDGER_ADDRESS

    topic = MedLedger().event_topic("BreakGlassOpened")
    return "0x" + MEDLEDGER_ADDRESS.hex(), "0x" + topic.hex()


def _is_break_glass_opened(entry: dict[str, Any]) -> bool:
    topics = entry.get("topics") or ()
    address, topic = _break_glass_log_key()
    return (
        bool(topics)
        and str(entry.get("address", "")).lower() == address
        and str(topics[0]).lower() == topic
    )


def instrument_dispatcher(dispatcher: Dispatcher, metrics: NodeMetrics) -> int:
    """Wrap every method registered so far to count calls, errors and latency per method.

    Call after all APIs are installed (methods registered later are not counted). Returns the
    number of methods wrapped. Unknown method names are not counted (they would let any caller
    create unbounded label values).
    """
    methods = dispatcher._methods  # the registry has no public iterator of handlers
    for name, method in list(methods.items()):
        methods[name] = dataclasses.replace(method, handler=_timed(name, method.handler, metrics))
    return len(methods)


def _timed(name: str, handler: Any, metrics: NodeMetrics) -> Any:
    async def timed(params: Any, ctx: Any) -> Any:
        started = time.perf_counter()
        code: int | None = None
        try:
            return await handler(params, ctx)
        except RpcError as exc:
            code = exc.code
            raise
        except Exception:
            code = INTERNAL_ERROR
            raise
        finally:
            metrics.rpc_call(name, time.perf_counter() - started, code)

    return timed


class InstrumentedBlockstore(Blockstore):
    """A record blockstore that counts bytes in and out and times every operation."""

    def __init__(self, inner: Blockstore, metrics: NodeMetrics) -> None:
        self.inner = inner
        self.metrics = metrics

    def _timed(self, operation: str) -> _Timer:
        return _Timer(self.metrics, operation)

    def put(self, source: ByteSource, *, pin: bool = True) -> str:
        counter = self.metrics.record_bytes.labels("in")

        def counted() -> Iterator[bytes]:
            for piece in iter_source(source):
                counter.inc(len(piece))
                yield piece

        with self._timed("put"):
            return self.inner.put(counted(), pin=pin)

    def get(self, cid: str) -> Iterator[bytes]:
        counter = self.metrics.record_bytes.labels("out")
        with self._timed("get"):
            for piece in self.inner.get(cid):
                counter.inc(len(piece))
                yield piece

    def pin(self, cid: str) -> None:
        with self._timed("pin"):
            self.inner.pin(cid)

    def unpin(self, cid: str) -> None:
        with self._timed("unpin"):
            self.inner.unpin(cid)

    def stat(self, cid: str) -> Stat:
        with self._timed("stat"):
            return self.inner.stat(cid)

    def close(self) -> None:
        self.inner.close()


class _Timer:
    def __init__(self, metrics: NodeMetrics, operation: str) -> None:
        self._metrics = metrics
        self._operation = operation
        self._started = 0.0

    def __enter__(self) -> _Timer:
        self._started = time.perf_counter()
        return self

    def __exit__(self, kind: object, exc: object, tb: object) -> None:
        elapsed = time.perf_counter() - self._started
        self._metrics.record_latency.labels(self._operation).observe(elapsed)
        if kind is not None and kind is not GeneratorExit:
            self._metrics.record_errors.labels(self._operation).inc()
