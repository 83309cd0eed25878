"""A running node: chain, txpool, QBFT, libp2p network, sync and JSON-RPC on one trio loop.

`Node.run` owns the lifetime: it opens the chain (LevelDB), starts the P2P host
(when configured), the QBFT driver (for a validator), block sync and the RPC
listeners, and on SIGINT/SIGTERM stops them and closes the database cleanly. A
crash or SIGKILL is safe too: every block is one atomic LevelDB batch.
"""

from __future__ import annotations

import json
import os
import signal
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

import structlog
import trio
from eth.abc import BlockAPI
from eth_keys import keys

from consensus.messages import MessageError, decode_message
from consensus.qbft import Qbft
from genesis.schema import Genesis
from network import (
    AllowList,
    NetworkConfig,
    P2PNode,
    Validation,
    decode_tx_batch,
    split_tx_batches,
)
from network.errors import CodecError
from node.chain import Chain
from node.consensus_blocks import ChainBlockOps
from node.health import HealthPolicy
from node.logindex import LogIndex, LogIndexer
from node.metrics import NodeMetrics, instrument_dispatcher
from node.nodekey import resolve_node_key
from node.ops_server import OpsApp, serve_ops
from node.permissioning import OnChainPermissioning
from node.qbft_driver import DriverConfig, QbftDriver
from node.ratelimit import DEFAULT_RPC_LIMIT, ClientRateLimiter, RateLimit
from node.records.embedded import EmbeddedBlockstore
from node.records.store import RecordStore
from node.rpc.admin_api import AdminApi
from node.rpc.dispatch import Dispatcher
from node.rpc.eth_api import EthApi, EthApiConfig, StateReader
from node.rpc.filters import FilterManager
from node.rpc.ops_api import install_ops_rpc
from node.rpc.qbft_api import QbftApi
from node.rpc.readonly import refuse_writes
from node.rpc.server import RpcApp, RpcServerConfig, serve_rpc
from node.rpc.subscriptions import SubscriptionHub
from node.signing_guard import PersistentSigningGuard
from node.sync import ChainSync, ChainSyncProvider
from node.txpool import TxPool, TxPoolError, block_senders
from node.validators import PendingVotes
from node.worker import ChainWorker

if TYPE_CHECKING:  # the FHIR stack (fhir.resources, pydicom) loads only when it is enabled
    from node.fhir import FhirConfig, FhirService

log = structlog.get_logger("medledger.node")

ENDPOINTS_FILE = "endpoints.json"
NODE_KEY_FILE = "p2p.key"  # legacy plain node key (node.nodekey.LEGACY_NODE_KEY_FILE)
TX_GOSSIP_INTERVAL = 0.05
FULL_POOL_SWEEP_BLOCKS = 32


@dataclass(frozen=True)
class NodeConfig:
    datadir: Path
    genesis: Genesis
    validator_key: bytes | None
    rpc_host: str = "127.0.0.1"
    rpc_port: int = 8545
    ws_port: int | None = 8546
    empty_block_period: float | None = None
    max_body_bytes: int = 5 * 1024 * 1024
    max_batch: int = 1000
    txpool_size: int = 8192
    min_priority_fee: int = 0
    cors_origins: tuple[str, ...] = field(default_factory=tuple)
    p2p_host: str = "127.0.0.1"
    p2p_port: int | None = None  # None: no network (a single-validator chain)
    static_peers: tuple[str, ...] = ()
    admin_rpc: bool = False
    metrics: bool = False
    metrics_host: str = "127.0.0.1"
    metrics_port: int = 9545
    health: HealthPolicy = field(default_factory=HealthPolicy)
    fhir: FhirConfig | None = None  # None: no FHIR API
    fhir_key: bytes | None = None  # the hospital's service account (doctor/nurse role)
    fhir_record_key: Any = None  # the hospital's RSA record key (cryptography private key)
    # The P2P identity of a node without validator_key (decrypted by the caller, see
    # node.nodekey); None: only a legacy plain DATADIR/p2p.key is read, never created.
    node_key: bytes | None = None
    # An auditor's node: refuses transactions (JSON-RPC) and FHIR writes, and never seals.
    read_only: bool = False
    rpc_rate_limit: RateLimit = DEFAULT_RPC_LIMIT  # per client IP, HTTP and WebSocket


