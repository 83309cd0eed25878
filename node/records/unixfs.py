"""UnixFS file DAGs exactly as Kubo's `ipfs add` builds them (fixed-size chunker, balanced layout).

Two profiles matter: Kubo's default (CIDv0, every leaf a dag-pb UnixFS node) and
`--cid-version=1` (CIDv1, raw leaves). Both use the 256 KiB chunker and at most 174 links per
node. The builder streams: it holds one chunk and one partial node per tree level, never the
file, and hands every finished block to a sink so stores can write as they go.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass

from node.records.cid import CID, DAG_PB, RAW, CIDError, decode_varint, encode_varint

DEFAULT_CHUNK_SIZE = 262_144
DEFAULT_MAX_LINKS = 174
UNIXFS_RAW = 0
UNIXFS_FILE = 2

BlockSink = Callable[[CID, bytes], None]


class DagError(ValueError):
    """A block is not a UnixFS file node this reader understands."""


@dataclass(frozen=True)
class DagProfile:
    """How a byte stream becomes a DAG; equal profiles give equal CIDs for equal bytes."""

    cid_version: int = 1
    raw_leaves: bool = True
    chunk_size: int = DEFAULT_CHUNK_SIZE
    max_links: int = DEFAULT_MAX_LINKS

    def __post_init__(self) -> None:
        if self.cid_version not in (0, 1):
            raise ValueError("cid_version must be 0 or 1")
        if self.cid_version == 0 and self.raw_leaves:
            raise ValueError("CIDv0 cannot address raw leaves (Kubo uses dag-pb leaves for v0)")
        if not 1 <= self.chunk_size <= 1_048_576:
            raise ValueError("chunk_size must be between 1 byte and 1 MiB")
        if self.max_links < 2:
            raise ValueError("max_links must be at least 2")

    @classmethod
    def kubo_default(cls) -> DagProfile:
        """`ipfs add` with no flags: CIDv0, dag-pb leaves."""
        return cls(cid_version=0, raw_leaves=False)

    @classmethod
    def kubo_cidv1(cls) -> DagProfile:
        """`ipfs add --cid-version=1`: CIDv1, raw leaves (Kubo turns them on with v1)."""
        return cls(cid_version=1, raw_leaves=True)

    @classmethod
    def for_cid(cls, cid: CID) -> DagProfile:
        """The Kubo profile that produces CIDs shaped like `cid` (default chunker assumed)."""
        if cid.version == 0:
            return cls.kubo_default()
        return cls.kubo_cidv1()


def _key(field: int, wire: int) -> bytes:
    return encode_varint(field << 3 | wire)


def _bytes_field(field: int, value: bytes) -> bytes:
    return _key(field, 2) + encode_varint(len(value)) + value


def _varint_field(field: int, value: int) -> bytes:
    return _key(field, 0) + encode_varint(value)


def encode_unixfs_file(data: bytes | None, filesize: int, blocksizes: list[int]) -> bytes:
    out = _varint_field(1, UNIXFS_FILE)
    if data:
        out += _bytes_field(2, data)
    out += _varint_field(3, filesize)
    for size in blocksizes:
        out += _varint_field(4, size)
    return out


@dataclass(frozen=True)
class Link:
    cid: CID
    tsize: int  # cumulative size of the child's blocks, as Kubo records it
    filesize: int  # file bytes under the child


def encode_pbnode(links: list[Link], data: bytes) -> bytes:
    """dag-pb canonical form: links (field 2) first, then data (field 1)."""
    out = bytearray()
    for link in links:
        body = _bytes_field(1, link.cid.to_bytes()) + _bytes_field(2, b"")
        body += _varint_field(3, link.tsize)
        out += _bytes_field(2, body)
    out += _bytes_field(1, data)
    return bytes(out)


class DagBuilder:
    """Feed bytes with `write`, get the root CID from `finish`; blocks go to `sink` in order."""

    def __init__(self, profile: DagProfile | None = None, sink: BlockSink | None = None) -> None:
        self.profile = profile or DagProfile()
        self._sink = sink
        self._buffer = bytearray()
        self._levels: list[list[Link]] = [[]]
        self._leaves = 0
        self.size = 0
        self._root: CID | None = None

    def write(self, data: bytes) -> None:
        if self._root is not None:
            raise RuntimeError("DagBuilder already finished")
        self.size += len(data)
        self._buffer += data
        chunk = self.profile.chunk_size
        if len(self._buffer) < chunk:
            return
        view = memoryview(self._buffer)
        full = len(self._buffer) // chunk * chunk
        for start in range(0, full, chunk):
            self._add_leaf(bytes(view[start : start + chunk]))
        view.release()
        del self._buffer[:full]

    def finish(self) -> CID:
        if self._root is not None:
            return self._root
        if self._buffer or self._leaves == 0:
            self._add_leaf(bytes(self._buffer))
            self._buffer.clear()
        level = 0
        while True:
            top = level == len(self._levels) - 1
            links = self._levels[level]
            if top and len(links) == 1:
                self._root = links[0].cid
                return self._root
            parent = self._make_node(links)
            self._levels[level] = []
            if top:
                self._root = parent.cid
                return self._root
            self._push(level + 1, parent)
            level += 1

    def _emit(self, cid: CID, block: bytes) -> None:
        if self._sink is not None:
            self._sink(cid, block)

    def _add_leaf(self, chunk: bytes) -> None:
        self._leaves += 1
        if self.profile.raw_leaves:
            cid = CID.of_block(chunk, version=1, codec=RAW)
            block = chunk
        else:
            block = encode_pbnode([], encode_unixfs_file(chunk, len(chunk), []))
            cid = CID.of_block(block, version=self.profile.cid_version, codec=DAG_PB)
        self._emit(cid, block)
        self._push(0, Link(cid, len(block), len(chunk)))

    def _push(self, level: int, link: Link) -> None:
        """Append to a level, first folding it into its parent if full (lazy, as Kubo's layout)."""
        if level == len(self._levels):
            self._levels.append([])
        if len(self._levels[level]) == self.profile.max_links:
            parent = self._make_node(self._levels[level])
            self._levels[level] = []
            self._push(level + 1, parent)
        self._levels[level].append(link)

    def _make_node(self, links: list[Link]) -> Link:
        filesize = sum(link.filesize for link in links)
        data = encode_unixfs_file(None, filesize, [link.filesize for link in links])
        block = encode_pbnode(links, data)
        cid = CID.of_block(block, version=self.profile.cid_version, codec=DAG_PB)
        self._emit(cid, block)
        return Link(cid, len(block) + sum(link.tsize for link in links), filesize)


def compute_cid(data: bytes, profile: DagProfile | None = None) -> CID:
    builder = DagBuilder(profile)
    builder.write(data)
    return builder.finish()


@dataclass(frozen=True)
class FileNode:
    """A decoded dag-pb UnixFS file node."""

    links: list[CID]
    data: bytes
    filesize: int
    blocksizes: list[int]


def _iter_fields(buf: bytes) -> Iterator[tuple[int, int, int | bytes]]:
    pos = 0
    try:
        while pos < len(buf):
            key, pos = decode_varint(buf, pos)
            field, wire = key >> 3, key & 7
            if wire == 0:
                value, pos = decode_varint(buf, pos)
                yield field, wire, value
            elif wire == 2:
                length, pos = decode_varint(buf, pos)
                if pos + length > len(buf):
                    raise DagError("truncated protobuf field")
                yield field, wire, buf[pos : pos + length]
                pos += length
            else:
                raise DagError(f"unsupported protobuf wire type {wire}")
    except CIDError as exc:
        raise DagError(str(exc)) from None


def decode_file_node(block: bytes) -> FileNode:
    links: list[CID] = []
    unixfs = b""
    for field, wire, value in _iter_fields(block):
        if field == 2 and wire == 2:
            assert isinstance(value, bytes)
            for lfield, lwire, lvalue in _iter_fields(value):
                if lfield == 1 and lwire == 2:
                    assert isinstance(lvalue, bytes)
                    try:
                        links.append(CID.from_bytes(lvalue))
                    except CIDError as exc:
                        raise DagError(f"bad link: {exc}") from None
        elif field == 1 and wire == 2:
            assert isinstance(value, bytes)
            unixfs = value
    kind = -1
    data = b""
    filesize = 0
    blocksizes: list[int] = []
    for field, wire, value in _iter_fields(unixfs):
        if field == 1 and wire == 0:
            assert isinstance(value, int)
            kind = value
        elif field == 2 and wire == 2:
            assert isinstance(value, bytes)
            data = value
        elif field == 3 and wire == 0:
            assert isinstance(value, int)
            filesize = value
        elif field == 4 and wire == 0:
            assert isinstance(value, int)
            blocksizes.append(value)
    if kind not in (UNIXFS_FILE, UNIXFS_RAW):
        raise DagError(f"not a UnixFS file node (type {kind})")
    if len(blocksizes) != len(links):
        raise DagError("UnixFS blocksizes do not match the links")
    return FileNode(links, data, filesize, blocksizes)


def iter_file(root: CID, load: Callable[[CID], bytes]) -> Iterator[bytes]:
    """Yield a file's bytes in order, depth first; `load` must return verified blocks."""
    stack = [root]
    while stack:
        cid = stack.pop()
        block = load(cid)
        if cid.codec == RAW:
            if block:
                yield block
            continue
        if cid.codec != DAG_PB:
            raise DagError(f"unsupported codec 0x{cid.codec:x} in file DAG")
        node = decode_file_node(block)
        if node.data:
            yield node.data
        stack.extend(reversed(node.links))
