"""Shared test helpers: keys, genesis files, signed transactions."""

from __future__ import annotations

from pathlib import Path

from eth.abc import SignedTransactionAPI
from eth.vm.forks.prague.transactions import PragueTransactionBuilder
from eth_account import Account
from eth_keys import keys
from eth_utils import to_checksum_address

from genesis.schema import AllocAccount, Genesis, QbftParams, dump_genesis
from node.keystore import write_keystore

CHAIN_ID = 1337
VALIDATOR_KEY = bytes.fromhex("8f2a55949038a9610f50fb23b5883af3b4ecb3c3bb792cbcefbd1542c692be63")
USER_KEYS = [bytes([i + 1]) * 32 for i in range(4)]
PASSPHRASE = "test passphrase"


def address_of(private_key: bytes) -> bytes:
    return keys.PrivateKey(private_key).public_key.to_canonical_address()


VALIDATOR = address_of(VALIDATOR_KEY)
USERS = [address_of(k) for k in USER_KEYS]


def make_genesis(
    *, validators: tuple[bytes, ...] = (VALIDATOR,), block_period: int = 1,
    empty_block_period: int = 10, chain_id: int = CHAIN_ID,
) -> Genesis:
    return Genesis(
        chain_id=chain_id,
        validators=validators,
        qbft=QbftParams(
            block_period_seconds=block_period, empty_block_period_seconds=empty_block_period
        ),
        alloc={user: AllocAccount(balance=10**24) for user in USERS},
        system_contracts={},
    )


def write_node_files(directory: Path, genesis: Genesis | None = None) -> tuple[Path, Path, Path]:
    """genesis.json, a validator keystore (cheap scrypt) and its passphrase file."""
    directory.mkdir(parents=True, exist_ok=True)
    genesis_path = directory / "genesis.json"
    genesis_path.write_text(dump_genesis(genesis or make_genesis()))
    key_path = directory / "validator.json"
    if not key_path.exists():
        write_keystore(key_path, VALIDATOR_KEY, PASSPHRASE, kdf_iterations=2**4)
    passphrase_path = directory / "passphrase.txt"
    passphrase_path.write_text(PASSPHRASE + "\n")
    return genesis_path, key_path, passphrase_path


def transfer(
    key: bytes, nonce: int, *, to: bytes = b"\x42" * 20, value: int = 1,
    chain_id: int = CHAIN_ID, max_fee: int = 2 * 10**9, tip: int = 10**8, gas: int = 21_000,
) -> bytes:
    signed = Account.sign_transaction(
        {
            "type": 2, "chainId": chain_id, "nonce": nonce, "to": to_checksum_address(to),
            "value": value, "gas": gas, "maxFeePerGas": max_fee, "maxPriorityFeePerGas": tip,
        },
        key,
    )
    return bytes(signed.raw_transaction)


def decode(raw: bytes) -> SignedTransactionAPI:
    return PragueTransactionBuilder.decode(raw)
