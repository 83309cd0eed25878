"""JSON-RPC parameter parsing: geth's acceptance rules and its error messages."""

from __future__ import annotations

from typing import Any

import pytest

from node.rpc.errors import INVALID_PARAMS, RpcError
from node.rpc.params import (
    CallRequest,
    LogFilter,
    StateOverride,
    expect_params,
    log_matches,
    parse_address,
    parse_block_id,
    parse_block_number,
    parse_bool,
    parse_call_request,
    parse_data,
    parse_hash,
    parse_log_filter,
    parse_quantity,
    parse_state_override,
    parse_storage_slot,
    parse_uint64,
)

ADDR = "0x" + "ab" * 20
ADDR_B = bytes.fromhex("ab" * 20)
ADDR2 = "0x" + "CD" * 20
ADDR2_B = bytes.fromhex("cd" * 20)
HASH = "0x" + "11" * 32
HASH_B = bytes.fromhex("11" * 32)
HASH2 = "0x" + "22" * 32
HASH2_B = bytes.fromhex("22" * 32)


def error_of(fn: Any, *args: Any, **kwargs: Any) -> str:
    """Call a parser that must fail with -32602 and return the message."""
    with pytest.raises(RpcError) as excinfo:
        fn(*args, **kwargs)
    assert excinfo.value.code == INVALID_PARAMS
    assert excinfo.value.to_json() == {"code": -32602, "message": excinfo.value.message}
    return excinfo.value.message


# --- expect_params -------------------------------------------------------------------------


def test_expect_params_pads_optionals() -> None:
    assert expect_params(["0x1"], 1, 3) == ["0x1", None, None]
    assert expect_params([], 0, 0) == []
    assert expect_params(None, 0, 2) == [None, None]
    assert expect_params(["a", "b"], 2, 2) == ["a", "b"]


def test_expect_params_errors() -> None:
    assert error_of(expect_params, [], 1, 2) == "missing value for required argument 0"
    assert error_of(expect_params, ["a"], 2, 3) == "missing value for required argument 1"
    assert error_of(expect_params, ["a", "b", "c"], 1, 2) == "too many arguments, want at most 2"
    assert error_of(expect_params, ["a"], 0, 0) == "too many arguments, want at most 0"
    assert error_of(expect_params, {"a": 1}, 0, 1) == "non-array args"


# --- scalars -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "value"),
    [
        ("0x0", 0),
        ("0x1", 1),
        ("0xff", 255),
        ("0xFF", 255),
        ("0X1a", 26),
        ("0x" + "f" * 64, 2**256 - 1),
    ],
)
def test_parse_quantity_accepts(text: str, value: int) -> None:
    assert parse_quantity(text, 0) == value


@pytest.mark.parametrize(
    ("raw", "arg", "message"),
    [
        ("", 0, "invalid argument 0: empty hex string"),
        ("12", 0, "invalid argument 0: hex string without 0x prefix"),
        ("0x", 1, 'invalid argument 1: hex string "0x"'),
        ("0x01", 1, "invalid argument 1: hex number with leading zero digits"),
        ("0x00", 2, "invalid argument 2: hex number with leading zero digits"),
        ("0x" + "1" * 65, 0, "invalid argument 0: hex number > 256 bits"),
        ("0xg1", 0, "invalid argument 0: invalid hex string"),
        ("0x1_0", 0, "invalid argument 0: invalid hex string"),
        ("0x 1", 0, "invalid argument 0: invalid hex string"),
        (
            5,
            0,
            "invalid argument 0: json: cannot unmarshal non-string into Go value of type "
            "hexutil.Big",
        ),
        (
            None,
            3,
            "invalid argument 3: json: cannot unmarshal non-string into Go value of type "
            "hexutil.Big",
        ),
        (
            True,
            0,
            "invalid argument 0: json: cannot unmarshal non-string into Go value of type "
            "hexutil.Big",
        ),
    ],
)
def test_parse_quantity_rejects(raw: Any, arg: int, message: str) -> None:
    assert error_of(parse_quantity, raw, arg) == message


