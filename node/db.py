"""LevelDB storage for py-evm, with one atomic LevelDB write batch per block.

py-evm writes trie nodes, headers, the canonical index, receipts and the
tx-hash index in many small steps while a block is built or imported. If those
writes went straight to disk, a crash in the middle would leave a half-written
block. `StagedDB` keeps every write of a block in memory and `commit()` writes
them in one synchronous LevelDB batch, so after a crash the database is always
at the last fully written block.
"""

from __future__ import annotations

import errno
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import plyvel
from eth.abc import AtomicWriteBatchAPI
from eth.db.atomic import AtomicDBWriteBatch
from eth.db.backends.base import BaseAtomicDB

_DELETED = None


class StorageError(Exception):
    """The chain database cannot be opened or written; the message says why and what to do."""


class LevelDBStore:
    """A thin, typed wrapper over one plyvel handle (one process may open a directory)."""

    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        try:
            self.path.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise StorageError(f"cannot create database directory {self.path}: {exc}") from exc
        try:
            self._db = plyvel.DB(str(self.path), create_if_missing=True, paranoid_checks=True)
        except plyvel.IOError as exc:
            if "lock" in str(exc).lower():
                raise StorageError(
                    f"database {self.path} is in use by another process (LevelDB lock held)"
                ) from exc
            raise StorageError(f"cannot open database {self.path}: {exc}") from exc
        except plyvel.CorruptionError as exc:
            raise StorageError(
                f"database {self.path} is corrupt: {exc}; restore it from a backup "
                "or re-sync into an empty datadir"
            ) from exc
        self._closed = False

    def get(self, key: bytes) -> bytes | None:
        return self._db.get(key)

    def put(self, key: bytes, value: bytes) -> None:
        self.write({key: value})

    def write(self, changes: dict[bytes, bytes | None]) -> None:
        """Write all changes in one synchronous batch: all of them land, or none do."""
        try:
            with self._db.write_batch(transaction=True, sync=True) as batch:
                for key, value in changes.items():
                    if value is _DELETED:
                        batch.delete(key)
                    else:
                        batch.put(key, value)
        except plyvel.IOError as exc:
            hint = " (disk full?)" if "space" in str(exc).lower() else ""
            raise StorageError(f"write to {self.path} failed{hint}: {exc}") from exc
        except OSError as exc:  # pragma: no cover - plyvel maps most errors to IOError
            if exc.errno == errno.ENOSPC:
                raise StorageError(f"write to {self.path} failed: disk full") from exc
            raise

    def iterate_prefix(self, prefix: bytes) -> Iterator[tuple[bytes, bytes]]:
        yield from self._db.iterator(prefix=prefix)

    def close(self) -> None:
        if not self._closed:
            self._closed = True
            self._db.close()
            # py-evm's caches may outlive the node; do not let them keep the handle alive.
            del self._db


class StagedDB(BaseAtomicDB):
    """py-evm's database: reads see staged writes; nothing reaches disk before `commit()`."""

    def __init__(self, store: LevelDBStore) -> None:
        self.store = store
        self._staged: dict[bytes, bytes | None] = {}
        self._lock = threading.RLock()

    def __getitem__(self, key: bytes) -> bytes:
        with self._lock:
            if key in self._staged:
                value = self._staged[key]
                if value is _DELETED:
                    raise KeyError(key)
                return value
        value = self.store.get(key)
        if value is None:
            raise KeyError(key)
        return value

    def __setitem__(self, key: bytes, value: bytes) -> None:
        with self._lock:
            self._staged[key] = value

    def __delitem__(self, key: bytes) -> None:
        if not self._exists(key):
            raise KeyError(key)
        with self._lock:
            self._staged[key] = _DELETED

    def _exists(self, key: bytes) -> bool:
        try:
            self[key]
        except KeyError:
            return False
        return True

    @contextmanager
    def atomic_batch(self) -> Iterator[AtomicWriteBatchAPI]:
        with AtomicDBWriteBatch._commit_unless_raises(self) as batch:
            yield batch

    @property
    def has_staged(self) -> bool:
        return bool(self._staged)

    def commit(self) -> None:
        """Write everything staged so far in one LevelDB batch."""
        with self._lock:
            if self._staged:
                self.store.write(self._staged)
            self._staged = {}

    def rollback(self) -> None:
        """Forget everything staged since the last commit (a failed build or import)."""
        with self._lock:
            self._staged = {}
