"""Fuzzing the encrypted record envelopes and key bundles (node/records/): any tampering of
the preamble, header, header tag, frame headers, ciphertext, chunk tags, chunk order, length,
or of the key bundle (wrapped key, header hash, key id, content CID) must be rejected with
the module's error (EnvelopeError / KeyBundleError). Decryption never returns anything but
the original plaintext."""

from __future__ import annotations

import base64
import json
import struct
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from node.records.embedded import EmbeddedBlockstore
from node.records.envelope import (
    MIN_CHUNK_SIZE,
    EnvelopeError,
    decrypt_bytes,
    encrypt_bytes,
    new_data_key,
)
from node.records.keybundle import KeyBundle, KeyBundleError
from node.records.keys import PrivateKey, generate_private_key
from node.records.store import RecordStore
from tests.fuzz.conftest import examples
from tests.fuzz.stats import case

CHUNK = MIN_CHUNK_SIZE
_PREAMBLE_LEN = 10  # b"MLENV" | u8 version | u32 header_len
_FRAME_HEADER = struct.Struct(">BI")


def frames(envelope: bytes) -> tuple[int, list[tuple[int, int]]]:
    """(end of the header tag, [(start, end) of each frame])."""
    header_len = struct.unpack(">I", envelope[6:10])[0]
    pos = _PREAMBLE_LEN + header_len + 16
    spans = []
    while pos < len(envelope):
        _, length = _FRAME_HEADER.unpack(envelope[pos:pos + 5])
        spans.append((pos, pos + 5 + length))
        pos += 5 + length
    return _PREAMBLE_LEN + header_len + 16, spans


def tamper(envelope: bytes, data: st.DataObject) -> bytes:
    """One structured or byte-level change aimed at a chosen part of the envelope."""
    header_end, spans = frames(envelope)
    kind = data.draw(st.sampled_from(["flip", "truncate", "extend", "drop", "swap", "repeat",
                                      "frame_flag", "frame_length", "splice"]), label="kind")
    if kind == "flip":  # anywhere: preamble, header JSON, header tag, ciphertext, chunk tag
        region = data.draw(st.sampled_from(["preamble", "header", "tag", "frames"]))
        lo, hi = {"preamble": (0, _PREAMBLE_LEN), "header": (_PREAMBLE_LEN, header_end - 16),
                  "tag": (header_end - 16, header_end), "frames": (header_end, len(envelope))
                  }[region]
        i = data.draw(st.integers(lo, hi - 1))
        bit = data.draw(st.integers(0, 7))
        return envelope[:i] + bytes([envelope[i] ^ (1 << bit)]) + envelope[i + 1:]
    if kind == "truncate":
        return envelope[: data.draw(st.integers(0, len(envelope) - 1))]
    if kind == "extend":
        return envelope + data.draw(st.binary(min_size=1, max_size=64))
    body = [envelope[a:b] for a, b in spans]
    head = envelope[:header_end]
    if kind == "drop":
        i = data.draw(st.integers(0, len(body) - 1))
        return head + b"".join(body[:i] + body[i + 1:])
    if kind == "swap" and len(body) > 1:
        i, j = data.draw(st.lists(st.integers(0, len(body) - 1), min_size=2, max_size=2,
                                  unique=True))
        body[i], body[j] = body[j], body[i]
        return head + b"".join(body)
    if kind == "repeat":
        i = data.draw(st.integers(0, len(body) - 1))
        return head + b"".join(body[: i + 1] + [body[i]] + body[i + 1:])
    if kind == "frame_flag":
        i = data.draw(st.integers(0, len(body) - 1))
        flag = data.draw(st.integers(0, 255).filter(lambda f: f != body[i][0]))
        body[i] = bytes([flag]) + body[i][1:]
        return head + b"".join(body)
    if kind == "frame_length":
        i = data.draw(st.integers(0, len(body) - 1))
        length = data.draw(st.integers(0, 2**32 - 1))
        body[i] = body[i][:1] + struct.pack(">I", length) + body[i][5:]
        return head + b"".join(body)
    i = data.draw(st.integers(0, len(envelope)))
    junk = data.draw(st.binary(min_size=1, max_size=32))
    return envelope[:i] + junk + envelope[i + len(junk):]


