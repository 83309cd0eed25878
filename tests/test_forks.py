"""Genesis fork schedule: validation, execution at the fork block, datadir and peer checks."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import Any

import pytest
import trio
from eth_utils import to_checksum_address

from consensus.seals import seal_hash, sign_seal
from genesis.schema import (
    AllocAccount,
    ContractUpgrade,
    Fork,
    Genesis,
    GenesisError,
    QbftChanges,
    genesis_to_json,
    parse_genesis,
)
from network.codec import ChainStatus, StatusRequest, decode_request, encode_request
from network.forkcheck import compare_forks
from node.chain import BlockRejected, Chain
from node.db import StorageError
from tests.helpers import USER_KEYS, VALIDATOR, VALIDATOR_KEY, decode, make_genesis, transfer
from tests.test_network_harness import (
    FakeChain,
    Runner,
    allow,
    connected,
    make_node,
    new_key,
    trio_test,
    wait_until,
)

CONTRACT = bytes.fromhex("4d4c0000000000000000000000000000000000aa")
OLD_CODE = bytes.fromhex("00")  # STOP
NEW_CODE = bytes.fromhex("602a60015500")  # SSTORE(1, 42); STOP
FORK_BLOCK = 3


def base_genesis() -> Genesis:
    genesis = make_genesis()
    alloc = {**genesis.alloc, CONTRACT: AllocAccount(code=OLD_CODE, storage={5: 7})}
    return dataclasses.replace(genesis, alloc=alloc, system_contracts={"registry": CONTRACT})


def upgrade_fork(block: int = FORK_BLOCK, code: bytes = NEW_CODE) -> Fork:
    return Fork(
        block=block, name="registryV2", gas_limit=20_000_000,
        qbft=QbftChanges(block_period_seconds=2, request_timeout_seconds=6),
        system_contracts={CONTRACT: ContractUpgrade(code=code, storage={6: 9})},
    )


def forked_genesis(*forks: Fork) -> Genesis:
    return dataclasses.replace(base_genesis(), forks=forks or (upgrade_fork(),))


def seal_next(chain: Chain, raw_txs: list[bytes]) -> Any:
    built = chain.build_block([decode(raw) for raw in raw_txs],
                              timestamp=chain.head.timestamp + 1, proposer=VALIDATOR)
    seal = sign_seal(seal_hash(built.block.header), VALIDATOR_KEY)
    return chain.commit_sealed(built, [seal])


def grow(chain: Chain, blocks: int) -> list[Any]:
    """Blocks that each call the contract (and so run whichever code is live)."""
    out = []
    for _ in range(blocks):
        nonce = chain.head.block_number
        call = transfer(USER_KEYS[0], nonce, to=CONTRACT, value=0, gas=60_000)
        out.append(seal_next(chain, [call]))
    return out


# --------------------------------------------------------------------------- execution


def test_fork_replaces_code_at_its_block_and_keeps_storage(tmp_path: Path) -> None:
    chain = Chain(tmp_path / "a", forked_genesis())
    try:
        blocks = grow(chain, 5)
        before = chain.state_at(blocks[FORK_BLOCK - 2].header)
        assert before.get_code(CONTRACT) == OLD_CODE
        assert before.get_storage(CONTRACT, 1) == 0  # the old code ran: it stores nothing
        at_fork = chain.state_at(blocks[FORK_BLOCK - 1].header)
        assert at_fork.get_code(CONTRACT) == NEW_CODE
        assert at_fork.get_storage(CONTRACT, 5) == 7  # old storage kept
        assert at_fork.get_storage(CONTRACT, 6) == 9  # the fork's storage written
        # The fork block's own transaction already ran the new code.
        assert at_fork.get_storage(CONTRACT, 1) == 42
        gas_limits = [b.header.gas_limit for b in blocks]
        assert gas_limits == [30_000_000, 30_000_000, 20_000_000, 20_000_000, 20_000_000]
        assert chain.pending_header(chain.head.timestamp + 1).gas_limit == 20_000_000
    finally:
        chain.close()


def test_two_independent_chains_agree_across_the_fork(tmp_path: Path) -> None:
    proposer = Chain(tmp_path / "a", forked_genesis())
    follower = Chain(tmp_path / "b", forked_genesis())
    legacy = Chain(tmp_path / "c", base_genesis())  # a node that never heard of the fork
    try:
        for block in grow(proposer, 5):
            follower.import_block(block)
            if block.number < FORK_BLOCK:
                legacy.import_block(block)
            elif block.number == FORK_BLOCK:
                with pytest.raises(BlockRejected):
                    legacy.import_block(block)
        assert follower.head.hash == proposer.head.hash
        assert follower.head.state_root == proposer.head.state_root
        assert legacy.head.block_number == FORK_BLOCK - 1  # stuck, not forked
    finally:
        for chain in (proposer, follower, legacy):
            chain.close()


def test_fork_block_with_another_gas_limit_is_rejected(tmp_path: Path) -> None:
    proposer = Chain(tmp_path / "a", forked_genesis())
    other = dataclasses.replace(upgrade_fork(), gas_limit=25_000_000)
    follower = Chain(tmp_path / "b", forked_genesis(other))
    try:
        blocks = grow(proposer, FORK_BLOCK)
        for block in blocks[:-1]:
            follower.import_block(block)
        with pytest.raises(BlockRejected, match="gas limit"):
            follower.import_block(blocks[-1])
    finally:
        proposer.close()
        follower.close()


def test_qbft_timing_follows_the_schedule() -> None:
    genesis = forked_genesis()
    assert genesis.qbft_at(FORK_BLOCK - 1).block_period_seconds == 1
    assert genesis.qbft_at(FORK_BLOCK).block_period_seconds == 2
    assert genesis.qbft_at(FORK_BLOCK).request_timeout_seconds == 6
    assert genesis.qbft_at(FORK_BLOCK).empty_block_period_seconds == 10
    assert genesis.gas_limit_at(FORK_BLOCK - 1) == 30_000_000
    assert genesis.gas_limit_at(10**6) == 20_000_000


# --------------------------------------------------------------------------- datadir checks


def test_datadir_refuses_a_schedule_changed_below_its_head(tmp_path: Path) -> None:
    chain = Chain(tmp_path / "a", base_genesis())
    grow(chain, 4)
    chain.close()
    # A fork added at a height the chain has passed: those blocks ran without it.
    with pytest.raises(StorageError, match="fork 'registryV2' at block 3 is new"):
        Chain(tmp_path / "a", forked_genesis())
    # Scheduling it above the head is how a running network adopts a fork.
    chain = Chain(tmp_path / "a", forked_genesis(upgrade_fork(block=6)))
    grow(chain, 3)
    chain.close()
    changed = upgrade_fork(block=6, code=bytes.fromhex("602b60015500"))
    with pytest.raises(StorageError, match="at block 6 has changed"):
        Chain(tmp_path / "a", forked_genesis(changed))
    with pytest.raises(StorageError, match="at block 6 was removed"):
        Chain(tmp_path / "a", base_genesis())
    # A fork above the head may still be added or cancelled.
    later = Fork(block=99, name="later", gas_limit=40_000_000)
    Chain(tmp_path / "a", forked_genesis(upgrade_fork(block=6), later)).close()
    Chain(tmp_path / "a", forked_genesis(upgrade_fork(block=6))).close()


# --------------------------------------------------------------------------- schema


def test_schedule_round_trips_through_canonical_json() -> None:
    genesis = forked_genesis()
    doc = genesis_to_json(genesis)
    assert doc["forks"][0]["systemContracts"] == {
        to_checksum_address(CONTRACT): {"code": "0x" + NEW_CODE.hex(), "storage": {"0x6": "0x9"}}
    }
    assert parse_genesis(json.loads(json.dumps(doc))) == genesis
    assert "forks" not in genesis_to_json(base_genesis())  # old files keep their bytes
    # A fork may name the contract as genesis systemContracts does.
    doc["forks"][0]["systemContracts"] = {"registry": {"code": "0x" + NEW_CODE.hex(),
                                                       "storage": {"6": 9}}}
    assert parse_genesis(doc).fork_ids() == genesis.fork_ids()


def test_digest_changes_with_any_rule() -> None:
    digest = upgrade_fork().digest()
    assert upgrade_fork().digest() == digest
    assert upgrade_fork(code=b"\x01").digest() != digest
    assert dataclasses.replace(upgrade_fork(), gas_limit=20_000_001).digest() != digest


def _doc_with(forks: Any) -> dict[str, Any]:
    doc = genesis_to_json(base_genesis())
    doc["forks"] = forks
    return doc


UPGRADE = {"registry": {"code": "0x" + NEW_CODE.hex()}}


@pytest.mark.parametrize(
    ("forks", "path", "reason"),
    [
        ({"block": 3}, "forks", "expected an array"),
        ([{"name": "a", "gasLimit": 6000}], "forks.0.block", "missing required field"),
        ([{"block": 0, "name": "a", "gasLimit": 6000}], "forks.0.block", "block 0 is the genesis"),
        ([{"block": 3, "name": "a"}], "forks.0", "must change something"),
        ([{"block": 3, "name": "9a", "gasLimit": 6000}], "forks.0.name", "must be a letter"),
        ([{"block": 3, "name": "a", "gaslimit": 6000}], "forks.0.gaslimit", "did you mean"),
        ([{"block": 3, "name": "a", "gasLimit": 10}], "forks.0.gasLimit", "out of range"),
        ([{"block": 5, "name": "a", "gasLimit": 6000}, {"block": 5, "name": "b", "gasLimit": 7000}],
         "forks.1.block", "ascending block order"),
        ([{"block": 5, "name": "a", "gasLimit": 6000}, {"block": 4, "name": "b", "gasLimit": 7000}],
         "forks.1.block", "not after the previous fork's block 5"),
        ([{"block": 4, "name": "a", "gasLimit": 6000}, {"block": 5, "name": "a", "gasLimit": 7000}],
         "forks.1.name", "duplicate fork name"),
        ([{"block": 3, "name": "a", "qbft": {"epochLength": 10}}], "forks.0.qbft.epochLength",
         "cannot change"),
        ([{"block": 3, "name": "a", "qbft": {"blockPeriodSeconds": 20}}],
         "forks.0.qbft.emptyBlockPeriodSeconds", "between blockPeriodSeconds (20)"),
        ([{"block": 3, "name": "a", "qbft": {"requestTimeoutSeconds": 0}}],
         "forks.0.qbft.requestTimeoutSeconds", "out of range"),
        ([{"block": 3, "name": "a", "systemContracts": {"nope": {"code": "0x00"}}}],
         "forks.0.systemContracts.nope", "known: registry"),
        ([{"block": 3, "name": "a", "systemContracts": {"0x" + "00" * 19 + "05": {
            "code": "0x00"}}}], "forks.0.systemContracts.0x" + "00" * 19 + "05",
         "reserved for precompiles"),
        ([{"block": 3, "name": "a", "systemContracts": {"registry": {"code": "0x"}}}],
         "forks.0.systemContracts.registry.code", "must not be empty"),
        ([{"block": 3, "name": "a", "systemContracts": {"registry": {"storage": {}}}}],
         "forks.0.systemContracts.registry.code", "missing required field"),
        ([{"block": 3, "name": "a", "systemContracts": {
            "registry": UPGRADE["registry"], to_checksum_address(CONTRACT): {"code": "0x00"}}}],
         f"forks.0.systemContracts.{to_checksum_address(CONTRACT)}", "same account"),
    ],
)
def test_bad_schedules_are_rejected_with_their_path(forks: Any, path: str, reason: str) -> None:
    with pytest.raises(GenesisError) as info:
        parse_genesis(_doc_with(forks))
    assert info.value.path == path
    assert reason in info.value.reason


# --------------------------------------------------------------------------- peers


def _status(head: int, forks: tuple[tuple[int, bytes], ...]) -> ChainStatus:
    return ChainStatus(1337, b"\x01" * 32, head, b"\x02" * 32, forks)


A = (10, b"\xaa" * 32)
B = (10, b"\xbb" * 32)


def test_status_carries_the_schedule_on_the_wire() -> None:
    status = _status(4, (A, (20, b"\xcc" * 32)))
    assert decode_request(encode_request(StatusRequest(status))) == StatusRequest(status)


@pytest.mark.parametrize(
    ("ours", "theirs", "conflict", "pending"),
    [
        (_status(5, (A,)), _status(9, (A,)), None, 0),
        (_status(5, (A,)), _status(9, ()), None, 1),  # rollout in progress: warn only
        (_status(5, ()), _status(9, (A,)), None, 1),
        (_status(5, (A,)), _status(9, (B,)), None, 1),
        (_status(10, (A,)), _status(3, ()), "the peer's genesis lacks", 0),
        (_status(3, ()), _status(12, (A,)), "this node's genesis lacks", 0),
        (_status(11, (A,)), _status(11, (B,)), "different rules", 0),
    ],
)
def test_peers_with_a_schedule_the_chain_has_passed_are_refused(
    ours: ChainStatus, theirs: ChainStatus, conflict: str | None, pending: int
) -> None:
    result = compare_forks(ours, theirs)
    if conflict is None:
        assert result.conflict is None
    else:
        assert result.conflict is not None and conflict in result.conflict
    assert len(result.pending) == pending


def test_status_from_a_peer_without_schedules_decodes_as_no_forks() -> None:
    import rlp

    legacy = rlp.encode([1, 1337, b"\x01" * 32, 4, b"\x02" * 32])  # kind, then four fields
    assert decode_request(legacy) == StatusRequest(_status(4, ()))


# --------------------------------------------------------------------------- CLI


def test_genesis_new_with_forks_and_check_prints_them(tmp_path: Path) -> None:
    from click.testing import CliRunner

    from node.cli import main

    forks = tmp_path / "forks.json"
    forks.write_text(json.dumps([{"block": 50, "name": "medLedgerV2", "qbft": {
        "requestTimeoutSeconds": 8}, "systemContracts": {"medLedger": {"code": "0x602a"}}}]))
    out = tmp_path / "out"
    passphrase = tmp_path / "pass"
    passphrase.write_text("x" * 12)
    runner = CliRunner()
    result = runner.invoke(main, ["genesis", "new", "--validators", "1", "--out", str(out),
                                  "--forks", str(forks), "--scrypt-n", "16",
                                  "--passphrase-file", str(passphrase)])
    assert result.exit_code == 0, result.output
    checked = runner.invoke(main, ["genesis", "check", str(out / "genesis.json")])
    assert checked.exit_code == 0, checked.output
    assert "block 50: medLedgerV2  digest 0x" in checked.output
    assert "qbft requestTimeoutSeconds -> 8s" in checked.output
    forks.write_text(json.dumps([{"block": 50, "name": "x", "systemContracts": {
        "medLedgr": {"code": "0x60"}}}]))
    bad = runner.invoke(main, ["genesis", "new", "--validators", "1", "--out",
                               str(tmp_path / "o2"), "--forks", str(forks), "--scrypt-n", "16",
                               "--passphrase-file", str(passphrase)])
    assert bad.exit_code != 0
    assert "forks.0.systemContracts.medLedgr" in bad.output
    assert not (tmp_path / "o2" / "genesis.json").exists()


class _ForkedFakeChain(FakeChain):
    """The harness's chain, announcing a fork schedule."""

    def __init__(self, head: int, forks: tuple[tuple[int, bytes], ...]) -> None:
        super().__init__({n: b"block-%d" % n for n in range(head + 1)})
        self.forks = forks

    async def status(self) -> ChainStatus:
        status = await super().status()
        return dataclasses.replace(status, forks=self.forks)


