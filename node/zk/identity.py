"""The values a patient, a hospital and a researcher derive off chain.

- secret: a random field element only the patient's device knows;
- identity commitment = Poseidon(secret): the leaf ResearchConsent stores;
- nullifier = Poseidon(secret, studyId): the same for one patient and one study, unlinkable
  across studies without the secret;
- attribute commitment = Poseidon(value, salt): what AttributeRegistry stores for a value;
- study ids and signal hashes: keccak of a name / payload reduced into the field.
"""

from __future__ import annotations

import secrets

from eth_utils import keccak

from node.zk.poseidon import FIELD, poseidon

MAX_ATTRIBUTE_VALUE = 2**64 - 1


def _field(value: int, what: str) -> int:
    if not isinstance(value, int) or isinstance(value, bool) or not 0 <= value < FIELD:
        raise ValueError(f"{what} must be an integer in [0, field order), got {value!r}")
    return value


def new_secret() -> int:
    """A fresh identity secret (non-zero field element from the OS CSPRNG)."""
    return 1 + secrets.randbelow(FIELD - 1)


def new_salt() -> int:
    return 1 + secrets.randbelow(FIELD - 1)


def identity_commitment(secret: int) -> int:
    return poseidon([_field(secret, "secret")])


def nullifier(secret: int, study_id: int) -> int:
    return poseidon([_field(secret, "secret"), _field(study_id, "study id")])


def attribute_commitment(value: int, salt: int) -> int:
    if not isinstance(value, int) or not 0 <= value <= MAX_ATTRIBUTE_VALUE:
        raise ValueError(f"attribute value must be an unsigned 64-bit integer, got {value!r}")
    return poseidon([value, _field(salt, "salt")])


def to_field(data: bytes, domain: bytes) -> int:
    """keccak256(domain || data) reduced into the field (for ids and payload hashes)."""
    return int.from_bytes(keccak(domain + data), "big") % FIELD


def study_id(name: str) -> int:
    """A study id from the study's public name or protocol id."""
    if not name:
        raise ValueError("study name must not be empty")
    return to_field(name.encode("utf-8"), b"medledger:study:")


def signal_hash(payload: bytes) -> int:
    """What a membership proof binds: e.g. the hash of what the patient shares with the study."""
    return to_field(payload, b"medledger:signal:")
