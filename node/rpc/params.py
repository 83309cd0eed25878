"""Strict decoding of Ethereum JSON-RPC parameters, with geth's rules and error messages.

Clients (web3.py, ethers.js) are written against geth, so we accept exactly what geth
accepts: 0x-prefixed hex, quantities without leading zeros, fixed-length addresses and
hashes in any letter case. Every failure is a -32602 error whose message names the
argument index like geth's ("invalid argument 1: hex number with leading zero digits");
errors inside an object also name the field ('invalid argument 0: field "gas": ...').
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Literal, cast, get_args

from node.rpc.errors import RpcError, invalid_params

BlockTagName = Literal["latest", "earliest", "pending", "safe", "finalized"]
BlockTag = int | BlockTagName
BLOCK_TAGS: frozenset[str] = frozenset(get_args(BlockTagName))

MAX_TOPICS = 4
MAX_SUB_TOPICS = 1000
MAX_FILTER_ADDRESSES = 1000
_INT64_MAX = 2**63 - 1
_HEX_DIGITS = re.compile(r"[0-9a-fA-F]*")

# Messages of geth's common/hexutil package, kept verbatim so clients see familiar text.
ERR_EMPTY_STRING = "empty hex string"
ERR_SYNTAX = "invalid hex string"
ERR_MISSING_PREFIX = "hex string without 0x prefix"
ERR_ODD_LENGTH = "hex string of odd length"
ERR_EMPTY_NUMBER = 'hex string "0x"'
ERR_LEADING_ZERO = "hex number with leading zero digits"


class _DecodeError(Exception):
    """A decoding failure below the argument level; wrapped into RpcError by the caller."""


def _fail(arg: int, message: str) -> RpcError:
    return invalid_params(f"invalid argument {arg}: {message}")


def _json_type(value: Any) -> str:
    """Name of the JSON type a decoded value came from, as Go's json package words it."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "bool"
    if isinstance(value, int | float):
        return "number"
    if isinstance(value, str):
        return "string"
    if isinstance(value, list):
        return "array"
    if isinstance(value, dict):
        return "object"
    return type(value).__name__


def _non_string(type_name: str) -> _DecodeError:
    return _DecodeError(f"json: cannot unmarshal non-string into Go value of type {type_name}")


def _has_prefix(text: str) -> bool:
    return len(text) >= 2 and text[0] == "0" and text[1] in "xX"


def _hex_uint(value: Any, bits: int, type_name: str) -> int:
    """Decode a hex quantity the way hexutil.Big / hexutil.Uint64 do."""
    if not isinstance(value, str):
        raise _non_string(type_name)
    if value == "":
        raise _DecodeError(ERR_EMPTY_STRING)
    if not _has_prefix(value):
        raise _DecodeError(ERR_MISSING_PREFIX)
    digits = value[2:]
    if digits == "":
        raise _DecodeError(ERR_EMPTY_NUMBER)
    if len(digits) > 1 and digits[0] == "0":
        raise _DecodeError(ERR_LEADING_ZERO)
    if len(digits) > bits // 4:
        raise _DecodeError(f"hex number > {bits} bits")
    if not _HEX_DIGITS.fullmatch(digits):
        raise _DecodeError(ERR_SYNTAX)
    return int(digits, 16)


def _hex_bytes(value: Any, type_name: str = "hexutil.Bytes") -> bytes:
    """Decode 0x-prefixed, even-length hex (hexutil.Bytes); the empty string is empty bytes."""
    if not isinstance(value, str):
        raise _non_string(type_name)
    if value == "":
        return b""
    if not _has_prefix(value):
        raise _DecodeError(ERR_MISSING_PREFIX)
    digits = value[2:]
    if len(digits) % 2:
        raise _DecodeError(ERR_ODD_LENGTH)
    if not _HEX_DIGITS.fullmatch(digits):
        raise _DecodeError(ERR_SYNTAX)
    return bytes.fromhex(digits)


def _fixed_bytes(value: Any, size: int, type_name: str) -> bytes:
    """Decode an exact-length hex value (common.Address, common.Hash)."""
    raw = _hex_bytes(value, type_name)
    if len(raw) != size:
        digits = len(value) - 2 if _has_prefix(value) else len(value)
        raise _DecodeError(f"hex string has length {digits}, want {size * 2} for {type_name}")
    return raw


