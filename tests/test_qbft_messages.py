"""QBFT wire messages: layout, round trips, authentication, garbage only ever MessageError."""

from __future__ import annotations

import random

import pytest
import rlp
from eth_keys import keys
from eth_utils import keccak

from consensus.messages import (
    COMMIT,
    MAX_JUSTIFICATION,
    MAX_MESSAGE_BYTES,
    PREPARE,
    PROPOSAL,
    ROUND_CHANGE,
    Commit,
    MessageError,
    Prepare,
    Proposal,
    RoundChange,
    address_of,
    decode_message,
    sign_commit,
    sign_prepare,
    sign_proposal,
    sign_round_change,
)
from consensus.seals import recover_seal_signer, sign_seal

KEYS = [keccak(b"messages test key %d" % i) for i in range(4)]
DIGEST = keccak(b"block")
BLOCK = b"\xc5opaque block bytes"


def sample_messages() -> list[Prepare | Commit | RoundChange | Proposal]:
    prepares = tuple(sign_prepare(k, 9, 1, DIGEST) for k in KEYS[:3])
    certified = sign_round_change(
        KEYS[0], 9, 2, prepared_round=1, prepared_digest=DIGEST, prepared_block=BLOCK,
        prepares=prepares,
    )
    plain = sign_round_change(KEYS[1], 9, 2)
    return [
        sign_prepare(KEYS[0], 9, 0, DIGEST),
        sign_commit(KEYS[1], 9, 3, DIGEST),
        plain,
        certified,
        sign_round_change(KEYS[2], 9, 5, prepared_round=0, prepared_digest=DIGEST,
                          prepared_block=BLOCK, prepares=prepares),
        sign_proposal(KEYS[2], 9, 0, BLOCK),
        sign_proposal(KEYS[3], 9, 2, BLOCK, round_changes=(certified, plain), prepares=prepares),
    ]


def test_every_message_round_trips_with_its_author() -> None:
    for message in sample_messages():
        decoded = decode_message(message.encode())
        assert decoded == message
        assert decoded.encode() == message.encode()
    proposal = sample_messages()[-1]
    assert isinstance(proposal, Proposal)
    assert proposal.author == address_of(KEYS[3])
    # Round changes inside a proposal travel as signed payloads only.
    authors = [rc.author for rc in proposal.round_changes]
    assert authors == [address_of(KEYS[0]), address_of(KEYS[1])]
    assert all(rc.prepared_block is None and rc.prepares == () for rc in proposal.round_changes)
    assert proposal.round_changes[0].prepared_digest == DIGEST
    assert [p.author for p in proposal.prepares] == [address_of(k) for k in KEYS[:3]]


def test_wire_layout_is_besu_like() -> None:
    prepare = sign_prepare(KEYS[0], 300, 2, DIGEST)
    code, body = rlp.decode(prepare.encode())
    assert code == bytes([PREPARE]) == b"\x13"
    payload, signature = body
    assert payload == [(300).to_bytes(2, "big"), b"\x02", DIGEST]
    assert len(signature) == 65 and signature[64] in (0, 1)
    # The signature covers the message code and the payload RLP, as Besu's hashForSignature.
    signed_hash = keccak(bytes([PREPARE]) + rlp.encode(payload))
    assert recover_seal_signer(signed_hash, signature) == address_of(KEYS[0])

    commit = sign_commit(KEYS[1], 300, 2, DIGEST)
    code, (payload, _) = rlp.decode(commit.encode())
    assert code == bytes([COMMIT])
    assert payload[3] == commit.commit_seal == sign_seal(DIGEST, KEYS[1])

    rc = sign_round_change(KEYS[2], 300, 1)
    code, body = rlp.decode(rc.encode())
    assert code == bytes([ROUND_CHANGE])
    assert body == [[[(300).to_bytes(2, "big"), b"\x01", b"", b""], rc.signature], b"", []]

    proposal = sign_proposal(KEYS[3], 300, 0, BLOCK)
    code, body = rlp.decode(proposal.encode())
    assert code == bytes([PROPOSAL])
    assert body == [[[(300).to_bytes(2, "big"), b"", BLOCK], proposal.signature], [], []]


def test_a_signature_does_not_move_between_message_kinds() -> None:
    prepare = sign_prepare(KEYS[0], 5, 0, DIGEST)
    # Same payload shape under another code: the recovered author is a stranger.
    forged = rlp.encode([ROUND_CHANGE, [[b"\x05", b"", b"", DIGEST], prepare.signature]])
    try:
        decoded = decode_message(forged)
    except MessageError:
        return
    assert decoded.author != prepare.author


def test_commit_seal_must_belong_to_the_author() -> None:
    commit = sign_commit(KEYS[0], 4, 0, DIGEST)
    other_seal = sign_seal(DIGEST, KEYS[1])
    unsigned = Commit(4, 0, DIGEST, other_seal, b"", b"")
    signature = sign_prepare(KEYS[0], 1, 0, DIGEST).signature  # any 65 bytes will do
    forged = rlp.encode([COMMIT, [unsigned.payload(), signature]])
    with pytest.raises(MessageError):
        decode_message(forged)
    # Correctly signed by KEYS[0], but carrying the commit seal of KEYS[1]: refused.
    payload = unsigned.payload()
    signed_hash = keccak(bytes([COMMIT]) + rlp.encode(payload))
    signature = keys.PrivateKey(KEYS[0]).sign_msg_hash(signed_hash).to_bytes()
    forged = rlp.encode([COMMIT, [payload, signature]])
    with pytest.raises(MessageError, match="commit seal"):
        decode_message(forged)
    assert decode_message(commit.encode()) == commit


