"""Runs the pure QBFT state machine inside the node: network, timers, blocks, storage.

`consensus.qbft.Qbft` decides; this driver does the I/O its actions ask for:
broadcast a message, arm a round timer, build a block from the txpool, store a
finalized block. The state machine and the chain are touched only in the chain
worker thread, one call at a time.

When a height starts: once the block period has passed since the parent, and
either transactions are waiting or the empty-block period has passed too, or as
soon as a consensus message for that height arrives (another validator started).
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, replace
from typing import Any

import structlog
import trio
from eth.abc import BlockAPI

from consensus.messages import MessageError, decode_message
from consensus.qbft import Broadcast, BuildBlock, Finalized, Qbft, SetTimer
from node.chain import (
    BLOCK_GAS_LIMIT_REACHED,
    BUILD_TIME_BUDGET_REACHED,
    BlockRejected,
    Chain,
)
from node.consensus_blocks import ChainBlockOps, EvmConsensusBlock
from node.rpc.eth_api import StateReader
from node.txpool import TxPool
from node.validators import PendingVotes
from node.worker import ChainWorker

log = structlog.get_logger("medledger.qbft")

Publisher = Callable[[bytes], Awaitable[None]]
# Share of the round-0 timer a proposer may spend executing transactions into its block.
BUILD_BUDGET_FRACTION = 0.25
LEFT_FOR_LATER = frozenset({BLOCK_GAS_LIMIT_REACHED, BUILD_TIME_BUDGET_REACHED})
# Refusals an honest peer causes too (this node is behind, or has not started a height).
BENIGN_REJECTIONS = frozenset({"too_far_ahead", "no_height"})
# Height -> (block period, empty-block period, request timeout) in seconds for that height.
TimingSchedule = Callable[[int], tuple[float, float, float]]
BlockListener = Callable[[BlockAPI, list[dict[str, Any]]], Awaitable[None] | None]


@dataclass(frozen=True)
class DriverConfig:
    block_period: float
    empty_block_period: float
    max_block_txs: int = 5000
    poll_interval: float = 0.05


class QbftDriver:
    def __init__(
        self,
        chain: Chain,
        txpool: TxPool,
        worker: ChainWorker,
        qbft: Qbft,
        block_ops: ChainBlockOps,
        config: DriverConfig,
        *,
        proposer_address: bytes | None,
        pending_votes: PendingVotes,
        publish: Publisher | None = None,
        block_logs: Callable[[BlockAPI], list[dict[str, Any]]] | None = None,
        prune_signed: Callable[[int], int] | None = None,
        highest_signed_round: Callable[[int], int | None] | None = None,
        timing: TimingSchedule | None = None,
    ) -> None:
        self.chain = chain
        self.txpool = txpool
        self.worker = worker
        self.qbft = qbft
        self.block_ops = block_ops
        self.config = config
        self.address = proposer_address
        self.pending_votes = pending_votes
        self._publish = publish
        self._block_logs = block_logs
        self._prune_signed = prune_signed
        self._highest_signed_round = highest_signed_round
        self._timing = timing
        self._listeners: list[BlockListener] = []
        self._send, self._receive = trio.open_memory_channel[tuple[Any, ...]](100_000)
        self._started_height = 0
        self._head_number = 0
        self._head_timestamp = 0
        self._nursery: trio.Nursery | None = None
        self.round_changes = 0

    def add_listener(self, listener: BlockListener) -> None:
        self._listeners.append(listener)

    async def _step(self, fn: Callable[..., Any], *args: Any) -> Any:
        """Chain work for consensus: ahead of queued tx admissions and RPC reads."""
        return await self.worker.run(fn, *args, urgent=True)

    # -- inputs ------------------------------------------------------------------------------

    def deliver(self, raw: bytes, peer: str | None = None) -> bool:
        """A consensus message from the network (relayed by `peer`); False if the queue is
        full (dropped)."""
        try:
            self._send.send_nowait(("msg", raw, peer))
        except trio.WouldBlock:
            return False
        return True

    def head_changed(self) -> None:
        """A block arrived by sync or gossip: the current height is over."""
        with contextlib.suppress(trio.WouldBlock):
            self._send.send_nowait(("head",))

    # -- main loop ---------------------------------------------------------------------------

    async def run(self) -> None:
        await self._refresh_head()
        async with trio.open_nursery() as nursery:
            self._nursery = nursery
            nursery.start_soon(self._height_starter)
            async for event in self._receive:
                try:
                    await self._handle_event(event)
                except BlockRejected as exc:
                    log.warning("consensus step failed", event=event[0], error=str(exc))
                except ValueError as exc:
                    # A request the state machine refuses (e.g. a block built for a round it
                    # has left): loud, but one bad step must not stop the validator.
                    log.error("consensus step refused", event=event[0], error=str(exc))

    async def _handle_event(self, event: tuple[Any, ...]) -> None:
        kind = event[0]
        if kind == "msg":
            rejected = self.qbft.rejected
            await self._on_message(event[1])
            if self.qbft.rejected != rejected and self.qbft.last_rejection not in BENIGN_REJECTIONS:
                self._log_rejection(event[1], event[2] if len(event) > 2 else None)
        elif kind == "timeout":
            actions = await self._step(self.qbft.on_timeout, event[1], event[2])
            if actions:
                self.round_changes += 1
                log.info("round timeout", height=event[1], round=event[2])
            await self._perform(actions)
        elif kind == "built":
            _, height, round_number, block = event
            actions = await self._step(
                self.qbft.on_block_built, height, round_number, block
            )
            await self._perform(actions)
        elif kind == "head":
            await self._refresh_head()

    def _log_rejection(self, raw: bytes, peer: str | None) -> None:
        """Name the validator whose message consensus refused (equivocation, invalid block,
        wrong proposer, ...) and the peer that relayed it, so operators can act on it."""
        try:
            message = decode_message(raw)
        except MessageError:
            return  # undecodable messages are refused, and the peer penalized, by gossip
        log.warning(
            "qbft message rejected",
            reason=self.qbft.last_rejection,
            author="0x" + message.author.hex(),
            peer=peer,
            kind=type(message).__name__,
            height=message.height,
            round=message.round,
            detail=self.block_ops.last_rejection
            if self.qbft.last_rejection == "invalid_block" else None,
        )

    async def _refresh_head(self) -> None:
        head = await self._step(lambda: self.chain.head)
        self._head_number = head.block_number
        self._head_timestamp = head.timestamp
        if self._timing is not None:
            # A genesis fork may change the timing from the next height on.
            block_period, empty_period, timeout = self._timing(head.block_number + 1)
            if (block_period, empty_period) != (
                self.config.block_period, self.config.empty_block_period
            ):
                self.config = replace(
                    self.config, block_period=block_period, empty_block_period=empty_period
                )
            if timeout != self.qbft.request_timeout:
                await self._step(self.qbft.set_request_timeout, timeout)

    async def _on_message(self, raw: bytes) -> None:
        if self._started_height != self._head_number + 1:
            try:
                height = decode_message(raw).height
            except MessageError:
                height = -1
            if height == self._head_number + 1:
                await self._start_height()
        actions = await self._step(self.qbft.on_message, raw)
        await self._perform(actions)

    def _ready_to_start(self) -> bool:
        now = time.time()
        since_parent = now - self._head_timestamp
        if since_parent < self.config.block_period:
            return False
        return len(self.txpool) > 0 or since_parent >= self.config.empty_block_period

    async def _height_starter(self) -> None:
        while True:
            if self._started_height != self._head_number + 1 and self._ready_to_start():
                await self._start_height()
            await trio.sleep(self.config.poll_interval)

    async def _start_height(self) -> None:
        def start() -> tuple[int, list[Any]]:
            head = self.chain.head
            height = head.block_number + 1
            if self.qbft.height >= height:
                return height, []  # started already (a message and the timer raced)
            validators = self.chain.validators_after(head)
            parent_proposer = None if head.block_number == 0 else bytes(head.coinbase)
            # After a restart in the middle of a height, what we signed there binds us: start
            # in the next round instead of waiting for a round timer to get past it.
            signed_round = (
                self._highest_signed_round(height) if self._highest_signed_round else None
            )
            now_round = 0 if signed_round is None else signed_round + 1
            return height, self.qbft.new_height(
                height, validators, parent_proposer, now_round=now_round
            )

        height, actions = await self._step(start)
        self._started_height = height
        await self._perform(actions)

    # -- actions -----------------------------------------------------------------------------

    async def _perform(self, actions: Sequence[Any]) -> None:
        for action in actions:
            if isinstance(action, Broadcast):
                if self._publish is not None:
                    await self._publish(action.message)
            elif isinstance(action, SetTimer):
                assert self._nursery is not None
                self._nursery.start_soon(self._timer, action.height, action.round, action.seconds)
            elif isinstance(action, BuildBlock):
                assert self._nursery is not None
                self._nursery.start_soon(self._build, action.height, action.round)
            elif isinstance(action, Finalized):
                await self._store_final(action.block)

    async def _timer(self, height: int, round_number: int, seconds: float) -> None:
        await trio.sleep(seconds)
        await self._send.send(("timeout", height, round_number))

    async def _build(self, height: int, round_number: int) -> None:
        earliest = self._head_timestamp + self.config.block_period
        delay = earliest - time.time()
        if delay > 0:
            await trio.sleep(delay)
        block = await self._step(self._build_in_worker, height, round_number)
        if block is not None:
            await self._send.send(("built", height, round_number, block))

    def _build_in_worker(self, height: int, round_number: int) -> EvmConsensusBlock | None:
        head = self.chain.head
        if head.block_number + 1 != height or self.address is None:
            return None
        timestamp = max(int(time.time()), head.timestamp + int(self.config.block_period))
        state = StateReader(self.chain)
        base_fee = int(self.chain.pending_header(timestamp).base_fee_per_gas)
        selected = self.txpool.select(
            state, base_fee=base_fee, gas_limit=head.gas_limit, max_count=self.config.max_block_txs
        )
        vote = self.pending_votes.next_vote(self.chain.validators_after(head))
        # Every validator must execute the block before the round timer fires; on a loaded
        # machine building slows too, so a time budget keeps blocks finalizable in round 0.
        budget = self.qbft.request_timeout * BUILD_BUDGET_FRACTION
        built = self.chain.build_block(
            [p.tx for p in selected], timestamp=timestamp, proposer=self.address,
            round_number=round_number, vote=vote, deadline=time.monotonic() + budget,
        )
        dropped = [tx.hash for tx, reason in built.rejected if reason not in LEFT_FOR_LATER]
        self.txpool.remove(dropped)
        return EvmConsensusBlock.wrap(built.block)

    async def _store_final(self, block: EvmConsensusBlock) -> None:
        def store() -> tuple[BlockAPI | None, list[dict[str, Any]]]:
            try:
                final = self.chain.finalize(block.block)
            except BlockRejected as exc:
                # Already imported through sync or gossip: nothing to do.
                if self.chain.head.hash == block.block.header.parent_hash:
                    raise
                log.debug("finalized block already stored", number=block.number, reason=str(exc))
                return None, []
            # The txpool is cleaned by the node's block listener, as for blocks from sync.
            if self._prune_signed is not None and final.number > 16:
                self._prune_signed(final.number - 16)
            logs = self._block_logs(final) if self._block_logs else []
            return final, logs

        final, logs = await self._step(store)
        await self._refresh_head()
        if final is None:
            return
        extra_seals = len(block.block.header.extra_data)
        log.info(
            "sealed block",
            number=final.number,
            hash="0x" + final.hash.hex(),
            txs=len(final.transactions),
            round=block.round,
            extra_bytes=extra_seals,
        )
        for listener in self._listeners:
            result = listener(final, logs)
            if result is not None:
                await result
