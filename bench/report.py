"""The benchmark's outputs: the JSON report, a readable Markdown table and PNG plots.

The table is printed and written next to the JSON (latest.md) and, on request, copied into
README.md between `<!-- bench:start -->` and `<!-- bench:end -->`. Numbers come only from
the one run in the JSON, so every ratio compares systems measured side by side.
"""

from __future__ import annotations

import json
import os
import platform
import shutil
import subprocess
from collections.abc import Iterable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

README_START = "<!-- bench:start -->"
README_END = "<!-- bench:end -->"


def machine_info() -> dict[str, Any]:
    """What the numbers were measured on: they mean nothing without it."""
    info: dict[str, Any] = {
        "hostname": platform.node(),
        "os": f"{platform.system()} {platform.release()}",
        "python": platform.python_version(),
        "cpu_count": os.cpu_count(),
        "affinity_cpus": len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else None,
    }
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                info["cpu_model"] = line.split(":", 1)[1].strip()
                break
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal"):
                info["memory_gib"] = round(int(line.split()[1]) / 2**20, 1)
                break
        info["loadavg_at_start"] = list(os.getloadavg())
    except OSError:
        pass
    node = shutil.which("node")
    if node:
        try:
            info["nodejs"] = subprocess.run([node, "--version"], capture_output=True, text=True,
                                            timeout=10).stdout.strip()
        except (OSError, subprocess.TimeoutExpired):
            info["nodejs"] = None
    return info


def now_iso() -> str:
    return datetime.now(UTC).replace(microsecond=0).isoformat()


# -- formatting helpers -------------------------------------------------------------------------


def _num(value: Any, digits: int = 0) -> str:
    if value is None:
        return "-"
    if isinstance(value, float | int):
        return f"{value:,.{digits}f}"
    return str(value)


def _ms(seconds: Any) -> str:
    return "-" if seconds is None else f"{seconds * 1000:,.0f}"


def _ratio(value: Any) -> str:
    return "-" if value is None else f"{value:.2f}x"


def _cell(text: str) -> str:
    return " ".join(text.split()).replace("|", "/")


def _table(header: list[str], rows: Iterable[list[str]]) -> list[str]:
    out = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    out += ["| " + " | ".join(row) + " |" for row in rows]
    return out