def test_parse_uint64_bounds() -> None:
    assert parse_uint64("0x" + "f" * 16, 0) == 2**64 - 1
    assert error_of(parse_uint64, "0x1" + "0" * 16, 1) == "invalid argument 1: hex number > 64 bits"
    assert error_of(parse_uint64, 21000, 0) == (
        "invalid argument 0: json: cannot unmarshal non-string into Go value of type hexutil.Uint64"
    )


def test_parse_data() -> None:
    assert parse_data("0x", 0) == b""
    assert parse_data("", 0) == b""  # geth's hexutil.Bytes accepts the empty string
    assert parse_data("0xDEADbeef", 0) == bytes.fromhex("deadbeef")
    assert parse_data("0x0102", 0, max_bytes=2) == b"\x01\x02"
    assert error_of(parse_data, "deadbeef", 0) == "invalid argument 0: hex string without 0x prefix"
    assert error_of(parse_data, "0xabc", 1) == "invalid argument 1: hex string of odd length"
    assert error_of(parse_data, "0xzz", 0) == "invalid argument 0: invalid hex string"
    assert error_of(parse_data, "0x00 1", 0) == "invalid argument 0: invalid hex string"
    assert error_of(parse_data, "0x010203", 0, max_bytes=2) == (
        "invalid argument 0: data too large: 3 bytes, limit 2"
    )
    assert error_of(parse_data, ["0x"], 0) == (
        "invalid argument 0: json: cannot unmarshal non-string into Go value of type hexutil.Bytes"
    )


def test_parse_address_accepts_any_case() -> None:
    mixed = "0x" + "aBcD" * 10
    assert parse_address(mixed, 0) == bytes.fromhex("abcd" * 10)
    assert parse_address(ADDR2, 0) == ADDR2_B
    # A wrong EIP-55 checksum is accepted too, as geth does.
    checksummed = "0x5aAeb6053F3E94C9b9A09f33669435E7Ef1BeAed"
    assert parse_address(checksummed.lower(), 0) == parse_address(checksummed, 0)
    assert parse_address("0x5AAeb6053F3E94C9b9A09f33669435E7Ef1BeAed", 0) == bytes.fromhex(
        checksummed[2:]
    )


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        ("0x" + "ab" * 19, "hex string has length 38, want 40 for common.Address"),
        ("0x" + "ab" * 21, "hex string has length 42, want 40 for common.Address"),
        ("", "hex string has length 0, want 40 for common.Address"),
        ("ab" * 20, "hex string without 0x prefix"),
        ("0x" + "ab" * 19 + "a", "hex string of odd length"),
        ("0x" + "zz" * 20, "invalid hex string"),
        (
            None,
            "json: cannot unmarshal non-string into Go value of type common.Address",
        ),
    ],
)
def test_parse_address_rejects(raw: Any, message: str) -> None:
    assert error_of(parse_address, raw, 0) == f"invalid argument 0: {message}"


def test_parse_hash() -> None:
    assert parse_hash(HASH, 0) == HASH_B
    assert parse_hash(HASH.upper().replace("0X", "0x"), 0) == HASH_B
    assert error_of(parse_hash, "0x" + "11" * 31, 0) == (
        "invalid argument 0: hex string has length 62, want 64 for common.Hash"
    )
    assert error_of(parse_hash, "11" * 32, 1) == "invalid argument 1: hex string without 0x prefix"


def test_parse_bool() -> None:
    assert parse_bool(True, 1) is True
    assert parse_bool(False, 1) is False
    assert parse_bool(None, 1) is False  # Go leaves a bool untouched on null
    assert error_of(parse_bool, "true", 1) == (
        "invalid argument 1: json: cannot unmarshal string into Go value of type bool"
    )
    assert error_of(parse_bool, 1, 1) == (
        "invalid argument 1: json: cannot unmarshal number into Go value of type bool"
    )


