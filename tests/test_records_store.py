"""RecordStore, key bundles and RSA key files: access control and integrity end to end."""

from __future__ import annotations

import hashlib
import json
import os
import resource
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric import rsa

from node.records.blockstore import IntegrityError
from node.records.embedded import EmbeddedBlockstore
from node.records.envelope import DecryptionError, DigestMismatchError, EnvelopeError
from node.records.keybundle import KeyBundle, KeyBundleError
from node.records.keys import (
    RecordKeyError,
    fetch_public_key,
    generate_private_key,
    key_id,
    load_private_key,
    load_public_key,
    public_key_der,
    public_key_pem,
    publish_public_key,
    save_private_key,
)
from node.records.store import RecordStore

CHUNK = 1 << 16


@pytest.fixture(scope="module")
def keys() -> dict[str, rsa.RSAPrivateKey]:
    return {name: generate_private_key() for name in ("patient", "hospital", "doctor", "other")}


@pytest.fixture()
def store(tmp_path: Path) -> RecordStore:
    return RecordStore(EmbeddedBlockstore(tmp_path / "store", durable=False), chunk_size=CHUNK)


def test_round_trip_for_every_recipient(store: RecordStore, keys: dict, tmp_path: Path) -> None:
    data = os.urandom(5 * CHUNK + 9)
    result = store.put(data, [keys["patient"].public_key(), keys["hospital"].public_key()])
    assert result.sha3_256 == hashlib.sha3_256(data).digest() and result.size == len(data)
    assert set(result.recipients) == {key_id(keys["patient"]), key_id(keys["hospital"])}
    for name in ("patient", "hospital"):
        out = tmp_path / f"{name}.bin"
        store.read_to_file(result.record_cid, keys[name], out, expected_sha3=result.sha3_256)
        assert out.read_bytes() == data
    ciphertext = store.raw.read_all(result.content_cid)
    assert data[:64] not in ciphertext


def test_wrong_recipient(store: RecordStore, keys: dict, tmp_path: Path) -> None:
    result = store.put(b"diagnosis", [keys["patient"].public_key()])
    with pytest.raises(KeyBundleError, match="not wrapped for the given key"):
        store.read_to_file(result.record_cid, keys["other"], tmp_path / "out")
    assert not (tmp_path / "out").exists()


def test_grant_rewraps_without_touching_ciphertext(store: RecordStore, keys: dict) -> None:
    data = os.urandom(3 * CHUNK)
    result = store.put(data, [keys["patient"].public_key()])
    envelope_before = store.raw.read_all(result.content_cid)
    granted = store.grant(result.record_cid, keys["patient"], keys["doctor"].public_key())
    assert granted != result.record_cid
    assert store.bundle(granted).content == result.content_cid
    assert store.raw.read_all(result.content_cid) == envelope_before
    assert store.read_bytes(granted, keys["doctor"]) == data
    assert store.read_bytes(granted, keys["patient"]) == data
    with pytest.raises(KeyBundleError):
        store.read_bytes(result.record_cid, keys["doctor"])  # the old bundle stays as it was


def test_rotation_uses_a_new_data_key(store: RecordStore, keys: dict) -> None:
    data = os.urandom(2 * CHUNK + 1)
    first = store.put(data, [keys["patient"].public_key(), keys["doctor"].public_key()])
    old_key = store.bundle(first.record_cid).unwrap(keys["patient"])
    second = store.rotate(first.record_cid, keys["patient"], [keys["patient"].public_key()])
    assert second.content_cid != first.content_cid and second.sha3_256 == first.sha3_256
    assert store.bundle(second.record_cid).unwrap(keys["patient"]) != old_key
    assert store.read_bytes(second.record_cid, keys["patient"]) == data
    with pytest.raises(KeyBundleError):
        store.read_bytes(second.record_cid, keys["doctor"])


def test_tampered_wrapped_key(store: RecordStore, keys: dict, tmp_path: Path) -> None:
    result = store.put(b"lab result", [keys["patient"].public_key()])
    doc = json.loads(store.raw.read_all(result.record_cid))
    wrapped = bytearray(__import__("base64").b64decode(doc["recipients"][0]["wrapped"]))
    wrapped[100] ^= 1
    doc["recipients"][0]["wrapped"] = __import__("base64").b64encode(bytes(wrapped)).decode()
    forged = store.raw.put(json.dumps(doc).encode())
    with pytest.raises(KeyBundleError, match="cannot unwrap"):
        store.read_to_file(forged, keys["patient"], tmp_path / "out")
    assert list(tmp_path.iterdir()) == [tmp_path / "store"]


def test_wrapped_key_bound_to_its_envelope(store: RecordStore, keys: dict) -> None:
    one = store.put(b"record one", [keys["patient"].public_key()])
    two = store.put(b"record two", [keys["patient"].public_key()])
    bundle_one, bundle_two = store.bundle(one.record_cid), store.bundle(two.record_cid)
    # point record one's wrapped key at record two's envelope: the OAEP label no longer fits
    mixed = KeyBundle(bundle_two.content, bundle_two.header_hash, 10, bundle_one.recipients)
    with pytest.raises(KeyBundleError, match="cannot unwrap"):
        mixed.unwrap(keys["patient"])
    # keep record one's header hash but swap the envelope: the header check refuses it
    swapped = KeyBundle(bundle_two.content, bundle_one.header_hash, 10, bundle_one.recipients)
    with pytest.raises(DecryptionError, match="header hash"):
        store.read_bytes(store.raw.put(swapped.to_json()), keys["patient"])


