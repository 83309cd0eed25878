"""Backups of the chain: RLP block export/import, consistent LevelDB snapshots, replay checks.

- Export (like `geth export`): the canonical blocks as a stream of RLP items, one per block,
  gzip-compressed when the file name ends in `.gz`. Import replays them with every check a
  block from a peer gets (parent, validator set, commit seals, execution and state root).
- Snapshot: a copy of the chain database as of one LevelDB snapshot, so a running node keeps
  making blocks while it is copied; the copy is written under a temporary name and renamed into
  place only once complete and opened as a chain.
- Verify: replay every block of a datadir from genesis into a scratch database; each block must
  re-execute to its recorded state root, and the datadir's head state must be readable.
"""

from __future__ import annotations

import contextlib
import gzip
import json
import shutil
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any

import plyvel
import rlp
import trio
from eth.abc import BlockAPI, BlockHeaderAPI
from trie.exceptions import MissingTrieNode

from genesis.schema import Genesis
from node.chain import BlockRejected, Chain
from node.db import LevelDBStore, StorageError

if TYPE_CHECKING:
    from node.runtime import Node

CHAINDATA = "chaindata"
MANIFEST = "snapshot.json"
MAX_EXPORTED_BLOCK_BYTES = 64 << 20
SNAPSHOT_CHUNK_KEYS = 20_000
SNAPSHOT_CHUNK_BYTES = 16 << 20
Progress = Callable[[int, int], None]  # (blocks done, blocks total)


class BackupError(Exception):
    """An export, import, snapshot or verification failed; the message says where and why."""


# -- export / import -----------------------------------------------------------------------


def _open_stream(path: Path, mode: str, *, gzipped: bool | None = None) -> IO[bytes]:
    if path.suffix == ".gz" if gzipped is None else gzipped:
        return gzip.open(path, mode)  # type: ignore[return-value]
    return open(path, mode)  # noqa: SIM115 - returned to a with-statement in the caller


@dataclass(frozen=True)
class ExportSummary:
    first: int
    last: int
    blocks: int
    bytes: int


def export_blocks(
    chain: Chain, out: Path, *, first: int = 1, last: int | None = None,
    progress: Progress | None = None,
) -> ExportSummary:
    """Write canonical blocks `first..last` (default: to the head) to `out`, which must be new."""
    head = chain.head.block_number
    last = head if last is None else last
    if first < 0 or last < first - 1 or last > head:
        raise BackupError(f"cannot export blocks {first}..{last}: the chain has 0..{head}")
    if out.exists():
        raise BackupError(f"refusing to overwrite {out}")
    tmp = out.with_name(f".{out.name}.partial")
    written = 0
    try:
        with _open_stream(tmp, "wb", gzipped=out.suffix == ".gz") as stream:
            for number in range(first, last + 1):
                block = chain.block_by_number(number)
                if block is None:
                    raise BackupError(f"block #{number} is missing from the database")
                data = rlp.encode(block)
                stream.write(data)
                written += len(data)
                if progress is not None:
                    progress(number - first + 1, last - first + 1)
        tmp.replace(out)
    except OSError as exc:
        raise BackupError(f"cannot write {out}: {exc}") from None
    finally:
        with contextlib.suppress(FileNotFoundError):
            tmp.unlink()
    return ExportSummary(first=first, last=last, blocks=last - first + 1, bytes=written)


def _read_exact(stream: IO[bytes], size: int, what: str) -> bytes:
    data = stream.read(size)
    if len(data) != size:
        raise BackupError(f"export file ends inside {what} (truncated?)")
    return data


def iter_rlp_items(stream: IO[bytes]) -> Iterator[bytes]:
    """The RLP list items of a concatenated stream, one at a time (never the whole file)."""
    index = 0
    while True:
        first = stream.read(1)
        if not first:
            return
        prefix = first[0]
        if 0xC0 <= prefix <= 0xF7:
            header, length = first, prefix - 0xC0
        elif prefix > 0xF7:
            size_bytes = _read_exact(stream, prefix - 0xF7, f"the header of item {index}")
            header, length = first + size_bytes, int.from_bytes(size_bytes, "big")
        else:
            raise BackupError(f"item {index} of the export is not an RLP list (not a block)")
        if length > MAX_EXPORTED_BLOCK_BYTES:
            raise BackupError(f"item {index} claims {length} bytes: not a block export")
        yield header + _read_exact(stream, length, f"block item {index}")
        index += 1


@dataclass(frozen=True)
class ImportSummary:
    imported: int
    skipped: int
    head_number: int
    head_hash: bytes
    state_root: bytes


