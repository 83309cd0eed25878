"""A real node chain (py-evm on LevelDB) with the system contracts predeployed, for contract tests.

Transactions are signed with eth_account, built into blocks by `Chain.build_block`, sealed
with the validator key and committed, exactly as the block producer does. Views run on the head
state with py-evm the way geth's eth_call at `latest` does (the head's number and timestamp,
or a chosen timestamp to test expiries); `node_call` goes through the node's own eth_call
implementation, which runs in a pending block at wall-clock time. bench/gas.py reuses this.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from eth.abc import ComputationAPI
from eth.exceptions import Revert
from eth.vm.spoof import SpoofTransaction
from eth_account import Account
from eth_keys import keys
from eth_utils import keccak, to_checksum_address

from consensus.seals import seal_hash, sign_seal
from contracts.bindings import (
    CallFn,
    ContractError,
    LogEntry,
    Purpose,
    Role,
    decode_revert,
    system_contracts,
)
from genesis.schema import AllocAccount, Genesis, QbftParams
from genesis.system import Member, default_setup, system_alloc
from node.chain import Chain
from node.rpc.errors import RpcError
from node.rpc.execution import call as rpc_call
from node.rpc.execution import estimate_gas
from node.rpc.params import CallRequest
from tests.helpers import decode

CHAIN_ID = 1337
GENESIS_TIME = 1_750_000_000
VALIDATOR_KEY = keccak(b"contract-chain validator")
MAX_FEE = 10 * 10**9
CALL_GAS = 10_000_000
TIP = 10**8


def key_of(label: str) -> bytes:
    """A deterministic private key per test actor."""
    return keccak(b"contract-chain actor " + label.encode())


def address_of(private_key: bytes) -> bytes:
    return keys.PrivateKey(private_key).public_key.to_canonical_address()


VALIDATOR = address_of(VALIDATOR_KEY)


@dataclass(frozen=True)
class TxResult:
    """Outcome of one mined transaction: status, the gas it cost, its logs."""

    success: bool
    gas_used: int
    logs: tuple[LogEntry, ...]
    block_number: int
    timestamp: int


class CallReverted(Exception):
    """An eth_call reverted; `error` is the decoded custom error (or None)."""

    def __init__(self, data: bytes, error: ContractError | None) -> None:
        self.data = data
        self.error = error
        super().__init__(str(error) if error else f"reverted with 0x{data.hex()}")


class ContractChain:
    """One node's chain plus helpers to send transactions and make calls."""

    def __init__(
        self,
        datadir: Path,
        members: Sequence[tuple[str, bytes]],
        *,
        funded: Sequence[bytes] = (),
        extra_alloc: dict[bytes, AllocAccount] | None = None,
    ) -> None:
        setup = default_setup(
            (VALIDATOR,),
            members=[Member(name, admin) for name, admin in members],
            accounts=(VALIDATOR,),
        )
        alloc, names = system_alloc(setup)
        for address in {*funded, *(admin for _, admin in members)}:
            alloc[address] = AllocAccount(balance=10**24)
        alloc.update(extra_alloc or {})
        self.genesis = Genesis(
            chain_id=CHAIN_ID,
            validators=(VALIDATOR,),
            qbft=QbftParams(),
            alloc=alloc,
            system_contracts=names,
            timestamp=GENESIS_TIME,
        )
        self.chain = Chain(datadir, self.genesis)
        self._nonces: dict[bytes, int] = {}

    def close(self) -> None:
        self.chain.close()

    @property
    def now(self) -> int:
        """Timestamp of the head block (what a call at `latest` sees as block.timestamp)."""
        return int(self.chain.head.timestamp)

    def _sign(self, private_key: bytes, to: bytes | None, data: bytes, gas: int) -> bytes:
        sender = address_of(private_key)
        nonce = self._nonces.get(sender, 0)
        tx: dict[str, Any] = {
            "type": 2,
            "chainId": CHAIN_ID,
            "nonce": nonce,
            "value": 0,
            "gas": gas,
            "maxFeePerGas": MAX_FEE,
            "maxPriorityFeePerGas": TIP,
            "data": data,
        }
        if to is not None:
            tx["to"] = to_checksum_address(to)
        self._nonces[sender] = nonce + 1
        return bytes(Account.sign_transaction(tx, private_key).raw_transaction)

    def send_block(
        self,
        txs: Sequence[tuple[bytes, bytes | None, bytes]],
        *,
        timestamp: int | None = None,
        gas: int = 3_000_000,
    ) -> list[TxResult]:
        """Mine one block with (key, to, data) transactions; returns one result per tx."""
        raw = [self._sign(k, to, data, gas) for k, to, data in txs]
        ts = timestamp if timestamp is not None else self.now + 1
        built = self.chain.build_block([decode(r) for r in raw], timestamp=ts, proposer=VALIDATOR)
        if built.rejected:
            self.chain.discard_built()
            raise AssertionError(f"transactions rejected: {[r for _, r in built.rejected]}")
        seal = sign_seal(seal_hash(built.block.header), VALIDATOR_KEY)
        block = self.chain.commit_sealed(built, [seal])
        results = []
        previous = 0
        for receipt in self.chain.receipts(block):
            logs = tuple(
                LogEntry(
                    address=bytes(log.address),
                    topics=tuple(t.to_bytes(32, "big") for t in log.topics),
                    data=bytes(log.data),
                )
                for log in receipt.logs
            )
            results.append(
                TxResult(
                    success=receipt.state_root == b"\x01",
                    gas_used=receipt.gas_used - previous,
                    logs=logs,
                    block_number=block.number,
                    timestamp=block.header.timestamp,
                )
            )
            previous = receipt.gas_used
        return results

    def send(
        self, key: bytes, to: bytes | None, data: bytes, *, timestamp: int | None = None
    ) -> TxResult:
        return self.send_block([(key, to, data)], timestamp=timestamp)[0]

    def _execute(
        self, to: bytes, data: bytes, sender: bytes | None, timestamp: int | None
    ) -> tuple[ComputationAPI, int]:
        return run_call(self.chain, to, data, sender=sender, timestamp=timestamp)

    def call(
        self, to: bytes, data: bytes, *, sender: bytes | None = None, timestamp: int | None = None
    ) -> bytes:
        """eth_call on the head state; raises CallReverted with the decoded custom error."""
        computation, _ = self._execute(to, data, sender, timestamp)
        return _output(computation)

    def call_gas(self, to: bytes, data: bytes, *, sender: bytes | None = None) -> tuple[int, int]:
        """(execution gas, execution + intrinsic gas) of a call. Execution is what the contract
        spends; the 21000 + calldata intrinsic cost is what any transaction pays on top, and the
        sum is what eth_estimateGas reports."""
        computation, intrinsic = self._execute(to, data, sender, None)
        if computation.is_error:
            raise AssertionError(f"call failed: {computation.error!r}")
        execution = computation.get_gas_used()
        return execution, execution + intrinsic

    def node_call(self, to: bytes, data: bytes, *, sender: bytes | None = None) -> bytes:
        """eth_call through the node's JSON-RPC implementation (node.rpc.execution.call).

        It runs in a pending block on top of the head, whose timestamp py-evm takes from the
        wall clock; use it only where time does not matter."""
        try:
            return rpc_call(self.chain, self.chain.head, _request(to, data, sender))
        except RpcError as exc:
            if exc.data is None:
                raise
            revert = bytes.fromhex(str(exc.data)[2:])
            raise CallReverted(revert, decode_revert(revert)) from None

    def node_estimate_gas(self, to: bytes, data: bytes, *, sender: bytes | None = None) -> int:
        """eth_estimateGas through the node's implementation (intrinsic gas included)."""
        return estimate_gas(self.chain, self.chain.head, _request(to, data, sender))


