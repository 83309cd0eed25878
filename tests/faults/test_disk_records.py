"""Disk faults under the encrypted record store (`medledger record put|get` on the embedded
store): a full disk and a read-only store are clear errors that leave the stored records
intact and nothing partial behind; a damaged block on disk is refused, never decrypted."""

from __future__ import annotations

import json
import os
import subprocess
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from click.testing import CliRunner

from node.cli_record import record_group
from tests.faults.disk import fill, fsize_limit, read_only, small_filesystem
from tests.nodeproc import MEDLEDGER

PASSPHRASE = "disk fault passphrase"


@pytest.fixture()
def keys(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A patient key pair in tmp_path/keys (patient.pem, patient.pem.pub)."""
    monkeypatch.setenv("MEDLEDGER_PASSPHRASE", PASSPHRASE)
    directory = tmp_path / "keys"
    directory.mkdir()
    result = CliRunner().invoke(record_group, ["keygen", "--out", str(directory / "patient.pem")],
                                catch_exceptions=False)
    assert result.exit_code == 0, result.output
    return directory


def record(*args: str, preexec: Callable[[], None] | None = None
           ) -> subprocess.CompletedProcess[str]:
    """`medledger record ...`: in-process (an unexpected exception fails the test with its
    traceback), or as its own process when it needs a resource limit."""
    if preexec is not None:
        return subprocess.run([str(MEDLEDGER), "record", *args], capture_output=True,
                              text=True, timeout=120, stdin=subprocess.DEVNULL,
                              env={**os.environ, "MEDLEDGER_PASSPHRASE": PASSPHRASE},
                              preexec_fn=preexec)
    result = CliRunner().invoke(record_group, list(args), catch_exceptions=False)
    return subprocess.CompletedProcess(["record", *args], result.exit_code, result.stdout,
                                       result.stderr)


def put(store: Path, keys: Path, source: Path,
        preexec: Callable[[], None] | None = None) -> subprocess.CompletedProcess[str]:
    return record("put", str(source), "--patient", str(keys / "patient.pem.pub"),
                  "--store", str(store), preexec=preexec)


def get(store: Path, keys: Path, cid: str, out: Path) -> subprocess.CompletedProcess[str]:
    return record("get", cid, "--out", str(out), "--key", str(keys / "patient.pem"),
                  "--store", str(store))


def assert_clear_failure(result: subprocess.CompletedProcess[str], *needles: str) -> None:
    output = result.stdout + result.stderr
    assert result.returncode != 0, output
    assert "Traceback" not in output, output
    for needle in needles:
        assert needle in output, output


def stored(store: Path, keys: Path, tmp_path: Path, name: str, size: int) -> tuple[str, bytes]:
    data = os.urandom(size)
    source = tmp_path / f"{name}.bin"
    source.write_bytes(data)
    result = put(store, keys, source)
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)["record_cid"], data


def assert_reads_back(store: Path, keys: Path, cid: str, data: bytes, out: Path) -> None:
    result = get(store, keys, cid, out)
    assert result.returncode == 0, result.stderr
    assert out.read_bytes() == data


@pytest.fixture()
def small_store(tmp_path: Path) -> Iterator[tuple[Path, bool]]:
    mnt = tmp_path / "mnt"
    with small_filesystem(mnt, 4 * 1024 * 1024) as mounted:
        yield mnt / "store", mounted


def test_full_disk_put_fails_cleanly_and_keeps_earlier_records(
    tmp_path: Path, keys: Path, small_store: tuple[Path, bool]
) -> None:
    store, mounted = small_store
    cid, data = stored(store, keys, tmp_path, "before", 100_000)
    pins_before = sorted(p.name for p in (store / "pins").iterdir())
    big = tmp_path / "big.bin"
    big.write_bytes(os.urandom(3 * 1024 * 1024))
    if mounted:
        filler = fill(store.parent)
        result = put(store, keys, big)
        expected = "disk full"
    else:  # no tmpfs: every block file of the big record is past the size limit
        filler = None
        result = put(store, keys, big, preexec=fsize_limit(64 * 1024))
        expected = "File too large"
    assert_clear_failure(result, "cannot write to the record store", expected)
    # Nothing partial: no new pin, no temporary block files left behind.
    assert sorted(p.name for p in (store / "pins").iterdir()) == pins_before
    assert list((store / "tmp").iterdir()) == []
    if filler is not None:
        filler.unlink()
    assert_reads_back(store, keys, cid, data, tmp_path / "before.out")
    after, after_data = stored(store, keys, tmp_path, "after", 200_000)
    assert_reads_back(store, keys, after, after_data, tmp_path / "after.out")


def test_read_only_store_refuses_writes_and_still_reads(tmp_path: Path, keys: Path) -> None:
    store = tmp_path / "store"
    cid, data = stored(store, keys, tmp_path, "first", 50_000)
    source = tmp_path / "second.bin"
    source.write_bytes(os.urandom(50_000))
    with read_only(store):
        result = put(store, keys, source)
        assert_clear_failure(result, "cannot write to the record store")
        assert "read-only file system" in result.stderr or "permission denied" in result.stderr
        assert_reads_back(store, keys, cid, data, tmp_path / "first.out")


def test_damaged_block_is_refused_and_nothing_is_written(tmp_path: Path, keys: Path) -> None:
    store = tmp_path / "store"
    cid, _ = stored(store, keys, tmp_path, "scan", 600_000)
    blocks = sorted((store / "blocks").glob("*/*.data"), key=lambda p: p.stat().st_size)
    victim = blocks[-1]  # a 256 KiB leaf of the envelope
    damaged = bytearray(victim.read_bytes())
    damaged[len(damaged) // 2] ^= 0x01
    victim.write_bytes(bytes(damaged))
    out = tmp_path / "scan.out"
    result = get(store, keys, cid, out)
    assert_clear_failure(result, "does not match its hash")
    assert not out.exists()
    truncated = tmp_path / "trunc.out"
    victim.write_bytes(bytes(damaged[:100]))
    result = get(store, keys, cid, truncated)
    assert_clear_failure(result)
    assert not truncated.exists()