def render_markdown(report: dict[str, Any]) -> str:
    """The human-readable table of one run."""
    machine = report["machine"]
    lines = [
        f"Benchmark run {report['generated_at']} ({report['mode']} mode, "
        f"{report['duration_s']:.0f} s) on {machine.get('cpu_model', '?')}, "
        f"{machine.get('affinity_cpus') or machine.get('cpu_count')} cores, "
        f"{machine.get('memory_gib', '?')} GiB, {machine.get('os', '?')}, "
        f"Python {machine.get('python')}, Node.js {machine.get('nodejs', '-')}. "
        f"Command: `{report['command']}`."
        + "".join(f" Re-measured {r['at']} (see notes): {', '.join(r['parts'])}."
                  for r in report.get("remeasured", [])),
        "",
    ]
    ceiling = report.get("ceiling")
    if ceiling and "transfer" in ceiling:
        lines += ["**1. Execution ceiling** (py-evm in-process, no node; tx/s)", ""]
        lines += _table(
            ["workload", "txs", "txs/block", "build tx/s", "import tx/s", "ceiling tx/s"],
            [[k, _num(ceiling[k]["txs"]), _num(ceiling[k]["block_txs"]),
              _num(ceiling[k]["build_tps"]), _num(ceiling[k]["import_tps"]),
              _num(ceiling[k]["ceiling_tps"])] for k in ("transfer", "contract_call")],
        )
        lines.append("")
    throughput = report.get("throughput")
    if throughput:
        lines += [
            "**2-3. Transfers via JSON-RPC, one load generator, same signed transactions** "
            f"(steps of {throughput['plan']['duration_s']:g} s at "
            f"{', '.join(_num(r) for r in throughput['plan']['rates'])} tx/s; sustained = best "
            "step that kept pace with p95 within the bound)",
            "",
        ]
        rows = []
        for name, entry in throughput["targets"].items():
            info = entry.get("target", {})
            sweep = entry.get("sweep")
            if entry["status"] != "ok" or sweep is None:
                reason = entry.get("reason", "")
                reason = reason[:90] if entry["status"] == "unavailable" else reason[-90:]
                rows.append([name, _num(info.get("nodes")), info.get("mining", "-"),
                             _cell(f"{entry['status']}: {reason}"),
                             "-", "-", "-", "-", "-", "-"])
                continue
            lat = sweep.get("sustained_latency_s") or {}
            floor = "" if sweep.get("saturated") or sweep.get("sustained_tps") is None else ">= "
            rows.append([
                name, _num(info.get("nodes")), info.get("mining", "-"),
                floor + _num(sweep.get("sustained_tps")), _num(sweep.get("peak_tps")),
                _ms(lat.get("p50")), _ms(lat.get("p95")), _ms(lat.get("p99")),
                _num(sweep.get("sustained_block_interval_s"), 2),
                _ratio(entry.get("x_ceiling")),
            ])
        lines += _table(["target", "nodes", "mining", "sustained tx/s", "peak tx/s",
                         "p50 ms", "p95 ms", "p99 ms", "block s", "x ceiling"], rows)
        lines.append("")
        ratios = throughput.get("ratios", [])
        if ratios:
            lines += _table(["comparison", "ratio"],
                            [[r["label"], _ratio(r["ratio"])] for r in ratios])
            lines.append("")
    readpath = report.get("readpath")
    if readpath and (readpath.get("targets") or readpath.get("failed")):
        names = list(readpath["targets"])
        calls: list[str] = []
        for entry in readpath["targets"].values():
            for call in entry.get("calls", {}):
                if call not in calls:
                    calls.append(call)
        lines += [f"**4. Read path** ({readpath['clients']} concurrent clients, chain of "
                  f"{_num(readpath['blocks'])} blocks with a log every {readpath['stride']}; "
                  "requests/s and p99 ms)", ""]
        rows = []
        for call in calls:
            row = [call]
            for name in names:
                result = readpath["targets"][name].get("calls", {}).get(call)
                if result is not None and "error" in result:
                    row.append(_cell(f"failed: {result['error'][-120:]}"))
                    continue
                row.append("-" if result is None else
                           f"{_num(result['rps'])} /s, p99 {_num(result['p99_ms'], 1)}"
                           + (" (client-bound)" if result.get("client_bound") else ""))
            rows.append(row)
        lines += _table(["call", *names], rows)
        lines.append("")
        if readpath.get("can_access"):
            lines += [f"canAccess: {readpath['can_access']}.", ""]
        if readpath.get("loadavg"):
            lines += [f"Load average when the read path ended: "
                      f"{' / '.join(str(x) for x in readpath['loadavg'])} (1/5/15 min).", ""]
        for name in names:
            built = readpath["targets"][name].get("log_index_build_s")
            if built is not None:
                lines += [f"{name}: log index of the {_num(readpath['blocks'])}-block chain "
                          f"built in {built:.1f} s (node/logindex.py; a node maintains it as "
                          "blocks become final).", ""]
        for name, reason in readpath.get("failed", {}).items():
            lines += [f"Read path on {name} failed: {_cell(reason[-300:])}", ""]
        lines += ["**6b. eth_getLogs cost vs chain span** (one client, median ms; `address`: "
                  "all probe logs in the span, one every "
                  f"{readpath['stride']} blocks; `1 log`: one indexed topic that matches a "
                  "single log, so only the search grows)", ""]
        spans = sorted({row["blocks"] for e in readpath["targets"].values()
                        for row in e.get("log_cost", [])})
        rows = []
        for span in spans:
            row = [_num(span)]
            for name in names:
                match = [r for r in readpath["targets"][name].get("log_cost", [])
                         if r["blocks"] == span]
                row.append(_num(match[0]["median_ms"], 1) if match else "-")
                row.append(_num(match[0].get("selective_ms"), 1) if match else "-")
            rows.append(row)
        lines += _table(["blocks", *[f"{n} {q}" for n in names for q in ("address", "1 log")]],
                        rows)
        lines.append("")
        for name in names:
            versus = readpath["targets"][name].get("index_vs_scan")
            if not versus:
                continue
            lines += [f"{name} eth_getLogs in-process on the same datadir (median ms, no HTTP): "
                      "the block scan it used before the log index, and the index", ""]
            lines += _table(
                ["blocks", "address logs", "scan", "index", "1 log: scan", "index"],
                [[_num(r["blocks"]), _num(r["address_logs"]), _num(r["address_scan_ms"], 1),
                  _num(r["address_index_ms"], 1), _num(r["selective_scan_ms"], 1),
                  _num(r["selective_index_ms"], 1)] for r in versus])
            lines.append("")
    records = report.get("records")
    if records:
        lines += ["**5. Records**", ""]
        if records.get("status") != "ok":
            lines += [f"{records.get('status')}: {_cell(records.get('reason', '')[-500:])}", ""]
        elif isinstance(records["result"].get("put_get"), list):
            lines += _table(
                ["size MB", "put MB/s", "get MB/s", "put RSS growth MiB", "get RSS growth MiB"],
                [[_num(r["size_MB"], 1), _num(r["put_MBps"], 1), _num(r["get_MBps"], 1),
                  _num(r["put_peak_rss_growth_MiB"], 1), _num(r["get_peak_rss_growth_MiB"], 1)]
                 for r in records["result"]["put_get"]])
            pending = records["result"].get("pending")
            lines += ["", f"Not measured yet: {pending}." if pending else "", ""]
        elif isinstance(records["result"].get("sizes"), list):
            lines += _records_tables(records["result"])
        else:
            lines += ["```", json.dumps(records.get("result"), indent=1)[:3000], "```", ""]
    if report.get("zk"):
        from bench.zk import zk_markdown

        lines += zk_markdown(report["zk"])
    scale = report.get("scale")
    if scale:
        lines += ["**6a. Scale: validators on one machine**", ""]
        lines += _table(
            ["validators", "status", "sustained tx/s", "p95 ms"],
            [[str(row["validators"]), row["status"], _num(row.get("sustained_tps")),
              _ms(row.get("p95_s"))] for row in scale.get("validators", [])],
        )
        lines.append("")
    goals = report.get("goals", [])
    if goals:
        lines += ["**Targets from the issue**", ""]
        lines += _table(["target", "measured", "status"],
                        [[g["goal"], g["measured"], g["status"]] for g in goals])
        lines.append("")
    profile = report.get("profile", {})
    node_profile = profile.get("medledger-1")
    if node_profile:
        busy = node_profile.get("busy_threads_mean")
        lines += [f"**Where the time goes** (medledger-1 node during its sweep, "
                  f"{node_profile.get('profiler', 'sampler')} every "
                  f"{node_profile['interval_s'] * 1000:.0f} ms"
                  + ("" if busy is None else f"; busy threads on average: {busy}") + ")", ""]
        lines += _table(["component (own time)", "share of busy samples"],
                        [[r["area"], f"{r['share_of_busy']:.0%}"]
                         for r in node_profile.get("by_area", [])[:8]])
        lines.append("")
        lines += _table(["function (inclusive)", "share of busy samples"],
                        [[f"`{r['function']}`", f"{r['share_of_busy']:.0%}"]
                         for r in node_profile["by_inclusive"][:12]])
        lines.append("")
    for name, entry in profile.items():
        if isinstance(entry, dict) and entry.get("profiler") == "cProfile":
            lines += _cprofile_tables(f"{name} (all node processes, merged; idle waits "
                                      f"{_num(entry['idle_s'], 1)} s of "
                                      f"{_num(entry['total_s'], 1)} s set apart)", entry)
    ceiling_profile = (ceiling or {}).get("profile")
    if ceiling_profile:
        lines += [f"Ceiling profile ({ceiling_profile['what']}), top functions by own time:", ""]
        lines += _table(["function", "own s", "share"],
                        [[f"`{r['function']}`", _num(r["tottime_s"], 3), f"{r['share']:.0%}"]
                         for r in ceiling_profile["by_own_time"][:8]])
        lines.append("")
    notes = report.get("notes", [])
    if notes:
        lines += ["Notes:", ""] + [f"- {n}" for n in notes] + [""]
    return "\n".join(lines)


