"""Node identity: the secp256k1 key behind a libp2p peer id and the Ethereum address it maps to.

A validator's node key is its validator key (as in Besu), so the address a peer proves in the
noise handshake is the address that appears in the validator set or the allow-list.
"""

from __future__ import annotations

import os
import re
import stat
import tempfile
from pathlib import Path

import coincurve
import structlog
from eth_utils import keccak
from libp2p.crypto.keys import KeyPair, KeyType, PublicKey
from libp2p.crypto.secp256k1 import Secp256k1PrivateKey
from libp2p.peer.id import ID

from network.errors import NodeKeyError

log = structlog.get_logger("medledger.p2p")

_HEX_KEY = re.compile(r"(?:0x)?([0-9a-fA-F]{64})")


def _check_secret(secret: bytes, where: str) -> None:
    if not isinstance(secret, bytes) or len(secret) != 32:
        raise NodeKeyError(f"{where}: a node key is 32 bytes")
    try:
        coincurve.PrivateKey(secret)
    except ValueError:
        raise NodeKeyError(f"{where}: not a valid secp256k1 private key") from None


def load_or_create_node_key(path: str | Path) -> bytes:
    """The 32-byte node key stored as hex in `path`, created (mode 0600) on first use.

    Creation is atomic (a complete file is linked into place), so two processes starting at
    once cannot end up with different keys.
    """
    path = Path(path)
    try:
        text = path.read_text(encoding="ascii")
    except FileNotFoundError:
        return _create_node_key(path)
    except (OSError, UnicodeDecodeError) as exc:
        raise NodeKeyError(f"{path}: cannot read node key: {exc}") from None
    match = _HEX_KEY.fullmatch(text.strip())
    if match is None:
        raise NodeKeyError(f"{path}: expected 64 hex digits (optionally 0x-prefixed)")
    secret = bytes.fromhex(match.group(1))
    _check_secret(secret, str(path))
    mode = stat.S_IMODE(path.stat().st_mode)
    if mode & 0o077:
        log.warning("node key readable by other users", path=str(path), mode=oct(mode))
    return secret


def _create_node_key(path: Path) -> bytes:
    # Written in full to a private temporary file first, then linked into place: link fails
    # if the key exists, and a concurrent reader never sees a half-written file.
    path.parent.mkdir(parents=True, exist_ok=True)
    secret = coincurve.PrivateKey().secret
    fd, temp = tempfile.mkstemp(prefix=".p2p-key-", dir=path.parent)
    try:
        os.write(fd, (secret.hex() + "\n").encode("ascii"))
        os.fsync(fd)
        os.close(fd)
        try:
            os.link(temp, path)
        except FileExistsError:
            return load_or_create_node_key(path)  # another process won the race: use its key
    finally:
        os.unlink(temp)
    log.info("created node key", path=str(path))
    return secret


def key_pair_from_secret(secret: bytes) -> KeyPair:
    """The libp2p key pair of a node key."""
    _check_secret(secret, "node key")
    private = Secp256k1PrivateKey.from_bytes(secret)
    return KeyPair(private, private.get_public_key())


def peer_id_from_secret(secret: bytes) -> str:
    return ID.from_pubkey(key_pair_from_secret(secret).public_key).to_base58()


def address_from_secret(secret: bytes) -> bytes:
    _check_secret(secret, "node key")
    public = coincurve.PublicKey.from_secret(secret).format(compressed=False)
    return keccak(public[1:])[-20:]


def address_from_public_key(key: PublicKey) -> bytes | None:
    """The Ethereum address of a secp256k1 libp2p key; None for any other key type."""
    try:
        if key.get_type() != KeyType.Secp256k1:
            return None
        public = coincurve.PublicKey(key.to_bytes()).format(compressed=False)
    except Exception:  # a malformed key from the wire: treated as "no address"
        return None
    return keccak(public[1:])[-20:]


def address_of_peer(peer_id: ID | str) -> bytes | None:
    """The address behind a peer id (secp256k1 ids inline their public key); None otherwise."""
    try:
        pid = peer_id if isinstance(peer_id, ID) else ID.from_base58(peer_id)
        key = pid.extract_public_key()
    except Exception:
        return None
    return None if key is None else address_from_public_key(key)
