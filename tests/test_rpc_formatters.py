"""JSON-RPC result formatting of real py-evm objects, checked against eth_account and web3.py.

Transactions are signed with eth_account and decoded by py-evm; blocks and receipts come
from a real in-memory Prague chain. Each result is fed through web3.py 8's own result
formatters (what `w3.eth.get_block` etc. run) and, for transactions, re-encoded from the
JSON fields alone to prove the fields reproduce the signed bytes.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pytest
import rlp
from eth.abc import BlockAPI, ComputationAPI, ReceiptAPI, SignedTransactionAPI
from eth.chains.base import MiningChain
from eth.db.atomic import AtomicDB
from eth.vm.forks import PragueVM
from eth.vm.forks.prague.transactions import PragueTransactionBuilder
from eth_abi import encode
from eth_account import Account
from eth_account.datastructures import SignedTransaction
from eth_utils import keccak, to_checksum_address
from hexbytes import HexBytes
from web3._utils.method_formatters import PYTHONIC_RESULT_FORMATTERS
from web3._utils.rpc_abi import RPC

from contracts.artifacts import load_artifact
from node.rpc.formatters import (
    address,
    contract_address_for,
    data,
    effective_gas_price,
    format_block,
    format_header,
    format_log,
    format_receipt,
    format_transaction,
    quantity,
)

CHAIN_ID = 1337
SENDER = Account.from_key(b"\x01" * 32)
SENDER_ADDRESS = bytes.fromhex(SENDER.address[2:])
DELEGATOR = Account.from_key(b"\x02" * 32)
RECIPIENT = bytes.fromhex("cd" * 20)
INITIAL_VALUE = 7
GENESIS_PARAMS: dict[str, Any] = {
    "difficulty": 0,
    "gas_limit": 30_000_000,
    "base_fee_per_gas": 10**9,
    "timestamp": 1_700_000_000,
}
QUANTITY = re.compile(r"0x(0|[1-9a-f][0-9a-f]*)")
HASH_HEX = re.compile(r"0x[0-9a-f]{64}")
ADDRESS_HEX = re.compile(r"0x[0-9a-f]{40}")

web3_tx = PYTHONIC_RESULT_FORMATTERS[RPC.eth_getTransactionByHash]
web3_block = PYTHONIC_RESULT_FORMATTERS[RPC.eth_getBlockByNumber]
web3_receipt = PYTHONIC_RESULT_FORMATTERS[RPC.eth_getTransactionReceipt]
web3_logs = PYTHONIC_RESULT_FORMATTERS[RPC.eth_getLogs]


def selector(signature: str) -> bytes:
    return keccak(text=signature)[:4]


def sign(
    tx: dict[str, Any], account: Any = SENDER
) -> tuple[SignedTransaction, SignedTransactionAPI]:
    """Sign with eth_account and decode the raw bytes with py-evm's Prague builder."""
    signed = account.sign_transaction(tx)
    return signed, PragueTransactionBuilder.decode(bytes(signed.raw_transaction))


def to_int(hex_quantity: str) -> int:
    assert QUANTITY.fullmatch(hex_quantity), hex_quantity
    return int(hex_quantity, 16)


def reencode(tx: dict[str, Any]) -> bytes:
    """Rebuild the raw transaction from JSON-RPC fields only, per EIP-155/2930/1559/7702."""

    def n(key: str) -> int:
        return to_int(tx[key])

    def b(text: str) -> bytes:
        return bytes.fromhex(text[2:])

    to = b"" if tx["to"] is None else b(tx["to"])
    common = [n("gas"), to, n("value"), b(tx["input"])]
    kind = n("type")
    if kind == 0:
        return rlp.encode([n("nonce"), n("gasPrice"), *common, n("v"), n("r"), n("s")])
    access = [[b(e["address"]), [b(k) for k in e["storageKeys"]]] for e in tx["accessList"]]
    signature = [n("yParity"), n("r"), n("s")]
    if kind == 1:
        fields = [n("chainId"), n("nonce"), n("gasPrice"), *common, access, *signature]
    elif kind == 2:
        fees = [n("maxPriorityFeePerGas"), n("maxFeePerGas")]
        fields = [n("chainId"), n("nonce"), *fees, *common, access, *signature]
    elif kind == 4:
        fees = [n("maxPriorityFeePerGas"), n("maxFeePerGas")]
        auths = [
            [
                to_int(a["chainId"]),
                b(a["address"]),
                to_int(a["nonce"]),
                to_int(a["yParity"]),
                to_int(a["r"]),
                to_int(a["s"]),
            ]
            for a in tx["authorizationList"]
        ]
        fields = [n("chainId"), n("nonce"), *fees, *common, access, auths, *signature]
    else:
        raise AssertionError(f"unexpected type {kind}")
    return bytes([kind]) + rlp.encode(fields)


