"""`python -m bench [--quick]`: the whole benchmark suite, side by side in one run.

Parts: 1 the py-evm execution ceiling; 2-3 transfer throughput and finality of medledger and of
Hardhat and Ganache under one load generator sending the same signed transactions; 4 the
JSON-RPC read path; 5 records (bench.records, when present); 6 the validator scale curve and
eth_getLogs cost against chain span. Writes latest.json, latest.md and PNG plots to the output
directory (bench/results, or bench/results/quick with --quick) and prints the table.
A part whose system is not there yet (the multi-validator devnet, records) is reported as
pending with the reason, never left out silently.
"""

from __future__ import annotations

import importlib
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import traceback
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import click

from bench import workload
from bench.ceiling import run_ceiling
from bench.cprofile_summary import summarize_pstats
from bench.loadgen import SweepPlan, run_sweep
from bench.readpath import ChainShape, run_readpath
from bench.report import machine_info, now_iso, update_readme, write_outputs
from bench.sampler import summarize_folded
from bench.targets import (
    REPO_ROOT,
    GanacheTarget,
    HardhatTarget,
    MedledgerNode,
    MultiNodeTarget,
    Target,
    TargetUnavailable,
    brief_error,
    install_js,
    js_installed,
)

RESULTS = REPO_ROOT / "bench" / "results"
# Consortium target of the issue: sustained >= 0.6 x ceiling, p95 finality <= 2 block periods.
CEILING_SHARE_GOAL = 0.6
FINALITY_PERIODS_GOAL = 2.0


@dataclass(frozen=True)
class Mode:
    name: str
    ceiling_n: int
    ceiling_block: int
    rates: tuple[float, ...]
    step_s: float
    read_blocks: int
    read_stride: int
    read_s: float
    log_budget_s: float
    throughput_targets: tuple[str, ...]


QUICK = Mode("quick", ceiling_n=200, ceiling_block=200, rates=(20.0, 100.0), step_s=3.0,
             read_blocks=300, read_stride=20, read_s=1.0, log_budget_s=0.3,
             throughput_targets=("medledger-1", "medledger-4", "hardhat-automine",
                                 "hardhat-1s", "ganache-automine"))
FULL = Mode("full", ceiling_n=5000, ceiling_block=1000,
            rates=(25.0, 50.0, 100.0, 200.0, 400.0, 800.0, 1600.0), step_s=10.0,
            read_blocks=10_000, read_stride=20, read_s=5.0, log_budget_s=2.0,
            throughput_targets=("medledger-1", "medledger-4", "medledger-7", "medledger-10",
                                "hardhat-automine", "hardhat-1s", "ganache-automine"))
# The read-path chains are built in few large blocks; a high gas limit on every system keeps
# the set-up short and the same everywhere.
READ_GAS_LIMIT = 2**31
KNOWN_TARGETS = ("medledger-1", "medledger-4", "medledger-7", "medledger-10",
                 "hardhat-automine", "hardhat-1s", "ganache-automine", "ganache-1s")
RECORD_SIZES_MIB = (1, 100)
RECORD_SIZES_MIB_QUICK = (1,)
READ_TARGETS = ("medledger-1", "hardhat-automine", "ganache-automine")
PEERS = ("hardhat-automine", "hardhat-1s", "ganache-automine")
NOTES = [
    "medledger stores its chain in LevelDB on disk; Hardhat and Ganache keep theirs in memory.",
    "Hardhat and Ganache automine put every transaction in its own block at once; hardhat-1s "
    "seals every 1 s like medledger's block period, the like-for-like comparison.",
    "Ganache is measured in instamine mode only: with --miner.blockTime 1 (v7.9.2) it accepted "
    "transactions it never mined (about 10-20 % of them at 100 tx/s from 16 senders).",
    "A chain with 1 s blocks and a 30M gas limit cannot finalize more than 1,428 transfers/s "
    "(hardhat-1s reaches that cap). A target still bounded at the top rate is marked >=.",
    "Latency bound for 'sustained': p95 <= 2 block periods (1 s for automine); a step also "
    "needs >= 90 % of the offered rate submitted, no refusals and >= 99 % finalized.",
    "The read path uses a raw keep-alive HTTP client; 'client-bound' marks results where the "
    "client used >= 90 % of a core, i.e. the server may be faster than shown.",
    "Read-path chains use a 2**31 block gas limit on every system.",
    "All systems and the load generator share the same cores: numbers are lower bounds for "
    "each system and are comparable only within this run.",
]