def test_parse_storage_slot_is_lenient_like_geth() -> None:
    assert parse_storage_slot("0x0", 1) == 0
    assert parse_storage_slot("0x" + "00" * 31 + "05", 1) == 5
    assert parse_storage_slot("0x1", 1) == 1
    assert parse_storage_slot("0x001", 1) == 1
    assert parse_storage_slot("0x", 1) == 0
    assert parse_storage_slot("ff", 1) == 255
    assert error_of(parse_storage_slot, "0x" + "00" * 33, 1) == (
        "invalid argument 1: unable to decode storage key: hex string too long, "
        "want at most 32 bytes"
    )
    assert error_of(parse_storage_slot, "0xzz", 1) == (
        "invalid argument 1: unable to decode storage key: hex string invalid"
    )
    assert error_of(parse_storage_slot, 3, 1) == (
        "invalid argument 1: json: cannot unmarshal number into Go value of type string"
    )


# --- block identifiers ---------------------------------------------------------------------


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("latest", "latest"),
        ("earliest", "earliest"),
        ("pending", "pending"),
        ("safe", "safe"),
        ("finalized", "finalized"),
        ("0x0", 0),
        ("0x1b4", 436),
        ({"blockNumber": "0x10"}, 16),
        ({"blockNumber": "latest"}, "latest"),
        ({"blockHash": HASH}, HASH_B),
        ({"blockHash": HASH, "requireCanonical": True}, HASH_B),
        ({"blockHash": HASH, "blockNumber": None}, HASH_B),
        (HASH, HASH_B),
    ],
)
def test_parse_block_id_accepts(raw: Any, expected: Any) -> None:
    assert parse_block_id(raw, 1) == expected


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        ("0x01", "hex number with leading zero digits"),
        ("1", "hex string without 0x prefix"),
        (12, "hex string without 0x prefix"),
        ("Latest", "hex string without 0x prefix"),
        ("0x", 'hex string "0x"'),
        ("0x8000000000000000", "block number larger than int64"),
        ("0x10000000000000000", "hex number > 64 bits"),
        ("0x" + "11" * 31 + "1", "hex number > 64 bits"),
        (
            {"blockHash": HASH, "blockNumber": "0x1"},
            "cannot specify both BlockHash and BlockNumber, choose one or the other",
        ),
        ({}, "neither block number nor hash specified"),
        (None, "neither block number nor hash specified"),
        (
            {"blockHash": "0x1234"},
            'field "blockHash": hex string has length 4, want 64 for common.Hash',
        ),
        ({"blockNumber": "0x01"}, 'field "blockNumber": hex number with leading zero digits'),
        (
            {"blockHash": HASH, "requireCanonical": "yes"},
            'field "requireCanonical": json: cannot unmarshal string into Go value of type bool',
        ),
        (["latest"], "json: cannot unmarshal array into Go value of type rpc.BlockNumber"),
    ],
)
def test_parse_block_id_rejects(raw: Any, message: str) -> None:
    assert error_of(parse_block_id, raw, 1) == f"invalid argument 1: {message}"


def test_parse_block_number_rejects_hashes() -> None:
    assert parse_block_number("0x2a", 0) == 42
    assert parse_block_number("pending", 0) == "pending"
    assert error_of(parse_block_number, HASH, 0) == "invalid argument 0: hex number > 64 bits"
    assert error_of(parse_block_number, {"blockNumber": "0x1"}, 0) == (
        "invalid argument 0: json: cannot unmarshal object into Go value of type rpc.BlockNumber"
    )


# --- call requests -------------------------------------------------------------------------


