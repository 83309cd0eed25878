"""QBFT extraData encoding and commit-seal finality checks."""

from __future__ import annotations

import pytest
import rlp

from consensus.extradata import ExtraDataError, QbftExtraData, Vote
from consensus.seals import (
    FinalityError,
    quorum,
    recover_seal_signer,
    seal_hash,
    sign_seal,
    verify_commit_seals,
)
from tests.helpers import USER_KEYS, USERS, VALIDATOR, VALIDATOR_KEY, make_genesis


def test_extradata_round_trip_matches_besu_layout() -> None:
    extra = QbftExtraData(
        vanity=b"\x01" * 32, validators=(b"\xaa" * 20, b"\xbb" * 20),
        vote=Vote(recipient=b"\xcc" * 20, add=True), round=7, commit_seals=(b"\x05" * 65,),
    )
    raw = extra.encode()
    assert QbftExtraData.decode(raw) == extra
    items = rlp.decode(raw)
    assert items[0] == b"\x01" * 32
    assert items[1] == [b"\xaa" * 20, b"\xbb" * 20]
    assert items[2] == [b"\xcc" * 20, b"\xff"]
    assert items[3] == b"\x00\x00\x00\x07"
    assert items[4] == [b"\x05" * 65]
    removal = QbftExtraData(vanity=b"\x00" * 32, validators=(), vote=Vote(b"\xcc" * 20, False))
    assert rlp.decode(removal.encode())[2] == [b"\xcc" * 20, b"\x00"]
    assert rlp.decode(removal.encode())[2:] == [[b"\xcc" * 20, b"\x00"], b"\x00" * 4, []]


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        (b"\xff\x00", "not RLP"),
        (rlp.encode([b"\x00" * 32, [], [], b"\x00" * 4]), "5 items"),
        (rlp.encode([b"\x00" * 31, [], [], b"\x00" * 4, []]), "vanity"),
        (rlp.encode([b"\x00" * 32, [b"\x01" * 19], [], b"\x00" * 4, []]), "validators"),
        (rlp.encode([b"\x00" * 32, [], [b"\x01" * 20, b"\x07"], b"\x00" * 4, []]), "vote"),
        (rlp.encode([b"\x00" * 32, [], [], b"\x00" * 3, []]), "round"),
        (rlp.encode([b"\x00" * 32, [], [], b"\x00" * 4, [b"\x00" * 64]]), "seals"),
    ],
)
def test_malformed_extradata_is_rejected(raw: bytes, message: str) -> None:
    with pytest.raises(ExtraDataError, match=message):
        QbftExtraData.decode(raw)


def test_quorum_is_ceil_two_thirds() -> None:
    assert [quorum(n) for n in (1, 2, 3, 4, 5, 6, 7, 10)] == [1, 2, 2, 3, 4, 4, 5, 7]
    with pytest.raises(ValueError):
        quorum(0)



def _header_with(validators: tuple[bytes, ...], seals: tuple[bytes, ...] = ()):  # type: ignore[no-untyped-def]
    from eth.vm.forks.prague.blocks import PragueBlockHeader

    extra = QbftExtraData(vanity=b"\x00" * 32, validators=validators, commit_seals=seals)
    return PragueBlockHeader(
        difficulty=0, block_number=5, gas_limit=30_000_000, timestamp=100,
        extra_data=extra.encode(), base_fee_per_gas=10**9,
    )


def test_commit_seals_prove_finality_only_with_quorum() -> None:
    validators = (VALIDATOR, USERS[0], USERS[1], USERS[2])
    keys_by_validator = [VALIDATOR_KEY, USER_KEYS[0], USER_KEYS[1], USER_KEYS[2]]
    header = _header_with(validators)
    digest = seal_hash(header)
    seals = tuple(sign_seal(digest, k) for k in keys_by_validator[:3])
    assert recover_seal_signer(digest, seals[0]) == VALIDATOR
    unsealed_extra = QbftExtraData.decode(header.extra_data)
    sealed = header.copy(extra_data=unsealed_extra.with_seals(seals).encode())
    # Adding seals does not change what was signed.
    assert seal_hash(sealed) == digest
    assert verify_commit_seals(sealed, validators) == validators[:3]

    two = header.copy(extra_data=unsealed_extra.with_seals(seals[:2]).encode())
    with pytest.raises(FinalityError, match="2 commit seals, 3 needed"):
        verify_commit_seals(two, validators)

    duplicate = header.copy(
        extra_data=QbftExtraData.decode(header.extra_data).with_seals(
            (seals[0], seals[0], seals[1])
        ).encode()
    )
    with pytest.raises(FinalityError, match="duplicate"):
        verify_commit_seals(duplicate, validators)

    outsider = sign_seal(digest, USER_KEYS[3])
    foreign = header.copy(
        extra_data=QbftExtraData.decode(header.extra_data).with_seals(
            (*seals[:2], outsider)
        ).encode()
    )
    with pytest.raises(FinalityError, match="non-validator"):
        verify_commit_seals(foreign, validators)


def test_seal_over_another_round_does_not_verify() -> None:
    header = _header_with((VALIDATOR,))
    seal = sign_seal(seal_hash(header), VALIDATOR_KEY)
    other_round = QbftExtraData.decode(header.extra_data)
    from dataclasses import replace

    moved = header.copy(extra_data=replace(other_round, round=1).with_seals((seal,)).encode())
    with pytest.raises(FinalityError):
        verify_commit_seals(moved, (VALIDATOR,))


def test_genesis_helper_is_valid() -> None:
    assert make_genesis().validators == (VALIDATOR,)
