"""The chain on LevelDB: build, seal, import, persistence and rejection of bad blocks."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from consensus.extradata import QbftExtraData
from consensus.seals import seal_hash, sign_seal
from node.chain import QBFT_MIX_HASH, BlockRejected, Chain
from node.db import StorageError
from tests.helpers import (
    CHAIN_ID,
    USER_KEYS,
    USERS,
    VALIDATOR,
    VALIDATOR_KEY,
    address_of,
    decode,
    make_genesis,
    transfer,
)


def seal_and_store(chain: Chain, txs: list, timestamp: int | None = None):  # type: ignore[no-untyped-def]
    built = chain.build_block(
        [decode(raw) for raw in txs],
        timestamp=timestamp or chain.head.timestamp + 1,
        proposer=VALIDATOR,
    )
    seal = sign_seal(seal_hash(built.block.header), VALIDATOR_KEY)
    return built, chain.commit_sealed(built, [seal])


@pytest.fixture
def chain(tmp_path: Path):  # type: ignore[no-untyped-def]
    c = Chain(tmp_path / "a", make_genesis())
    yield c
    c.close()


def test_genesis_header_is_qbft(chain: Chain) -> None:
    head = chain.head
    assert head.block_number == 0
    assert head.difficulty == 0
    assert head.mix_hash == QBFT_MIX_HASH
    extra = QbftExtraData.decode(head.extra_data)
    assert extra.validators == (VALIDATOR,)
    assert chain.state_at(head).get_balance(USERS[0]) == 10**24


def test_build_seal_commit_and_reopen(tmp_path: Path) -> None:
    chain = Chain(tmp_path / "a", make_genesis())
    txs = [transfer(USER_KEYS[0], n, value=10 + n) for n in range(5)]
    built, block = seal_and_store(chain, txs)
    assert built.rejected == ()
    assert block.number == 1 and len(block.transactions) == 5
    assert block.header.coinbase == VALIDATOR
    assert len(QbftExtraData.decode(block.header.extra_data).commit_seals) == 1
    receipts = chain.receipts(block)
    assert [r.gas_used for r in receipts] == [21_000 * (i + 1) for i in range(5)]
    tx_hash = decode(txs[3]).hash
    assert chain.transaction_location(tx_hash) == (1, 3)
    balance = chain.state_at(chain.head).get_balance(b"\x42" * 20)
    assert balance == sum(10 + n for n in range(5))
    state_root = block.header.state_root
    chain.close()

    reopened = Chain(tmp_path / "a", make_genesis())
    try:
        assert reopened.head.block_number == 1
        assert reopened.head.state_root == state_root
        assert reopened.transaction_location(tx_hash) == (1, 3)
        assert reopened.state_at(reopened.head).get_balance(b"\x42" * 20) == balance
        assert reopened.block_by_hash(block.hash).transactions[3].hash == tx_hash
    finally:
        reopened.close()


def test_proposer_skips_transactions_the_state_rejects(chain: Chain) -> None:
    good = transfer(USER_KEYS[0], 0)
    gap = transfer(USER_KEYS[0], 5)
    broke = transfer(USER_KEYS[1], 0, value=10**30)
    built, block = seal_and_store(chain, [good, gap, broke])
    assert [tx.hash for tx in block.transactions] == [decode(good).hash]
    reasons = [reason for _tx, reason in built.rejected]
    assert len(reasons) == 2
    assert "nonce" in reasons[0].lower()
    assert "balance" in reasons[1].lower() or "fund" in reasons[1].lower()


def test_follower_imports_sealed_blocks_with_the_same_state(tmp_path: Path) -> None:
    proposer = Chain(tmp_path / "p", make_genesis())
    follower = Chain(tmp_path / "f", make_genesis())
    try:
        blocks = []
        for n in range(3):
            txs = [transfer(USER_KEYS[n], 0), transfer(USER_KEYS[n], 1)]
            _, block = seal_and_store(proposer, txs)
            blocks.append(block)
        for block in blocks:
            follower.import_block(block)
        assert follower.head.hash == proposer.head.hash
        assert follower.head.state_root == proposer.head.state_root
    finally:
        proposer.close()
        follower.close()


def test_import_rejects_bad_blocks_and_keeps_the_head(tmp_path: Path) -> None:
    proposer = Chain(tmp_path / "p", make_genesis())
    follower = Chain(tmp_path / "f", make_genesis())
    try:
        _, block = seal_and_store(proposer, [transfer(USER_KEYS[0], 0)])
        head_before = follower.head

        unsealed = block.copy(header=block.header.copy(
            extra_data=QbftExtraData.decode(block.header.extra_data).without_seals().encode()
        ))
        with pytest.raises(BlockRejected, match="0 commit seals"):
            follower.import_block(unsealed)

        forged_seal = sign_seal(seal_hash(block.header), USER_KEYS[0])
        forged = block.copy(header=block.header.copy(
            extra_data=QbftExtraData.decode(block.header.extra_data).with_seals((forged_seal,)).encode()
        ))
        with pytest.raises(BlockRejected, match="non-validator"):
            follower.import_block(forged)

        # A validator-sealed block whose state root lies: execution disagrees.
        bad_root_header = block.header.copy(state_root=b"\x13" * 32)
        bad_root_header = bad_root_header.copy(extra_data=QbftExtraData.decode(
            bad_root_header.extra_data
        ).with_seals((sign_seal(seal_hash(bad_root_header), VALIDATOR_KEY),)).encode())
        with pytest.raises(BlockRejected):
            follower.import_block(block.copy(header=bad_root_header))

        other_set = QbftExtraData.decode(block.header.extra_data)
        from dataclasses import replace

        wrong_validators = block.header.copy(
            extra_data=replace(other_set, validators=(VALIDATOR, USERS[0])).encode()
        )
        with pytest.raises(BlockRejected, match="validator set"):
            follower.import_block(block.copy(header=wrong_validators))

        assert follower.head == head_before
        assert not follower.db.has_staged
        follower.import_block(block)
        assert follower.head.hash == block.hash
        with pytest.raises(BlockRejected, match="does not extend"):
            follower.import_block(block)
    finally:
        proposer.close()
        follower.close()


def test_datadir_of_another_chain_is_refused(tmp_path: Path) -> None:
    Chain(tmp_path / "a", make_genesis()).close()
    with pytest.raises(StorageError, match="belongs to another chain"):
        Chain(tmp_path / "a", make_genesis(chain_id=CHAIN_ID + 1))


def test_database_locked_by_another_process_is_a_clear_error(tmp_path: Path) -> None:
    Chain(tmp_path / "a", make_genesis()).close()
    holder = subprocess.Popen(
        [sys.executable, "-c",
         "import plyvel, sys, time; db = plyvel.DB(sys.argv[1]); print('ok', flush=True); "
         "time.sleep(30)", str(tmp_path / "a" / "chaindata")],
        stdout=subprocess.PIPE, text=True,
    )
    try:
        assert holder.stdout is not None and holder.stdout.readline().strip() == "ok"
        with pytest.raises(StorageError, match="in use by another process"):
            Chain(tmp_path / "a", make_genesis())
    finally:
        holder.kill()
        holder.wait()


def test_corrupt_database_is_detected_at_start(tmp_path: Path) -> None:
    chain = Chain(tmp_path / "a", make_genesis())
    seal_and_store(chain, [transfer(USER_KEYS[0], 0)])
    chain.close()
    data = tmp_path / "a" / "chaindata"
    victims = sorted(data.glob("*.log")) + sorted(data.glob("*.ldb"))
    assert victims, "LevelDB wrote no data files"
    for victim in victims:
        raw = bytearray(victim.read_bytes())
        for i in range(0, len(raw), 7):
            raw[i] ^= 0xFF
        victim.write_bytes(bytes(raw))
    with pytest.raises(StorageError, match="corrupt"):
        Chain(tmp_path / "a", make_genesis())


def test_validated_proposal_is_finalized_without_reexecution(tmp_path: Path) -> None:
    proposer = Chain(tmp_path / "p", make_genesis())
    follower = Chain(tmp_path / "f", make_genesis())
    try:
        built = proposer.build_block([decode(transfer(USER_KEYS[0], 0))],
                                     timestamp=proposer.head.timestamp + 1, proposer=VALIDATOR)
        follower.execute_proposal(built.block)  # unsealed, as a QBFT proposal carries it
        assert follower.head.block_number == 0, "a proposal must not become the head"
        seal = sign_seal(seal_hash(built.block.header), VALIDATOR_KEY)
        sealed = proposer.commit_sealed(built, [seal])
        calls = []
        original = follower.execute_proposal
        follower.execute_proposal = lambda b: calls.append(b) or original(b)  # type: ignore[method-assign]
        follower.finalize(sealed)
        assert calls == [], "finalize re-executed a block it had already validated"
        assert follower.head.hash == sealed.hash
        assert follower.head.state_root == proposer.head.state_root
    finally:
        proposer.close()
        follower.close()


def test_proposal_with_wrong_state_root_is_rejected_before_sealing(tmp_path: Path) -> None:
    proposer = Chain(tmp_path / "p", make_genesis())
    follower = Chain(tmp_path / "f", make_genesis())
    try:
        built = proposer.build_block([decode(transfer(USER_KEYS[0], 0))],
                                     timestamp=proposer.head.timestamp + 1, proposer=VALIDATOR)
        lying = built.block.copy(header=built.block.header.copy(state_root=b"\x01" * 32))
        with pytest.raises(BlockRejected, match="invalid"):
            follower.execute_proposal(lying)
        assert not follower.db.has_staged
        late = built.block.copy(header=built.block.header.copy(timestamp=0))
        with pytest.raises(BlockRejected, match="timestamp"):
            follower.execute_proposal(late)
    finally:
        proposer.close()
        follower.close()


def test_block_hash_ignores_commit_seals_and_round(tmp_path: Path) -> None:
    """Two honest nodes holding different quorums of seals agree on the block hash."""
    validator_keys = [VALIDATOR_KEY, *USER_KEYS[:3]]
    validators = tuple(sorted(address_of(k) for k in validator_keys))
    genesis = make_genesis(validators=validators)
    a = Chain(tmp_path / "a", genesis)
    b = Chain(tmp_path / "b", genesis)
    try:
        built = a.build_block([decode(transfer(USER_KEYS[3], 0))],
                              timestamp=a.head.timestamp + 1, proposer=VALIDATOR)
        digest = seal_hash(built.block.header)
        seals = [sign_seal(digest, k) for k in validator_keys]
        extra = QbftExtraData.decode(built.block.header.extra_data)
        first = built.block.copy(header=built.block.header.copy(
            extra_data=extra.with_seals(tuple(seals[:3])).encode()))
        second = built.block.copy(header=built.block.header.copy(
            extra_data=extra.with_seals(tuple(seals[1:])).encode()))
        assert first.header.extra_data != second.header.extra_data
        assert first.hash == second.hash
        from dataclasses import replace

        later_round = built.block.header.copy(extra_data=replace(extra, round=2).encode())
        assert later_round.hash == built.block.header.hash
        assert seal_hash(later_round) != digest, "the seal digest must still cover the round"

        a.finalize(first)
        b.finalize(second)
        assert a.head.hash == b.head.hash
        # A child built on one node's copy imports on the other's.
        child = a.build_block([], timestamp=a.head.timestamp + 1, proposer=validators[0])
        child_digest = seal_hash(child.block.header)
        child_seals = tuple(sign_seal(child_digest, k) for k in validator_keys[:3])
        sealed_child = a.commit_sealed(child, child_seals)
        b.import_block(sealed_child)
        assert b.head.hash == a.head.hash
    finally:
        a.close()
        b.close()


def test_gas_limit_stays_at_the_genesis_value(chain: Chain) -> None:
    for _ in range(20):
        seal_and_store(chain, [])
    assert chain.head.gas_limit == make_genesis().gas_limit
    assert chain.pending_header(chain.head.timestamp + 1).gas_limit == make_genesis().gas_limit


def test_build_time_budget_leaves_the_rest_for_a_later_block(chain: Chain) -> None:
    from node.chain import BUILD_TIME_BUDGET_REACHED

    txs = [decode(transfer(USER_KEYS[0], n)) for n in range(3)]
    built = chain.build_block(txs, timestamp=chain.head.timestamp + 1, proposer=VALIDATOR,
                              deadline=0.0)  # already past: nothing fits
    assert list(built.block.transactions) == []
    assert [reason for _tx, reason in built.rejected] == [BUILD_TIME_BUDGET_REACHED] * 3
    chain.discard_built()
    built, block = seal_and_store(chain, [transfer(USER_KEYS[0], n) for n in range(3)])
    assert len(block.transactions) == 3 and built.rejected == ()


def test_block_senders_names_each_sender(chain: Chain) -> None:
    from node.txpool import block_senders

    _built, block = seal_and_store(chain, [transfer(USER_KEYS[1], 0), transfer(USER_KEYS[2], 0),
                                           transfer(USER_KEYS[1], 1)])
    assert block_senders(block) == [USERS[1], USERS[2], USERS[1]]


def test_a_drifted_gas_limit_is_rejected_even_when_sealed(tmp_path: Path) -> None:
    # py-evm alone allows +-1/1024 per block; the consortium's limit moves only at forks.
    proposer = Chain(tmp_path / "p", make_genesis())
    follower = Chain(tmp_path / "f", make_genesis())
    try:
        _, block = seal_and_store(proposer, [])
        header = block.header.copy(gas_limit=block.header.gas_limit + 1)
        seal = sign_seal(seal_hash(header), VALIDATOR_KEY)
        header = header.copy(extra_data=QbftExtraData.decode(header.extra_data)
                             .with_seals((seal,)).encode())
        with pytest.raises(BlockRejected, match="gas limit"):
            follower.import_block(block.copy(header=header))
        assert follower.head.block_number == 0
        follower.import_block(block)
        assert follower.head.hash == block.hash
    finally:
        proposer.close()
        follower.close()
