"""The system contracts predeployed in genesis: fixed addresses and their initial state.

Predeployed contracts run no constructor. Their initial state (the founding member hospitals
with their first admins, the allowed nodes and accounts) is therefore written straight into the
storage slots that the Solidity storage layout assigns; the contracts document which slots these
are and must keep them. This was chosen over a one-time `initialize()` call: the chain is usable
from block 0 without a bootstrap transaction, and there is no window in which whoever calls
first could capture an uninitialised contract. `tests/test_contracts_genesis.py` checks the slot
numbers below against the layout solc reports, and that the contracts read back what genesis
wrote.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field

from eth_utils import keccak, to_checksum_address

from contracts.artifacts import load_artifact
from genesis.schema import ADDRESS_LENGTH, AllocAccount, GenesisError

MEDLEDGER_ADDRESS = bytes.fromhex("4d4c000000000000000000000000000000000001")
GOVERNANCE_ADDRESS = bytes.fromhex("4d4c000000000000000000000000000000000002")
NODE_ALLOW_LIST_ADDRESS = bytes.fromhex("4d4c000000000000000000000000000000000003")
ACCOUNT_ALLOW_LIST_ADDRESS = bytes.fromhex("4d4c000000000000000000000000000000000004")
# Zero-knowledge contracts (contracts/src/zk/ZkAddresses.sol holds the same values).
POSEIDON_T3_ADDRESS = bytes.fromhex("4d4c000000000000000000000000000000000010")
MEMBERSHIP_VERIFIER_ADDRESS = bytes.fromhex("4d4c000000000000000000000000000000000011")
ATTRIBUTE_VERIFIER_ADDRESS = bytes.fromhex("4d4c000000000000000000000000000000000012")
RESEARCH_CONSENT_ADDRESS = bytes.fromhex("4d4c000000000000000000000000000000000013")
ATTRIBUTE_REGISTRY_ADDRESS = bytes.fromhex("4d4c000000000000000000000000000000000014")

# genesis `systemContracts` name -> (artifact name, address)
SYSTEM_CONTRACTS: Mapping[str, tuple[str, bytes]] = {
    "medLedger": ("MedLedger", MEDLEDGER_ADDRESS),
    "consortiumGovernance": ("ConsortiumGovernance", GOVERNANCE_ADDRESS),
    "nodeAllowList": ("NodeAllowList", NODE_ALLOW_LIST_ADDRESS),
    "accountAllowList": ("AccountAllowList", ACCOUNT_ALLOW_LIST_ADDRESS),
    # PoseidonT3 is circomlibjs-generated EVM code (contracts/zk/artifacts), not solc output.
    "poseidonT3": ("PoseidonT3", POSEIDON_T3_ADDRESS),
    "membershipVerifier": ("MembershipVerifier", MEMBERSHIP_VERIFIER_ADDRESS),
    "attributeVerifier": ("AttributeVerifier", ATTRIBUTE_VERIFIER_ADDRESS),
    "researchConsent": ("ResearchConsent", RESEARCH_CONSENT_ADDRESS),
    "attributeRegistry": ("AttributeRegistry", ATTRIBUTE_REGISTRY_ADDRESS),
}

# Storage layout the genesis writes into (see the slot comments in the .sol files).
MEDLEDGER_SLOT_COUNTS = 0  # uint32 hospitalCount (bytes 0-3), uint32 memberCount (bytes 4-7)
MEDLEDGER_SLOT_HOSPITALS = 1  # mapping(uint32 => uint256): 1 = active member
MEDLEDGER_SLOT_HOSPITAL_NAMES = 2  # mapping(uint32 => bytes32)
MEDLEDGER_SLOT_ACCOUNTS = 3  # mapping(address => uint256): the account word
MEDLEDGER_SLOT_PERSON_ACCOUNTS = 4  # mapping(bytes32 => address)
ALLOW_LIST_SLOT_ENTRIES = 0  # address[]
ALLOW_LIST_SLOT_POSITIONS = 1  # mapping(address => uint256): index + 1

ROLE_ADMIN = 1
ACCOUNT_ACTIVE_BIT = 1 << 8
ACCOUNT_HOSPITAL_SHIFT = 16
NAME_LENGTH = 32


def mapping_slot(key: bytes | int, slot: int) -> int:
    """Storage slot of `mapping[key]` for a mapping declared at `slot` (value types as keys)."""
    word = key.to_bytes(32, "big") if isinstance(key, int) else key.rjust(32, b"\x00")
    if len(word) != 32:
        raise ValueError(f"mapping key longer than 32 bytes: {key!r}")
    return int.from_bytes(keccak(word + slot.to_bytes(32, "big")), "big")


def array_element_slot(slot: int, index: int) -> int:
    """Storage slot of element `index` of a dynamic array of 32-byte-or-less-per-slot values."""
    return int.from_bytes(keccak(slot.to_bytes(32, "big")), "big") + index


def genesis_person_id(admin: bytes) -> bytes:
    """Pseudonymous person id of a founding admin: a founder has no registration of its own."""
    return keccak(b"medledger:genesis-admin:" + admin)


def encode_member_name(name: str) -> bytes:
    """A member's name as the contract's bytes32 (UTF-8, left-aligned, zero-padded)."""
    raw = name.encode("utf-8")
    if not raw or len(raw) > NAME_LENGTH or b"\x00" in raw:
        raise GenesisError(f"must be 1-{NAME_LENGTH} UTF-8 bytes without NUL, got {name!r}")
    return raw.ljust(NAME_LENGTH, b"\x00")


def decode_member_name(word: bytes) -> str:
    return word.rstrip(b"\x00").decode("utf-8")


def _check_address(value: object, path: str) -> bytes:
    if not isinstance(value, bytes) or len(value) != ADDRESS_LENGTH:
        raise GenesisError(f"must be a 20-byte address, got {value!r}", path)
    if value == b"\x00" * ADDRESS_LENGTH:
        raise GenesisError("the zero address is not allowed", path)
    return value


def _unique(values: Iterable[bytes], path: str) -> tuple[bytes, ...]:
    seen: dict[bytes, int] = {}
    for index, value in enumerate(values):
        _check_address(value, f"{path}.{index}")
        if value in seen:
            raise GenesisError(
                f"duplicate {to_checksum_address(value)} (same as {path}.{seen[value]})",
                f"{path}.{index}",
            )
        seen[value] = index
    return tuple(seen)


@dataclass(frozen=True)
class Member:
    """A founding member hospital and its first admin account."""

    name: str
    admin: bytes

    def __post_init__(self) -> None:
        try:
            encode_member_name(self.name)
        except GenesisError as exc:
            raise exc.under("name") from None
        _check_address(self.admin, "admin")


@dataclass(frozen=True)
class SystemSetup:
    """The initial consortium the system contracts start with.

    `nodes` seed NodeAllowList; `accounts` are explicit AccountAllowList entries (every active
    account registered in MedLedger, founding admins included, is allowed anyway).
    """

    members: Sequence[Member]
    nodes: Sequence[bytes]
    accounts: Sequence[bytes] = field(default_factory=tuple)

    def __post_init__(self) -> None:
        members = tuple(self.members)
        if not members:
            raise GenesisError("at least one member hospital is required", "members")
        for index, member in enumerate(members):
            if not isinstance(member, Member):
                raise GenesisError(
                    f"must be a Member, got {type(member).__name__}", f"members.{index}"
                )
        names: dict[str, int] = {}
        for index, member in enumerate(members):
            if member.name in names:
                raise GenesisError(
                    f"duplicate member name {member.name!r} (same as members.{names[member.name]})",
                    f"members.{index}.name",
                )
            names[member.name] = index
        _unique((m.admin for m in members), "members.admin")
        nodes = _unique(self.nodes, "nodes")
        if not nodes:
            raise GenesisError("at least one node is required", "nodes")
        object.__setattr__(self, "members", members)
        object.__setattr__(self, "nodes", nodes)
        object.__setattr__(self, "accounts", _unique(self.accounts, "accounts"))


def default_setup(
    validators: Sequence[bytes],
    *,
    members: Sequence[Member] | None = None,
    extra_nodes: Sequence[bytes] = (),
    accounts: Sequence[bytes] = (),
) -> SystemSetup:
    """Validators are the allowed nodes; without `members`, each validator's hospital is a
    member whose first admin is the validator address itself (convenient for a devnet: the
    keys `genesis new` writes can then govern)."""
    if members is None:
        members = [Member(f"hospital-{i}", v) for i, v in enumerate(validators, 1)]
    nodes = list(validators) + [n for n in extra_nodes if n not in validators]
    return SystemSetup(members=members, nodes=nodes, accounts=accounts)


def medledger_storage(members: Sequence[Member]) -> dict[int, int]:
    """MedLedger's genesis storage: members 1..n active, each with its admin registered."""
    count = len(members)
    storage = {MEDLEDGER_SLOT_COUNTS: count | (count << 32)}
    for hospital_id, member in enumerate(members, 1):
        storage[mapping_slot(hospital_id, MEDLEDGER_SLOT_HOSPITALS)] = 1
        name = int.from_bytes(encode_member_name(member.name), "big")
        storage[mapping_slot(hospital_id, MEDLEDGER_SLOT_HOSPITAL_NAMES)] = name
        word = ROLE_ADMIN | ACCOUNT_ACTIVE_BIT | (hospital_id << ACCOUNT_HOSPITAL_SHIFT)
        storage[mapping_slot(member.admin, MEDLEDGER_SLOT_ACCOUNTS)] = word
        person = genesis_person_id(member.admin)
        storage[mapping_slot(person, MEDLEDGER_SLOT_PERSON_ACCOUNTS)] = int.from_bytes(
            member.admin, "big"
        )
    return storage