def import_blocks(chain: Chain, source: Path, *, progress: Progress | None = None) -> ImportSummary:
    """Replay the blocks of an export onto `chain`, fully verified, each in its own batch.

    Blocks the chain already has (same hash) are skipped, so an interrupted import can be
    re-run. A block that conflicts with the stored chain or fails verification stops the import
    with every earlier block kept (each block is one atomic LevelDB batch).
    """
    block_class = chain.vm_at(chain.head).get_block_class()
    imported = skipped = 0
    try:
        with _open_stream(source, "rb") as stream:
            for index, raw in enumerate(iter_rlp_items(stream)):
                try:
                    block: BlockAPI = rlp.decode(raw, sedes=block_class)
                except (rlp.exceptions.RLPException, TypeError, ValueError) as exc:
                    raise BackupError(f"item {index} of {source} is not a block: {exc}") from None
                head = chain.head.block_number
                if block.number <= head:
                    stored = chain.header_by_number(block.number)
                    if stored is None or stored.hash != block.hash:
                        raise BackupError(
                            f"block #{block.number} of {source} differs from the stored one: "
                            "the export is from another chain or fork"
                        )
                    skipped += 1
                    continue
                if block.number != head + 1:
                    raise BackupError(
                        f"{source} jumps from the head #{head} to block #{block.number}: "
                        "blocks are missing from the export"
                    )
                try:
                    chain.import_block(block)
                except BlockRejected as exc:
                    message = f"block #{block.number} of {source} is invalid: {exc}"
                    raise BackupError(message) from None
                imported += 1
                if progress is not None:
                    progress(imported, 0)
    except (OSError, EOFError, gzip.BadGzipFile) as exc:
        raise BackupError(f"cannot read {source}: {exc}") from None
    head_header = chain.head
    return ImportSummary(imported=imported, skipped=skipped, head_number=head_header.block_number,
                         head_hash=head_header.hash, state_root=head_header.state_root)


# -- verification ----------------------------------------------------------------------------


@dataclass(frozen=True)
class VerifyReport:
    blocks: int
    head_number: int
    head_hash: bytes
    state_root: bytes
    accounts_checked: int


def verify_datadir(
    datadir: Path, genesis: Genesis, *, scratch: Path | None = None,
    progress: Progress | None = None,
) -> VerifyReport:
    """Replay every block of `datadir` from genesis into a scratch database and compare.

    Each block goes through `Chain.import_block` (seals, validator set, execution, state root).
    The stored head's state is then read back for every genesis account and compared with the
    replayed state, which proves the datadir's own state trie is intact, not only its blocks.
    """
    if not (Path(datadir) / CHAINDATA).is_dir():
        raise BackupError(f"{datadir} holds no chain database ({CHAINDATA}/ missing)")
    try:
        stored = Chain(datadir, genesis)
    except StorageError as exc:
        raise BackupError(str(exc)) from None
    owned_scratch = scratch is None
    scratch_dir = Path(tempfile.mkdtemp(prefix="medledger-verify-")) if scratch is None else scratch
    try:
        if (scratch_dir / CHAINDATA).exists():
            raise BackupError(f"scratch directory {scratch_dir} already holds a chain database")
        replay = Chain(scratch_dir, genesis)
        try:
            return _replay(stored, replay, progress)
        finally:
            replay.close()
    finally:
        stored.close()
        if owned_scratch:
            shutil.rmtree(scratch_dir, ignore_errors=True)


def _replay(stored: Chain, replay: Chain, progress: Progress | None) -> VerifyReport:
    head = stored.head
    for number in range(1, head.block_number + 1):
        block = stored.block_by_number(number)
        if block is None:
            raise BackupError(f"block #{number} is missing from the database")
        try:
            replay.import_block(block)
        except BlockRejected as exc:
            raise BackupError(f"block #{number} does not replay: {exc}") from None
        if replay.head.state_root != block.header.state_root:  # import checks it; be explicit
            raise BackupError(f"block #{number}: replayed state root differs")
        if progress is not None:
            progress(number, head.block_number)
    if replay.head.hash != head.hash:
        raise BackupError("the replayed head differs from the stored head")
    checked = _compare_accounts(stored, replay, head)
    return VerifyReport(blocks=head.block_number, head_number=head.block_number,
                        head_hash=head.hash, state_root=head.state_root, accounts_checked=checked)


