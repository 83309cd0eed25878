"""The QBFT state machine: rules checked by hand, then whole networks in the seeded simulator.

Replay a failing simulator run with
`run_scenario(SCENARIOS["<name>"], <seed>)` from tests.test_qbft_sim; the seed is in
every failure message. QBFT_SIM_SEEDS=<n> overrides the number of seeds per scenario
in the default run; the slow sweep goes up to seed QBFT_SIM_SWEEP (default 200).
"""

from __future__ import annotations

import os
import random
from collections import deque
from dataclasses import replace

import pytest
from eth_utils import keccak

from consensus.messages import (
    Prepare,
    Proposal,
    RoundChange,
    address_of,
    decode_message,
    sign_commit,
    sign_prepare,
    sign_proposal,
    sign_round_change,
)
from consensus.qbft import (
    Action,
    Broadcast,
    BuildBlock,
    Finalized,
    Qbft,
    SetTimer,
    max_faulty,
    proposer_for,
)
from consensus.seals import recover_seal_signer
from tests.consensus_sim import Scenario, SimResult, check_properties, run_scenario
from tests.consensus_sim.blocks import GENESIS, SimBlock, SimBlockOps
from tests.consensus_sim.guards import RecordingGuard, StrictGuard

KEYS = [keccak(b"qbft state test key %d" % i) for i in range(4)]
ADDRESSES = [address_of(k) for k in KEYS]
VALIDATORS = tuple(sorted(ADDRESSES))
KEY_OF = dict(zip(ADDRESSES, KEYS, strict=True))
TIMEOUT = 2.0


class Harness:
    """A chain (genesis, then whatever is appended) and Qbft instances over it."""

    def __init__(self) -> None:
        self.chain: list[SimBlock] = [GENESIS]
        self.ops = SimBlockOps(lambda: self.chain[-1], lambda height: VALIDATORS)

    def node(self, key: bytes | None, guard: object | None = None, **kwargs: int) -> Qbft:
        return Qbft(
            private_key=key, block_ops=self.ops, guard=guard or RecordingGuard(),  # type: ignore[arg-type]
            request_timeout=TIMEOUT, **kwargs,
        )

    def block(self, height: int, round_number: int, proposer: bytes, tag: bytes = b"") -> SimBlock:
        return SimBlock(
            number=height, parent=self.chain[height - 1].hash, payload=b"payload" + tag,
            round=round_number, proposer=proposer,
        )


def key_of_proposer(round_number: int, parent: bytes | None = None) -> bytes:
    return KEY_OF[proposer_for(VALIDATORS, parent, round_number)]


def broadcasts(actions: list[Action]) -> list[object]:
    return [decode_message(a.message) for a in actions if isinstance(a, Broadcast)]


def pump(nodes: list[Qbft], initial: list[tuple[int, list[Action]]]) -> dict[int, list[Action]]:
    """Deliver every broadcast to every other node, FIFO, until quiet; returns all actions."""
    seen: dict[int, list[Action]] = {i: list(actions) for i, actions in initial}
    queue: deque[tuple[int, bytes]] = deque()
    for i, actions in initial:
        queue.extend((i, a.message) for a in actions if isinstance(a, Broadcast))
    while queue:
        src, raw = queue.popleft()
        for dst, node in enumerate(nodes):
            if dst == src:
                continue
            actions = node.on_message(raw)
            seen.setdefault(dst, []).extend(actions)
            queue.extend((dst, a.message) for a in actions if isinstance(a, Broadcast))
    return seen


# -- proposer selection ----------------------------------------------------------------------


def test_proposer_rotation_is_besu_round_robin() -> None:
    a, b, c, d = (bytes([x]) * 20 for x in (1, 2, 3, 4))
    validators = (c, a, d, b)  # any order: sorted internally
    assert [proposer_for(validators, None, r) for r in range(5)] == [a, b, c, d, a]
    assert [proposer_for(validators, b, r) for r in range(4)] == [c, d, a, b]
    assert proposer_for(validators, d, 0) == a
    # A parent proposer no longer in the set: start from the next address above it.
    gone = bytes([2]) * 19 + b"\x09"
    assert [proposer_for(validators, gone, r) for r in range(3)] == [c, d, a]
    assert proposer_for(validators, bytes([9]) * 20, 0) == a
    with pytest.raises(ValueError):
        proposer_for((), None, 0)
    harness = Harness()
    node = harness.node(KEYS[0])
    node.new_height(1, list(reversed(VALIDATORS)), None)
    assert node.validators == VALIDATORS
    assert [node.proposer(r) for r in range(4)] == list(VALIDATORS)
    assert max_faulty(4) == 1 and max_faulty(7) == 2 and max_faulty(3) == 0


