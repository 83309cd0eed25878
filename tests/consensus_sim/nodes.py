"""Simulated validators: honest ones, an equivocating proposer and a garbage sender.

Every node keeps its own finalized chain and vote tally. Besides QBFT messages
the network carries a tiny sync protocol (ask a peer for blocks above your
head), standing in for the node's block sync: a validator that missed a
decision catches up by importing sealed blocks, checking their commit seals.
"""

from __future__ import annotations

import contextlib
import hashlib
import random
from dataclasses import replace
from functools import partial
from typing import TYPE_CHECKING, Any

from consensus.extradata import Vote
from consensus.messages import (
    Proposal,
    address_of,
    decode_message,
    sign_commit,
    sign_prepare,
    sign_proposal,
    sign_round_change,
)
from consensus.qbft import Action, Broadcast, BuildBlock, Finalized, Qbft, SetTimer
from consensus.seals import FinalityError, sign_seal
from consensus.votes import VoteTally
from tests.consensus_sim.blocks import GENESIS, SimBlock, SimBlockOps, seal_signers
from tests.consensus_sim.guards import RecordingGuard

if TYPE_CHECKING:
    from tests.consensus_sim.scenario import Simulation

SYNC_BATCH = 8
BUILD_DELAY = 0.02


class SimNode:
    """An honest validator (or follower) running the real Qbft."""

    honest = True

    def __init__(self, sim: Simulation, index: int, key: bytes) -> None:
        self.sim = sim
        self.index = index
        self.key = key
        self.address = address_of(key)
        self.chain: list[SimBlock] = [GENESIS]
        self.tallies: list[VoteTally] = [sim.genesis_tally]
        self.finalized_at: list[float] = [0.0]
        self.guard = RecordingGuard()
        self.ops = SimBlockOps(lambda: self.chain[-1], self.validators_for)
        self.qbft = Qbft(
            private_key=key, block_ops=self.ops, guard=self.guard,
            request_timeout=sim.scenario.request_timeout,
        )
        self.rng = random.Random(sim.seed * 1000 + index)
        self.relayed: set[bytes] = set()

    # -- chain ----------------------------------------------------------------------------

    @property
    def head(self) -> SimBlock:
        return self.chain[-1]

    def validators_for(self, height: int) -> tuple[bytes, ...]:
        return self.tallies[height - 1].validators

    def import_block(self, block: SimBlock) -> bool:
        """Append a final block (from consensus or sync); False if it does not fit."""
        if block.number != len(self.chain):
            return False
        if block.parent != self.head.hash:
            if self.honest:
                raise AssertionError(
                    f"node {self.index}: block #{block.number} does not extend its chain"
                )
            return False
        try:
            seal_signers(block, self.validators_for(block.number))
        except FinalityError:
            return False
        self.chain.append(block)
        self.tallies.append(self.tallies[-1].apply_block(block.number, block.proposer, block.vote))
        self.finalized_at.append(self.sim.loop.now)
        self.start_height()
        return True

    # -- lifecycle ------------------------------------------------------------------------

    def start(self) -> None:
        self.sim.net.attach(self.index, self.receive)
        self.start_height()
        self.sim.loop.schedule(self.rng.uniform(0, self.sim.scenario.sync_interval), self.sync)

    def start_height(self) -> None:
        height = len(self.chain)
        parent = None if height == 1 else self.head.proposer
        self.perform(self.qbft.new_height(height, self.validators_for(height), parent))

    def perform(self, actions: list[Action]) -> None:
        for action in actions:
            if isinstance(action, Broadcast):
                self.broadcast(action.message)
            elif isinstance(action, SetTimer):
                self.sim.loop.schedule(action.seconds, partial(self.timeout, action.height,
                                                               action.round))
            elif isinstance(action, BuildBlock):
                self.sim.loop.schedule(BUILD_DELAY, partial(self.build, action.height,
                                                            action.round))
            elif isinstance(action, Finalized):
                self.on_finalized(action.block)

    def on_finalized(self, block: Any) -> None:
        assert isinstance(block, SimBlock)
        self.sim.record_finalized(self, block)
        if not self.import_block(block) and self.honest:
            raise AssertionError(f"node {self.index}: consensus finalized an unimportable block")

    def broadcast(self, raw: bytes) -> None:
        self.relayed.add(hashlib.sha256(raw).digest())
        self.sim.net.broadcast(self.index, ("qbft", raw), self.sim.count)

    def relay(self, src: int, raw: bytes) -> None:
        """Gossip: forward a well-formed message the first time it is seen, as gossipsub
        (and Besu's BFT gossip) do, so one lost link does not lose the message."""
        if not self.sim.scenario.gossip:
            return
        fingerprint = hashlib.sha256(raw).digest()
        if fingerprint in self.relayed:
            return
        self.relayed.add(fingerprint)
        if not self.sim.well_formed(fingerprint, raw):
            return
        for dst in range(self.sim.count):
            if dst not in (src, self.index):
                self.sim.net.send(self.index, dst, ("qbft", raw))

    def timeout(self, height: int, round_number: int) -> None:
        self.perform(self.qbft.on_timeout(height, round_number))

    def build(self, height: int, round_number: int) -> None:
        if len(self.chain) != height:
            return
        block = SimBlock(
            number=height, parent=self.head.hash,
            payload=b"block %d by %d in round %d" % (height, self.index, round_number),
            round=round_number, proposer=self.address, vote=self.vote_for(height),
        )
        self.perform(self.qbft.on_block_built(height, round_number, block))

    def vote_for(self, height: int) -> Vote | None:
        candidate = self.sim.vote_candidate
        if candidate is None or candidate in self.validators_for(height):
            return None
        return Vote(recipient=candidate, add=True)

    # -- network --------------------------------------------------------------------------

    def receive(self, src: int, payload: Any) -> None:
        kind = payload[0]
        if kind == "qbft":
            self.relay(src, payload[1])
            self.perform(self.qbft.on_message(payload[1]))
        elif kind == "sync_req":
            blocks = self.chain[payload[1]:payload[1] + SYNC_BATCH]
            if blocks:
                self.sim.net.send(self.index, src, ("sync_resp", [b.raw for b in blocks]))
        elif kind == "sync_resp":
            for raw in payload[1]:
                block = SimBlock.decode(raw)
                if block.number == len(self.chain):
                    self.sim.synced += 1
                    self.import_block(block)

    def sync(self) -> None:
        peers = [i for i in range(self.sim.count) if i != self.index]
        self.sim.net.send(self.index, self.rng.choice(peers), ("sync_req", len(self.chain)))
        self.sim.loop.schedule(self.sim.scenario.sync_interval, self.sync)


