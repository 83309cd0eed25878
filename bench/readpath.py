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
import os
import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import Any

import httpx
import trio
from eth.vm.forks.prague.transactions import PragueTransactionBuilder
from eth_utils import keccak

from bench import access_fixture, workload
from bench.loadgen import percentile
from bench.targets import MedledgerNode, Target, brief_error, rpc_call
from consensus.seals import seal_hash, sign_seal
from node.chain import Chain
from node.logindex import INDEX_DIR, LogIndex
from node.rpc.eth_api import EthApi
from node.rpc.filters import FilterManager
from node.rpc.params import parse_log_filter
from node.rpc.subscriptions import SubscriptionHub
from node.txpool import TxPool
from node.worker import ChainWorker

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


def with_medledger_state(target: MedledgerNode) -> None:
    """Predeploy MedLedger with the canAccess fixture in the node's genesis."""
    target.genesis = replace(target.genesis,
                             alloc={**target.genesis.alloc, **access_fixture.medledger_alloc()})


def prebuild_medledger(target: MedledgerNode, shape: ChainShape) -> tuple[bytes, float]:
    """Write the chain and its log index into the (stopped) node's datadir, as the node would
    have while sealing those blocks; returns the probe address and the index build seconds."""
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
        started = time.monotonic()
        index = LogIndex(target.datadir / INDEX_DIR)
        try:
            index.catch_up_all(chain)
        finally:
            index.close()
        index_s = time.monotonic() - started
    finally:
        chain.close()
    return probe, index_s


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


CAN_ACCESS = "eth_call(MedLedger.canAccess)"


def read_calls(spec: workload.ChainSpec, probe: bytes, end: int, span: int) -> list[ReadCall]:
    """The measured reads (canAccess: see bench.access_fixture for the state it reads)."""
    accounts = ["0x" + workload.address_of(k).hex() for k in spec.accounts]
    first = max(0, end - span + 1)
    log_filter = {"fromBlock": hex(first), "toBlock": hex(end), "address": "0x" + probe.hex()}
    call = {"to": "0x" + probe.hex(), "data": "0x" + workload.GET_SELECTOR.hex()}
    access = access_fixture.can_access_request()
    return [
        ReadCall("eth_getBalance",
                 lambda i: ("eth_getBalance", [accounts[i % len(accounts)], "latest"])),
        ReadCall("eth_call(EventProbe.get)", lambda i: ("eth_call", [call, "latest"])),
        ReadCall(CAN_ACCESS, lambda i: ("eth_call", [access, "latest"])),
        ReadCall(f"eth_getLogs({end - first + 1} blocks)",
                 lambda i: ("eth_getLogs", [log_filter])),
    ]


def can_access_status() -> str:
    """What the canAccess row compares (shown under the table)."""
    return ("canAccess(doctor of hospital 2, record held by hospital 1, treatment) = true via the "
            "patient's record grant: MedLedger's runtime code with the same storage on every "
            "system (medledger: genesis predeploy; Hardhat: hardhat_setCode/setStorageAt; "
            "Ganache: evm_setAccountCode/setAccountStorageAt)")


def check_can_access(url: str) -> None:
    """The fixture must answer true on this system, or the timing would compare other paths."""
    answer = rpc_call(url, "eth_call", access_fixture.can_access_request(), "latest")
    if int(answer, 16) != 1:
        raise RuntimeError(f"canAccess answered {answer} on {url}, expected true")


def install_medledger_state(target: Target) -> None:
    """Give a running peer the same MedLedger code and storage (no block is mined)."""
    for method, params in access_fixture.install_requests(target.system):
        rpc_call(target.rpc_url, method, *params)


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


VALUE_CHANGED = keccak(text="ValueChanged(address,uint256,uint256)")


