"""Load generator, run as its own process: `python -m bench.loadgen PLAN.json OUT.json`.

It sends pre-signed transactions to one JSON-RPC endpoint at increasing target rates and
measures, per rate step, how many become final and how long each took from submission.

- Sending: the transactions of a step are scheduled at `rate` per second. Senders are split
  into shards; one task per shard sends whatever is due as one JSON-RPC batch of
  `eth_sendRawTransaction` calls and waits for the reply before its next batch, so a sender's
  nonces always arrive in order (automining tools refuse a nonce gap). A batch never holds two
  transactions of one sender.
- Finality: one task polls `eth_blockNumber` every `poll_interval` seconds and fetches each new
  block's transaction hashes; a transaction is final when the block holding it is seen. On a
  QBFT chain a stored block is final; the single-node peers never reorganise either.
- A step is *bounded* when the system kept pace with the offered rate (>= 90 % of it was
  submitted on schedule, nothing was refused, >= 99 % became final before the drain timeout)
  and p95 latency stayed within `latency_bound`. Sustained throughput is finalized
  transactions / wall time (first submission to last finalization) of the fastest bounded
  step. The sweep stops at the first unbounded step.
"""

from __future__ import annotations

import json
import math
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from itertools import pairwise
from pathlib import Path
from typing import Any

import httpx
import trio
from eth_utils import keccak

MAX_BATCH = 500
RPC_TIMEOUT = 120.0


class RpcFailure(RuntimeError):
    """The endpoint answered a control call (not a transaction) with an error."""


async def rpc(client: httpx.AsyncClient, url: str, method: str, *params: Any) -> Any:
    reply = (await client.post(url, json={"jsonrpc": "2.0", "id": 1, "method": method,
                                          "params": list(params)})).json()
    if "error" in reply:
        raise RpcFailure(f"{method}: {reply['error']}")
    return reply["result"]


@dataclass
class SeenBlock:
    number: int
    timestamp: int
    tx_count: int
    seen: float


@dataclass
class BlockWatcher:
    """Polls the head and records when each transaction hash was first seen in a block."""

    client: httpx.AsyncClient
    url: str
    poll_interval: float
    next_number: int = 0
    final_at: dict[bytes, float] = field(default_factory=dict)
    blocks: list[SeenBlock] = field(default_factory=list)
    changed: trio.Event = field(default_factory=trio.Event)

    async def start_at_head(self) -> None:
        self.next_number = int(await rpc(self.client, self.url, "eth_blockNumber"), 16) + 1

    async def run(self) -> None:
        while True:
            head = int(await rpc(self.client, self.url, "eth_blockNumber"), 16)
            while self.next_number <= head:
                first = self.next_number
                last = min(head, first + 99)
                fetched = await self._fetch(first, last)
                self.next_number = first + fetched
                if fetched < last - first + 1:
                    break  # the head moved ahead of what the node serves yet: poll again
            await trio.sleep(self.poll_interval)

    async def _fetch(self, first: int, last: int) -> int:
        """Record blocks first..last in order; stop at the first one not served yet."""
        batch = [{"jsonrpc": "2.0", "id": n, "method": "eth_getBlockByNumber",
                  "params": [hex(n), False]} for n in range(first, last + 1)]
        replies = (await self.client.post(self.url, json=batch)).json()
        now = time.monotonic()
        by_id = {r["id"]: r for r in replies}
        fetched = 0
        for n in range(first, last + 1):
            reply = by_id.get(n, {})
            if "error" in reply:
                raise RpcFailure(f"eth_getBlockByNumber({n}): {reply['error']}")
            block = reply.get("result")
            if block is None:
                break  # Ganache reports a new head a moment before it serves the block
            txs = block["transactions"]
            for tx_hash in txs:
                self.final_at.setdefault(bytes.fromhex(tx_hash[2:]), now)
            self.blocks.append(SeenBlock(n, int(block["timestamp"], 16), len(txs), now))
            fetched += 1
        if fetched:
            self.changed.set()
            self.changed = trio.Event()
        return fetched