def test_parse_call_request_full() -> None:
    request = parse_call_request(
        {
            "from": ADDR,
            "to": ADDR2,
            "gas": "0x5208",
            "maxFeePerGas": "0x3b9aca00",
            "maxPriorityFeePerGas": "0x1",
            "value": "0xde0b6b3a7640000",
            "input": "0xa9059cbb",
            "nonce": "0x7",
            "accessList": [
                {"address": ADDR2, "storageKeys": ["0x" + "00" * 31 + "01", HASH]},
                {"address": ADDR, "storageKeys": []},
            ],
            "chainId": "0x539",
            "type": "0x2",
        },
        0,
    )
    assert request == CallRequest(
        from_=ADDR_B,
        to=ADDR2_B,
        gas=21000,
        gas_price=None,
        max_fee_per_gas=10**9,
        max_priority_fee_per_gas=1,
        value=10**18,
        data=bytes.fromhex("a9059cbb"),
        nonce=7,
        access_list=((ADDR2_B, (1, int.from_bytes(HASH_B, "big"))), (ADDR_B, ())),
        chain_id=1337,
        tx_type=2,
    )


def test_parse_call_request_defaults_and_extras() -> None:
    # Contract creation (no "to"), legacy price, "data" instead of "input", and extra keys
    # that web3.py / ethers send are ignored.
    request = parse_call_request(
        {
            "data": "0x6080",
            "gasPrice": "0x1",
            "to": None,
            "maxFeePerBlobGas": None,
            "blockTag": "latest",
            "customField": {"x": 1},
        },
        0,
    )
    assert request == CallRequest(
        from_=None,
        to=None,
        gas=None,
        gas_price=1,
        max_fee_per_gas=None,
        max_priority_fee_per_gas=None,
        value=0,
        data=b"\x60\x80",
        nonce=None,
        access_list=(),
        chain_id=None,
        tx_type=None,
    )
    empty = parse_call_request({}, 0)
    assert empty.data == b"" and empty.value == 0 and empty.to is None
    same = parse_call_request({"data": "0x01", "input": "0x01"}, 0)
    assert same.data == b"\x01"


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        (
            {"data": "0x01", "input": "0x02"},
            'both "data" and "input" are set and not equal. '
            'Please use "input" to pass transaction call data',
        ),
        (
            {"gasPrice": "0x1", "maxFeePerGas": "0x2"},
            "both gasPrice and (maxFeePerGas or maxPriorityFeePerGas) specified",
        ),
        (
            {"gasPrice": "0x1", "maxPriorityFeePerGas": "0x2"},
            "both gasPrice and (maxFeePerGas or maxPriorityFeePerGas) specified",
        ),
        (
            {"maxFeePerGas": "0x1", "maxPriorityFeePerGas": "0x2"},
            "maxFeePerGas (0x1) < maxPriorityFeePerGas (0x2)",
        ),
        ({"gas": "0x01"}, 'field "gas": hex number with leading zero digits'),
        (
            {"gas": 21000},
            'field "gas": json: cannot unmarshal non-string into Go value of type hexutil.Uint64',
        ),
        ({"value": "1"}, 'field "value": hex string without 0x prefix'),
        (
            {"to": "0x1234"},
            'field "to": hex string has length 4, want 40 for common.Address',
        ),
        ({"from": "abc"}, 'field "from": hex string without 0x prefix'),
        ({"input": "0x1"}, 'field "input": hex string of odd length'),
        ({"nonce": "0x1" + "0" * 16}, 'field "nonce": hex number > 64 bits'),
        (
            {"accessList": [{"address": ADDR, "storageKeys": ["0x01"]}]},
            'field "accessList": field "[0].storageKeys[0]": hex string has length 2, '
            "want 64 for common.Hash",
        ),
        (
            {"accessList": [{"storageKeys": []}]},
            'field "accessList": field "[0].address": missing required field',
        ),
        (
            {"accessList": {"address": ADDR}},
            'field "accessList": json: cannot unmarshal object into Go value of type '
            "types.AccessList",
        ),
        (
            {"authorizationList": [{"chainId": "0x1"}]},
            'field "authorizationList": not supported by this node',
        ),
        ("0x", "json: cannot unmarshal string into Go value of type ethapi.TransactionArgs"),
        (None, "json: cannot unmarshal null into Go value of type ethapi.TransactionArgs"),
    ],
)
def test_parse_call_request_rejects(raw: Any, message: str) -> None:
    assert error_of(parse_call_request, raw, 0) == f"invalid argument 0: {message}"