def assert_json_shapes(value: Any) -> None:
    """Every string a result carries is lowercase 0x-hex (geth never checksums)."""
    json.dumps(value)  # plain JSON types only
    if isinstance(value, dict):
        for item in value.values():
            assert_json_shapes(item)
    elif isinstance(value, list):
        for item in value:
            assert_json_shapes(item)
    elif isinstance(value, str):
        assert re.fullmatch(r"0x[0-9a-f]*", value), value


# --- primitives ----------------------------------------------------------------------------


def test_primitives() -> None:
    assert quantity(0) == "0x0"
    assert quantity(255) == "0xff"
    assert quantity(2**256 - 1) == "0x" + "f" * 64
    with pytest.raises(ValueError):
        quantity(-1)
    assert data(b"") == "0x"
    assert data(b"\x00\x0a") == "0x000a"
    assert address(bytes.fromhex("AB" * 20)) == "0x" + "ab" * 20
    with pytest.raises(ValueError):
        address(b"\x01" * 19)


def test_contract_address_for_matches_known_vectors() -> None:
    # The widely quoted CREATE address example (sender 0x6ac7...dbf0, nonces 0-2).
    sender = bytes.fromhex("6ac7ea33f8831ea9dcc53393aaa88b25a785dbf0")
    assert contract_address_for(sender, 0).hex() == "cd234a471b72ba2f1ccf0a70fcaba648a5eecd8d"
    assert contract_address_for(sender, 1).hex() == "343c43a37d37dff08ae8c4a11544c718abb4fcf8"
    assert contract_address_for(sender, 2).hex() == "f778b86fa74e846c4f0a1fbd1335fe81c00a0c91"


# --- transactions (no chain needed) --------------------------------------------------------


LEGACY = {
    "nonce": 5,
    "gasPrice": 3 * 10**9,
    "gas": 21_000,
    "to": to_checksum_address(RECIPIENT),
    "value": 10**18,
    "data": b"",
    "chainId": CHAIN_ID,
}
ACCESS_LIST = {
    "type": 1,
    "chainId": CHAIN_ID,
    "nonce": 6,
    "gasPrice": 2 * 10**9,
    "gas": 50_000,
    "to": to_checksum_address(RECIPIENT),
    "value": 0,
    "data": b"\x01\x02",
    "accessList": [
        {
            "address": to_checksum_address(RECIPIENT),
            "storageKeys": ["0x" + "00" * 31 + "07", "0x" + "ff" * 32],
        }
    ],
}
DYNAMIC_FEE = {
    "type": 2,
    "chainId": CHAIN_ID,
    "nonce": 7,
    "maxFeePerGas": 4 * 10**9,
    "maxPriorityFeePerGas": 2 * 10**9,
    "gas": 60_000,
    "to": to_checksum_address(RECIPIENT),
    "value": 3,
    "data": b"\xca\xfe",
}