# -- a height by hand ------------------------------------------------------------------------


def test_one_height_by_hand_finalizes_with_sorted_quorum_seals() -> None:
    harness = Harness()
    nodes = [harness.node(k) for k in KEYS]
    follower = harness.node(None)
    starts = [(i, n.new_height(1, VALIDATORS, None)) for i, n in enumerate(nodes)]
    assert follower.new_height(1, VALIDATORS, None) == []
    proposer = ADDRESSES.index(proposer_for(VALIDATORS, None, 0))
    for i, actions in starts:
        assert actions[0] == SetTimer(1, 0, TIMEOUT)
        assert (BuildBlock(1, 0) in actions) == (i == proposer)
    block = harness.block(1, 0, ADDRESSES[proposer])
    built = nodes[proposer].on_block_built(1, 0, block)
    kinds = [type(m).__name__ for m in broadcasts(built)]
    assert kinds == ["Proposal", "Prepare"]
    everyone = [*nodes, follower]
    actions = pump(everyone, [(proposer, built)])
    finals = {i: [a for a in acts if isinstance(a, Finalized)] for i, acts in actions.items()}
    assert all(len(finals[i]) == 1 for i in range(5)), finals
    sealed = finals[0][0].block
    assert isinstance(sealed, SimBlock)
    assert sealed.digest == block.digest
    signers = [recover_seal_signer(block.digest, s) for s in sealed.seals]
    assert signers == sorted(signers) and len(set(signers)) == len(signers) >= 3
    assert all(f[0].block.digest == block.digest for f in finals.values())
    assert not any(isinstance(a, Broadcast) for a in actions[4]), "a follower never signs"
    assert follower.stats()["finalized"] == 1 and not follower.is_validator
    assert nodes[0].stats()["finalized"] == 1
    # After finalizing, the height is over: late messages and timers do nothing.
    assert nodes[0].on_timeout(1, 0) == []
    assert nodes[0].on_message(built[0].message) == []  # type: ignore[union-attr]


def test_round_timer_backs_off_and_sends_round_change() -> None:
    harness = Harness()
    node = harness.node(KEYS[1])
    node.new_height(1, VALIDATORS, None)
    actions = node.on_timeout(1, 0)
    assert actions[0] == SetTimer(1, 1, TIMEOUT * 2)
    (rc,) = broadcasts(actions)
    assert isinstance(rc, RoundChange) and rc.round == 1 and rc.prepared_round is None
    assert node.round == 1
    assert node.on_timeout(1, 0) == []   # stale timer
    assert node.on_timeout(2, 1) == []   # wrong height
    assert node.on_timeout(1, 1)[0] == SetTimer(1, 2, TIMEOUT * 4)
    assert node.stats()["timeouts"] == 2
    # Starting a height directly in a later round announces it with a round change.
    late = harness.node(KEYS[2])
    actions = late.new_height(1, VALIDATORS, None, now_round=2)
    assert actions[0] == SetTimer(1, 2, TIMEOUT * 4)
    (rc,) = broadcasts(actions)
    assert isinstance(rc, RoundChange) and rc.round == 2 and late.round == 2


def test_f_plus_one_round_changes_pull_a_node_to_the_smallest_higher_round() -> None:
    harness = Harness()
    me = 0
    node = harness.node(KEYS[me])
    node.new_height(1, VALIDATORS, None)
    others = [k for i, k in enumerate(KEYS) if i != me]
    assert node.on_message(sign_round_change(others[0], 1, 3).encode()) == []
    assert node.round == 0  # one validator ahead is not enough (f + 1 = 2)
    actions = node.on_message(sign_round_change(others[1], 1, 5).encode())
    assert node.round == 3
    (rc,) = [m for m in broadcasts(actions) if isinstance(m, RoundChange)]
    assert rc.round == 3 and rc.author == ADDRESSES[me]
    assert SetTimer(1, 3, TIMEOUT * 8) in actions


def _round_changes(height: int, round_number: int, keys: list[bytes]) -> list[RoundChange]:
    return [sign_round_change(k, height, round_number) for k in keys]


