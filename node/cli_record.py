"""`medledger record ...`: encrypted records on the embedded store, a Kubo node or a cluster.

Keys are RSA (>= 3072 bits) in passphrase-encrypted PKCS#8 files; public keys are PEM files.
The passphrase comes from --passphrase-file or MEDLEDGER_PASSPHRASE, never from the command line.
"""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import click

from node.keystore import KeystoreError, resolve_passphrase
from node.records.blockstore import Blockstore, BlockstoreError
from node.records.cluster import ClusterBlockstore
from node.records.embedded import EmbeddedBlockstore
from node.records.envelope import DEFAULT_CHUNK_SIZE, EnvelopeError
from node.records.keybundle import KeyBundleError
from node.records.keys import (
    DEFAULT_RSA_BITS,
    PrivateKey,
    PublicKey,
    RecordKeyError,
    generate_private_key,
    key_id,
    load_private_key,
    load_public_key_file,
    public_key_pem,
    save_private_key,
)
from node.records.kubo import KuboBlockstore
from node.records.store import PutResult, RecordStore

STORE_ENV = "MEDLEDGER_RECORD_STORE"
DEFAULT_STORE = Path("medledger-data") / "records"
_ERRORS = (BlockstoreError, EnvelopeError, KeyBundleError, RecordKeyError, KeystoreError)


def _store_options(fn: Any) -> Any:
    fn = click.option(
        "--replication",
        default="2:3",
        show_default=True,
        help="Cluster replication factor MIN:MAX.",
    )(fn)
    fn = click.option("--cluster", metavar="URL", help="IPFS Cluster REST API (reads use --kubo).")(
        fn
    )
    fn = click.option(
        "--kubo", metavar="API", help="Kubo RPC API: http://HOST:PORT, /ip4/../tcp/N or /unix/PATH."
    )(fn)
    fn = click.option(
        "--store",
        "store_dir",
        type=click.Path(file_okay=False, path_type=Path),
        envvar=STORE_ENV,
        default=DEFAULT_STORE,
        show_default=True,
        help=f"Embedded store directory (used unless --kubo/--cluster; env {STORE_ENV}).",
    )(fn)
    return fn


def _open_blockstore(
    store_dir: Path, kubo: str | None, cluster: str | None, replication: str
) -> Blockstore:
    if cluster:
        if not kubo:
            raise click.UsageError("--cluster needs --kubo for reads (cluster does not serve data)")
        try:
            low, high = (int(part) for part in replication.split(":"))
        except ValueError:
            raise click.BadParameter("expected MIN:MAX", param_hint="--replication") from None
        return ClusterBlockstore(
            cluster, KuboBlockstore(kubo), replication_min=low, replication_max=high
        )
    if kubo:
        return KuboBlockstore(kubo)
    return EmbeddedBlockstore(store_dir)


@contextmanager
def _record_store(
    store_dir: Path, kubo: str | None, cluster: str | None, replication: str, **kwargs: Any
) -> Iterator[RecordStore]:
    try:
        blockstore = _open_blockstore(store_dir, kubo, cluster, replication)
    except (OSError, ValueError) as exc:
        raise click.ClickException(f"cannot open the store: {exc}") from None
    try:
        yield RecordStore(blockstore, **kwargs)
    except _ERRORS as exc:
        raise click.ClickException(str(exc)) from None
    finally:
        blockstore.close()


def _passphrase(passphrase_file: Path | None, *, confirm: bool = False) -> str:
    try:
        passphrase = resolve_passphrase(passphrase_file)
    except KeystoreError as exc:
        raise click.ClickException(str(exc)) from None
    if passphrase is None:
        if not sys.stdin.isatty():
            raise click.ClickException(
                "no passphrase: use --passphrase-file or MEDLEDGER_PASSPHRASE"
            )
        passphrase = click.prompt("Key passphrase", hide_input=True, confirmation_prompt=confirm)
    return passphrase


def _private_key(path: Path, passphrase_file: Path | None) -> PrivateKey:
    try:
        return load_private_key(path, _passphrase(passphrase_file))
    except RecordKeyError as exc:
        raise click.ClickException(str(exc)) from None


def _public_keys(paths: tuple[str, ...]) -> list[PublicKey]:
    keys: list[PublicKey] = []
    for item in paths:
        for name in filter(None, (part.strip() for part in item.split(","))):
            try:
                keys.append(load_public_key_file(name))
            except RecordKeyError as exc:
                raise click.ClickException(str(exc)) from None
    return keys


def _result_json(result: PutResult) -> str:
    return json.dumps(
        {
            "record_cid": result.record_cid,
            "content_cid": result.content_cid,
            "sha3_256": "0x" + result.sha3_256.hex(),
            "size": result.size,
            "ciphertext_size": result.ciphertext_size,
            "recipients": ["0x" + kid.hex() for kid in result.recipients],
        },
        indent=2,
    )


_passphrase_option = click.option(
    "--passphrase-file",
    type=click.Path(dir_okay=False, path_type=Path),
    help="File holding the key passphrase (else MEDLEDGER_PASSPHRASE, else a prompt).",
)


@click.group("record")
def record_group() -> None:
    """Encrypted patient records (AES-256-GCM envelopes, RSA-OAEP key wrapping)."""


