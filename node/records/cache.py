"""A byte-bounded LRU for ciphertext blocks that were recently read.

Only ciphertext or content-addressed blocks go in: a hit is re-checkable by hash, and nothing
here is secret to the node's operator. Bounded by total bytes, not by entry count, because block
sizes range from a few bytes to a megabyte.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Iterator

from node.records.blockstore import Blockstore, ByteSource, Stat


class ByteLRU:
    """Thread-safe LRU map of key -> bytes whose values never total more than `max_bytes`."""

    def __init__(self, max_bytes: int) -> None:
        if max_bytes < 0:
            raise ValueError("max_bytes must be non-negative")
        self.max_bytes = max_bytes
        self._items: OrderedDict[str, bytes] = OrderedDict()
        self._size = 0
        self._lock = threading.Lock()
        self.hits = 0
        self.misses = 0

    @property
    def size(self) -> int:
        return self._size

    def __len__(self) -> int:
        return len(self._items)

    def get(self, key: str) -> bytes | None:
        with self._lock:
            value = self._items.get(key)
            if value is None:
                self.misses += 1
                return None
            self._items.move_to_end(key)
            self.hits += 1
            return value

    def put(self, key: str, value: bytes) -> None:
        """Insert or refresh; a value larger than the whole budget is not cached at all."""
        if len(value) > self.max_bytes:
            return
        with self._lock:
            old = self._items.pop(key, None)
            if old is not None:
                self._size -= len(old)
            self._items[key] = value
            self._size += len(value)
            while self._size > self.max_bytes:
                _, evicted = self._items.popitem(last=False)
                self._size -= len(evicted)

    def discard(self, key: str) -> None:
        with self._lock:
            old = self._items.pop(key, None)
            if old is not None:
                self._size -= len(old)

    def clear(self) -> None:
        with self._lock:
            self._items.clear()
            self._size = 0


class CachingBlockstore(Blockstore):
    """Wraps any backend; whole objects up to `max_object` bytes are served from a ByteLRU.

    Objects are cached only after they were read completely (a backend verifies what it
    returns), and large objects stream straight through without evicting the small ones.
    """

    def __init__(self, inner: Blockstore, cache: ByteLRU, *, max_object: int | None = None):
        self.inner = inner
        self.cache = cache
        self.max_object = max_object if max_object is not None else cache.max_bytes // 4

    def put(self, source: ByteSource, *, pin: bool = True) -> str:
        return self.inner.put(source, pin=pin)

    def get(self, cid: str) -> Iterator[bytes]:
        cached = self.cache.get(cid)
        if cached is not None:
            return iter([cached]) if cached else iter(())
        return self._read_through(cid, self.inner.get(cid))

    def _read_through(self, cid: str, pieces: Iterator[bytes]) -> Iterator[bytes]:
        kept: bytearray | None = bytearray()
        for piece in pieces:
            if kept is not None:
                kept += piece
                if len(kept) > self.max_object:
                    kept = None
            yield piece
        if kept is not None:
            self.cache.put(cid, bytes(kept))

    def pin(self, cid: str) -> None:
        self.inner.pin(cid)

    def unpin(self, cid: str) -> None:
        self.inner.unpin(cid)

    def stat(self, cid: str) -> Stat:
        return self.inner.stat(cid)

    def close(self) -> None:
        self.inner.close()
