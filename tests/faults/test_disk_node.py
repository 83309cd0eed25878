"""Disk faults under a real `medledger node run`: a disk that fills up while the node seals
blocks, an unwritable datadir, and damaged LevelDB files. Each must end the node with a
clear message and a non-zero exit status (never a traceback), and must not corrupt what was
already written: `medledger db verify` replays the chain and the node restarts at (at least)
the head it had reached."""

from __future__ import annotations

import dataclasses
import json
import shutil
import subprocess
import time
from collections.abc import Callable
from pathlib import Path

import httpx
import pytest
from click.testing import CliRunner, Result

from node.cli_db import db_group
from tests.faults.disk import (
    compact,
    fill,
    fsize_limit,
    index_offset,
    read_only,
    small_filesystem,
)
from tests.helpers import USER_KEYS, transfer
from tests.nodeproc import MEDLEDGER, NodeProcess, new_node

pytestmark = pytest.mark.slow


def node_command(node: NodeProcess, *extra: str) -> list[str]:
    return [str(MEDLEDGER), "node", "run", "--datadir", str(node.datadir),
            "--genesis", str(node.genesis), "--key", str(node.key),
            "--passphrase-file", str(node.passphrase), "--rpc-port", "0", "--ws-port", "0",
            "--log-format", "json", *extra]


def run_to_exit(node: NodeProcess, timeout: float = 60.0) -> subprocess.CompletedProcess[str]:
    """Start the node expecting it to refuse: its exit status and output."""
    return subprocess.run(node_command(node), capture_output=True, text=True, timeout=timeout,
                          stdin=subprocess.DEVNULL)


def head(node: NodeProcess) -> int:
    return int(str(node.rpc("eth_blockNumber")), 16)


