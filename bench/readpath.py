"""Part 4 and the log half of part 6: the JSON-RPC read path, side by side on the same chain.

Every target gets the same chain shape: block 1 deploys EventProbe, then every `stride`-th block
holds one `set()` call (one storage write and one event), the blocks between are empty, up to
`blocks` blocks. medledger's chain is built offline into the node's datadir with the node's own
`Chain` (sealing 10k blocks at one per block period would take hours); Hardhat and Ganache get
the same blocks over RPC (a transaction, then `hardhat_mine` / `evm_mine` for the gap).

Then `clients` concurrent clients each send one request after another for `duration` seconds
per read call: requests/s and latency percentiles. The client's own CPU use is recorded so a
result limited by the Python client rather than the server is visible as such.
"""

from __future__ import annotations

import json
import math
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import httpx
import trio
from eth.vm.forks.prague.transactions import PragueTransactionBuilder

from bench import workload
from bench.loadgen import percentile
from bench.targets import MedledgerNode, Target, brief_error, rpc_call
from consensus.seals import seal_hash, sign_seal
from contracts.artifacts import available_artifacts, load_artifact
from node.chain import Chain

CLIENT_BOUND_CPU = 0.9  # client CPU share above which the client, not the server, is the limit


@dataclass(frozen=True)
class ChainShape:
    blocks: int
    stride: int

    @property
    def log_blocks(self) -> list[int]:
        """Numbers of the blocks that hold one EventProbe.set call each."""
        return list(range(2, self.blocks + 1, self.stride))

    def keys(self, spec: workload.ChainSpec) -> tuple[bytes, list[bytes]]:
        """(deployer, callers): the deployer is account 0; calls round-robin over the rest."""
        return spec.accounts[0], list(spec.accounts[1:])

    def signed(self, spec: workload.ChainSpec) -> tuple[bytes, bytes, list[bytes]]:
        """(probe address, deploy tx, set() calls), identical for every target."""
        deployer, callers = self.keys(spec)
        deploy = workload.sign(deployer, 0, to=None, data=workload.probe_deploy_code(),
                               gas=workload.DEPLOY_GAS, chain_id=spec.chain_id)
        probe = workload.contract_address(workload.address_of(deployer), 0)
        calls = workload.probe_calls(callers, len(self.log_blocks), probe,
                                     chain_id=spec.chain_id)
        return probe, deploy, calls


def prebuild_medledger(target: MedledgerNode, shape: ChainShape) -> bytes:
    """Write the chain into the (stopped) node's datadir; returns the probe address."""
    probe, deploy, calls = shape.signed(target.spec)
    chain = Chain(target.datadir, target.genesis)
    key = target.spec.validator_keys[0]
    proposer = target.spec.validators[0]
    pending = dict(zip(shape.log_blocks, calls, strict=True))
    try:
        if chain.head.block_number != 0:
            raise RuntimeError(f"{target.datadir} already holds a chain")
        for number in range(1, shape.blocks + 1):
            raw = [deploy] if number == 1 else ([pending[number]] if number in pending else [])
            built = chain.build_block([PragueTransactionBuilder.decode(r) for r in raw],
                                      timestamp=chain.head.timestamp + 1, proposer=proposer)
            if built.rejected:
                chain.discard_built()
                raise RuntimeError(
                    f"read-path chain block {number}: {built.rejected[0][1]} (block gas limit "
                    f"{chain.head.gas_limit:,} after {number - 1} blocks)")
            chain.commit_sealed(built, [sign_seal(seal_hash(built.block.header), key)])
    finally:
        chain.close()
    return probe


def populate_over_rpc(target: Target, shape: ChainShape) -> bytes:
    """Give a running automining peer the same blocks; returns the probe address."""
    probe, deploy, calls = shape.signed(target.spec)
    with httpx.Client(timeout=600.0) as client:

        def call(method: str, *params: Any) -> Any:
            reply = client.post(target.rpc_url, json={"jsonrpc": "2.0", "id": 1,
                                                      "method": method, "params": list(params)})
            body = reply.json()
            if "error" in body:
                raise RuntimeError(f"{target.name} {method}: {body['error']}")
            return body["result"]

        if int(call("eth_blockNumber"), 16) != 0:
            raise RuntimeError(f"{target.name} does not start from an empty chain")
        call("eth_sendRawTransaction", "0x" + deploy.hex())
        head = 1  # automine: the deployment is block 1
        for number, raw in zip(shape.log_blocks, calls, strict=True):
            if number - 1 > head:
                call(*target.mine_request(number - 1 - head))
            call("eth_sendRawTransaction", "0x" + raw.hex())
            head = number
        if shape.blocks > head:
            call(*target.mine_request(shape.blocks - head))
        final = int(call("eth_blockNumber"), 16)
    if final != shape.blocks:
        raise RuntimeError(f"{target.name}: chain has {final} blocks, expected {shape.blocks}")
    return probe