def _cprofile_tables(title: str, summary: dict[str, Any], rows: int = 10) -> list[str]:
    lines = [f"**Where the time goes: {title}**", ""]
    lines += _table(["function (own time)", "calls", "own s", "share of busy"],
                    [[f"`{r['function']}`", _num(r["calls"]), _num(r["tottime_s"], 3),
                      f"{r['share_of_busy']:.0%}"] for r in summary["by_own_time"][:rows]])
    lines.append("")
    lines += _table(["medledger function (inclusive, may include waits)", "incl. s"],
                    [[f"`{r['function']}`", _num(r["cumtime_s"], 3)]
                     for r in summary["by_cumulative"][:rows]])
    lines.append("")
    return lines


def _mbps(value: float) -> str:
    return _num(value, 1 if value >= 10 else 3)


def _records_tables(result: dict[str, Any]) -> list[str]:
    """Part 5: end-to-end record store/retrieve next to raw AES-GCM and the raw blockstore."""
    lines = []
    if result.get("loadavg"):
        lines += [f"Load average when the records part ended: "
                  f"{' / '.join(str(x) for x in result['loadavg'])} (1/5/15 min).", ""]
    lines += _table(
        ["size", "op", "p50 ms", "p99 ms", "MB/s", "raw MB/s (AES-GCM / blockstore)",
         "x AES-GCM", "x blockstore"],
        [row for r in result["sizes"] for row in (
            [r["label"], "store", _num(r["store"]["p50_ms"], 1), _num(r["store"]["p99_ms"], 1),
             _mbps(r["store"]["MBps"]),
             f"{_mbps(r['raw']['aes_gcm_encrypt_MBps'])} / {_mbps(r['raw']['blockstore_add_MBps'])}"
             " (add)", _ratio(r["ratios"]["store_vs_aes_gcm"]),
             _ratio(r["ratios"]["store_vs_blockstore_add"])],
            [r["label"], "retrieve", _num(r["retrieve"]["p50_ms"], 1),
             _num(r["retrieve"]["p99_ms"], 1), _mbps(r["retrieve"]["MBps"]),
             f"{_mbps(r['raw']['aes_gcm_decrypt_MBps'])} / {_mbps(r['raw']['blockstore_cat_MBps'])}"
             " (cat)", _ratio(r["ratios"]["retrieve_vs_aes_gcm"]),
             _ratio(r["ratios"]["retrieve_vs_blockstore_cat"])])])
    lines += ["", "Where a record operation's time goes (p50 / p99 ms):", ""]
    lines += _table(
        ["size", "encrypt + blockstore", "chain registration", "access check (canAccess)",
         "fetch + verify + decrypt"],
        [[r["label"]] + [f"{_num(r[k]['p50_ms'], 1)} / {_num(r[k]['p99_ms'], 1)}" for k in (
            "store_encrypt_ipfs", "store_chain_registration", "retrieve_access_check",
            "retrieve_fetch_verify_decrypt")] for r in result["sizes"]])
    lines.append("")
    for what, summary in result.get("profiles", {}).items():
        lines += [f"cProfile of one {what} (a target above is missed), top functions by own "
                  "time:", ""]
        lines += _table(["function", "calls", "own s", "share"],
                        [[f"`{r['function']}`", _num(r["calls"]), _num(r["tottime_s"], 3),
                          f"{r['share']:.0%}"] for r in summary["by_own_time"][:8]])
        lines.append("")
    lines += [f"- {note}" for note in result.get("notes", [])] + [""]
    return lines