def log_cost_curve(url: str, probe: bytes, end: int, spans: list[int], shape: ChainShape,
                   budget_s: float = 2.0) -> list[dict[str, Any]]:
    """Latency of one eth_getLogs over growing spans (one client), two queries per span:

    - `address`: every log of the probe in the `span` blocks up to `end` (span/stride logs: the
      answer grows with the span);
    - `selective`: the one log of the last set() call, by its indexed oldValue topic, over the
      `span` blocks up to that log's block (always one log: only the search grows).
    """
    last_log = shape.log_blocks[-1]
    old_value = len(shape.log_blocks)  # set(i + 2) calls: the last one replaced this value
    topic = "0x" + old_value.to_bytes(32, "big").hex()
    rows = []
    with httpx.Client(timeout=120.0) as client:

        def median_ms(params: list[Any], what: str) -> tuple[float, int, int]:
            times: list[float] = []
            logs = 0
            start = time.monotonic()
            while len(times) < 3 or (time.monotonic() - start < budget_s and len(times) < 50):
                sent = time.monotonic()
                reply = client.post(url, json={"jsonrpc": "2.0", "id": 1,
                                               "method": "eth_getLogs", "params": params}).json()
                times.append(time.monotonic() - sent)
                if "error" in reply:
                    raise RuntimeError(f"eth_getLogs ({what}): {reply['error']}")
                logs = len(reply["result"])
            return percentile(times, 50) * 1000, logs, len(times)

        for span in spans:
            first = max(0, end - span + 1)
            address_ms, logs, runs = median_ms(
                [{"fromBlock": hex(first), "toBlock": hex(end), "address": "0x" + probe.hex()}],
                f"address over {span} blocks")
            sel_first = max(0, last_log - span + 1)
            selective_ms, selective_logs, _ = median_ms(
                [{"fromBlock": hex(sel_first), "toBlock": hex(last_log),
                  "topics": ["0x" + VALUE_CHANGED.hex(), None, topic]}],
                f"one topic over {span} blocks")
            rows.append({"blocks": end - first + 1, "logs": logs, "median_ms": address_ms,
                         "runs": runs, "selective_ms": selective_ms,
                         "selective_logs": selective_logs})
    return rows


def index_vs_scan(target: MedledgerNode, shape: ChainShape, probe: bytes,
                  reps: int = 3) -> list[dict[str, Any]]:
    """eth_getLogs in-process on the (stopped) node's datadir, the same queries as
    `log_cost_curve`: the block scan the node did before the log index, and the index."""
    chain = Chain(target.datadir, target.genesis)
    index = LogIndex(target.datadir / INDEX_DIR)
    try:
        def api(log_index: LogIndex | None) -> EthApi:
            return EthApi(chain, TxPool(chain.chain_id), ChainWorker(), FilterManager(),
                          SubscriptionHub(), log_index=log_index)

        scan, indexed = api(None), api(index)
        end, last_log = shape.blocks, shape.log_blocks[-1]
        topic = "0x" + len(shape.log_blocks).to_bytes(32, "big").hex()
        rows = []
        for span in spans_for(min(end, 10_000)):
            queries = {
                "address": {"fromBlock": hex(max(0, end - span + 1)), "toBlock": hex(end),
                            "address": "0x" + probe.hex()},
                "selective": {"fromBlock": hex(max(0, last_log - span + 1)),
                              "toBlock": hex(last_log),
                              "topics": ["0x" + VALUE_CHANGED.hex(), None, topic]},
            }
            row: dict[str, Any] = {"blocks": min(span, end)}
            for what, value in queries.items():
                criteria = parse_log_filter(value, 0)
                for label, eth in (("scan", scan), ("index", indexed)):
                    times = []
                    for _ in range(reps):
                        start = time.perf_counter()
                        logs = eth._query_logs(criteria)
                        times.append(time.perf_counter() - start)
                    row[f"{what}_{label}_ms"] = percentile(times, 50) * 1000
                    row[f"{what}_logs"] = len(logs)
            rows.append(row)
        return rows
    finally:
        index.close()
        chain.close()


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
    results: dict[str, Any] = {}
    for call in calls:
        try:
            if call.name == CAN_ACCESS:
                check_can_access(target.rpc_url)
            results[call.name] = trio.run(_hammer, target.rpc_url, call, clients, duration)
        except Exception as exc:  # e.g. a peer that cannot run the contract: shown as such
            results[call.name] = {"error": brief_error(exc)}
    return {
        "target": target.describe(),
        "chain_blocks": head,
        "logs_in_chain": len(shape.log_blocks),
        "populate_s": populate_s,
        "calls": results,
        "log_cost": log_cost_curve(target.rpc_url, probe, end, spans_for(min(end, 10_000)),
                                   shape, budget_s=log_budget),
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
    out["loadavg"] = [round(x, 1) for x in os.getloadavg()]
    return out


def _measure_one(target: Target, shape: ChainShape, *, clients: int, duration: float,
                 log_budget: float) -> dict[str, Any]:
    start = time.monotonic()
    if isinstance(target, MedledgerNode):
        with_medledger_state(target)
        probe, index_s = prebuild_medledger(target, shape)
        populate_s = time.monotonic() - start
        with target:
            result = measure_target(target, shape, probe, populate_s, clients=clients,
                                    duration=duration, log_budget=log_budget)
        result["log_index_build_s"] = index_s
        result["index_vs_scan"] = index_vs_scan(target, shape, probe)
        return result
    with target:
        start = time.monotonic()
        probe = populate_over_rpc(target, shape)
        install_medledger_state(target)
        return measure_target(target, shape, probe, time.monotonic() - start, clients=clients,
                              duration=duration, log_budget=log_budget)
