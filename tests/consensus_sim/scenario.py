"""Scenarios: who is faulty, how the network misbehaves, and the properties every run must keep."""

from __future__ import annotations

import random
from dataclasses import dataclass, field

from eth_utils import keccak

from consensus.messages import MessageError, address_of, decode_message
from consensus.seals import quorum
from consensus.votes import VoteTally
from tests.consensus_sim.blocks import SimBlock, seal_signers
from tests.consensus_sim.network import EventLoop, Network, Partition
from tests.consensus_sim.nodes import EquivocatingNode, GarbageNode, SimNode

_KEYS = [keccak(b"medledger qbft simulator key %d" % i) for i in range(32)]


@dataclass(frozen=True)
class Scenario:
    name: str
    n: int
    crashed: int = 0
    equivocators: int = 0
    garbage: int = 0
    loss: float = 0.0
    delay: tuple[float, float] = (0.01, 0.2)
    # (start, duration): honest nodes split in two groups, neither holding a quorum.
    partition: tuple[float, float] | None = None
    # Validators forward messages they have not seen before (gossip), as in the real network.
    gossip: bool = True
    request_timeout: float = 1.0
    sync_interval: float = 1.0
    # Liveness: every honest node finalizes `blocks` more blocks within `bound`
    # simulated seconds of the network stabilising.
    blocks: int = 4
    bound: float = 60.0
    # One extra node starts as a follower; proposers vote it in through VoteTally.
    vote_in_follower: bool = False
    epoch_length: int = 30_000

    @property
    def stable_at(self) -> float:
        return 0.0 if self.partition is None else self.partition[0] + self.partition[1]


@dataclass
class SimResult:
    scenario: Scenario
    seed: int
    chains: dict[int, list[SimBlock]]
    honest: list[int]
    heights_at_stable: dict[int, int]
    end_time: float
    messages_sent: int
    messages_delivered: int
    messages_dropped: int
    equivocations: int
    guard_conflicts: dict[int, dict[tuple[int, int, int], set[bytes]]]
    validators_at: dict[int, list[tuple[bytes, ...]]]
    stats: dict[int, dict[str, int]]
    synced: int
    consensus_finalized: int

    def fingerprint(self) -> tuple[object, ...]:
        return (
            tuple(tuple(b.raw for b in self.chains[i]) for i in sorted(self.chains)),
            self.messages_sent, self.messages_delivered, self.end_time,
        )


@dataclass
class Simulation:
    scenario: Scenario
    seed: int
    loop: EventLoop = field(default_factory=EventLoop)
    synced: int = 0
    consensus_finalized: int = 0
    equivocations: int = 0

    def __post_init__(self) -> None:
        s = self.scenario
        rng = random.Random(self.seed)
        self.count = s.n + (1 if s.vote_in_follower else 0)
        keys = _KEYS[: self.count]
        validators = [address_of(k) for k in keys[: s.n]]
        self.vote_candidate = address_of(keys[s.n]) if s.vote_in_follower else None
        self.genesis_tally = VoteTally.genesis(validators, s.epoch_length)
        # Faulty validators are chosen by the seed, so proposers are faulty in some runs.
        faulty = rng.sample(range(s.n), s.crashed + s.equivocators + s.garbage)
        crashed = set(faulty[: s.crashed])
        equivocators = set(faulty[s.crashed: s.crashed + s.equivocators])
        garbage = set(faulty[s.crashed + s.equivocators:])
        partition = None
        if s.partition is not None:
            order = list(range(self.count))
            rng.shuffle(order)
            half = len(order) // 2
            partition = Partition(
                start=s.partition[0], end=s.partition[0] + s.partition[1],
                groups=(frozenset(order[:half]), frozenset(order[half:])),
            )
        self.net = Network(
            self.loop, random.Random(rng.getrandbits(64)),
            loss=s.loss, delay=s.delay, partition=partition,
        )
        self.nodes: dict[int, SimNode] = {}
        for i, key in enumerate(keys):
            if i in crashed:
                continue
            cls = EquivocatingNode if i in equivocators else GarbageNode if i in garbage \
                else SimNode
            self.nodes[i] = cls(self, i, key)
        self.honest = [i for i, node in self.nodes.items() if node.honest]
        self._well_formed: dict[bytes, bool] = {}

    def well_formed(self, fingerprint: bytes, raw: bytes) -> bool:
        """Whether a message decodes (what a gossip validator checks before forwarding);
        remembered per simulation so each distinct message is decoded once for relaying."""
        known = self._well_formed.get(fingerprint)
        if known is None:
            try:
                decode_message(raw)
                known = True
            except MessageError:
                known = False
            self._well_formed[fingerprint] = known
        return known

    def record_finalized(self, node: SimNode, block: SimBlock) -> None:
        self.consensus_finalized += 1

    def heights(self) -> dict[int, int]:
        return {i: len(self.nodes[i].chain) - 1 for i in self.honest}

    def run(self) -> SimResult:
        s = self.scenario
        for node in self.nodes.values():
            node.start()
        self.loop.run_until(s.stable_at, lambda: False)
        at_stable = self.heights()

        def done() -> bool:
            return all(
                len(self.nodes[i].chain) - 1 >= at_stable[i] + s.blocks for i in self.honest
            )

        self.loop.run_until(s.stable_at + s.bound, done)
        return SimResult(
            scenario=s, seed=self.seed,
            chains={i: list(self.nodes[i].chain) for i in self.honest},
            honest=list(self.honest), heights_at_stable=at_stable, end_time=self.loop.now,
            messages_sent=self.net.sent, messages_delivered=self.net.delivered,
            messages_dropped=self.net.dropped, equivocations=self.equivocations,
            guard_conflicts={i: self.nodes[i].guard.conflicts() for i in self.honest},
            validators_at={
                i: [t.validators for t in self.nodes[i].tallies] for i in self.honest
            },
            stats={i: self.nodes[i].qbft.stats() for i in self.honest},
            synced=self.synced, consensus_finalized=self.consensus_finalized,
        )


def run_scenario(scenario: Scenario, seed: int) -> SimResult:
    return Simulation(scenario, seed).run()


def check_properties(result: SimResult) -> None:
    """Safety, liveness, seal validity and no equivocation; AssertionError names the seed."""
    where = f"scenario {result.scenario.name} seed {result.seed}"
    chains = result.chains
    # Safety: honest nodes agree on every height both have (on the block, which the
    # same quorum-certified proposal may carry with another round number or seal set).
    longest = max(len(c) for c in chains.values())
    for height in range(1, longest):
        hashes = {c[height].hash for c in chains.values() if len(c) > height}
        assert len(hashes) == 1, f"{where}: honest nodes finalized different blocks at {height}"
    # Every final block carries a quorum of valid seals from distinct validators of its height.
    for i, chain in chains.items():
        validator_sets = result.validators_at[i]
        for block in chain[1:]:
            validators = validator_sets[block.number - 1]
            signers = seal_signers(block, validators)
            assert len(set(signers)) >= quorum(len(validators)), f"{where}: #{block.number}"
    # No honest node signed two digests for one (height, round, kind).
    for i, conflicts in result.guard_conflicts.items():
        assert not conflicts, f"{where}: node {i} equivocated: {conflicts}"
    # Liveness after the network stabilised.
    for i in result.honest:
        reached = len(chains[i]) - 1
        wanted = result.heights_at_stable[i] + result.scenario.blocks
        assert reached >= wanted, (
            f"{where}: node {i} reached height {reached}, wanted {wanted} "
            f"by t={result.scenario.stable_at + result.scenario.bound}"
        )
