"""Embedded content-addressed store: Kubo-compatible UnixFS DAGs in a directory, no daemon.

Blocks live under `blocks/` named as Kubo's flatfs names them (base32 of the multihash, sharded
by the next-to-last two characters), so the same bytes added here and to Kubo get the same CID
and the same block files. Pins are marker files under `pins/`. Every block is checked against its
hash when read: a flipped bit on disk is an IntegrityError, never silently wrong bytes.
"""

from __future__ import annotations

import base64
import contextlib
import errno
import os
import secrets
from collections.abc import Iterator
from pathlib import Path

from node.records.blockstore import (
    Blockstore,
    BlockstoreError,
    ByteSource,
    IntegrityError,
    NotFoundError,
    Stat,
    iter_source,
)
from node.records.cache import ByteLRU
from node.records.cid import CID, DAG_PB, CIDError
from node.records.unixfs import DagBuilder, DagError, DagProfile, decode_file_node, iter_file


def flatfs_key(cid: CID) -> str:
    """Kubo's datastore key for a block: unpadded upper-case base32 of the multihash."""
    return base64.b32encode(cid.multihash).decode("ascii").rstrip("=")


def _parse(cid: str) -> CID:
    try:
        return CID.parse(cid)
    except CIDError as exc:
        raise BlockstoreError(str(exc)) from None


def _write_error(root: Path, exc: OSError) -> BlockstoreError:
    """A clear error for a failed write; the temp-file-and-rename left no partial block."""
    hint = {errno.ENOSPC: "disk full", errno.EDQUOT: "disk quota exceeded",
            errno.EROFS: "read-only file system", errno.EACCES: "permission denied"}
    reason = hint.get(exc.errno or 0, exc.strerror or str(exc))
    return BlockstoreError(f"cannot write to the record store {root}: {reason}; nothing "
                           "partial was stored, free space or fix permissions and retry")


class EmbeddedBlockstore(Blockstore):
    """A directory holding blocks and pins; safe for concurrent use by threads of one process."""

    def __init__(
        self,
        root: str | os.PathLike[str],
        *,
        profile: DagProfile | None = None,
        cache: ByteLRU | None = None,
        durable: bool = True,
    ) -> None:
        self.root = Path(root)
        self.profile = profile or DagProfile.kubo_cidv1()
        self.cache = cache
        self.durable = durable
        self._blocks = self.root / "blocks"
        self._pins = self.root / "pins"
        self._tmp = self.root / "tmp"
        for directory in (self._blocks, self._pins, self._tmp):
            directory.mkdir(parents=True, exist_ok=True)

    # -- blocks ---------------------------------------------------------------------------
    def _block_path(self, cid: CID) -> Path:
        key = flatfs_key(cid)
        return self._blocks / key[-3:-1] / f"{key}.data"

    def has_block(self, cid: CID) -> bool:
        return self._block_path(cid).is_file()

    def put_block(self, cid: CID, block: bytes) -> None:
        """Write one block (idempotent); the temp-file-and-rename never exposes a partial block."""
        if not cid.matches(block):
            raise IntegrityError(f"block does not hash to {cid}")
        path = self._block_path(cid)
        if path.is_file():
            return
        tmp = self._tmp / f"{path.name}.{secrets.token_hex(6)}"
        try:
            path.parent.mkdir(exist_ok=True)
            with open(tmp, "wb") as handle:
                handle.write(block)
                if self.durable:
                    handle.flush()
                    os.fsync(handle.fileno())
            os.replace(tmp, path)
        except OSError as exc:
            raise _write_error(self.root, exc) from exc
        finally:
            with contextlib.suppress(OSError):
                tmp.unlink()

    def get_block(self, cid: CID) -> bytes:
        key = flatfs_key(cid)
        if self.cache is not None:
            cached = self.cache.get(key)
            if cached is not None:
                return cached
        try:
            block = self._block_path(cid).read_bytes()
        except FileNotFoundError:
            raise NotFoundError(f"block {cid} not in the store") from None
        if not cid.matches(block):
            raise IntegrityError(f"block {cid} on disk does not match its hash")
        if self.cache is not None:
            self.cache.put(key, block)
        return block

    # -- Blockstore -----------------------------------------------------------------------
    def put(self, source: ByteSource, *, pin: bool = True) -> str:
        builder = DagBuilder(self.profile, sink=self.put_block)
        for piece in iter_source(source):
            builder.write(piece)
        cid = builder.finish().encode()
        if pin:
            self._write_pin(cid)
        return cid

    def get(self, cid: str) -> Iterator[bytes]:
        parsed = _parse(cid)
        if not self.has_block(parsed):
            raise NotFoundError(f"{cid} not in the store")
        return self._iter(parsed)

    def _iter(self, parsed: CID) -> Iterator[bytes]:
        try:
            yield from iter_file(parsed, self.get_block)
        except DagError as exc:
            raise BlockstoreError(f"{parsed}: {exc}") from None

    def pin(self, cid: str) -> None:
        parsed = _parse(cid)
        missing = [str(c) for c in self._walk(parsed) if not self.has_block(c)]
        if missing:
            raise NotFoundError(f"cannot pin {cid}: {len(missing)} block(s) missing")
        self._write_pin(parsed.encode())

    def unpin(self, cid: str) -> None:
        marker = self._pins / _parse(cid).encode()
        try:
            marker.unlink()
        except FileNotFoundError:
            raise NotFoundError(f"{cid} is not pinned") from None

    def stat(self, cid: str) -> Stat:
        parsed = _parse(cid)
        try:
            size = self._block_path(parsed).stat().st_size
        except FileNotFoundError:
            raise NotFoundError(f"{cid} not in the store") from None
        return Stat(parsed.encode(), size)

    # -- pins and garbage collection ------------------------------------------------------
    def pins(self) -> list[str]:
        return sorted(p.name for p in self._pins.iterdir())

    def is_pinned(self, cid: str) -> bool:
        return (self._pins / _parse(cid).encode()).exists()

    def _write_pin(self, cid: str) -> None:
        try:
            (self._pins / cid).touch()
        except OSError as exc:
            raise _write_error(self.root, exc) from exc

    def _walk(self, root: CID) -> Iterator[CID]:
        """Every CID in the DAG under `root`; blocks that are missing are yielded, not followed."""
        stack = [root]
        while stack:
            cid = stack.pop()
            yield cid
            if cid.codec != DAG_PB or not self.has_block(cid):
                continue
            stack.extend(decode_file_node(self.get_block(cid)).links)

    def gc(self) -> int:
        """Delete blocks no pin reaches; returns how many were removed."""
        keep = {flatfs_key(c) for pin in self.pins() for c in self._walk(_parse(pin))}
        removed = 0
        for path in self._blocks.glob("*/*.data"):
            key = path.name[: -len(".data")]
            if key not in keep:
                path.unlink()
                if self.cache is not None:
                    self.cache.discard(key)
                removed += 1
        return removed