@pytest.mark.parametrize(
    "tx_dict", [LEGACY, ACCESS_LIST, DYNAMIC_FEE], ids=["legacy", "2930", "1559"]
)
def test_pending_transaction_matches_eth_account(tx_dict: dict[str, Any]) -> None:
    signed, tx = sign(tx_dict)
    out = format_transaction(tx, block_hash=None, block_number=None, index=None, base_fee=None)
    assert_json_shapes({k: v for k, v in out.items() if v is not None})

    assert out["hash"] == "0x" + bytes(signed.hash).hex()
    assert out["blockHash"] is None and out["blockNumber"] is None
    assert out["transactionIndex"] is None
    assert out["from"] == SENDER.address.lower()
    assert out["to"] == "0x" + RECIPIENT.hex()
    assert to_int(out["r"]) == signed.r and to_int(out["s"]) == signed.s
    assert to_int(out["v"]) == signed.v
    assert to_int(out["nonce"]) == tx_dict["nonce"]
    assert to_int(out["gas"]) == tx_dict["gas"]
    assert to_int(out["value"]) == tx_dict["value"]
    assert out["input"] == "0x" + tx_dict["data"].hex()
    assert to_int(out["chainId"]) == CHAIN_ID
    assert to_int(out["type"]) == tx_dict.get("type", 0)
    assert reencode(out) == bytes(signed.raw_transaction)

    kind = tx_dict.get("type", 0)
    if kind == 0:
        assert to_int(out["v"]) in (CHAIN_ID * 2 + 35, CHAIN_ID * 2 + 36)  # EIP-155
        assert "yParity" not in out and "accessList" not in out
        assert to_int(out["gasPrice"]) == tx_dict["gasPrice"]
    else:
        assert to_int(out["yParity"]) == signed.v in (0, 1)
    if kind == 1:
        assert out["accessList"] == [
            {
                "address": "0x" + RECIPIENT.hex(),
                "storageKeys": ["0x" + "00" * 31 + "07", "0x" + "ff" * 32],
            }
        ]
        assert "maxFeePerGas" not in out
    if kind == 2:
        # Pending fee-market transaction: gasPrice reports the fee cap, as geth does.
        assert to_int(out["gasPrice"]) == tx_dict["maxFeePerGas"]
        assert to_int(out["maxFeePerGas"]) == tx_dict["maxFeePerGas"]
        assert to_int(out["maxPriorityFeePerGas"]) == tx_dict["maxPriorityFeePerGas"]
        assert out["accessList"] == []

    parsed = web3_tx(out)
    assert parsed["hash"] == HexBytes(signed.hash)
    assert parsed["from"] == SENDER.address
    assert parsed["to"] == to_checksum_address(RECIPIENT)
    assert parsed["nonce"] == tx_dict["nonce"]
    assert parsed["value"] == tx_dict["value"]
    assert parsed["blockHash"] is None and parsed["blockNumber"] is None
    assert int.from_bytes(parsed["r"], "big") == signed.r
    assert parsed["input"] == HexBytes(tx_dict["data"])


def test_mined_dynamic_fee_transaction_reports_effective_gas_price() -> None:
    signed, tx = sign(DYNAMIC_FEE)
    block_hash = b"\x42" * 32
    out = format_transaction(tx, block_hash=block_hash, block_number=9, index=3, base_fee=10**9)
    assert out["blockHash"] == "0x" + "42" * 32
    assert out["blockNumber"] == "0x9"
    assert out["transactionIndex"] == "0x3"
    # min(maxFee 4 gwei, baseFee 1 gwei + tip 2 gwei) = 3 gwei
    assert to_int(out["gasPrice"]) == 3 * 10**9 == effective_gas_price(tx, 10**9)
    # With a base fee so high that the cap binds:
    capped = format_transaction(tx, block_hash=block_hash, block_number=9, index=3, base_fee=10**10)
    assert to_int(capped["gasPrice"]) == 4 * 10**9
    parsed = web3_tx(out)
    assert parsed["blockNumber"] == 9 and parsed["transactionIndex"] == 3
    assert parsed["gasPrice"] == 3 * 10**9
    assert parsed["blockHash"] == HexBytes(block_hash)
    with pytest.raises(ValueError, match="all or none"):
        format_transaction(tx, block_hash=block_hash, block_number=None, index=3, base_fee=1)


def test_pre_eip155_legacy_transaction_has_no_chain_id() -> None:
    unprotected = {k: v for k, v in LEGACY.items() if k != "chainId"}
    signed, tx = sign(unprotected)
    out = format_transaction(tx, block_hash=None, block_number=None, index=None, base_fee=None)
    assert "chainId" not in out
    assert to_int(out["v"]) in (27, 28) and to_int(out["v"]) == signed.v
    assert reencode(out) == bytes(signed.raw_transaction)


def test_creation_transaction_has_null_to() -> None:
    create = {**DYNAMIC_FEE, "data": b"\x60\x80"}
    del create["to"]
    signed, tx = sign(create)
    out = format_transaction(tx, block_hash=None, block_number=None, index=None, base_fee=None)
    assert out["to"] is None
    assert reencode(out) == bytes(signed.raw_transaction)
    assert web3_tx(out)["to"] is None


# --- a real Prague chain -------------------------------------------------------------------


@dataclass
class MinedBlock:
    chain: MiningChain
    block: BlockAPI
    receipts: tuple[ReceiptAPI, ...]
    computations: tuple[ComputationAPI, ...]
    signed: list[SignedTransaction]
    contract: bytes


