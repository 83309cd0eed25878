"""A running node: chain, txpool, block producer and JSON-RPC on one trio loop.

`run_node` owns the lifetime: it opens the chain (LevelDB), starts the RPC
listeners and the producer, and on SIGINT/SIGTERM stops accepting work and
closes the database cleanly. A crash or SIGKILL is safe too: every block is one
atomic LevelDB batch.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import structlog
import trio
from eth.abc import BlockAPI

from genesis.schema import Genesis
from node.chain import Chain
from node.producer import BlockProducer
from node.rpc.dispatch import Dispatcher
from node.rpc.eth_api import EthApi, EthApiConfig
from node.rpc.filters import FilterManager
from node.rpc.server import RpcApp, RpcServerConfig, serve_rpc
from node.rpc.subscriptions import SubscriptionHub
from node.txpool import TxPool
from node.worker import ChainWorker

log = structlog.get_logger("medledger.node")

ENDPOINTS_FILE = "endpoints.json"


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


class Node:
    """The assembled services of one node; `run` serves until cancelled."""

    def __init__(self, config: NodeConfig) -> None:
        self.config = config
        self.chain = Chain(config.datadir, config.genesis)
        self.worker = ChainWorker()
        self.txpool = TxPool(config.genesis.chain_id, max_size=config.txpool_size,
                             min_priority_fee=config.min_priority_fee)
        self.dispatcher = Dispatcher(max_batch=config.max_batch)
        self.hub = SubscriptionHub()
        self.filters = FilterManager()
        self.eth = EthApi(
            self.chain, self.txpool, self.worker, self.filters, self.hub,
            EthApiConfig(min_priority_fee=config.min_priority_fee),
        )
        self.eth.install(self.dispatcher)
        self.producer: BlockProducer | None = None
        if config.validator_key is not None:
            self._check_validator(config.validator_key)
            qbft = config.genesis.qbft
            self.producer = BlockProducer(
                self.chain, self.txpool, self.worker, config.validator_key,
                block_period=qbft.block_period_seconds,
                empty_block_period=(
                    config.empty_block_period or qbft.empty_block_period_seconds
                ),
                block_logs=self.eth.block_logs,
            )
            self.producer.add_listener(self._on_block)
            self.txpool.subscribe(lambda _tx: self._wake_producer())
        self._trio_token: trio.lowlevel.TrioToken | None = None
        self.rpc_port: int | None = None
        self.ws_port: int | None = None

    def _check_validator(self, key: bytes) -> None:
        from eth_keys import keys

        address = keys.PrivateKey(key).public_key.to_canonical_address()
        validators = self.chain.validators_after(self.chain.head)
        if address not in validators:
            self.chain.close()
            raise ValueError(
                f"key 0x{address.hex()} is not a validator of this chain "
                f"(validators: {', '.join('0x' + v.hex() for v in validators)})"
            )

    def _wake_producer(self) -> None:
        # The txpool callback runs in the worker thread; hop to the loop to set the event.
        if self.producer is not None and self._trio_token is not None:
            with contextlib.suppress(trio.RunFinishedError):
                trio.from_thread.run_sync(self.producer.notify_transaction,
                                          trio_token=self._trio_token)

    def _on_block(self, block: BlockAPI, logs: list[dict[str, Any]]) -> None:
        self.eth.publish_block(block, logs)

    def _write_endpoints(self) -> None:
        endpoints = {
            "http": f"http://{self.config.rpc_host}:{self.rpc_port}",
            "ws": f"ws://{self.config.rpc_host}:{self.ws_port or self.rpc_port}",
            "pid": os.getpid(),
        }
        path = self.config.datadir / ENDPOINTS_FILE
        tmp = path.with_suffix(".tmp")
        tmp.write_text(json.dumps(endpoints))
        tmp.replace(path)

    async def run(self, *, task_status: Any = trio.TASK_STATUS_IGNORED) -> None:
        self._trio_token = trio.lowlevel.current_trio_token()
        rpc_config = RpcServerConfig(
            host=self.config.rpc_host, port=self.config.rpc_port,
            max_body_bytes=self.config.max_body_bytes,
            max_ws_message_bytes=self.config.max_body_bytes,
            cors_origins=self.config.cors_origins,
        )
        app = RpcApp(self.dispatcher, self.hub, rpc_config)
        try:
            async with trio.open_nursery() as nursery:
                self.rpc_port = await nursery.start(serve_rpc, app, rpc_config)
                if self.config.ws_port is not None:
                    ws_config = RpcServerConfig(
                        host=self.config.rpc_host, port=self.config.ws_port,
                        max_body_bytes=self.config.max_body_bytes,
                        max_ws_message_bytes=self.config.max_body_bytes,
                        cors_origins=self.config.cors_origins,
                    )
                    self.ws_port = await nursery.start(
                        serve_rpc, RpcApp(self.dispatcher, self.hub, ws_config), ws_config
                    )
                self._write_endpoints()
                head = self.chain.head
                log.info(
                    "node started",
                    chain_id=self.chain.chain_id,
                    head=head.block_number,
                    genesis="0x" + self.chain.genesis_hash.hex(),
                    http=f"http://{self.config.rpc_host}:{self.rpc_port}",
                    ws=f"ws://{self.config.rpc_host}:{self.ws_port or self.rpc_port}",
                    validator=None if self.producer is None else "0x" + self.producer.address.hex(),
                )
                if self.producer is not None:
                    nursery.start_soon(self.producer.run)
                task_status.started(self)
        finally:
            await self._close()

    async def _close(self) -> None:
        # Wait for any chain work in flight (a block being committed) before closing LevelDB.
        with trio.CancelScope(shield=True):
            head = await self.worker.run(lambda: self.chain.head.block_number)
            await self.worker.run(self.chain.close)
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
