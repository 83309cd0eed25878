"""`medledger node run --metrics` serves Prometheus metrics and health that follow the chain."""

from __future__ import annotations

import json
import re
import time
from pathlib import Path

import httpx
import pytest

from tests.nodeproc import new_node

pytestmark = pytest.mark.slow


def metric(text: str, name: str) -> float:
    found = re.search(rf"^{name}(?:{{[^}}]*}})? ([0-9.e+-]+)$", text, re.MULTILINE)
    assert found, f"{name} not exported"
    return float(found.group(1))


def test_metrics_and_health_of_a_running_node(tmp_path: Path) -> None:
    node = new_node(tmp_path).start("--metrics", "--metrics-port", "0",
                                    "--empty-block-period", "1")
    try:
        ops = json.loads((node.datadir / "endpoints.json").read_text())["ops"]
        assert httpx.get(f"{ops}/health/liveness").status_code == 200
        assert httpx.get(f"{ops}/health/readiness").status_code == 200
        first = httpx.get(f"{ops}/metrics").text
        node.rpc("eth_blockNumber")
        deadline = time.monotonic() + 30
        while True:
            later = httpx.get(f"{ops}/metrics").text
            head_before = metric(first, "medledger_chain_head_block")
            if metric(later, "medledger_chain_head_block") >= head_before + 2:
                break
            assert time.monotonic() < deadline, "chain head metric did not move"
            time.sleep(0.5)
        assert "medledger_rpc_requests_total" in later
    finally:
        node.stop()
