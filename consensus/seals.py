"""Commit seals: who signed a block, and whether enough validators did for it to be final.

A commit seal is a secp256k1 signature over keccak(RLP(header)) where the
header's extraData carries no commit seals (round included), as in Besu's QBFT.
A block is final once it carries valid seals of at least quorum(n) distinct
validators of the set that validates it.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol

import rlp
from eth_keys import keys
from eth_keys.exceptions import BadSignature, ValidationError
from eth_utils import keccak

from consensus.extradata import QbftExtraData


class SealableHeader(Protocol):
    extra_data: bytes

    def copy(self, **kwargs: object) -> SealableHeader: ...


class FinalityError(ValueError):
    """A block's commit seals do not prove finality."""


def quorum(validator_count: int) -> int:
    """ceil(2n/3): the number of commit seals that finalize a block."""
    if validator_count < 1:
        raise ValueError("a validator set cannot be empty")
    return -(-2 * validator_count // 3)


def seal_hash(header: SealableHeader) -> bytes:
    """The digest validators sign: the header without commit seals."""
    extra = QbftExtraData.decode(header.extra_data)
    unsealed = header.copy(extra_data=extra.without_seals().encode())
    return keccak(rlp.encode(unsealed))


def sign_seal(digest: bytes, private_key: bytes) -> bytes:
    return keys.PrivateKey(private_key).sign_msg_hash(digest).to_bytes()


def recover_seal_signer(digest: bytes, seal: bytes) -> bytes:
    try:
        signature = keys.Signature(seal)
        return signature.recover_public_key_from_msg_hash(digest).to_canonical_address()
    except (BadSignature, ValidationError) as exc:
        raise FinalityError(f"unreadable commit seal: {exc}") from exc


def verify_commit_seals(header: SealableHeader, validators: Sequence[bytes]) -> tuple[bytes, ...]:
    """Return the signers of a final block; raise FinalityError if it is not final."""
    extra = QbftExtraData.decode(header.extra_data)
    digest = seal_hash(header)
    allowed = set(validators)
    signers: list[bytes] = []
    for seal in extra.commit_seals:
        signer = recover_seal_signer(digest, seal)
        if signer not in allowed:
            raise FinalityError(f"commit seal by non-validator 0x{signer.hex()}")
        if signer in signers:
            raise FinalityError(f"duplicate commit seal by 0x{signer.hex()}")
        signers.append(signer)
    needed = quorum(len(validators))
    if len(signers) < needed:
        raise FinalityError(f"{len(signers)} commit seals, {needed} needed for finality")
    return tuple(signers)