@dataclass
class Submission:
    raw: bytes
    sender: int
    tx_hash: bytes
    scheduled: float = 0.0
    submitted: float = 0.0
    error: str | None = None


def percentile(values: list[float], q: float) -> float:
    """Nearest-rank percentile (q in 0..100) of a non-empty list."""
    ordered = sorted(values)
    rank = max(1, math.ceil(q / 100 * len(ordered)))
    return ordered[min(rank, len(ordered)) - 1]


async def _send_shard(client: httpx.AsyncClient, url: str, shard: list[Submission],
                      max_batch: int) -> None:
    i = 0
    while i < len(shard):
        now = time.monotonic()
        if shard[i].scheduled > now:
            await trio.sleep(shard[i].scheduled - now)
            continue
        batch: list[Submission] = []
        senders: set[int] = set()
        while (i < len(shard) and len(batch) < max_batch and shard[i].scheduled <= now
               and shard[i].sender not in senders):
            batch.append(shard[i])
            senders.add(shard[i].sender)
            i += 1
        payload = [{"jsonrpc": "2.0", "id": k, "method": "eth_sendRawTransaction",
                    "params": ["0x" + s.raw.hex()]} for k, s in enumerate(batch)]
        sent = time.monotonic()
        for s in batch:
            s.submitted = sent
        try:
            reply = (await client.post(url, json=payload)).json()
            replies = {r.get("id"): r for r in (reply if isinstance(reply, list) else [reply])}
        except (httpx.HTTPError, ValueError) as exc:
            for s in batch:
                s.error = f"transport: {type(exc).__name__}"
            continue
        for k, s in enumerate(batch):
            answer = replies.get(k, {"error": {"message": "no reply in batch"}})
            if "error" in answer:
                s.error = str(answer["error"].get("message", answer["error"]))[:120]


async def run_step(client: httpx.AsyncClient, url: str, watcher: BlockWatcher,
                   step: dict[str, Any], settings: dict[str, Any]) -> dict[str, Any]:
    rate = float(step["rate"])
    shards_count = int(settings.get("senders", 4))
    subs = [Submission(bytes.fromhex(raw), int(sender), keccak(bytes.fromhex(raw)))
            for sender, raw in step["txs"]]
    if not subs:
        raise ValueError("a load step needs transactions")
    start = time.monotonic() + 0.05
    for i, s in enumerate(subs):
        s.scheduled = start + i / rate
    shards: list[list[Submission]] = [[] for _ in range(shards_count)]
    for s in subs:
        shards[s.sender % shards_count].append(s)
    first_block = len(watcher.blocks)
    async with trio.open_nursery() as nursery:
        for shard in shards:
            if shard:
                nursery.start_soon(_send_shard, client, url, shard,
                                   int(settings.get("max_batch", MAX_BATCH)))
    last_submit = max(s.submitted for s in subs)
    accepted = [s for s in subs if s.error is None]
    drain_deadline = time.monotonic() + float(settings.get("drain_timeout", 20.0))
    while time.monotonic() < drain_deadline and any(
            s.tx_hash not in watcher.final_at for s in accepted):
        with trio.move_on_at(drain_deadline):
            await watcher.changed.wait()
    return summarize_step(rate, subs, watcher, first_block, start, last_submit, settings)


