"""Python bindings for the system contracts, built on eth_abi and the committed artifact ABIs.

No web3 at runtime: a binding turns a function name and arguments into calldata, decodes call
results, custom-error revert data and event logs. Who sends or calls is up to the caller: views
take a `CallFn` (to, calldata) -> output, so the node can pass its in-process eth_call and a
client can pass a JSON-RPC one. Addresses are 20-byte `bytes` in and out; hashes 32-byte `bytes`.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from enum import IntEnum
from functools import cache, lru_cache
from typing import Any

from eth_abi import decode as abi_decode
from eth_abi import encode as abi_encode
from eth_utils import keccak

from contracts.artifacts import load_artifact
from contracts.resource_types import resource_type_code
from genesis.system import (
    ACCOUNT_ALLOW_LIST_ADDRESS,
    GOVERNANCE_ADDRESS,
    MEDLEDGER_ADDRESS,
    NODE_ALLOW_LIST_ADDRESS,
    decode_member_name,
    encode_member_name,
)

CallFn = Callable[[bytes, bytes], bytes]
"""Executes a read-only call: (contract address, calldata) -> return data; raises on revert."""

HOSPITAL_KEY_PREFIX = bytes.fromhex("686f7370") + b"\x00" * 12
_ERROR_STRING = keccak(text="Error(string)")[:4]
_PANIC = keccak(text="Panic(uint256)")[:4]


class BindingError(ValueError):
    """A function, event or argument that the contract's ABI does not accept."""


# --------------------------------------------------------------------------- domain enums


class Role(IntEnum):
    ADMIN = 1
    DOCTOR = 2
    NURSE = 3
    RESEARCHER = 4
    AUDITOR = 5
    PATIENT = 6


class Purpose(IntEnum):
    """Why a record is read (HIPAA: treatment, payment, health care operations, research)."""

    TREATMENT = 0
    PAYMENT = 1
    OPERATIONS = 2
    RESEARCH = 3


class ScopeKind(IntEnum):
    RECORD = 1
    RESOURCE_TYPE = 2


class BreakGlassReason(IntEnum):
    LIFE_THREATENING = 1
    UNABLE_TO_CONSENT = 2
    URGENT_CONSENT_UNOBTAINABLE = 3
    OTHER = 4  # needs a detail hash


class ReviewStatus(IntEnum):
    PENDING = 1
    JUSTIFIED = 2
    UNJUSTIFIED = 3


class AuditAction(IntEnum):
    """FHIR AuditEvent.action R / C / U / D / E, stored on chain as 0-4."""

    READ = 0
    CREATE = 1
    UPDATE = 2
    DELETE = 3
    EXECUTE = 4


class AuditOutcome(IntEnum):
    """FHIR AuditEvent.outcome 0 / 4 / 8 / 12, stored on chain as 0-3."""

    SUCCESS = 0
    MINOR_FAILURE = 1
    SERIOUS_FAILURE = 2
    MAJOR_FAILURE = 3


def purposes_mask(*purposes: Purpose | int) -> int:
    """The purposes bitmap a grant carries (e.g. TREATMENT + RESEARCH -> 0b1001)."""
    if not purposes:
        raise BindingError("at least one purpose is required")
    mask = 0
    for purpose in purposes:
        mask |= 1 << Purpose(purpose)
    return mask


def hospital_grantee(hospital_id: int) -> bytes:
    """The address that stands for a whole member hospital as a grantee."""
    if not 0 < hospital_id < 2**32:
        raise BindingError(f"hospital id out of range: {hospital_id}")
    return HOSPITAL_KEY_PREFIX + hospital_id.to_bytes(4, "big")


def version_digest(
    record_id: bytes, version: int, cid: bytes, content_hash: bytes, author: bytes, timestamp: int
) -> bytes:
    """What MedLedger.versionDigest stores for a version: recompute it from an event to prove
    that event data (from any node's eth_getLogs) is what the chain registered."""
    return keccak(
        abi_encode(
            ["bytes32", "uint256", "bytes32", "bytes32", "address", "uint256"],
            [record_id, version, keccak(cid), content_hash, author, timestamp],
        )
    )


# --------------------------------------------------------------------------- generic ABI


@dataclass(frozen=True)
class LogEntry:
    """A log as a receipt or eth_getLogs gives it: 32-byte topics, raw data."""

    address: bytes
    topics: tuple[bytes, ...]
    data: bytes


