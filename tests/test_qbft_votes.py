"""Header-vote validator changes (Besu IBFT 2.0 / QBFT block-header validator selection)."""

from __future__ import annotations

import pytest

from consensus.extradata import Vote
from consensus.votes import VoteTally

A, B, C, D, E, F = (bytes([i]) * 20 for i in (0x0A, 0x0B, 0x0C, 0x0D, 0x0E, 0x0F))


def add(recipient: bytes) -> Vote:
    return Vote(recipient=recipient, add=True)


def remove(recipient: bytes) -> Vote:
    return Vote(recipient=recipient, add=False)


def test_genesis_is_sorted_and_checked() -> None:
    tally = VoteTally.genesis([D, A, C, B], epoch_length=100)
    assert tally.validators == (A, B, C, D)
    assert tally.pending() == {}
    with pytest.raises(ValueError):
        VoteTally.genesis([], 100)
    with pytest.raises(ValueError):
        VoteTally.genesis([A, A], 100)
    with pytest.raises(ValueError):
        VoteTally.genesis([b"\x01" * 19], 100)
    with pytest.raises(ValueError):
        VoteTally.genesis([A], 0)


def test_add_needs_more_than_half_of_the_validators() -> None:
    tally = VoteTally.genesis([A, B, C, D], 100)
    tally = tally.apply_block(1, A, add(E))
    tally = tally.apply_block(2, B, add(E))
    # 2 of 4 is exactly half: not enough.
    assert tally.validators == (A, B, C, D)
    assert tally.pending() == {E: {A: True, B: True}}
    after = tally.apply_block(3, C, add(E))
    assert after.validators == (A, B, C, D, E)
    assert after.pending() == {}
    # The snapshot it came from is unchanged.
    assert tally.validators == (A, B, C, D)


def test_remove_needs_more_than_half_and_new_set_is_sorted() -> None:
    tally = VoteTally.genesis([A, B, C, D, E], 100)
    for number, voter in enumerate((A, B), start=1):
        tally = tally.apply_block(number, voter, remove(C))
    assert C in tally.validators  # 2 of 5
    tally = tally.apply_block(3, D, remove(C))
    assert tally.validators == (A, B, D, E)
    assert tally.pending() == {}


def test_exactly_half_is_not_enough_with_two_validators() -> None:
    tally = VoteTally.genesis([A, B], 100).apply_block(1, A, add(C))
    assert tally.validators == (A, B)
    tally = tally.apply_block(2, B, add(C))
    assert tally.validators == (A, B, C)


def test_repeated_votes_by_one_validator_count_once() -> None:
    tally = VoteTally.genesis([A, B, C, D], 100)
    for number in range(1, 6):
        tally = tally.apply_block(number, A, add(E))
    assert tally.validators == (A, B, C, D)
    assert tally.pending() == {E: {A: True}}


def test_nonsensical_votes_are_ignored() -> None:
    tally = VoteTally.genesis([A, B, C], 100)
    tally = tally.apply_block(1, A, add(B))      # add an existing validator
    tally = tally.apply_block(2, B, remove(E))   # remove a non-validator
    tally = tally.apply_block(3, F, add(E))      # cast by a non-validator
    tally = tally.apply_block(4, C, None)        # no vote at all
    assert tally.validators == (A, B, C)
    assert tally.pending() == {}


def test_epoch_block_discards_pending_votes_after_counting_its_own() -> None:
    tally = VoteTally.genesis([A, B, C, D], epoch_length=4)
    tally = tally.apply_block(1, A, add(E))
    tally = tally.apply_block(2, B, add(E))
    tally = tally.apply_block(3, A, remove(D))
    assert tally.pending() == {E: {A: True, B: True}, D: {A: False}}
    # Block 4 is an epoch block: its vote completes the majority for E, then the rest goes.
    at_epoch = tally.apply_block(4, C, add(E))
    assert at_epoch.validators == (A, B, C, D, E)
    assert at_epoch.pending() == {}
    # Without the completing vote, the epoch simply wipes the pending votes.
    wiped = tally.apply_block(4, C, None)
    assert wiped.validators == (A, B, C, D)
    assert wiped.pending() == {}
    # Votes start again from zero after the epoch.
    again = wiped.apply_block(5, A, add(E)).apply_block(6, B, add(E))
    assert again.validators == (A, B, C, D)


def test_a_removed_validator_loses_its_votes() -> None:
    tally = VoteTally.genesis([A, B, C, D, E], 100)
    tally = tally.apply_block(1, D, add(F))
    tally = tally.apply_block(2, D, remove(A))
    tally = tally.apply_block(3, A, add(F))
    assert tally.pending() == {F: {A: True, D: True}, A: {D: False}}
    # D is voted out by A, B and C (3 of 5).
    for number, voter in enumerate((A, B, C), start=4):
        tally = tally.apply_block(number, voter, remove(D))
    assert tally.validators == (A, B, C, E)
    # D's votes for F and against A are gone; A's vote for F stays.
    assert tally.pending() == {F: {A: True}}
    # F now needs 3 of 4: A's standing vote plus B and C.
    tally = tally.apply_block(7, B, add(F))
    assert F not in tally.validators
    tally = tally.apply_block(8, C, add(F))
    assert tally.validators == (A, B, C, E, F)


def test_votes_for_a_recipient_are_cleared_when_the_change_applies() -> None:
    tally = VoteTally.genesis([A, B, C], 100)
    tally = tally.apply_block(1, A, add(D)).apply_block(2, A, add(E))
    tally = tally.apply_block(3, B, add(D))
    assert tally.validators == (A, B, C, D)
    assert tally.pending() == {E: {A: True}}