def test_round_one_proposal_needs_a_quorum_of_round_changes() -> None:
    harness = Harness()
    proposer_key = key_of_proposer(1)
    listener_key = next(k for k in KEYS if k != proposer_key)
    node = harness.node(listener_key)
    node.new_height(1, VALIDATORS, None)
    block = harness.block(1, 1, address_of(proposer_key))
    too_few = sign_proposal(proposer_key, 1, 1, block.raw,
                            round_changes=tuple(_round_changes(1, 1, KEYS[:2])))
    assert node.on_message(too_few.encode()) == []
    assert node.stats()["rejected_justification_quorum"] == 1
    assert node.round == 0
    # Round changes for another round do not count.
    wrong_round = sign_proposal(proposer_key, 1, 1, block.raw,
                                round_changes=tuple(_round_changes(1, 2, KEYS[:3])))
    assert node.on_message(wrong_round.encode()) == []
    assert node.stats()["rejected_justification_round_change"] == 1
    # A round-1 proposal by someone other than the round-1 proposer.
    intruder = next(k for k in KEYS if k not in (proposer_key,))
    forged = sign_proposal(intruder, 1, 1, block.raw,
                           round_changes=tuple(_round_changes(1, 1, KEYS[:3])))
    assert node.on_message(forged.encode()) == []
    assert node.stats()["rejected_wrong_proposer"] == 1
    enough = sign_proposal(proposer_key, 1, 1, block.raw,
                           round_changes=tuple(_round_changes(1, 1, KEYS[:3])))
    actions = node.on_message(enough.encode())
    assert node.round == 1  # a justified proposal for a later round moves the node there
    assert SetTimer(1, 1, TIMEOUT * 2) in actions
    (prepare,) = broadcasts(actions)
    assert isinstance(prepare, Prepare) and prepare.digest == block.digest


def test_round_zero_proposal_rules() -> None:
    harness = Harness()
    proposer_key = key_of_proposer(0)
    node = harness.node(next(k for k in KEYS if k != proposer_key))
    node.new_height(1, VALIDATORS, None)
    someone = address_of(next(k for k in KEYS if k != proposer_key))
    cases = {
        "block_proposer": harness.block(1, 0, someone),
        "block_height_or_round": harness.block(1, 1, address_of(proposer_key)),
        "invalid_block": replace(
            harness.block(1, 0, address_of(proposer_key)), parent=b"\x01" * 32
        ),
    }
    for reason, block in cases.items():
        fresh = harness.node(next(k for k in KEYS if k != proposer_key))
        fresh.new_height(1, VALIDATORS, None)
        assert fresh.on_message(sign_proposal(proposer_key, 1, 0, block.raw).encode()) == []
        assert fresh.stats()[f"rejected_{reason}"] == 1, reason
    garbage_block = sign_proposal(proposer_key, 1, 0, b"\x01\x02\x03")
    assert node.on_message(garbage_block.encode()) == []
    assert node.stats()["rejected_bad_block"] == 1
    good = harness.block(1, 0, address_of(proposer_key))
    with_justification = sign_proposal(proposer_key, 1, 0, good.raw,
                                       round_changes=tuple(_round_changes(1, 0, KEYS[:3])))
    assert node.on_message(with_justification.encode()) == []
    assert node.stats()["rejected_round0_justification"] == 1
    assert broadcasts(node.on_message(sign_proposal(proposer_key, 1, 0, good.raw).encode()))


def _prepared_certificate(
    harness: Harness, prepared_round: int
) -> tuple[SimBlock, tuple[Prepare, ...]]:
    block = harness.block(1, prepared_round, proposer_for(VALIDATORS, None, prepared_round), b"B")
    prepares = tuple(sign_prepare(k, 1, prepared_round, block.digest) for k in KEYS[:3])
    return block, prepares