def _strict_hex_bytes(value: Any) -> bytes:
    """hexutil.Decode: like _hex_bytes but the empty string is an error (used by filters)."""
    if not isinstance(value, str):
        raise _non_string("string")
    if value == "":
        raise _DecodeError(ERR_EMPTY_STRING)
    if not _has_prefix(value):
        raise _DecodeError(ERR_MISSING_PREFIX)
    digits = value[2:]
    if len(digits) % 2:
        raise _DecodeError(ERR_ODD_LENGTH)
    if not _HEX_DIGITS.fullmatch(digits):
        raise _DecodeError(ERR_SYNTAX)
    return bytes.fromhex(digits)


def _address(value: Any) -> bytes:
    return _fixed_bytes(value, 20, "common.Address")


def _hash(value: Any) -> bytes:
    return _fixed_bytes(value, 32, "common.Hash")


def _field(name: str, decode: Any, value: Any) -> Any:
    """Run decode(value), prefixing a failure with the JSON field path."""
    try:
        return decode(value)
    except _DecodeError as exc:
        raise _DecodeError(f'field "{name}": {exc}') from None


def _expect_object(value: Any, type_name: str) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise _DecodeError(
            f"json: cannot unmarshal {_json_type(value)} into Go value of type {type_name}"
        )
    return value


# --- positional parameters -----------------------------------------------------------------


def expect_params(params: Any, min_n: int, max_n: int) -> list[Any]:
    """Check the count of positional params and pad missing optional ones with None.

    A missing `params` member (None) counts as no arguments, as in geth; an object instead
    of an array is rejected because geth only supports positional arguments.
    """
    if params is None:
        params = []
    if not isinstance(params, list):
        raise invalid_params("non-array args")
    if len(params) > max_n:
        raise invalid_params(f"too many arguments, want at most {max_n}")
    if len(params) < min_n:
        raise invalid_params(f"missing value for required argument {len(params)}")
    return list(params) + [None] * (max_n - len(params))


# --- scalar parameters ---------------------------------------------------------------------


def parse_quantity(value: Any, arg: int) -> int:
    """A 256-bit hex quantity ("0x0", "0x1f"); leading zeros and plain JSON numbers fail."""
    try:
        return _hex_uint(value, 256, "hexutil.Big")
    except _DecodeError as exc:
        raise _fail(arg, str(exc)) from None


def parse_uint64(value: Any, arg: int) -> int:
    """A 64-bit hex quantity (hexutil.Uint64): gas, nonces, counts."""
    try:
        return _hex_uint(value, 64, "hexutil.Uint64")
    except _DecodeError as exc:
        raise _fail(arg, str(exc)) from None


def parse_data(value: Any, arg: int, *, max_bytes: int | None = None) -> bytes:
    """0x-prefixed even-length hex; max_bytes bounds what a caller is willing to process."""
    try:
        raw = _hex_bytes(value)
    except _DecodeError as exc:
        raise _fail(arg, str(exc)) from None
    if max_bytes is not None and len(raw) > max_bytes:
        raise _fail(arg, f"data too large: {len(raw)} bytes, limit {max_bytes}")
    return raw


def parse_address(value: Any, arg: int) -> bytes:
    """A 20-byte address; like geth, any letter case is accepted (no EIP-55 check)."""
    try:
        return _address(value)
    except _DecodeError as exc:
        raise _fail(arg, str(exc)) from None


def parse_hash(value: Any, arg: int) -> bytes:
    """A 32-byte hash."""
    try:
        return _hash(value)
    except _DecodeError as exc:
        raise _fail(arg, str(exc)) from None


def parse_bool(value: Any, arg: int) -> bool:
    """A JSON boolean; JSON null reads as false, as Go's decoder leaves a bool untouched."""
    if value is None:
        return False
    if not isinstance(value, bool):
        raise _fail(arg, f"json: cannot unmarshal {_json_type(value)} into Go value of type bool")
    return value


def parse_storage_slot(value: Any, arg: int) -> int:
    """A storage key of eth_getStorageAt, decoded as leniently as geth's decodeHash.

    Clients send either a quantity ("0x0") or a padded 32-byte word, so leading zeros, odd
    length and a missing prefix are all fine; more than 32 bytes is not.
    """
    if not isinstance(value, str):
        raise _fail(arg, f"json: cannot unmarshal {_json_type(value)} into Go value of type string")
    digits = value[2:] if _has_prefix(value) else value
    if len(digits) % 2:
        digits = "0" + digits
    if not _HEX_DIGITS.fullmatch(digits):
        raise _fail(arg, "unable to decode storage key: hex string invalid")
    if len(digits) > 64:
        raise _fail(arg, "unable to decode storage key: hex string too long, want at most 32 bytes")
    return int(digits, 16) if digits else 0


