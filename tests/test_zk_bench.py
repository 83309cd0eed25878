"""bench/zk.py end to end: real gas numbers and timings, within the limits the design needs."""

from __future__ import annotations

from pathlib import Path

import pytest

from bench.zk import run_zk, zk_markdown
from genesis.schema import Genesis, QbftParams
from tests.zk_support import requires_snarkjs


@pytest.mark.slow
@requires_snarkjs
def test_zk_bench_measures_gas_and_times(tmp_path: Path) -> None:
    section = run_zk(True, tmp_path)
    assert section["status"] == "ok"
    gas = section["result"]["gas"]
    block_gas = Genesis(chain_id=1, validators=(b"\x01" * 20,), qbft=QbftParams(), alloc={},
                        system_contracts={}).gas_limit
    assert 0 < gas["tree insert (later leaf)"] <= gas["tree insert (first leaf, cold frontier)"]
    assert gas["tree insert (first leaf, cold frontier)"] < block_gas // 20
    for kind in ("membership: enroll transaction", "attribute: proveAttribute transaction"):
        assert 200_000 < gas[kind] < 350_000, kind
    for timing in section["result"]["timing_ms"].values():
        assert timing["prove_snarkjs_ms"] > 0 and timing["verify_py_ecc_ms"] > 0
    assert "Zero-knowledge proofs" in "\n".join(zk_markdown(section))
