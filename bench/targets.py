"""Systems under test: start each one on free loopback ports with the benchmark's chain, stop it.

- `MedledgerNode`: `medledger node run`, one validator (quorum 1: sealed means final).
- `MultiNodeTarget`: an N-validator medledger network, wired and supervised as the devnet is.
- `HardhatTarget` and `GanacheTarget`: the single-node tools a user would pick instead,
  from the npm packages pinned in bench/js (installed by `npm ci --prefix bench/js`).

All of them get the same chain id, block gas limit and funded accounts (`workload.ChainSpec`),
so the load generator can send each the same signed transactions.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from abc import ABC, abstractmethod
from pathlib import Path
from typing import Any

import httpx

from bench import workload
from genesis.schema import dump_genesis
from node.cprofile_env import PROFILE_ENV
from node.devnet import DevnetNode, DevnetSupervisor, free_ports
from node.keystore import write_keystore

REPO_ROOT = Path(__file__).resolve().parents[1]
JS_DIR = REPO_ROOT / "bench" / "js"
KEYSTORE_PASSPHRASE = "medledger bench"  # guards a publicly derived key: nothing to protect


class TargetUnavailable(RuntimeError):
    """The system cannot run here (not installed, or not built yet); the report says why."""


def brief_error(exc: BaseException, limit: int = 2000) -> str:
    """An exception for the report: its head and its tail (where a process log ends)."""
    text = f"{type(exc).__name__}: {exc}"
    if len(text) <= limit:
        return text
    return text[:300] + "\n[...]\n" + text[-(limit - 300):]


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def rpc_call(url: str, method: str, *params: Any, timeout: float = 60.0) -> Any:
    reply = httpx.post(url, json={"jsonrpc": "2.0", "id": 1, "method": method,
                                  "params": list(params)}, timeout=timeout).json()
    if "error" in reply:
        raise RuntimeError(f"{method} on {url}: {reply['error']}")
    return reply["result"]


def js_installed() -> bool:
    return (JS_DIR / "node_modules" / ".bin" / "hardhat").exists() and (
        JS_DIR / "node_modules" / ".bin" / "ganache").exists()


def install_js(log: Path | None = None) -> None:
    """`npm ci --prefix bench/js`: the pinned Hardhat and Ganache (package-lock.json)."""
    npm = shutil.which("npm")
    if npm is None:
        raise TargetUnavailable("npm is not installed: Hardhat and Ganache cannot be set up")
    result = subprocess.run(
        [npm, "ci", "--prefix", str(JS_DIR), "--no-audit", "--no-fund"],
        capture_output=True, text=True, timeout=600,
    )
    if log is not None:
        log.write_text(result.stdout + result.stderr)
    if result.returncode != 0:
        raise TargetUnavailable(f"npm ci --prefix bench/js failed:\n{result.stderr[-2000:]}")


class Target(ABC):
    """One system under test: `start()` makes `rpc_url` answer, `stop()` ends every process."""

    system: str = ""

    def __init__(self, name: str, spec: workload.ChainSpec, workdir: Path) -> None:
        self.name = name
        self.spec = spec
        self.workdir = workdir / name
        self.rpc_url = ""
        self._procs: list[subprocess.Popen[bytes]] = []
        self._logs: list[Path] = []

    # -- what the report shows ----------------------------------------------------------------

    @property
    @abstractmethod
    def block_period(self) -> float | None:
        """Seconds between blocks, or None when every transaction is mined at once."""

    @property
    def nodes(self) -> int:
        return 1

    @property
    def mining(self) -> str:
        return "automine" if self.block_period is None else f"{self.block_period:g} s blocks"

    def describe(self) -> dict[str, Any]:
        info: dict[str, Any] = {"name": self.name, "system": self.system, "nodes": self.nodes,
                                "mining": self.mining, "block_period_s": self.block_period}
        if self.rpc_url:
            with contextlib.suppress(Exception):
                info["client_version"] = rpc_call(self.rpc_url, "web3_clientVersion", timeout=5)
        return info

    @property
    def pids(self) -> list[int]:
        return [p.pid for p in self._procs if p.poll() is None]

    # -- lifetime -----------------------------------------------------------------------------

    @abstractmethod
    def start(self, timeout: float = 120.0) -> None: ...

    def mine_request(self, blocks: int) -> tuple[str, Any]:
        """The JSON-RPC call (method, param) that appends `blocks` empty blocks (peers only)."""
        raise TargetUnavailable(f"{self.name} cannot mine blocks on request")

    def stop(self) -> None:
        for proc in reversed(self._procs):
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
        for proc in reversed(self._procs):
            try:
                proc.wait(20)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        self._procs.clear()

    def __enter__(self) -> Target:
        try:
            self.start()
        except BaseException:
            self.stop()
            raise
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def logs(self, tail: int = 4000) -> str:
        return "\n".join(p.read_text(errors="replace")[-tail:] for p in self._logs if p.exists())

    def _spawn(self, argv: list[str], *, cwd: Path | None = None,
               env: dict[str, str] | None = None) -> subprocess.Popen[bytes]:
        self.workdir.mkdir(parents=True, exist_ok=True)
        log_path = self.workdir / f"process-{len(self._procs)}.log"
        self._logs.append(log_path)
        with log_path.open("ab") as log:
            proc = subprocess.Popen(
                argv, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                cwd=cwd, env={**os.environ, **(env or {})}, start_new_session=True,
            )
        self._procs.append(proc)
        return proc

    def _wait_rpc(self, url: str, deadline: float) -> None:
        while time.monotonic() < deadline:
            for proc in self._procs:
                if proc.poll() is not None:
                    raise RuntimeError(
                        f"{self.name} exited with {proc.returncode}:\n{self.logs()}")
            with contextlib.suppress(httpx.HTTPError, ValueError):
                if int(rpc_call(url, "eth_chainId", timeout=2), 16) == self.spec.chain_id:
                    return
            time.sleep(0.05)
        raise RuntimeError(f"{self.name} did not answer JSON-RPC in time:\n{self.logs()}")


class MedledgerNode(Target):
    """`medledger node run` as the single validator of the benchmark chain."""

    system = "medledger"

    def __init__(self, spec: workload.ChainSpec, workdir: Path, name: str = "medledger-1", *,
                 profile_to: Path | None = None) -> None:
        super().__init__(name, spec, workdir)
        self.genesis = spec.genesis()
        self.datadir = self.workdir / "data"
        # With profile_to, the node runs under bench.sampler, which writes its profile there.
        self.profile_to = profile_to
        # With cprofile_dir, every node process dumps a cProfile there when it stops.
        self.cprofile_dir: Path | None = None

    def _cprofile_env(self) -> dict[str, str]:
        if self.cprofile_dir is None:
            return {}
        self.cprofile_dir.mkdir(parents=True, exist_ok=True)
        return {PROFILE_ENV: str(self.cprofile_dir / "node-{pid}.prof")}

    @property
    def block_period(self) -> float | None:
        return float(self.spec.block_period)

    @property
    def mining(self) -> str:
        return f"QBFT, {self.nodes} validator, {self.spec.block_period} s block period"

    def write_files(self) -> tuple[Path, Path, Path]:
        self.workdir.mkdir(parents=True, exist_ok=True)
        genesis = self.workdir / "genesis.json"
        genesis.write_text(dump_genesis(self.genesis))
        key = self.workdir / "validator.json"
        if not key.exists():
            write_keystore(key, self.spec.validator_keys[0], KEYSTORE_PASSPHRASE,
                           kdf_iterations=2**4)
        passphrase = self.workdir / "passphrase.txt"
        passphrase.write_text(KEYSTORE_PASSPHRASE + "\n")
        return genesis, key, passphrase

    def start(self, timeout: float = 120.0) -> None:
        genesis, key, passphrase = self.write_files()
        endpoints = self.datadir / "endpoints.json"
        endpoints.unlink(missing_ok=True)
        command = medledger_command()
        if self.profile_to is not None:
            command = [sys.executable, "-m", "bench.sampler", str(self.profile_to), "--"]
        proc = self._spawn([
            *command, "node", "run", "--datadir", str(self.datadir),
            "--genesis", str(genesis), "--key", str(key), "--passphrase-file", str(passphrase),
            "--rpc-host", "127.0.0.1", "--rpc-port", "0", "--ws-port", "0",
            "--log-level", "warning", "--log-format", "json",
        ], env={"PYTHONUNBUFFERED": "1", **self._cprofile_env()}, cwd=REPO_ROOT)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if proc.poll() is not None:
                raise RuntimeError(f"{self.name} exited with {proc.returncode}:\n{self.logs()}")
            if endpoints.exists():
                with contextlib.suppress(ValueError):
                    info = json.loads(endpoints.read_text())
                    if info.get("pid") == proc.pid:
                        self.rpc_url = info["http"]
                        self._wait_rpc(self.rpc_url, deadline)
                        return
            time.sleep(0.05)
        raise RuntimeError(f"{self.name} did not start in {timeout}s:\n{self.logs()}")


def medledger_command() -> list[str]:
    script = Path(sys.executable).with_name("medledger")
    if script.exists():
        return [str(script)]
    found = shutil.which("medledger")
    if found is None:
        raise TargetUnavailable("the medledger command is not installed (uv sync)")
    return [found]


class MultiNodeTarget(MedledgerNode):
    """An N-validator medledger network on loopback: the devnet's own processes and wiring.

    Each validator runs `medledger node run` with static peers to all others, started and
    stopped by `node.devnet.DevnetSupervisor` (what `medledger devnet --nodes N` uses), on the
    benchmark's chain spec (its genesis and validator keys). The load generator sends to node 0
    and watches finality there: QBFT never reverts a stored block.
    """

    def __init__(self, spec: workload.ChainSpec, workdir: Path, nodes: int) -> None:
        if len(spec.validator_keys) != nodes:
            raise ValueError(f"the chain spec has {len(spec.validator_keys)} validators, "
                             f"not {nodes}")
        super().__init__(spec, workdir, name=f"medledger-{nodes}")
        self._nodes = nodes
        self.node_urls: list[str] = []
        self._supervisor: DevnetSupervisor | None = None

    @property
    def nodes(self) -> int:
        return self._nodes

    @property
    def mining(self) -> str:
        return f"QBFT, {self._nodes} validators, {self.spec.block_period} s block period"

    @staticmethod
    def available() -> bool:
        return True

    @property
    def pids(self) -> list[int]:
        if self._supervisor is None:
            return []
        return [p.pid for p in self._supervisor.processes.values() if p.poll() is None]

    def start(self, timeout: float = 180.0) -> None:
        genesis_file, _key, passphrase = self.write_files()
        ports = free_ports(3 * self._nodes)
        planned: list[DevnetNode] = []
        for index, key in enumerate(self.spec.validator_keys):
            name = f"validator-{index + 1}"
            key_path = self.workdir / f"{name}.json"
            if not key_path.exists():
                write_keystore(key_path, key, KEYSTORE_PASSPHRASE, kdf_iterations=2**4)
            planned.append(DevnetNode(
                name=name, datadir=self.workdir / name, key_path=key_path, node_key=key,
                rpc_port=ports[3 * index], ws_port=ports[3 * index + 1],
                p2p_port=ports[3 * index + 2],
            ))
        for node in planned:
            node.datadir.mkdir(parents=True, exist_ok=True)
        if genesis_file != self.workdir / "genesis.json":
            raise RuntimeError("unexpected genesis location")
        self._supervisor = DevnetSupervisor(self.workdir, planned, passphrase)
        # The supervisor's nodes inherit this process's environment.
        saved = os.environ.get(PROFILE_ENV)
        os.environ.update(self._cprofile_env())
        try:
            self._supervisor.start_all()
        finally:
            if saved is None:
                os.environ.pop(PROFILE_ENV, None)
            else:
                os.environ[PROFILE_ENV] = saved
        try:
            self._supervisor.wait_ready(timeout)
        except RuntimeError as exc:
            raise RuntimeError(f"{self.name} did not start: {exc}\n{self.logs()}") from exc
        deadline = time.monotonic() + timeout
        self.node_urls = [f"http://127.0.0.1:{n.rpc_port}" for n in planned]
        for url in self.node_urls:
            self._wait_rpc(url, deadline)
        self.rpc_url = self.node_urls[0]

    def stop(self) -> None:
        if self._supervisor is not None:
            self._supervisor.stop_all()
            self._supervisor = None
        super().stop()

    def logs(self, tail: int = 4000) -> str:
        parts = [p.read_text(errors="replace")[-tail:] for p in sorted(self.workdir.glob("*.log"))]
        return "\n".join(parts)


def _node_binary() -> str:
    node = shutil.which("node")
    if node is None:
        raise TargetUnavailable("Node.js is not installed: Hardhat and Ganache cannot run")
    return node


def _require_js(tool: str) -> Path:
    path = JS_DIR / "node_modules" / ".bin" / tool
    if not path.exists():
        raise TargetUnavailable(f"{tool} is not installed: run `npm ci --prefix bench/js`")
    _node_binary()
    return path


class HardhatTarget(Target):
    """Hardhat Network (EDR) single node: automine (a block per transaction) or interval blocks.

    Settings reach bench/js/hardhat.config.js through a JSON file named in
    MEDLEDGER_BENCH_HARDHAT; the hardfork is Prague, like medledger's rules.
    """

    system = "hardhat"

    def __init__(self, spec: workload.ChainSpec, workdir: Path, *,
                 interval_s: float | None) -> None:
        mode = "automine" if interval_s is None else f"{interval_s:g}s"
        super().__init__(f"hardhat-{mode}", spec, workdir)
        self.interval_s = interval_s

    @property
    def block_period(self) -> float | None:
        return self.interval_s

    def start(self, timeout: float = 120.0) -> None:
        hardhat = _require_js("hardhat")
        self.workdir.mkdir(parents=True, exist_ok=True)
        settings = self.workdir / "hardhat-settings.json"
        settings.write_text(json.dumps({
            "workdir": str(self.workdir),
            "chainId": self.spec.chain_id,
            "hardfork": "prague",
            "blockGasLimit": self.spec.gas_limit,
            "initialBaseFeePerGas": self.spec.base_fee,
            "intervalMs": 0 if self.interval_s is None else int(self.interval_s * 1000),
            "accounts": [{"privateKey": "0x" + k.hex(), "balance": str(self.spec.balance)}
                         for k in self.spec.accounts],
        }))
        port = free_port()
        self._spawn(
            [str(hardhat), "node", "--hostname", "127.0.0.1", "--port", str(port)],
            cwd=JS_DIR,
            env={"MEDLEDGER_BENCH_HARDHAT": str(settings),
                 "HARDHAT_DISABLE_TELEMETRY_PROMPT": "true"},
        )
        self.rpc_url = f"http://127.0.0.1:{port}"
        self._wait_rpc(self.rpc_url, time.monotonic() + timeout)

    def mine_request(self, blocks: int) -> tuple[str, Any]:
        return "hardhat_mine", hex(blocks)


class GanacheTarget(Target):
    """Ganache v7 single node: instamine (eager) or a fixed block time; in-memory chain."""

    system = "ganache"

    def __init__(self, spec: workload.ChainSpec, workdir: Path, *,
                 interval_s: float | None) -> None:
        mode = "automine" if interval_s is None else f"{interval_s:g}s"
        super().__init__(f"ganache-{mode}", spec, workdir)
        self.interval_s = interval_s

    @property
    def block_period(self) -> float | None:
        return self.interval_s

    def start(self, timeout: float = 120.0) -> None:
        ganache = _require_js("ganache")
        port = free_port()
        argv = [str(ganache), "--server.host", "127.0.0.1", "--server.port", str(port),
                "--chain.chainId", str(self.spec.chain_id), "--chain.networkId",
                str(self.spec.chain_id), "--miner.blockGasLimit", str(self.spec.gas_limit),
                "--logging.quiet"]
        if self.interval_s is not None:
            argv += ["--miner.blockTime", f"{self.interval_s:g}"]
        for key in self.spec.accounts:
            argv += ["--wallet.accounts", f"0x{key.hex()},{self.spec.balance}"]
        self._spawn(argv, cwd=JS_DIR)
        self.rpc_url = f"http://127.0.0.1:{port}"
        self._wait_rpc(self.rpc_url, time.monotonic() + timeout)

    def mine_request(self, blocks: int) -> tuple[str, Any]:
        return "evm_mine", {"blocks": blocks}