# --- state overrides -----------------------------------------------------------------------


def test_parse_state_override() -> None:
    slot = "0x" + "00" * 31 + "02"
    overrides = parse_state_override(
        {
            ADDR: {"balance": "0x64", "nonce": "0x3", "code": "0x6000", "state": {slot: HASH}},
            ADDR2: {"stateDiff": {HASH: slot}},
            "0x" + "00" * 20: None,
        },
        2,
    )
    assert overrides == {
        ADDR_B: StateOverride(
            balance=100,
            nonce=3,
            code=b"\x60\x00",
            state={2: int.from_bytes(HASH_B, "big")},
            state_diff=None,
        ),
        ADDR2_B: StateOverride(
            balance=None,
            nonce=None,
            code=None,
            state=None,
            state_diff={int.from_bytes(HASH_B, "big"): 2},
        ),
    }
    assert parse_state_override({}, 2) == {}


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        (
            {ADDR: {"state": {}, "stateDiff": {}}},
            f"account {ADDR} has both 'state' and 'stateDiff'",
        ),
        (
            {"0x12": {}},
            'field "0x12": hex string has length 2, want 40 for common.Address',
        ),
        (
            {ADDR: {"balance": "0x01"}},
            f'account {ADDR}: field "balance": hex number with leading zero digits',
        ),
        (
            {ADDR: {"state": {"0x01": HASH}}},
            'field "state": field "[0x01]": hex string has length 2, want 64 for common.Hash',
        ),
        (
            {ADDR: {"stateDiff": []}},
            'field "stateDiff": json: cannot unmarshal array into Go value of type '
            "map[common.Hash]common.Hash",
        ),
        (
            {ADDR: {"movePrecompileToAddress": ADDR2}},
            f'field "{ADDR}.movePrecompileToAddress": not supported by this node',
        ),
        ({ADDR: {}, "0x" + "AB" * 20: {}}, "account 0x" + "AB" * 20 + " overridden twice"),
        (
            {ADDR: "0x1"},
            "json: cannot unmarshal string into Go value of type ethapi.OverrideAccount",
        ),
        ([], "json: cannot unmarshal array into Go value of type ethapi.StateOverride"),
    ],
)
def test_parse_state_override_rejects(raw: Any, message: str) -> None:
    assert error_of(parse_state_override, raw, 2) == f"invalid argument 2: {message}"


# --- log filters ---------------------------------------------------------------------------


def test_parse_log_filter_full() -> None:
    f = parse_log_filter(
        {
            "fromBlock": "0x1",
            "toBlock": "latest",
            "address": [ADDR, ADDR2],
            "topics": [HASH, None, [HASH, HASH2], []],
        },
        0,
    )
    assert f == LogFilter(
        from_block=1,
        to_block="latest",
        block_hash=None,
        addresses=(ADDR_B, ADDR2_B),
        topics=((HASH_B,), None, (HASH_B, HASH2_B), None),
    )