def test_on_chain_hash_mismatch_releases_nothing(
    store: RecordStore, keys: dict, tmp_path: Path
) -> None:
    result = store.put(os.urandom(CHUNK + 5), [keys["patient"].public_key()])
    out = tmp_path / "out.bin"
    with pytest.raises(DigestMismatchError):
        store.read_to_file(result.record_cid, keys["patient"], out, expected_sha3=bytes(32))
    assert not out.exists()


def test_tampered_ciphertext_in_store(tmp_path: Path, keys: dict) -> None:
    blockstore = EmbeddedBlockstore(tmp_path / "store", durable=False)
    store = RecordStore(blockstore, chunk_size=CHUNK)
    result = store.put(os.urandom(4 * CHUNK), [keys["patient"].public_key()])
    envelope = bytearray(blockstore.read_all(result.content_cid))
    envelope[len(envelope) // 2] ^= 1
    # an attacker re-adds the modified envelope and points a bundle at it
    bundle = store.bundle(result.record_cid)
    evil = KeyBundle(blockstore.put(bytes(envelope)), bundle.header_hash, 1, bundle.recipients)
    out = tmp_path / "out.bin"
    with pytest.raises(EnvelopeError):
        store.read_to_file(blockstore.put(evil.to_json()), keys["patient"], out)
    assert not out.exists()


def test_corrupted_block_on_disk(tmp_path: Path, keys: dict) -> None:
    """A flipped bit in a stored block is caught by the content address before decryption."""
    store = RecordStore(EmbeddedBlockstore(tmp_path / "store", durable=False), chunk_size=CHUNK)
    result = store.put(os.urandom(4 * CHUNK), [keys["patient"].public_key()])
    out = tmp_path / "out.bin"
    for path in (tmp_path / "store" / "blocks").glob("*/*.data"):
        if path.stat().st_size == 262_144:
            raw = bytearray(path.read_bytes())
            raw[0] ^= 1
            path.write_bytes(bytes(raw))
            break
    with pytest.raises(IntegrityError):
        store.read_to_file(result.record_cid, keys["patient"], out)
    assert not out.exists()


def test_bundle_rejects_garbage(store: RecordStore) -> None:
    for text in [b"not json", b"{}", b'{"format":"medledger-keys","version":2}']:
        with pytest.raises(KeyBundleError):
            KeyBundle.from_json(text)


def test_no_recipients_refused(store: RecordStore) -> None:
    with pytest.raises(KeyBundleError):
        store.put(b"x", [])


def test_private_key_file(tmp_path: Path, keys: dict) -> None:
    path = tmp_path / "hospital.pem"
    save_private_key(path, keys["hospital"], "correct horse")
    assert path.stat().st_mode & 0o777 == 0o600
    assert b"ENCRYPTED PRIVATE KEY" in path.read_bytes()
    loaded = load_private_key(path, "correct horse")
    assert key_id(loaded) == key_id(keys["hospital"])
    with pytest.raises(RecordKeyError, match="wrong passphrase"):
        load_private_key(path, "wrong")
    with pytest.raises(RecordKeyError):
        save_private_key(path, keys["hospital"], "again")  # never overwrites
    with pytest.raises(RecordKeyError):
        save_private_key(tmp_path / "x.pem", keys["hospital"], "")


def test_short_keys_refused() -> None:
    with pytest.raises(RecordKeyError):
        generate_private_key(2048)
    short = rsa.generate_private_key(public_exponent=65537, key_size=2048).public_key()
    with pytest.raises(RecordKeyError, match="at least 3072"):
        load_public_key(public_key_pem(short))


def test_published_public_key(store: RecordStore, keys: dict) -> None:
    cid, kid = publish_public_key(store.raw, keys["doctor"].public_key())
    assert kid == hashlib.sha256(public_key_der(keys["doctor"].public_key())).digest()
    assert key_id(fetch_public_key(store.raw, cid, kid)) == kid
    with pytest.raises(RecordKeyError, match="does not match"):
        fetch_public_key(store.raw, cid, bytes(32))


def _rss_hwm_reset() -> None:
    Path("/proc/self/clear_refs").write_text("5")


def _rss_hwm_kib() -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1])
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss


@pytest.mark.slow
def test_100mb_round_trip_constant_memory(tmp_path: Path, keys: dict) -> None:
    size = 100 * 1024 * 1024
    src = tmp_path / "src.bin"
    digest = hashlib.sha3_256()
    with src.open("wb") as handle:
        for _ in range(size // (1 << 20)):
            block = os.urandom(1 << 20)
            digest.update(block)
            handle.write(block)
    store = RecordStore(EmbeddedBlockstore(tmp_path / "store", durable=False))
    _rss_hwm_reset()
    base = _rss_hwm_kib()
    with src.open("rb") as handle:
        result = store.put(handle, [keys["patient"].public_key()])
    out = tmp_path / "out.bin"
    store.read_to_file(result.record_cid, keys["patient"], out, expected_sha3=digest.digest())
    growth_mib = (_rss_hwm_kib() - base) / 1024
    assert result.sha3_256 == digest.digest() and out.stat().st_size == size
    assert growth_mib < 100, f"peak RSS grew by {growth_mib:.0f} MiB"