@pytest.fixture(scope="module")
def mined() -> Iterator[MinedBlock]:
    chain_class = MiningChain.configure(
        __name__="FormatterTestChain", vm_configuration=((0, PragueVM),), chain_id=CHAIN_ID
    )
    genesis_state = {
        SENDER_ADDRESS: {"balance": 10**21, "nonce": 0, "code": b"", "storage": {}},
    }
    chain = chain_class.from_genesis(AtomicDB(), GENESIS_PARAMS, genesis_state)
    artifact = load_artifact("EventProbe")
    contract = contract_address_for(SENDER_ADDRESS, 2)
    fee = {"maxFeePerGas": 3 * 10**9, "maxPriorityFeePerGas": 10**9}
    auth = DELEGATOR.sign_authorization(
        {"chainId": CHAIN_ID, "address": to_checksum_address(contract), "nonce": 0}
    )
    tx_dicts: list[dict[str, Any]] = [
        # 0: legacy EIP-155 transfer
        {**LEGACY, "nonce": 0, "gasPrice": 2 * 10**9},
        # 1: EIP-2930 transfer with an access list
        {**ACCESS_LIST, "nonce": 1, "data": b""},
        # 2: EIP-1559 contract creation
        {
            "type": 2,
            "chainId": CHAIN_ID,
            "nonce": 2,
            "gas": 1_000_000,
            "value": 0,
            "data": artifact.bytecode + encode(["uint256"], [INITIAL_VALUE]),
            **fee,
        },
        # 3: EIP-1559 call that emits ValueChanged
        {
            "type": 2,
            "chainId": CHAIN_ID,
            "nonce": 3,
            "gas": 200_000,
            "value": 0,
            "to": to_checksum_address(contract),
            "data": selector("set(uint256)") + encode(["uint256"], [99]),
            **fee,
        },
        # 4: EIP-1559 call that reverts
        {
            "type": 2,
            "chainId": CHAIN_ID,
            "nonce": 4,
            "gas": 200_000,
            "value": 0,
            "to": to_checksum_address(contract),
            "data": selector("fail(string)") + encode(["string"], ["no"]),
            **fee,
        },
        # 5: EIP-7702 set-code transaction delegating DELEGATOR to the contract
        {
            "type": 4,
            "chainId": CHAIN_ID,
            "nonce": 5,
            "gas": 100_000,
            "value": 0,
            "to": to_checksum_address(RECIPIENT),
            "data": b"",
            "accessList": [],
            "authorizationList": [auth],
            **fee,
        },
    ]
    signed, txs = zip(*(sign(t) for t in tx_dicts), strict=True)
    result, receipts, computations = chain.mine_all(list(txs))
    yield MinedBlock(
        chain=chain,
        block=result.imported_block,
        receipts=tuple(receipts),
        computations=tuple(computations),
        signed=list(signed),
        contract=contract,
    )


def receipts_json(m: MinedBlock) -> list[dict[str, Any]]:
    """Receipts the way the RPC layer builds them from a block and py-evm's receipts."""
    block, out, previous, log_index = m.block, [], 0, 0
    base_fee = block.header.base_fee_per_gas
    for i, (tx, receipt) in enumerate(zip(block.transactions, m.receipts, strict=True)):
        out.append(
            format_receipt(
                receipt,
                tx,
                block_hash=block.hash,
                block_number=block.number,
                index=i,
                gas_used=receipt.gas_used - previous,
                log_index_start=log_index,
                effective_gas_price=effective_gas_price(tx, base_fee),
                contract_address=None if tx.to else contract_address_for(tx.sender, tx.nonce),
            )
        )
        previous = receipt.gas_used
        log_index += len(receipt.logs)
    return out


