"""RecordStore: encrypted records on any Blockstore, the API the node and the CLI call.

A record version is two objects: the envelope (ciphertext, see envelope.py) and a key bundle
(data key wrapped per recipient, see keybundle.py) that names the envelope by CID. The bundle's
CID is the record's handle; the envelope's CID and the plaintext SHA3-256 are what gets
registered on chain. Granting access writes a new bundle only; revoking writes a new version.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass

from node.records.blockstore import Blockstore, BlockstoreError, ByteSource
from node.records.cache import ByteLRU, CachingBlockstore
from node.records.envelope import (
    DEFAULT_CHUNK_SIZE,
    DecryptResult,
    Encryptor,
    Progress,
    decrypt_bytes,
    decrypt_to_file,
    iter_decrypt,
    new_data_key,
)
from node.records.keybundle import MAX_BUNDLE_BYTES, KeyBundle, KeyBundleError, new_bundle
from node.records.keys import PrivateKey, PublicKey, check_public_key, key_id


@dataclass(frozen=True)
class PutResult:
    record_cid: str  # key bundle: the handle to share
    content_cid: str  # envelope: register on chain with sha3_256
    sha3_256: bytes
    size: int
    ciphertext_size: int
    header_hash: bytes
    recipients: tuple[bytes, ...]  # key ids


class RecordStore:
    """Encrypt-and-store, fetch-and-verify-and-decrypt, grant, rotate."""

    def __init__(
        self,
        blockstore: Blockstore,
        *,
        chunk_size: int = DEFAULT_CHUNK_SIZE,
        workers: int | None = None,
        cache_bytes: int = 8 << 20,
    ) -> None:
        self.raw = blockstore
        self.blockstore = CachingBlockstore(blockstore, ByteLRU(cache_bytes))
        self.chunk_size = chunk_size
        self.workers = workers

    def put(
        self,
        source: ByteSource,
        recipients: Sequence[PublicKey],
        *,
        progress: Progress | None = None,
    ) -> PutResult:
        """Encrypt `source` under a fresh data key for `recipients` and store both objects."""
        if not recipients:
            raise KeyBundleError("a record needs at least one recipient")
        for recipient in recipients:
            check_public_key(recipient)
        data_key = new_data_key()
        encryptor = Encryptor(
            data_key, chunk_size=self.chunk_size, workers=self.workers, progress=progress
        )
        content_cid = self.blockstore.put(encryptor.encrypt(source))
        result = encryptor.result
        if result is None:
            raise BlockstoreError("the store did not consume the whole envelope")
        bundle = new_bundle(
            content_cid, result.header_hash, result.size, data_key, list(recipients)
        )
        record_cid = self.blockstore.put(bundle.to_json())
        return PutResult(
            record_cid,
            content_cid,
            result.sha3_256,
            result.size,
            result.ciphertext_size,
            result.header_hash,
            tuple(bundle.key_ids),
        )

    def bundle(self, record_cid: str) -> KeyBundle:
        return KeyBundle.from_json(self.blockstore.read_all(record_cid, limit=MAX_BUNDLE_BYTES))

    def _open(self, record_cid: str, private_key: PrivateKey) -> tuple[KeyBundle, bytes]:
        bundle = self.bundle(record_cid)
        return bundle, bundle.unwrap(private_key)

    def read_to_file(
        self,
        record_cid: str,
        private_key: PrivateKey,
        out: str | os.PathLike[str],
        *,
        expected_sha3: bytes | None = None,
        progress: Progress | None = None,
    ) -> DecryptResult:
        """Decrypt into `out`; the file appears only if every chunk and the hash verified."""
        bundle, data_key = self._open(record_cid, private_key)
        return decrypt_to_file(
            self.blockstore.get(bundle.content),
            data_key,
            out,
            expected_header_hash=bundle.header_hash,
            expected_sha3=expected_sha3,
            workers=self.workers,
            progress=progress,
        )

    def read_bytes(
        self, record_cid: str, private_key: PrivateKey, *, expected_sha3: bytes | None = None
    ) -> bytes:
        bundle, data_key = self._open(record_cid, private_key)
        return decrypt_bytes(
            self.blockstore.get(bundle.content),
            data_key,
            expected_header_hash=bundle.header_hash,
            expected_sha3=expected_sha3,
            workers=self.workers,
        )

    def grant(self, record_cid: str, private_key: PrivateKey, grantee: PublicKey) -> str:
        """New bundle CID that also opens for `grantee`; the envelope is not re-encrypted."""
        bundle, data_key = self._open(record_cid, private_key)
        return self.blockstore.put(
            bundle.with_recipient(data_key, check_public_key(grantee)).to_json()
        )

    def rotate(
        self,
        record_cid: str,
        private_key: PrivateKey,
        recipients: Sequence[PublicKey],
        *,
        expected_sha3: bytes | None = None,
    ) -> PutResult:
        """Revocation: a new version under a new data key for `recipients` only.

        The old version is streamed through decryption into the new encryption; if the old one
        fails verification at any point the new one is never completed, pinned or returned.
        """
        bundle, data_key = self._open(record_cid, private_key)
        plaintext = iter_decrypt(
            self.blockstore.get(bundle.content),
            data_key,
            expected_header_hash=bundle.header_hash,
            expected_sha3=expected_sha3,
            workers=self.workers,
        )
        return self.put(plaintext, recipients)

    def recipients(self, record_cid: str) -> list[bytes]:
        return self.bundle(record_cid).key_ids

    def can_open(self, record_cid: str, private_key: PrivateKey) -> bool:
        return key_id(private_key) in self.bundle(record_cid).key_ids
