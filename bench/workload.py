"""The benchmark's chain settings, deterministic accounts and pre-signed transactions.

Every system under test (the in-process ceiling, medledger, Hardhat, Ganache) starts from the
same chain id, gas limit and funded accounts, so the load generator can send them the very same
signed bytes. Keys are derived from a public seed: they protect nothing and exist only here.
"""

from __future__ import annotations

import math
import os
from collections.abc import Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field

from eth_abi import encode as abi_encode
from eth_account import Account
from eth_keys import keys
from eth_utils import keccak, to_checksum_address

from contracts.artifacts import load_artifact
from genesis.schema import AllocAccount, Genesis, QbftParams

CHAIN_ID = 1337
GAS_LIMIT = 30_000_000
BASE_FEE = 10**9
# The fee cap leaves room for the base fee to climb through a long run of full blocks.
MAX_FEE = 1_000 * 10**9
TIP = 10**9
BALANCE = 10**24
TRANSFER_GAS = 21_000
CALL_GAS = 60_000
DEPLOY_GAS = 1_000_000
SINK = b"\x42" * 20
PARALLEL_SIGNING_MIN = 2_000
ACCOUNT_SEED = b"medledger bench account"
VALIDATOR_SEED = b"medledger bench validator"
SET_SELECTOR = keccak(text="set(uint256)")[:4]
GET_SELECTOR = keccak(text="get()")[:4]


def derive_keys(seed: bytes, count: int, start: int = 0) -> list[bytes]:
    """`count` well-known private keys: keccak(seed || index)."""
    return [keccak(seed + i.to_bytes(4, "big")) for i in range(start, start + count)]


def address_of(private_key: bytes) -> bytes:
    return keys.PrivateKey(private_key).public_key.to_canonical_address()


@dataclass(frozen=True)
class ChainSpec:
    """What every system under test agrees on: chain id, limits, validators and funded keys."""

    accounts: tuple[bytes, ...]
    validator_keys: tuple[bytes, ...] = field(
        default_factory=lambda: tuple(derive_keys(VALIDATOR_SEED, 1))
    )
    chain_id: int = CHAIN_ID
    gas_limit: int = GAS_LIMIT
    base_fee: int = BASE_FEE
    balance: int = BALANCE
    block_period: int = 1

    @classmethod
    def with_accounts(cls, count: int, *, validators: int = 1, block_period: int = 1) -> ChainSpec:
        if count < 1 or validators < 1:
            raise ValueError("a benchmark chain needs at least one account and one validator")
        return cls(
            accounts=tuple(derive_keys(ACCOUNT_SEED, count)),
            validator_keys=tuple(derive_keys(VALIDATOR_SEED, validators)),
            block_period=block_period,
        )

    @property
    def validators(self) -> tuple[bytes, ...]:
        return tuple(address_of(k) for k in self.validator_keys)

    def genesis(self, *, empty_block_period: int = 10) -> Genesis:
        """The medledger genesis of this spec (validators funded too, like new_consortium)."""
        alloc = {address_of(k): AllocAccount(balance=self.balance) for k in self.accounts}
        for validator in self.validators:
            alloc.setdefault(validator, AllocAccount(balance=self.balance))
        return Genesis(
            chain_id=self.chain_id,
            validators=self.validators,
            qbft=QbftParams(
                block_period_seconds=self.block_period,
                empty_block_period_seconds=max(empty_block_period, self.block_period),
            ),
            alloc=alloc,
            system_contracts={},
            gas_limit=self.gas_limit,
            base_fee_per_gas=self.base_fee,
        )


def sign(
    key: bytes, nonce: int, *, to: bytes | None, value: int = 0, data: bytes = b"",
    gas: int = TRANSFER_GAS, chain_id: int = CHAIN_ID,
) -> bytes:
    """One EIP-1559 transaction, signed: the raw bytes eth_sendRawTransaction takes."""
    tx: dict[str, object] = {
        "type": 2, "chainId": chain_id, "nonce": nonce, "value": value, "gas": gas,
        "maxFeePerGas": MAX_FEE, "maxPriorityFeePerGas": TIP, "data": data,
    }
    if to is not None:
        tx["to"] = to_checksum_address(to)
    return bytes(Account.sign_transaction(tx, key).raw_transaction)


def round_robin(keys_: Sequence[bytes], count: int, first_nonces: Sequence[int] | None = None,
                ) -> list[tuple[bytes, int]]:
    """(key, nonce) for `count` transactions, cycling over the keys so senders interleave."""
    if not keys_:
        raise ValueError("no sender keys")
    base = list(first_nonces) if first_nonces is not None else [0] * len(keys_)
    return [(keys_[i % len(keys_)], base[i % len(keys_)] + i // len(keys_)) for i in range(count)]


def _sign_transfer_chunk(pairs: list[tuple[bytes, int]], chain_id: int) -> list[bytes]:
    return [sign(k, n, to=SINK, value=1, chain_id=chain_id) for k, n in pairs]


def transfers(keys_: Sequence[bytes], count: int, *, chain_id: int = CHAIN_ID) -> list[bytes]:
    """`count` 1-wei transfers to a sink, interleaved over `keys_`, each key from nonce 0.

    Large batches are signed on every core (about 0.4 ms of CPU per transaction).
    """
    pairs = round_robin(keys_, count)
    workers = os.cpu_count() or 1
    if count < PARALLEL_SIGNING_MIN or workers < 2:
        return _sign_transfer_chunk(pairs, chain_id)
    size = math.ceil(count / (workers * 4))
    chunks = [pairs[i:i + size] for i in range(0, count, size)]
    with ProcessPoolExecutor(workers) as pool:
        signed = pool.map(_sign_transfer_chunk, chunks, [chain_id] * len(chunks))
        return [raw for chunk in signed for raw in chunk]


def accounts_needed(count: int, per_account: int) -> int:
    return max(1, math.ceil(count / per_account))


# -- EventProbe: one storage write and one event per call --------------------------------------


def probe_deploy_code(initial: int = 1) -> bytes:
    return load_artifact("EventProbe").bytecode + abi_encode(["uint256"], [initial])


def probe_set_data(value: int) -> bytes:
    return SET_SELECTOR + abi_encode(["uint256"], [value])


def contract_address(sender: bytes, nonce: int) -> bytes:
    """Address of a contract created by `sender` at `nonce` (CREATE)."""
    import rlp

    return keccak(rlp.encode([sender, nonce]))[12:]


def probe_calls(
    keys_: Sequence[bytes], count: int, probe: bytes, *, first_nonces: Sequence[int] | None = None,
    chain_id: int = CHAIN_ID,
) -> list[bytes]:
    """`count` EventProbe.set(i) calls (i from 2, so every call changes the slot)."""
    return [
        sign(k, n, to=probe, data=probe_set_data(i + 2), gas=CALL_GAS, chain_id=chain_id)
        for i, (k, n) in enumerate(round_robin(keys_, count, first_nonces))
    ]