# -- plots --------------------------------------------------------------------------------------


def write_plots(report: dict[str, Any], out_dir: Path) -> list[str]:
    """PNG plots of the run; returns the file names written."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    written: list[str] = []
    throughput = report.get("throughput", {}).get("targets", {})
    swept = {name: e["sweep"] for name, e in throughput.items()
             if e.get("status") == "ok" and e.get("sweep", {}).get("steps")}
    if swept:
        fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(12, 4.5))
        for name, sweep in swept.items():
            steps = sorted(sweep["steps"], key=lambda step: step["rate"])
            rates = [s["rate"] for s in steps]
            ax1.plot(rates, [s["tps"] for s in steps], marker="o", label=name)
            p95 = [s["latency_s"]["p95"] if s["latency_s"] else None for s in steps]
            ax2.plot(rates, p95, marker="o", label=name)
        offered = sorted({s["rate"] for sweep in swept.values() for s in sweep["steps"]})
        ax1.plot(offered, offered, linestyle=":", color="lightgrey", label="offered")
        ceiling = report.get("ceiling", {}).get("ceiling_tps")
        if ceiling:
            ax1.axhline(ceiling, color="grey", linestyle="--", label="py-evm ceiling")
        for ax, title, ylabel in ((ax1, "Finalized throughput", "tx/s"),
                                  (ax2, "Submit to final, p95", "seconds")):
            ax.set_xscale("log")
            ax.set_xlabel("offered rate (tx/s)")
            ax.set_ylabel(ylabel)
            ax.set_title(title)
            ax.grid(True, alpha=0.3)
        ax1.set_yscale("log")
        ax2.set_yscale("log")
        ax1.legend(fontsize=8)
        fig.tight_layout()
        fig.savefig(out_dir / "throughput.png", dpi=110)
        plt.close(fig)
        written.append("throughput.png")
    readpath = report.get("readpath", {}).get("targets", {})
    if readpath:
        names = list(readpath)
        calls = sorted({c for e in readpath.values() for c in e.get("calls", {})})
        fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(12, 4.5))
        width = 0.8 / max(len(names), 1)
        for i, name in enumerate(names):
            values = [readpath[name]["calls"].get(c, {}).get("rps", 0) for c in calls]
            ax1.bar([x + i * width for x in range(len(calls))], values, width, label=name)
            curve = readpath[name].get("log_cost", [])
            ax2.plot([r["blocks"] for r in curve], [r["median_ms"] for r in curve], marker="o",
                     label=name)
            if all("selective_ms" in r for r in curve):
                ax2.plot([r["blocks"] for r in curve], [r["selective_ms"] for r in curve],
                         marker="x", linestyle="--", label=f"{name} (1 log)")
        ax1.set_xticks([x + width * (len(names) - 1) / 2 for x in range(len(calls))])
        ax1.set_xticklabels(calls, fontsize=7)
        ax1.set_yscale("log")
        ax1.set_ylabel("requests/s")
        ax1.set_title("Read path, 16 clients")
        ax1.legend(fontsize=8)
        ax2.set_xscale("log")
        ax2.set_yscale("log")
        ax2.set_xlabel("blocks in range")
        ax2.set_ylabel("median ms")
        ax2.set_title("eth_getLogs cost vs span")
        ax2.grid(True, alpha=0.3)
        ax2.legend(fontsize=8)
        fig.tight_layout()
        fig.savefig(out_dir / "readpath.png", dpi=110)
        plt.close(fig)
        written.append("readpath.png")
    return written


# -- files --------------------------------------------------------------------------------------


def write_outputs(report: dict[str, Any], out_dir: Path, *, plots: bool = True) -> str:
    """latest.json, latest.md and the plots in `out_dir`; returns the Markdown table."""
    out_dir.mkdir(parents=True, exist_ok=True)
    if plots:
        report["plots"] = write_plots(report, out_dir)
    markdown = render_markdown(report)
    tmp = out_dir / "latest.json.tmp"
    tmp.write_text(json.dumps(report, indent=1, sort_keys=False) + "\n")
    tmp.replace(out_dir / "latest.json")
    (out_dir / "latest.md").write_text(markdown + "\n")
    return markdown


def update_readme(readme: Path, markdown: str, plots: list[str], rel_dir: str) -> bool:
    """Replace the README section between the bench markers; False when there are none."""
    text = readme.read_text()
    start, end = text.find(README_START), text.find(README_END)
    if start < 0 or end < start:
        return False
    images = "".join(f"\n![{p}]({rel_dir}/{p})" for p in plots)
    body = f"{README_START}\n{markdown}\n{images}\n{README_END}"
    readme.write_text(text[:start] + body + text[end + len(README_END):])
    return True