def test_reproposal_must_be_the_highest_prepared_block() -> None:
    harness = Harness()
    prepared, prepares = _prepared_certificate(harness, 0)
    certified = sign_round_change(
        KEYS[0], 1, 1, prepared_round=0, prepared_digest=prepared.digest,
        prepared_block=prepared.raw, prepares=prepares,
    )
    round_changes = (certified, *_round_changes(1, 1, KEYS[1:3]))
    proposer_key = key_of_proposer(1)

    def verdict(block: SimBlock, prepares_sent: tuple[Prepare, ...]) -> tuple[list[object], dict]:
        node = harness.node(next(k for k in KEYS if k != proposer_key))
        node.new_height(1, VALIDATORS, None)
        proposal = sign_proposal(proposer_key, 1, 1, block.raw,
                                 round_changes=round_changes, prepares=prepares_sent)
        return broadcasts(node.on_message(proposal.encode())), node.stats()

    fresh = harness.block(1, 1, address_of(proposer_key), b"C")
    sent, stats = verdict(fresh, ())
    assert not sent and stats["rejected_justification_not_highest_prepared"] == 1
    reproposed = harness.ops.with_round(prepared, 1)
    sent, stats = verdict(reproposed, ())
    assert not sent and stats["rejected_justification_prepares"] == 1
    sent, stats = verdict(reproposed, prepares[:2])
    assert not sent and stats["rejected_justification_prepares"] == 1
    wrong_round_prepares = tuple(sign_prepare(k, 1, 1, prepared.digest) for k in KEYS[:3])
    sent, stats = verdict(reproposed, wrong_round_prepares)
    assert not sent and stats["rejected_justification_prepares"] == 1
    sent, _ = verdict(reproposed, prepares)
    assert [type(m).__name__ for m in sent] == ["Prepare"]
    assert sent[0].digest == reproposed.digest  # type: ignore[attr-defined]


def test_round_changes_claiming_two_blocks_for_one_round_are_refused() -> None:
    harness = Harness()
    first, first_prepares = _prepared_certificate(harness, 0)
    other = replace(first, payload=b"other")
    other_prepares = tuple(sign_prepare(k, 1, 0, other.digest) for k in KEYS[:3])
    rcs = (
        sign_round_change(KEYS[0], 1, 1, prepared_round=0, prepared_digest=first.digest,
                          prepared_block=first.raw, prepares=first_prepares),
        sign_round_change(KEYS[1], 1, 1, prepared_round=0, prepared_digest=other.digest,
                          prepared_block=other.raw, prepares=other_prepares),
        sign_round_change(KEYS[2], 1, 1),
    )
    proposer_key = key_of_proposer(1)
    node = harness.node(next(k for k in KEYS if k != proposer_key))
    node.new_height(1, VALIDATORS, None)
    proposal = sign_proposal(proposer_key, 1, 1, harness.ops.with_round(first, 1).raw,
                             round_changes=rcs, prepares=first_prepares)
    assert node.on_message(proposal.encode()) == []
    assert node.stats()["rejected_justification_conflict"] == 1


def test_proposer_reproposes_the_highest_prepared_block_after_round_changes() -> None:
    harness = Harness()
    proposer_key = key_of_proposer(2)
    node = harness.node(proposer_key)
    node.new_height(1, VALIDATORS, None)
    low, low_prepares = _prepared_certificate(harness, 0)
    high = replace(harness.block(1, 1, proposer_for(VALIDATORS, None, 1)), payload=b"high")
    high_prepares = tuple(sign_prepare(k, 1, 1, high.digest) for k in KEYS[1:])
    others = [k for k in KEYS if k != proposer_key]
    messages = [
        sign_round_change(others[0], 1, 2, prepared_round=0, prepared_digest=low.digest,
                          prepared_block=low.raw, prepares=low_prepares),
        sign_round_change(others[1], 1, 2, prepared_round=1, prepared_digest=high.digest,
                          prepared_block=high.raw, prepares=high_prepares),
        sign_round_change(others[2], 1, 2),
    ]
    actions: list[Action] = []
    for m in messages:
        actions.extend(node.on_message(m.encode()))
    assert node.round == 2
    assert not any(isinstance(a, BuildBlock) for a in actions)
    proposal = next(m for m in broadcasts(actions) if isinstance(m, Proposal))
    assert SimBlock.decode(proposal.block) == harness.ops.with_round(high, 2)
    assert {p.author for p in proposal.prepares} == {p.author for p in high_prepares}
    # Without any prepared certificate the proposer asks for a fresh block instead.
    fresh = harness.node(proposer_key)
    fresh.new_height(1, VALIDATORS, None)
    built: list[Action] = []
    for k in others:
        built.extend(fresh.on_message(sign_round_change(k, 1, 2).encode()))
    assert BuildBlock(1, 2) in built
    block = harness.block(1, 2, address_of(proposer_key))
    out = broadcasts(fresh.on_block_built(1, 2, block))
    assert isinstance(out[0], Proposal) and len(out[0].round_changes) == 3