def test_parse_log_filter_single_address_and_block_hash() -> None:
    f = parse_log_filter({"blockHash": HASH, "address": ADDR, "topics": [[None, HASH]]}, 0)
    assert f == LogFilter(
        from_block=None, to_block=None, block_hash=HASH_B, addresses=(ADDR_B,), topics=(None,)
    )
    assert parse_log_filter({}, 0) == LogFilter(None, None, None, (), ())
    assert parse_log_filter({"address": None, "topics": None, "fromBlock": None}, 0) == (
        LogFilter(None, None, None, (), ())
    )


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        (
            {"blockHash": HASH, "fromBlock": "0x1"},
            "cannot specify both BlockHash and FromBlock/ToBlock, choose one or the other",
        ),
        (
            {"blockHash": HASH, "toBlock": "latest"},
            "cannot specify both BlockHash and FromBlock/ToBlock, choose one or the other",
        ),
        ({"topics": [None] * 5}, "exceed max topics"),
        ({"topics": [[HASH] * 1001]}, "exceed max topics"),
        ({"address": [ADDR] * 1001}, "exceed max addresses"),
        (
            {"address": "0x1234"},
            "invalid address: hex has invalid length 2 after decoding; expected 20 for address",
        ),
        (
            {"address": [ADDR, "ab" * 20]},
            "invalid address at index 1: hex string without 0x prefix",
        ),
        ({"address": [ADDR, 5]}, "non-string address at index 1"),
        ({"address": 5}, "invalid addresses in query"),
        (
            {"topics": ["0x1234"]},
            "hex has invalid length 2 after decoding; expected 32 for topic",
        ),
        (
            {"topics": [[HASH, "0x"]]},
            "hex has invalid length 0 after decoding; expected 32 for topic",
        ),
        ({"topics": [5]}, "invalid topic(s)"),
        ({"topics": [[5]]}, "invalid topic(s)"),
        ({"topics": HASH}, "invalid topic(s)"),
        ({"fromBlock": "0x01"}, 'field "fromBlock": hex number with leading zero digits'),
        ({"toBlock": 5}, 'field "toBlock": hex string without 0x prefix'),
        (
            {"blockHash": "0x12"},
            'field "blockHash": hex string has length 2, want 64 for common.Hash',
        ),
        ("latest", "json: cannot unmarshal string into Go value of type filters.FilterCriteria"),
    ],
)
def test_parse_log_filter_rejects(raw: Any, message: str) -> None:
    assert error_of(parse_log_filter, raw, 0) == f"invalid argument 0: {message}"


def test_log_matches() -> None:
    t1, t2, t3 = b"\x01" * 32, b"\x02" * 32, b"\x03" * 32

    def matches(filter_json: dict[str, Any], addr: bytes, topics: list[bytes]) -> bool:
        return log_matches(parse_log_filter(filter_json, 0), addr, topics)

    # No criteria: everything matches.
    assert matches({}, ADDR_B, [])
    assert matches({}, ADDR_B, [t1, t2])
    # Address: single or OR-list.
    assert matches({"address": ADDR}, ADDR_B, [t1])
    assert not matches({"address": ADDR}, ADDR2_B, [t1])
    assert matches({"address": [ADDR2, ADDR]}, ADDR_B, [t1])
    # Position-wise topics, null wildcard, list = OR.
    assert matches({"topics": ["0x" + t1.hex()]}, ADDR_B, [t1, t2])
    assert not matches({"topics": ["0x" + t2.hex()]}, ADDR_B, [t1, t2])
    assert matches({"topics": [None, "0x" + t2.hex()]}, ADDR_B, [t1, t2])
    assert matches({"topics": [None, ["0x" + t3.hex(), "0x" + t2.hex()]]}, ADDR_B, [t1, t2])
    assert not matches({"topics": [None, ["0x" + t3.hex(), "0x" + t1.hex()]]}, ADDR_B, [t1, t2])
    assert matches({"topics": [[], "0x" + t2.hex()]}, ADDR_B, [t1, t2])
    # A log with fewer topics than filter positions never matches (geth and Besu),
    # even when the extra positions are wildcards.
    assert not matches({"topics": ["0x" + t1.hex(), "0x" + t2.hex()]}, ADDR_B, [t1])
    assert not matches({"topics": ["0x" + t1.hex(), None]}, ADDR_B, [t1])
    assert matches({"topics": ["0x" + t1.hex(), None]}, ADDR_B, [t1, t3])
    # Address and topics must both match.
    assert not matches({"address": ADDR2, "topics": ["0x" + t1.hex()]}, ADDR_B, [t1])