@pytest.mark.parametrize(
    ("raw", "why"),
    [
        (b"", "empty"),
        (rlp.encode([b"\x13"]), "one item"),
        (rlp.encode([b"\x16", [[b"\x01", b"", DIGEST], b"\x00" * 65]]), "unknown code"),
        (rlp.encode([b"\x13", [[b"\x00\x01", b"", DIGEST], b"\x00" * 65]]), "leading zero"),
        (rlp.encode([b"\x13", [[b"\x01" * 9, b"", DIGEST], b"\x00" * 65]]), "height too big"),
        (rlp.encode([b"\x13", [[b"\x01", b"\x01" * 5, DIGEST], b"\x00" * 65]]), "round too big"),
        (rlp.encode([b"\x13", [[b"\x01", b"", DIGEST[:31]], b"\x00" * 65]]), "short digest"),
        (rlp.encode([b"\x13", [[b"\x01", b"", DIGEST], b"\x00" * 64]]), "short signature"),
        (rlp.encode([b"\x13", [[b"\x01", b"", DIGEST], b"\x01" * 64 + b"\x1b"]]), "v = 27"),
        (rlp.encode([b"\x13", [[b"\x01", b"", DIGEST], b"\xff" * 65]]), "r out of range"),
        (rlp.encode([b"\x15", [[[b"\x01", b"\x01", b"\x01", b""], b"\x00" * 65], b"", []]]),
         "prepared round without digest"),
        (rlp.encode([b"\x12", [[[b"\x01", b"", b""], b"\x00" * 65], [], []]]), "empty block"),
    ],
)
def test_malformed_messages_raise_message_error(raw: bytes, why: str) -> None:
    with pytest.raises(MessageError):
        decode_message(raw)


def test_round_change_certificate_must_be_complete() -> None:
    plain = sign_round_change(KEYS[0], 3, 1)
    # A block or prepares attached to a round change that claims no prepared round.
    with_block = rlp.encode([ROUND_CHANGE, [plain.signed(), BLOCK, []]])
    with pytest.raises(MessageError):
        decode_message(with_block)
    certified = sign_round_change(
        KEYS[0], 3, 2, prepared_round=1, prepared_digest=DIGEST, prepared_block=BLOCK,
        prepares=(sign_prepare(KEYS[1], 3, 1, DIGEST),),
    )
    without_block = rlp.encode([ROUND_CHANGE, [certified.signed(), b"", []]])
    with pytest.raises(MessageError):
        decode_message(without_block)
    with pytest.raises(ValueError):
        sign_round_change(KEYS[0], 3, 2, prepared_round=1, prepared_digest=DIGEST)
    with pytest.raises(ValueError):
        sign_prepare(KEYS[0], 3, 0, b"\x01" * 31)


def test_size_and_nesting_limits() -> None:
    with pytest.raises(MessageError, match="exceeds"):
        decode_message(b"\x00" * (MAX_MESSAGE_BYTES + 1))
    deep = b"\xc0"
    for _ in range(5000):
        length = len(deep)
        if length < 56:
            deep = bytes([0xC0 + length]) + deep
        else:
            size = length.to_bytes((length.bit_length() + 7) // 8, "big")
            deep = bytes([0xF7 + len(size)]) + size + deep
    with pytest.raises(MessageError):
        decode_message(deep)
    prepare = sign_prepare(KEYS[0], 1, 0, DIGEST)
    too_many = rlp.encode([
        PROPOSAL,
        [[[b"\x01", b"", BLOCK], sign_proposal(KEYS[0], 1, 0, BLOCK).signature], [],
         [prepare.signed()] * (MAX_JUSTIFICATION + 1)],
    ])
    with pytest.raises(MessageError, match="too many"):
        decode_message(too_many)
    with pytest.raises(MessageError):
        decode_message("not bytes")  # type: ignore[arg-type]


def _assert_only_message_error(raw: bytes) -> None:
    try:
        message = decode_message(raw)
    except MessageError:
        return
    # A mutation may still parse (e.g. a flipped signature bit recovers another author).
    assert isinstance(message, Prepare | Commit | RoundChange | Proposal)


def _random_rlp(rng: random.Random, depth: int = 0) -> object:
    if depth > 4 or rng.random() < 0.5:
        return rng.randbytes(rng.choice([0, 1, 2, 8, 20, 32, 65, 100]))
    return [_random_rlp(rng, depth + 1) for _ in range(rng.randrange(0, 5))]


def test_fuzz_random_bytes_and_structures() -> None:
    rng = random.Random(1234)
    for _ in range(3000):
        _assert_only_message_error(rng.randbytes(rng.randrange(0, 300)))
    for _ in range(3000):
        code = rng.choice([PREPARE, COMMIT, ROUND_CHANGE, PROPOSAL, 0, 0x99])
        _assert_only_message_error(rlp.encode([code, _random_rlp(rng)]))


def test_fuzz_mutations_of_valid_messages() -> None:
    rng = random.Random(99)
    for message in sample_messages():
        raw = message.encode()
        for cut in range(len(raw)):
            _assert_only_message_error(raw[:cut])
        for _ in range(300):
            mutated = bytearray(raw)
            for _ in range(rng.randrange(1, 4)):
                position = rng.randrange(len(mutated))
                mutated[position] ^= 1 << rng.randrange(8)
            _assert_only_message_error(bytes(mutated))
        for _ in range(50):
            position = rng.randrange(len(raw) + 1)
            _assert_only_message_error(raw[:position] + rng.randbytes(3) + raw[position:])
        _assert_only_message_error(raw + b"\x00")
