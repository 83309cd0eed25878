"""What the QBFT state machine needs from the node, as structural types.

Consensus treats blocks as opaque: the node decodes, validates, re-rounds and
seals them. Keeping these as Protocols lets the simulator plug in tiny blocks
and the node plug in py-evm blocks without consensus importing either.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol


class ConsensusBlock(Protocol):
    """A proposed block as consensus sees it.

    `digest` is the seal hash: it covers the round (so re-proposing a block in
    another round gives a new digest) and excludes the commit seals.
    """

    @property
    def number(self) -> int: ...

    @property
    def digest(self) -> bytes: ...

    @property
    def round(self) -> int: ...

    @property
    def proposer(self) -> bytes: ...

    @property
    def raw(self) -> bytes: ...


class BlockOps(Protocol):
    def decode(self, raw: bytes) -> ConsensusBlock:
        """Parse a block; raise ValueError on garbage."""
        ...

    def validate(self, block: ConsensusBlock) -> bool:
        """Full validity check (execution included) of a block for the current height."""
        ...

    def with_round(self, block: ConsensusBlock, round: int) -> ConsensusBlock:  # noqa: A002
        """The same block with its extraData round replaced (hence a new digest)."""
        ...

    def with_seals(self, block: ConsensusBlock, seals: Sequence[bytes]) -> ConsensusBlock:
        """The block carrying these commit seals (digest unchanged)."""
        ...


class SigningGuard(Protocol):
    def allow(self, height: int, round: int, kind: int, digest: bytes) -> bool:  # noqa: A002
        """Durably record that we sign `digest` for (height, round, kind), or refuse.

        Called before this node signs a PROPOSAL, PREPARE or COMMIT (kind is the
        message code). Returns False if a different digest was already signed for
        the same key, so that a restarted node never equivocates.
        """
        ...
