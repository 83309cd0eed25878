"""Envelope format v1: a record's content under AES-256-GCM in authenticated, ordered chunks.

Layout (all integers big-endian)::

    preamble  = b"MLENV" | u8 version (1) | u32 header_len
    header    = canonical JSON (sorted keys, no spaces): algorithm ids, chunk size, nonce prefix
    header_tag= 16-byte GCM tag over (preamble | header), empty plaintext, flag 2
    frame*    = u8 flag | u32 ct_len | ciphertext-with-tag
                flag 0: data chunk i (i = 0, 1, ...), exactly chunk_size bytes except the last
                flag 1: final chunk, index n = number of data chunks; plaintext is
                        u64 total_length | SHA3-256(plaintext)

Chunk i is encrypted with nonce = nonce_prefix (7 random bytes) | u32 i | u8 flag and
associated data = SHA-256(preamble | header) | u32 i | u8 flag: swapping, dropping, repeating or
appending chunks, or moving them to another envelope, fails a tag. A stream that ends before a
final chunk is truncated; bytes after it are an extension. Both are errors. The data key is
random, 256 bits, and used for one record version only, so (key, nonce) pairs never repeat.
The SHA-256 of preamble and header ("header hash") also labels the RSA-OAEP key wrapping.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import secrets
import struct
from collections import deque
from collections.abc import Callable, Generator, Iterable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from node.records.blockstore import ByteSource, iter_source

MAGIC = b"MLENV"
VERSION = 1
FORMAT_ID = "medledger-envelope"
AEAD_ID = "AES-256-GCM"
NONCE_ID = "prefix7-index32-flag8"
DIGEST_ID = "SHA3-256"
DEFAULT_CHUNK_SIZE = 1 << 20
MIN_CHUNK_SIZE = 1 << 12
MAX_CHUNK_SIZE = 1 << 24
MAX_HEADER_LEN = 1 << 16
TAG_LEN = 16
KEY_LEN = 32
FLAG_DATA = 0
FLAG_FINAL = 1
FLAG_HEADER = 2
_PREAMBLE = struct.Struct(">5sBI")
_FRAME = struct.Struct(">BI")
_SUMMARY = struct.Struct(">Q32s")
_MAX_INDEX = 0xFFFFFFFF

Progress = Callable[[int], None]


class EnvelopeError(Exception):
    """An envelope cannot be decrypted; no plaintext from it may be trusted."""


class EnvelopeFormatError(EnvelopeError):
    """Not an envelope of a version and algorithms this code supports."""


class DecryptionError(EnvelopeError):
    """Authentication failed: wrong key, or header/chunk/tag tampered or reordered."""


class TruncatedError(EnvelopeError):
    """The ciphertext ends before its final chunk."""


class ExtensionError(EnvelopeError):
    """Bytes follow the final chunk."""


class DigestMismatchError(EnvelopeError):
    """The decrypted content does not have the expected SHA3-256 (e.g. the on-chain hash)."""


def new_data_key() -> bytes:
    """A fresh random 256-bit data key; every record version gets its own."""
    return AESGCM.generate_key(bit_length=256)


def default_workers() -> int:
    return max(2, min(8, os.cpu_count() or 2))


@dataclass(frozen=True)
class Header:
    chunk_size: int
    nonce_prefix: bytes
    raw: bytes  # preamble | header JSON, exactly as written

    @property
    def hash(self) -> bytes:
        return hashlib.sha256(self.raw).digest()

    def nonce(self, index: int, flag: int) -> bytes:
        return self.nonce_prefix + struct.pack(">IB", index, flag)

    def aad(self, index: int, flag: int) -> bytes:
        return self.hash + struct.pack(">IB", index, flag)


def _build_header(chunk_size: int, nonce_prefix: bytes) -> Header:
    fields: dict[str, Any] = {
        "aead": AEAD_ID,
        "chunk_size": chunk_size,
        "digest": DIGEST_ID,
        "format": FORMAT_ID,
        "nonce": NONCE_ID,
        "nonce_prefix": nonce_prefix.hex(),
    }
    body = json.dumps(fields, sort_keys=True, separators=(",", ":")).encode()
    raw = _PREAMBLE.pack(MAGIC, VERSION, len(body)) + body
    return Header(chunk_size, nonce_prefix, raw)


def parse_header(preamble: bytes, body: bytes) -> Header:
    """Validate the preamble and header JSON; algorithm ids must be exactly the supported ones."""
    magic, version, length = _PREAMBLE.unpack(preamble)
    if magic != MAGIC:
        raise EnvelopeFormatError("not a medledger envelope (bad magic)")
    if version != VERSION:
        raise EnvelopeFormatError(f"unsupported envelope version {version}")
    if length != len(body):
        raise EnvelopeFormatError("header length mismatch")
    try:
        fields = json.loads(body)
    except (UnicodeDecodeError, json.JSONDecodeError):
        raise EnvelopeFormatError("header is not valid JSON") from None
    expected = {"aead": AEAD_ID, "digest": DIGEST_ID, "format": FORMAT_ID, "nonce": NONCE_ID}
    names = set(expected) | {"chunk_size", "nonce_prefix"}
    if not isinstance(fields, dict) or set(fields) != names:
        raise EnvelopeFormatError("header fields are not those of envelope v1")
    for name, value in expected.items():
        if fields[name] != value:
            raise EnvelopeFormatError(f"unsupported {name} {fields[name]!r}")
    chunk_size = fields["chunk_size"]
    if type(chunk_size) is not int or not MIN_CHUNK_SIZE <= chunk_size <= MAX_CHUNK_SIZE:
        raise EnvelopeFormatError(f"chunk_size {chunk_size!r} out of range")
    try:
        prefix = bytes.fromhex(fields["nonce_prefix"])
    except (TypeError, ValueError):
        raise EnvelopeFormatError("nonce_prefix is not hex") from None
    if len(prefix) != 7:
        raise EnvelopeFormatError("nonce_prefix must be 7 bytes")
    return Header(chunk_size, prefix, preamble + body)


@dataclass(frozen=True)
class DecryptResult:
    header_hash: bytes
    sha3_256: bytes
    size: int


@dataclass(frozen=True)
class EncryptResult:
    header_hash: bytes
    sha3_256: bytes
    size: int
    ciphertext_size: int


class Encryptor:
    """Streams `source` into envelope bytes; chunks are sealed on a thread pool, in bounded flight.

    Iterate `encrypt(source)` to get the ciphertext pieces; `result` is set once it is exhausted.
    Memory stays at about (2 x workers + 1) chunks whatever the input size.
    """

    def __init__(
        self,
        data_key: bytes,
        *,
        chunk_size: int = DEFAULT_CHUNK_SIZE,
        workers: int | None = None,
        progress: Progress | None = None,
    ) -> None:
        if len(data_key) != KEY_LEN:
            raise ValueError("data key must be 32 bytes (AES-256)")
        if not MIN_CHUNK_SIZE <= chunk_size <= MAX_CHUNK_SIZE:
            raise ValueError(f"chunk_size must be within [{MIN_CHUNK_SIZE}, {MAX_CHUNK_SIZE}]")
        self._aead = AESGCM(data_key)
        self.header = _build_header(chunk_size, secrets.token_bytes(7))
        self.workers = workers or default_workers()
        self._progress = progress
        self.result: EncryptResult | None = None

    def _seal(self, index: int, flag: int, plaintext: bytes) -> bytes:
        header = self.header
        nonce, aad = header.nonce(index, flag), header.aad(index, flag)
        ciphertext = self._aead.encrypt(nonce, plaintext, aad)
        return _FRAME.pack(flag, len(ciphertext)) + ciphertext

    def encrypt(self, source: ByteSource) -> Iterator[bytes]:
        header = self.header
        tag = self._aead.encrypt(header.nonce(0, FLAG_HEADER), b"", header.raw)
        yield header.raw + tag
        written = len(header.raw) + len(tag)
        digest = hashlib.sha3_256()
        size = 0
        index = 0
        pending: deque[Future[bytes]] = deque()
        with ThreadPoolExecutor(self.workers, thread_name_prefix="envelope-enc") as pool:
            try:
                for chunk in _rechunk(iter_source(source), header.chunk_size):
                    if index > _MAX_INDEX - 1:
                        raise ValueError("content too large for envelope v1")
                    digest.update(chunk)
                    size += len(chunk)
                    pending.append(pool.submit(self._seal, index, FLAG_DATA, chunk))
                    index += 1
                    if len(pending) >= 2 * self.workers:
                        frame = pending.popleft().result()
                        written += len(frame)
                        yield frame
                        if self._progress is not None:
                            self._progress(len(frame) - _FRAME.size - TAG_LEN)
                while pending:
                    frame = pending.popleft().result()
                    written += len(frame)
                    yield frame
                    if self._progress is not None:
                        self._progress(len(frame) - _FRAME.size - TAG_LEN)
            finally:
                for future in pending:
                    future.cancel()
        sha3 = digest.digest()
        final = self._seal(index, FLAG_FINAL, _SUMMARY.pack(size, sha3))
        yield final
        self.result = EncryptResult(header.hash, sha3, size, written + len(final))


def _rechunk(pieces: Iterable[bytes], size: int) -> Iterator[bytes]:
    """Regroup arbitrary pieces into exactly `size`-byte chunks (the last may be shorter)."""
    buffer = bytearray()
    for piece in pieces:
        buffer += piece
        while len(buffer) >= size:
            yield bytes(buffer[:size])
            del buffer[:size]
    if buffer:
        yield bytes(buffer)


class _Reader:
    """Exact-length reads over a stream of byte pieces."""

    def __init__(self, pieces: Iterable[bytes]) -> None:
        self._pieces = iter(pieces)
        self._buffer = bytearray()

    def read(self, n: int) -> bytes:
        while len(self._buffer) < n:
            piece = next(self._pieces, None)
            if piece is None:
                break
            self._buffer += piece
        out = bytes(self._buffer[:n])
        del self._buffer[:n]
        return out

    def at_eof(self) -> bool:
        while not self._buffer:
            piece = next(self._pieces, None)
            if piece is None:
                return True
            self._buffer += piece
        return False


def read_header(pieces: Iterable[bytes]) -> tuple[Header, bytes, _Reader]:
    """Parse the header of an envelope stream; returns (header, header_tag, rest reader)."""
    reader = pieces if isinstance(pieces, _Reader) else _Reader(pieces)
    preamble = reader.read(_PREAMBLE.size)
    if preamble[: len(MAGIC)] != MAGIC[: len(preamble)]:
        raise EnvelopeFormatError("not a medledger envelope (bad magic)")
    if len(preamble) < _PREAMBLE.size:
        raise TruncatedError("envelope ends inside its preamble")
    _, version, length = _PREAMBLE.unpack(preamble)
    if version != VERSION:
        raise EnvelopeFormatError(f"unsupported envelope version {version}")
    if length > MAX_HEADER_LEN:
        raise EnvelopeFormatError("header too large")
    body = reader.read(length)
    if len(body) < length:
        raise TruncatedError("envelope ends inside its header")
    header = parse_header(preamble, body)
    tag = reader.read(TAG_LEN)
    if len(tag) < TAG_LEN:
        raise TruncatedError("envelope ends inside its header tag")
    return header, tag, reader


def iter_decrypt(
    source: ByteSource,
    data_key: bytes,
    *,
    expected_header_hash: bytes | None = None,
    expected_sha3: bytes | None = None,
    workers: int | None = None,
    progress: Progress | None = None,
) -> Generator[bytes, None, DecryptResult]:
    """Yield plaintext chunks, each released only after its tag verified; return the summary.

    Truncation, extension and a digest mismatch can only be known at the end and raise then:
    a consumer must discard what it received if iteration raises (`decrypt_to_file` does).
    """
    if len(data_key) != KEY_LEN:
        raise ValueError("data key must be 32 bytes (AES-256)")
    aead = AESGCM(data_key)
    header, tag, reader = read_header(iter_source(source))
    if expected_header_hash is not None and header.hash != expected_header_hash:
        raise DecryptionError("envelope header does not match the wrapped key (header hash)")
    try:
        aead.decrypt(header.nonce(0, FLAG_HEADER), tag, header.raw)
    except InvalidTag:
        message = "header authentication failed: wrong key or tampered header"
        raise DecryptionError(message) from None
    workers = workers or default_workers()
    max_ct = header.chunk_size + TAG_LEN

    def open_frame(index: int, flag: int, ciphertext: bytes) -> bytes:
        try:
            return aead.decrypt(header.nonce(index, flag), ciphertext, header.aad(index, flag))
        except InvalidTag:
            kind = "final chunk" if flag == FLAG_FINAL else f"chunk {index}"
            raise DecryptionError(
                f"{kind} failed authentication: tampered, reordered or from another envelope"
            ) from None

    digest = hashlib.sha3_256()
    size = 0
    index = 0
    short_seen = False
    pending: deque[Future[bytes]] = deque()
    summary: bytes | None = None
    with ThreadPoolExecutor(workers, thread_name_prefix="envelope-dec") as pool:
        try:
            while summary is None:
                frame_head = reader.read(_FRAME.size)
                if len(frame_head) < _FRAME.size:
                    raise TruncatedError(
                        f"ciphertext ends after {index} chunk(s), before the final chunk"
                    )
                flag, ct_len = _FRAME.unpack(frame_head)
                if flag == FLAG_FINAL:
                    if ct_len != _SUMMARY.size + TAG_LEN:
                        raise DecryptionError("final chunk has the wrong length")
                elif flag == FLAG_DATA:
                    if short_seen:
                        raise DecryptionError(f"chunk {index - 1} is short but not the last")
                    if not TAG_LEN < ct_len <= max_ct:
                        raise DecryptionError(f"chunk {index} has an invalid length {ct_len}")
                    short_seen = ct_len < max_ct
                else:
                    raise DecryptionError(f"chunk {index} has an unknown flag {flag}")
                ciphertext = reader.read(ct_len)
                if len(ciphertext) < ct_len:
                    raise TruncatedError(f"ciphertext ends inside chunk {index}")
                if flag == FLAG_FINAL:
                    summary = open_frame(index, FLAG_FINAL, ciphertext)
                    break
                pending.append(pool.submit(open_frame, index, FLAG_DATA, ciphertext))
                index += 1
                if len(pending) >= 2 * workers:
                    chunk = pending.popleft().result()
                    digest.update(chunk)
                    size += len(chunk)
                    if progress is not None:
                        progress(len(chunk))
                    yield chunk
            while pending:
                chunk = pending.popleft().result()
                digest.update(chunk)
                size += len(chunk)
                if progress is not None:
                    progress(len(chunk))
                yield chunk
        finally:
            for future in pending:
                future.cancel()
    total, sha3 = _SUMMARY.unpack(summary)
    if total != size or sha3 != digest.digest():
        raise DecryptionError("final chunk does not match the content (length or digest)")
    if not reader.at_eof():
        raise ExtensionError("bytes follow the final chunk")
    if expected_sha3 is not None and sha3 != expected_sha3:
        raise DigestMismatchError("content SHA3-256 differs from the expected (on-chain) hash")
    return DecryptResult(header.hash, sha3, size)


def decrypt_bytes(source: ByteSource, data_key: bytes, **kwargs: Any) -> bytes:
    """Whole plaintext, returned only if everything verified."""
    return b"".join(iter_decrypt(source, data_key, **kwargs))


def _drain(
    gen: Generator[bytes, None, DecryptResult], sink: Callable[[bytes], Any]
) -> DecryptResult:
    while True:
        try:
            chunk = next(gen)
        except StopIteration as stop:
            return stop.value
        sink(chunk)


def decrypt_to_file(
    source: ByteSource, data_key: bytes, out: str | os.PathLike[str], **kwargs: Any
) -> DecryptResult:
    """Decrypt into `out` (owner-only), visible there only once every check passed.

    Plaintext goes to a hidden temporary file beside `out`, which is renamed into place on
    success and deleted on any error, so a failed or tampered read leaves no plaintext behind.
    """
    out = Path(out)
    tmp = out.with_name(f".{out.name}.{secrets.token_hex(6)}.partial")
    try:
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "wb") as handle:
            result = _drain(iter_decrypt(source, data_key, **kwargs), handle.write)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, out)
    finally:
        with contextlib.suppress(FileNotFoundError):
            tmp.unlink()
    return result


def encrypt_bytes(
    plaintext: bytes, data_key: bytes, *, chunk_size: int = DEFAULT_CHUNK_SIZE
) -> tuple[bytes, EncryptResult]:
    """Convenience for small contents: (envelope bytes, result)."""
    encryptor = Encryptor(data_key, chunk_size=chunk_size)
    envelope = b"".join(encryptor.encrypt(plaintext))
    assert encryptor.result is not None
    return envelope, encryptor.result
