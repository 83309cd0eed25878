"""The blocks QBFT agrees on, as py-evm blocks: the node's side of consensus' BlockOps.

Consensus treats blocks as opaque; this adapter decodes them, validates them by
executing them on the chain (keeping the result staged for finalization), and
rewrites the round or the commit seals inside extraData. Every block from another
node, proposed or final, must also pass account permissioning: its senders are
checked against AccountAllowList at the parent's state.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace

import rlp
from eth.abc import BlockAPI

from consensus.extradata import ExtraDataError, QbftExtraData
from consensus.seals import seal_hash
from node.chain import BlockRejected, Chain
from node.permissioning import OnChainPermissioning

MAX_BLOCK_BYTES = 8 * 1024 * 1024


@dataclass(frozen=True)
class EvmConsensusBlock:
    """A py-evm block with the fields consensus reads."""

    block: BlockAPI
    number: int
    digest: bytes
    round: int
    proposer: bytes
    raw: bytes

    @classmethod
    def wrap(cls, block: BlockAPI) -> EvmConsensusBlock:
        extra = QbftExtraData.decode(block.header.extra_data)
        return cls(
            block=block,
            number=block.number,
            digest=seal_hash(block.header),
            round=extra.round,
            proposer=bytes(block.header.coinbase),
            raw=rlp.encode(block),
        )


class ChainBlockOps:
    """BlockOps over a Chain. Called from the chain worker thread only."""

    def __init__(self, chain: Chain, permissioning: OnChainPermissioning | None = None) -> None:
        self.chain = chain
        self.permissioning = permissioning or OnChainPermissioning(chain)
        self._block_class = chain.vm_at(chain.head).get_block_class()
        self.last_rejection: str | None = None

    def decode_block(self, raw: bytes) -> BlockAPI:
        if len(raw) > MAX_BLOCK_BYTES:
            raise ValueError(f"block of {len(raw)} bytes exceeds {MAX_BLOCK_BYTES}")
        try:
            block = rlp.decode(raw, sedes=self._block_class)
            QbftExtraData.decode(block.header.extra_data)
        except (rlp.exceptions.RLPException, ExtraDataError, TypeError) as exc:
            raise ValueError(f"undecodable block: {exc}") from exc
        return block

    @staticmethod
    def encode_block(block: BlockAPI) -> bytes:
        return rlp.encode(block)

    def decode(self, raw: bytes) -> EvmConsensusBlock:
        return EvmConsensusBlock.wrap(self.decode_block(raw))

    def validate(self, block: EvmConsensusBlock) -> bool:
        try:
            self.chain.execute_proposal(block.block)
            self.check_permissions(block.block)
        except BlockRejected as exc:
            self.chain.discard_built()
            self.last_rejection = str(exc)
            return False
        return True

    def check_permissions(self, block: BlockAPI) -> None:
        """BlockRejected if a sender in `block` may not transact (account permissioning)."""
        try:
            refused = self.permissioning.refused_sender(block)
        except ValueError as exc:
            raise BlockRejected(f"block #{block.number}: {exc}") from exc
        if refused is not None:
            raise BlockRejected(
                f"block #{block.number} has a transaction from 0x{refused.hex()}, "
                "an account not permitted to transact"
            )

    def import_final(self, block: BlockAPI) -> BlockAPI:
        """Store a final block from a peer (sync or gossip) once it passes every check."""
        if self.chain.head.hash == block.header.parent_hash:
            self.check_permissions(block)
        return self.chain.finalize(block)

    def _with_extra(self, block: EvmConsensusBlock, extra: QbftExtraData) -> EvmConsensusBlock:
        header = block.block.header.copy(extra_data=extra.encode())
        return EvmConsensusBlock.wrap(block.block.copy(header=header))

    def with_round(self, block: EvmConsensusBlock, round: int) -> EvmConsensusBlock:  # noqa: A002
        extra = QbftExtraData.decode(block.block.header.extra_data)
        return self._with_extra(block, replace(extra, round=round, commit_seals=()))

    def with_seals(self, block: EvmConsensusBlock, seals: Sequence[bytes]) -> EvmConsensusBlock:
        extra = QbftExtraData.decode(block.block.header.extra_data)
        return self._with_extra(block, extra.with_seals(tuple(seals)))
