"""RSA key pairs of hospitals and users: generated, stored encrypted at rest, published by hash.

Private keys are PKCS#8 PEM encrypted with a passphrase (cryptography's best available scheme),
written once with owner-only permissions. A public key is identified by its key id,
SHA-256 of its SubjectPublicKeyInfo DER: that 32-byte hash is what goes on chain, and the DER
itself can live in the content store, where anyone can fetch it and check it against the hash.
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from node.keystore import KeystoreError, write_file_exclusive
from node.records.blockstore import Blockstore

MIN_RSA_BITS = 3072
DEFAULT_RSA_BITS = 3072
PUBLIC_EXPONENT = 65537

PrivateKey = rsa.RSAPrivateKey
PublicKey = rsa.RSAPublicKey


class RecordKeyError(Exception):
    """A key is unusable: unreadable, wrong passphrase, not RSA, or too short."""


def _check_bits(key: rsa.RSAPublicKey | rsa.RSAPrivateKey) -> None:
    if key.key_size < MIN_RSA_BITS:
        raise RecordKeyError(f"RSA key of {key.key_size} bits; at least {MIN_RSA_BITS} required")


def check_public_key(key: object) -> PublicKey:
    """`key` itself if it is an RSA public key of at least MIN_RSA_BITS, else RecordKeyError."""
    if not isinstance(key, rsa.RSAPublicKey):
        raise RecordKeyError("not an RSA public key")
    _check_bits(key)
    return key


def generate_private_key(bits: int = DEFAULT_RSA_BITS) -> PrivateKey:
    if bits < MIN_RSA_BITS:
        raise RecordKeyError(f"RSA keys must have at least {MIN_RSA_BITS} bits")
    return rsa.generate_private_key(public_exponent=PUBLIC_EXPONENT, key_size=bits)


def private_key_pem(key: PrivateKey, passphrase: str) -> bytes:
    """PKCS#8 PEM, encrypted with `passphrase` (an empty passphrase is refused)."""
    if not passphrase:
        raise RecordKeyError("a passphrase is required to store a private key")
    encryption = serialization.BestAvailableEncryption(passphrase.encode("utf-8"))
    return key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, encryption
    )


def save_private_key(path: str | os.PathLike[str], key: PrivateKey, passphrase: str) -> None:
    """Write the encrypted key to a new file (mode 0600); refuses to overwrite."""
    try:
        write_file_exclusive(Path(path), private_key_pem(key, passphrase))
    except KeystoreError as exc:
        raise RecordKeyError(str(exc)) from None


def load_private_key(path: str | os.PathLike[str], passphrase: str) -> PrivateKey:
    try:
        data = Path(path).read_bytes()
    except OSError as exc:
        raise RecordKeyError(f"cannot read key file {path}: {exc.strerror}") from None
    return private_key_from_pem(data, passphrase, source=str(path))


def private_key_from_pem(data: bytes, passphrase: str, *, source: str = "key") -> PrivateKey:
    if b"ENCRYPTED PRIVATE KEY" not in data:
        raise RecordKeyError(f"{source} is not an encrypted PKCS#8 private key")
    try:
        key = serialization.load_pem_private_key(data, passphrase.encode("utf-8"))
    except (ValueError, TypeError):
        raise RecordKeyError(f"cannot decrypt {source}: wrong passphrase or corrupt file") from None
    if not isinstance(key, rsa.RSAPrivateKey):
        raise RecordKeyError(f"{source} is not an RSA key")
    _check_bits(key)
    return key


def public_key_der(key: PublicKey) -> bytes:
    return key.public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )


def public_key_pem(key: PublicKey) -> bytes:
    return key.public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )


def load_public_key(data: bytes) -> PublicKey:
    """An RSA public key from SubjectPublicKeyInfo PEM or DER, at least MIN_RSA_BITS long."""
    try:
        if data.lstrip().startswith(b"-----BEGIN"):
            key = serialization.load_pem_public_key(data)
        else:
            key = serialization.load_der_public_key(data)
    except (ValueError, TypeError):
        raise RecordKeyError("not a public key in PEM or DER form") from None
    if not isinstance(key, rsa.RSAPublicKey):
        raise RecordKeyError("not an RSA public key")
    _check_bits(key)
    return key


def load_public_key_file(path: str | os.PathLike[str]) -> PublicKey:
    try:
        return load_public_key(Path(path).read_bytes())
    except OSError as exc:
        raise RecordKeyError(f"cannot read public key {path}: {exc.strerror}") from None


def key_id(key: PublicKey | PrivateKey) -> bytes:
    """SHA-256 of the SubjectPublicKeyInfo DER: the 32-byte id published on chain."""
    public = key.public_key() if isinstance(key, rsa.RSAPrivateKey) else key
    return hashlib.sha256(public_key_der(public)).digest()


def publish_public_key(store: Blockstore, key: PublicKey) -> tuple[str, bytes]:
    """Put the key's DER in the content store; returns (CID, key id) for on-chain registration."""
    return store.put(public_key_der(key)), key_id(key)


def fetch_public_key(store: Blockstore, cid: str, expected_key_id: bytes) -> PublicKey:
    """Fetch a published key and check it against the key id registered on chain."""
    key = load_public_key(store.read_all(cid, limit=1 << 16))
    if key_id(key) != expected_key_id:
        raise RecordKeyError(f"public key at {cid} does not match the registered key id")
    return key
