"""Account permissioning holds for blocks from other validators, not only for the txpool.

A proposer that builds a block around its own pool (a Byzantine validator) can include a
transaction from an account AccountAllowList refuses; the followers must reject such a
block whether it arrives as a proposal or as a sealed block through sync or gossip.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from eth_account import Account
from eth_keys import keys
from eth_utils import keccak, to_checksum_address

from consensus.extradata import QbftExtraData
from consensus.seals import seal_hash, sign_seal
from contracts.bindings import MedLedger, Role
from genesis.builder import new_consortium
from genesis.schema import AllocAccount, Genesis
from genesis.system import MEDLEDGER_ADDRESS
from node.chain import BlockRejected, Chain
from node.consensus_blocks import ChainBlockOps, EvmConsensusBlock
from tests.helpers import USER_KEYS, USERS, decode, transfer

PERMITTED, OUTSIDER = USER_KEYS[0], USER_KEYS[1]  # both funded, only the first allowed


@pytest.fixture
def consortium(tmp_path: Path) -> Iterator[tuple[Genesis, bytes, Chain, Chain]]:
    genesis, (key,) = new_consortium(
        1, prefund={USERS[0]: 10**24}, alloc={USERS[1]: AllocAccount(balance=10**24)},
        predeploy_system=True,
    )
    proposer = Chain(tmp_path / "proposer", genesis)
    follower = Chain(tmp_path / "follower", genesis)
    try:
        yield genesis, key, proposer, follower
    finally:
        proposer.close()
        follower.close()


def _build(chain: Chain, key: bytes, sender_key: bytes) -> EvmConsensusBlock:
    built = chain.build_block(
        [decode(transfer(sender_key, 0))], timestamp=chain.head.timestamp + 1,
        proposer=keys.PrivateKey(key).public_key.to_canonical_address(),
    )
    chain.discard_built()
    assert built.rejected == ()  # the EVM itself has nothing against the transaction
    return EvmConsensusBlock.wrap(built.block)


def _sealed(block: EvmConsensusBlock, key: bytes) -> EvmConsensusBlock:
    extra = QbftExtraData.decode(block.block.header.extra_data)
    seal = sign_seal(seal_hash(block.block.header), key)
    header = block.block.header.copy(extra_data=extra.with_seals((seal,)).encode())
    return EvmConsensusBlock.wrap(block.block.copy(header=header))


def test_proposal_with_unpermitted_sender_is_rejected(
    consortium: tuple[Genesis, bytes, Chain, Chain],
) -> None:
    _, key, proposer, follower = consortium
    ops = ChainBlockOps(follower)
    bad = _build(proposer, key, OUTSIDER)
    assert ops.validate(bad) is False
    assert ops.last_rejection is not None and "not permitted" in ops.last_rejection
    assert USERS[1].hex() in ops.last_rejection
    good = _build(proposer, key, PERMITTED)
    assert ops.validate(good) is True
    assert follower.finalize(_sealed(good, key).block).number == 1


def test_sealed_block_with_unpermitted_sender_is_not_imported(
    consortium: tuple[Genesis, bytes, Chain, Chain],
) -> None:
    _, key, proposer, follower = consortium
    ops = ChainBlockOps(follower)
    bad = _sealed(_build(proposer, key, OUTSIDER), key)
    with pytest.raises(BlockRejected, match="not permitted"):
        ops.import_final(bad.block)
    assert follower.head.block_number == 0
    good = _sealed(_build(proposer, key, PERMITTED), key)
    assert ops.import_final(good.block).number == 1
    assert follower.head.block_number == 1


def test_verdicts_follow_permission_changes_between_blocks(
    consortium: tuple[Genesis, bytes, Chain, Chain],
) -> None:
    """The outsider is refused, then registered by its hospital's admin (the validator), and
    its next block is accepted: cached verdicts never outlive a permissions change."""
    _, key, proposer, follower = consortium
    ops = ChainBlockOps(follower)
    admin = keys.PrivateKey(key).public_key.to_canonical_address()
    assert ops.validate(_build(proposer, key, OUTSIDER)) is False

    calldata = MedLedger().register_staff(USERS[1], keccak(b"outsider"), Role.DOCTOR)
    register = Account.sign_transaction({
        "type": 2, "chainId": proposer.chain_id, "nonce": 0,
        "to": to_checksum_address(MEDLEDGER_ADDRESS), "value": 0, "gas": 500_000,
        "maxFeePerGas": 2 * 10**9, "maxPriorityFeePerGas": 10**8, "data": calldata,
    }, key)
    built = proposer.build_block([decode(bytes(register.raw_transaction))],
                                 timestamp=proposer.head.timestamp + 1, proposer=admin)
    block = _sealed(EvmConsensusBlock.wrap(built.block), key)
    proposer.commit_sealed(built, QbftExtraData.decode(block.block.header.extra_data).commit_seals)
    ops.import_final(block.block)
    assert follower.head.block_number == 1

    assert ops.validate(_build(proposer, key, OUTSIDER)) is True