def run_call(
    chain: Chain,
    to: bytes,
    data: bytes,
    *,
    sender: bytes | None = None,
    timestamp: int | None = None,
) -> tuple[ComputationAPI, int]:
    """Run a call on the head state as geth's eth_call at `latest` does (block number and
    timestamp of the head), or at `timestamp`; returns the computation and the intrinsic gas a
    transaction with this calldata would pay on top of it."""
    head = chain.head
    vm = chain.vm_at(head)
    context = head.copy(
        timestamp=head.timestamp if timestamp is None else timestamp, base_fee_per_gas=0
    )
    state = vm.build_state(vm.chaindb.db, context, vm.chain_context, vm.previous_hashes)
    origin = sender or b"\x00" * 20
    unsigned = vm.create_unsigned_transaction(
        nonce=state.get_nonce(origin), gas_price=0, gas=CALL_GAS, to=to, value=0, data=data
    )
    tx = SpoofTransaction(unsigned, from_=origin)
    snapshot = state.snapshot()
    try:
        computation = state.costless_execute_transaction(tx)
    finally:
        state.revert(snapshot)
    return computation, int(tx.intrinsic_gas)


def call_on(chain: Chain, timestamp: int | None = None) -> CallFn:
    """A bindings CallFn on any Chain (head state); raises CallReverted on a revert."""

    def call(to: bytes, data: bytes) -> bytes:
        return _output(run_call(chain, to, data, timestamp=timestamp)[0])

    return call


def _output(computation: ComputationAPI) -> bytes:
    if computation.is_error:
        if isinstance(computation.error, Revert):
            raise CallReverted(computation.output, decode_revert(computation.output))
        raise AssertionError(f"call failed: {computation.error!r}")
    return bytes(computation.output)


def _request(to: bytes, data: bytes, sender: bytes | None) -> CallRequest:
    return CallRequest(
        from_=sender,
        to=to,
        gas=None,
        gas_price=None,
        max_fee_per_gas=None,
        max_priority_fee_per_gas=None,
        value=0,
        data=data,
        nonce=None,
        access_list=(),
        chain_id=None,
        tx_type=None,
    )


# --------------------------------------------------------------------------- a test consortium