def test_on_block_built_rejects_the_wrong_block_and_ignores_stale_ones() -> None:
    harness = Harness()
    proposer_key = key_of_proposer(0)
    node = harness.node(proposer_key)
    assert BuildBlock(1, 0) in node.new_height(1, VALIDATORS, None)
    with pytest.raises(ValueError):
        node.on_block_built(1, 0, harness.block(1, 1, address_of(proposer_key)))
    with pytest.raises(ValueError):
        node.on_block_built(1, 0, harness.block(1, 0, ADDRESSES[0] if ADDRESSES[0] !=
                                                address_of(proposer_key) else ADDRESSES[1]))
    node.on_timeout(1, 0)
    assert node.on_block_built(1, 0, harness.block(1, 0, address_of(proposer_key))) == []
    assert node.stats()["stale_builds"] == 1


def test_guard_prevents_equivocation_after_a_restart() -> None:
    harness = Harness()
    proposer_key = key_of_proposer(0)
    my_key = next(k for k in KEYS if k != proposer_key)
    guard = StrictGuard()
    first = harness.node(my_key, guard)
    first.new_height(1, VALIDATORS, None)
    block_a = harness.block(1, 0, address_of(proposer_key), b"A")
    block_b = harness.block(1, 0, address_of(proposer_key), b"B")
    sent = broadcasts(first.on_message(sign_proposal(proposer_key, 1, 0, block_a.raw).encode()))
    assert [m.digest for m in sent] == [block_a.digest]  # type: ignore[attr-defined]
    # The node restarts: a new state machine, the same durable guard.
    restarted = harness.node(my_key, guard)
    restarted.new_height(1, VALIDATORS, None)
    # The (faulty) proposer now shows it another block for the same round.
    actions = restarted.on_message(sign_proposal(proposer_key, 1, 0, block_b.raw).encode())
    assert broadcasts(actions) == []
    assert guard.refused == 1 and restarted.stats()["guard_refused"] == 1
    # A restarted proposer that builds a different block cannot propose it either.
    proposer_guard = StrictGuard()
    proposer = harness.node(proposer_key, proposer_guard)
    proposer.new_height(1, VALIDATORS, None)
    assert broadcasts(proposer.on_block_built(1, 0, block_a))
    again = harness.node(proposer_key, proposer_guard)
    again.new_height(1, VALIDATORS, None)
    assert again.on_block_built(1, 0, block_b) == []
    assert proposer_guard.refused == 1


def test_messages_from_strangers_with_bad_signatures_or_garbage_are_counted_and_dropped() -> None:
    harness = Harness()
    node = harness.node(KEYS[0])
    node.new_height(1, VALIDATORS, None)
    stranger = keccak(b"not a validator")
    digest = keccak(b"d")
    assert node.on_message(sign_prepare(stranger, 1, 0, digest).encode()) == []
    assert node.on_message(b"\x00garbage") == []
    assert node.on_message("text") == []  # type: ignore[arg-type]
    good = sign_prepare(KEYS[1], 1, 0, digest)
    assert node.on_message(good.encode()) == []
    assert node.on_message(good.encode()) == []
    # A valid prepare with the signature of another message recovers a stranger.
    other = sign_prepare(KEYS[1], 1, 0, keccak(b"e"))
    assert node.on_message(replace(good, signature=other.signature).encode()) == []
    stats = node.stats()
    assert stats["rejected_non_validator"] == 2
    assert stats["rejected_malformed"] == 2
    assert stats["duplicates"] == 1
    assert stats["messages_rejected"] == 4


