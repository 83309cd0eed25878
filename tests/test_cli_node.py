"""`medledger node run`, `devnet` and `status` as a user runs them: real subprocesses."""

from __future__ import annotations

import json
import re
import signal
import subprocess
import time
from pathlib import Path

import httpx
import pytest

from tests.helpers import transfer, write_node_files
from tests.nodeproc import MEDLEDGER, NodeProcess

pytestmark = pytest.mark.slow


def run_cli(*args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    return subprocess.run([str(MEDLEDGER), *args], capture_output=True, text=True,
                          timeout=timeout, stdin=subprocess.DEVNULL)


def test_status_reports_a_running_node(node: NodeProcess) -> None:
    result = run_cli("status", "--rpc", node.http, "--json")
    assert result.returncode == 0, result.stderr
    summary = json.loads(result.stdout)
    assert summary["chainId"] == 1337
    assert summary["head"] >= 0
    assert summary["peers"] == 0 and summary["syncing"] is False
    assert summary["client"].startswith("medledger/")
    human = run_cli("status", "--rpc", node.http)
    assert human.returncode == 0 and "chainId: 1337" in human.stdout


def test_status_without_a_node_fails_clearly() -> None:
    result = run_cli("status", "--rpc", "http://127.0.0.1:9")
    assert result.returncode != 0
    assert "cannot reach node" in result.stderr
    assert "Traceback" not in result.stderr


def test_node_run_refuses_bad_inputs(tmp_path: Path) -> None:
    genesis, key, passphrase = write_node_files(tmp_path / "files")
    wrong = tmp_path / "wrong.txt"
    wrong.write_text("not the passphrase\n")
    result = run_cli("node", "run", "--datadir", str(tmp_path / "d"), "--genesis", str(genesis),
                     "--key", str(key), "--passphrase-file", str(wrong))
    assert result.returncode != 0 and "wrong passphrase" in result.stderr

    broken = tmp_path / "broken.json"
    broken.write_text('{"chainId": 5, "validators": [], "colour": 1}')
    result = run_cli("node", "run", "--datadir", str(tmp_path / "d"), "--genesis", str(broken))
    assert result.returncode != 0 and "colour" in result.stderr
    assert "Traceback" not in result.stderr

    result = run_cli("node", "run", "--datadir", str(tmp_path / "d"), "--genesis", str(genesis),
                     "--key", str(key))
    assert result.returncode != 0 and "passphrase" in result.stderr


def test_devnet_starts_seals_and_shuts_down_on_sigint(tmp_path: Path) -> None:
    proc = subprocess.Popen(
        [str(MEDLEDGER), "devnet", "--rpc-port", "0", "--ws-port", "0", "--log-format", "json",
         "--block-period", "1"],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, stdin=subprocess.DEVNULL,
    )
    assert proc.stdout is not None
    root: Path | None = None
    http = None
    dev_keys: list[str] = []
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and http is None:
            line = proc.stdout.readline()
            assert line, "devnet exited early"
            found = re.search(r"data in (\S+)", line)
            if found:
                root = Path(found.group(1))
            account = re.search(r"key (0x[0-9a-f]{64})", line)
            if account:
                dev_keys.append(account.group(1))
            if '"node started"' in line:
                http = json.loads(line)["http"]
        assert root is not None and http is not None
        assert len(dev_keys) == 5
        assert (root / "node" / "chaindata").is_dir()

        # A printed development account is funded and its transfer gets sealed.
        raw = transfer(bytes.fromhex(dev_keys[0][2:]), 0, value=12345)
        sent = httpx.post(http, json={"jsonrpc": "2.0", "id": 1, "params": ["0x" + raw.hex()],
                                      "method": "eth_sendRawTransaction"}).json()
        assert "result" in sent, sent
        receipt = None
        while receipt is None and time.monotonic() < deadline:
            receipt = httpx.post(http, json={
                "jsonrpc": "2.0", "id": 1, "params": [sent["result"]],
                "method": "eth_getTransactionReceipt",
            }).json()["result"]
            time.sleep(0.2)
        assert receipt is not None and receipt["status"] == "0x1"
    finally:
        proc.send_signal(signal.SIGINT)
        output, _ = proc.communicate(timeout=30)
    assert proc.returncode == 0, output
    assert "shutting down" in output
    assert root is not None and not root.exists(), "devnet left its temporary directory"
