"""Fuzzing the QBFT state machine (consensus/qbft.py) with sequences of messages: correctly
signed ones from validators and outsiders with random kinds, heights, rounds, digests and
blocks, mutated copies, replays, and timer expiries. Properties: `on_message`/`on_timeout`
never raise; the machine never signs two different digests for one (height, round, kind)
(no equivocation); every block it finalizes carries commit seals of a quorum of distinct
validators over its digest; and it never finalizes two different blocks at one height."""

from __future__ import annotations

from dataclasses import replace

from eth_utils import keccak
from hypothesis import event as event_label
from hypothesis import given, settings
from hypothesis import strategies as st

from consensus.messages import (
    address_of,
    decode_message,
    sign_commit,
    sign_prepare,
    sign_proposal,
    sign_round_change,
)
from consensus.qbft import Action, Broadcast, BuildBlock, Finalized, Qbft, SetTimer, proposer_for
from consensus.seals import quorum
from tests.consensus_sim.blocks import GENESIS, SimBlock, SimBlockOps, seal_signers
from tests.consensus_sim.guards import RecordingGuard
from tests.fuzz.conftest import examples
from tests.fuzz.stats import case

KEYS = [keccak(b"qbft fuzz key %d" % i) for i in range(5)]  # 4 validators, 1 outsider
VALIDATORS = tuple(sorted(address_of(k) for k in KEYS[:4]))
KEY_OF = {address_of(k): k for k in KEYS}
OUTSIDER = KEYS[4]
ME = KEYS[0]


def block_at(parent: SimBlock, round_number: int, proposer: bytes, tag: int) -> SimBlock:
    return SimBlock(number=parent.number + 1, parent=parent.hash, payload=b"p%d" % tag,
                    round=round_number, proposer=proposer)


event = st.one_of(
    st.tuples(st.just("msg"),
              st.sampled_from(["prepare", "commit", "round_change", "round_change_prepared",
                               "proposal"]),
              st.integers(0, 4),      # signer (4 = outsider)
              st.integers(-1, 2),     # height offset from the current height
              st.integers(0, 3),      # round
              st.integers(0, 2),      # which block / digest (2 = random digest)
              st.binary(min_size=32, max_size=32)),
    st.tuples(st.just("mutate"), st.integers(0, 10**6), st.integers(0, 10**6),
              st.integers(1, 255)),
    st.tuples(st.just("replay"), st.integers(0, 10**6)),
    st.tuples(st.just("timeout"), st.integers(0, 3)),
    st.tuples(st.just("honest"), st.integers(0, 2), st.integers(1, 4)),
)


@settings(max_examples=examples(150))
@given(st.lists(event, min_size=1, max_size=40))
def test_qbft_state_machine_survives_hostile_message_sequences(events: list[tuple]) -> None:
    case()
    chain: list[SimBlock] = [GENESIS]
    ops = SimBlockOps(lambda: chain[-1], lambda height: VALIDATORS)
    guard = RecordingGuard()
    node = Qbft(private_key=ME, block_ops=ops, guard=guard, request_timeout=2.0)
    finalized: dict[int, bytes] = {}
    sent: list[bytes] = []
    height = 1
    actions: list[Action] = list(node.new_height(1, VALIDATORS, None))

    def handle(new: list[Action]) -> None:
        nonlocal height
        queue = list(new)
        while queue:
            action = queue.pop(0)
            assert isinstance(action, Broadcast | SetTimer | BuildBlock | Finalized), action
            if isinstance(action, Broadcast):
                message = decode_message(action.message)  # what we send is well-formed
                assert message.author == address_of(ME)
            elif isinstance(action, BuildBlock):
                if action.height == height:
                    block = block_at(chain[-1], action.round, address_of(ME), 0)
                    queue.extend(node.on_block_built(action.height, action.round, block))
            elif isinstance(action, Finalized):
                block = action.block
                assert isinstance(block, SimBlock)
                assert len(seal_signers(block, VALIDATORS)) >= quorum(len(VALIDATORS))
                assert finalized.setdefault(block.number, block.digest) == block.digest
                assert block.number == len(chain)
                chain.append(block)
                height = block.number + 1
                queue.extend(node.new_height(height, VALIDATORS, block.proposer))

    handle(actions)
    for item in events:
        parent = chain[-1]
        if item[0] == "msg":
            _, kind, signer, offset, rnd, which, random_digest = item
            key = KEYS[signer]
            h = max(height + offset, 1)
            proposer = proposer_for(VALIDATORS, parent.proposer if parent.number else None, rnd)
            block = block_at(parent, rnd, proposer, which)
            digest = random_digest if which == 2 else block.digest
            if kind == "prepare":
                raw = sign_prepare(key, h, rnd, digest).encode()
            elif kind == "commit":
                raw = sign_commit(key, h, rnd, digest).encode()
            elif kind == "round_change":
                raw = sign_round_change(key, h, rnd).encode()
            elif kind == "round_change_prepared":
                prepares = tuple(sign_prepare(k, h, max(rnd - 1, 0), digest) for k in KEYS[1:4])
                raw = sign_round_change(key, h, rnd, prepared_round=max(rnd - 1, 0),
                                        prepared_digest=digest, prepared_block=block.raw,
                                        prepares=prepares).encode()
            else:
                body = block.raw if which != 2 else random_digest
                raw = sign_proposal(KEY_OF.get(proposer, key) if signer < 4 else key, h, rnd,
                                    body).encode()
            sent.append(raw)
            handle(node.on_message(raw))
        elif item[0] == "mutate" and sent:
            raw = sent[item[1] % len(sent)]
            i = item[2] % len(raw)
            handle(node.on_message(raw[:i] + bytes([raw[i] ^ item[3]]) + raw[i + 1:]))
        elif item[0] == "replay" and sent:
            handle(node.on_message(sent[item[1] % len(sent)]))
        elif item[0] == "timeout":
            handle(node.on_timeout(height, item[1]))
        elif item[0] == "honest":  # a proposal and the other validators' votes for it
            _, rnd, voters = item
            proposer = proposer_for(VALIDATORS, parent.proposer if parent.number else None, rnd)
            block = block_at(parent, rnd, proposer, 1)
            others = [k for k in KEYS[:4] if k != ME][:voters]
            batch = [sign_proposal(KEY_OF[proposer], height, rnd, block.raw).encode()]
            batch += [sign_prepare(k, height, rnd, block.digest).encode() for k in others]
            batch += [sign_commit(k, height, rnd, block.digest).encode() for k in others]
            for raw in batch:
                sent.append(raw)
                handle(node.on_message(raw))
    event_label(f"heights finalized: {min(len(finalized), 3)}")
    # Never two digests signed for one (height, round, message kind).
    assert guard.conflicts() == {}
    assert node.height == height


def test_sim_blocks_used_here_are_what_the_machine_expects() -> None:
    block = block_at(GENESIS, 0, VALIDATORS[0], 0)
    assert SimBlockOps(lambda: GENESIS, lambda h: VALIDATORS).decode(block.raw) == block
    assert replace(block, round=1).digest != block.digest