def summarize_step(rate: float, subs: list[Submission], watcher: BlockWatcher, first_block: int,
                   start: float, last_submit: float, settings: dict[str, Any]) -> dict[str, Any]:
    accepted = [s for s in subs if s.error is None]
    final = [(s, watcher.final_at[s.tx_hash]) for s in accepted if s.tx_hash in watcher.final_at]
    latencies = [t - s.submitted for s, t in final]
    errors = Counter(s.error for s in subs if s.error is not None)
    submit_span = last_submit - start + 1.0 / rate
    result: dict[str, Any] = {
        "rate": rate,
        "submitted": len(subs),
        "accepted": len(accepted),
        "rejected": len(subs) - len(accepted),
        "errors": dict(errors.most_common(5)),
        "finalized": len(final),
        "submit_rate": len(subs) / submit_span,
    }
    step_blocks = [b for b in watcher.blocks[first_block:] if b.tx_count > 0]
    if final:
        last_final = max(t for _, t in final)
        wall = last_final - min(s.submitted for s in subs)
        result.update({
            "wall_s": wall,
            "tps": len(final) / wall if wall > 0 else 0.0,
            "latency_s": {f"p{q}": percentile(latencies, q) for q in (50, 95, 99)}
            | {"max": max(latencies), "mean": sum(latencies) / len(latencies)},
            "latency_quantiles": [percentile(latencies, q) for q in range(0, 101, 5)],
        })
    else:
        result.update({"wall_s": None, "tps": 0.0, "latency_s": None, "latency_quantiles": []})
    blocks_with_step_txs = [b for b in step_blocks if b.seen <= max(
        (t for _, t in final), default=0.0)]
    result["blocks"] = len(blocks_with_step_txs)
    if len(blocks_with_step_txs) >= 2:
        span = blocks_with_step_txs[-1].seen - blocks_with_step_txs[0].seen
        result["block_interval_s"] = span / (len(blocks_with_step_txs) - 1)
        result["block_interval_from_timestamps_s"] = (
            blocks_with_step_txs[-1].timestamp - blocks_with_step_txs[0].timestamp
        ) / (len(blocks_with_step_txs) - 1)
    else:
        result["block_interval_s"] = None
        result["block_interval_from_timestamps_s"] = None
    result["txs_per_block"] = (len(final) / len(blocks_with_step_txs)
                               if blocks_with_step_txs else 0.0)
    bound = float(settings.get("latency_bound", 4.0))
    p95 = result["latency_s"]["p95"] if result["latency_s"] else math.inf
    result["bounded"] = bool(
        result["rejected"] == 0
        and len(final) >= 0.99 * len(subs)
        and result["submit_rate"] >= 0.9 * rate
        and p95 <= bound
    )
    return result


def summarize_sweep(steps: list[dict[str, Any]]) -> dict[str, Any]:
    bounded = [s for s in steps if s["bounded"]]
    best = max(bounded, key=lambda s: s["tps"], default=None)
    peak = max(steps, key=lambda s: s["tps"], default=None)
    return {
        "sustained_tps": best["tps"] if best else None,
        "sustained_at_rate": best["rate"] if best else None,
        "sustained_latency_s": best["latency_s"] if best else None,
        "sustained_block_interval_s": best["block_interval_s"] if best else None,
        "peak_tps": peak["tps"] if peak else None,
        "saturated": any(not s["bounded"] for s in steps),
    }


async def run_plan(plan: dict[str, Any]) -> dict[str, Any]:
    url = plan["rpc"]
    settings = plan.get("settings", {})
    limits = httpx.Limits(max_connections=int(settings.get("senders", 4)) + 4)
    async with httpx.AsyncClient(timeout=RPC_TIMEOUT, limits=limits) as client:
        watcher = BlockWatcher(client, url, float(settings.get("poll_interval", 0.025)))
        await watcher.start_at_head()
        steps: list[dict[str, Any]] = []
        async with trio.open_nursery() as nursery:
            nursery.start_soon(watcher.run)
            refine = plan.get("refine") or [None] * len(plan["steps"])
            for index, step in enumerate(plan["steps"]):
                result = await run_step(client, url, watcher, step, settings)
                steps.append(result)
                if not result["bounded"] and settings.get("stop_when_saturated", True):
                    # One more step between the last rate that held and this one.
                    if index > 0 and steps[-2]["bounded"] and refine[index] is not None:
                        steps.append(await run_step(client, url, watcher, refine[index],
                                                    settings))
                    break
            nursery.cancel_scope.cancel()
    return {"rpc": url, "settings": settings, "steps": steps, **summarize_sweep(steps)}


# -- the harness side: plan the sweep, sign it once, run this module as a subprocess ---------