# --- block identifiers ---------------------------------------------------------------------


def _block_number(value: Any) -> BlockTag:
    """rpc.BlockNumber: a tag or a hex number that fits in int64."""
    if isinstance(value, str) and value in BLOCK_TAGS:
        return cast(BlockTagName, value)
    if not isinstance(value, str):
        # geth strips the quotes of a string and decodes the rest, so a bare number fails here.
        if isinstance(value, int) and not isinstance(value, bool):
            raise _DecodeError(ERR_MISSING_PREFIX)
        raise _DecodeError(
            f"json: cannot unmarshal {_json_type(value)} into Go value of type rpc.BlockNumber"
        )
    number = _hex_uint(value, 64, "rpc.BlockNumber")
    if number > _INT64_MAX:
        raise _DecodeError("block number larger than int64")
    return number


def parse_block_number(value: Any, arg: int) -> BlockTag:
    """A block number or tag (eth_getBlockByNumber, eth_feeHistory): no hashes here."""
    try:
        return _block_number(value)
    except _DecodeError as exc:
        raise _fail(arg, str(exc)) from None


def _block_id(value: Any) -> BlockTag | bytes:
    if isinstance(value, dict):
        has_number = value.get("blockNumber") is not None
        has_hash = value.get("blockHash") is not None
        if has_number and has_hash:
            raise _DecodeError(
                "cannot specify both BlockHash and BlockNumber, choose one or the other"
            )
        canonical = value.get("requireCanonical")
        if canonical is not None and not isinstance(canonical, bool):
            raise _DecodeError(
                f'field "requireCanonical": json: cannot unmarshal {_json_type(canonical)} '
                "into Go value of type bool"
            )
        if has_number:
            return _field("blockNumber", _block_number, value["blockNumber"])
        if has_hash:
            # requireCanonical needs no handling: BFT finality leaves no non-canonical blocks.
            return _field("blockHash", _hash, value["blockHash"])
        raise _DecodeError("neither block number nor hash specified")
    if value is None:
        raise _DecodeError("neither block number nor hash specified")
    if isinstance(value, str) and len(value) == 66:
        return _hash(value)
    return _block_number(value)


def parse_block_id(value: Any, arg: int) -> BlockTag | bytes:
    """Block number, tag, 32-byte hash (0x + 64 hex, as geth allows) or an EIP-1898 object.

    Returns the number (int), the tag (str) or the block hash (bytes).
    """
    try:
        return _block_id(value)
    except _DecodeError as exc:
        raise _fail(arg, str(exc)) from None


# --- eth_call / eth_estimateGas transaction object -----------------------------------------

AccessList = tuple[tuple[bytes, tuple[int, ...]], ...]


@dataclass(frozen=True)
class CallRequest:
    """The transaction object of eth_call / eth_estimateGas / eth_createAccessList."""

    from_: bytes | None
    to: bytes | None
    gas: int | None
    gas_price: int | None
    max_fee_per_gas: int | None
    max_priority_fee_per_gas: int | None
    value: int
    data: bytes
    nonce: int | None
    access_list: AccessList
    chain_id: int | None
    tx_type: int | None


def _quantity(value: Any) -> int:
    return _hex_uint(value, 256, "hexutil.Big")


def _uint64(value: Any) -> int:
    return _hex_uint(value, 64, "hexutil.Uint64")


def _access_list(value: Any) -> AccessList:
    """[{"address": "0x..", "storageKeys": ["0x<32 bytes>", ...]}, ...] → py-evm's shape."""
    if value is None:
        return ()
    if not isinstance(value, list):
        raise _DecodeError(
            f"json: cannot unmarshal {_json_type(value)} into Go value of type types.AccessList"
        )
    entries = []
    for i, entry in enumerate(value):
        tuple_ = _expect_object(entry, "types.AccessTuple")
        if tuple_.get("address") is None:
            raise _DecodeError(f'field "[{i}].address": missing required field')
        addr = _field(f"[{i}].address", _address, tuple_["address"])
        keys_raw = tuple_.get("storageKeys")
        if keys_raw is None:
            keys_raw = []
        if not isinstance(keys_raw, list):
            raise _DecodeError(
                f'field "[{i}].storageKeys": json: cannot unmarshal {_json_type(keys_raw)} '
                "into Go value of type []common.Hash"
            )
        keys = tuple(
            int.from_bytes(_field(f"[{i}].storageKeys[{j}]", _hash, key), "big")
            for j, key in enumerate(keys_raw)
        )
        entries.append((addr, keys))
    return tuple(entries)


