"""Envelope v1: round trips at chunk boundaries, and every kind of tampering is refused."""

from __future__ import annotations

import hashlib
import os
import struct
from pathlib import Path

import pytest

from node.records.envelope import (
    DEFAULT_CHUNK_SIZE,
    MIN_CHUNK_SIZE,
    TAG_LEN,
    DecryptionError,
    DigestMismatchError,
    EnvelopeError,
    EnvelopeFormatError,
    ExtensionError,
    TruncatedError,
    decrypt_bytes,
    decrypt_to_file,
    encrypt_bytes,
    iter_decrypt,
    new_data_key,
)

CHUNK = MIN_CHUNK_SIZE
FRAME_HEAD = 5


def split_envelope(envelope: bytes) -> tuple[bytes, list[bytes]]:
    """(header incl. tag, frames) - parsed independently of the code under test."""
    header_len = struct.unpack(">I", envelope[6:10])[0]
    head_end = 10 + header_len + TAG_LEN
    frames, pos = [], head_end
    while pos < len(envelope):
        length = struct.unpack(">I", envelope[pos + 1 : pos + 5])[0]
        frames.append(envelope[pos : pos + FRAME_HEAD + length])
        pos += FRAME_HEAD + length
    return envelope[:head_end], frames


@pytest.fixture(scope="module")
def key() -> bytes:
    return new_data_key()


@pytest.mark.parametrize("size", [0, 1, CHUNK - 1, CHUNK, CHUNK + 1, 2 * CHUNK, 3 * CHUNK + 17])
def test_round_trip_small_chunks(key: bytes, size: int) -> None:
    data = os.urandom(size)
    envelope, result = encrypt_bytes(data, key, chunk_size=CHUNK)
    assert decrypt_bytes(envelope, key) == data
    assert result.size == size
    assert result.sha3_256 == hashlib.sha3_256(data).digest()
    assert result.ciphertext_size == len(envelope)
    assert size < 16 or data not in envelope
    _, frames = split_envelope(envelope)
    assert len(frames) == -(-size // CHUNK) + 1  # data chunks + final chunk


@pytest.mark.parametrize(
    "size", [DEFAULT_CHUNK_SIZE - 1, DEFAULT_CHUNK_SIZE, DEFAULT_CHUNK_SIZE + 1]
)
def test_round_trip_default_chunk_boundaries(key: bytes, size: int) -> None:
    data = os.urandom(size)
    envelope, _ = encrypt_bytes(data, key)
    assert decrypt_bytes(envelope, key) == data


def test_fresh_nonce_prefix_per_envelope(key: bytes) -> None:
    first, _ = encrypt_bytes(b"same", key, chunk_size=CHUNK)
    second, _ = encrypt_bytes(b"same", key, chunk_size=CHUNK)
    assert first != second


def assert_refused(
    envelope: bytes, key: bytes, tmp_path: Path, error: type = EnvelopeError
) -> None:
    out = tmp_path / "plain.bin"
    with pytest.raises(error):
        decrypt_to_file(envelope, key, out)
    assert not out.exists()
    assert list(tmp_path.iterdir()) == []


@pytest.fixture(scope="module")
def sample(key: bytes) -> tuple[bytes, bytes]:
    data = os.urandom(3 * CHUNK + 100)
    return data, encrypt_bytes(data, key, chunk_size=CHUNK)[0]


def test_every_header_byte_is_authenticated(
    key: bytes, sample: tuple[bytes, bytes], tmp_path: Path
) -> None:
    _, envelope = sample
    header, _ = split_envelope(envelope)
    for pos in range(len(header)):
        tampered = bytearray(envelope)
        tampered[pos] ^= 0x01
        assert_refused(bytes(tampered), key, tmp_path)


def test_every_chunk_byte_and_tag_is_authenticated(
    key: bytes, sample: tuple[bytes, bytes], tmp_path: Path
) -> None:
    _, envelope = sample
    header, frames = split_envelope(envelope)
    offset = len(header)
    for frame in frames:
        # frame head, first/middle/last ciphertext byte, every tag byte
        positions = {0, 1, 4, FRAME_HEAD, len(frame) // 2}
        positions |= set(range(len(frame) - TAG_LEN, len(frame)))
        for pos in sorted(positions):
            tampered = bytearray(envelope)
            tampered[offset + pos] ^= 0x80
            assert_refused(bytes(tampered), key, tmp_path)
        offset += len(frame)


def test_reordered_chunks(key: bytes, sample: tuple[bytes, bytes], tmp_path: Path) -> None:
    _, envelope = sample
    header, frames = split_envelope(envelope)
    swapped = [frames[1], frames[0], *frames[2:]]
    assert_refused(header + b"".join(swapped), key, tmp_path, DecryptionError)
    duplicated = [frames[0], frames[0], *frames[2:]]
    assert_refused(header + b"".join(duplicated), key, tmp_path, DecryptionError)


def test_truncation_and_extension(key: bytes, sample: tuple[bytes, bytes], tmp_path: Path) -> None:
    _, envelope = sample
    header, frames = split_envelope(envelope)
    assert_refused(header + b"".join(frames[:-1]), key, tmp_path, TruncatedError)
    dropped_middle = [frames[0], frames[2], frames[3], frames[4]]
    assert_refused(header + b"".join(dropped_middle), key, tmp_path, DecryptionError)
    assert_refused(envelope[:-1], key, tmp_path, TruncatedError)
    assert_refused(header, key, tmp_path, TruncatedError)
    assert_refused(envelope[:20], key, tmp_path, TruncatedError)
    assert_refused(envelope + b"\x00", key, tmp_path, ExtensionError)
    assert_refused(envelope + frames[0], key, tmp_path, ExtensionError)
    # the final chunk of another envelope under the same key does not fit either
    other_header, other_frames = split_envelope(encrypt_bytes(b"x", key, chunk_size=CHUNK)[0])
    assert_refused(header + b"".join(frames[:-1]) + other_frames[-1], key, tmp_path)


def test_wrong_key(sample: tuple[bytes, bytes], tmp_path: Path) -> None:
    _, envelope = sample
    assert_refused(envelope, new_data_key(), tmp_path, DecryptionError)


def test_not_an_envelope(key: bytes, tmp_path: Path) -> None:
    assert_refused(b"%PDF-1.7 not an envelope", key, tmp_path, EnvelopeFormatError)
    assert_refused(b"", key, tmp_path, TruncatedError)


def test_expected_digest(key: bytes, sample: tuple[bytes, bytes], tmp_path: Path) -> None:
    data, envelope = sample
    good = hashlib.sha3_256(data).digest()
    out = tmp_path / "ok.bin"
    result = decrypt_to_file(envelope, key, out, expected_sha3=good)
    assert out.read_bytes() == data and result.sha3_256 == good
    assert oct(out.stat().st_mode & 0o777) == oct(0o600)
    out.unlink()
    with pytest.raises(DigestMismatchError):
        decrypt_to_file(envelope, key, out, expected_sha3=bytes(32))
    assert list(tmp_path.iterdir()) == []


def test_streaming_releases_only_verified_chunks(key: bytes, sample: tuple[bytes, bytes]) -> None:
    data, envelope = sample
    header, frames = split_envelope(envelope)
    tampered = bytearray(frames[2])
    tampered[FRAME_HEAD + 3] ^= 1
    stream = iter_decrypt(
        header + frames[0] + frames[1] + bytes(tampered) + b"".join(frames[3:]), key, workers=2
    )
    released = b""
    with pytest.raises(DecryptionError, match="chunk 2"):
        for piece in stream:
            released += piece
    assert released == data[: 2 * CHUNK]