def allow_list_storage(entries: Sequence[bytes]) -> dict[int, int]:
    """An AllowList's genesis storage holding `entries` in order."""
    storage = {ALLOW_LIST_SLOT_ENTRIES: len(entries)} if entries else {}
    for index, entry in enumerate(entries):
        storage[array_element_slot(ALLOW_LIST_SLOT_ENTRIES, index)] = int.from_bytes(entry, "big")
        storage[mapping_slot(entry, ALLOW_LIST_SLOT_POSITIONS)] = index + 1
    return storage


def system_alloc(setup: SystemSetup) -> tuple[dict[bytes, AllocAccount], dict[str, bytes]]:
    """Genesis `alloc` entries and `systemContracts` names for all system contracts."""
    storage = {
        "medLedger": medledger_storage(setup.members),
        "consortiumGovernance": {},
        "nodeAllowList": allow_list_storage(setup.nodes),
        "accountAllowList": allow_list_storage(setup.accounts),
    }
    alloc: dict[bytes, AllocAccount] = {}
    names: dict[str, bytes] = {}
    for name, (artifact, address) in SYSTEM_CONTRACTS.items():
        code = load_artifact(artifact).deployed_bytecode
        # nonce 1 as for any contract account (EIP-161), so it can never be "empty".
        alloc[address] = AllocAccount(nonce=1, code=code, storage=storage.get(name, {}))
        names[name] = address
    return alloc, names
