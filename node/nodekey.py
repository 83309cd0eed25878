"""The node key of a node that is not (yet) a validator: its libp2p identity, encrypted at rest.

A validator's node key is its validator key (`--key`). Any other networked node (an auditor,
a hospital waiting to be voted in) uses, in this order:

1. `--node-key-file` / `[node] node_key`: a keystore v3 file (`medledger keys new --type node`);
2. `DATADIR/node-key.json`, the keystore the node created on an earlier start;
3. `DATADIR/p2p.key`, a plain hex key from older versions: still accepted, with a warning
   that says how to encrypt it;
4. none: a new key is created as `DATADIR/node-key.json`, encrypted with the passphrase.

The passphrase comes from the caller (file, environment or prompt); without one, steps 1, 2
and 4 fail with a message that says what to provide. Keys and passphrases are never logged.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from pathlib import Path

import coincurve
import structlog

from network import load_or_create_node_key
from network.errors import NodeKeyError as NetworkKeyError
from node.keystore import KeystoreError, read_keystore, write_keystore

log = structlog.get_logger("medledger.node")

NODE_KEYSTORE_FILE = "node-key.json"
LEGACY_NODE_KEY_FILE = "p2p.key"
_PLAIN_KEY = re.compile(r"\s*(?:0x)?[0-9a-fA-F]{64}\s*")

PassphraseSource = Callable[[], str | None]


class NodeKeyError(ValueError):
    """No usable node key; the message says which file and what to do."""


def _no_passphrase(path: Path) -> NodeKeyError:
    return NodeKeyError(
        f"no passphrase for the node key {path}: use --node-key-passphrase-file (or "
        "--passphrase-file, or $MEDLEDGER_PASSPHRASE)"
    )


def read_node_key(path: Path, passphrase: PassphraseSource) -> bytes:
    """Decrypt the keystore at `path`; a plain hex file is refused with the command to fix it."""
    try:
        head = path.read_bytes()[:200]
    except FileNotFoundError:
        raise NodeKeyError(f"node key file {path} not found") from None
    except OSError as exc:
        raise NodeKeyError(f"cannot read node key file {path}: {exc.strerror}") from None
    if _PLAIN_KEY.fullmatch(head.decode("ascii", "replace")):
        raise NodeKeyError(
            f"{path} holds a plain, unencrypted key: encrypt it with `medledger keys import "
            f"--type node --from {path} --out node-key.json`, delete {path}, and pass "
            "--node-key-file node-key.json"
        )
    secret = passphrase()
    if secret is None:
        raise _no_passphrase(path)
    try:
        return read_keystore(path, secret)
    except KeystoreError as exc:
        raise NodeKeyError(str(exc)) from None


def resolve_node_key(
    datadir: Path,
    key_file: Path | None,
    passphrase: PassphraseSource,
    *,
    kdf_iterations: int | None = None,
) -> bytes:
    """The node key by the rules in the module docstring (creating one if there is none)."""
    if key_file is not None:
        return read_node_key(key_file, passphrase)
    keystore = datadir / NODE_KEYSTORE_FILE
    if keystore.exists():
        return read_node_key(keystore, passphrase)
    legacy = datadir / LEGACY_NODE_KEY_FILE
    if legacy.exists():
        try:
            key = load_or_create_node_key(legacy)
        except NetworkKeyError as exc:
            raise NodeKeyError(str(exc)) from None
        log.warning(
            "node key stored unencrypted", path=str(legacy),
            fix=f"medledger keys import --type node --from {legacy} --out {keystore}; "
                f"then delete {legacy}",
        )
        return key
    secret = passphrase()
    if secret is None:
        raise NodeKeyError(
            f"this node has no node key (neither {keystore} nor --node-key-file): create one "
            "with `medledger keys new --type node --out node-key.json` and pass "
            "--node-key-file, or give a passphrase (--node-key-passphrase-file, "
            "--passphrase-file or $MEDLEDGER_PASSPHRASE) and the node creates "
            f"{keystore} encrypted with it"
        )
    datadir.mkdir(parents=True, exist_ok=True)
    key = coincurve.PrivateKey().secret
    try:
        write_keystore(keystore, key, secret, kdf_iterations=kdf_iterations)
    except KeystoreError as exc:
        if keystore.exists():  # another process (a second start) created it first: use it
            return read_node_key(keystore, passphrase)
        raise NodeKeyError(str(exc)) from None
    log.info("created encrypted node key", path=str(keystore))
    return key
