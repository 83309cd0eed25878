"""Part 1, the execution ceiling: py-evm building and importing blocks in-process, no node.

One `Chain` builds, seals and commits blocks of pre-signed transactions (what a proposer does);
a second `Chain` on its own LevelDB imports the sealed blocks (what every other validator
does). Nothing else runs: no RPC, no txpool, no consensus messages. A node can never beat these
numbers, so the consortium's throughput is reported as a fraction of them.
"""

from __future__ import annotations

import cProfile
import io
import pstats
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from eth.abc import BlockAPI
from eth.vm.forks.prague.transactions import PragueTransactionBuilder

from bench import workload
from consensus.seals import seal_hash, sign_seal
from node.chain import Chain

PER_ACCOUNT = 16  # transactions per sender in the ceiling's workload


@dataclass(frozen=True)
class PhaseResult:
    """Build and import speed of one kind of transaction."""

    kind: str
    txs: int
    blocks: int
    block_txs: int
    build_s: float
    import_s: float
    build_tps: float
    import_tps: float

    @property
    def ceiling_tps(self) -> float:
        # A validator either proposes (builds) or follows (imports): the slower role bounds it.
        return min(self.build_tps, self.import_tps)


class _Pair:
    """A proposer chain and a follower chain on the same genesis, fed block by block."""

    def __init__(self, root: Path, spec: workload.ChainSpec) -> None:
        genesis = spec.genesis()
        self.key = spec.validator_keys[0]
        self.proposer = spec.validators[0]
        self.builder = Chain(root / "build", genesis)
        try:
            self.importer = Chain(root / "import", genesis)
        except Exception:
            self.builder.close()
            raise

    def close(self) -> None:
        self.builder.close()
        self.importer.close()

    def build(self, raw: Sequence[bytes]) -> BlockAPI:
        txs = [PragueTransactionBuilder.decode(r) for r in raw]
        built = self.builder.build_block(
            txs, timestamp=self.builder.head.timestamp + 1, proposer=self.proposer
        )
        if built.rejected:
            tx, reason = built.rejected[0]
            self.builder.discard_built()
            raise RuntimeError(
                f"ceiling workload is broken: {len(built.rejected)} txs rejected, "
                f"first 0x{tx.hash.hex()}: {reason}"
            )
        seal = sign_seal(seal_hash(built.block.header), self.key)
        return self.builder.commit_sealed(built, [seal])

    def run_phase(self, kind: str, raw: Sequence[bytes], block_txs: int) -> PhaseResult:
        chunks = [raw[i:i + block_txs] for i in range(0, len(raw), block_txs)]
        blocks: list[BlockAPI] = []
        build_s = 0.0
        for chunk in chunks:
            start = time.perf_counter()
            blocks.append(self.build(chunk))
            build_s += time.perf_counter() - start
        import_s = 0.0
        for block in blocks:
            start = time.perf_counter()
            self.importer.import_block(block)
            import_s += time.perf_counter() - start
        return PhaseResult(
            kind=kind, txs=len(raw), blocks=len(blocks), block_txs=block_txs,
            build_s=build_s, import_s=import_s,
            build_tps=len(raw) / build_s, import_tps=len(raw) / import_s,
        )

    def untimed(self, raw: Sequence[bytes]) -> None:
        self.importer.import_block(self.build(raw))


def profile_summary(fn: Callable[[], object], limit: int = 15) -> dict[str, Any]:
    """cProfile `fn` once: the functions where the time goes, by own time and by cumulative."""
    profiler = cProfile.Profile()
    profiler.enable()
    try:
        fn()
    finally:
        profiler.disable()
    stats = pstats.Stats(profiler, stream=io.StringIO())
    total = max(stats.total_tt, 1e-9)  # type: ignore[attr-defined]

    def top(key: str) -> list[dict[str, Any]]:
        rows = []
        entries = stats.stats.items()  # type: ignore[attr-defined]
        index = 2 if key == "tottime" else 3
        for (filename, line, name), values in sorted(
            entries, key=lambda item: item[1][index], reverse=True
        )[:limit]:
            calls, _prim, tottime, cumtime = values[0], values[1], values[2], values[3]
            rows.append({
                "function": f"{_short(filename)}:{line}({name})",
                "calls": calls,
                "tottime_s": round(tottime, 4),
                "cumtime_s": round(cumtime, 4),
                "share": round((tottime if key == "tottime" else cumtime) / total, 3),
            })
        return rows

    return {"total_s": round(total, 4), "by_own_time": top("tottime"),
            "by_cumulative": top("cumtime")}


def _short(filename: str) -> str:
    for marker in ("site-packages/", "/work/main/", "lib/python3.11/"):
        if marker in filename:
            return filename.split(marker, 1)[1]
    return filename


def run_ceiling(
    n: int, *, block_txs: int = 1000, profile: bool = True, workdir: Path | None = None,
) -> dict[str, Any]:
    """Build and import `n` transfers and `n` EventProbe.set calls; optionally profile a block.

    Transfers fill blocks of `block_txs`; calls are capped by the block gas limit at their
    gas allowance. Signing happens before the clock starts; decoding is inside it, as the
    node's txpool-to-block path decodes too.
    """
    if n < 1:
        raise ValueError("the ceiling needs at least one transaction")
    call_block = min(block_txs, workload.GAS_LIMIT // workload.CALL_GAS)
    transfer_block = min(block_txs, workload.GAS_LIMIT // workload.TRANSFER_GAS)
    senders = workload.accounts_needed(n, PER_ACCOUNT)
    profile_txs = transfer_block if profile else 0
    spec = workload.ChainSpec.with_accounts(2 * senders + 1 + workload.accounts_needed(
        max(profile_txs, 1), PER_ACCOUNT))
    transfer_keys = spec.accounts[:senders]
    call_keys = spec.accounts[senders:2 * senders]
    deployer = spec.accounts[2 * senders]
    profile_keys = spec.accounts[2 * senders + 1:]

    sign_start = time.perf_counter()
    deploy = workload.sign(deployer, 0, to=None, data=workload.probe_deploy_code(),
                           gas=workload.DEPLOY_GAS)
    probe = workload.contract_address(workload.address_of(deployer), 0)
    transfers = workload.transfers(transfer_keys, n)
    calls = workload.probe_calls(call_keys, n, probe)
    extra = workload.transfers(profile_keys, profile_txs) if profile else []
    sign_s = time.perf_counter() - sign_start

    with tempfile.TemporaryDirectory(prefix="medledger-ceiling-", dir=workdir) as tmp:
        pair = _Pair(Path(tmp), spec)
        try:
            pair.untimed([deploy])
            transfer = pair.run_phase("transfer", transfers, transfer_block)
            call = pair.run_phase("contract_call", calls, call_block)
            if pair.importer.head.state_root != pair.builder.head.state_root:
                raise RuntimeError("ceiling: importer and builder disagree on the state root")
            profiled = profile_summary(lambda: pair.build(extra)) if profile else None
        finally:
            pair.close()
    result: dict[str, Any] = {
        "n": n,
        "sign_s": round(sign_s, 3),
        "transfer": {**asdict(transfer), "ceiling_tps": transfer.ceiling_tps},
        "contract_call": {**asdict(call), "ceiling_tps": call.ceiling_tps},
        "ceiling_tps": transfer.ceiling_tps,
    }
    if profiled is not None:
        result["profile"] = {"what": f"cProfile of building one block of {profile_txs} transfers",
                             **profiled}
    return result