def test_mutated_messages_never_break_the_state_machine() -> None:
    harness = Harness()
    prepared, prepares = _prepared_certificate(harness, 0)
    proposer_key = key_of_proposer(1)
    rcs = (
        sign_round_change(KEYS[0], 1, 1, prepared_round=0, prepared_digest=prepared.digest,
                          prepared_block=prepared.raw, prepares=prepares),
        *_round_changes(1, 1, KEYS[1:3]),
    )
    valid = [
        sign_proposal(proposer_key, 1, 1, harness.ops.with_round(prepared, 1).raw,
                      round_changes=rcs, prepares=prepares).encode(),
        rcs[0].encode(),
        sign_commit(KEYS[1], 1, 0, prepared.digest).encode(),
    ]
    rng = random.Random(7)
    for _ in range(400):
        node = harness.node(KEYS[3])
        node.new_height(1, VALIDATORS, None)
        for raw in valid:
            mutated = bytearray(raw)
            for _ in range(rng.randrange(1, 3)):
                mutated[rng.randrange(len(mutated))] ^= 1 << rng.randrange(8)
            node.on_message(bytes(mutated))
        # Whatever it accepted, it still follows the genuine messages afterwards.
        for raw in valid:
            node.on_message(raw)
        assert node.round == 1


def test_future_heights_are_buffered_bounded_and_replayed() -> None:
    harness = Harness()
    node = harness.node(KEYS[0], max_future_heights=2, max_buffered=40)
    node.new_height(1, VALIDATORS, None)
    # Height 1 is decided elsewhere; messages for height 2 arrive before we import it.
    block1 = harness.block(1, 0, proposer_for(VALIDATORS, None, 0))
    proposer2 = proposer_for(VALIDATORS, block1.proposer, 0)
    block2 = SimBlock(number=2, parent=block1.hash, payload=b"two", round=0, proposer=proposer2)
    early = [sign_proposal(KEY_OF[proposer2], 2, 0, block2.raw).encode()]
    early += [sign_commit(k, 2, 0, block2.digest).encode() for k in KEYS[1:]]
    for raw in early:
        assert node.on_message(raw) == []
    assert node.stats()["buffered"] == 4
    assert node.on_message(sign_prepare(KEYS[1], 4, 0, block2.digest).encode()) == []
    assert node.stats()["rejected_too_far_ahead"] == 1
    for i in range(100):
        node.on_message(sign_prepare(KEYS[2], 3, i % 8, keccak(b"%d" % i)).encode())
    assert node.stats()["rejected_buffer_full"] > 0
    assert node.stats()["future_buffered"] <= 40
    harness.chain.append(block1)
    actions = node.new_height(2, VALIDATORS, block1.proposer)
    finals = [a for a in actions if isinstance(a, Finalized)]
    assert len(finals) == 1 and finals[0].block.digest == block2.digest
    with pytest.raises(ValueError):
        node.new_height(2, VALIDATORS, None)
    with pytest.raises(ValueError):
        node.new_height(3, (), None)
    with pytest.raises(ValueError):
        node.new_height(3, [b"\x01" * 19], None)


def test_commits_of_an_earlier_round_still_finalize() -> None:
    harness = Harness()
    proposer_key = key_of_proposer(0)
    node = harness.node(next(k for k in KEYS if k != proposer_key))
    node.new_height(1, VALIDATORS, None)
    block = harness.block(1, 0, address_of(proposer_key))
    node.on_message(sign_proposal(proposer_key, 1, 0, block.raw).encode())
    node.on_timeout(1, 0)  # we move on to round 1 before the commits of round 0 arrive
    assert node.round == 1
    finals: list[Action] = []
    for k in KEYS[:3]:
        finals.extend(a for a in node.on_message(sign_commit(k, 1, 0, block.digest).encode())
                      if isinstance(a, Finalized))
    assert len(finals) == 1


def test_a_late_proposal_is_still_learned_for_its_commits() -> None:
    harness = Harness()
    proposer_key = key_of_proposer(0)
    node = harness.node(next(k for k in KEYS if k != proposer_key))
    node.new_height(1, VALIDATORS, None)
    node.on_timeout(1, 0)  # the round-0 proposal was slow: we are in round 1 already
    block = harness.block(1, 0, address_of(proposer_key))
    actions = node.on_message(sign_proposal(proposer_key, 1, 0, block.raw).encode())
    assert broadcasts(actions) == []  # too late to prepare round 0
    assert node.stats()["late_proposals"] == 1
    finals: list[Action] = []
    for k in KEYS[:3]:
        finals.extend(a for a in node.on_message(sign_commit(k, 1, 0, block.digest).encode())
                      if isinstance(a, Finalized))
    assert len(finals) == 1 and finals[0].block.digest == block.digest  # type: ignore[union-attr]


# -- the simulator ---------------------------------------------------------------------------


