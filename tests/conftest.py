"""Fixtures: a real node subprocess on loopback."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.nodeproc import NodeProcess, new_node


@pytest.fixture
def node(tmp_path: Path) -> Iterator[NodeProcess]:
    proc = new_node(tmp_path).start()
    try:
        yield proc
    finally:
        if proc.proc is not None and proc.proc.poll() is None:
            proc.stop()