HOSPITALS = ("Hospital A", "Hospital B", "Hospital C")
STAFF: dict[str, tuple[int, Role]] = {
    "doc-a": (1, Role.DOCTOR),
    "nurse-a": (1, Role.NURSE),
    "researcher-a": (1, Role.RESEARCHER),
    "auditor-a": (1, Role.AUDITOR),
    "doc-b": (2, Role.DOCTOR),
    "nurse-b": (2, Role.NURSE),
    "researcher-b": (2, Role.RESEARCHER),
    "auditor-b": (2, Role.AUDITOR),
    "doc-c": (3, Role.DOCTOR),
}
PATIENTS: dict[str, int] = {"pat-1": 1, "pat-2": 1, "pat-3": 2}
ADMINS = {1: "admin-a", 2: "admin-b", 3: "admin-c"}
OTHERS = ("outsider", "guardian-admin")
CID = bytes.fromhex("01551220") + keccak(b"ciphertext")  # CIDv1, raw, sha2-256


def person_id(name: str) -> bytes:
    """A pseudonymous person id (in production: a keyed hash of the hospital's MPI id)."""
    return keccak(b"person " + name.encode())


class Consortium:
    """Three member hospitals with staff and patients registered, on a fresh chain.

    Actors are named ("doc-a" is a doctor of hospital 1, "pat-3" a patient of hospital 2, ...);
    `send`/`expect_revert` sign as an actor, `view` calls MedLedger.
    """

    def __init__(
        self,
        datadir: Path,
        *,
        register: bool = True,
        extra_alloc: dict[bytes, AllocAccount] | None = None,
    ) -> None:
        names = [*ADMINS.values(), *STAFF, *PATIENTS, *OTHERS]
        self.keys = {name: key_of(name) for name in names}
        self.chain = ContractChain(
            datadir,
            [(HOSPITALS[i - 1], self.address(ADMINS[i])) for i in sorted(ADMINS)],
            funded=[self.address(n) for n in names],
            extra_alloc=extra_alloc,
        )
        self.medledger, self.governance, self.nodes, self.accounts = system_contracts()
        if register:
            txs = [
                (ADMINS[h], self.medledger.register_staff(self.address(n), person_id(n), role))
                for n, (h, role) in STAFF.items()
            ] + [
                (ADMINS[h], self.medledger.register_patient(self.address(n), person_id(n)))
                for n, h in PATIENTS.items()
            ]
            results = self.chain.send_block(
                [(self.keys[n], self.medledger.address, data) for n, data in txs]
            )
            assert all(r.success for r in results)

    def close(self) -> None:
        self.chain.close()

    def address(self, name: str) -> bytes:
        return address_of(key_of(name))

    @property
    def now(self) -> int:
        return self.chain.now

    def send(self, name: str, data: bytes, *, to: bytes | None = None,
             timestamp: int | None = None) -> TxResult:
        return self.chain.send(
            self.keys[name], to or self.medledger.address, data, timestamp=timestamp
        )

    def ok(self, name: str, data: bytes, *, to: bytes | None = None,
           timestamp: int | None = None) -> TxResult:
        """Send and require success (the revert reason is shown when it fails)."""
        target = to or self.medledger.address
        ts = timestamp if timestamp is not None else self.now + 1
        try:
            self.chain.call(target, data, sender=self.address(name), timestamp=ts)
        except CallReverted as exc:
            raise AssertionError(f"{name}: {exc}") from None
        result = self.send(name, data, to=target, timestamp=ts)
        assert result.success
        return result

    def expect_revert(self, name: str, data: bytes, *, to: bytes | None = None,
                      timestamp: int | None = None) -> ContractError:
        """The transaction fails on chain; returns the custom error it reverts with."""
        target = to or self.medledger.address
        ts = timestamp if timestamp is not None else self.now + 1
        try:
            self.chain.call(target, data, sender=self.address(name), timestamp=ts)
        except CallReverted as exc:
            error = exc.error
        else:
            raise AssertionError(f"{name}: expected a revert")
        result = self.send(name, data, to=target, timestamp=ts)
        assert not result.success and result.logs == ()
        assert error is not None
        return error

    def view(self, fn: str, *args: Any, timestamp: int | None = None) -> Any:
        data = self.medledger.encode(fn, *args)
        return self.medledger.decode(
            fn, self.chain.call(self.medledger.address, data, timestamp=timestamp)
        )

    def call_fn(self, timestamp: int | None = None) -> CallFn:
        """A bindings CallFn on this chain (optionally at a given block timestamp)."""
        return lambda to, data: self.chain.call(to, data, timestamp=timestamp)

    def can_access(self, grantee: str | bytes, record_id: bytes, purpose: Purpose,
                   *, timestamp: int | None = None) -> bool:
        who = self.address(grantee) if isinstance(grantee, str) else grantee
        return bool(self.view("canAccess", who, record_id, int(purpose), timestamp=timestamp))

    def create_record(self, author: str, patient: str, resource_type: str = "Observation",
                      label: str | None = None) -> bytes:
        record_id = keccak(f"record {label or (author, patient, self.now)}".encode())
        self.ok(author, self.medledger.create_record(
            record_id, self.address(patient), resource_type, CID, keccak(b"plaintext")
        ))
        return record_id
