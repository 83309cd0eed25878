"""`medledger chaos`: a randomized fault campaign on a local 4-validator devnet, with a report."""

from __future__ import annotations

import os
import random
import sys
import tempfile
import time
from pathlib import Path

import click

from node.chaos import SCENARIOS

# Where the fuzz suite writes its case count (tests/fuzz/stats.py): fuzz.json in
# $MEDLEDGER_FAULT_REPORT_DIR (default: the current directory).
DEFAULT_FUZZ_SUMMARY = Path(os.environ.get("MEDLEDGER_FAULT_REPORT_DIR", ".")) / "fuzz.json"


@click.command("chaos")
@click.option("--seed", type=int, default=None, help="Replay a campaign (default: random).")
@click.option("--iterations", type=click.IntRange(min=1), default=1, show_default=True,
              help="Fault cycles (crashes, isolation, 2-2 split, Byzantine validator).")
@click.option("--duration", type=click.FloatRange(min=1), default=None,
              help="Seconds to keep cycling instead of a fixed number of iterations.")
@click.option("--crashes", type=click.IntRange(min=0), default=2, show_default=True,
              help="SIGKILL/restart cycles per iteration.")
@click.option("--partition-seconds", type=click.FloatRange(min=1), default=6.0,
              show_default=True)
@click.option("--crashes-last", is_flag=True,
              help="Crash cycles after the partitions and the Byzantine validator.")
@click.option("--scenarios", default=",".join(SCENARIOS), show_default=True,
              help="Byzantine scenarios, comma-separated; empty for none.")
@click.option("--workdir", type=click.Path(file_okay=False, path_type=Path), default=None,
              help="Where the devnet lives (default: a temporary directory, kept on failure).")
@click.option("--fuzz-summary", type=click.Path(dir_okay=False, path_type=Path),
              default=DEFAULT_FUZZ_SUMMARY, show_default=True,
              help="JSON summary of the fuzz suite; its case count goes into the report.")
@click.option("--json-out", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="Also write the report as JSON here (default: WORKDIR/fault-report.json).")
def chaos_command(seed: int | None, iterations: int, duration: float | None, crashes: int,
                  partition_seconds: float, crashes_last: bool, scenarios: str,
                  workdir: Path | None,
                  fuzz_summary: Path, json_out: Path | None) -> None:
    """Crash, partition and attack a local devnet, then check nothing was lost or forked."""
    from node.chaos.campaign import Campaign, CampaignConfig

    chosen = tuple(s.strip() for s in scenarios.split(",") if s.strip())
    unknown = set(chosen) - set(SCENARIOS)
    if unknown:
        raise click.BadParameter(f"unknown: {', '.join(sorted(unknown))}", param_hint="--scenarios")
    seed = random.randrange(2**32) if seed is None else seed
    root = workdir or Path(tempfile.mkdtemp(prefix="medledger-chaos-"))
    config = CampaignConfig(
        root=root, seed=seed, iterations=iterations, duration=duration,
        crashes_per_iteration=crashes, partition_seconds=partition_seconds,
        crashes_last=crashes_last,
        byzantine_scenarios=chosen, fuzz_summary=fuzz_summary,
    )
    def progress(message: str) -> None:
        click.echo(f"[chaos {time.strftime('%H:%M:%S')}] {message}", err=True)

    report = Campaign(config, progress=progress).run()
    out = json_out or root / "fault-report.json"
    report.write(out)
    click.echo(report.table())
    click.echo(f"report: {out}  (replay: medledger chaos --seed {seed} ...)")
    if not report.ok():
        sys.exit(1)
