"""Embedded store: Kubo-identical CIDs (checked against independent tools), pins, GC, integrity."""

from __future__ import annotations

import json
import os
import random
import shutil
import subprocess
from pathlib import Path

import pytest

from node.records.blockstore import IntegrityError, NotFoundError
from node.records.cache import ByteLRU, CachingBlockstore
from node.records.cid import CID, CIDError
from node.records.embedded import EmbeddedBlockstore
from node.records.unixfs import DagProfile, compute_cid

CHUNK = 262_144
V0 = DagProfile.kubo_default()
V1 = DagProfile.kubo_cidv1()

# Published by Kubo itself for these exact inputs (`ipfs add`, `ipfs add --cid-version=1`).
KNOWN = [
    (b"", "QmbFMke1KXqnYyBBWxB74N4c5SBnJMVAiMNRcGu6x1AwQH", V0),
    (b"hello", "QmWfVY9y3xjsixTgbd9AorQxH7VtMpzfx2HaWtsoUYecaX", V0),
    (b"hello", "bafkreibm6jg3ux5qumhcn2b3flc3tyu6dmlb4xa7u5bf44yegnrjhc4yeq", V1),
    (b"", "bafkreihdwdcefgh4dqkjv67uzcmw7ojee6xedzdetojuzjevtenxquvyku", V1),
]

# Sizes around the chunker and the 174-links-per-node boundaries (depth 1 -> 2).
SIZES = [0, 1, CHUNK - 1, CHUNK, CHUNK + 1, 3 * CHUNK + 5, 174 * CHUNK, 174 * CHUNK + 1]


def pseudo_random(size: int, seed: int) -> bytes:
    return random.Random(seed).randbytes(size)


@pytest.mark.parametrize(("data", "expected", "profile"), KNOWN)
def test_known_cids(data: bytes, expected: str, profile: DagProfile) -> None:
    assert str(compute_cid(data, profile)) == expected


def test_cid_parsing_round_trip() -> None:
    for _, text, _ in KNOWN:
        assert CID.parse(text).encode() == text
    for bad in ["", "Qm123", "zabc", "b!!!!", "QmbFMke1KXqnYyBBWxB74N4c5SBnJMVAiMNRcGu6x1AwQ0"]:
        with pytest.raises(CIDError):
            CID.parse(bad)


@pytest.mark.parametrize("size", SIZES)
def test_matches_aleph_cid(size: int) -> None:
    """aleph-cid (Rust, independent of this code) computes Kubo's CIDs for both profiles."""
    aleph_cid = pytest.importorskip("aleph_cid")
    data = pseudo_random(size, size)
    v0 = aleph_cid.CidHasher.for_ipfs()
    v0.update(data)
    v1 = aleph_cid.CidHasher.for_ipfs_v1_raw_leaves()
    v1.update(data)
    assert str(compute_cid(data, V0)) == v0.finalize()
    assert str(compute_cid(data, V1)) == v1.finalize()


@pytest.mark.skipif(shutil.which("ipfs_cid") is None, reason="Debian package ipfs-cid missing")
@pytest.mark.parametrize("size", SIZES)
def test_matches_debian_ipfs_cid(size: int, tmp_path: Path) -> None:
    """Debian's `ipfs_cid` (rust-cid-npm) computes Kubo's default CIDv0 for a file."""
    path = tmp_path / "f"
    data = pseudo_random(size, size + 1)
    path.write_bytes(data)
    out = subprocess.run(["ipfs_cid", str(path)], capture_output=True, check=True, timeout=60)
    expected = json.loads(out.stdout)["CIDv0"]
    store = EmbeddedBlockstore(tmp_path / "store", profile=V0, durable=False)
    assert store.put(data) == expected


@pytest.fixture()
def store(tmp_path: Path) -> EmbeddedBlockstore:
    return EmbeddedBlockstore(tmp_path / "store", durable=False)


def test_put_get_stream(store: EmbeddedBlockstore) -> None:
    data = os.urandom(5 * CHUNK + 3)
    cid = store.put(iter([data[:1000], data[1000:]]))
    assert cid == str(compute_cid(data, V1))
    assert b"".join(store.get(cid)) == data
    assert store.stat(cid).size > 0
    assert store.is_pinned(cid)


def test_pins_and_gc(store: EmbeddedBlockstore) -> None:
    keep = store.put(os.urandom(3 * CHUNK))
    drop = store.put(os.urandom(2 * CHUNK))
    store.unpin(drop)
    with pytest.raises(NotFoundError):
        store.unpin(drop)
    assert store.gc() == 3  # two leaves and the root of `drop`
    assert b"".join(store.get(keep))
    with pytest.raises(NotFoundError):
        store.get(drop)
    with pytest.raises(NotFoundError):
        store.pin(drop)
    unpinned = store.put(b"temporary", pin=False)
    assert not store.is_pinned(unpinned)
    store.pin(unpinned)
    assert store.is_pinned(unpinned)


def test_corrupted_block_is_detected(store: EmbeddedBlockstore) -> None:
    data = os.urandom(2 * CHUNK)
    cid = store.put(data)
    leaf = next(p for p in (store.root / "blocks").glob("*/*.data") if p.stat().st_size == CHUNK)
    corrupted = bytearray(leaf.read_bytes())
    corrupted[7] ^= 1
    leaf.write_bytes(bytes(corrupted))
    with pytest.raises(IntegrityError):
        b"".join(store.get(cid))


def test_block_cache_serves_repeated_reads(tmp_path: Path) -> None:
    cache = ByteLRU(4 * CHUNK)
    store = EmbeddedBlockstore(tmp_path, cache=cache, durable=False)
    cid = store.put(os.urandom(2 * CHUNK))
    b"".join(store.get(cid))
    misses = cache.misses
    b"".join(store.get(cid))
    assert cache.misses == misses and cache.hits >= 3
    assert cache.size <= cache.max_bytes


def test_byte_lru_bound() -> None:
    cache = ByteLRU(10)
    cache.put("a", b"12345")
    cache.put("b", b"12345")
    assert cache.get("a") == b"12345"  # a is now most recent
    cache.put("c", b"123")
    assert cache.get("b") is None and cache.get("a") is not None and cache.size == 8
    cache.put("big", b"x" * 11)
    assert cache.get("big") is None


def test_caching_blockstore_keeps_small_objects(store: EmbeddedBlockstore) -> None:
    caching = CachingBlockstore(store, ByteLRU(1 << 20), max_object=1000)
    small = caching.put(b"small object")
    large = caching.put(os.urandom(5000))
    assert caching.read_all(small) == b"small object"
    assert caching.cache.get(small) == b"small object"
    caching.read_all(large)
    assert caching.cache.get(large) is None
    store.unpin(small)
    store.gc()
    assert caching.read_all(small) == b"small object"  # served from cache
