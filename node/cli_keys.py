"""`medledger keys new|import|export-public|rotate`: node, validator and record keys.

Node and validator keys are secp256k1 keys in keystore v3 files (scrypt + AES); record keys are
RSA keys in passphrase-encrypted PKCS#8 PEM files. Every private key on disk is encrypted, files
are created with mode 0600 and never overwritten, and passphrases come from a file or
$MEDLEDGER_PASSPHRASE (unattended) or a hidden prompt: they are never echoed or logged.
"""

from __future__ import annotations

import json
import re
import secrets
import sys
from pathlib import Path
from typing import Any

import click
from eth_keys import keys as eth_keys
from eth_utils import ValidationError, to_checksum_address

from node.keystore import KeystoreError, read_keystore, resolve_passphrase, write_keystore
from node.records import keys as record_keys

KEY_TYPES = ("validator", "node", "record")
_HEX_KEY = re.compile(r"(?:0x)?([0-9a-fA-F]{64})")

_PASSPHRASE_FILE = click.option(
    "--passphrase-file", type=click.Path(dir_okay=False, path_type=Path), default=None,
    help="File holding the passphrase (else $MEDLEDGER_PASSPHRASE, else a prompt).",
)
_SCRYPT_N = click.option("--scrypt-n", type=int, default=None,
                         help="scrypt work factor for keystores (default 2**18; lower for tests).")


def _passphrase(passphrase_file: Path | None, what: str, *, confirm: bool,
                env_var: str = "MEDLEDGER_PASSPHRASE") -> str:
    try:
        passphrase = resolve_passphrase(passphrase_file, env_var)
    except KeystoreError as exc:
        raise click.ClickException(str(exc)) from None
    if passphrase is not None:
        return passphrase
    if not sys.stdin.isatty():
        raise click.ClickException(
            f"no passphrase for {what}: use --passphrase-file or ${env_var}"
        )
    return str(click.prompt(f"Passphrase for {what}", hide_input=True,
                            confirmation_prompt=confirm))


def _is_record_key(path: Path) -> bool:
    try:
        head = path.read_bytes()[:64]
    except OSError as exc:
        raise click.ClickException(f"cannot read {path}: {exc.strerror}") from None
    return head.lstrip().startswith(b"-----BEGIN")


def _secp_identity(private_key: bytes, key_type: str) -> dict[str, Any]:
    from network.identity import peer_id_from_secret  # libp2p is slow to import: only here

    public = eth_keys.PrivateKey(private_key).public_key
    return {
        "type": key_type,
        "address": to_checksum_address(public.to_canonical_address()),
        "publicKey": "0x" + public.to_bytes().hex(),
        "peerId": peer_id_from_secret(private_key),
    }


def _record_identity(key: record_keys.PrivateKey | record_keys.PublicKey) -> dict[str, Any]:
    public = key.public_key() if isinstance(key, record_keys.PrivateKey) else key
    return {
        "type": "record",
        "keyId": "0x" + record_keys.key_id(public).hex(),
        "bits": public.key_size,
        "publicKeyPem": record_keys.public_key_pem(public).decode(),
    }


def _write_secp(out: Path, private_key: bytes, passphrase: str, scrypt_n: int | None) -> None:
    try:
        write_keystore(out, private_key, passphrase, kdf_iterations=scrypt_n)
    except KeystoreError as exc:
        raise click.ClickException(str(exc)) from None


def _write_record(out: Path, key: record_keys.PrivateKey, passphrase: str) -> None:
    try:
        record_keys.save_private_key(out, key, passphrase)
    except record_keys.RecordKeyError as exc:
        raise click.ClickException(str(exc)) from None


def _new_secp_key() -> bytes:
    while True:
        candidate = secrets.token_bytes(32)
        try:
            eth_keys.PrivateKey(candidate)
        except ValidationError:  # zero or >= the curve order: astronomically rare, draw again
            continue
        return candidate


def _read_secp(path: Path, passphrase: str) -> bytes:
    try:
        return read_keystore(path, passphrase)
    except KeystoreError as exc:
        raise click.ClickException(str(exc)) from None


def _read_record(path: Path, passphrase: str) -> record_keys.PrivateKey:
    try:
        return record_keys.load_private_key(path, passphrase)
    except record_keys.RecordKeyError as exc:
        raise click.ClickException(str(exc)) from None


def _echo(value: dict[str, Any]) -> None:
    click.echo(json.dumps(value, indent=2))


@click.group("keys")
def keys_group() -> None:
    """Create, import, show and rotate encrypted node, validator and record keys."""


@keys_group.command("new")
@click.option("--type", "key_type", type=click.Choice(KEY_TYPES), required=True)
@click.option("--out", type=click.Path(dir_okay=False, path_type=Path), required=True,
              help="New key file (never overwritten).")
@_PASSPHRASE_FILE
@_SCRYPT_N
@click.option("--rsa-bits", type=click.IntRange(record_keys.MIN_RSA_BITS),
              default=record_keys.DEFAULT_RSA_BITS, show_default=True)
def keys_new(key_type: str, out: Path, passphrase_file: Path | None, scrypt_n: int | None,
             rsa_bits: int) -> None:
    """Generate a key and store it encrypted in OUT; print its public identity."""
    passphrase = _passphrase(passphrase_file, str(out), confirm=True)
    if key_type == "record":
        key = record_keys.generate_private_key(rsa_bits)
        _write_record(out, key, passphrase)
        _echo({"file": str(out), **_record_identity(key)})
        return
    private_key = _new_secp_key()
    _write_secp(out, private_key, passphrase, scrypt_n)
    _echo({"file": str(out), **_secp_identity(private_key, key_type)})