@dataclass(frozen=True)
class Event:
    """A decoded event: name, emitting contract, arguments by name."""

    name: str
    address: bytes
    args: dict[str, Any]


@dataclass(frozen=True)
class ContractError:
    """A decoded revert: a custom error, Error(string) or Panic(uint256)."""

    name: str
    args: dict[str, Any]

    def __str__(self) -> str:
        shown = ", ".join(f"{k}={_show(v)}" for k, v in self.args.items())
        return f"{self.name}({shown})"


def _show(value: Any) -> str:
    return "0x" + value.hex() if isinstance(value, bytes) else repr(value)


def _type_of(param: dict[str, Any]) -> str:
    kind = str(param["type"])
    if kind.startswith("tuple"):
        inner = ",".join(_type_of(c) for c in param["components"])
        return f"({inner}){kind[5:]}"
    return kind


def _normalise(kind: str, value: Any) -> Any:
    """eth_abi gives checksummed str addresses; the project uses 20-byte bytes."""
    if kind.endswith("]"):
        inner = kind[: kind.rindex("[")]
        return [_normalise(inner, v) for v in value]
    if kind == "address":
        return bytes.fromhex(value[2:])
    return value


@cache
def _abi(artifact_name: str) -> tuple[dict[str, Any], ...]:
    return tuple(load_artifact(artifact_name).abi)


def _signature(entry: dict[str, Any]) -> str:
    return f"{entry['name']}({','.join(_type_of(p) for p in entry['inputs'])})"


class Contract:
    """ABI-driven encoder/decoder for one contract at one address."""

    def __init__(self, name: str, abi: Sequence[dict[str, Any]], address: bytes) -> None:
        if not isinstance(address, bytes) or len(address) != 20:
            raise BindingError(f"address must be 20 bytes, got {address!r}")
        self.name = name
        self.address = address
        self._functions: dict[str, dict[str, Any]] = {}
        self._events: dict[bytes, dict[str, Any]] = {}
        self._event_topics: dict[str, bytes] = {}
        self._errors: dict[bytes, dict[str, Any]] = {}
        for entry in abi:
            kind = entry.get("type")
            if kind == "function":
                if entry["name"] in self._functions:
                    raise BindingError(f"{name}.{entry['name']} is overloaded; not supported")
                self._functions[entry["name"]] = entry
            elif kind == "event":
                topic = keccak(text=_signature(entry))
                self._events[topic] = entry
                self._event_topics[entry["name"]] = topic
            elif kind == "error":
                self._errors[keccak(text=_signature(entry))[:4]] = entry

    @classmethod
    def from_artifact(cls, artifact_name: str, address: bytes) -> Contract:
        return cls(artifact_name, _abi(artifact_name), address)

    # -- functions --------------------------------------------------------------------

    def _function(self, fn: str) -> dict[str, Any]:
        try:
            return self._functions[fn]
        except KeyError:
            raise BindingError(f"{self.name} has no function {fn!r}") from None

    def selector(self, fn: str) -> bytes:
        return keccak(text=_signature(self._function(fn)))[:4]

    def encode(self, fn: str, *args: Any) -> bytes:
        """Calldata for `fn(*args)`."""
        entry = self._function(fn)
        types = [_type_of(p) for p in entry["inputs"]]
        if len(args) != len(types):
            raise BindingError(f"{self.name}.{fn} takes {len(types)} arguments, got {len(args)}")
        try:
            return self.selector(fn) + abi_encode(types, list(args))
        except Exception as exc:  # eth_abi raises several unrelated types for bad values
            raise BindingError(f"{self.name}.{fn}: cannot encode {args!r}: {exc}") from exc

    def decode(self, fn: str, output: bytes) -> Any:
        """Decode `fn`'s return data: one value unwrapped, several as a tuple."""
        types = [_type_of(p) for p in self._function(fn)["outputs"]]
        decoded = abi_decode(types, output)
        values = tuple(_normalise(t, v) for t, v in zip(types, decoded, strict=True))
        return values[0] if len(values) == 1 else values

    def call(self, call: CallFn, fn: str, *args: Any) -> Any:
        return self.decode(fn, call(self.address, self.encode(fn, *args)))

    # -- events -----------------------------------------------------------------------

    def event_topic(self, name: str) -> bytes:
        try:
            return self._event_topics[name]
        except KeyError:
            raise BindingError(f"{self.name} has no event {name!r}") from None

    def decode_log(self, log: LogEntry) -> Event | None:
        """The event `log` carries if this contract (at its address) emitted it, else None."""
        if log.address != self.address or not log.topics:
            return None
        entry = self._events.get(log.topics[0])
        if entry is None:
            return None
        indexed = [p for p in entry["inputs"] if p["indexed"]]
        plain = [p for p in entry["inputs"] if not p["indexed"]]
        if len(log.topics) != len(indexed) + 1:
            raise BindingError(f"{entry['name']}: expected {len(indexed)} indexed topics")
        args: dict[str, Any] = {}
        for param, topic in zip(indexed, log.topics[1:], strict=True):
            kind = _type_of(param)
            if kind in ("string", "bytes") or kind.endswith("]") or kind.startswith("("):
                args[param["name"]] = topic  # dynamic values are indexed by their hash
            else:
                args[param["name"]] = _normalise(kind, abi_decode([kind], topic)[0])
        types = [_type_of(p) for p in plain]
        for param, kind, value in zip(plain, types, abi_decode(types, log.data), strict=True):
            args[param["name"]] = _normalise(kind, value)
        return Event(name=entry["name"], address=log.address, args=args)

    def decode_logs(self, logs: Iterable[LogEntry]) -> list[Event]:
        return [e for e in (self.decode_log(log) for log in logs) if e is not None]

    # -- errors -----------------------------------------------------------------------

    def decode_error(self, data: bytes) -> ContractError | None:
        """A custom error of this contract, Error(string) or Panic(uint256); None otherwise."""
        selector, payload = data[:4], data[4:]
        try:
            if selector == _ERROR_STRING:
                return ContractError("Error", {"message": abi_decode(["string"], payload)[0]})
            if selector == _PANIC:
                return ContractError("Panic", {"code": abi_decode(["uint256"], payload)[0]})
            entry = self._errors.get(selector)
            if entry is None:
                return None
            types = [_type_of(p) for p in entry["inputs"]]
            values = abi_decode(types, payload)
        except Exception:  # truncated or malformed revert data: not decodable
            return None
        args = {
            p["name"]: _normalise(t, v)
            for p, t, v in zip(entry["inputs"], types, values, strict=True)
        }
        return ContractError(entry["name"], args)