def make_target(name: str, accounts: tuple[bytes, ...], workdir: Path, *,
                profile_to: Path | None = None, gas_limit: int = workload.GAS_LIMIT) -> Target:
    def spec(validators: int = 1) -> workload.ChainSpec:
        return workload.ChainSpec(
            accounts=accounts, gas_limit=gas_limit,
            validator_keys=tuple(workload.derive_keys(workload.VALIDATOR_SEED, validators)))

    if name == "medledger-1":
        return MedledgerNode(spec(), workdir, profile_to=profile_to)
    if name.startswith("medledger-") and name.split("-", 1)[1].isdigit():
        nodes = int(name.split("-", 1)[1])
        return MultiNodeTarget(spec(nodes), workdir, nodes)
    if name == "hardhat-automine":
        return HardhatTarget(spec(), workdir, interval_s=None)
    if name == "hardhat-1s":
        return HardhatTarget(spec(), workdir, interval_s=1.0)
    if name == "ganache-automine":
        return GanacheTarget(spec(), workdir, interval_s=None)
    if name == "ganache-1s":
        return GanacheTarget(spec(), workdir, interval_s=1.0)
    raise click.BadParameter(f"unknown target {name!r}")


def log(message: str) -> None:
    print(f"[bench {time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


def run_throughput(mode: Mode, names: tuple[str, ...], workdir: Path,
                   ceiling_tps: float | None, profile: bool,
                   cprofile: bool = False) -> tuple[dict[str, Any], dict[str, Any]]:
    plan = SweepPlan(rates=mode.rates, duration=mode.step_s)
    accounts = tuple(workload.derive_keys(workload.ACCOUNT_SEED, plan.accounts_needed()))
    started = time.monotonic()
    signed = plan.sign(accounts, workload.CHAIN_ID)
    log(f"signed {sum(map(len, signed))} transfers from {len(accounts)} accounts "
        f"in {time.monotonic() - started:.1f} s")
    out: dict[str, Any] = {"plan": {"rates": list(mode.rates), "duration_s": mode.step_s,
                                    "accounts": len(accounts), "per_account": plan.per_account},
                           "targets": {}}
    profiles: dict[str, Any] = {}
    profile = profile and not cprofile  # --profile: cProfile instead of the sampler
    spy = py_spy() if profile else None
    for name in names:
        profile_to = (workdir / f"{name}-profile.json"
                      if profile and spy is None and name == "medledger-1" else None)
        target = make_target(name, accounts, workdir, profile_to=profile_to)
        if cprofile and isinstance(target, MedledgerNode):
            target.cprofile_dir = workdir / f"{name}-cprofile"
        entry: dict[str, Any] = {"target": target.describe()}
        log(f"throughput: {name}")
        try:
            with target:
                entry["target"] = target.describe()
                period = target.block_period
                recorder = (start_py_spy(spy, target.pids[0], workdir / f"{name}.folded")
                            if spy and profile and name == "medledger-1" else None)
                try:
                    entry["sweep"] = run_sweep(
                        target.rpc_url, plan, signed, workdir / f"{name}-loadgen",
                        latency_bound=FINALITY_PERIODS_GOAL * period if period else 1.0,
                        drain_timeout=10.0 + 3 * (period or 0.0),
                    )
                finally:
                    if recorder is not None:
                        profiles[name] = stop_py_spy(recorder, workdir / f"{name}.folded")
            entry["status"] = "ok"
        except TargetUnavailable as exc:
            entry.update(status="unavailable", reason=str(exc))
        except Exception as exc:  # a failed system must not hide the others' numbers
            entry.update(status="failed", reason=brief_error(exc))
            log(traceback.format_exc())
        if profile_to is not None and profile_to.exists():
            profiles[name] = json.loads(profile_to.read_text())
        cprofile_dir = getattr(target, "cprofile_dir", None)
        if cprofile_dir is not None:  # the nodes dumped their profiles when they stopped
            summary = summarize_pstats(sorted(cprofile_dir.glob("*.prof")))
            if summary is not None:
                profiles[f"{name} cProfile"] = summary
        sweep = entry.get("sweep")
        if sweep and name.startswith("medledger") and ceiling_tps and sweep["sustained_tps"]:
            entry["x_ceiling"] = sweep["sustained_tps"] / ceiling_tps
        if sweep:
            log(f"  {name}: sustained {sweep['sustained_tps']} tx/s, peak {sweep['peak_tps']}")
        out["targets"][name] = entry
    out["ratios"] = throughput_ratios(out["targets"])
    return out, profiles


PY_SPY_RATE = 100


def py_spy() -> str | None:
    """py-spy, when installed and allowed to attach (ptrace); it samples from outside."""
    beside = Path(sys.executable).with_name("py-spy")
    spy = str(beside) if beside.exists() else shutil.which("py-spy")
    if spy is None:
        return None
    try:
        probe = subprocess.run([spy, "dump", "--pid", str(os.getpid())], capture_output=True,
                               timeout=30)
    except (OSError, subprocess.TimeoutExpired):
        return None
    if probe.returncode != 0:
        log("py-spy cannot attach here; profiling with bench.sampler instead")
        return None
    return spy


def start_py_spy(spy: str, pid: int, out: Path) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [spy, "record", "--pid", str(pid), "--rate", str(PY_SPY_RATE), "--format", "raw",
         "--output", str(out), "--nonblocking"],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, stdin=subprocess.DEVNULL)


