"""Start `medledger node run` as a real subprocess on free loopback ports."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import httpx

from tests.helpers import write_node_files

MEDLEDGER = Path(sys.executable).with_name("medledger")


@dataclass
class NodeProcess:
    datadir: Path
    genesis: Path
    key: Path
    passphrase: Path
    proc: subprocess.Popen[bytes] | None = None
    http: str = ""
    ws: str = ""
    log_path: Path | None = None

    def start(self, *extra: str, timeout: float = 60.0) -> NodeProcess:
        endpoints = self.datadir / "endpoints.json"
        endpoints.unlink(missing_ok=True)
        self.log_path = self.datadir.parent / f"{self.datadir.name}.log"
        log = self.log_path.open("ab")
        self.proc = subprocess.Popen(
            [str(MEDLEDGER), "node", "run", "--datadir", str(self.datadir),
             "--genesis", str(self.genesis), "--key", str(self.key),
             "--passphrase-file", str(self.passphrase), "--rpc-port", "0", "--ws-port", "0",
             "--log-format", "json", *extra],
            stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
            env={**os.environ, "PYTHONUNBUFFERED": "1"},
        )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"node exited with {self.proc.returncode}:\n{self.logs()}")
            if endpoints.exists():
                info = json.loads(endpoints.read_text())
                if info.get("pid") == self.proc.pid:
                    self.http, self.ws = info["http"], info["ws"]
                    self._wait_ready(deadline)
                    return self
            time.sleep(0.05)
        raise RuntimeError(f"node did not start in {timeout}s:\n{self.logs()}")

    def _wait_ready(self, deadline: float) -> None:
        while time.monotonic() < deadline:
            try:
                reply = httpx.post(self.http, json={"jsonrpc": "2.0", "id": 1,
                                                    "method": "eth_chainId", "params": []})
                if reply.status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            time.sleep(0.05)
        raise RuntimeError("node RPC never answered")

    def rpc(self, method: str, *params: object) -> object:
        reply = httpx.post(self.http, json={"jsonrpc": "2.0", "id": 1, "method": method,
                                            "params": list(params)}, timeout=30).json()
        if "error" in reply:
            raise RuntimeError(f"{method}: {reply['error']}")
        return reply["result"]

    def logs(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path else ""

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 30.0) -> int:
        assert self.proc is not None
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
                raise
        return self.proc.returncode

    def kill(self) -> None:
        self.stop(signal.SIGKILL)


def new_node(root: Path, name: str = "node") -> NodeProcess:
    genesis, key, passphrase = write_node_files(root / f"{name}-files")
    return NodeProcess(datadir=root / name, genesis=genesis, key=key, passphrase=passphrase)
