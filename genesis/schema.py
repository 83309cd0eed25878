"""Genesis file format: frozen dataclasses plus strict JSON parsing and serialisation.

The genesis file is the one document every hospital must agree on byte for byte, so parsing is
strict: unknown fields, ambiguous numbers and mistyped addresses are errors that name the exact
field path, never silently ignored or coerced.
"""

from __future__ import annotations

import difflib
import json
import re
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from eth_utils import is_checksum_address, keccak, to_checksum_address

UINT256_MAX = 2**256 - 1
NONCE_MAX = 2**64 - 2  # EIP-2681: an account nonce stays below 2**64 - 1
TIMESTAMP_MAX = 2**64 - 1
INT63_MAX = 2**63 - 1  # chain id and gas limit must fit a signed 64-bit integer
MIN_GAS_LIMIT = 5000
QBFT_PARAM_MAX = 2**31 - 1
ADDRESS_LENGTH = 20
MAX_FORKS = 64  # the P2P status handshake carries the schedule (network.codec.MAX_STATUS_FORKS)
VANITY_LENGTH = 32

_HEX_QUANTITY = re.compile(r"0x[0-9a-fA-F]+")
_DECIMAL = re.compile(r"[0-9]+")
_HEX_BYTES = re.compile(r"0x(?:[0-9a-fA-F]{2})*")
_ADDRESS = re.compile(r"0x[0-9a-fA-F]{40}")
_CONTRACT_NAME = re.compile(r"[A-Za-z][A-Za-z0-9_]*")


class GenesisError(ValueError):
    """A genesis document is invalid; `path` names the offending field (e.g. `alloc.0xab.nonce`)."""

    def __init__(self, reason: str, path: str = "", file: str | None = None) -> None:
        self.reason = reason
        self.path = path
        self.file = file
        message = f"{path}: {reason}" if path else reason
        if file is not None:
            message = f"{file}: {message}"
        super().__init__(message)

    def under(self, prefix: str) -> GenesisError:
        """The same error seen from the enclosing object, whose field is `prefix`."""
        return GenesisError(self.reason, _join(prefix, self.path), self.file)

    def in_file(self, file: str) -> GenesisError:
        """The same error, attributed to the file it came from."""
        return GenesisError(self.reason, self.path, file)


def _join(prefix: str, path: str) -> str:
    if not prefix:
        return path
    if not path:
        return prefix
    return f"{prefix}.{path}"


@contextmanager
def at_path(prefix: str) -> Iterator[None]:
    """Prefix the path of any GenesisError raised inside with `prefix`."""
    try:
        yield
    except GenesisError as exc:
        raise exc.under(prefix) from None


def _json_type(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int | float):
        return "number"
    if isinstance(value, str):
        return "string"
    if isinstance(value, list | tuple):
        return "array"
    if isinstance(value, Mapping):
        return "object"
    return type(value).__name__