def stop_py_spy(recorder: subprocess.Popen[bytes], out: Path) -> dict[str, Any] | None:
    """Stop the recording (SIGINT makes py-spy write its file) and summarize it."""
    recorder.send_signal(signal.SIGINT)
    try:
        recorder.wait(60)
    except subprocess.TimeoutExpired:
        recorder.kill()
        recorder.wait()
    if not out.exists():
        log("py-spy wrote no profile (ptrace not permitted?)")
        return None
    return summarize_folded(out.read_text(), 1.0 / PY_SPY_RATE)


def _sustained(entries: dict[str, Any], name: str) -> float | None:
    entry = entries.get(name, {})
    return (entry.get("sweep") or {}).get("sustained_tps") if entry.get("status") == "ok" else None


def throughput_ratios(entries: dict[str, Any]) -> list[dict[str, Any]]:
    rows = []
    for ours in (n for n in entries if n.startswith("medledger")):
        for peer in PEERS:
            a, b = _sustained(entries, ours), _sustained(entries, peer)
            if a and b:
                rows.append({"label": f"{ours} / {peer} (sustained transfers)",
                             "ours": ours, "peer": peer, "ratio": a / b})
    return rows


def evaluate_goals(report: dict[str, Any]) -> list[dict[str, str]]:
    """Each numeric target of the issue: met, gap (with the numbers), or pending (why)."""
    entries = report.get("throughput", {}).get("targets", {})
    ceiling = (report.get("ceiling") or {}).get("ceiling_tps")
    goals = []
    for name, label in (("medledger-4", "4 validators"), ("medledger-1", "1 validator, today")):
        entry = entries.get(name)
        if entry is None:
            continue
        sweep = entry.get("sweep") if entry.get("status") == "ok" else None
        why = f"{entry.get('status')}: {entry.get('reason', '')}"[:120]
        sustained = sweep and sweep.get("sustained_tps")
        if sustained and ceiling:
            ratio = sustained / ceiling
            goals.append({"goal": f"sustained >= {CEILING_SHARE_GOAL} x ceiling ({label})",
                          "measured": f"{sustained:,.0f} / {ceiling:,.0f} = {ratio:.2f}x",
                          "status": "met" if ratio >= CEILING_SHARE_GOAL else "gap"})
            p95 = sweep["sustained_latency_s"]["p95"]
            period = entry["target"].get("block_period_s") or 1.0
            goals.append({
                "goal": f"p95 finality <= {FINALITY_PERIODS_GOAL:g} x block period ({label})",
                "measured": f"{p95:.2f} s at {sweep['sustained_at_rate']:g} tx/s offered",
                "status": "met" if p95 <= FINALITY_PERIODS_GOAL * period else "gap"})
        else:
            goals.append({"goal": f"sustained >= {CEILING_SHARE_GOAL} x ceiling, p95 <= "
                                  f"{FINALITY_PERIODS_GOAL:g} periods ({label})",
                          "measured": "-" if sweep is None else "no bounded step",
                          "status": "pending" if sweep is None else "gap",
                          "why": why})
        for peer in PEERS:
            ours, theirs = sustained, _sustained(entries, peer)
            if ours and theirs:
                goals.append({"goal": f">= 1.0 x {peer} sustained transfers ({label})",
                              "measured": f"{ours:,.0f} / {theirs:,.0f} = {ours / theirs:.2f}x",
                              "status": "met" if ours >= theirs else "gap"})
            elif sweep is None:
                goals.append({"goal": f">= 1.0 x {peer} sustained transfers ({label})",
                              "measured": "-", "status": "pending", "why": why})
    records = report.get("records") or {}
    if records.get("status") == "ok":  # part 5 judges its own targets (bench.records)
        goals += records["result"].get("goals", [])
    return goals