@trio_test
async def test_p2p_handshake_refuses_a_peer_missing_a_passed_fork() -> None:
    ka, kb, kc = new_key(), new_key(), new_key()
    allowlist = allow(ka, kb, kc)
    async with trio.open_nursery() as nursery:
        runner = Runner(nursery)
        a = await runner.start(make_node(ka, allowlist, _ForkedFakeChain(5, ((3, A[1]), A))))
        # C is rolling out the same fork ahead of the chain: compatible, stays connected.
        c = await runner.start(make_node(kc, allowlist, _ForkedFakeChain(5, ((3, A[1]),)),
                                         static_peers=(a.listen_addrs[0],)))
        # B never heard of the fork at block 3 that the chain (head 5) has passed.
        b = await runner.start(make_node(kb, allowlist, _ForkedFakeChain(5, ()),
                                         static_peers=(a.listen_addrs[0],)))
        await wait_until(lambda: a.scores.ban_remaining(b.peer_id) > 0)
        await wait_until(lambda: not connected(a, b) and not connected(b, a))
        await wait_until(lambda: connected(a, c) and connected(c, a))
        status = await c.request_status(a.peer_id)  # C lacks A's fork at 10: only a warning
        assert status.forks == ((3, A[1]), A)
        assert connected(a, c)
        nursery.cancel_scope.cancel()