def _short(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 80 else text[:77] + "..."


def _check_int(value: Any, path: str, low: int, high: int, bounds: str) -> None:
    """Range check for dataclass fields; `bounds` describes the range in the error."""
    if not isinstance(value, int) or isinstance(value, bool):
        raise GenesisError(f"must be an integer, got {type(value).__name__}", path)
    if not low <= value <= high:
        raise GenesisError(f"out of range: {value} (must be {bounds})", path)


def _check_address(value: Any, path: str) -> None:
    if not isinstance(value, bytes) or len(value) != ADDRESS_LENGTH:
        raise GenesisError(f"must be a 20-byte address, got {_short(value)}", path)


# --------------------------------------------------------------------------- dataclasses


@dataclass(frozen=True)
class AllocAccount:
    """Pre-funded or pre-deployed account state at block 0."""

    balance: int = 0
    nonce: int = 0
    code: bytes = b""
    storage: Mapping[int, int] = field(default_factory=dict)

    def __post_init__(self) -> None:
        _check_int(self.balance, "balance", 0, UINT256_MAX, "between 0 and 2**256-1")
        _check_int(self.nonce, "nonce", 0, NONCE_MAX, "between 0 and 2**64-2")
        if not isinstance(self.code, bytes):
            raise GenesisError(f"must be bytes, got {type(self.code).__name__}", "code")
        if not isinstance(self.storage, Mapping):
            raise GenesisError(f"must be a mapping, got {type(self.storage).__name__}", "storage")
        for slot, value in self.storage.items():
            _check_int(slot, f"storage.{slot!r}", 0, UINT256_MAX, "a slot between 0 and 2**256-1")
            _check_int(value, f"storage.{hex(slot)}", 0, UINT256_MAX, "between 0 and 2**256-1")
        # Copy so that later mutation of the caller's dict cannot change a frozen genesis.
        object.__setattr__(self, "storage", dict(self.storage))


@dataclass(frozen=True)
class QbftParams:
    """QBFT timing parameters shared by all validators."""

    block_period_seconds: int = 1
    empty_block_period_seconds: int = 10
    request_timeout_seconds: int = 4
    epoch_length: int = 30000

    def __post_init__(self) -> None:
        bounds = f"between 1 and {QBFT_PARAM_MAX}"
        _check_int(self.block_period_seconds, "blockPeriodSeconds", 1, QBFT_PARAM_MAX, bounds)
        _check_int(
            self.empty_block_period_seconds,
            "emptyBlockPeriodSeconds",
            self.block_period_seconds,
            QBFT_PARAM_MAX,
            f"between blockPeriodSeconds ({self.block_period_seconds}) and {QBFT_PARAM_MAX}",
        )
        _check_int(self.request_timeout_seconds, "requestTimeoutSeconds", 1, QBFT_PARAM_MAX, bounds)
        _check_int(self.epoch_length, "epochLength", 1, QBFT_PARAM_MAX, bounds)


@dataclass(frozen=True)
class ContractUpgrade:
    """New code for one account at a fork block; listed storage slots are set, others kept.

    Replacing the code of a system contract keeps its storage, so the upgraded contract
    reads the records, members and votes the old one wrote (its storage layout must stay
    compatible; `storage` may set slots a new version needs, 0 clears a slot).
    """

    code: bytes
    storage: Mapping[int, int] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if not isinstance(self.code, bytes):
            raise GenesisError(f"must be bytes, got {type(self.code).__name__}", "code")
        if not self.code:
            raise GenesisError("must not be empty: a fork replaces code, it never deletes it",
                               "code")
        if not isinstance(self.storage, Mapping):
            raise GenesisError(f"must be a mapping, got {type(self.storage).__name__}", "storage")
        for slot, value in self.storage.items():
            _check_int(slot, f"storage.{slot!r}", 0, UINT256_MAX, "a slot between 0 and 2**256-1")
            _check_int(value, f"storage.{hex(slot)}", 0, UINT256_MAX, "between 0 and 2**256-1")
        object.__setattr__(self, "storage", dict(self.storage))


@dataclass(frozen=True)
class QbftChanges:
    """QBFT timing a fork changes (None: unchanged). The epoch length never changes."""

    block_period_seconds: int | None = None
    empty_block_period_seconds: int | None = None
    request_timeout_seconds: int | None = None

    def __post_init__(self) -> None:
        bounds = f"between 1 and {QBFT_PARAM_MAX}"
        for attr, json_name in _QBFT_CHANGE_FIELDS.items():
            value = getattr(self, attr)
            if value is not None:
                _check_int(value, json_name, 1, QBFT_PARAM_MAX, bounds)

    def changes(self) -> dict[str, int]:
        return {k: v for k, v in self.__dict__.items() if v is not None}

    def apply(self, params: QbftParams) -> QbftParams:
        """`params` with these changes; GenesisError when the result is inconsistent."""
        return replace(params, **self.changes()) if self.changes() else params


@dataclass(frozen=True)
class Fork:
    """Rules that change at block `block` (>= 1), agreed by every member in advance.

    From `block` on: `gas_limit` (if set) is the block gas limit, `qbft` changes the timing,
    and at `block` itself, before its first transaction, every node writes the
    `system_contracts` upgrades into the state, so all nodes compute the same state root.
    """

    block: int
    name: str
    gas_limit: int | None = None
    qbft: QbftChanges = field(default_factory=QbftChanges)
    system_contracts: Mapping[bytes, ContractUpgrade] = field(default_factory=dict)

    def __post_init__(self) -> None:
        _check_int(self.block, "block", 1, INT63_MAX,
                   "between 1 and 2**63-1; block 0 is the genesis itself: change alloc instead")
        if not isinstance(self.name, str) or not _CONTRACT_NAME.fullmatch(self.name):
            raise GenesisError(
                f"must be a letter followed by letters, digits or '_', got {_short(self.name)}",
                "name",
            )
        if self.gas_limit is not None:
            _check_int(self.gas_limit, "gasLimit", MIN_GAS_LIMIT, INT63_MAX,
                       "between 5000 and 2**63-1")
        if not isinstance(self.qbft, QbftChanges):
            raise GenesisError(f"must be QbftChanges, got {type(self.qbft).__name__}", "qbft")
        if not isinstance(self.system_contracts, Mapping):
            raise GenesisError(
                f"must be a mapping, got {type(self.system_contracts).__name__}", "systemContracts"
            )
        for address, upgrade in self.system_contracts.items():
            _check_address(address, f"systemContracts.{_short(address)}")
            if address[:-1] == bytes(ADDRESS_LENGTH - 1):
                raise GenesisError(
                    "addresses 0x00..00 to 0x00..ff are reserved for precompiles",
                    f"systemContracts.{to_checksum_address(address)}",
                )
            if not isinstance(upgrade, ContractUpgrade):
                raise GenesisError(
                    f"must be a ContractUpgrade, got {type(upgrade).__name__}",
                    f"systemContracts.{to_checksum_address(address)}",
                )
        object.__setattr__(self, "system_contracts", dict(self.system_contracts))
        if self.gas_limit is None and not self.qbft.changes() and not self.system_contracts:
            raise GenesisError("a fork must change something: gasLimit, qbft or systemContracts")

    def digest(self) -> bytes:
        """keccak256 of the fork's canonical JSON: equal digests mean identical rules."""
        text = json.dumps(fork_to_json(self), sort_keys=True, separators=(",", ":"))
        return keccak(text.encode())


@dataclass(frozen=True)
class Genesis:
    """A validated genesis: every instance satisfies the invariants, however it was built."""

    chain_id: int
    validators: tuple[bytes, ...]
    qbft: QbftParams
    alloc: Mapping[bytes, AllocAccount]
    system_contracts: Mapping[str, bytes]
    gas_limit: int = 30_000_000
    base_fee_per_gas: int = 1_000_000_000
    timestamp: int = 0
    vanity: bytes = b"\x00" * VANITY_LENGTH
    # Non-validator nodes (e.g. auditors) allowed to join the peer-to-peer network; validators
    # are always allowed. Not part of any block: two files differing here share a genesis hash.
    node_allowlist: tuple[bytes, ...] = ()
    # Upgrades at agreed heights, ascending. Not part of block 0: adding a fork to a running
    # network keeps the genesis hash (see Fork).
    forks: tuple[Fork, ...] = ()

    def __post_init__(self) -> None:
        _check_int(self.chain_id, "chainId", 1, INT63_MAX, "between 1 and 2**63-1")
        self._check_validators()
        self._check_node_allowlist()
        if not isinstance(self.qbft, QbftParams):
            raise GenesisError(f"must be QbftParams, got {type(self.qbft).__name__}", "qbft")
        self._check_alloc()
        self._check_system_contracts()
        _check_int(self.gas_limit, "gasLimit", MIN_GAS_LIMIT, INT63_MAX, "between 5000 and 2**63-1")
        _check_int(self.base_fee_per_gas, "baseFeePerGas", 0, UINT256_MAX, "between 0 and 2**256-1")
        _check_int(self.timestamp, "timestamp", 0, TIMESTAMP_MAX, "between 0 and 2**64-1")
        if not isinstance(self.vanity, bytes) or len(self.vanity) != VANITY_LENGTH:
            raise GenesisError(f"must be exactly 32 bytes, got {_short(self.vanity)}", "vanity")
        self._check_forks()

    def _check_forks(self) -> None:
        if isinstance(self.forks, bytes | str | Mapping) or not hasattr(self.forks, "__iter__"):
            raise GenesisError("must be a sequence of forks", "forks")
        forks = tuple(self.forks)
        if len(forks) > MAX_FORKS:
            raise GenesisError(f"at most {MAX_FORKS} forks, got {len(forks)}", "forks")
        names: dict[str, int] = {}
        params = self.qbft
        for index, fork in enumerate(forks):
            path = f"forks.{index}"
            if not isinstance(fork, Fork):
                raise GenesisError(f"must be a Fork, got {type(fork).__name__}", path)
            if index and fork.block <= forks[index - 1].block:
                raise GenesisError(
                    f"block {fork.block} is not after the previous fork's block "
                    f"{forks[index - 1].block}: list forks in ascending block order, "
                    "at most one fork per block",
                    f"{path}.block",
                )
            if fork.name in names:
                raise GenesisError(
                    f"duplicate fork name {fork.name!r} (same as forks.{names[fork.name]})",
                    f"{path}.name",
                )
            names[fork.name] = index
            with at_path(f"{path}.qbft"):
                params = fork.qbft.apply(params)
        object.__setattr__(self, "forks", forks)

    def fork_at(self, block_number: int) -> Fork | None:
        """The fork that activates exactly at `block_number`, if any."""
        return next((fork for fork in self.forks if fork.block == block_number), None)

    def qbft_at(self, block_number: int) -> QbftParams:
        """The QBFT timing in force for deciding block `block_number`."""
        params = self.qbft
        for fork in self.forks:
            if fork.block > block_number:
                break
            params = fork.qbft.apply(params)
        return params

    def gas_limit_at(self, block_number: int) -> int:
        """The block gas limit the schedule sets for `block_number` (genesis or latest fork)."""
        limit = self.gas_limit
        for fork in self.forks:
            if fork.block > block_number:
                break
            if fork.gas_limit is not None:
                limit = fork.gas_limit
        return limit

    def fork_ids(self) -> tuple[tuple[int, bytes], ...]:
        """(block, digest) of every fork: what peers compare in the status handshake."""
        return tuple((fork.block, fork.digest()) for fork in self.forks)

    def _check_validators(self) -> None:
        if isinstance(self.validators, bytes | str) or not hasattr(self.validators, "__iter__"):
            raise GenesisError("must be a sequence of addresses", "validators")
        validators = tuple(self.validators)
        if not validators:
            raise GenesisError("at least one validator is required", "validators")
        first_seen: dict[bytes, int] = {}
        for index, address in enumerate(validators):
            _check_address(address, f"validators.{index}")
            if address in first_seen:
                raise GenesisError(
                    f"duplicate validator {to_checksum_address(address)} "
                    f"(same as validators.{first_seen[address]})",
                    f"validators.{index}",
                )
            first_seen[address] = index
        object.__setattr__(self, "validators", validators)

    def _check_node_allowlist(self) -> None:
        entries = self.node_allowlist
        if isinstance(entries, bytes | str) or not hasattr(entries, "__iter__"):
            raise GenesisError("must be a sequence of addresses", "nodeAllowlist")
        entries = tuple(entries)
        first_seen: dict[bytes, int] = {}
        for index, address in enumerate(entries):
            _check_address(address, f"nodeAllowlist.{index}")
            if address in first_seen:
                raise GenesisError(
                    f"duplicate address {to_checksum_address(address)} "
                    f"(same as nodeAllowlist.{first_seen[address]})",
                    f"nodeAllowlist.{index}",
                )
            first_seen[address] = index
        object.__setattr__(self, "node_allowlist", entries)

    def _check_alloc(self) -> None:
        if not isinstance(self.alloc, Mapping):
            raise GenesisError(f"must be a mapping, got {type(self.alloc).__name__}", "alloc")
        for address, account in self.alloc.items():
            _check_address(address, f"alloc.{_short(address)}")
            if not isinstance(account, AllocAccount):
                raise GenesisError(
                    f"must be an AllocAccount, got {type(account).__name__}",
                    f"alloc.{to_checksum_address(address)}",
                )
        object.__setattr__(self, "alloc", dict(self.alloc))

    def _check_system_contracts(self) -> None:
        if not isinstance(self.system_contracts, Mapping):
            raise GenesisError(
                f"must be a mapping, got {type(self.system_contracts).__name__}", "systemContracts"
            )
        owner: dict[bytes, str] = {}
        for name, address in self.system_contracts.items():
            if not isinstance(name, str) or not _CONTRACT_NAME.fullmatch(name):
                raise GenesisError(
                    "contract name must be a letter followed by letters, digits or '_', "
                    f"got {_short(name)}",
                    "systemContracts",
                )
            path = f"systemContracts.{name}"
            _check_address(address, path)
            checksummed = to_checksum_address(address)
            if address in owner:
                raise GenesisError(
                    f"{checksummed} is already used by systemContracts.{owner[address]}", path
                )
            owner[address] = name
            account = self.alloc.get(address)
            if account is None:
                raise GenesisError(f"{checksummed} is not in alloc", path)
            if not account.code:
                raise GenesisError(f"{checksummed} has no code in alloc", path)
        object.__setattr__(self, "system_contracts", dict(self.system_contracts))


# --------------------------------------------------------------------------- JSON parsing


def parse_quantity(value: Any, path: str = "") -> int:
    """A non-negative integer from a JSON int, a "0x" hex string or a decimal string."""
    if isinstance(value, bool) or not isinstance(value, int | str):
        if isinstance(value, float):
            raise GenesisError(f"not a number: floats are not allowed, got {value!r}", path)
        raise GenesisError(
            "not a number: expected an integer, a 0x-hex string or a decimal string, "
            f"got {_json_type(value)}",
            path,
        )
    if isinstance(value, int):
        number = value
    elif _HEX_QUANTITY.fullmatch(value):
        number = int(value[2:], 16)
    elif _DECIMAL.fullmatch(value):
        if len(value.lstrip("0")) > 78:  # 2**256 has 78 decimal digits
            raise GenesisError(f"out of range: {_short(value)} exceeds 2**256-1", path)
        number = int(value)
    else:
        raise GenesisError(
            "not a number: expected an integer, a 0x-hex string or a decimal string, "
            f"got {_short(value)}",
            path,
        )
    if number < 0:
        raise GenesisError(f"negative numbers are not allowed, got {number}", path)
    if number > UINT256_MAX:
        raise GenesisError(f"out of range: {_short(value)} exceeds 2**256-1", path)
    return number


def parse_hex_bytes(value: Any, path: str = "") -> bytes:
    """Bytes from a "0x"-prefixed string with an even number of hex digits."""
    if not isinstance(value, str):
        raise GenesisError(f"expected a 0x-hex string, got {_json_type(value)}", path)
    if not _HEX_BYTES.fullmatch(value):
        raise GenesisError(
            f"bad hex: expected '0x' followed by an even number of hex digits, got {_short(value)}",
            path,
        )
    return bytes.fromhex(value[2:])


def parse_address(value: Any, path: str = "") -> bytes:
    """A 20-byte address; a mixed-case spelling must carry a valid EIP-55 checksum."""
    if not isinstance(value, str):
        raise GenesisError(f"bad address: expected a string, got {_json_type(value)}", path)
    if not _ADDRESS.fullmatch(value):
        raise GenesisError(
            f"bad address: expected '0x' followed by 40 hex digits, got {_short(value)}", path
        )
    digits = value[2:]
    if digits != digits.lower() and digits != digits.upper() and not is_checksum_address(value):
        raise GenesisError(
            f"bad address: mixed-case {value} fails its EIP-55 checksum (typo?)", path
        )
    return bytes.fromhex(digits)


def _object(value: Any, path: str, known: tuple[str, ...]) -> Mapping[str, Any]:
    """Check that `value` is a JSON object whose keys are all in `known`."""
    if not isinstance(value, Mapping):
        raise GenesisError(f"expected a JSON object, got {_json_type(value)}", path)
    for key in value:
        if not isinstance(key, str):
            raise GenesisError(f"field names must be strings, got {_short(key)}", path)
        if key not in known:
            raise GenesisError(f"unknown field{_suggestion(key, known)}", _join(path, key))
    return value


def _suggestion(key: str, known: tuple[str, ...]) -> str:
    by_lower = {name.lower(): name for name in known}
    close = [by_lower[key.lower()]] if key.lower() in by_lower else []
    close = close or difflib.get_close_matches(key, known, n=1, cutoff=0.6)
    if close:
        return f" (did you mean '{close[0]}'?)"
    return f" (known fields: {', '.join(known)})"


_GENESIS_FIELDS = (
    "chainId",
    "timestamp",
    "gasLimit",
    "baseFeePerGas",
    "vanity",
    "qbft",
    "validators",
    "nodeAllowlist",
    "alloc",
    "systemContracts",
    "forks",
)
_QBFT_FIELDS = {
    "blockPeriodSeconds": "block_period_seconds",
    "emptyBlockPeriodSeconds": "empty_block_period_seconds",
    "requestTimeoutSeconds": "request_timeout_seconds",
    "epochLength": "epoch_length",
}
_ACCOUNT_FIELDS = ("balance", "nonce", "code", "storage")
_QBFT_CHANGE_FIELDS = {
    "block_period_seconds": "blockPeriodSeconds",
    "empty_block_period_seconds": "emptyBlockPeriodSeconds",
    "request_timeout_seconds": "requestTimeoutSeconds",
}
_FORK_FIELDS = ("block", "name", "gasLimit", "qbft", "systemContracts")
_UPGRADE_FIELDS = ("code", "storage")


def parse_genesis(data: Mapping[str, Any]) -> Genesis:
    """Parse and validate a genesis document already decoded from JSON."""
    doc = _object(data, "", _GENESIS_FIELDS)
    if "chainId" not in doc:
        raise GenesisError("missing required field", "chainId")
    if "validators" not in doc:
        raise GenesisError("missing required field (a list of validator addresses)", "validators")
    options: dict[str, Any] = {}
    for json_name, attr in (
        ("timestamp", "timestamp"),
        ("gasLimit", "gas_limit"),
        ("baseFeePerGas", "base_fee_per_gas"),
    ):
        if json_name in doc:
            options[attr] = parse_quantity(doc[json_name], json_name)
    if "vanity" in doc:
        options["vanity"] = parse_hex_bytes(doc["vanity"], "vanity")
    if "nodeAllowlist" in doc:
        options["node_allowlist"] = _parse_node_allowlist(doc["nodeAllowlist"])
    alloc = _parse_alloc(doc.get("alloc", {}))
    system_contracts = _parse_system_contracts(doc.get("systemContracts", {}))
    if "forks" in doc:
        options["forks"] = _parse_forks(doc["forks"], system_contracts)
    return Genesis(
        chain_id=parse_quantity(doc["chainId"], "chainId"),
        validators=_parse_validators(doc["validators"]),
        qbft=_parse_qbft(doc.get("qbft", {})),
        alloc=alloc,
        system_contracts=system_contracts,
        **options,
    )


def _parse_validators(value: Any) -> tuple[bytes, ...]:
    if not isinstance(value, list):
        raise GenesisError(f"expected an array of addresses, got {_json_type(value)}", "validators")
    return tuple(parse_address(item, f"validators.{i}") for i, item in enumerate(value))


def _parse_node_allowlist(value: Any) -> tuple[bytes, ...]:
    if not isinstance(value, list):
        raise GenesisError(
            f"expected an array of addresses, got {_json_type(value)}", "nodeAllowlist"
        )
    return tuple(parse_address(item, f"nodeAllowlist.{i}") for i, item in enumerate(value))


def _parse_qbft(value: Any) -> QbftParams:
    doc = _object(value, "qbft", tuple(_QBFT_FIELDS))
    params = {_QBFT_FIELDS[k]: parse_quantity(v, f"qbft.{k}") for k, v in doc.items()}
    with at_path("qbft"):
        return QbftParams(**params)


def _parse_alloc(value: Any) -> dict[bytes, AllocAccount]:
    if not isinstance(value, Mapping):
        raise GenesisError(f"expected a JSON object, got {_json_type(value)}", "alloc")
    alloc: dict[bytes, AllocAccount] = {}
    spelled: dict[bytes, str] = {}
    for key, account in value.items():
        path = f"alloc.{key}"
        address = parse_address(key, path)
        if address in alloc:
            raise GenesisError(f"duplicate alloc address (same as alloc.{spelled[address]})", path)
        spelled[address] = key
        alloc[address] = _parse_account(account, path)
    return alloc


def _parse_account(value: Any, path: str) -> AllocAccount:
    doc = _object(value, path, _ACCOUNT_FIELDS)
    fields: dict[str, Any] = {}
    for name in ("balance", "nonce"):
        if name in doc:
            fields[name] = parse_quantity(doc[name], f"{path}.{name}")
    if "code" in doc:
        fields["code"] = parse_hex_bytes(doc["code"], f"{path}.code")
    if "storage" in doc:
        fields["storage"] = _parse_storage(doc["storage"], f"{path}.storage")
    with at_path(path):
        return AllocAccount(**fields)


def _parse_storage(value: Any, path: str) -> dict[int, int]:
    if not isinstance(value, Mapping):
        raise GenesisError(f"expected a JSON object, got {_json_type(value)}", path)
    storage: dict[int, int] = {}
    spelled: dict[int, str] = {}
    for key, slot_value in value.items():
        slot = parse_quantity(key, f"{path}.{key}")
        if slot in storage:
            raise GenesisError(f"duplicate storage slot (same as {spelled[slot]})", f"{path}.{key}")
        spelled[slot] = key
        storage[slot] = parse_quantity(slot_value, f"{path}.{key}")
    return storage


def _parse_system_contracts(value: Any) -> dict[str, bytes]:
    if not isinstance(value, Mapping):
        raise GenesisError(f"expected a JSON object, got {_json_type(value)}", "systemContracts")
    return {
        name: parse_address(address, f"systemContracts.{name}") for name, address in value.items()
    }


def _parse_forks(value: Any, system_contracts: Mapping[str, bytes]) -> tuple[Fork, ...]:
    if not isinstance(value, list):
        raise GenesisError(f"expected an array of forks, got {_json_type(value)}", "forks")
    return tuple(_parse_fork(item, f"forks.{i}", system_contracts) for i, item in enumerate(value))


def _parse_fork(value: Any, path: str, system_contracts: Mapping[str, bytes]) -> Fork:
    doc = _object(value, path, _FORK_FIELDS)
    for required in ("block", "name"):
        if required not in doc:
            raise GenesisError("missing required field", f"{path}.{required}")
    fields: dict[str, Any] = {"block": parse_quantity(doc["block"], f"{path}.block")}
    if not isinstance(doc["name"], str):
        raise GenesisError(f"expected a string, got {_json_type(doc['name'])}", f"{path}.name")
    fields["name"] = doc["name"]
    if "gasLimit" in doc:
        fields["gas_limit"] = parse_quantity(doc["gasLimit"], f"{path}.gasLimit")
    if "qbft" in doc:
        fields["qbft"] = _parse_qbft_changes(doc["qbft"], f"{path}.qbft")
    if "systemContracts" in doc:
        fields["system_contracts"] = _parse_upgrades(
            doc["systemContracts"], f"{path}.systemContracts", system_contracts
        )
    with at_path(path):
        return Fork(**fields)


def _parse_qbft_changes(value: Any, path: str) -> QbftChanges:
    if isinstance(value, Mapping) and "epochLength" in value:
        raise GenesisError(
            "epochLength cannot change at a fork (vote checkpoints depend on it)",
            f"{path}.epochLength",
        )
    by_json = {json_name: attr for attr, json_name in _QBFT_CHANGE_FIELDS.items()}
    doc = _object(value, path, tuple(by_json))
    changes = {by_json[k]: parse_quantity(v, f"{path}.{k}") for k, v in doc.items()}
    with at_path(path):
        return QbftChanges(**changes)


def _parse_upgrades(
    value: Any, path: str, system_contracts: Mapping[str, bytes]
) -> dict[bytes, ContractUpgrade]:
    """Upgrades keyed by address, or by a name from the genesis `systemContracts`."""
    if not isinstance(value, Mapping):
        raise GenesisError(f"expected a JSON object, got {_json_type(value)}", path)
    upgrades: dict[bytes, ContractUpgrade] = {}
    spelled: dict[bytes, str] = {}
    for key, item in value.items():
        entry = f"{path}.{key}"
        if isinstance(key, str) and key.startswith("0x"):
            address = parse_address(key, entry)
        elif key in system_contracts:
            address = system_contracts[key]
        else:
            known = ", ".join(system_contracts) or "none"
            raise GenesisError(
                f"not an address nor a name from systemContracts (known: {known})", entry
            )
        if address in upgrades:
            raise GenesisError(f"the same account as {path}.{spelled[address]}", entry)
        spelled[address] = key
        doc = _object(item, entry, _UPGRADE_FIELDS)
        if "code" not in doc:
            raise GenesisError("missing required field", f"{entry}.code")
        fields: dict[str, Any] = {"code": parse_hex_bytes(doc["code"], f"{entry}.code")}
        if "storage" in doc:
            fields["storage"] = _parse_storage(doc["storage"], f"{entry}.storage")
        with at_path(entry):
            upgrades[address] = ContractUpgrade(**fields)
    return upgrades


# --------------------------------------------------------------------------- files and output


class _DuplicateKeyError(Exception):
    pass


def _reject_duplicate_keys(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    result: dict[str, Any] = {}
    for key, value in pairs:
        if key in result:
            raise _DuplicateKeyError(key)
        result[key] = value
    return result


def load_genesis(path: str | Path) -> Genesis:
    """Read, decode and validate a genesis file; every failure is a GenesisError naming the file."""
    file = str(path)
    try:
        text = Path(path).read_text(encoding="utf-8-sig")
    except FileNotFoundError:
        raise GenesisError("file not found", file=file) from None
    except IsADirectoryError:
        raise GenesisError("is a directory, not a genesis file", file=file) from None
    except UnicodeDecodeError as exc:
        reason = f"not UTF-8 text ({exc.reason} at byte {exc.start})"
        raise GenesisError(reason, file=file) from None
    except OSError as exc:
        raise GenesisError(f"cannot read file: {exc.strerror}", file=file) from None
    try:
        data = json.loads(text, object_pairs_hook=_reject_duplicate_keys)
    except json.JSONDecodeError as exc:
        raise GenesisError(
            f"invalid JSON at line {exc.lineno} column {exc.colno}: {exc.msg}", file=file
        ) from None
    except _DuplicateKeyError as exc:
        raise GenesisError(f"invalid JSON: duplicate key {exc.args[0]!r}", file=file) from None
    except (ValueError, RecursionError) as exc:
        raise GenesisError(f"invalid JSON: {exc}", file=file) from None
    try:
        return parse_genesis(data)
    except GenesisError as exc:
        raise exc.in_file(file) from None


def genesis_to_json(g: Genesis) -> dict[str, Any]:
    """The canonical JSON form: checksummed addresses, hex quantities; parse_genesis inverts it."""
    doc: dict[str, Any] = {
        "chainId": g.chain_id,
        "timestamp": hex(g.timestamp),
        "gasLimit": hex(g.gas_limit),
        "baseFeePerGas": hex(g.base_fee_per_gas),
    }
    if g.vanity != b"\x00" * VANITY_LENGTH:
        doc["vanity"] = "0x" + g.vanity.hex()
    doc["qbft"] = {
        "blockPeriodSeconds": g.qbft.block_period_seconds,
        "emptyBlockPeriodSeconds": g.qbft.empty_block_period_seconds,
        "requestTimeoutSeconds": g.qbft.request_timeout_seconds,
        "epochLength": g.qbft.epoch_length,
    }
    doc["validators"] = [to_checksum_address(v) for v in g.validators]
    if g.node_allowlist:
        # Only written when set, so files without it keep their exact canonical bytes.
        doc["nodeAllowlist"] = [to_checksum_address(a) for a in g.node_allowlist]
    doc["alloc"] = {to_checksum_address(a): _account_to_json(acc) for a, acc in g.alloc.items()}
    doc["systemContracts"] = {
        name: to_checksum_address(address) for name, address in g.system_contracts.items()
    }
    if g.forks:
        # Only written when set, so files without forks keep their exact canonical bytes.
        doc["forks"] = [fork_to_json(fork) for fork in g.forks]
    return doc


def fork_to_json(fork: Fork) -> dict[str, Any]:
    """The canonical JSON form of one fork (addresses checksummed, quantities in hex)."""
    doc: dict[str, Any] = {"block": fork.block, "name": fork.name}
    if fork.gas_limit is not None:
        doc["gasLimit"] = hex(fork.gas_limit)
    changes = fork.qbft.changes()
    if changes:
        doc["qbft"] = {_QBFT_CHANGE_FIELDS[attr]: value for attr, value in changes.items()}
    if fork.system_contracts:
        doc["systemContracts"] = {
            to_checksum_address(address): _upgrade_to_json(upgrade)
            for address, upgrade in fork.system_contracts.items()
        }
    return doc


def _upgrade_to_json(upgrade: ContractUpgrade) -> dict[str, Any]:
    doc: dict[str, Any] = {"code": "0x" + upgrade.code.hex()}
    if upgrade.storage:
        doc["storage"] = {hex(slot): hex(value) for slot, value in upgrade.storage.items()}
    return doc


def _account_to_json(account: AllocAccount) -> dict[str, Any]:
    doc: dict[str, Any] = {"balance": hex(account.balance)}
    if account.nonce:
        doc["nonce"] = hex(account.nonce)
    if account.code:
        doc["code"] = "0x" + account.code.hex()
    if account.storage:
        doc["storage"] = {hex(slot): hex(value) for slot, value in account.storage.items()}
    return doc


def dump_genesis(g: Genesis) -> str:
    """The canonical file text (indented JSON, trailing newline)."""
    return json.dumps(genesis_to_json(g), indent=2) + "\n"