@record_group.command("keygen")
@click.option("--out", "out", required=True, type=click.Path(dir_okay=False, path_type=Path))
@click.option("--bits", default=DEFAULT_RSA_BITS, show_default=True, type=int)
@_passphrase_option
def keygen(out: Path, bits: int, passphrase_file: Path | None) -> None:
    """Create an RSA key pair: OUT (encrypted PKCS#8) and OUT.pub (PEM); prints the key id."""
    pub_path = out.with_name(out.name + ".pub")
    if pub_path.exists():
        raise click.ClickException(f"{pub_path} exists; refusing to overwrite")
    passphrase = _passphrase(passphrase_file, confirm=True)
    try:
        key = generate_private_key(bits)
        save_private_key(out, key, passphrase)
    except RecordKeyError as exc:
        raise click.ClickException(str(exc)) from None
    pub_path.write_bytes(public_key_pem(key.public_key()))
    click.echo("0x" + key_id(key).hex())


@record_group.command("put")
@click.argument("file", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("--patient", required=True, help="The patient's public key (PEM file).")
@click.option(
    "--recipients",
    "-r",
    multiple=True,
    help="Further recipients' public keys (PEM files; repeat or separate with commas), "
    "e.g. the author hospital.",
)
@click.option("--chunk-size", default=DEFAULT_CHUNK_SIZE, show_default=True, type=int)
@_store_options
def put(
    file: Path,
    patient: str,
    recipients: tuple[str, ...],
    chunk_size: int,
    store_dir: Path,
    kubo: str | None,
    cluster: str | None,
    replication: str,
) -> None:
    """Encrypt FILE for the patient and recipients, store it, print the CIDs and SHA3-256."""
    keys = _public_keys((patient, *recipients))
    size = file.stat().st_size
    with (
        _record_store(store_dir, kubo, cluster, replication, chunk_size=chunk_size) as store,
        file.open("rb") as source,
        click.progressbar(length=size, label="encrypting", file=sys.stderr) as bar,
    ):
        result = store.put(source, keys, progress=bar.update)
    click.echo(_result_json(result))


@record_group.command("get")
@click.argument("cid")
@click.option("--out", "out", required=True, type=click.Path(dir_okay=False, path_type=Path))
@click.option("--key", "key_path", required=True, type=click.Path(dir_okay=False, path_type=Path))
@click.option("--expect-sha3", help="Hex SHA3-256 registered on chain; the file must match it.")
@_passphrase_option
@_store_options
def get(
    cid: str,
    out: Path,
    key_path: Path,
    expect_sha3: str | None,
    passphrase_file: Path | None,
    store_dir: Path,
    kubo: str | None,
    cluster: str | None,
    replication: str,
) -> None:
    """Fetch record CID, verify every chunk and write the plaintext to OUT (only if all verify)."""
    expected = None
    if expect_sha3:
        try:
            expected = bytes.fromhex(expect_sha3.removeprefix("0x"))
        except ValueError:
            raise click.BadParameter("not hex", param_hint="--expect-sha3") from None
        if len(expected) != 32:
            raise click.BadParameter("SHA3-256 is 32 bytes", param_hint="--expect-sha3")
    if out.exists():
        raise click.ClickException(f"{out} exists; refusing to overwrite")
    key = _private_key(key_path, passphrase_file)
    with _record_store(store_dir, kubo, cluster, replication) as store:
        size = store.bundle(cid).size
        with click.progressbar(length=size, label="decrypting", file=sys.stderr) as bar:
            result = store.read_to_file(cid, key, out, expected_sha3=expected, progress=bar.update)
    click.echo(
        json.dumps(
            {"out": os.fspath(out), "size": result.size, "sha3_256": "0x" + result.sha3_256.hex()},
            indent=2,
        )
    )


@record_group.command("grant")
@click.argument("cid")
@click.option("--key", "key_path", required=True, type=click.Path(dir_okay=False, path_type=Path))
@click.option("--to", "grantees", required=True, multiple=True, help="Grantee public key (PEM).")
@_passphrase_option
@_store_options
def grant(
    cid: str,
    key_path: Path,
    grantees: tuple[str, ...],
    passphrase_file: Path | None,
    store_dir: Path,
    kubo: str | None,
    cluster: str | None,
    replication: str,
) -> None:
    """Re-wrap the data key of record CID for grantees; prints the new record CID."""
    key = _private_key(key_path, passphrase_file)
    new_keys = _public_keys(grantees)
    with _record_store(store_dir, kubo, cluster, replication) as store:
        for grantee in new_keys:
            cid = store.grant(cid, key, grantee)
    click.echo(cid)


@record_group.command("rotate")
@click.argument("cid")
@click.option("--key", "key_path", required=True, type=click.Path(dir_okay=False, path_type=Path))
@click.option("--recipients", "-r", required=True, multiple=True, help="Who keeps access (PEM).")
@_passphrase_option
@_store_options
def rotate(
    cid: str,
    key_path: Path,
    recipients: tuple[str, ...],
    passphrase_file: Path | None,
    store_dir: Path,
    kubo: str | None,
    cluster: str | None,
    replication: str,
) -> None:
    """Revocation: re-encrypt record CID under a new data key for the given recipients only."""
    key = _private_key(key_path, passphrase_file)
    keys = _public_keys(recipients)
    with _record_store(store_dir, kubo, cluster, replication) as store:
        result = store.rotate(cid, key, keys)
    click.echo(_result_json(result))
