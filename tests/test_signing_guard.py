"""The signing guard survives restarts and refuses a second digest for one slot."""

from __future__ import annotations

from pathlib import Path

from node.db import LevelDBStore
from node.signing_guard import PersistentSigningGuard


def test_guard_refuses_equivocation_across_restart(tmp_path: Path) -> None:
    store = LevelDBStore(tmp_path / "db")
    guard = PersistentSigningGuard(store)
    assert guard.allow(5, 0, 0x13, b"\x01" * 32)
    assert guard.allow(5, 0, 0x13, b"\x01" * 32), "re-signing the same digest is fine"
    assert not guard.allow(5, 0, 0x13, b"\x02" * 32)
    assert guard.allow(5, 1, 0x13, b"\x02" * 32), "another round is another slot"
    assert guard.allow(5, 0, 0x14, b"\x03" * 32), "another step is another slot"
    store.close()

    reopened = LevelDBStore(tmp_path / "db")
    guard = PersistentSigningGuard(reopened)
    assert not guard.allow(5, 0, 0x13, b"\x02" * 32)
    assert guard.allow(5, 0, 0x13, b"\x01" * 32)
    assert guard.allow(7, 0, 0x13, b"\x09" * 32)
    assert guard.prune_below(6) == 3
    assert guard.allow(5, 0, 0x13, b"\x02" * 32), "pruned heights are final and forgotten"
    assert not guard.allow(7, 0, 0x13, b"\x08" * 32)
    reopened.close()
