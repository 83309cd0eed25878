"""Catching up: fetch final blocks from peers over the sync protocol and import them.

Gossip may drop blocks (py-libp2p's gossipsub drops bursts silently), so a
node never relies on it: it polls its peers' heads and pulls what it misses
over the request/response protocol, in bounded ranges, verifying every block's
commit seals and execution before it becomes the head.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

import rlp
import structlog
import trio
from eth.abc import BlockAPI

from network import ChainStatus
from node.chain import BlockRejected, Chain
from node.consensus_blocks import ChainBlockOps
from node.worker import ChainWorker

log = structlog.get_logger("medledger.sync")

ImportListener = Callable[[BlockAPI, list[dict[str, Any]]], Awaitable[None] | None]


class ChainSyncProvider:
    """Answers peers' sync requests from the local chain (network's SyncProvider)."""

    def __init__(self, chain: Chain, worker: ChainWorker, max_blocks: int = 128) -> None:
        self.chain = chain
        self.worker = worker
        self.max_blocks = max_blocks
        self._forks = chain.genesis.fork_ids()  # fixed for the process: digests computed once

    async def status(self) -> ChainStatus:
        def read() -> ChainStatus:
            head = self.chain.head
            return ChainStatus(
                chain_id=self.chain.chain_id, genesis_hash=self.chain.genesis_hash,
                head_number=head.block_number, head_hash=head.hash,
                forks=self._forks,
            )

        return await self.worker.run(read)

    async def blocks(self, start: int, count: int) -> list[bytes]:
        def read() -> list[bytes]:
            out: list[bytes] = []
            for number in range(max(start, 0), max(start, 0) + min(count, self.max_blocks)):
                block = self.chain.block_by_number(number)
                if block is None:
                    break
                out.append(rlp.encode(block))
            return out

        return await self.worker.run(read)


class ChainSync:
    """Polls peers' heads and imports the final blocks this node lacks."""

    def __init__(
        self,
        p2p: Any,
        chain: Chain,
        worker: ChainWorker,
        block_ops: ChainBlockOps,
        *,
        interval: float = 1.0,
        batch: int = 64,
        block_logs: Callable[[BlockAPI], list[dict[str, Any]]] | None = None,
    ) -> None:
        self.p2p = p2p
        self.chain = chain
        self.worker = worker
        self.block_ops = block_ops
        self.interval = interval
        self.batch = batch
        self._block_logs = block_logs
        self._listeners: list[ImportListener] = []
        self._wake = trio.Event()
        self.highest_seen = 0
        self.imported = 0

    def add_listener(self, listener: ImportListener) -> None:
        self._listeners.append(listener)

    def trigger(self) -> None:
        self._wake.set()

    async def run(self) -> None:
        while True:
            with trio.move_on_after(self.interval):
                await self._wake.wait()
            self._wake = trio.Event()
            for peer in list(self.p2p.peers()):
                try:
                    await self._catch_up_from(peer.peer_id)
                except (OSError, ValueError, trio.TooSlowError, ConnectionError) as exc:
                    log.debug("sync from peer failed", peer=peer.peer_id, error=str(exc))
                except Exception as exc:  # a misbehaving peer must never stop syncing
                    log.warning("sync from peer failed", peer=peer.peer_id, error=repr(exc))

    async def _catch_up_from(self, peer_id: str) -> None:
        with trio.fail_after(10):
            status = await self.p2p.request_status(peer_id)
        self.highest_seen = max(self.highest_seen, status.head_number)
        while True:
            head = await self.worker.run(lambda: self.chain.head.block_number)
            if status.head_number <= head:
                return
            count = min(self.batch, status.head_number - head)
            with trio.fail_after(20):
                raws = await self.p2p.request_blocks(peer_id, head + 1, count)
            if not raws:
                return
            for raw in raws:
                if not await self.import_raw(raw):
                    return

    async def import_raw(self, raw: bytes) -> bool:
        """Import one final block if it extends the head; False if it does not fit."""

        def work() -> tuple[BlockAPI | None, list[dict[str, Any]]]:
            block = self.block_ops.decode_block(raw)
            head = self.chain.head
            if block.number != head.block_number + 1:
                return None, []
            final = self.block_ops.import_final(block)
            logs = self._block_logs(final) if self._block_logs else []
            return final, logs

        try:
            final, logs = await self.worker.run(work)
        except (BlockRejected, ValueError) as exc:
            log.warning("rejected block from peer", error=str(exc))
            return False
        if final is None:
            return False
        self.imported += 1
        log.info("imported block", number=final.number, hash="0x" + final.hash.hex(),
                 txs=len(final.transactions))
        for listener in self._listeners:
            result = listener(final, logs)
            if result is not None:
                await result
        return True
