"""Single-validator block sealing: one block per block period when there is work.

The validator builds a block from the txpool every `block_period` seconds when
transactions are waiting, and an empty block when `empty_block_period` seconds
passed without one. With one validator the quorum is one, so the block is
final as soon as this node seals it. The QBFT round state machine replaces the
sealing step when more validators join; building and storing stay as they are.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import structlog
import trio
from eth.abc import BlockAPI

from consensus.seals import seal_hash, sign_seal
from node.chain import Chain
from node.rpc.eth_api import StateReader
from node.txpool import TxPool
from node.worker import ChainWorker

log = structlog.get_logger("medledger.producer")

BlockListener = Callable[[BlockAPI, list[dict[str, Any]]], None]


@dataclass(frozen=True)
class SealedBlock:
    block: BlockAPI
    tx_count: int
    rejected: int


class BlockProducer:
    def __init__(
        self,
        chain: Chain,
        txpool: TxPool,
        worker: ChainWorker,
        validator_key: bytes,
        *,
        block_period: float,
        empty_block_period: float,
        max_block_txs: int = 5000,
        block_logs: Callable[[BlockAPI], list[dict[str, Any]]] | None = None,
    ) -> None:
        from eth_keys import keys

        self.chain = chain
        self.txpool = txpool
        self.worker = worker
        self._key = validator_key
        self.address = keys.PrivateKey(validator_key).public_key.to_canonical_address()
        self.block_period = block_period
        self.empty_block_period = empty_block_period
        self.max_block_txs = max_block_txs
        self._block_logs = block_logs
        self._listeners: list[BlockListener] = []
        self._work_arrived = trio.Event()

    def add_listener(self, listener: BlockListener) -> None:
        self._listeners.append(listener)

    def notify_transaction(self) -> None:
        """Wake the producer early: a transaction is waiting."""
        self._work_arrived.set()

    def _seal_next(self) -> tuple[SealedBlock, list[dict[str, Any]]]:
        """Build, seal and store one block (worker thread)."""
        timestamp = max(int(time.time()), self.chain.head.timestamp + 1)
        state = StateReader(self.chain)
        base_fee = int(self.chain.pending_header(timestamp).base_fee_per_gas)
        selected = self.txpool.select(
            state, base_fee=base_fee, gas_limit=self.chain.head.gas_limit,
            max_count=self.max_block_txs,
        )
        built = self.chain.build_block(
            [p.tx for p in selected], timestamp=timestamp, proposer=self.address
        )
        seal = sign_seal(seal_hash(built.block.header), self._key)
        block = self.chain.commit_sealed(built, [seal])
        self.txpool.remove([tx.hash for tx in block.transactions])
        dropped = [tx.hash for tx, reason in built.rejected if reason != "block gas limit reached"]
        self.txpool.remove(dropped)
        self.txpool.on_new_head(StateReader(self.chain))
        logs = self._block_logs(block) if self._block_logs else []
        return SealedBlock(block, len(block.transactions), len(dropped)), logs

    async def seal_once(self) -> SealedBlock:
        sealed, logs = await self.worker.run(self._seal_next)
        log.info(
            "sealed block",
            number=sealed.block.number,
            hash="0x" + sealed.block.hash.hex(),
            txs=sealed.tx_count,
            dropped=sealed.rejected,
        )
        for listener in self._listeners:
            listener(sealed.block, logs)
        return sealed

    async def run(self) -> None:
        """Seal forever: every block period when the pool has work, else on the empty period."""
        last_sealed = trio.current_time()
        while True:
            now = trio.current_time()
            wait_empty = last_sealed + self.empty_block_period - now
            if len(self.txpool) == 0 and wait_empty > 0:
                self._work_arrived = trio.Event()
                with trio.move_on_after(wait_empty):
                    await self._work_arrived.wait()
                if len(self.txpool) == 0 and trio.current_time() < last_sealed + (
                    self.empty_block_period
                ):
                    continue
            # Let a burst of transactions gather for up to one block period after the last block.
            await trio.sleep_until(max(trio.current_time(), last_sealed + self.block_period))
            await self.seal_once()
            last_sealed = trio.current_time()