class Node:
    """The assembled services of one node; `run` serves until cancelled."""

    def __init__(self, config: NodeConfig) -> None:
        self.config = config
        self.chain = Chain(config.datadir, config.genesis)
        try:
            self._assemble(config)
        except Exception:
            if getattr(self, "log_index", None) is not None:
                self.log_index.close()
            self.chain.close()
            raise

    def _assemble(self, config: NodeConfig) -> None:
        genesis = config.genesis
        if config.read_only and config.validator_key is not None:
            raise ValueError("a read-only (auditor) node does not seal blocks: drop its "
                             "validator key (--key) or run it without --read-only")
        self.worker = ChainWorker()
        self.permissioning = OnChainPermissioning(self.chain)
        self.txpool = TxPool(genesis.chain_id, max_size=config.txpool_size,
                             min_priority_fee=config.min_priority_fee,
                             sender_allowed=self.permissioning.sender_allowed)
        self._contract_nodes: frozenset[bytes] = frozenset()
        self.dispatcher = Dispatcher(max_batch=config.max_batch)
        self.hub = SubscriptionHub()
        self.filters = FilterManager()
        self.pending_votes = PendingVotes()
        self.block_ops = ChainBlockOps(self.chain, self.permissioning)
        self.guard = PersistentSigningGuard(self.chain.store)
        # As in Besu, the node key is the validator key: a node that is not a validator yet
        # signs with its node key once the validators vote it in.
        signing_key = config.validator_key
        if signing_key is None and config.p2p_port is not None:
            signing_key = config.node_key or resolve_node_key(config.datadir, None, lambda: None)
        self.address: bytes | None = None
        if signing_key is not None:
            self.address = keys.PrivateKey(signing_key).public_key.to_canonical_address()

        self.p2p: P2PNode | None = None
        self.allowlist = AllowList((*genesis.validators, *genesis.node_allowlist))
        if config.p2p_port is not None:
            assert signing_key is not None
            node_key = signing_key
            self.p2p = P2PNode(
                NetworkConfig(
                    chain_id=genesis.chain_id, genesis_hash=self.chain.genesis_hash,
                    listen_host=config.p2p_host, listen_port=config.p2p_port,
                    static_peers=config.static_peers,
                ),
                node_key, self.allowlist, ChainSyncProvider(self.chain, self.worker),
            )
        elif self.address is not None and self.chain.validators_after(self.chain.head) != (
            self.address,
        ):
            raise ValueError(
                "this chain has other validators: give the node a P2P port (--p2p-port) "
                "and its peers (--peer)"
            )

        self.log_index = LogIndex.open_for(config.datadir, self.chain)
        self.log_indexer = LogIndexer(self.log_index, self.chain, self.worker)
        self.eth = EthApi(
            self.chain, self.txpool, self.worker, self.filters, self.hub,
            EthApiConfig(min_priority_fee=config.min_priority_fee),
            peer_count=lambda: len(self.p2p.peers()) if self.p2p is not None else 0,
            log_index=self.log_index,
        )
        self.eth.install(self.dispatcher)
        QbftApi(self.chain, self.worker, self.pending_votes).install(self.dispatcher)
        if config.admin_rpc and self.p2p is not None:
            AdminApi(self.p2p, genesis.chain_id, self.chain.genesis_hash).install(self.dispatcher)

        self.qbft = Qbft(
            private_key=signing_key, block_ops=self.block_ops, guard=self.guard,
            request_timeout=genesis.qbft.request_timeout_seconds,
        )
        self.driver: QbftDriver | None = None
        if self.address is not None and not config.read_only:
            self.driver = QbftDriver(
                self.chain, self.txpool, self.worker, self.qbft, self.block_ops,
                DriverConfig(
                    block_period=genesis.qbft.block_period_seconds,
                    empty_block_period=(
                        config.empty_block_period or genesis.qbft.empty_block_period_seconds
                    ),
                ),
                proposer_address=self.address,
                pending_votes=self.pending_votes,
                publish=self._publish_qbft if self.p2p is not None else None,
                block_logs=self.eth.block_logs,
                prune_signed=self.guard.prune_below,
                highest_signed_round=self.guard.highest_round,
                timing=self._timing_at,
            )
            self.driver.add_listener(self._on_sealed)
        self.sync: ChainSync | None = None
        if self.p2p is not None:
            self.sync = ChainSync(self.p2p, self.chain, self.worker, self.block_ops,
                                  block_logs=self.eth.block_logs)
            self.sync.add_listener(self._on_imported)
        self._tx_outbox: list[bytes] = []
        self._relaying = False
        self.metrics = NodeMetrics()
        self.metrics.bind(self)  # before run(): it wraps the gossip handlers and adds listeners
        if config.admin_rpc:
            install_ops_rpc(self.dispatcher, self)
        if config.read_only:
            refuse_writes(self.dispatcher)
        instrument_dispatcher(self.dispatcher, self.metrics)  # last: after every install
        self.ops_port: int | None = None
        self.fhir: FhirService | None = None
        self.fhir_port: int | None = None
        if config.fhir is not None:
            from node.fhir import FhirService

            if config.fhir_key is None or config.fhir_record_key is None:
                raise ValueError("the FHIR API needs --fhir-key and --fhir-record-key")
            store = RecordStore(EmbeddedBlockstore(config.datadir / "records"))
            fhir_config = replace(config.fhir, read_only=True) if config.read_only else config.fhir
            self.fhir = FhirService(self.chain, self.worker, self.txpool, store,
                                    config.fhir_key, fhir_config, config.fhir_record_key)
            self.fhir.rpc = self.dispatcher  # the web UI's same-origin /rpc (allow-listed)
            if self.driver is not None:
                self.driver.add_listener(self.fhir.on_block)
            if self.sync is not None:
                self.sync.add_listener(self.fhir.on_block)
        self.txpool.subscribe(self._on_pool_tx)
        self.rpc_port: int | None = None
        self.ws_port: int | None = None

    def _timing_at(self, height: int) -> tuple[float, float, float]:
        """QBFT timing for `height` from the genesis fork schedule (the operator's empty-block
        period, if set, still wins, as at startup)."""
        params = self.config.genesis.qbft_at(height)
        empty = self.config.empty_block_period or params.empty_block_period_seconds
        return (float(params.block_period_seconds), float(max(empty, params.block_period_seconds)),
                float(params.request_timeout_seconds))

    # -- events ----------------------------------------------------------------------------

    def _on_pool_tx(self, pooled: Any) -> None:
        # Runs in the chain worker thread; the outbox is drained on the loop. Transactions
        # that came in by gossip are not re-published: gossipsub relays them already.
        if not self._relaying:
            self._tx_outbox.append(pooled.raw)

    async def _publish_qbft(self, message: bytes) -> None:
        if self.p2p is not None:
            await self.p2p.publish("qbft", message)

    def _refresh_allowlist(self, *, read_contract: bool) -> None:
        """Peers allowed: validators (genesis and current), genesis nodeAllowlist, and the
        on-chain NodeAllowList when the chain has one (chain worker thread)."""
        validators = self.chain.validators_after(self.chain.head)
        if read_contract:
            self._contract_nodes = self.permissioning.allowed_nodes(validators) or frozenset()
        genesis = self.config.genesis
        self.allowlist.replace({*validators, *genesis.validators, *genesis.node_allowlist,
                                *self._contract_nodes})

    async def _after_block(self, block: BlockAPI, logs: list[dict[str, Any]]) -> None:
        def cleanup() -> None:
            self.txpool.remove([tx.hash for tx in block.transactions])
            nodes_changed, accounts_changed = self.permissioning.on_block(block)
            if accounts_changed:
                self.txpool.drop_unpermitted()
            # Only the block's senders (and EIP-7702 authorities) can have spent nonces or
            # balance; re-checking every pooled sender costs O(pool) state reads per block.
            # A full sweep now and then catches what no sender list shows (a delegated
            # EIP-7702 account spending through its code).
            senders = None if block.number % FULL_POOL_SWEEP_BLOCKS == 0 else block_senders(block)
            self.txpool.on_new_head(StateReader(self.chain), senders=senders)
            self._refresh_allowlist(read_contract=nodes_changed)

        await self.worker.run(cleanup)
        self.eth.publish_block(block, logs)
        await self.log_indexer.on_block(block, logs)

    async def _on_sealed(self, block: BlockAPI, logs: list[dict[str, Any]]) -> None:
        await self._after_block(block, logs)
        if self.p2p is not None:
            await self.p2p.publish("block", self.block_ops.encode_block(block))

    async def _on_imported(self, block: BlockAPI, logs: list[dict[str, Any]]) -> None:
        await self._after_block(block, logs)
        if self.driver is not None:
            self.driver.head_changed()

    # -- gossip handlers -------------------------------------------------------------------

    async def _gossip_qbft(self, peer_id: str, payload: bytes) -> Validation:
        try:
            message = decode_message(payload)
        except MessageError:
            return Validation.REJECT
        if message.author not in self.allowlist:
            return Validation.REJECT
        if self.driver is not None:
            self.driver.deliver(payload, peer_id)
        return Validation.ACCEPT

    async def _gossip_block(self, peer_id: str, payload: bytes) -> Validation:
        assert self.sync is not None
        def position() -> tuple[int, int]:
            return self.block_ops.decode_block(payload).number, self.chain.head.block_number

        try:
            number, head = await self.worker.run(position)
        except ValueError:
            return Validation.REJECT
        if number <= head:
            return Validation.IGNORE
        if number > head + 1:
            self.sync.trigger()
            return Validation.IGNORE
        if await self.sync.import_raw(payload):
            return Validation.ACCEPT
        # Stored meanwhile through consensus or sync (a race, not the peer's fault)?
        head = await self.worker.run(lambda: self.chain.head.block_number)
        return Validation.IGNORE if head >= number else Validation.REJECT

    async def _gossip_tx(self, peer_id: str, payload: bytes) -> Validation:
        try:
            raws = decode_tx_batch(payload)
        except CodecError:
            return Validation.REJECT

        def add_all() -> int:
            head = self.chain.head
            base_fee = int(self.chain.pending_header(head.timestamp + 1).base_fee_per_gas)
            state = StateReader(self.chain)
            accepted = 0
            # Set and cleared in the worker thread, around these adds only: a transaction
            # an RPC client sends meanwhile (another worker call) is still published.
            self._relaying = True
            try:
                for raw in raws:
                    try:
                        self.txpool.add(
                            raw, state, block_gas_limit=head.gas_limit, base_fee=base_fee
                        )
                        accepted += 1
                    except TxPoolError:
                        continue
            finally:
                self._relaying = False
            return accepted

        await self.worker.run(add_all)
        return Validation.ACCEPT

    async def _tx_gossip_loop(self) -> None:
        assert self.p2p is not None
        while True:
            await trio.sleep(TX_GOSSIP_INTERVAL)
            if not self._tx_outbox:
                continue
            batch, self._tx_outbox = self._tx_outbox, []
            for payload in split_tx_batches(batch):
                await self.p2p.publish("tx", payload)

    # -- lifetime --------------------------------------------------------------------------

    def _write_endpoints(self) -> None:
        endpoints: dict[str, Any] = {
            "http": f"http://{self.config.rpc_host}:{self.rpc_port}",
            "ws": f"ws://{self.config.rpc_host}:{self.ws_port or self.rpc_port}",
            "pid": os.getpid(),
        }
        if self.fhir_port is not None and self.config.fhir is not None:
            scheme = "https" if self.config.fhir.certfile else "http"
            endpoints["fhir"] = f"{scheme}://{self.config.fhir.host}:{self.fhir_port}"
        if self.ops_port is not None:
            endpoints["ops"] = f"http://{self.config.metrics_host}:{self.ops_port}"
        if self.p2p is not None:
            endpoints["p2p"] = list(self.p2p.listen_addrs)
            endpoints["peer_id"] = self.p2p.peer_id
        path = self.config.datadir / ENDPOINTS_FILE
        tmp = path.with_suffix(".tmp")
        tmp.write_text(json.dumps(endpoints))
        tmp.replace(path)

    def _rpc_config(self, port: int) -> RpcServerConfig:
        return RpcServerConfig(
            host=self.config.rpc_host, port=port,
            max_body_bytes=self.config.max_body_bytes,
            max_ws_message_bytes=self.config.max_body_bytes,
            cors_origins=self.config.cors_origins,
            rate_limit=self.config.rpc_rate_limit,
        )

    async def run(self, *, task_status: Any = trio.TASK_STATUS_IGNORED) -> None:
        try:
            async with trio.open_nursery() as nursery:
                await self.worker.run(lambda: self._refresh_allowlist(read_contract=True))
                if self.p2p is not None:
                    self.p2p.set_handler("qbft", self._gossip_qbft)
                    self.p2p.set_handler("block", self._gossip_block)
                    self.p2p.set_handler("tx", self._gossip_tx)
                    await nursery.start(self.p2p.run)
                    nursery.start_soon(self._tx_gossip_loop)
                    assert self.sync is not None
                    nursery.start_soon(self.sync.run)
                rpc_config = self._rpc_config(self.config.rpc_port)
                limiter = ClientRateLimiter(self.config.rpc_rate_limit)  # one per client IP
                self.rpc_port = await nursery.start(
                    serve_rpc, RpcApp(self.dispatcher, self.hub, rpc_config, limiter=limiter),
                    rpc_config,
                )
                if self.config.ws_port is not None:
                    ws_config = self._rpc_config(self.config.ws_port)
                    self.ws_port = await nursery.start(
                        serve_rpc,
                        RpcApp(self.dispatcher, self.hub, ws_config, limiter=limiter),
                        ws_config,
                    )
                if self.fhir is not None:
                    from node.fhir import serve_fhir

                    self.fhir_port = await nursery.start(serve_fhir, self.fhir)
                if self.config.metrics:
                    self.ops_port = await nursery.start(
                        serve_ops, OpsApp(self.metrics, self.config.health),
                        self.config.metrics_host, self.config.metrics_port,
                    )
                nursery.start_soon(self.log_indexer.run)
                self._write_endpoints()
                head = self.chain.head
                log.info(
                    "node started",
                    chain_id=self.chain.chain_id,
                    head=head.block_number,
                    genesis="0x" + self.chain.genesis_hash.hex(),
                    http=f"http://{self.config.rpc_host}:{self.rpc_port}",
                    ws=f"ws://{self.config.rpc_host}:{self.ws_port or self.rpc_port}",
                    p2p=None if self.p2p is None else self.p2p.listen_addrs,
                    signer=None if self.address is None else "0x" + self.address.hex(),
                )
                if self.driver is not None:
                    nursery.start_soon(self.driver.run)
                task_status.started(self)
        finally:
            await self._close()

    async def _close(self) -> None:
        # Wait for any chain work in flight (a block being committed) before closing LevelDB.
        with trio.CancelScope(shield=True):
            head = await self.worker.run(lambda: self.chain.head.block_number)
            await self.worker.run(self.chain.close)
            self.log_index.close()
        self.worker.close()
        log.info("node stopped", head=head)


async def run_until_signal(config: NodeConfig) -> None:
    """Run a node until SIGINT or SIGTERM, then shut down gracefully."""
    node = Node(config)
    async with trio.open_nursery() as nursery:
        with trio.open_signal_receiver(signal.SIGINT, signal.SIGTERM) as signals:
            await nursery.start(node.run)
            async for signum in signals:
                log.info("shutting down", signal=signal.Signals(signum).name)
                nursery.cancel_scope.cancel()
                break