# --------------------------------------------------------------------------- typed wrappers


@dataclass(frozen=True)
class AccountInfo:
    role: int  # a Role, or 0 when not registered
    hospital: int
    active: bool


@dataclass(frozen=True)
class RecordInfo:
    patient: bytes  # zero address: no such record
    hospital: int
    resource_type: int
    versions: int


@dataclass(frozen=True)
class GrantInfo:
    purposes: int
    expiry: int

    def allows(self, purpose: Purpose, now: int) -> bool:
        return bool(self.purposes & (1 << purpose)) and now < self.expiry


@dataclass(frozen=True)
class BreakGlassCase:
    clinician: bytes
    patient: bytes
    opened_at: int
    until: int
    reason: BreakGlassReason
    status: ReviewStatus


@dataclass(frozen=True)
class Proposal:
    target: bytes
    data: bytes
    proposer: bytes
    deadline: int
    yes_votes: int
    executed: bool


def _type_code(resource_type: str | int) -> int:
    try:
        return resource_type_code(resource_type)
    except ValueError as exc:
        raise BindingError(str(exc)) from None


class MedLedger(Contract):
    """Identity, records, consent, break-glass and the audit log. Transaction methods return
    calldata for the caller to sign; view methods take a CallFn and return decoded values."""

    def __init__(self, address: bytes = MEDLEDGER_ADDRESS) -> None:
        super().__init__("MedLedger", _abi("MedLedger"), address)

    # members and accounts
    def add_member(self, name: str, admin: bytes, admin_person_id: bytes) -> bytes:
        return self.encode("addMember", encode_member_name(name), admin, admin_person_id)

    def set_member_active(self, hospital: int, active: bool) -> bytes:
        return self.encode("setMemberActive", hospital, active)

    def register_staff(self, account: bytes, person_id: bytes, role: Role) -> bytes:
        return self.encode("registerStaff", account, person_id, int(role))

    def register_patient(self, account: bytes, person_id: bytes) -> bytes:
        return self.encode("registerPatient", account, person_id)

    def set_account_active(self, account: bytes, active: bool) -> bytes:
        return self.encode("setAccountActive", account, active)

    def set_delegate(self, delegate: bytes, enabled: bool) -> bytes:
        return self.encode("setDelegate", delegate, enabled)

    # records
    def create_record(
        self,
        record_id: bytes,
        patient: bytes,
        resource_type: str | int,
        cid: bytes,
        content_hash: bytes,
    ) -> bytes:
        return self.encode(
            "createRecord", record_id, patient, _type_code(resource_type), cid, content_hash
        )

    def add_version(self, record_id: bytes, cid: bytes, content_hash: bytes) -> bytes:
        return self.encode("addVersion", record_id, cid, content_hash)

    # consent
    def grant(self, grantee: bytes, record_id: bytes, purposes: int, expiry: int) -> bytes:
        return self.encode("grant", grantee, record_id, purposes, expiry)

    def grant_records(
        self, grantee: bytes, record_ids: Sequence[bytes], purposes: int, expiry: int
    ) -> bytes:
        return self.encode("grantRecords", grantee, list(record_ids), purposes, expiry)

    def grant_resource_type(
        self, patient: bytes, grantee: bytes, resource_type: str | int, purposes: int, expiry: int
    ) -> bytes:
        return self.encode(
            "grantResourceType", patient, grantee, _type_code(resource_type), purposes, expiry
        )

    def revoke(self, grantee: bytes, record_id: bytes) -> bytes:
        return self.encode("revoke", grantee, record_id)

    def revoke_records(self, grantee: bytes, record_ids: Sequence[bytes]) -> bytes:
        return self.encode("revokeRecords", grantee, list(record_ids))

    def revoke_resource_type(
        self, patient: bytes, grantee: bytes, resource_type: str | int
    ) -> bytes:
        return self.encode("revokeResourceType", patient, grantee, _type_code(resource_type))

    # break-glass and audit
    def open_break_glass(
        self, patient: bytes, reason: BreakGlassReason | int, detail_hash: bytes = b"\x00" * 32
    ) -> bytes:
        return self.encode("openBreakGlass", patient, int(reason), detail_hash)

    def review_break_glass(
        self, case_id: int, justified: bool, note_hash: bytes = b"\x00" * 32
    ) -> bytes:
        return self.encode("reviewBreakGlass", case_id, justified, note_hash)

    def log_access(
        self,
        record_id: bytes,
        purpose: Purpose,
        action: AuditAction = AuditAction.READ,
        outcome: AuditOutcome = AuditOutcome.SUCCESS,
    ) -> bytes:
        return self.encode("logAccess", record_id, int(purpose), int(action), int(outcome))

    def request_access(self, record_id: bytes, purpose: Purpose) -> bytes:
        return self.encode("requestAccess", record_id, int(purpose))

    # views
    def can_access(self, call: CallFn, grantee: bytes, record_id: bytes, purpose: Purpose) -> bool:
        return bool(self.call(call, "canAccess", grantee, record_id, int(purpose)))

    def account_info(self, call: CallFn, who: bytes) -> AccountInfo:
        role, hospital, active = self.call(call, "accountInfo", who)
        return AccountInfo(role=role, hospital=hospital, active=active)

    def account_of_person(self, call: CallFn, person_id: bytes) -> bytes | None:
        account = self.call(call, "accountOfPerson", person_id)
        return None if account == b"\x00" * 20 else account

    def member(self, call: CallFn, hospital: int) -> tuple[str, bool]:
        name, active = self.call(call, "member", hospital)
        return decode_member_name(name), active

    def member_count(self, call: CallFn) -> int:
        return int(self.call(call, "memberCount"))

    def member_admin_of(self, call: CallFn, admin: bytes) -> int:
        return int(self.call(call, "memberAdminOf", admin))

    def record(self, call: CallFn, record_id: bytes) -> RecordInfo:
        patient, hospital, resource_type, versions = self.call(call, "record", record_id)
        return RecordInfo(patient, hospital, resource_type, versions)

    def version_digest(self, call: CallFn, record_id: bytes, version: int) -> bytes:
        return bytes(self.call(call, "versionDigest", record_id, version))

    def record_grant(self, call: CallFn, grantee: bytes, record_id: bytes) -> GrantInfo:
        return GrantInfo(*self.call(call, "recordGrant", grantee, record_id))

    def resource_type_grant(
        self, call: CallFn, grantee: bytes, patient: bytes, resource_type: str | int
    ) -> GrantInfo:
        code = _type_code(resource_type)
        return GrantInfo(*self.call(call, "resourceTypeGrant", grantee, patient, code))

    def break_glass_case(self, call: CallFn, case_id: int) -> BreakGlassCase:
        clinician, patient, opened, until, reason, status = self.call(
            call, "breakGlassCase", case_id
        )
        return BreakGlassCase(
            clinician, patient, opened, until, BreakGlassReason(reason), ReviewStatus(status)
        )


