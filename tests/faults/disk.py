"""Disk faults for tests: a small file system that fills up, a read-only directory, and
LevelDB files damaged on purpose.

A full disk is a tmpfs of a few MiB mounted for the test (root, CAP_SYS_ADMIN); where mounting
is impossible it is RLIMIT_FSIZE on the node process (writes past the limit fail with EFBIG,
which LevelDB reports the same way). A read-only datadir is a read-only bind mount (root,
whom file modes do not stop) or mode 0555 (anyone else).
"""

from __future__ import annotations

import os
import resource
import shutil
import subprocess
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import plyvel

NO_MOUNT_ENV = "MEDLEDGER_TEST_NO_MOUNT"  # =1: exercise the fallbacks even as root


def _mount(*args: str) -> bool:
    if os.geteuid() != 0 or shutil.which("mount") is None or os.environ.get(NO_MOUNT_ENV):
        return False
    return subprocess.run(["mount", *args], capture_output=True).returncode == 0


def _umount(path: Path) -> None:
    subprocess.run(["umount", "-l", str(path)], capture_output=True, check=False)


@contextmanager
def small_filesystem(path: Path, size_bytes: int) -> Iterator[bool]:
    """`path` becomes a tmpfs of `size_bytes`; yields False when it could not be mounted
    (the caller falls back to `fsize_limit`)."""
    path.mkdir(parents=True, exist_ok=True)
    mounted = _mount("-t", "tmpfs", "-o", f"size={size_bytes}", "tmpfs", str(path))
    try:
        yield mounted
    finally:
        if mounted:
            _umount(path)


def fill(path: Path) -> Path:
    """Write a file under `path` until the file system is full; returns the file."""
    filler = path / "filler.bin"
    fd = os.open(filler, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        for size in (1 << 16, 512, 1):  # big writes first, then what still fits
            block = b"\0" * size
            try:
                while True:
                    os.write(fd, block)
            except OSError:
                continue
    finally:
        os.close(fd)
    return filler


def fsize_limit(max_bytes: int) -> Callable[[], None]:
    """A preexec_fn: files the process writes cannot grow past `max_bytes` (Python ignores
    SIGXFSZ, so the write fails with EFBIG instead of killing the process)."""

    def apply() -> None:
        resource.setrlimit(resource.RLIMIT_FSIZE, (max_bytes, max_bytes))

    return apply


@contextmanager
def read_only(path: Path) -> Iterator[None]:
    """`path` (an existing directory) cannot be written while the context lasts."""
    if _mount("--bind", str(path), str(path)):
        try:
            if not _mount("-o", "remount,ro,bind", str(path)):
                raise RuntimeError("cannot remount the bind mount read-only")
            yield
        finally:
            _umount(path)
        return
    if os.geteuid() == 0:
        import pytest

        pytest.skip("running as root without mount(2): file modes cannot make a dir read-only")
    modes = {p: p.stat().st_mode for p in [path, *path.rglob("*")] if p.is_dir()}
    for directory in modes:
        directory.chmod(0o555)
    try:
        yield
    finally:
        for directory, mode in modes.items():
            directory.chmod(mode)


def compact(chaindata: Path) -> list[Path]:
    """Move everything from LevelDB's log into table files (.ldb) and return them."""
    db = plyvel.DB(str(chaindata))
    try:
        db.compact_range()
    finally:
        db.close()
    tables = sorted(chaindata.glob("*.ldb"))
    assert tables, "compaction wrote no table file"
    return tables


def index_offset(table: Path) -> int:
    """Where the table's index block starts: every byte before it is data blocks."""
    footer = table.read_bytes()[-48:]
    pos = 0
    values = []
    while len(values) < 4:
        value = shift = 0
        while True:
            byte = footer[pos]
            pos += 1
            value |= (byte & 0x7F) << shift
            shift += 7
            if not byte & 0x80:
                break
        values.append(value)
    return min(values[0], values[2])  # metaindex and index follow the data blocks
