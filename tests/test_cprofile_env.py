"""MEDLEDGER_CPROFILE: a node process dumps one cProfile of all its threads when it stops."""

from __future__ import annotations

import pstats
import time
from pathlib import Path

import pytest

from tests.helpers import USER_KEYS, transfer
from tests.nodeproc import new_node


@pytest.mark.slow  # a node subprocess
def test_node_writes_a_profile_of_its_worker_threads(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("MEDLEDGER_CPROFILE", str(tmp_path / "profiles" / "node-{pid}.prof"))
    node = new_node(tmp_path).start("--empty-block-period", "1")
    try:
        tx_hash = node.rpc("eth_sendRawTransaction", "0x" + transfer(USER_KEYS[0], 0).hex())
        deadline = time.monotonic() + 60
        while node.rpc("eth_getTransactionReceipt", tx_hash) is None:
            assert time.monotonic() < deadline, "transfer not mined"
            time.sleep(0.1)
    finally:
        assert node.stop() == 0, node.logs()
    assert node.proc is not None
    dumped = tmp_path / "profiles" / f"node-{node.proc.pid}.prof"
    stats = pstats.Stats(str(dumped))
    entries = stats.stats  # type: ignore[attr-defined]
    functions = {(Path(file).name, name) for file, _, name in entries}
    assert ("chain.py", "build_block") in functions  # the chain worker thread was profiled
    assert ("runtime.py", "run_until_signal") in functions  # and so was the trio loop
