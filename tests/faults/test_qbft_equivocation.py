"""A validator that signs two different things for one round is caught, named and ignored."""

from __future__ import annotations

from consensus.messages import sign_commit, sign_prepare, sign_proposal
from consensus.qbft import Broadcast, Finalized, Qbft, proposer_for
from tests.consensus_sim.blocks import GENESIS, SimBlock, SimBlockOps
from tests.consensus_sim.guards import RecordingGuard
from tests.test_qbft_sim import KEY_OF, KEYS, VALIDATORS


def _honest(key: bytes, chain: list[SimBlock]) -> Qbft:
    ops = SimBlockOps(lambda: chain[-1], lambda height: VALIDATORS)
    return Qbft(private_key=key, block_ops=ops, guard=RecordingGuard(), request_timeout=2.0)


def _block(proposer: bytes, tag: bytes) -> SimBlock:
    return SimBlock(number=1, parent=GENESIS.hash, payload=b"block " + tag, round=0,
                    proposer=proposer)


def test_equivocating_proposer_and_voter_are_rejected_by_reason() -> None:
    chain = [GENESIS]
    proposer = proposer_for(VALIDATORS, None, 0)
    traitor_key = KEY_OF[proposer]
    honest_key = next(k for k in KEYS if k != traitor_key)
    node = _honest(honest_key, chain)
    node.new_height(1, VALIDATORS, None)
    first, second = _block(proposer, b"A"), _block(proposer, b"B")

    actions = node.on_message(sign_proposal(traitor_key, 1, 0, first.raw).encode())
    assert any(isinstance(a, Broadcast) for a in actions)  # it prepared the first block
    rejected = node.rejected
    assert node.on_message(sign_proposal(traitor_key, 1, 0, second.raw).encode()) == []
    assert node.rejected == rejected + 1 and node.last_rejection == "equivocation"
    # The same proposal again is a duplicate, not an equivocation.
    node.on_message(sign_proposal(traitor_key, 1, 0, first.raw).encode())
    assert node.rejected == rejected + 1

    node.on_message(sign_prepare(traitor_key, 1, 0, first.digest).encode())
    assert node.on_message(sign_prepare(traitor_key, 1, 0, second.digest).encode()) == []
    assert node.last_rejection == "equivocation" and node.rejected == rejected + 2
    node.on_message(sign_commit(traitor_key, 1, 0, second.digest).encode())
    node.on_message(sign_commit(traitor_key, 1, 0, first.digest).encode())
    assert node.rejected == rejected + 3

    # Honest validators still decide the first block: the traitor's first votes count once.
    others = [k for k in KEYS if k not in (traitor_key, honest_key)]
    finalized: list[Finalized] = []
    for key in others:
        node.on_message(sign_prepare(key, 1, 0, first.digest).encode())
    for key in others:
        actions = node.on_message(sign_commit(key, 1, 0, first.digest).encode())
        finalized += [a for a in actions if isinstance(a, Finalized)]
    assert len(finalized) == 1 and finalized[0].block.digest == first.digest