def _optional(obj: dict[str, Any], name: str, decode: Any) -> Any:
    value = obj.get(name)
    return None if value is None else _field(name, decode, value)


def _call_request(value: Any) -> CallRequest:
    obj = _expect_object(value, "ethapi.TransactionArgs")
    data = _optional(obj, "data", _hex_bytes)
    input_ = _optional(obj, "input", _hex_bytes)
    if data is not None and input_ is not None and data != input_:
        raise _DecodeError(
            'both "data" and "input" are set and not equal. '
            'Please use "input" to pass transaction call data'
        )
    gas_price = _optional(obj, "gasPrice", _quantity)
    max_fee = _optional(obj, "maxFeePerGas", _quantity)
    max_tip = _optional(obj, "maxPriorityFeePerGas", _quantity)
    if gas_price is not None and (max_fee is not None or max_tip is not None):
        raise _DecodeError("both gasPrice and (maxFeePerGas or maxPriorityFeePerGas) specified")
    if max_fee is not None and max_tip is not None and max_fee < max_tip:
        raise _DecodeError(f"maxFeePerGas ({hex(max_fee)}) < maxPriorityFeePerGas ({hex(max_tip)})")
    # Fields we cannot honour must not be dropped silently: the call would run differently.
    for unsupported in ("authorizationList", "blobVersionedHashes"):
        if obj.get(unsupported):
            raise _DecodeError(f'field "{unsupported}": not supported by this node')
    value_ = _optional(obj, "value", _quantity)
    return CallRequest(
        from_=_optional(obj, "from", _address),
        to=_optional(obj, "to", _address),
        gas=_optional(obj, "gas", _uint64),
        gas_price=gas_price,
        max_fee_per_gas=max_fee,
        max_priority_fee_per_gas=max_tip,
        value=0 if value_ is None else value_,
        data=input_ if input_ is not None else (data if data is not None else b""),
        nonce=_optional(obj, "nonce", _uint64),
        access_list=_field("accessList", _access_list, obj.get("accessList")),
        chain_id=_optional(obj, "chainId", _quantity),
        tx_type=_optional(obj, "type", _uint64),
    )


def parse_call_request(value: Any, arg: int) -> CallRequest:
    """Decode a call object; "to" null or absent means contract creation.

    Unknown keys are ignored (web3.py and ethers send extras), like geth's JSON decoding.
    """
    try:
        return _call_request(value)
    except _DecodeError as exc:
        raise _fail(arg, str(exc)) from None


# --- eth_call state overrides --------------------------------------------------------------


@dataclass(frozen=True)
class StateOverride:
    """Per-account overrides of eth_call: `state` replaces all storage, `state_diff` patches."""

    balance: int | None
    nonce: int | None
    code: bytes | None
    state: dict[int, int] | None
    state_diff: dict[int, int] | None


def _storage_map(value: Any) -> dict[int, int]:
    if not isinstance(value, dict):
        raise _DecodeError(
            f"json: cannot unmarshal {_json_type(value)} into Go value of type "
            "map[common.Hash]common.Hash"
        )
    out: dict[int, int] = {}
    for key, slot_value in value.items():
        slot = int.from_bytes(_field(f"[{key}]", _hash, key), "big")
        out[slot] = int.from_bytes(_field(f"[{key}]", _hash, slot_value), "big")
    return out


def _state_override(value: Any) -> dict[bytes, StateOverride]:
    obj = _expect_object(value, "ethapi.StateOverride")
    out: dict[bytes, StateOverride] = {}
    for key, account in obj.items():
        addr = _field(key, _address, key)
        if account is None:
            continue
        fields = _expect_object(account, "ethapi.OverrideAccount")
        if fields.get("movePrecompileToAddress") is not None:
            raise _DecodeError(f'field "{key}.movePrecompileToAddress": not supported by this node')
        state = _optional(fields, "state", _storage_map)
        state_diff = _optional(fields, "stateDiff", _storage_map)
        if state is not None and state_diff is not None:
            raise _DecodeError(f"account {key} has both 'state' and 'stateDiff'")
        try:
            override = StateOverride(
                balance=_optional(fields, "balance", _quantity),
                nonce=_optional(fields, "nonce", _uint64),
                code=_optional(fields, "code", _hex_bytes),
                state=state,
                state_diff=state_diff,
            )
        except _DecodeError as exc:
            raise _DecodeError(f"account {key}: {exc}") from None
        if addr in out:
            raise _DecodeError(f"account {key} overridden twice")
        out[addr] = override
    return out


