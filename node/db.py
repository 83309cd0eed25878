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
import re
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


_UNWRITABLE = re.compile(r"read-only file system|permission denied", re.IGNORECASE)
_TABLE_MAGIC = 0xDB4775248B80FB57
_SSTABLE_LINE = re.compile(rb"^\s*(\d+):(\d+)\[", re.MULTILINE)
_FOOTER_LEN = 48
_BLOCK_TRAILER_LEN = 5  # compression type byte and CRC32C after every block


def _text(exc: Exception) -> str:
    """plyvel puts LevelDB's status in bytes; show it as text."""
    arg = exc.args[0] if exc.args else exc
    return arg.decode("utf-8", "replace") if isinstance(arg, bytes) else str(arg)


def _corrupt(path: Path, exc: Exception | str) -> StorageError:
    detail = _text(exc) if isinstance(exc, Exception) else exc
    return StorageError(
        f"database {path} is corrupt: {detail}; restore it from a backup "
        "(`medledger db import`) or re-sync into an empty datadir"
    )


def _varint(data: bytes, pos: int) -> tuple[int, int]:
    value = shift = 0
    while pos < len(data) and shift < 64:
        byte = data[pos]
        pos += 1
        value |= (byte & 0x7F) << shift
        if not byte & 0x80:
            return value, pos
        shift += 7
    raise ValueError("bad varint")


def live_tables(db: plyvel.DB) -> dict[int, int]:
    """File number -> size of every table in the database's current version. Only these are
    complete: a table still being written by a compaction, or left half-written by a crash
    (LevelDB deletes those at open), is not listed."""
    listing = db.get_property(b"leveldb.sstables") or b""
    return {int(number): int(size) for number, size in _SSTABLE_LINE.findall(listing)}


def check_tables(path: Path, live: dict[int, int]) -> None:
    """Check every live table file: present, of the recorded size, with a table footer (magic
    number, index and metaindex block bounds). LevelDB opens tables lazily, so a truncated
    table would otherwise only fail, or make an iterator end silently early, when a read
    reaches it. Reads 48 bytes per table; block checksums are verified on every read."""
    for number, recorded in sorted(live.items()):
        table = path / f"{number:06d}.ldb"
        if not table.exists() and (path / f"{number:06d}.sst").exists():
            table = path / f"{number:06d}.sst"
        try:
            with open(table, "rb") as handle:
                size = handle.seek(0, 2)
                if size != recorded or size < _FOOTER_LEN:
                    raise _corrupt(path, f"table {table.name} has {size} bytes, the database "
                                         f"recorded {recorded} (truncated or overwritten)")
                handle.seek(size - _FOOTER_LEN)
                footer = handle.read(_FOOTER_LEN)
        except FileNotFoundError:
            raise _corrupt(path, f"table {table.name} is missing") from None
        except OSError as exc:
            raise StorageError(f"cannot read database file {table}: {exc.strerror}") from exc
        if int.from_bytes(footer[-8:], "little") != _TABLE_MAGIC:
            raise _corrupt(path, f"table {table.name} is truncated or overwritten "
                                 "(no table footer)")
        try:
            pos = 0
            for _ in range(2):  # metaindex handle, then index handle
                offset, pos = _varint(footer, pos)
                length, pos = _varint(footer, pos)
                if offset + length + _BLOCK_TRAILER_LEN > size - _FOOTER_LEN:
                    raise ValueError("block beyond the end of the file")
        except ValueError as exc:
            raise _corrupt(path, f"table {table.name} has a damaged footer ({exc})") from None


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
        except plyvel.CorruptionError as exc:
            raise _corrupt(self.path, exc) from exc
        except plyvel.Error as exc:
            text = _text(exc)
            if _UNWRITABLE.search(text):
                raise StorageError(
                    f"cannot write to database {self.path} ({text}): the datadir must be on a "
                    "writable file system and writable by this user"
                ) from exc
            if "lock" in text.lower():
                raise StorageError(
                    f"database {self.path} is in use by another process (LevelDB lock held)"
                ) from exc
            raise StorageError(f"cannot open database {self.path}: {text}") from exc
        try:
            check_tables(self.path, live_tables(self._db))
        except StorageError:
            self._db.close()
            raise
        self._closed = False

    def get(self, key: bytes) -> bytes | None:
        try:
            return self._db.get(key, verify_checksums=True)
        except plyvel.CorruptionError as exc:
            raise _corrupt(self.path, exc) from exc
        except plyvel.Error as exc:
            raise StorageError(f"read from {self.path} failed: {_text(exc)}") from exc

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
        except plyvel.Error as exc:
            text = _text(exc)
            hint = " (disk full: free space, then restart the node)" if "space" in text.lower() \
                else ""
            raise StorageError(f"write to {self.path} failed{hint}: {text}") from exc
        except OSError as exc:  # pragma: no cover - plyvel maps most errors to IOError
            if exc.errno == errno.ENOSPC:
                raise StorageError(f"write to {self.path} failed: disk full") from exc
            raise

    def iterate_prefix(self, prefix: bytes) -> Iterator[tuple[bytes, bytes]]:
        try:
            yield from self._db.iterator(prefix=prefix, verify_checksums=True)
        except plyvel.CorruptionError as exc:
            raise _corrupt(self.path, exc) from exc

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