@settings(max_examples=examples(300))
@given(plaintext=st.binary(max_size=3 * CHUNK + 100), data=st.data())
def test_tampered_envelope_is_rejected(plaintext: bytes, data: st.DataObject) -> None:
    case()
    key = new_data_key()
    envelope, result = encrypt_bytes(plaintext, key, chunk_size=CHUNK)
    assert decrypt_bytes(envelope, key, expected_header_hash=result.header_hash,
                         expected_sha3=result.sha3_256) == plaintext
    tampered = tamper(envelope, data)
    try:
        out = decrypt_bytes(tampered, key, expected_header_hash=result.header_hash,
                            workers=1)
    except EnvelopeError:
        return
    assert tampered == envelope and out == plaintext, "tampered envelope decrypted"


@settings(max_examples=examples(40))
@given(plaintext=st.binary(max_size=2 * CHUNK), other=st.binary(min_size=1, max_size=CHUNK))
def test_envelope_of_another_record_or_key_is_rejected(plaintext: bytes, other: bytes) -> None:
    case()
    key = new_data_key()
    envelope, result = encrypt_bytes(plaintext, key, chunk_size=CHUNK)
    with pytest.raises(EnvelopeError):
        decrypt_bytes(envelope, new_data_key())
    foreign, _ = encrypt_bytes(other, key, chunk_size=CHUNK)  # same key, another envelope
    with pytest.raises(EnvelopeError):
        decrypt_bytes(foreign, key, expected_header_hash=result.header_hash)


# -- key bundles ------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def record(tmp_path_factory: pytest.TempPathFactory) -> tuple[RecordStore, PrivateKey, str, bytes]:
    store = RecordStore(EmbeddedBlockstore(tmp_path_factory.mktemp("records")),
                        chunk_size=CHUNK, workers=1)
    key = generate_private_key()
    plaintext = bytes(range(256)) * 40
    put = store.put(plaintext, [key.public_key()])
    return store, key, put.record_cid, plaintext


def tamper_bundle(doc: dict[str, Any], data: st.DataObject) -> dict[str, Any]:
    doc = json.loads(json.dumps(doc))
    field = data.draw(st.sampled_from(["wrapped", "header", "kid", "content", "size",
                                       "format", "drop", "junk"]), label="field")
    entry = doc["recipients"][0]
    if field == "wrapped":
        wrapped = bytearray(base64.b64decode(entry["wrapped"]))
        i = data.draw(st.integers(0, len(wrapped) - 1))
        wrapped[i] ^= 1 << data.draw(st.integers(0, 7))
        entry["wrapped"] = base64.b64encode(bytes(wrapped)).decode()
    elif field == "header":
        digest = bytearray(bytes.fromhex(doc["header_sha256"]))
        digest[data.draw(st.integers(0, 31))] ^= 1
        doc["header_sha256"] = digest.hex()
    elif field == "kid":
        entry["kid"] = data.draw(st.binary(min_size=0, max_size=40)).hex()
    elif field == "content":
        doc["content"] = data.draw(st.sampled_from([
            "bafkreigh2akiscaildcqabsyg3dfr6chu3fgpregiymsck7e7aqa4s52zy", "not a cid", ""]))
    elif field == "size":
        doc["size"] = data.draw(st.one_of(st.integers(-5, 10**12), st.text(max_size=3)))
    elif field == "format":
        doc[data.draw(st.sampled_from(["format", "version", "wrap"]))] = "x"
    elif field == "drop":
        del doc[data.draw(st.sampled_from(sorted(doc)))]
    else:
        doc[data.draw(st.sampled_from(sorted(doc)))] = data.draw(
            st.one_of(st.none(), st.integers(), st.text(max_size=5), st.lists(st.none())))
    return doc


@settings(max_examples=examples(60))
@given(data=st.data())
def test_tampered_key_bundle_is_rejected(
    record: tuple[RecordStore, PrivateKey, str, bytes], data: st.DataObject
) -> None:
    case()
    store, key, cid, plaintext = record
    original = store.bundle(cid)
    doc = tamper_bundle(json.loads(original.to_json()), data)
    try:
        bundle = KeyBundle.from_json(json.dumps(doc).encode())
        data_key = bundle.unwrap(key)
        envelope = store.blockstore.get(original.content)  # the real ciphertext
        out = decrypt_bytes(envelope, data_key, expected_header_hash=bundle.header_hash,
                            workers=1)
    except (KeyBundleError, EnvelopeError):
        return
    # Only changes that do not touch the key, the header binding or the content can pass
    # (e.g. the advisory size): the plaintext must then be exactly the record's.
    assert out == plaintext
    assert bundle.header_hash == original.header_hash
    assert bundle.recipients == original.recipients


def test_wrong_private_key_is_refused(record: tuple[RecordStore, PrivateKey, str, bytes]) -> None:
    store, _, cid, _ = record
    with pytest.raises(KeyBundleError):
        store.read_bytes(cid, generate_private_key())