def run_records(mode: Mode, workdir: Path) -> dict[str, Any]:
    """Part 5, from bench.records (the record store's own benchmark).

    It plugs in through `run_records(quick=..., workdir=...) -> dict` when bench.records
    offers it; until then its `put_get(size_mib, directory)` is run for whole-MiB sizes.
    """
    try:
        module = importlib.import_module("bench.records")
    except ModuleNotFoundError:
        return {"status": "pending", "reason": "bench/records.py (record store) not there yet"}
    runner = getattr(module, "run_records", None)
    put_get = getattr(module, "put_get", None)
    try:
        if runner is not None:
            return {"status": "ok",
                    "result": runner(quick=mode.name == "quick", workdir=workdir / "records")}
        if put_get is None:
            return {"status": "pending",
                    "reason": "bench.records offers neither run_records nor put_get"}
        sizes = RECORD_SIZES_MIB_QUICK if mode.name == "quick" else RECORD_SIZES_MIB
        results = []
        for size in sizes:
            directory = workdir / f"records-{size}"
            directory.mkdir(parents=True)
            try:
                results.append(put_get(size, directory))
            finally:
                shutil.rmtree(directory, ignore_errors=True)
        return {"status": "ok", "result": {
            "put_get": results,
            "pending": "1 KB records: bench.records.put_get takes whole MiB sizes",
        }}
    except Exception as exc:
        log(traceback.format_exc())
        return {"status": "failed", "reason": brief_error(exc)}


def scale_rows(report: dict[str, Any]) -> list[dict[str, Any]]:
    entries = report.get("throughput", {}).get("targets", {})
    rows = []
    for n in (1, 4, 7, 10):
        entry = entries.get(f"medledger-{n}")
        if entry is None:
            continue
        sweep = entry.get("sweep") if entry.get("status") == "ok" else None
        latency = (sweep or {}).get("sustained_latency_s") or {}
        rows.append({"validators": n, "status": entry["status"],
                     "sustained_tps": (sweep or {}).get("sustained_tps"),
                     "p95_s": latency.get("p95"), "reason": entry.get("reason")})
    return rows


@click.command()
@click.option("--quick", is_flag=True, help="Small sizes (CI): under 3 minutes.")
@click.option("--out", "out_dir", type=click.Path(file_okay=False, path_type=Path), default=None,
              help="Output directory [bench/results, or bench/results/quick with --quick].")
@click.option("--parts", default="ceiling,throughput,readpath,records,zk", show_default=True,
              help="Comma-separated parts to run.")
@click.option("--only", "only", default=None,
              help="Run just this part (e.g. readpath); same as --parts SECTION.")
@click.option("--targets", "target_list", default=None,
              help="Comma-separated throughput targets (default: all of the mode).")