@dataclass(frozen=True)
class SweepPlan:
    """Rate steps of one sweep; each step has its own senders so a failed step spoils no other.

    Besides the `rates` ladder, a refining step sits between each pair of neighbouring rates
    (their geometric mean); the load generator runs the one just below the first rate that
    does not hold, which halves the ladder's uncertainty on sustained throughput.
    """

    rates: tuple[float, ...]
    duration: float
    per_account: int = 32
    senders: int = 4

    @property
    def refine_rates(self) -> tuple[float | None, ...]:
        """refine_rates[k] lies between rates[k-1] and rates[k] (None for k = 0)."""
        return (None, *(float(round(math.sqrt(a * b))) for a, b in pairwise(self.rates)))

    @property
    def all_rates(self) -> list[float]:
        return [*self.rates, *(r for r in self.refine_rates if r is not None)]

    def step_size(self, rate: float) -> int:
        return max(1, round(rate * self.duration))

    def step_accounts(self, rate: float) -> int:
        needed = math.ceil(self.step_size(rate) / self.per_account)
        return max(self.senders, math.ceil(needed / self.senders) * self.senders)

    def accounts_needed(self) -> int:
        return sum(self.step_accounts(r) for r in self.all_rates)

    def sign(self, keys: Sequence[bytes], chain_id: int) -> list[list[tuple[int, str]]]:
        """(sender index, raw hex) per transaction for each of `all_rates`: 1-wei transfers."""
        from bench import workload

        if len(keys) < self.accounts_needed():
            raise ValueError(f"the sweep needs {self.accounts_needed()} funded accounts, "
                             f"got {len(keys)}")
        steps: list[list[tuple[int, str]]] = []
        offset = 0
        for rate in self.all_rates:
            count = self.step_accounts(rate)
            group = list(keys[offset:offset + count])
            steps.append([
                (offset + i % count, raw.hex())
                for i, raw in enumerate(workload.transfers(group, self.step_size(rate),
                                                           chain_id=chain_id))
            ])
            offset += count
        return steps


def run_sweep(rpc_url: str, plan: SweepPlan, signed: list[list[tuple[int, str]]],
              workdir: Path, *, latency_bound: float, drain_timeout: float,
              stop_when_saturated: bool = True, timeout: float = 1200.0) -> dict[str, Any]:
    """Run `python -m bench.loadgen` against `rpc_url` and return its JSON result."""
    if len(signed) != len(plan.all_rates):
        raise ValueError("signed steps do not match the plan's rates")
    refine_txs = iter(signed[len(plan.rates):])
    workdir.mkdir(parents=True, exist_ok=True)
    plan_file, out_file = workdir / "loadgen-plan.json", workdir / "loadgen-result.json"
    plan_file.write_text(json.dumps({
        "rpc": rpc_url,
        "settings": {"senders": plan.senders, "latency_bound": latency_bound,
                     "drain_timeout": drain_timeout, "poll_interval": 0.025,
                     "stop_when_saturated": stop_when_saturated},
        "steps": [{"rate": rate, "duration": plan.duration, "txs": txs}
                  for rate, txs in zip(plan.rates, signed[:len(plan.rates)], strict=True)],
        "refine": [None if rate is None else
                   {"rate": rate, "duration": plan.duration, "txs": next(refine_txs)}
                   for rate in plan.refine_rates],
    }))
    out_file.unlink(missing_ok=True)
    result = subprocess.run(
        [sys.executable, "-m", "bench.loadgen", str(plan_file), str(out_file)],
        cwd=Path(__file__).resolve().parents[1], capture_output=True, text=True,
        timeout=timeout,
    )
    if result.returncode != 0 or not out_file.exists():
        raise RuntimeError(f"load generator failed ({result.returncode}):\n"
                           f"{result.stderr[-3000:]}")
    return dict(json.loads(out_file.read_text()))


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    if len(args) != 2:
        print("usage: python -m bench.loadgen PLAN.json OUT.json", file=sys.stderr)
        return 2
    plan = json.loads(Path(args[0]).read_text())
    result = trio.run(run_plan, plan)
    Path(args[1]).write_text(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