def wait_for_head(node: NodeProcess, number: int, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while head(node) < number:
        assert time.monotonic() < deadline, f"head stuck below {number}"
        time.sleep(0.1)


def db_verify(node: NodeProcess) -> Result:
    """`medledger db verify` (in-process: the command, minus a second interpreter start)."""
    return CliRunner().invoke(db_group, ["verify", "--datadir", str(node.datadir),
                                         "--genesis", str(node.genesis)])


def verify(node: NodeProcess) -> dict[str, object]:
    result = db_verify(node)
    assert result.exit_code == 0, result.output
    report = json.loads(result.output)
    assert report["ok"] is True
    return report


def assert_clear_failure(result: subprocess.CompletedProcess[str], *needles: str) -> None:
    output = result.stdout + result.stderr
    assert result.returncode != 0, output
    assert "Traceback" not in output, output
    assert "Error:" in result.stderr, output
    for needle in needles:
        assert needle in output, output


@pytest.fixture(scope="module")
def sealed(tmp_path_factory: pytest.TempPathFactory) -> tuple[NodeProcess, int]:
    """A datadir with a few sealed blocks (node stopped), built once: tests copy it."""
    node = new_node(tmp_path_factory.mktemp("sealed")).start("--empty-block-period", "0.2")
    try:
        wait_for_head(node, 3)
        reached = head(node)
    finally:
        assert node.stop() == 0
    return node, reached


def copy_of(sealed: tuple[NodeProcess, int], tmp_path: Path) -> NodeProcess:
    source, _ = sealed
    node = dataclasses.replace(source, datadir=tmp_path / "node", proc=None)
    shutil.copytree(source.datadir, node.datadir)
    return node


# ----------------------------------------------------------------------------- full disk


def test_full_disk_stops_the_node_cleanly_and_loses_nothing(tmp_path: Path) -> None:
    mnt = tmp_path / "mnt"
    with small_filesystem(mnt, 6 * 1024 * 1024) as mounted:
        node = new_node(mnt)
        preexec: Callable[[], None] | None = None
        if not mounted:  # no tmpfs: cap the size of every file the node writes instead
            preexec = fsize_limit(96 * 1024)
        log = (mnt / "node.log").open("wb")
        proc = subprocess.Popen(node_command(node, "--empty-block-period", "0.1"),
                                stdout=log, stderr=subprocess.PIPE, stdin=subprocess.DEVNULL,
                                preexec_fn=preexec)
        node.proc = proc
        deadline = time.monotonic() + 60
        endpoints = node.datadir / "endpoints.json"
        while not endpoints.exists():
            assert proc.poll() is None, proc.stderr.read() if proc.stderr else ""
            assert time.monotonic() < deadline, "node did not start"
            time.sleep(0.05)
        node.http = json.loads(endpoints.read_text())["http"]
        wait_for_head(node, 2)
        finalized = head(node)
        filler = fill(mnt) if mounted else None
        if not mounted:  # blocks full of transfers grow LevelDB's log past the limit fast
            for nonce in range(400):
                try:
                    node.rpc("eth_sendRawTransaction", "0x" + transfer(USER_KEYS[0], nonce).hex())
                except (RuntimeError, httpx.HTTPError):
                    break  # the node stopped (or refuses): the limit was hit
        try:
            _, stderr = proc.communicate(timeout=120)
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
        log.close()
        text = stderr.decode(errors="replace")
        assert proc.returncode != 0, text
        assert "Traceback" not in text, text
        assert "node stopped:" in text and "write to" in text, text
        assert ("disk full" in text) if mounted else ("File too large" in text), text
        if filler is not None:
            filler.unlink()
        # Nothing final was lost and the database is consistent (every state root replays).
        report = verify(node)
        assert int(str(report["head"])) >= finalized
        restarted = node.start()
        try:
            assert head(restarted) >= finalized
            wait_for_head(restarted, finalized + 1)
        finally:
            assert restarted.stop() == 0


# ------------------------------------------------------------------------ unwritable datadir


def test_read_only_datadir_is_a_clear_error(
    tmp_path: Path, sealed: tuple[NodeProcess, int]
) -> None:
    node, reached = copy_of(sealed, tmp_path), sealed[1]
    with read_only(node.datadir):
        result = run_to_exit(node)
    assert_clear_failure(result, "cannot write to database")
    assert "in use by another process" not in result.stderr
    assert int(str(verify(node)["head"])) == reached


def test_datadir_that_cannot_be_created_is_a_clear_error(tmp_path: Path) -> None:
    node = new_node(tmp_path)
    parent = tmp_path / "locked"
    parent.mkdir()
    node.datadir = parent / "node"
    with read_only(parent):
        result = run_to_exit(node)
    assert_clear_failure(result, "cannot create database directory")


# ------------------------------------------------------------------------ damaged LevelDB


def truncate_table(chaindata: Path) -> None:
    table = compact(chaindata)[0]
    table.write_bytes(table.read_bytes()[: table.stat().st_size // 2])


def remove_table(chaindata: Path) -> None:
    compact(chaindata)[0].unlink()


def garble_data_blocks(chaindata: Path) -> None:
    """Every data block of every table fails its checksum (index and footer intact)."""
    for table in compact(chaindata):
        data = bytearray(table.read_bytes())
        for i in range(0, index_offset(table), 7):
            data[i] ^= 0x5A
        table.write_bytes(bytes(data))


def garbage_current(chaindata: Path) -> None:
    (chaindata / "CURRENT").write_text("MANIFEST-999999\n")


def truncate_manifest(chaindata: Path) -> None:
    manifest = next(chaindata.glob("MANIFEST-*"))
    manifest.write_bytes(manifest.read_bytes()[:10])


@pytest.mark.parametrize("damage", [truncate_table, remove_table, garble_data_blocks,
                                    garbage_current, truncate_manifest],
                         ids=lambda f: f.__name__)
def test_damaged_leveldb_is_detected_at_start(
    tmp_path: Path, sealed: tuple[NodeProcess, int], damage: Callable[[Path], None]
) -> None:
    node = copy_of(sealed, tmp_path)
    compact(node.datadir / "chaindata")
    assert int(str(verify(node)["head"])) == sealed[1]  # compacted, intact: fine
    damage(node.datadir / "chaindata")
    result = run_to_exit(node)
    assert_clear_failure(result, "is corrupt", "restore it from a backup")
    # `db verify` stops on the same damage with a message too.
    verified = db_verify(node)
    assert verified.exit_code == 1, verified.output
    assert "is corrupt" in verified.output and verified.exception is not None
    assert isinstance(verified.exception, SystemExit)
