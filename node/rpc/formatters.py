"""Turn py-evm objects into JSON-RPC results shaped exactly like geth's.

web3.py and ethers.js parse geth's output, so we follow it field by field: quantities are
hex without leading zeros, data is 0x-prefixed hex, addresses are lowercase (geth does not
checksum), absent optional fields are omitted rather than null, and pending transactions
carry null block fields. Key order follows geth's structs to make diffs against geth easy.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import rlp
from eth.abc import BlockAPI, BlockHeaderAPI, LogAPI, ReceiptAPI, SignedTransactionAPI
from eth_utils import keccak

# Typed transaction ids (EIP-2718).
LEGACY_TX_TYPE = 0
ACCESS_LIST_TX_TYPE = 1
DYNAMIC_FEE_TX_TYPE = 2
BLOB_TX_TYPE = 3
SET_CODE_TX_TYPE = 4

_BLOOM_BYTES = 256


def quantity(n: int) -> str:
    """Hex quantity: "0x0", "0x1f" (never leading zeros, never negative)."""
    if n < 0:
        raise ValueError(f"quantity must be non-negative, got {n}")
    return hex(n)


def data(b: bytes) -> str:
    """Unformatted data: 0x-prefixed lowercase hex, "0x" when empty."""
    return "0x" + bytes(b).hex()


def address(b: bytes) -> str:
    """A 20-byte address in lowercase hex, as geth returns it."""
    if len(b) != 20:
        raise ValueError(f"address must be 20 bytes, got {len(b)}")
    return data(b)


def _hash(b: bytes) -> str:
    if len(b) != 32:
        raise ValueError(f"hash must be 32 bytes, got {len(b)}")
    return data(b)


def _word(n: int) -> str:
    """A 32-byte value given as an int (py-evm topics, storage keys)."""
    return data(n.to_bytes(32, "big"))


def bloom(value: int) -> str:
    """A 2048-bit bloom filter as 256 bytes of hex."""
    return data(value.to_bytes(_BLOOM_BYTES, "big"))


def tx_type(tx: SignedTransactionAPI) -> int:
    """EIP-2718 type of a py-evm transaction (legacy ones have type_id None)."""
    type_id = getattr(tx, "type_id", None)
    return LEGACY_TX_TYPE if type_id is None else int(type_id)


def effective_gas_price(tx: SignedTransactionAPI, base_fee: int | None) -> int:
    """Price per gas the sender pays: gasPrice for legacy/2930, min(maxFee, baseFee + tip) else."""
    if tx_type(tx) in (LEGACY_TX_TYPE, ACCESS_LIST_TX_TYPE):
        return int(tx.gas_price)
    if base_fee is None:
        return int(tx.max_fee_per_gas)
    return min(int(tx.max_fee_per_gas), base_fee + int(tx.max_priority_fee_per_gas))


def contract_address_for(sender: bytes, nonce: int) -> bytes:
    """Address of a contract created by CREATE: keccak(rlp([sender, nonce]))[12:]."""
    return keccak(rlp.encode([sender, nonce]))[12:]


# --- blocks --------------------------------------------------------------------------------


def format_header(header: BlockHeaderAPI) -> dict[str, Any]:
    """Header fields as in geth's RPCMarshalHeader; fork-specific ones only when present.

    totalDifficulty is "0x0" like Besu (difficulty is always 0 on a PoA chain after the
    merge rules), which keeps older clients that still read it working.
    """
    result: dict[str, Any] = {
        "number": quantity(header.block_number),
        "hash": _hash(header.hash),
        "parentHash": _hash(header.parent_hash),
        "nonce": data(bytes(header.nonce).rjust(8, b"\x00")),
        "mixHash": _hash(header.mix_hash),
        "sha3Uncles": _hash(header.uncles_hash),
        "logsBloom": bloom(header.bloom),
        "stateRoot": _hash(header.state_root),
        "miner": address(header.coinbase),
        "difficulty": quantity(header.difficulty),
        "totalDifficulty": quantity(0),
        "extraData": data(header.extra_data),
        "gasLimit": quantity(header.gas_limit),
        "gasUsed": quantity(header.gas_used),
        "timestamp": quantity(header.timestamp),
        "transactionsRoot": _hash(header.transaction_root),
        "receiptsRoot": _hash(header.receipt_root),
    }
    optional: Sequence[tuple[str, str, Any]] = (
        ("baseFeePerGas", "base_fee_per_gas", quantity),
        ("withdrawalsRoot", "withdrawals_root", _hash),
        ("blobGasUsed", "blob_gas_used", quantity),
        ("excessBlobGas", "excess_blob_gas", quantity),
        ("parentBeaconBlockRoot", "parent_beacon_block_root", _hash),
        ("requestsHash", "requests_hash", _hash),
    )
    for key, attr, encode in optional:
        # Headers of earlier forks raise AttributeError for fields they do not have.
        value = getattr(header, attr, None)
        if value is not None:
            result[key] = encode(value)
    return result


def _format_withdrawal(withdrawal: Any) -> dict[str, str]:
    return {
        "index": quantity(withdrawal.index),
        "validatorIndex": quantity(withdrawal.validator_index),
        "address": address(withdrawal.address),
        "amount": quantity(withdrawal.amount),
    }


def format_block(block: BlockAPI, *, full_transactions: bool) -> dict[str, Any]:
    """A block as eth_getBlockBy*: header fields, size, transactions, uncles, withdrawals."""
    header = block.header
    result = format_header(header)
    result["size"] = quantity(len(rlp.encode(block)))
    if full_transactions:
        result["transactions"] = [
            format_transaction(
                tx,
                block_hash=header.hash,
                block_number=header.block_number,
                index=i,
                base_fee=getattr(header, "base_fee_per_gas", None),
            )
            for i, tx in enumerate(block.transactions)
        ]
    else:
        result["transactions"] = [_hash(tx.hash) for tx in block.transactions]
    result["uncles"] = [_hash(uncle.hash) for uncle in block.uncles]
    withdrawals = getattr(block, "withdrawals", None)
    if withdrawals is not None:
        result["withdrawals"] = [_format_withdrawal(w) for w in withdrawals]
    return result


# --- transactions --------------------------------------------------------------------------


def _access_list(entries: Sequence[tuple[bytes, Sequence[int]]]) -> list[dict[str, Any]]:
    return [
        {"address": address(addr), "storageKeys": [_word(slot) for slot in slots]}
        for addr, slots in entries
    ]


def _authorization_list(tx: SignedTransactionAPI) -> list[dict[str, str]]:
    return [
        {
            "chainId": quantity(auth.chain_id),
            "address": address(auth.address),
            "nonce": quantity(auth.nonce),
            "yParity": quantity(auth.y_parity),
            "r": quantity(auth.r),
            "s": quantity(auth.s),
        }
        for auth in tx.authorization_list
    ]


def format_transaction(
    tx: SignedTransactionAPI,
    *,
    block_hash: bytes | None,
    block_number: int | None,
    index: int | None,
    base_fee: int | None,
) -> dict[str, Any]:
    """A transaction as geth's RPCTransaction; block fields are null while pending.

    For fee-market transactions gasPrice is the effective price once mined (needs the
    block's base fee) and maxFeePerGas while pending, as geth reports them.
    """
    kind = tx_type(tx)
    mined = block_hash is not None
    if mined != (block_number is not None) or mined != (index is not None):
        raise ValueError("block_hash, block_number and index go together (all or none)")
    typed = kind != LEGACY_TX_TYPE
    fee_market = kind in (DYNAMIC_FEE_TX_TYPE, BLOB_TX_TYPE, SET_CODE_TX_TYPE)

    if fee_market:
        gas_price = effective_gas_price(tx, base_fee if mined else None)
    else:
        gas_price = int(tx.gas_price)

    result: dict[str, Any] = {
        "blockHash": None if block_hash is None else _hash(block_hash),
        "blockNumber": None if block_number is None else quantity(block_number),
        "from": address(tx.sender),
        "gas": quantity(tx.gas),
        "gasPrice": quantity(gas_price),
    }
    if fee_market:
        result["maxFeePerGas"] = quantity(tx.max_fee_per_gas)
        result["maxPriorityFeePerGas"] = quantity(tx.max_priority_fee_per_gas)
    if kind == BLOB_TX_TYPE:
        result["maxFeePerBlobGas"] = quantity(tx.max_fee_per_blob_gas)
    result.update(
        {
            "hash": _hash(tx.hash),
            "input": data(tx.data),
            "nonce": quantity(tx.nonce),
            "to": address(tx.to) if tx.to else None,
            "transactionIndex": None if index is None else quantity(index),
            "value": quantity(tx.value),
            "type": quantity(kind),
        }
    )
    if typed:
        result["accessList"] = _access_list(tx.access_list)
        result["chainId"] = quantity(tx.chain_id)
    elif tx.chain_id is not None:
        # geth includes chainId for EIP-155 legacy transactions only.
        result["chainId"] = quantity(tx.chain_id)
    if kind == BLOB_TX_TYPE:
        result["blobVersionedHashes"] = [_hash(h) for h in tx.blob_versioned_hashes]
    if kind == SET_CODE_TX_TYPE:
        result["authorizationList"] = _authorization_list(tx)
    if typed:
        result["v"] = quantity(tx.y_parity)
        result["r"] = quantity(tx.r)
        result["s"] = quantity(tx.s)
        result["yParity"] = quantity(tx.y_parity)
    else:
        result["v"] = quantity(tx.v)
        result["r"] = quantity(tx.r)
        result["s"] = quantity(tx.s)
    return result


# --- receipts and logs ---------------------------------------------------------------------


def format_log(
    log: LogAPI,
    *,
    block_hash: bytes,
    block_number: int,
    tx_hash: bytes,
    tx_index: int,
    log_index: int,
    removed: bool = False,
    block_timestamp: int | None = None,
) -> dict[str, Any]:
    """A log as geth's types.Log JSON; py-evm topics are ints, sent as 32-byte words.

    block_timestamp adds geth 1.16's "blockTimestamp" when the caller knows it.
    """
    result: dict[str, Any] = {
        "address": address(log.address),
        "topics": [_word(topic) for topic in log.topics],
        "data": data(log.data),
        "blockNumber": quantity(block_number),
        "transactionHash": _hash(tx_hash),
        "transactionIndex": quantity(tx_index),
        "blockHash": _hash(block_hash),
    }
    if block_timestamp is not None:
        result["blockTimestamp"] = quantity(block_timestamp)
    result["logIndex"] = quantity(log_index)
    result["removed"] = removed
    return result


def format_receipt(
    receipt: ReceiptAPI,
    tx: SignedTransactionAPI,
    *,
    block_hash: bytes,
    block_number: int,
    index: int,
    gas_used: int,
    log_index_start: int,
    effective_gas_price: int,
    contract_address: bytes | None,
) -> dict[str, Any]:
    """A receipt as geth's MarshalReceipt.

    py-evm's receipt gas_used is cumulative, so the caller passes this transaction's own
    gas_used, the index of its first log within the block and, for a creation, the new
    contract's address (see contract_address_for).
    """
    status_or_root = bytes(receipt.state_root)
    result: dict[str, Any] = {
        "blockHash": _hash(block_hash),
        "blockNumber": quantity(block_number),
        "transactionHash": _hash(tx.hash),
        "transactionIndex": quantity(index),
        "from": address(tx.sender),
        "to": address(tx.to) if tx.to else None,
        "gasUsed": quantity(gas_used),
        "cumulativeGasUsed": quantity(receipt.gas_used),
        "contractAddress": address(contract_address) if contract_address else None,
        "logs": [
            format_log(
                log,
                block_hash=block_hash,
                block_number=block_number,
                tx_hash=tx.hash,
                tx_index=index,
                log_index=log_index_start + i,
            )
            for i, log in enumerate(receipt.logs)
        ],
        "logsBloom": bloom(receipt.bloom),
        "type": quantity(tx_type(tx)),
        "effectiveGasPrice": quantity(effective_gas_price),
    }
    if len(status_or_root) == 32:
        # Pre-Byzantium receipts carry an intermediate state root instead of a status.
        result["root"] = data(status_or_root)
    else:
        result["status"] = quantity(1 if status_or_root == b"\x01" else 0)
    return result
