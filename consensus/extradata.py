"""QBFT header extraData, encoded as Besu does: RLP([vanity, validators, vote, round, seals]).

- vanity: 32 bytes, free for the proposer's use;
- validators: the validator set that seals this block, as 20-byte addresses;
- vote: an empty list, or [recipient address, 0xff to add | 0x00 to remove];
- round: the QBFT round the block was agreed in, 4 bytes big-endian;
- seals: the commit seals, 65-byte secp256k1 signatures (r || s || v, v in {0, 1}).
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import rlp

VANITY_LENGTH = 32
ADDRESS_LENGTH = 20
SEAL_LENGTH = 65
ROUND_LENGTH = 4
VOTE_ADD = b"\xff"
VOTE_REMOVE = b"\x00"
MAX_VALIDATORS = 1024
# An upper bound for py-evm's header validation: vanity + validators + vote + round + seals.
MAX_EXTRA_DATA_BYTES = (
    8 + VANITY_LENGTH + MAX_VALIDATORS * (ADDRESS_LENGTH + 1 + SEAL_LENGTH + 1) + 64
)


class ExtraDataError(ValueError):
    """extraData is not a well-formed QBFT extraData."""


@dataclass(frozen=True)
class Vote:
    recipient: bytes
    add: bool


@dataclass(frozen=True)
class QbftExtraData:
    vanity: bytes
    validators: tuple[bytes, ...]
    vote: Vote | None = None
    round: int = 0
    commit_seals: tuple[bytes, ...] = ()

    def encode(self) -> bytes:
        vote: list[bytes] = (
            [] if self.vote is None
            else [self.vote.recipient, VOTE_ADD if self.vote.add else VOTE_REMOVE]
        )
        return rlp.encode([
            self.vanity,
            list(self.validators),
            vote,
            self.round.to_bytes(ROUND_LENGTH, "big"),
            list(self.commit_seals),
        ])

    def without_seals(self) -> QbftExtraData:
        return replace(self, commit_seals=())

    def with_seals(self, seals: tuple[bytes, ...]) -> QbftExtraData:
        return replace(self, commit_seals=tuple(seals))

    @classmethod
    def decode(cls, raw: bytes) -> QbftExtraData:
        try:
            items = rlp.decode(raw)
        except rlp.exceptions.DecodingError as exc:
            raise ExtraDataError(f"extraData is not RLP: {exc}") from exc
        if not isinstance(items, list) or len(items) != 5:
            raise ExtraDataError("extraData must be an RLP list of 5 items")
        vanity, validators, vote, round_bytes, seals = items
        if not isinstance(vanity, bytes) or len(vanity) != VANITY_LENGTH:
            raise ExtraDataError("extraData vanity must be 32 bytes")
        if not isinstance(validators, list) or not all(
            isinstance(v, bytes) and len(v) == ADDRESS_LENGTH for v in validators
        ):
            raise ExtraDataError("extraData validators must be a list of 20-byte addresses")
        if len(validators) > MAX_VALIDATORS:
            raise ExtraDataError(f"extraData lists more than {MAX_VALIDATORS} validators")
        parsed_vote: Vote | None
        if vote == []:
            parsed_vote = None
        elif (
            isinstance(vote, list) and len(vote) == 2
            and isinstance(vote[0], bytes) and len(vote[0]) == ADDRESS_LENGTH
            and vote[1] in (VOTE_ADD, VOTE_REMOVE)
        ):
            parsed_vote = Vote(recipient=vote[0], add=vote[1] == VOTE_ADD)
        else:
            raise ExtraDataError("extraData vote must be [] or [address, 0xff|0x00]")
        if not isinstance(round_bytes, bytes) or len(round_bytes) != ROUND_LENGTH:
            raise ExtraDataError("extraData round must be 4 bytes")
        if not isinstance(seals, list) or not all(
            isinstance(s, bytes) and len(s) == SEAL_LENGTH for s in seals
        ):
            raise ExtraDataError("extraData commit seals must be 65-byte signatures")
        return cls(
            vanity=vanity,
            validators=tuple(validators),
            vote=parsed_vote,
            round=int.from_bytes(round_bytes, "big"),
            commit_seals=tuple(seals),
        )