class ConsortiumGovernance(Contract):
    """Majority vote of the member hospitals over calls to the other system contracts."""

    def __init__(self, address: bytes = GOVERNANCE_ADDRESS) -> None:
        super().__init__("ConsortiumGovernance", _abi("ConsortiumGovernance"), address)

    def propose(self, target: bytes, data: bytes) -> bytes:
        return self.encode("propose", target, data)

    def vote(self, proposal_id: int) -> bytes:
        return self.encode("vote", proposal_id)

    def proposal(self, call: CallFn, proposal_id: int) -> Proposal:
        return Proposal(*self.call(call, "proposal", proposal_id))

    def has_voted(self, call: CallFn, proposal_id: int, member: int) -> bool:
        return bool(self.call(call, "hasVoted", proposal_id, member))

    def votes_needed(self, call: CallFn) -> int:
        return int(self.call(call, "votesNeeded"))


class NodeAllowList(Contract):
    """Nodes allowed in the network (node addresses); changed by consortium vote."""

    def __init__(self, address: bytes = NODE_ALLOW_LIST_ADDRESS) -> None:
        super().__init__("NodeAllowList", _abi("NodeAllowList"), address)

    def add_node(self, node: bytes) -> bytes:
        return self.encode("addNode", node)

    def remove_node(self, node: bytes) -> bytes:
        return self.encode("removeNode", node)

    def allowed_nodes(self, call: CallFn) -> list[bytes]:
        return list(self.call(call, "allowedNodes"))

    def is_node_allowed(self, call: CallFn, node: bytes) -> bool:
        return bool(self.call(call, "isNodeAllowed", node))

    def connection_allowed(self, call: CallFn, source: bytes, destination: bytes) -> bool:
        return bool(self.call(call, "connectionAllowed", source, destination))


