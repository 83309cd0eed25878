"""Content identifiers (CIDv0 / CIDv1 over sha2-256) as Kubo writes and parses them.

Only what the record store needs: sha2-256 multihashes, the `raw` and `dag-pb` codecs,
base58btc for CIDv0 ("Qm...") and lower-case base32 for CIDv1 ("b..."). Parsing is strict so
that a malformed identifier is an error, never a silent mismatch.
"""

from __future__ import annotations

import base64
import hashlib
from dataclasses import dataclass

RAW = 0x55
DAG_PB = 0x70
SHA2_256 = 0x12
_CIDV1 = 0x01

_B58_ALPHABET = b"123456789ABCDEFGHJKLMNPQRSTUVWXYZabcdefghijkmnopqrstuvwxyz"
_B58_INDEX = {c: i for i, c in enumerate(_B58_ALPHABET)}


class CIDError(ValueError):
    """A string or byte sequence is not a CID this store understands."""


def encode_varint(value: int) -> bytes:
    """Unsigned LEB128, as used by multiformats and protobuf."""
    if value < 0:
        raise ValueError("varint must be non-negative")
    out = bytearray()
    while True:
        byte = value & 0x7F
        value >>= 7
        if value:
            out.append(byte | 0x80)
        else:
            out.append(byte)
            return bytes(out)


def decode_varint(data: bytes, pos: int = 0) -> tuple[int, int]:
    """Decode an unsigned varint at `pos`; returns (value, next position)."""
    value = 0
    shift = 0
    while True:
        if pos >= len(data):
            raise CIDError("truncated varint")
        byte = data[pos]
        pos += 1
        value |= (byte & 0x7F) << shift
        if not byte & 0x80:
            return value, pos
        shift += 7
        if shift > 63:
            raise CIDError("varint too long")


def b58encode(data: bytes) -> str:
    number = int.from_bytes(data, "big")
    out = bytearray()
    while number:
        number, rem = divmod(number, 58)
        out.append(_B58_ALPHABET[rem])
    pad = len(data) - len(data.lstrip(b"\0"))
    return (b"1" * pad + bytes(reversed(out))).decode("ascii")


def b58decode(text: str) -> bytes:
    number = 0
    for char in text.encode("ascii", errors="replace"):
        if char not in _B58_INDEX:
            raise CIDError(f"invalid base58 character in {text!r}")
        number = number * 58 + _B58_INDEX[char]
    pad = len(text) - len(text.lstrip("1"))
    body = number.to_bytes((number.bit_length() + 7) // 8, "big") if number else b""
    return b"\0" * pad + body


def sha256_multihash(data: bytes) -> bytes:
    return bytes([SHA2_256, 32]) + hashlib.sha256(data).digest()


@dataclass(frozen=True)
class CID:
    """A parsed CID: version, codec and sha2-256 multihash (bytes)."""

    version: int
    codec: int
    multihash: bytes

    def __post_init__(self) -> None:
        if self.version not in (0, 1):
            raise CIDError(f"unsupported CID version {self.version}")
        if self.version == 0 and self.codec != DAG_PB:
            raise CIDError("CIDv0 is always dag-pb")
        if len(self.multihash) != 34 or self.multihash[:2] != bytes([SHA2_256, 32]):
            raise CIDError("only sha2-256 multihashes are supported")

    @classmethod
    def of_block(cls, block: bytes, *, version: int, codec: int) -> CID:
        return cls(version, codec, sha256_multihash(block))

    @property
    def digest(self) -> bytes:
        return self.multihash[2:]

    def to_bytes(self) -> bytes:
        """Binary form, as stored in dag-pb links."""
        if self.version == 0:
            return self.multihash
        return encode_varint(_CIDV1) + encode_varint(self.codec) + self.multihash

    def encode(self) -> str:
        """Canonical string form: base58btc for v0, multibase base32 (lower case) for v1."""
        if self.version == 0:
            return b58encode(self.multihash)
        text = base64.b32encode(self.to_bytes()).decode("ascii").rstrip("=").lower()
        return "b" + text

    def __str__(self) -> str:
        return self.encode()

    def matches(self, block: bytes) -> bool:
        return hashlib.sha256(block).digest() == self.digest

    @classmethod
    def from_bytes(cls, data: bytes) -> CID:
        if len(data) == 34 and data[:2] == bytes([SHA2_256, 32]):
            return cls(0, DAG_PB, bytes(data))
        version, pos = decode_varint(data)
        if version != _CIDV1:
            raise CIDError(f"unsupported CID version {version}")
        codec, pos = decode_varint(data, pos)
        return cls(1, codec, bytes(data[pos:]))

    @classmethod
    def parse(cls, text: str) -> CID:
        """Parse "Qm..." (v0) or "b..." (v1, base32) strings; anything else is a CIDError."""
        if not isinstance(text, str) or not text:
            raise CIDError("empty CID")
        if text.startswith("Qm") and len(text) == 46:
            return cls.from_bytes(b58decode(text))
        if text[0] == "b":
            body = text[1:].upper()
            try:
                raw = base64.b32decode(body + "=" * (-len(body) % 8))
            except ValueError:
                raise CIDError(f"invalid base32 CID {text!r}") from None
            return cls.from_bytes(raw)
        raise CIDError(f"unsupported CID encoding {text!r} (expected Qm... or b...)")


def parse_cid(text: str) -> CID:
    return CID.parse(text)