def _scenarios() -> dict[str, Scenario]:
    result: dict[str, Scenario] = {}
    for n in (4, 7):
        f = max_faulty(n)
        for scenario in (
            Scenario(f"honest-{n}", n),
            Scenario(f"crashed-{n}", n, crashed=f),
            Scenario(f"equivocator-{n}", n, equivocators=1),
            Scenario(f"garbage-{n}", n, garbage=1),
            Scenario(f"partition-{n}", n, partition=(1.0, 10.0)),
            Scenario(f"loss-{n}", n, loss=0.3, bound=120.0),
        ):
            result[scenario.name] = scenario
    votes = Scenario("votes-4", 4, vote_in_follower=True, blocks=12)
    result[votes.name] = votes
    return result


SCENARIOS = _scenarios()
DEFAULT_SEEDS = int(os.environ.get("QBFT_SIM_SEEDS", "25"))
SWEEP_SEEDS = int(os.environ.get("QBFT_SIM_SWEEP", "200"))


def _run(scenario: Scenario, seed: int) -> SimResult:
    try:
        result = run_scenario(scenario, seed)
    except Exception as exc:
        raise AssertionError(
            f"scenario {scenario.name} seed {seed} crashed: {exc!r}; replay with "
            f"run_scenario(SCENARIOS[{scenario.name!r}], {seed})"
        ) from exc
    check_properties(result)
    return result


def _evidence(result: SimResult) -> dict[str, int]:
    totals: dict[str, int] = {}
    for stats in result.stats.values():
        for key, value in stats.items():
            totals[key] = totals.get(key, 0) + value
    totals["synced"] = result.synced
    totals["dropped"] = result.messages_dropped
    totals["equivocations"] = result.equivocations
    return totals


def _sweep(name: str, seeds: range) -> dict[str, int]:
    scenario = SCENARIOS[name]
    evidence: dict[str, int] = {}
    for seed in seeds:
        for key, value in _evidence(_run(scenario, seed)).items():
            evidence[key] = evidence.get(key, 0) + value
    return evidence


@pytest.mark.parametrize("name", sorted(SCENARIOS))
def test_scenario_keeps_safety_liveness_and_seals(name: str) -> None:
    evidence = _sweep(name, range(DEFAULT_SEEDS))
    # The fault really happened, so the properties were tested under it.
    kind = name.split("-")[0]
    if kind == "equivocator":
        assert evidence["equivocations"] > 0
    elif kind == "garbage":
        assert evidence["rejected_malformed"] > 0 and evidence["rejected_non_validator"] > 0
    elif kind in ("crashed", "partition"):
        assert evidence["timeouts"] > 0 and evidence["round_changes"] > 0
    elif kind == "loss":
        assert evidence["dropped"] > 0
    elif kind == "honest":
        assert evidence.get("timeouts", 0) == 0


def test_votes_scenario_brings_the_follower_into_the_validator_set() -> None:
    scenario = SCENARIOS["votes-4"]
    result = _run(scenario, 3)
    follower = address_of(keccak(b"medledger qbft simulator key 4"))
    honest = result.honest[0]
    sets = result.validators_at[honest]
    assert follower not in sets[0] and follower in sets[-1]
    assert len(sets[-1]) == 5
    joined = next(h for h, validators in enumerate(sets) if follower in validators)
    later = result.chains[honest][joined + 1:]
    assert later, "blocks after the change"
    assert any(
        follower in [recover_seal_signer(b.digest, s) for s in b.seals] for b in later
    ), "the new validator seals blocks"
    assert joined + 1 < len(result.chains[result.honest[-1]])


@pytest.mark.parametrize("name", ["partition-7", "equivocator-4", "garbage-4", "loss-7"])
def test_same_seed_same_run(name: str) -> None:
    first = _run(SCENARIOS[name], 5)
    second = _run(SCENARIOS[name], 5)
    assert first.fingerprint() == second.fingerprint()
    assert first.messages_sent == second.messages_sent
    other = _run(SCENARIOS[name], 6)
    assert other.fingerprint() != first.fingerprint()


@pytest.mark.slow
@pytest.mark.parametrize("name", sorted(SCENARIOS))
def test_scenario_sweep(name: str) -> None:
    """The issue's 200 seeds per scenario (about 4 minutes on two cores; `-m "not slow"`
    leaves it out of a quick local run)."""
    _sweep(name, range(DEFAULT_SEEDS, max(DEFAULT_SEEDS, SWEEP_SEEDS)))
