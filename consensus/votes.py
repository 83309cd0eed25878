"""Validator-set changes by header votes, as Besu's IBFT 2.0 / QBFT block-header selection.

Each block's proposer may cast one vote in extraData: add an address to the
validator set, or remove one. A change takes effect as soon as more than half
of the current validators (> n/2, i.e. n // 2 + 1) have a standing vote for
it: the validator set of the *next* block changes, the votes about that address
are cleared, and a removed validator's own votes are discarded. Pending votes
are all discarded at every epoch block (number % epoch_length == 0), after that
block's vote has been counted.

Validators are kept sorted by address bytes, the order Besu uses (and the order
consensus.qbft.proposer_for rotates through).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol

from consensus.extradata import ADDRESS_LENGTH, Vote


class ValidatorProvider(Protocol):
    """Where the validator set of a height comes from (header votes today, a contract later)."""

    def validators_for(self, height: int) -> tuple[bytes, ...]: ...


# Pending votes as sorted (recipient, voter, add) triples: immutable and order-independent.
_Pending = tuple[tuple[bytes, bytes, bool], ...]


@dataclass(frozen=True)
class VoteTally:
    """Validators for the next block and the votes still pending. Immutable."""

    validators: tuple[bytes, ...]
    epoch_length: int
    _pending: _Pending = ()

    @classmethod
    def genesis(cls, validators: Sequence[bytes], epoch_length: int) -> VoteTally:
        """The tally before block 1. `validators` is sorted here, whatever its order."""
        if epoch_length < 1:
            raise ValueError("epoch length must be at least 1")
        members = tuple(sorted(bytes(v) for v in validators))
        if not members:
            raise ValueError("a validator set cannot be empty")
        if any(len(v) != ADDRESS_LENGTH for v in members):
            raise ValueError("validators must be 20-byte addresses")
        if len(set(members)) != len(members):
            raise ValueError("duplicate validator address")
        return cls(validators=members, epoch_length=epoch_length)

    def apply_block(self, number: int, proposer: bytes, vote: Vote | None) -> VoteTally:
        """The tally after block `number`, whose proposer cast `vote` (None: no vote)."""
        proposer = bytes(proposer)
        validators = set(self.validators)
        pending: dict[tuple[bytes, bytes], bool] = {
            (recipient, voter): add for recipient, voter, add in self._pending
        }
        if vote is not None and proposer in validators:
            recipient = bytes(vote.recipient)
            # A vote that would not change the set is ignored (as is one by a non-validator).
            if vote.add != (recipient in validators):
                pending[(recipient, proposer)] = vote.add
                in_favour = sum(
                    1 for (r, _), add in pending.items() if r == recipient and add == vote.add
                )
                if in_favour > len(validators) // 2:
                    if vote.add:
                        validators.add(recipient)
                    else:
                        validators.discard(recipient)
                    pending = {
                        key: add for key, add in pending.items()
                        if key[0] != recipient and (vote.add or key[1] != recipient)
                    }
        if number % self.epoch_length == 0:
            pending = {}
        return VoteTally(
            validators=tuple(sorted(validators)),
            epoch_length=self.epoch_length,
            _pending=tuple(sorted((r, v, add) for (r, v), add in pending.items())),
        )

    def pending(self) -> dict[bytes, dict[bytes, bool]]:
        """recipient -> {voter: True to add / False to remove}."""
        result: dict[bytes, dict[bytes, bool]] = {}
        for recipient, voter, add in self._pending:
            result.setdefault(recipient, {})[voter] = add
        return result