@keys_group.command("import")
@click.option("--type", "key_type", type=click.Choice(KEY_TYPES), required=True)
@click.option("--from", "source", type=click.Path(dir_okay=False, exists=True, path_type=Path),
              required=True, help="Plain key: 64 hex digits (node/validator, e.g. a p2p.key) "
              "or a PEM private key (record; encrypted ones need --source-passphrase-file).")
@click.option("--source-passphrase-file", type=click.Path(dir_okay=False, path_type=Path),
              default=None, help="Passphrase of an encrypted source PEM.")
@click.option("--out", type=click.Path(dir_okay=False, path_type=Path), required=True)
@_PASSPHRASE_FILE
@_SCRYPT_N
def keys_import(key_type: str, source: Path, source_passphrase_file: Path | None, out: Path,
                passphrase_file: Path | None, scrypt_n: int | None) -> None:
    """Encrypt an existing plain key into OUT (then delete the plain SOURCE yourself)."""
    data = source.read_bytes()
    if key_type == "record":
        from cryptography.hazmat.primitives import serialization

        secret = None
        if source_passphrase_file is not None:
            secret = _passphrase(source_passphrase_file, str(source), confirm=False).encode()
        try:
            key = serialization.load_pem_private_key(data, secret)
        except (ValueError, TypeError) as exc:
            raise click.ClickException(f"{source} is not a readable PEM private key: {exc}") \
                from None
        if not isinstance(key, record_keys.PrivateKey):
            raise click.ClickException(f"{source} is not an RSA key")
        try:
            record_keys.check_public_key(key.public_key())
        except record_keys.RecordKeyError as exc:
            raise click.ClickException(f"{source}: {exc}") from None
        _write_record(out, key, _passphrase(passphrase_file, str(out), confirm=True))
        _echo({"file": str(out), **_record_identity(key)})
        return
    match = _HEX_KEY.fullmatch(data.decode("ascii", "replace").strip())
    if match is None:
        raise click.ClickException(f"{source}: expected 64 hex digits (optionally 0x-prefixed)")
    private_key = bytes.fromhex(match.group(1))
    _write_secp(out, private_key, _passphrase(passphrase_file, str(out), confirm=True), scrypt_n)
    _echo({"file": str(out), **_secp_identity(private_key, key_type)})


@keys_group.command("export-public")
@click.argument("key_file", type=click.Path(dir_okay=False, exists=True, path_type=Path))
@_PASSPHRASE_FILE
def keys_export_public(key_file: Path, passphrase_file: Path | None) -> None:
    """Print the public identity of KEY_FILE: address, public key and libp2p peer id, or the
    record key's id and public PEM (what other hospitals need; nothing secret)."""
    passphrase = _passphrase(passphrase_file, str(key_file), confirm=False)
    if _is_record_key(key_file):
        _echo(_record_identity(_read_record(key_file, passphrase)))
    else:
        _echo(_secp_identity(_read_secp(key_file, passphrase), "secp256k1"))


@keys_group.command("rotate")
@click.argument("key_file", type=click.Path(dir_okay=False, exists=True, path_type=Path))
@click.option("--out", type=click.Path(dir_okay=False, path_type=Path), required=True,
              help="New key file; KEY_FILE is kept until the rotation is complete.")
@_PASSPHRASE_FILE
@click.option("--new-passphrase-file", type=click.Path(dir_okay=False, path_type=Path),
              default=None, help="Passphrase of the new file (else $MEDLEDGER_NEW_PASSPHRASE, "
              "else the old passphrase).")
@click.option("--same-key", is_flag=True,
              help="Only re-encrypt the same key under the new passphrase.")
@_SCRYPT_N
def keys_rotate(key_file: Path, out: Path, passphrase_file: Path | None,
                new_passphrase_file: Path | None, same_key: bool, scrypt_n: int | None) -> None:
    """Replace KEY_FILE's key (or only its passphrase) with a new file OUT.

    A new validator or node key still has to be voted in (qbft_proposeValidatorVote) and the
    old one voted out; records wrapped for an old record key need `record rotate`.
    """
    passphrase = _passphrase(passphrase_file, str(key_file), confirm=False)
    try:
        new_passphrase = resolve_passphrase(new_passphrase_file, "MEDLEDGER_NEW_PASSPHRASE")
    except KeystoreError as exc:
        raise click.ClickException(str(exc)) from None
    new_passphrase = new_passphrase or passphrase
    if _is_record_key(key_file):
        old_record = _read_record(key_file, passphrase)
        new_record = old_record if same_key else record_keys.generate_private_key(
            old_record.key_size)
        _write_record(out, new_record, new_passphrase)
        _echo({"old": _record_identity(old_record), "new": {"file": str(out),
               **_record_identity(new_record)},
               "next": [] if same_key else ["re-wrap each record for the new key "
                                            "(medledger record rotate), then retire the old file"]})
        return
    old_key = _read_secp(key_file, passphrase)
    new_key = old_key if same_key else _new_secp_key()
    _write_secp(out, new_key, new_passphrase, scrypt_n)
    steps = [] if same_key else [
        "validators: qbft_proposeValidatorVote(new address, true) on a quorum of validators",
        "start the node with the new key file once the new address is a validator",
        "then vote the old address out: qbft_proposeValidatorVote(old address, false)",
    ]
    _echo({"old": _secp_identity(old_key, "secp256k1"),
           "new": {"file": str(out), **_secp_identity(new_key, "secp256k1")}, "next": steps})


if __name__ == "__main__":  # `python -m node.cli_keys` until the group joins `medledger`
    keys_group()
