"""The one interface every content store behind the record layer implements.

Callers put a byte stream and get back a CID string, read a CID back as a stream of byte pieces,
and manage pins. Backends: embedded (on disk, no daemon), Kubo RPC, IPFS Cluster.
"""

from __future__ import annotations

import abc
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import BinaryIO

READ_SIZE = 1 << 20

ByteSource = BinaryIO | Iterable[bytes] | bytes


class BlockstoreError(Exception):
    """A store operation failed; the message says which and why."""


class NotFoundError(BlockstoreError):
    """The store does not hold the requested content."""


class IntegrityError(BlockstoreError):
    """Content read back does not hash to its CID."""


@dataclass(frozen=True)
class Stat:
    """What `block/stat` reports: the root block's CID and size in bytes."""

    cid: str
    size: int


def iter_source(source: ByteSource, read_size: int = READ_SIZE) -> Iterator[bytes]:
    """Pieces of `source` (bytes, a binary file, or an iterable of bytes), never all at once."""
    if isinstance(source, bytes | bytearray | memoryview):
        data = bytes(source)
        for start in range(0, len(data), read_size):
            yield data[start : start + read_size]
        return
    read = getattr(source, "read", None)
    if read is not None:
        while True:
            piece = read(read_size)
            if not piece:
                return
            yield piece
        return
    for piece in source:
        if piece:
            yield bytes(piece)


class Blockstore(abc.ABC):
    """put stream -> CID, get CID -> stream, pin, unpin, stat."""

    @abc.abstractmethod
    def put(self, source: ByteSource, *, pin: bool = True) -> str:
        """Store the bytes of `source`; return their CID. Pinned unless `pin` is false."""

    @abc.abstractmethod
    def get(self, cid: str) -> Iterator[bytes]:
        """Stream the bytes stored under `cid`; raise NotFoundError if absent."""

    @abc.abstractmethod
    def pin(self, cid: str) -> None:
        """Keep `cid` (recursively) safe from garbage collection."""

    @abc.abstractmethod
    def unpin(self, cid: str) -> None:
        """Drop the pin on `cid`; NotFoundError if it was not pinned."""

    @abc.abstractmethod
    def stat(self, cid: str) -> Stat:
        """Root block size of `cid`; NotFoundError if absent."""

    def read_all(self, cid: str, limit: int = 64 << 20) -> bytes:
        """Whole content of a small object; refuses more than `limit` bytes."""
        out = bytearray()
        for piece in self.get(cid):
            out += piece
            if len(out) > limit:
                raise BlockstoreError(f"{cid} is larger than {limit} bytes")
        return bytes(out)

    def close(self) -> None:  # noqa: B027 - optional hook, most backends hold nothing
        """Release connections or files; the default holds none."""

    def __enter__(self) -> Blockstore:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
