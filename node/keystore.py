"""Validator and node key files in the Ethereum keystore v3 format (scrypt + AES-128-CTR).

Key files are written once, with owner-only permissions, and never overwritten: losing a
validator key by accident is worse than a refused command. Passphrases and private keys are
never logged or put into error messages.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import secrets
from pathlib import Path
from typing import Any

from eth_account import Account
from eth_keys import keys
from eth_keys.constants import SECPK1_N
from eth_utils import is_checksum_address

PASSPHRASE_ENV_VAR = "MEDLEDGER_PASSPHRASE"
_ADDRESS_HEX = re.compile(r"(?:0x)?([0-9a-fA-F]{40})")


class KeystoreError(Exception):
    """A key file cannot be written, read or decrypted; the message names the file."""


def write_file_exclusive(path: Path, data: bytes, mode: int = 0o600) -> None:
    """Atomically create `path` holding `data`; refuse an existing path, never leave partial files.

    The data goes to a temporary file in the same directory which is then hard-linked into place:
    `link` fails when the target exists, so a concurrent writer cannot be overwritten either.
    """
    path = Path(path)
    if not path.parent.is_dir():
        raise KeystoreError(f"cannot write {path}: directory {path.parent} does not exist")
    if path.exists() or path.is_symlink():
        raise KeystoreError(f"refusing to overwrite existing file {path}")
    tmp = path.with_name(f".{path.name}.{secrets.token_hex(8)}.tmp")
    try:
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, mode)
        try:
            os.fchmod(fd, mode)  # the umask may have removed bits we asked for
            view = memoryview(data)
            while view:
                view = view[os.write(fd, view) :]
            os.fsync(fd)
        finally:
            os.close(fd)
        try:
            os.link(tmp, path)
        except FileExistsError:
            raise KeystoreError(f"refusing to overwrite existing file {path}") from None
        except OSError:
            # File systems without hard links: fall back to rename after a fresh existence check.
            if path.exists():
                raise KeystoreError(f"refusing to overwrite existing file {path}") from None
            os.replace(tmp, path)
        _fsync_directory(path.parent)
    except OSError as exc:
        raise KeystoreError(f"cannot write {path}: {exc.strerror}") from None
    finally:
        with contextlib.suppress(FileNotFoundError):
            tmp.unlink()


def _fsync_directory(directory: Path) -> None:
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _check_private_key(private_key: bytes) -> None:
    if not isinstance(private_key, bytes) or len(private_key) != 32:
        raise KeystoreError("private key must be 32 bytes")
    if not 0 < int.from_bytes(private_key, "big") < SECPK1_N:
        raise KeystoreError("private key is not a valid secp256k1 scalar")


def write_keystore(
    path: Path,
    private_key: bytes,
    passphrase: str,
    *,
    kdf_iterations: int | None = None,
) -> bytes:
    """Encrypt `private_key` into a new v3 keystore at `path` (mode 0600); return its address.

    `kdf_iterations` is the scrypt work factor n (a power of two); None keeps eth-account's
    default (2**18). Lower it only for tests and throw-away devnets.
    """
    _check_private_key(private_key)
    if not isinstance(passphrase, str) or not passphrase:
        raise KeystoreError(f"cannot write {path}: the passphrase must be a non-empty string")
    if kdf_iterations is not None and (
        isinstance(kdf_iterations, bool)
        or not isinstance(kdf_iterations, int)
        or kdf_iterations < 2
        or kdf_iterations & (kdf_iterations - 1)
    ):
        raise KeystoreError(f"scrypt work factor must be a power of two >= 2, got {kdf_iterations}")
    keyfile = Account.encrypt(private_key, passphrase, kdf="scrypt", iterations=kdf_iterations)
    write_file_exclusive(Path(path), (json.dumps(keyfile, indent=2) + "\n").encode(), 0o600)
    return keys.PrivateKey(private_key).public_key.to_canonical_address()


def _load_keyfile(path: Path) -> dict[str, Any]:
    try:
        text = Path(path).read_text(encoding="utf-8")
    except FileNotFoundError:
        raise KeystoreError(f"keystore {path} not found") from None
    except IsADirectoryError:
        raise KeystoreError(f"keystore {path} is a directory") from None
    except UnicodeDecodeError:
        raise KeystoreError(f"keystore {path} is not JSON (not UTF-8 text)") from None
    except OSError as exc:
        raise KeystoreError(f"cannot read keystore {path}: {exc.strerror}") from None
    try:
        doc = json.loads(text)
    except ValueError as exc:
        raise KeystoreError(f"keystore {path} is not JSON: {exc}") from None
    if (
        not isinstance(doc, dict)
        or doc.get("version") != 3
        or not isinstance(doc.get("crypto", doc.get("Crypto")), dict)
    ):
        raise KeystoreError(f"{path} is not a v3 keystore (needs version 3 and a crypto section)")
    return doc


def _address_field(doc: dict[str, Any], path: Path) -> bytes | None:
    value = doc.get("address")
    if value is None:
        return None
    match = _ADDRESS_HEX.fullmatch(value) if isinstance(value, str) else None
    if match is None:
        raise KeystoreError(f"keystore {path} has a malformed address field")
    digits = match.group(1)
    mixed = digits != digits.lower() and digits != digits.upper()
    if mixed and not is_checksum_address("0x" + digits):
        raise KeystoreError(f"keystore {path} has an address field with a bad EIP-55 checksum")
    return bytes.fromhex(digits)


def keystore_address(path: Path) -> bytes:
    """The address recorded in the key file, read without the passphrase."""
    address = _address_field(_load_keyfile(path), path)
    if address is None:
        raise KeystoreError(f"keystore {path} has no address field")
    return address


def read_keystore(path: Path, passphrase: str) -> bytes:
    """Decrypt the key file and return the 32-byte private key."""
    doc = _load_keyfile(path)
    recorded = _address_field(doc, path)
    try:
        private_key = bytes(Account.decrypt(doc, passphrase))
    except (KeyError, TypeError, ValueError, AttributeError, NotImplementedError) as exc:
        if isinstance(exc, ValueError) and "MAC mismatch" in str(exc):
            raise KeystoreError(f"wrong passphrase for keystore {path}") from None
        raise KeystoreError(f"keystore {path} is malformed: {type(exc).__name__} {exc}") from None
    try:
        _check_private_key(private_key)
    except KeystoreError:
        raise KeystoreError(f"keystore {path} does not hold a valid private key") from None
    actual = keys.PrivateKey(private_key).public_key.to_canonical_address()
    if recorded is not None and recorded != actual:
        raise KeystoreError(f"keystore {path}: the address field does not match the key inside")
    return private_key


def resolve_passphrase(
    passphrase_file: Path | None, env_var: str = PASSPHRASE_ENV_VAR
) -> str | None:
    """The passphrase from `passphrase_file` (trailing newline stripped), else `env_var`, else None.

    An empty environment variable counts as unset; an empty or unreadable file is an error, since
    naming a file shows that the operator meant to supply a passphrase.
    """
    if passphrase_file is not None:
        try:
            text = Path(passphrase_file).read_text(encoding="utf-8")
        except FileNotFoundError:
            raise KeystoreError(f"passphrase file {passphrase_file} not found") from None
        except (OSError, UnicodeDecodeError) as exc:
            reason = exc.strerror if isinstance(exc, OSError) else "not UTF-8 text"
            message = f"cannot read passphrase file {passphrase_file}: {reason}"
            raise KeystoreError(message) from None
        passphrase = text.rstrip("\r\n")
        if not passphrase:
            raise KeystoreError(f"passphrase file {passphrase_file} is empty")
        return passphrase
    return os.environ.get(env_var) or None