@click.option("--read-targets", "read_list", default=None,
              help=f"Comma-separated read-path targets [{','.join(READ_TARGETS)}].")
@click.option("--no-npm", is_flag=True, help="Do not run `npm ci --prefix bench/js` when missing.")
@click.option("--no-profile", is_flag=True, help="Do not sample the medledger node's profile.")
@click.option("--profile", "cprofile", is_flag=True,
              help="cProfile every medledger node process of the throughput part "
                   "(MEDLEDGER_CPROFILE) and report where their time goes.")
@click.option("--no-plots", is_flag=True, help="Skip the PNG plots.")
@click.option("--update-readme", is_flag=True,
              help="Copy the table into README.md between the bench markers.")
@click.option("--keep-workdir", is_flag=True, help="Keep chains and logs for inspection.")
@click.option("--merge", is_flag=True,
              help="Keep the other parts of the existing latest.json in --out (same mode) and "
                   "replace only the parts measured now; a note says which parts when.")
def main(quick: bool, out_dir: Path | None, parts: str, only: str | None,
         target_list: str | None, read_list: str | None, no_npm: bool,
         no_profile: bool, cprofile: bool, no_plots: bool, update_readme: bool,
         keep_workdir: bool, merge: bool) -> None:
    """Run the benchmark suite and write the report."""
    mode = QUICK if quick else FULL
    parts = only or parts
    read_names = tuple(t.strip() for t in read_list.split(",")) if read_list else READ_TARGETS
    if set(read_names) - set(READ_TARGETS):
        raise click.BadParameter(f"read-path targets are {', '.join(READ_TARGETS)}")
    selected = {p.strip() for p in parts.split(",") if p.strip()}
    unknown = selected - {"ceiling", "throughput", "readpath", "records", "zk"}
    if unknown:
        raise click.BadParameter(f"unknown parts: {', '.join(sorted(unknown))}")
    names = tuple(t.strip() for t in target_list.split(",")) if target_list else \
        mode.throughput_targets
    for name in names:
        if name not in KNOWN_TARGETS and not (
                name.startswith("medledger-") and name.split("-", 1)[1].isdigit()):
            raise click.BadParameter(f"unknown target {name!r} (known: "
                                     f"{', '.join(KNOWN_TARGETS)}, medledger-N)")
    out_dir = out_dir or (RESULTS / "quick" if quick else RESULTS)
    started = time.monotonic()
    report: dict[str, Any] = {
        "schema": 1, "generated_at": now_iso(), "mode": mode.name,
        "command": " ".join(["python -m bench", *sys.argv[1:]]), "machine": machine_info(),
        "notes": list(NOTES), "profile": {},
    }
    if quick:
        report["notes"].insert(0, "Quick mode: short steps at low rates, a smoke test of the "
                               "harness; its ratios are not capacity ratios (run without --quick).")
    workdir = Path(tempfile.mkdtemp(prefix="medledger-bench-"))
    try:
        if not js_installed() and not no_npm and ({"throughput", "readpath"} & selected):
            log("installing Hardhat and Ganache: npm ci --prefix bench/js")
            try:
                install_js(workdir / "npm.log")
            except TargetUnavailable as exc:
                report["notes"].append(f"peers not installed: {exc}"[:500])
        if "ceiling" in selected:
            log(f"ceiling: {mode.ceiling_n} transfers and {mode.ceiling_n} contract calls")
            report["ceiling"] = run_ceiling(mode.ceiling_n, block_txs=mode.ceiling_block,
                                            profile=not no_profile)
            log(f"  ceiling {report['ceiling']['ceiling_tps']:.0f} tx/s (transfers)")
        if "throughput" in selected:
            report["throughput"], profiles = run_throughput(
                mode, names, workdir, (report.get("ceiling") or {}).get("ceiling_tps"),
                profile=not no_profile, cprofile=cprofile)
            report["profile"].update(profiles)
            report["scale"] = {"validators": scale_rows(report)}
        if "readpath" in selected:
            log(f"read path on a chain of {mode.read_blocks} blocks")
            read_accounts = tuple(workload.derive_keys(workload.ACCOUNT_SEED, 17))
            read_targets = [make_target(name, read_accounts, workdir / "read",
                                        gas_limit=READ_GAS_LIMIT) for name in read_names]
            report["readpath"] = run_readpath(
                _available(read_targets, report), ChainShape(mode.read_blocks, mode.read_stride),
                duration=mode.read_s, log_budget=mode.log_budget_s)
        if "records" in selected:
            report["records"] = run_records(mode, workdir)
        if "zk" in selected:  # part 7: bench/zk.py (gas, proving and py_ecc verify times)
            from bench.zk import run_zk

            report["zk"] = run_zk(mode.name == "quick", workdir / "zk")
        report["duration_s"] = time.monotonic() - started
        report["machine"]["loadavg_at_end"] = list(os.getloadavg())
        if merge:
            report = merge_into_previous(report, out_dir / "latest.json", profiled=cprofile)
        report["goals"] = evaluate_goals(report)
        markdown = write_outputs(report, out_dir, plots=not no_plots)
        print(markdown)
        if update_readme and not update_readme_file(markdown, report, out_dir):
            log("README.md has no bench markers: table not copied")
        log(f"report written to {out_dir / 'latest.json'} in {report['duration_s']:.0f} s")
    finally:
        if keep_workdir:
            log(f"work directory kept: {workdir}")
        else:
            shutil.rmtree(workdir, ignore_errors=True)


