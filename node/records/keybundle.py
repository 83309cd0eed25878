"""Key bundles: a record version's data key wrapped with RSA-OAEP for each recipient.

A bundle is a small canonical JSON object stored beside the ciphertext and names it by CID.
Granting access adds a recipient and yields a new bundle (new CID); the ciphertext is untouched.
The OAEP label is bound to the envelope's header hash, so a wrapped key cannot be replayed
against another envelope. Removing a recipient does not revoke what they already read:
revocation means a new version under a new data key (see RecordStore.rotate).
"""

from __future__ import annotations

import base64
import binascii
import json
from dataclasses import dataclass, replace
from typing import Any

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import padding

from node.records.cid import CID, CIDError
from node.records.envelope import KEY_LEN
from node.records.keys import PrivateKey, PublicKey, check_public_key, key_id

BUNDLE_FORMAT = "medledger-keys"
BUNDLE_VERSION = 1
WRAP_ID = "RSA-OAEP-SHA256"
_LABEL_PREFIX = b"medledger/dek/v1:"
MAX_BUNDLE_BYTES = 1 << 20


class KeyBundleError(Exception):
    """A bundle is malformed, or holds no key this private key can unwrap."""


def _oaep(header_hash: bytes) -> padding.OAEP:
    return padding.OAEP(
        mgf=padding.MGF1(algorithm=hashes.SHA256()),
        algorithm=hashes.SHA256(),
        label=_LABEL_PREFIX + header_hash,
    )


@dataclass(frozen=True)
class WrappedKey:
    kid: bytes  # SHA-256 of the recipient's SubjectPublicKeyInfo
    wrapped: bytes


def wrap_data_key(data_key: bytes, recipient: PublicKey, header_hash: bytes) -> WrappedKey:
    check_public_key(recipient)
    return WrappedKey(key_id(recipient), recipient.encrypt(data_key, _oaep(header_hash)))


@dataclass(frozen=True)
class KeyBundle:
    content: str  # CID of the envelope
    header_hash: bytes
    size: int  # plaintext bytes (the envelope's length reveals it anyway): for progress bars
    recipients: tuple[WrappedKey, ...]

    def to_json(self) -> bytes:
        doc: dict[str, Any] = {
            "content": self.content,
            "format": BUNDLE_FORMAT,
            "header_sha256": self.header_hash.hex(),
            "size": self.size,
            "recipients": [
                {"kid": r.kid.hex(), "wrapped": base64.b64encode(r.wrapped).decode("ascii")}
                for r in self.recipients
            ],
            "version": BUNDLE_VERSION,
            "wrap": WRAP_ID,
        }
        return json.dumps(doc, sort_keys=True, separators=(",", ":")).encode()

    @classmethod
    def from_json(cls, data: bytes) -> KeyBundle:
        if len(data) > MAX_BUNDLE_BYTES:
            raise KeyBundleError("key bundle too large")
        try:
            doc = json.loads(data)
        except (UnicodeDecodeError, json.JSONDecodeError):
            raise KeyBundleError("key bundle is not JSON") from None
        if not isinstance(doc, dict) or doc.get("format") != BUNDLE_FORMAT:
            raise KeyBundleError("not a medledger key bundle")
        if doc.get("version") != BUNDLE_VERSION or doc.get("wrap") != WRAP_ID:
            raise KeyBundleError("unsupported key bundle version or wrapping algorithm")
        try:
            content = str(CID.parse(doc["content"]))
            header_hash = bytes.fromhex(doc["header_sha256"])
            size = doc["size"]
            if type(size) is not int or size < 0:
                raise ValueError("size")
            recipients = tuple(
                WrappedKey(bytes.fromhex(r["kid"]), base64.b64decode(r["wrapped"], validate=True))
                for r in doc["recipients"]
            )
        except (KeyError, TypeError, ValueError, CIDError, binascii.Error):
            raise KeyBundleError("key bundle fields are malformed") from None
        if len(header_hash) != 32 or any(len(r.kid) != 32 for r in recipients):
            raise KeyBundleError("key bundle hashes must be 32 bytes")
        return cls(content, header_hash, size, recipients)

    @property
    def key_ids(self) -> list[bytes]:
        return [r.kid for r in self.recipients]

    def unwrap(self, private_key: PrivateKey) -> bytes:
        """The data key, if this bundle holds it for `private_key`."""
        kid = key_id(private_key)
        entries = [r for r in self.recipients if r.kid == kid]
        if not entries:
            raise KeyBundleError("this record's data key is not wrapped for the given key")
        try:
            data_key = private_key.decrypt(entries[0].wrapped, _oaep(self.header_hash))
        except ValueError:
            raise KeyBundleError(
                "cannot unwrap the data key: wrapped key tampered or bound to another envelope"
            ) from None
        if len(data_key) != KEY_LEN:
            raise KeyBundleError("unwrapped data key has the wrong length")
        return data_key

    def with_recipient(self, data_key: bytes, recipient: PublicKey) -> KeyBundle:
        """Add (or refresh) a recipient; the envelope it names stays as it is."""
        entry = wrap_data_key(data_key, recipient, self.header_hash)
        others = tuple(r for r in self.recipients if r.kid != entry.kid)
        return replace(self, recipients=(*others, entry))

    def without_recipient(self, kid: bytes) -> KeyBundle:
        if kid not in self.key_ids:
            raise KeyBundleError("no such recipient in the key bundle")
        return replace(self, recipients=tuple(r for r in self.recipients if r.kid != kid))


def new_bundle(
    content: str, header_hash: bytes, size: int, data_key: bytes, recipients: list[PublicKey]
) -> KeyBundle:
    if not recipients:
        raise KeyBundleError("a record needs at least one recipient")
    wrapped: dict[bytes, WrappedKey] = {}
    for recipient in recipients:
        entry = wrap_data_key(data_key, recipient, header_hash)
        wrapped[entry.kid] = entry
    return KeyBundle(content, header_hash, size, tuple(wrapped.values()))
