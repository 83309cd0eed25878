"""The node's chain: py-evm with Prague rules on LevelDB, QBFT headers, one atomic batch per block.

Every method that changes the chain stages its writes in `StagedDB` and commits
them in one LevelDB batch at the end, or rolls them back on any error. The
class is not thread-safe: the node calls it from a single worker thread.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, cast

import rlp
from eth._utils.rlp import validate_imported_block_unchanged
from eth.abc import (
    BlockAPI,
    BlockHeaderAPI,
    ConsensusAPI,
    ConsensusContextAPI,
    ReceiptAPI,
    SignedTransactionAPI,
    StateAPI,
    VirtualMachineAPI,
)
from eth.chains.base import Chain as PyEvmChain
from eth.consensus.context import ConsensusContext
from eth.db.atomic import AtomicDB
from eth.exceptions import BlockNotFound, HeaderNotFound, TransactionNotFound
from eth.vm.forks.london.headers import calculate_expected_base_fee_per_gas
from eth.vm.forks.prague import PragueVM
from eth.vm.forks.prague.blocks import PragueBlockHeader
from eth_typing import Address, Hash32
from eth_utils import ValidationError, keccak

from consensus.extradata import MAX_EXTRA_DATA_BYTES, ExtraDataError, QbftExtraData, Vote
from consensus.seals import FinalityError, seal_hash, verify_commit_seals
from genesis.schema import Fork, Genesis
from node.db import LevelDBStore, StagedDB, StorageError
from node.validators import ValidatorTracker

# The mixHash Istanbul-family BFT chains put in every header ("Istanbul digest").
QBFT_MIX_HASH = bytes.fromhex("63746963616c2062797a616e74696e65206661756c7420746f6c6572616e6365")
ZERO_HASH = b"\x00" * 32
ZERO_ADDRESS = b"\x00" * 20
_GENESIS_KEY = b"medledger:genesis"
_GENESIS_RECORD = rlp.sedes.List([rlp.sedes.Binary.fixed_length(32), rlp.sedes.big_endian_int])
# The fork schedule this datadir's blocks were executed with: [[block, digest, name], ...].
_FORKS_KEY = b"medledger:forks"
_FORKS_RECORD = rlp.sedes.CountableList(rlp.sedes.List([
    rlp.sedes.big_endian_int, rlp.sedes.Binary.fixed_length(32), rlp.sedes.binary,
]))


# Reasons build_block gives for transactions it left for a later block (not invalid ones).
BLOCK_GAS_LIMIT_REACHED = "block gas limit reached"
BUILD_TIME_BUDGET_REACHED = "block build time budget reached"


class BlockRejected(ValueError):
    """A block failed validation; nothing it contained was stored."""


class QbftPyEvmConsensus(ConsensusAPI):
    """py-evm's consensus hook for QBFT headers.

    Commit seals can only be checked against the validator set of the parent,
    which py-evm's hook does not get; `Chain.import_block` checks them before
    execution. Here: extraData must parse, and fees go to the header's coinbase
    (the proposer), fixed before any transaction runs.
    """

    def __init__(self, context: ConsensusContextAPI) -> None:
        self.context = context

    def validate_seal(self, header: BlockHeaderAPI) -> None:
        try:
            QbftExtraData.decode(header.extra_data)
        except ExtraDataError as exc:
            raise ValidationError(str(exc)) from exc

    def validate_seal_extension(
        self, header: BlockHeaderAPI, parents: Sequence[BlockHeaderAPI]
    ) -> None:
        return None

    @classmethod
    def get_fee_recipient(cls, header: BlockHeaderAPI) -> Address:
        return header.coinbase


def _qbft_block_hash(header: PragueBlockHeader) -> Hash32:
    """Besu's QBFT block hash: the header with round 0 and no commit seals in extraData.

    Validators finalize a block with whichever quorum of commit seals reached them first,
    and a block decided in round r may be finalized by some as its round r+1 re-proposal.
    The hash must not depend on either, or honest nodes would store one block under
    different hashes and the next block's parent hash would split them.
    """
    if header._hash is None:
        try:
            extra = QbftExtraData.decode(header.extra_data)
        except ExtraDataError:
            header._hash = keccak(rlp.encode(header))
        else:
            stripped = replace(extra, round=0, commit_seals=()).encode()
            header._hash = keccak(rlp.encode(header.copy(extra_data=stripped)))
    return cast(Hash32, header._hash)


# Every Prague header in this process hashes the QBFT way: py-evm decodes stored headers
# into its own PragueBlockHeader class, so the rule is set on that class itself.
PragueBlockHeader.hash = property(_qbft_block_hash)  # type: ignore[assignment]


MedledgerPragueVM = PragueVM.configure(
    __name__="MedledgerPragueVM",
    extra_data_max_bytes=MAX_EXTRA_DATA_BYTES,
    consensus_class=QbftPyEvmConsensus,
)


class MedledgerForkVM(MedledgerPragueVM):  # type: ignore[misc,valid-type]
    """The VM from a genesis fork's block on: `fork_vm` configures one per fork.

    At the fork block itself, before any transaction, the fork's system-contract code and
    storage are written into the state. py-evm runs `block_preprocessing` both when the
    proposer builds the block and when any node imports it, so every node applies the same
    writes at the same point and the state roots agree.
    """

    fork: Fork | None = None

    def block_preprocessing(self, block: BlockAPI) -> None:
        super().block_preprocessing(block)
        fork = self.fork
        if fork is None or block.number != fork.block:
            return
        state = self.state
        for address, upgrade in sorted(fork.system_contracts.items()):
            state.set_code(Address(address), upgrade.code)
            for slot, value in sorted(upgrade.storage.items()):
                state.set_storage(Address(address), slot, value)

    @classmethod
    def validate_gas(cls, header: BlockHeaderAPI, parent_header: BlockHeaderAPI) -> None:
        fork = cls.fork
        if fork is None or fork.gas_limit is None or header.block_number != fork.block:
            super().validate_gas(header, parent_header)
            return
        # The fork block switches to the scheduled gas limit in one step (py-evm's rule
        # would only allow 1/1024 of drift per block).
        if header.gas_limit != fork.gas_limit:
            raise ValidationError(
                f"fork {fork.name!r} sets the gas limit of block #{fork.block} to "
                f"{fork.gas_limit}, the header has {header.gas_limit}"
            )
        expected = calculate_expected_base_fee_per_gas(parent_header)
        if header.base_fee_per_gas != expected:
            raise ValidationError(
                f"Header has invalid base fee per gas (has {header.base_fee_per_gas}, "
                f"expected {expected})"
            )


def fork_vm(fork: Fork) -> type[MedledgerForkVM]:
    """The VM class of blocks from `fork.block` on."""
    return cast(type[MedledgerForkVM], MedledgerForkVM.configure(
        __name__=f"Medledger_{fork.name}_VM", fork=fork
    ))


def vm_configuration(genesis: Genesis) -> tuple[tuple[int, type[VirtualMachineAPI]], ...]:
    """py-evm's (first block, VM class) list: Prague from genesis, then one VM per fork."""
    return ((0, MedledgerPragueVM), *((fork.block, fork_vm(fork)) for fork in genesis.forks))