REPORT_METADATA = ("schema", "generated_at", "mode", "command", "machine", "notes", "profile",
                   "goals", "duration_s", "plots", "remeasured")


def merge_into_previous(report: dict[str, Any], previous_path: Path, *,
                        profiled: bool = False) -> dict[str, Any]:
    """The previous report with the parts measured now replacing its own (--merge).

    With `profiled` (--profile), the throughput numbers measured now ran under cProfile, which
    slows the nodes: only their profiles are merged, the previous throughput part stays."""
    if not previous_path.exists():
        log(f"--merge: no {previous_path}, writing a report of the measured parts only")
        return report
    previous = json.loads(previous_path.read_text())
    if previous.get("mode") != report["mode"]:
        raise click.UsageError(f"--merge: {previous_path} is a {previous.get('mode')} run, "
                               f"this is a {report['mode']} run")
    parts = [key for key in report if key not in REPORT_METADATA
             and not (profiled and key in ("throughput", "scale"))]
    merged = {**previous, **{key: report[key] for key in parts}}
    if profiled and "throughput" in report:
        parts.append("node profiles (--profile; throughput numbers under cProfile not used)")
    merged["profile"] = {**previous.get("profile", {}), **report.get("profile", {})}
    machine = report["machine"]
    superseded = f"Parts {', '.join(parts)} re-measured "
    merged["notes"] = [*(n for n in previous.get("notes", []) if not n.startswith(superseded)),
                       f"Parts {', '.join(parts)} re-measured {report['generated_at']} with "
                       f"`{report['command']}` on {machine.get('cpu_model', '?')}, "
                       f"{machine.get('affinity_cpus') or machine.get('cpu_count')} cores; the "
                       f"other parts are from the run of {previous.get('generated_at')}."]
    merged["duration_s"] = previous.get("duration_s", 0.0)
    merged["remeasured"] = [*(r for r in previous.get("remeasured", []) if r["parts"] != parts),
                            {"parts": parts, "at": report["generated_at"],
                             "command": report["command"]}]
    return merged


def _available(targets: list[Target], report: dict[str, Any]) -> list[Target]:
    """Targets whose software is installed; the others are noted in the report."""
    usable = []
    for target in targets:
        if target.system in ("hardhat", "ganache") and not js_installed():
            report["notes"].append(f"read path: {target.name} skipped (bench/js not installed)")
            continue
        usable.append(target)
    return usable


def update_readme_file(markdown: str, report: dict[str, Any], out_dir: Path) -> bool:
    try:
        rel = out_dir.resolve().relative_to(REPO_ROOT).as_posix()
    except ValueError:
        rel = out_dir.as_posix()
    return update_readme(REPO_ROOT / "README.md", markdown, report.get("plots", []), rel)


if __name__ == "__main__":
    main()