@dataclass(frozen=True)
class ReadCall:
    """One read the benchmark measures: a name and the JSON-RPC request for request #i."""

    name: str
    request: Callable[[int], tuple[str, list[Any]]]


def read_calls(spec: workload.ChainSpec, probe: bytes, end: int, span: int) -> list[ReadCall]:
    """The measured reads. canAccess joins here as one more ReadCall once its contract lands."""
    accounts = ["0x" + workload.address_of(k).hex() for k in spec.accounts]
    first = max(0, end - span + 1)
    log_filter = {"fromBlock": hex(first), "toBlock": hex(end), "address": "0x" + probe.hex()}
    call = {"to": "0x" + probe.hex(), "data": "0x" + workload.GET_SELECTOR.hex()}
    return [
        ReadCall("eth_getBalance",
                 lambda i: ("eth_getBalance", [accounts[i % len(accounts)], "latest"])),
        ReadCall("eth_call(EventProbe.get)", lambda i: ("eth_call", [call, "latest"])),
        ReadCall(f"eth_getLogs({end - first + 1} blocks)",
                 lambda i: ("eth_getLogs", [log_filter])),
    ]


def can_access_status() -> str:
    """Why `eth_call canAccess` is or is not among the measured reads."""
    for name in available_artifacts():
        if any(entry.get("name") == "canAccess" for entry in load_artifact(name).abi):
            return (f"contract {name} exposes canAccess: add its ReadCall to "
                    "bench.readpath.read_calls to measure it")
    return "not measured: no contract with canAccess in contracts/artifacts yet"