@dataclass(frozen=True)
class BuiltBlock:
    """A block executed by the proposer, not yet sealed nor stored."""

    block: BlockAPI
    receipts: tuple[ReceiptAPI, ...]
    rejected: tuple[tuple[SignedTransactionAPI, str], ...]


def _genesis_header_params(genesis: Genesis) -> dict[str, Any]:
    # Validators are kept sorted by address, as Besu does, whatever the genesis file's order.
    extra = QbftExtraData(vanity=genesis.vanity, validators=tuple(sorted(genesis.validators)))
    return {
        "difficulty": 0,
        "gas_limit": genesis.gas_limit,
        "timestamp": genesis.timestamp,
        "extra_data": extra.encode(),
        "mix_hash": QBFT_MIX_HASH,
        "nonce": b"\x00" * 8,
        "coinbase": ZERO_ADDRESS,
        "base_fee_per_gas": genesis.base_fee_per_gas,
        "parent_beacon_block_root": ZERO_HASH,
    }


def _genesis_state(genesis: Genesis) -> dict[Address, dict[str, Any]]:
    return {
        Address(address): {
            "balance": account.balance,
            "nonce": account.nonce,
            "code": account.code,
            "storage": dict(account.storage),
        }
        for address, account in genesis.alloc.items()
    }