def test_header_fields(mined: MinedBlock) -> None:
    header = mined.block.header
    out = format_header(header)
    assert_json_shapes(out)
    assert out["number"] == "0x1"
    assert out["hash"] == "0x" + header.hash.hex()
    assert (
        out["parentHash"] == "0x" + mined.chain.get_canonical_block_header_by_number(0).hash.hex()
    )
    assert out["miner"] == "0x" + "00" * 20
    assert out["difficulty"] == "0x0" and out["totalDifficulty"] == "0x0"
    assert len(out["nonce"]) == 2 + 16
    assert len(out["logsBloom"]) == 2 + 512
    assert int(out["logsBloom"], 16) == header.bloom != 0
    assert out["stateRoot"] == "0x" + header.state_root.hex()
    assert out["transactionsRoot"] == "0x" + header.transaction_root.hex()
    assert out["receiptsRoot"] == "0x" + header.receipt_root.hex()
    assert to_int(out["gasUsed"]) == header.gas_used == mined.receipts[-1].gas_used
    assert to_int(out["gasLimit"]) == header.gas_limit > 29_000_000
    assert to_int(out["timestamp"]) == header.timestamp
    assert to_int(out["baseFeePerGas"]) == header.base_fee_per_gas
    assert out["extraData"] == "0x"
    # Prague header fields are all present.
    for key in (
        "withdrawalsRoot",
        "blobGasUsed",
        "excessBlobGas",
        "parentBeaconBlockRoot",
        "requestsHash",
    ):
        assert key in out, key
    assert out["requestsHash"] == "0x" + header.requests_hash.hex()
    assert "size" not in out


def test_block_with_hashes_and_full_transactions(mined: MinedBlock) -> None:
    block = mined.block
    hashes = format_block(block, full_transactions=False)
    assert_json_shapes(hashes)
    assert hashes["transactions"] == ["0x" + bytes(s.hash).hex() for s in mined.signed]
    assert hashes["uncles"] == [] and hashes["withdrawals"] == []
    assert to_int(hashes["size"]) == len(rlp.encode(block))
    assert {
        k: v
        for k, v in hashes.items()
        if k not in ("size", "transactions", "uncles", "withdrawals")
    } == format_header(block.header)

    full = format_block(block, full_transactions=True)
    assert_json_shapes({k: v for k, v in full.items() if k != "transactions"})
    base_fee = block.header.base_fee_per_gas
    for i, (tx_json, signed) in enumerate(zip(full["transactions"], mined.signed, strict=True)):
        assert tx_json["hash"] == "0x" + bytes(signed.hash).hex()
        assert tx_json["blockHash"] == hashes["hash"]
        assert tx_json["blockNumber"] == "0x1"
        assert tx_json["transactionIndex"] == quantity(i)
        assert reencode(tx_json) == bytes(signed.raw_transaction)
        assert to_int(tx_json["gasPrice"]) == effective_gas_price(block.transactions[i], base_fee)

    parsed = web3_block(full)
    assert parsed["number"] == 1
    assert parsed["hash"] == HexBytes(block.hash)
    assert parsed["size"] == len(rlp.encode(block))
    assert parsed["miner"] == to_checksum_address(b"\x00" * 20)
    assert [t["hash"] for t in parsed["transactions"]] == [HexBytes(s.hash) for s in mined.signed]
    assert parsed["transactions"][5]["authorizationList"][0]["address"] == to_checksum_address(
        mined.contract
    )
    parsed_hashes = web3_block(hashes)
    assert parsed_hashes["transactions"] == [HexBytes(s.hash) for s in mined.signed]
    assert parsed_hashes["logsBloom"] == HexBytes(block.header.bloom.to_bytes(256, "big"))


def test_set_code_transaction_fields(mined: MinedBlock) -> None:
    tx = mined.block.transactions[5]
    out = format_transaction(
        tx,
        block_hash=mined.block.hash,
        block_number=1,
        index=5,
        base_fee=mined.block.header.base_fee_per_gas,
    )
    assert out["type"] == "0x4"
    [auth] = out["authorizationList"]
    assert auth["chainId"] == quantity(CHAIN_ID)
    assert auth["address"] == "0x" + mined.contract.hex()
    assert auth["nonce"] == "0x0"
    assert to_int(auth["yParity"]) in (0, 1)
    assert to_int(auth["r"]) == tx.authorization_list[0].r
    parsed = web3_tx(out)
    assert parsed["authorizationList"][0]["nonce"] == 0
    assert parsed["authorizationList"][0]["chainId"] == CHAIN_ID
    # The delegation took effect: the delegator's code is the 7702 designator.
    code = mined.chain.get_vm().state.get_code(bytes.fromhex(DELEGATOR.address[2:]))
    assert code == b"\xef\x01\x00" + mined.contract