class AccountAllowList(Contract):
    """Accounts allowed to transact: explicit entries plus MedLedger's active accounts."""

    def __init__(self, address: bytes = ACCOUNT_ALLOW_LIST_ADDRESS) -> None:
        super().__init__("AccountAllowList", _abi("AccountAllowList"), address)

    def add_account(self, account: bytes) -> bytes:
        return self.encode("addAccount", account)

    def remove_account(self, account: bytes) -> bytes:
        return self.encode("removeAccount", account)

    def allowed_accounts(self, call: CallFn) -> list[bytes]:
        return list(self.call(call, "allowedAccounts"))

    def is_account_allowed(self, call: CallFn, account: bytes) -> bool:
        return bool(self.call(call, "isAccountAllowed", account))

    def transaction_allowed(
        self,
        call: CallFn,
        sender: bytes,
        target: bytes | None = None,
        value: int = 0,
        gas_price: int = 0,
        gas_limit: int = 0,
        payload: bytes = b"",
    ) -> bool:
        """Besu's AccountRules check for one transaction (a contract creation: target None)."""
        to = target if target is not None else b"\x00" * 20
        return bool(
            self.call(
                call, "transactionAllowed", sender, to, value, gas_price, gas_limit, payload
            )
        )


@lru_cache(maxsize=1)
def system_contracts() -> tuple[MedLedger, ConsortiumGovernance, NodeAllowList, AccountAllowList]:
    """Bindings for the four system contracts at their genesis addresses."""
    return MedLedger(), ConsortiumGovernance(), NodeAllowList(), AccountAllowList()


def decode_revert(data: bytes) -> ContractError | None:
    """Decode revert data from any system contract (custom errors, Error, Panic)."""
    for contract in system_contracts():
        error = contract.decode_error(data)
        if error is not None:
            return error
    return None
