"""Signed QBFT messages and their RLP wire format, laid out as Besu's QBFT.

Wire: RLP([code, body]) with the message codes of Besu's QBFT sub-protocol.

- PREPARE      body = [[height, round, digest], signature]
- COMMIT       body = [[height, round, digest, commit_seal], signature]
- ROUND_CHANGE body = [[[height, round, prepared_round, prepared_digest], signature],
                       prepared_block, [signed prepares]]
- PROPOSAL     body = [[[height, round, block], signature],
                       [signed round-change payloads], [signed prepares]]

A "signed X" is [payload, signature]; the signature (65 bytes, r || s || v with
v in {0, 1}) is secp256k1 over keccak(code byte || RLP(payload)), which is how
Besu hashes a payload for signing: the code keeps one kind of message from being
replayed as another. A round change without a prepared certificate carries an
empty prepared_digest (and prepared_round), no block and no prepares.
The commit seal is `consensus.seals.sign_seal(digest)`: the signature that ends up
in the block's extraData.

`decode_message` checks structure, sizes and canonical encoding, and recovers
every author (of the message and of each justification entry); anything wrong
raises MessageError and nothing else. Whether a message makes sense for a
height (validator set, quorum, proposer) is for `consensus.qbft` to judge.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import lru_cache
from typing import Any

import rlp
from eth_keys import keys
from eth_keys.exceptions import BadSignature, ValidationError
from eth_utils import keccak
from rlp.codec import encode_raw

from consensus.extradata import MAX_VALIDATORS
from consensus.seals import FinalityError, recover_seal_signer, sign_seal

PROPOSAL = 0x12
PREPARE = 0x13
COMMIT = 0x14
ROUND_CHANGE = 0x15

MAX_MESSAGE_BYTES = 10 * 1024 * 1024
MAX_JUSTIFICATION = MAX_VALIDATORS
HEIGHT_BYTES = 8
ROUND_BYTES = 4
DIGEST_LENGTH = 32
SIGNATURE_LENGTH = 65

RlpItem = bytes | list[Any]


class MessageError(ValueError):
    """Bytes that are not a well-formed, correctly signed QBFT message."""


@lru_cache(maxsize=64)
def address_of(private_key: bytes) -> bytes:
    """The 20-byte address of a validator key."""
    return keys.PrivateKey(private_key).public_key.to_canonical_address()


def _signing_hash(code: int, payload: list[RlpItem]) -> bytes:
    # Payloads are nested lists of bytes: the raw encoder needs no sedes inference.
    return keccak(bytes([code]) + encode_raw(payload))


def _sign(code: int, payload: list[RlpItem], private_key: bytes) -> bytes:
    return keys.PrivateKey(private_key).sign_msg_hash(_signing_hash(code, payload)).to_bytes()


@lru_cache(maxsize=16384)
def _recover(msg_hash: bytes, signature: bytes) -> bytes:
    # Memoized: a message gossiped to a node is recovered once per distinct copy, and
    # justifications repeat the same signed prepares and round changes many times.
    try:
        public_key = keys.Signature(signature).recover_public_key_from_msg_hash(msg_hash)
    except (BadSignature, ValidationError, ValueError) as exc:
        raise MessageError(f"unrecoverable signature: {exc}") from exc
    return public_key.to_canonical_address()


@lru_cache(maxsize=16384)
def _recover_seal(digest: bytes, seal: bytes) -> bytes:
    try:
        return recover_seal_signer(digest, seal)
    except FinalityError as exc:
        raise MessageError(str(exc)) from exc


def _int(value: int, size: int) -> bytes:
    if value < 0 or value.bit_length() > size * 8:
        raise ValueError(f"{value} does not fit in {size} bytes")
    return value.to_bytes(size, "big").lstrip(b"\x00")


def _parse_int(item: RlpItem, size: int, what: str) -> int:
    if not isinstance(item, bytes) or len(item) > size:
        raise MessageError(f"{what} must be an integer of at most {size} bytes")
    if item[:1] == b"\x00":
        raise MessageError(f"{what} has leading zero bytes")
    return int.from_bytes(item, "big")


def _parse_bytes(item: RlpItem, length: int, what: str) -> bytes:
    if not isinstance(item, bytes) or len(item) != length:
        raise MessageError(f"{what} must be {length} bytes")
    return item


def _parse_list(item: RlpItem, length: int | None, what: str) -> list[RlpItem]:
    if not isinstance(item, list):
        raise MessageError(f"{what} must be a list")
    if length is not None and len(item) != length:
        raise MessageError(f"{what} must have {length} items, not {len(item)}")
    return item


def _parse_signed(item: RlpItem, what: str) -> tuple[list[RlpItem], bytes]:
    signed = _parse_list(item, 2, what)
    payload = _parse_list(signed[0], None, f"{what} payload")
    signature = _parse_bytes(signed[1], SIGNATURE_LENGTH, f"{what} signature")
    return payload, signature


def _author(code: int, payload: list[RlpItem], signature: bytes) -> bytes:
    return _recover(_signing_hash(code, payload), signature)


@dataclass(frozen=True)
class Prepare:
    height: int
    round: int
    digest: bytes
    signature: bytes
    author: bytes

    code = PREPARE

    def payload(self) -> list[RlpItem]:
        return [_int(self.height, HEIGHT_BYTES), _int(self.round, ROUND_BYTES), self.digest]

    def signed(self) -> list[RlpItem]:
        return [self.payload(), self.signature]

    def encode(self) -> bytes:
        return rlp.encode([PREPARE, self.signed()])

    @classmethod
    def from_signed(cls, item: RlpItem) -> Prepare:
        payload, signature = _parse_signed(item, "prepare")
        if len(payload) != 3:
            raise MessageError("prepare payload must be [height, round, digest]")
        return cls(
            height=_parse_int(payload[0], HEIGHT_BYTES, "height"),
            round=_parse_int(payload[1], ROUND_BYTES, "round"),
            digest=_parse_bytes(payload[2], DIGEST_LENGTH, "prepare digest"),
            signature=signature,
            author=_author(PREPARE, payload, signature),
        )


@dataclass(frozen=True)
class Commit:
    height: int
    round: int
    digest: bytes
    commit_seal: bytes
    signature: bytes
    author: bytes

    code = COMMIT

    def payload(self) -> list[RlpItem]:
        return [
            _int(self.height, HEIGHT_BYTES), _int(self.round, ROUND_BYTES),
            self.digest, self.commit_seal,
        ]

    def signed(self) -> list[RlpItem]:
        return [self.payload(), self.signature]

    def encode(self) -> bytes:
        return rlp.encode([COMMIT, self.signed()])

    @classmethod
    def from_signed(cls, item: RlpItem) -> Commit:
        payload, signature = _parse_signed(item, "commit")
        if len(payload) != 4:
            raise MessageError("commit payload must be [height, round, digest, commit seal]")
        height = _parse_int(payload[0], HEIGHT_BYTES, "height")
        round_number = _parse_int(payload[1], ROUND_BYTES, "round")
        digest = _parse_bytes(payload[2], DIGEST_LENGTH, "commit digest")
        seal = _parse_bytes(payload[3], SIGNATURE_LENGTH, "commit seal")
        author = _author(COMMIT, payload, signature)
        if _recover_seal(digest, seal) != author:
            raise MessageError("commit seal is not signed by the commit's author")
        return cls(
            height=height,
            round=round_number,
            digest=digest,
            commit_seal=seal,
            signature=signature,
            author=author,
        )


@dataclass(frozen=True)
class RoundChange:
    """A vote to move to `round`, with this validator's latest prepared certificate if any.

    Inside a proposal's justification only the signed payload travels:
    `prepared_block` is then None and `prepares` empty.
    """

    height: int
    round: int
    prepared_round: int | None
    prepared_digest: bytes | None
    signature: bytes
    author: bytes
    prepared_block: bytes | None = None
    prepares: tuple[Prepare, ...] = field(default=())

    code = ROUND_CHANGE

    def payload(self) -> list[RlpItem]:
        if self.prepared_digest is None or self.prepared_round is None:
            prepared: list[RlpItem] = [b"", b""]
        else:
            prepared = [_int(self.prepared_round, ROUND_BYTES), self.prepared_digest]
        return [_int(self.height, HEIGHT_BYTES), _int(self.round, ROUND_BYTES), *prepared]

    def signed(self) -> list[RlpItem]:
        return [self.payload(), self.signature]

    def without_certificate_body(self) -> RoundChange:
        """The signed payload alone, as it is embedded in a proposal."""
        return RoundChange(
            self.height, self.round, self.prepared_round, self.prepared_digest,
            self.signature, self.author,
        )

    def encode(self) -> bytes:
        return rlp.encode([
            ROUND_CHANGE,
            [self.signed(), self.prepared_block or b"", [p.signed() for p in self.prepares]],
        ])

    @classmethod
    def from_signed(cls, item: RlpItem) -> RoundChange:
        payload, signature = _parse_signed(item, "round change")
        if len(payload) != 4:
            raise MessageError(
                "round change payload must be [height, round, prepared round, prepared digest]"
            )
        prepared_round: int | None
        prepared_digest: bytes | None
        if payload[3] == b"":
            if payload[2] != b"":
                raise MessageError("round change has a prepared round but no prepared digest")
            prepared_round, prepared_digest = None, None
        else:
            prepared_round = _parse_int(payload[2], ROUND_BYTES, "prepared round")
            prepared_digest = _parse_bytes(payload[3], DIGEST_LENGTH, "prepared digest")
        return cls(
            height=_parse_int(payload[0], HEIGHT_BYTES, "height"),
            round=_parse_int(payload[1], ROUND_BYTES, "round"),
            prepared_round=prepared_round,
            prepared_digest=prepared_digest,
            signature=signature,
            author=_author(ROUND_CHANGE, payload, signature),
        )

    @classmethod
    def from_body(cls, body: RlpItem) -> RoundChange:
        items = _parse_list(body, 3, "round change")
        signed = cls.from_signed(items[0])
        block = items[1]
        if not isinstance(block, bytes):
            raise MessageError("round change prepared block must be bytes")
        prepares = _parse_prepares(items[2])
        if signed.prepared_digest is None:
            if block or prepares:
                raise MessageError("round change without prepared round carries a certificate")
            return signed
        if not block:
            raise MessageError("round change with a prepared round lacks the prepared block")
        return RoundChange(
            signed.height, signed.round, signed.prepared_round, signed.prepared_digest,
            signed.signature, signed.author, prepared_block=block, prepares=prepares,
        )


@dataclass(frozen=True)
class Proposal:
    height: int
    round: int
    block: bytes
    signature: bytes
    author: bytes
    round_changes: tuple[RoundChange, ...] = field(default=())
    prepares: tuple[Prepare, ...] = field(default=())

    code = PROPOSAL

    def payload(self) -> list[RlpItem]:
        return [_int(self.height, HEIGHT_BYTES), _int(self.round, ROUND_BYTES), self.block]

    def encode(self) -> bytes:
        return rlp.encode([
            PROPOSAL,
            [
                [self.payload(), self.signature],
                [rc.signed() for rc in self.round_changes],
                [p.signed() for p in self.prepares],
            ],
        ])

    @classmethod
    def from_body(cls, body: RlpItem) -> Proposal:
        items = _parse_list(body, 3, "proposal")
        payload, signature = _parse_signed(items[0], "proposal")
        if len(payload) != 3 or not isinstance(payload[2], bytes) or not payload[2]:
            raise MessageError("proposal payload must be [height, round, block]")
        round_changes = _parse_list(items[1], None, "round-change justification")
        if len(round_changes) > MAX_JUSTIFICATION:
            raise MessageError("too many round changes in a proposal")
        return cls(
            height=_parse_int(payload[0], HEIGHT_BYTES, "height"),
            round=_parse_int(payload[1], ROUND_BYTES, "round"),
            block=payload[2],
            signature=signature,
            author=_author(PROPOSAL, payload, signature),
            round_changes=tuple(RoundChange.from_signed(rc) for rc in round_changes),
            prepares=_parse_prepares(items[2]),
        )


Message = Proposal | Prepare | Commit | RoundChange


def _parse_prepares(item: RlpItem) -> tuple[Prepare, ...]:
    prepares = _parse_list(item, None, "prepare justification")
    if len(prepares) > MAX_JUSTIFICATION:
        raise MessageError("too many prepares in a justification")
    return tuple(Prepare.from_signed(p) for p in prepares)


def decode_message(raw: bytes) -> Message:
    """Parse and authenticate one wire message; MessageError on anything malformed."""
    if not isinstance(raw, bytes | bytearray | memoryview):
        raise MessageError("a message must be bytes")
    raw = bytes(raw)
    if len(raw) > MAX_MESSAGE_BYTES:
        raise MessageError(f"message of {len(raw)} bytes exceeds {MAX_MESSAGE_BYTES}")
    try:
        decoded = rlp.decode(raw)
    except rlp.exceptions.RLPException as exc:
        raise MessageError(f"not RLP: {exc}") from exc
    except RecursionError as exc:
        raise MessageError("RLP nested too deeply") from exc
    items = _parse_list(decoded, 2, "message")
    code = _parse_int(items[0], 1, "message code")
    body = items[1]
    if code == PREPARE:
        return Prepare.from_signed(body)
    if code == COMMIT:
        return Commit.from_signed(body)
    if code == ROUND_CHANGE:
        return RoundChange.from_body(body)
    if code == PROPOSAL:
        return Proposal.from_body(body)
    raise MessageError(f"unknown QBFT message code 0x{code:02x}")


# -- constructors -----------------------------------------------------------------------------


def _check_digest(digest: bytes) -> None:
    if len(digest) != DIGEST_LENGTH:
        raise ValueError("a digest is 32 bytes")


def sign_prepare(private_key: bytes, height: int, round: int, digest: bytes) -> Prepare:  # noqa: A002
    _check_digest(digest)
    unsigned = Prepare(height, round, digest, b"", b"")
    signature = _sign(PREPARE, unsigned.payload(), private_key)
    return Prepare(height, round, digest, signature, address_of(private_key))


def sign_commit(private_key: bytes, height: int, round: int, digest: bytes) -> Commit:  # noqa: A002
    _check_digest(digest)
    seal = sign_seal(digest, private_key)
    unsigned = Commit(height, round, digest, seal, b"", b"")
    signature = _sign(COMMIT, unsigned.payload(), private_key)
    return Commit(height, round, digest, seal, signature, address_of(private_key))


def sign_round_change(
    private_key: bytes,
    height: int,
    round: int,  # noqa: A002
    *,
    prepared_round: int | None = None,
    prepared_digest: bytes | None = None,
    prepared_block: bytes | None = None,
    prepares: tuple[Prepare, ...] = (),
) -> RoundChange:
    """A round change; pass all of prepared_round/digest/block/prepares, or none of them."""
    certified = prepared_digest is not None
    if certified != (prepared_round is not None) or certified != bool(prepared_block):
        raise ValueError("a prepared certificate needs its round, digest and block together")
    if not certified and prepares:
        raise ValueError("prepares belong to a prepared certificate")
    if prepared_digest is not None:
        _check_digest(prepared_digest)
    unsigned = RoundChange(height, round, prepared_round, prepared_digest, b"", b"")
    signature = _sign(ROUND_CHANGE, unsigned.payload(), private_key)
    return RoundChange(
        height, round, prepared_round, prepared_digest, signature, address_of(private_key),
        prepared_block=prepared_block if certified else None, prepares=tuple(prepares),
    )


def sign_proposal(
    private_key: bytes,
    height: int,
    round: int,  # noqa: A002
    block: bytes,
    *,
    round_changes: tuple[RoundChange, ...] = (),
    prepares: tuple[Prepare, ...] = (),
) -> Proposal:
    if not block:
        raise ValueError("a proposal needs a block")
    unsigned = Proposal(height, round, block, b"", b"")
    signature = _sign(PROPOSAL, unsigned.payload(), private_key)
    return Proposal(
        height, round, block, signature, address_of(private_key),
        round_changes=tuple(rc.without_certificate_body() for rc in round_changes),
        prepares=tuple(prepares),
    )