def parse_state_override(value: Any, arg: int) -> dict[bytes, StateOverride]:
    """The third eth_call parameter: {address: {balance, nonce, code, state | stateDiff}}."""
    try:
        return _state_override(value)
    except _DecodeError as exc:
        raise _fail(arg, str(exc)) from None


# --- log filters ---------------------------------------------------------------------------


@dataclass(frozen=True)
class LogFilter:
    """Filter criteria; topics[i] None is a wildcard, a tuple is an OR of hashes."""

    from_block: BlockTag | None
    to_block: BlockTag | None
    block_hash: bytes | None
    addresses: tuple[bytes, ...]
    topics: tuple[tuple[bytes, ...] | None, ...]


def _filter_address(text: str) -> bytes:
    raw = _strict_hex_bytes(text)
    if len(raw) != 20:
        raise _DecodeError(
            f"hex has invalid length {len(raw)} after decoding; expected 20 for address"
        )
    return raw


def _filter_topic(text: Any) -> bytes:
    if not isinstance(text, str):
        raise _DecodeError("invalid topic(s)")
    raw = _strict_hex_bytes(text)
    if len(raw) != 32:
        raise _DecodeError(
            f"hex has invalid length {len(raw)} after decoding; expected 32 for topic"
        )
    return raw


def _filter_addresses(value: Any) -> tuple[bytes, ...]:
    if value is None:
        return ()
    if isinstance(value, str):
        try:
            return (_filter_address(value),)
        except _DecodeError as exc:
            raise _DecodeError(f"invalid address: {exc}") from None
    if not isinstance(value, list):
        raise _DecodeError("invalid addresses in query")
    if len(value) > MAX_FILTER_ADDRESSES:
        raise _DecodeError("exceed max addresses")
    out = []
    for i, item in enumerate(value):
        if not isinstance(item, str):
            raise _DecodeError(f"non-string address at index {i}")
        try:
            out.append(_filter_address(item))
        except _DecodeError as exc:
            raise _DecodeError(f"invalid address at index {i}: {exc}") from None
    return tuple(out)


def _filter_topics(value: Any) -> tuple[tuple[bytes, ...] | None, ...]:
    if value is None:
        return ()
    if not isinstance(value, list):
        raise _DecodeError("invalid topic(s)")
    if len(value) > MAX_TOPICS:
        raise _DecodeError("exceed max topics")
    out: list[tuple[bytes, ...] | None] = []
    for position in value:
        if position is None:
            out.append(None)
        elif isinstance(position, str):
            out.append((_filter_topic(position),))
        elif isinstance(position, list):
            if len(position) > MAX_SUB_TOPICS:
                raise _DecodeError("exceed max topics")
            # An empty list or a list containing null matches anything at that position.
            if not position or any(t is None for t in position):
                for t in position:
                    if t is not None:
                        _filter_topic(t)
                out.append(None)
            else:
                out.append(tuple(_filter_topic(t) for t in position))
        else:
            raise _DecodeError("invalid topic(s)")
    return tuple(out)


def _log_filter(value: Any) -> LogFilter:
    obj = _expect_object(value, "filters.FilterCriteria")
    block_hash = _optional(obj, "blockHash", _hash)
    from_block = _optional(obj, "fromBlock", _block_number)
    to_block = _optional(obj, "toBlock", _block_number)
    if block_hash is not None and (from_block is not None or to_block is not None):
        raise _DecodeError(
            "cannot specify both BlockHash and FromBlock/ToBlock, choose one or the other"
        )
    return LogFilter(
        from_block=from_block,
        to_block=to_block,
        block_hash=block_hash,
        addresses=_filter_addresses(obj.get("address")),
        topics=_filter_topics(obj.get("topics")),
    )


def parse_log_filter(value: Any, arg: int) -> LogFilter:
    """Filter criteria of eth_getLogs / eth_newFilter / eth_subscribe("logs")."""
    try:
        return _log_filter(value)
    except _DecodeError as exc:
        raise _fail(arg, str(exc)) from None


def log_matches(f: LogFilter, address: bytes, topics: Sequence[bytes]) -> bool:
    """Whether a log passes the filter's address and topic criteria (not its block range).

    Geth's rule: a filter with more topic positions than the log has topics never matches,
    even when the extra positions are wildcards.
    """
    if f.addresses and address not in f.addresses:
        return False
    if len(f.topics) > len(topics):
        return False
    return all(wanted is None or topics[i] in wanted for i, wanted in enumerate(f.topics))
