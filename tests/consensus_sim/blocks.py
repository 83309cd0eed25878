"""A small real block for the simulator: what consensus needs, nothing more.

Two hashes, as in Besu's QBFT:
- `digest` (what commit seals sign) covers every field but the seals, round included;
- `hash` (the block's identity, which children link to) leaves out the round
  and the seals, so the block decided in round 0 and the same block re-proposed
  in round 1, or sealed by another quorum, are one block of one chain.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from functools import cached_property

import rlp
from eth_utils import keccak

from consensus.extradata import Vote
from consensus.seals import FinalityError, quorum, recover_seal_signer

MAX_PAYLOAD = 1024
ZERO_HASH = b"\x00" * 32
ZERO_ADDRESS = b"\x00" * 20


def _vote_item(vote: Vote | None) -> list[bytes]:
    return [] if vote is None else [vote.recipient, b"\x01" if vote.add else b"\x00"]


@dataclass(frozen=True)
class SimBlock:
    number: int
    parent: bytes
    payload: bytes
    round: int
    proposer: bytes
    vote: Vote | None = None
    seals: tuple[bytes, ...] = field(default=())

    def _fields(self) -> list[object]:
        return [self.number, self.parent, self.payload, self.round, self.proposer,
                _vote_item(self.vote)]

    @cached_property
    def digest(self) -> bytes:
        return keccak(rlp.encode(self._fields()))

    @cached_property
    def hash(self) -> bytes:
        return keccak(rlp.encode([*self._fields()[:3], *self._fields()[4:]]))

    @cached_property
    def raw(self) -> bytes:
        return rlp.encode([*self._fields(), list(self.seals)])

    @classmethod
    def decode(cls, raw: bytes) -> SimBlock:
        try:
            items = rlp.decode(raw)
        except (rlp.exceptions.RLPException, RecursionError) as exc:
            raise ValueError(f"not a block: {exc}") from exc
        if not isinstance(items, list) or len(items) != 7:
            raise ValueError("a block has 7 fields")
        number, parent, payload, round_bytes, proposer, vote, seals = items
        if not all(isinstance(x, bytes) for x in (number, parent, payload, round_bytes, proposer)):
            raise ValueError("block scalars must be bytes")
        if len(number) > 8 or len(round_bytes) > 4 or number[:1] == b"\x00" \
                or round_bytes[:1] == b"\x00":
            raise ValueError("bad block integer")
        if len(parent) != 32 or len(proposer) != 20 or len(payload) > MAX_PAYLOAD:
            raise ValueError("bad block field size")
        parsed_vote: Vote | None = None
        if vote != []:
            if not (isinstance(vote, list) and len(vote) == 2 and isinstance(vote[0], bytes)
                    and len(vote[0]) == 20 and vote[1] in (b"\x00", b"\x01")):
                raise ValueError("bad vote")
            parsed_vote = Vote(recipient=vote[0], add=vote[1] == b"\x01")
        if not isinstance(seals, list) or not all(
            isinstance(s, bytes) and len(s) == 65 for s in seals
        ):
            raise ValueError("bad seals")
        return cls(
            number=int.from_bytes(number, "big"), parent=parent, payload=payload,
            round=int.from_bytes(round_bytes, "big"), proposer=proposer, vote=parsed_vote,
            seals=tuple(seals),
        )


GENESIS = SimBlock(number=0, parent=ZERO_HASH, payload=b"genesis", round=0, proposer=ZERO_ADDRESS)


class SimBlockOps:
    """BlockOps over one simulated node's chain."""

    def __init__(
        self, head: Callable[[], SimBlock], validators_for: Callable[[int], tuple[bytes, ...]]
    ) -> None:
        self._head = head
        self._validators_for = validators_for
        self.validations = 0

    def decode(self, raw: bytes) -> SimBlock:
        return SimBlock.decode(raw)

    def validate(self, block: SimBlock) -> bool:
        self.validations += 1
        head = self._head()
        return (
            block.number == head.number + 1
            and block.parent == head.hash
            and block.proposer in self._validators_for(block.number)
            and not block.seals
        )

    def with_round(self, block: SimBlock, round: int) -> SimBlock:  # noqa: A002
        return replace(block, round=round, seals=())

    def with_seals(self, block: SimBlock, seals: Sequence[bytes]) -> SimBlock:
        return replace(block, seals=tuple(seals))


def seal_signers(block: SimBlock, validators: Sequence[bytes]) -> tuple[bytes, ...]:
    """Distinct validator signers of the block's seals; FinalityError if not final."""
    signers: list[bytes] = []
    for seal in block.seals:
        signer = recover_seal_signer(block.digest, seal)
        if signer not in validators:
            raise FinalityError(f"seal by non-validator 0x{signer.hex()}")
        if signer in signers:
            raise FinalityError(f"duplicate seal by 0x{signer.hex()}")
        signers.append(signer)
    if len(signers) < quorum(len(validators)):
        raise FinalityError(f"{len(signers)} seals, {quorum(len(validators))} needed")
    return tuple(signers)