class RawRpcConnection:
    """A lean HTTP/1.1 keep-alive JSON-RPC client, so the client's CPU is not the bottleneck.

    httpx spends about a millisecond of CPU per request; on a 2-core machine that would cap the
    read benchmark below what fast servers deliver. This sends prebuilt bytes and parses only
    the status line, Content-Length (or chunked encoding) and the start of the body.
    """

    def __init__(self, url: str) -> None:
        parsed = httpx.URL(url)
        self.host, self.port = parsed.host, parsed.port or 80
        self.path = parsed.raw_path.decode() or "/"
        self._stream: trio.SocketStream | None = None
        self._buffer = b""

    async def close(self) -> None:
        if self._stream is not None:
            await self._stream.aclose()
            self._stream = None

    async def post(self, body: bytes) -> bytes:
        if self._stream is None:
            self._stream = await trio.open_tcp_stream(self.host, self.port)
        head = (f"POST {self.path} HTTP/1.1\r\nHost: {self.host}:{self.port}\r\n"
                f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n\r\n")
        await self._stream.send_all(head.encode() + body)
        header = await self._read_until(b"\r\n\r\n")
        status_line, *lines = header.decode("latin-1").split("\r\n")
        if " 200 " not in status_line + " ":
            raise RuntimeError(f"HTTP error: {status_line}")
        headers = {k.strip().lower(): v.strip() for k, _, v in (ln.partition(":") for ln in lines)}
        if "content-length" in headers:
            reply = await self._read_exactly(int(headers["content-length"]))
        elif headers.get("transfer-encoding", "").lower() == "chunked":
            reply = await self._read_chunked()
        else:
            raise RuntimeError("HTTP reply without Content-Length or chunked encoding")
        if headers.get("connection", "").lower() == "close":
            await self.close()
        return reply

    async def _fill(self) -> None:
        assert self._stream is not None
        data = await self._stream.receive_some(65536)
        if not data:
            raise RuntimeError("server closed the connection")
        self._buffer += data

    async def _read_until(self, marker: bytes) -> bytes:
        while (index := self._buffer.find(marker)) < 0:
            await self._fill()
        out, self._buffer = self._buffer[:index], self._buffer[index + len(marker):]
        return out

    async def _read_exactly(self, size: int) -> bytes:
        while len(self._buffer) < size:
            await self._fill()
        out, self._buffer = self._buffer[:size], self._buffer[size:]
        return out

    async def _read_chunked(self) -> bytes:
        parts = []
        while True:
            size = int((await self._read_until(b"\r\n")).split(b";")[0], 16)
            if size == 0:
                await self._read_until(b"\r\n")
                return b"".join(parts)
            parts.append(await self._read_exactly(size))
            await self._read_until(b"\r\n")


def _reply_error(reply: bytes) -> str | None:
    """The JSON-RPC error of a reply, reading the whole body only when it is not a result."""
    if b'"result"' in reply[:64]:
        return None
    parsed = json.loads(reply)
    return None if "result" in parsed else str(parsed.get("error", parsed))[:200]


async def _hammer(url: str, call: ReadCall, clients: int, duration: float) -> dict[str, Any]:
    latencies: list[float] = []
    errors: list[str] = []
    counter = iter(range(10**12))
    deadline = time.monotonic() + duration

    async def client_loop() -> None:
        conn = RawRpcConnection(url)
        try:
            while time.monotonic() < deadline:
                method, params = call.request(next(counter))
                body = json.dumps({"jsonrpc": "2.0", "id": 1, "method": method,
                                   "params": params}).encode()
                sent = time.monotonic()
                reply = await conn.post(body)
                latencies.append(time.monotonic() - sent)
                error = _reply_error(reply)
                if error is not None:
                    errors.append(error)
                    return
        finally:
            await conn.close()

    cpu0, start = time.process_time(), time.monotonic()
    async with trio.open_nursery() as nursery:
        for _ in range(clients):
            nursery.start_soon(client_loop)
    wall, cpu = time.monotonic() - start, time.process_time() - cpu0
    if errors:
        raise RuntimeError(f"{call.name} on {url} failed: {errors[0]}")
    return {
        "requests": len(latencies),
        "rps": len(latencies) / wall,
        "p50_ms": percentile(latencies, 50) * 1000,
        "p99_ms": percentile(latencies, 99) * 1000,
        "client_cpu": cpu / wall,
        "client_bound": cpu / wall >= CLIENT_BOUND_CPU,
    }


def log_cost_curve(url: str, probe: bytes, end: int, spans: list[int],
                   budget_s: float = 2.0) -> list[dict[str, Any]]:
    """Latency of one eth_getLogs over the `span` blocks up to `end`, growing spans (one client)."""
    rows = []
    with httpx.Client(timeout=120.0) as client:
        for span in spans:
            first = max(0, end - span + 1)
            params = [{"fromBlock": hex(first), "toBlock": hex(end),
                       "address": "0x" + probe.hex()}]
            times: list[float] = []
            logs = 0
            start = time.monotonic()
            while len(times) < 3 or (time.monotonic() - start < budget_s and len(times) < 50):
                sent = time.monotonic()
                reply = client.post(url, json={"jsonrpc": "2.0", "id": 1,
                                               "method": "eth_getLogs", "params": params}).json()
                times.append(time.monotonic() - sent)
                if "error" in reply:
                    raise RuntimeError(f"eth_getLogs over {span} blocks: {reply['error']}")
                logs = len(reply["result"])
            rows.append({"blocks": end - first + 1, "logs": logs,
                         "median_ms": percentile(times, 50) * 1000, "runs": len(times)})
    return rows


def spans_for(blocks: int) -> list[int]:
    top = int(math.log10(blocks)) if blocks >= 10 else 1
    spans = [10**e for e in range(1, top + 1)]
    return spans if spans[-1] == blocks else [*spans, blocks]


def measure_target(target: Target, shape: ChainShape, probe: bytes, populate_s: float, *,
                   clients: int, duration: float, log_budget: float) -> dict[str, Any]:
    """Measure every read call and the log cost curve on one running, populated target."""
    # Ranges end at the populated chain's last block, not the head: a node that seals an empty
    # block meanwhile must not change what is measured.
    head = int(rpc_call(target.rpc_url, "eth_blockNumber"), 16)
    end = shape.blocks
    calls = read_calls(target.spec, probe, end, min(end, 10_000))
    results = {call.name: trio.run(_hammer, target.rpc_url, call, clients, duration)
               for call in calls}
    return {
        "target": target.describe(),
        "chain_blocks": head,
        "logs_in_chain": len(shape.log_blocks),
        "populate_s": populate_s,
        "calls": results,
        "log_cost": log_cost_curve(target.rpc_url, probe, end, spans_for(min(end, 10_000)),
                                   budget_s=log_budget),
    }


def run_readpath(targets: list[Target], shape: ChainShape, *, clients: int = 16,
                 duration: float = 5.0, log_budget: float = 2.0) -> dict[str, Any]:
    """Measure the read path on each target in turn; each target is started and stopped here.

    A target that fails is reported with its error and the others are still measured.
    """
    out: dict[str, Any] = {"clients": clients, "duration_s": duration, "blocks": shape.blocks,
                           "stride": shape.stride, "can_access": can_access_status(),
                           "targets": {}, "failed": {}}
    for target in targets:
        try:
            out["targets"][target.name] = _measure_one(target, shape, clients=clients,
                                                       duration=duration, log_budget=log_budget)
        except Exception as exc:  # one broken system must not hide the others' numbers
            out["failed"][target.name] = brief_error(exc)
    return out


def _measure_one(target: Target, shape: ChainShape, *, clients: int, duration: float,
                 log_budget: float) -> dict[str, Any]:
    start = time.monotonic()
    if isinstance(target, MedledgerNode):
        probe = prebuild_medledger(target, shape)
        populate_s = time.monotonic() - start
        with target:
            return measure_target(target, shape, probe, populate_s, clients=clients,
                                  duration=duration, log_budget=log_budget)
    with target:
        start = time.monotonic()
        probe = populate_over_rpc(target, shape)
        return measure_target(target, shape, probe, time.monotonic() - start, clients=clients,
                              duration=duration, log_budget=log_budget)