class Chain:
    """Canonical chain of one node: build, seal, import and read blocks."""

    def __init__(self, datadir: Path, genesis: Genesis) -> None:
        self.genesis = genesis
        self.chain_id = genesis.chain_id
        self.store = LevelDBStore(Path(datadir) / "chaindata")
        self.db = StagedDB(self.store)
        # Seal hash of the block whose execution is staged in `db`, if any.
        self._executed_digest: bytes | None = None
        self._chain_class = PyEvmChain.configure(
            __name__="MedledgerChain",
            vm_configuration=vm_configuration(genesis),
            chain_id=genesis.chain_id,
            consensus_context_class=ConsensusContext,
        )
        try:
            self._chain = self._open_or_initialise()
            self._check_fork_schedule()
        except Exception:
            self.store.close()
            raise
        self.validator_tracker = ValidatorTracker(
            genesis.validators, genesis.qbft.epoch_length, self.header_by_number
        )

    def _open_or_initialise(self) -> PyEvmChain:
        stored = self.store.get(_GENESIS_KEY)
        if stored is None:
            chain = self._chain_class.from_genesis(
                self.db, _genesis_header_params(self.genesis), _genesis_state(self.genesis)
            )
            genesis_hash = chain.get_canonical_block_header_by_number(0).hash
            self.db[_GENESIS_KEY] = rlp.encode([genesis_hash, self.chain_id])
            self.db.commit()
            return chain
        stored_hash, stored_chain_id = rlp.decode(stored, sedes=_GENESIS_RECORD)
        chain = self._chain_class(self.db)
        if chain.get_canonical_block_header_by_number(0).hash != stored_hash:
            raise StorageError(
                f"database {self.store.path} is corrupt: its block 0 is not its recorded genesis"
            )
        expected = self._expected_genesis_hash()
        if expected != stored_hash or stored_chain_id != self.chain_id:
            raise StorageError(
                f"datadir {self.store.path} belongs to another chain: chain id "
                f"{stored_chain_id}, genesis 0x{stored_hash.hex()}; this genesis file gives "
                f"chain id {self.chain_id}, genesis 0x{expected.hex()}"
            )
        return chain

    def _check_fork_schedule(self) -> None:
        """Refuse a genesis whose forks differ from the stored schedule at or below the head.

        Those blocks were executed with the stored schedule: adding, removing or changing a
        fork there would leave this node with a chain the others do not have. Forks above
        the head may change (that is how a fork is scheduled on a running network).
        """
        head = self.head.block_number
        stored_raw = self.store.get(_FORKS_KEY)
        stored = {} if stored_raw is None else {
            block: (digest, name.decode())
            for block, digest, name in rlp.decode(stored_raw, sedes=_FORKS_RECORD)
        }
        wanted = {fork.block: (fork.digest(), fork.name) for fork in self.genesis.forks}
        problems = []
        for block in sorted(set(stored) | set(wanted)):
            if block > head or stored.get(block, (None,))[0] == wanted.get(block, (None,))[0]:
                continue
            if block not in stored:
                problems.append(f"fork {wanted[block][1]!r} at block {block} is new")
            elif block not in wanted:
                problems.append(f"fork {stored[block][1]!r} at block {block} was removed")
            else:
                problems.append(f"fork {wanted[block][1]!r} at block {block} has changed")
        if problems:
            raise StorageError(
                f"genesis fork schedule conflicts with datadir {self.store.path} at head "
                f"#{head}: {'; '.join(problems)}. Blocks up to the head were executed without "
                "that change; a fork must be scheduled above the network's head, and rolled "
                "out to every node before that block"
            )
        record = rlp.encode(
            [[fork.block, fork.digest(), fork.name.encode()] for fork in self.genesis.forks],
            sedes=_FORKS_RECORD,
        )
        if stored_raw != record:
            self.db[_FORKS_KEY] = record
            self.db.commit()

    def _expected_genesis_hash(self) -> bytes:
        scratch = self._chain_class.from_genesis(
            AtomicDB(), _genesis_header_params(self.genesis), _genesis_state(self.genesis)
        )
        return scratch.get_canonical_block_header_by_number(0).hash

    def close(self) -> None:
        self.db.rollback()
        self.store.close()

    # -- reading -------------------------------------------------------------------------

    @property
    def head(self) -> BlockHeaderAPI:
        return self._chain.get_canonical_head()

    @property
    def genesis_hash(self) -> bytes:
        return self._chain.get_canonical_block_header_by_number(0).hash

    def header_by_number(self, number: int) -> BlockHeaderAPI | None:
        try:
            return self._chain.get_canonical_block_header_by_number(number)
        except HeaderNotFound:
            return None

    def header_by_hash(self, block_hash: bytes) -> BlockHeaderAPI | None:
        try:
            return self._chain.get_block_header_by_hash(Hash32(block_hash))
        except HeaderNotFound:
            return None

    def block_by_header(self, header: BlockHeaderAPI) -> BlockAPI:
        return self._chain.get_block_by_header(header)

    def block_by_number(self, number: int) -> BlockAPI | None:
        header = self.header_by_number(number)
        return None if header is None else self.block_by_header(header)

    def block_by_hash(self, block_hash: bytes) -> BlockAPI | None:
        header = self.header_by_hash(block_hash)
        if header is None or self.header_by_number(header.block_number) != header:
            return None
        return self.block_by_header(header)

    def receipts(self, block: BlockAPI) -> tuple[ReceiptAPI, ...]:
        return block.get_receipts(self._chain.chaindb)

    def transaction_location(self, tx_hash: bytes) -> tuple[int, int] | None:
        """(block number, index) of a transaction in the canonical chain."""
        try:
            number, index = self._chain.chaindb.get_transaction_index(Hash32(tx_hash))
        except TransactionNotFound:
            return None
        return number, index

    def vm_at(self, header: BlockHeaderAPI) -> VirtualMachineAPI:
        return self._chain.get_vm(header)

    def state_at(self, header: BlockHeaderAPI) -> StateAPI:
        """Read-only view of the state after `header` (do not persist it)."""
        return self.vm_at(header).state

    def pending_header(self, timestamp: int) -> BlockHeaderAPI:
        """Header template of the next block: base fee and number for estimates and calls."""
        head = self.head
        return self._chain.create_header_from_parent(
            head, timestamp=timestamp, gas_limit=self.next_gas_limit(head)
        )

    def next_gas_limit(self, parent: BlockHeaderAPI) -> int:
        """The gas limit of the block after `parent`: a fork's new limit at its block, else
        the parent's (the consortium's gas limit does not drift)."""
        fork = self.genesis.fork_at(parent.block_number + 1)
        if fork is not None and fork.gas_limit is not None:
            return fork.gas_limit
        return int(parent.gas_limit)

    def validators_at(self, header: BlockHeaderAPI) -> tuple[bytes, ...]:
        return QbftExtraData.decode(header.extra_data).validators

    def validators_after(self, header: BlockHeaderAPI) -> tuple[bytes, ...]:
        """The validator set of the block after `header`: its set with the votes applied."""
        return self.validator_tracker.validators_after(header)

    # -- building and importing ----------------------------------------------------------

    def build_block(
        self,
        transactions: Sequence[SignedTransactionAPI],
        *,
        timestamp: int,
        proposer: bytes,
        round_number: int = 0,
        vote: Vote | None = None,
        deadline: float | None = None,
    ) -> BuiltBlock:
        """Execute `transactions` on top of the head as the proposer, in one pass.

        Transactions that the state rejects (nonce, balance, gas) are skipped
        and reported, not fatal. The state writes stay staged until the block
        is sealed and committed, or rolled back by `discard_built`.
        """
        parent = self.head
        if timestamp <= parent.timestamp:
            timestamp = parent.timestamp + 1
        extra = QbftExtraData(
            vanity=self.genesis.vanity,
            validators=self.validators_after(parent),
            vote=vote,
            round=round_number,
        )
        header = self._chain.create_header_from_parent(
            parent,
            timestamp=timestamp,
            coinbase=Address(proposer),
            # The consortium's gas limit stays what genesis (or a fork) set; py-evm's default
            # would drift it by 1/1024 per block toward mainnet's target.
            gas_limit=self.next_gas_limit(parent),
            extra_data=extra.encode(),
            mix_hash=QBFT_MIX_HASH,
            parent_beacon_block_root=ZERO_HASH,
        )
        self.discard_built()
        vm = self._chain.get_vm(header)
        try:
            built = self._execute_as_proposer(vm, header, transactions, deadline)
        except Exception:
            self.discard_built()
            raise
        self._executed_digest = seal_hash(built.block.header)
        return built

    @staticmethod
    def _execute_as_proposer(
        vm: VirtualMachineAPI,
        header: BlockHeaderAPI,
        transactions: Sequence[SignedTransactionAPI],
        deadline: float | None = None,
    ) -> BuiltBlock:
        # The same steps as py-evm's VM.import_block, so followers compute the same roots,
        # but a transaction the state rejects is skipped instead of failing the block.
        # Past `deadline` (time.monotonic()) the rest wait for a later block: every validator
        # must execute this block within the round timer, and they run about as fast as we do.
        vm.block_preprocessing(vm.get_block())
        state = vm.state
        current = header
        included: list[SignedTransactionAPI] = []
        receipts: list[ReceiptAPI] = []
        rejected: list[tuple[SignedTransactionAPI, str]] = []
        for tx in transactions:
            if deadline is not None and time.monotonic() > deadline:
                rejected.append((tx, BUILD_TIME_BUDGET_REACHED))
                continue
            if current.gas_used + tx.gas > current.gas_limit:
                rejected.append((tx, BLOCK_GAS_LIMIT_REACHED))
                continue
            try:
                vm.validate_transaction_against_header(current, tx)
                state.validate_transaction(tx)
            except ValidationError as exc:
                rejected.append((tx, str(exc)))
                continue
            receipt, _computation = vm.apply_transaction(current, tx)
            current = vm.add_receipt_to_header(current, receipt)
            current = vm.increment_blob_gas_used(current, tx)
            included.append(tx)
            receipts.append(receipt)
        filled = vm.set_block_transactions_and_withdrawals(
            vm.get_block(), current, included, receipts
        )
        processed = vm.block_postprocessing(filled)
        block = vm.mine_block(processed).block
        return BuiltBlock(block=block, receipts=tuple(receipts), rejected=tuple(rejected))

    def commit_sealed(self, built: BuiltBlock, commit_seals: Sequence[bytes]) -> BlockAPI:
        """Store a block this node built, now that it carries its commit seals."""
        extra = QbftExtraData.decode(built.block.header.extra_data)
        sealed_header = built.block.header.copy(
            extra_data=extra.with_seals(tuple(commit_seals)).encode()
        )
        return self.finalize(built.block.copy(header=sealed_header))

    def discard_built(self) -> None:
        """Forget a built or executed block that did not get sealed (round change, shutdown)."""
        self._executed_digest = None
        self.db.rollback()

    def check_header(self, block: BlockAPI) -> QbftExtraData:
        """Consensus rules a block must meet before it is executed: raise BlockRejected."""
        parent = self.head
        if block.header.parent_hash != parent.hash or block.number != parent.block_number + 1:
            raise BlockRejected(
                f"block #{block.number} does not extend the head #{parent.block_number}"
            )
        try:
            extra = QbftExtraData.decode(block.header.extra_data)
        except ExtraDataError as exc:
            raise BlockRejected(str(exc)) from exc
        expected_validators = self.validators_after(parent)
        if extra.validators != expected_validators:
            raise BlockRejected("block lists a validator set other than the expected one")
        if block.header.coinbase not in expected_validators:
            raise BlockRejected("block proposer is not a validator")
        if block.header.mix_hash != QBFT_MIX_HASH:
            raise BlockRejected("block mixHash is not the QBFT digest")
        if block.header.timestamp <= parent.timestamp:
            raise BlockRejected("block timestamp is not after its parent's")
        # py-evm would let a proposer drift the gas limit by 1/1024 a block; the consortium's
        # limit changes only where the fork schedule says.
        expected_gas_limit = self.next_gas_limit(parent)
        if block.header.gas_limit != expected_gas_limit:
            raise BlockRejected(f"block gas limit {block.header.gas_limit} is not the "
                                f"consortium's {expected_gas_limit}")
        return extra

    def execute_proposal(self, block: BlockAPI) -> None:
        """Execute a proposed block on the head and keep its state staged for `finalize`.

        Raises BlockRejected when the block breaks a consensus rule or when execution does
        not reproduce its header (state root, receipts, gas). Any earlier staged
        execution is dropped first: only one candidate block is staged at a time.
        """
        if self._executed_digest is not None and self._executed_digest == seal_hash(block.header):
            return  # already executed and staged (our own proposal, or a re-delivery)
        self.discard_built()
        self.check_header(block)
        try:
            self._chain.validate_block(block)
            parent = self.head
            template = self._chain.create_header_from_parent(parent).copy(
                gas_used=block.header.gas_used
            )
            executed = self._chain.get_vm(template).import_block(block).block
            validate_imported_block_unchanged(executed, block)
        except (ValidationError, ValueError, KeyError) as exc:
            self.discard_built()
            raise BlockRejected(f"block #{block.number} is invalid: {exc}") from exc
        except Exception:
            self.discard_built()
            raise
        self._executed_digest = seal_hash(block.header)

    def finalize(self, block: BlockAPI) -> BlockAPI:
        """Store a final block (>= quorum commit seals) atomically, executing it if needed."""
        try:
            extra = self.check_header(block)
            verify_commit_seals(block.header, extra.validators)
            if self._executed_digest != seal_hash(block.header):
                self.execute_proposal(block)
            self._chain.persist_block(block)
            self.db.commit()
        except FinalityError as exc:
            self.discard_built()
            raise BlockRejected(str(exc)) from exc
        except Exception:
            self.discard_built()
            raise
        self._executed_digest = None
        return block

    def import_block(self, block: BlockAPI) -> BlockAPI:
        """Validate a final block from a peer, execute it, and store it atomically."""
        return self.finalize(block)

    def head_block(self) -> BlockAPI:
        return self.block_by_header(self.head)

    def block_or_raise(self, number: int) -> BlockAPI:
        block = self.block_by_number(number)
        if block is None:
            raise BlockNotFound(f"no block #{number}")
        return block