def test_receipts(mined: MinedBlock) -> None:
    out = receipts_json(mined)
    for r in out:
        assert_json_shapes({k: v for k, v in r.items() if v is not None})
    block_hash = "0x" + mined.block.hash.hex()
    statuses = [r["status"] for r in out]
    assert statuses == ["0x1", "0x1", "0x1", "0x1", "0x0", "0x1"]
    assert [r["type"] for r in out] == ["0x0", "0x1", "0x2", "0x2", "0x2", "0x4"]
    assert [r["transactionIndex"] for r in out] == [quantity(i) for i in range(6)]
    assert all(r["blockHash"] == block_hash and r["blockNumber"] == "0x1" for r in out)
    assert [r["transactionHash"] for r in out] == ["0x" + bytes(s.hash).hex() for s in mined.signed]
    assert all(r["from"] == SENDER.address.lower() for r in out)

    # Per-transaction gas used adds up to the cumulative figures.
    assert to_int(out[0]["gasUsed"]) == 21_000
    assert to_int(out[1]["gasUsed"]) == 21_000 + 2_400 + 1_900 * 2
    running = 0
    for r, receipt in zip(out, mined.receipts, strict=True):
        running += to_int(r["gasUsed"])
        assert to_int(r["cumulativeGasUsed"]) == running == receipt.gas_used

    # Contract creation: null "to", the CREATE address, which holds the probe's code.
    assert out[2]["to"] is None
    assert out[2]["contractAddress"] == "0x" + mined.contract.hex()
    assert mined.computations[2].msg.storage_address == mined.contract
    assert all(r["contractAddress"] is None for i, r in enumerate(out) if i != 2)

    # Effective gas price: legacy pays its gasPrice, 1559 pays baseFee + tip (under the cap).
    base_fee = mined.block.header.base_fee_per_gas
    assert to_int(out[0]["effectiveGasPrice"]) == 2 * 10**9
    assert to_int(out[3]["effectiveGasPrice"]) == base_fee + 10**9

    # Logs: only tx 3 emits one; the index counts from the block's first log.
    assert [len(r["logs"]) for r in out] == [0, 0, 0, 1, 0, 0]
    log = out[3]["logs"][0]
    assert log == {
        "address": "0x" + mined.contract.hex(),
        "topics": [
            "0x" + keccak(text="ValueChanged(address,uint256,uint256)").hex(),
            "0x" + SENDER_ADDRESS.rjust(32, b"\x00").hex(),
            "0x" + INITIAL_VALUE.to_bytes(32, "big").hex(),
        ],
        "data": "0x" + (99).to_bytes(32, "big").hex(),
        "blockNumber": "0x1",
        "transactionHash": out[3]["transactionHash"],
        "transactionIndex": "0x3",
        "blockHash": block_hash,
        "logIndex": "0x0",
        "removed": False,
    }
    assert len(out[3]["logsBloom"]) == 2 + 512
    assert int(out[3]["logsBloom"], 16) == mined.receipts[3].bloom != 0
    assert int(out[0]["logsBloom"], 16) == 0

    parsed = [web3_receipt(r) for r in out]
    assert [p["status"] for p in parsed] == [1, 1, 1, 1, 0, 1]
    assert parsed[2]["contractAddress"] == to_checksum_address(mined.contract)
    assert parsed[3]["logs"][0]["address"] == to_checksum_address(mined.contract)
    assert parsed[3]["logs"][0]["topics"][2] == HexBytes(INITIAL_VALUE.to_bytes(32, "big"))
    assert parsed[3]["logs"][0]["logIndex"] == 0
    assert parsed[3]["effectiveGasPrice"] == base_fee + 10**9
    assert parsed[0]["to"] == to_checksum_address(RECIPIENT)
    assert parsed[2]["to"] is None


def test_log_formatting_options(mined: MinedBlock) -> None:
    [raw_log] = mined.receipts[3].logs
    out = format_log(
        raw_log,
        block_hash=mined.block.hash,
        block_number=1,
        tx_hash=mined.block.transactions[3].hash,
        tx_index=3,
        log_index=12,
        removed=True,
        block_timestamp=mined.block.header.timestamp,
    )
    assert out["removed"] is True
    assert out["logIndex"] == "0xc"
    assert to_int(out["blockTimestamp"]) == mined.block.header.timestamp
    [parsed] = web3_logs([out])
    assert parsed["logIndex"] == 12
    assert parsed["data"] == HexBytes((99).to_bytes(32, "big"))
    assert parsed["transactionHash"] == HexBytes(mined.block.transactions[3].hash)
    assert parsed["removed"] is True