def _compare_accounts(stored: Chain, replay: Chain, head: BlockHeaderAPI) -> int:
    try:
        ours = stored.state_at(head)
        theirs = replay.state_at(replay.head)
        addresses = list(stored.genesis.alloc)
        for address in addresses:
            mine = (ours.get_balance(address), ours.get_nonce(address), ours.get_code_hash(address))
            other = (theirs.get_balance(address), theirs.get_nonce(address),
                     theirs.get_code_hash(address))
            if mine != other:
                raise BackupError(f"account 0x{address.hex()} differs from its replayed state")
    except (KeyError, MissingTrieNode) as exc:
        message = f"the stored head state is incomplete (missing trie node: {exc})"
        raise BackupError(message) from None
    return len(addresses)


# -- snapshots -------------------------------------------------------------------------------


@dataclass(frozen=True)
class SnapshotInfo:
    path: str
    head_number: int
    head_hash: str
    state_root: str
    genesis_hash: str
    keys: int
    bytes: int
    taken_at: float

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


class _SnapshotCopy:
    """Copies one LevelDB snapshot into a new database in chunks (each a separate call)."""

    def __init__(self, store: LevelDBStore, dest_db: Path) -> None:
        self._store = store
        source = store._db  # LevelDBStore exposes no snapshot; the handle is needed for one
        self._snapshot = source.snapshot()
        self._iterator = self._snapshot.iterator()
        self._dest = plyvel.DB(str(dest_db), create_if_missing=True, error_if_exists=True)
        self.keys = 0
        self.bytes = 0
        self.done = False

    def step(self) -> bool:
        """Copy the next chunk; True once everything was copied."""
        if self._store._closed:
            raise BackupError("the chain database was closed during the snapshot")
        count = size = 0
        with self._dest.write_batch() as batch:
            for key, value in self._iterator:
                batch.put(key, value)
                count += 1
                size += len(key) + len(value)
                if count >= SNAPSHOT_CHUNK_KEYS or size >= SNAPSHOT_CHUNK_BYTES:
                    break
            else:
                self.done = True
        self.keys += count
        self.bytes += size
        return self.done

    def close(self) -> None:
        with contextlib.suppress(RuntimeError):
            self._iterator.close()
        with contextlib.suppress(RuntimeError):
            self._snapshot.close()
        self._dest.close()


def _prepare_destination(dest: Path) -> Path:
    dest = Path(dest)
    if dest.exists():
        raise BackupError(f"snapshot destination {dest} already exists")
    if not dest.parent.is_dir():
        raise BackupError(f"directory {dest.parent} for the snapshot does not exist")
    staging = dest.with_name(f".{dest.name}.partial")
    if staging.exists():
        shutil.rmtree(staging)
    staging.mkdir()
    return staging


def _finish_snapshot(
    staging: Path, dest: Path, genesis: Genesis, copy: _SnapshotCopy
) -> SnapshotInfo:
    try:
        chain = Chain(staging, genesis)
    except StorageError as exc:
        raise BackupError(f"the snapshot does not open as a chain: {exc}") from None
    try:
        head = chain.head
        info = SnapshotInfo(
            path=str(dest), head_number=head.block_number, head_hash="0x" + head.hash.hex(),
            state_root="0x" + head.state_root.hex(), genesis_hash="0x" + chain.genesis_hash.hex(),
            keys=copy.keys, bytes=copy.bytes, taken_at=time.time(),
        )
    finally:
        chain.close()
    (staging / MANIFEST).write_text(json.dumps(info.to_json(), indent=2) + "\n")
    staging.rename(dest)
    return info


def snapshot_chain(chain: Chain, dest: Path) -> SnapshotInfo:
    """Copy the database of an open chain (not shared with a running node) to a new datadir."""
    staging = _prepare_destination(dest)
    try:
        copy = _SnapshotCopy(chain.store, staging / CHAINDATA)
        try:
            while not copy.step():
                pass
        finally:
            copy.close()
        return _finish_snapshot(staging, Path(dest), chain.genesis, copy)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise


async def snapshot_node(node: Node, dest: Path) -> SnapshotInfo:
    """A consistent copy of a running node's database, while it keeps making blocks.

    The LevelDB snapshot is taken in the chain worker, between two block commits, and copied in
    chunks through the worker so block production only waits for one chunk at a time.
    """
    staging = _prepare_destination(dest)
    try:
        copy = await node.worker.run(_SnapshotCopy, node.chain.store, staging / CHAINDATA)
        try:
            while not await node.worker.run(copy.step):
                pass
        finally:
            with trio.CancelScope(shield=True):
                await node.worker.run(copy.close)
        # Opening the copy as a chain checks it; that needs no access to the node's chain.
        return await trio.to_thread.run_sync(
            _finish_snapshot, staging, Path(dest), node.config.genesis, copy
        )
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
