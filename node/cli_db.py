"""`medledger db export|import|verify|snapshot`: backups and restores of a node's chain."""

from __future__ import annotations

import json
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import click
import httpx

from genesis.schema import Genesis, GenesisError, load_genesis
from node.backup import BackupError, export_blocks, import_blocks, snapshot_chain, verify_datadir
from node.chain import Chain
from node.db import StorageError

_DATADIR = click.option("--datadir", type=click.Path(file_okay=False, path_type=Path),
                        required=True, help="The node's data directory (node stopped).")
_GENESIS = click.option("--genesis", "genesis_path", required=True,
                        type=click.Path(dir_okay=False, exists=True, path_type=Path),
                        help="The consortium genesis.json.")


def _genesis(path: Path) -> Genesis:
    try:
        return load_genesis(path)
    except GenesisError as exc:
        raise click.ClickException(f"genesis {path}: {exc}") from None


@contextmanager
def _open_chain(datadir: Path, genesis: Genesis, *, must_exist: bool) -> Iterator[Chain]:
    if must_exist and not (datadir / "chaindata").is_dir():
        raise click.ClickException(f"{datadir} holds no chain database")
    try:
        chain = Chain(datadir, genesis)
    except StorageError as exc:
        raise click.ClickException(str(exc)) from None
    try:
        yield chain
    finally:
        chain.close()


def _echo(result: dict[str, Any]) -> None:
    click.echo(json.dumps(result))


@click.group("db")
def db_group() -> None:
    """Export, import, verify and snapshot the chain database."""


@db_group.command("export")
@_DATADIR
@_GENESIS
@click.option("--out", type=click.Path(dir_okay=False, path_type=Path), required=True,
              help="New file for the RLP block stream (gzip when it ends in .gz).")
@click.option("--from", "first", type=click.IntRange(0), default=1, show_default=True)
@click.option("--to", "last", type=click.IntRange(0), default=None,
              help="Last block (default: the head).")
def db_export(datadir: Path, genesis_path: Path, out: Path, first: int, last: int | None) -> None:
    """Write the canonical blocks as concatenated RLP, like `geth export`."""
    with _open_chain(datadir, _genesis(genesis_path), must_exist=True) as chain:
        try:
            summary = export_blocks(chain, out, first=first, last=last)
        except BackupError as exc:
            raise click.ClickException(str(exc)) from None
    _echo({"file": str(out), "first": summary.first, "last": summary.last,
           "blocks": summary.blocks, "bytes": summary.bytes})


@db_group.command("import")
@_DATADIR
@_GENESIS
@click.option("--in", "source", type=click.Path(dir_okay=False, exists=True, path_type=Path),
              required=True, help="RLP block stream written by `db export` (or .gz).")
def db_import(datadir: Path, genesis_path: Path, source: Path) -> None:
    """Replay exported blocks into DATADIR with full verification (seals and execution)."""
    with _open_chain(datadir, _genesis(genesis_path), must_exist=False) as chain:
        try:
            summary = import_blocks(chain, source)
        except BackupError as exc:
            head = chain.head.block_number
            raise click.ClickException(f"{exc} (blocks up to #{head} are stored)") from None
    _echo({"imported": summary.imported, "skipped": summary.skipped,
           "head": summary.head_number, "hash": "0x" + summary.head_hash.hex(),
           "stateRoot": "0x" + summary.state_root.hex()})


@db_group.command("verify")
@_DATADIR
@_GENESIS
@click.option("--scratch", type=click.Path(file_okay=False, path_type=Path), default=None,
              help="Empty directory for the replay (default: a temporary one, removed after).")
def db_verify(datadir: Path, genesis_path: Path, scratch: Path | None) -> None:
    """Replay every block from genesis and check each state root and the head state."""
    try:
        report = verify_datadir(datadir, _genesis(genesis_path), scratch=scratch)
    except BackupError as exc:
        raise click.ClickException(f"verification failed: {exc}") from None
    _echo({"ok": True, "blocks": report.blocks, "head": report.head_number,
           "hash": "0x" + report.head_hash.hex(), "stateRoot": "0x" + report.state_root.hex(),
           "accountsChecked": report.accounts_checked})


@db_group.command("snapshot")
@click.option("--dest", type=click.Path(path_type=Path), required=True,
              help="New directory for the copy (a datadir a node or `db verify` can open).")
@click.option("--rpc", "rpc_url", default=None,
              help="A running node's JSON-RPC URL (needs --admin-rpc): it takes the snapshot.")
@click.option("--datadir", type=click.Path(file_okay=False, path_type=Path), default=None,
              help="Copy a stopped node's datadir instead.")
@click.option("--genesis", "genesis_path", default=None,
              type=click.Path(dir_okay=False, exists=True, path_type=Path),
              help="Genesis (with --datadir).")
def db_snapshot(dest: Path, rpc_url: str | None, datadir: Path | None,
                genesis_path: Path | None) -> None:
    """A consistent copy of the chain database, from a running node or a stopped datadir."""
    if (rpc_url is None) == (datadir is None):
        raise click.UsageError("give either --rpc (running node) or --datadir (stopped node)")
    dest = dest.absolute()
    if rpc_url is not None:
        _echo(_remote_snapshot(rpc_url, dest))
        return
    if genesis_path is None:
        raise click.UsageError("--datadir needs --genesis")
    assert datadir is not None
    with _open_chain(datadir, _genesis(genesis_path), must_exist=True) as chain:
        try:
            info = snapshot_chain(chain, dest)
        except BackupError as exc:
            raise click.ClickException(str(exc)) from None
    _echo({"path": info.path, "number": hex(info.head_number), "hash": info.head_hash,
           "stateRoot": info.state_root, "keys": info.keys, "bytes": info.bytes})


def _remote_snapshot(rpc_url: str, dest: Path) -> dict[str, Any]:
    body = {"jsonrpc": "2.0", "id": 1, "method": "admin_snapshot", "params": [str(dest)]}
    try:
        reply = httpx.post(rpc_url, json=body, timeout=3600).json()
    except (httpx.HTTPError, ValueError) as exc:
        raise click.ClickException(f"cannot reach node at {rpc_url}: {exc}") from None
    if "error" in reply:
        raise click.ClickException(f"snapshot failed: {reply['error'].get('message')}")
    return dict(reply["result"])


if __name__ == "__main__":  # `python -m node.cli_db` until the group joins `medledger`
    db_group()
