"""Which validators seal the next block: the header-vote tally, kept per recent block.

Each block's extraData lists the validators that sealed it, so the set of any
past block is read from its header. The set of the *next* block depends on the
votes cast since the last epoch boundary; `ValidatorTracker` keeps the tally of
recent blocks in memory and rebuilds it by replaying headers when needed (at
start-up, or for an old block), which reads extraData only and is fast.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Callable

from eth.abc import BlockHeaderAPI

from consensus.extradata import QbftExtraData, Vote
from consensus.votes import VoteTally

HeaderByNumber = Callable[[int], BlockHeaderAPI | None]


class ValidatorTracker:
    def __init__(
        self,
        genesis_validators: tuple[bytes, ...],
        epoch_length: int,
        header_by_number: HeaderByNumber,
        *,
        cache_size: int = 256,
    ) -> None:
        self._genesis = VoteTally.genesis(tuple(sorted(genesis_validators)), epoch_length)
        self._header_by_number = header_by_number
        self._cache: OrderedDict[bytes, VoteTally] = OrderedDict()
        self._cache_size = cache_size
        self._lock = threading.Lock()

    def tally_after(self, header: BlockHeaderAPI) -> VoteTally:
        """The vote tally once `header`'s block is applied (its vote counted)."""
        with self._lock:
            cached = self._cache.get(header.hash)
            if cached is not None:
                self._cache.move_to_end(header.hash)
                return cached
        if header.block_number == 0:
            tally = self._genesis
        else:
            parent = self._header_by_number(header.block_number - 1)
            if parent is None or parent.hash != header.parent_hash:
                raise KeyError(f"parent of block #{header.block_number} is not canonical")
            tally = self._replay_to(parent).apply_block(
                header.block_number, header.coinbase, _vote_of(header)
            )
        self._remember(header.hash, tally)
        return tally

    def _replay_to(self, header: BlockHeaderAPI) -> VoteTally:
        """Tally after `header`, replaying from the nearest cached ancestor (or genesis)."""
        chain: list[BlockHeaderAPI] = []
        current: BlockHeaderAPI | None = header
        tally: VoteTally | None = None
        while current is not None:
            with self._lock:
                tally = self._cache.get(current.hash)
            if tally is not None:
                break
            if current.block_number == 0:
                tally = self._genesis
                break
            chain.append(current)
            current = self._header_by_number(current.block_number - 1)
        if tally is None:
            raise KeyError("cannot rebuild the validator tally: missing headers")
        for block_header in reversed(chain):
            tally = tally.apply_block(
                block_header.block_number, block_header.coinbase, _vote_of(block_header)
            )
            self._remember(block_header.hash, tally)
        return tally

    def _remember(self, block_hash: bytes, tally: VoteTally) -> None:
        with self._lock:
            self._cache[block_hash] = tally
            self._cache.move_to_end(block_hash)
            while len(self._cache) > self._cache_size:
                self._cache.popitem(last=False)

    def validators_after(self, header: BlockHeaderAPI) -> tuple[bytes, ...]:
        return tuple(self.tally_after(header).validators)


def _vote_of(header: BlockHeaderAPI) -> Vote | None:
    return QbftExtraData.decode(header.extra_data).vote


class PendingVotes:
    """Votes this node casts in the blocks it proposes (`qbft_proposeValidatorVote`).

    A vote stays until discarded; it is only cast while it would change the set
    (adding a non-validator, removing a validator). Several votes are cast in
    turn, one per proposed block.
    """

    def __init__(self) -> None:
        self._votes: dict[bytes, bool] = {}
        self._turn = 0
        self._lock = threading.Lock()

    def propose(self, address: bytes, add: bool) -> None:
        with self._lock:
            self._votes[address] = add

    def discard(self, address: bytes) -> bool:
        with self._lock:
            return self._votes.pop(address, None) is not None

    def as_dict(self) -> dict[bytes, bool]:
        with self._lock:
            return dict(self._votes)

    def next_vote(self, validators: tuple[bytes, ...]) -> Vote | None:
        with self._lock:
            effective = [
                Vote(recipient=address, add=add) for address, add in self._votes.items()
                if add != (address in validators)
            ]
            if not effective:
                return None
            self._turn = (self._turn + 1) % len(effective)
            return effective[self._turn]