class EquivocatingNode(SimNode):
    """As proposer, sends one block to half of its peers and another to the rest,
    then prepares and commits the second one towards that half."""

    honest = False

    def broadcast(self, raw: bytes) -> None:
        message = decode_message(raw)
        if not isinstance(message, Proposal) or message.prepares:
            super().broadcast(raw)
            return
        original = SimBlock.decode(message.block)
        twin = replace(original, payload=original.payload + b" (twin)")
        twin_messages = [
            sign_proposal(self.key, message.height, message.round, twin.raw,
                          round_changes=message.round_changes).encode(),
            sign_prepare(self.key, message.height, message.round, twin.digest).encode(),
            sign_commit(self.key, message.height, message.round, twin.digest).encode(),
        ]
        self.sim.equivocations += 1
        peers = [i for i in range(self.sim.count) if i != self.index]
        self.rng.shuffle(peers)
        half = len(peers) // 2
        for dst in peers[:half]:
            self.sim.net.send(self.index, dst, ("qbft", raw))
        for dst in peers[half:]:
            for twin_raw in twin_messages:
                self.sim.net.send(self.index, dst, ("qbft", twin_raw))
        self.sim.net.send(self.index, self.index, ("qbft", raw))


class GarbageNode(SimNode):
    """Takes no part in consensus; floods peers with junk, mutations and wrongly signed
    or nonsensical (but validly signed) messages."""

    honest = False
    BURST_INTERVAL = 0.25

    def __init__(self, sim: Simulation, index: int, key: bytes) -> None:
        super().__init__(sim, index, key)
        self.observed: list[bytes] = []
        self.outsider = bytes([0x42]) * 32
        self.height_seen = 1

    def start(self) -> None:
        self.sim.net.attach(self.index, self.receive)
        self.sim.loop.schedule(self.BURST_INTERVAL, self.burst)

    def receive(self, src: int, payload: Any) -> None:
        if payload[0] == "qbft":
            raw = payload[1]
            if len(self.observed) < 64:
                self.observed.append(raw)
            else:
                self.observed[self.rng.randrange(64)] = raw
            with contextlib.suppress(ValueError):
                self.height_seen = max(self.height_seen, decode_message(raw).height)
        elif payload[0] == "sync_req":
            return

    def burst(self) -> None:
        for raw in self.junk():
            super().broadcast(raw)
        self.sim.loop.schedule(self.BURST_INTERVAL, self.burst)

    def junk(self) -> list[bytes]:
        rng, h = self.rng, self.height_seen
        digest = rng.randbytes(32)
        out = [rng.randbytes(rng.randrange(0, 200))]
        if self.observed:
            sample = bytearray(rng.choice(self.observed))
            if sample:
                position = rng.randrange(len(sample))
                sample[position] ^= 1 << rng.randrange(8)
            out.append(bytes(sample))
            truncated = rng.choice(self.observed)
            out.append(truncated[: rng.randrange(max(1, len(truncated)))])
        # Signed by a key outside the validator set.
        out.append(sign_prepare(self.outsider, h, 0, digest).encode())
        # A valid prepare whose signature belongs to another message: recovers a stranger.
        other = sign_prepare(self.key, h, 1, rng.randbytes(32))
        forged = sign_prepare(self.key, h, 0, digest)
        out.append(replace(forged, signature=other.signature).encode())
        # A commit whose seal is someone else's.
        commit = sign_commit(self.key, h, 0, digest)
        out.append(replace(commit, commit_seal=sign_seal(digest, self.outsider)).encode())
        # Validly signed nonsense from a validator: random digests, rounds and blocks.
        out.append(sign_prepare(self.key, h, rng.randrange(3), digest).encode())
        out.append(sign_commit(self.key, h, rng.randrange(3), digest).encode())
        out.append(sign_round_change(self.key, h, rng.randrange(1, 40)).encode())
        out.append(sign_proposal(self.key, h, rng.randrange(3), rng.randbytes(40)).encode())
        out.append(sign_round_change(self.key, h + rng.randrange(1, 30), 1).encode())
        return out

