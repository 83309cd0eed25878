"""The fault report of a chaos campaign: what was injected, and what must stay at zero."""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path

# Rows of the printed table: (field, label); the last four must be 0.
ROWS = (
    ("crash_restart_cycles", "crash/restart cycles"),
    ("partitions", "partitions"),
    ("byzantine_scenarios", "Byzantine scenarios"),
    ("fuzz_cases", "fuzz cases"),
    ("forks_seen", "forks seen (must be 0)"),
    ("finalized_blocks_lost", "finalized blocks lost (must be 0)"),
    ("acknowledged_records_lost", "acknowledged records lost (must be 0)"),
    ("unhandled_exceptions", "unhandled exceptions (must be 0)"),
)
MUST_BE_ZERO = ROWS[4:]


@dataclass
class FaultReport:
    seed: int
    duration_s: float = 0.0
    crash_restart_cycles: int = 0
    partitions: int = 0
    byzantine_scenarios: int = 0
    fuzz_cases: int = 0
    forks_seen: int = 0
    finalized_blocks_lost: int = 0
    acknowledged_records_lost: int = 0
    unhandled_exceptions: int = 0
    # Context: how much was checked.
    blocks_finalized: int = 0
    txs_acknowledged: int = 0
    records_acknowledged: int = 0
    misbehaviour_logged: int = 0
    failures: list[str] = field(default_factory=list)

    def ok(self) -> bool:
        return not self.failures and all(getattr(self, name) == 0 for name, _ in MUST_BE_ZERO)

    def table(self) -> str:
        rows = [(label, str(getattr(self, name))) for name, label in ROWS]
        rows += [
            ("finalized blocks checked", str(self.blocks_finalized)),
            ("acknowledged txs / records checked",
             f"{self.txs_acknowledged} / {self.records_acknowledged}"),
            ("misbehaviour log lines (Byzantine peer named)", str(self.misbehaviour_logged)),
            ("seed / duration", f"{self.seed} / {self.duration_s:.0f} s"),
            ("result", "PASS" if self.ok() else "FAIL"),
        ]
        width = max(len(label) for label, _ in rows)
        value_width = max(len(value) for _, value in rows)
        line = "+-" + "-" * width + "-+-" + "-" * value_width + "-+"
        out = [line, f"| {'medledger fault report'.ljust(width + value_width + 3)} |", line]
        out += [f"| {label.ljust(width)} | {value.rjust(value_width)} |" for label, value in rows]
        out.append(line)
        out += [f"  failure: {failure}" for failure in self.failures]
        return "\n".join(out)

    def to_json(self) -> str:
        return json.dumps({**asdict(self), "ok": self.ok()}, indent=2)

    def write(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(".tmp")
        tmp.write_text(self.to_json() + "\n")
        tmp.replace(path)


def read_fuzz_cases(path: Path | None) -> int:
    """Fuzz cases from the fuzz suite's JSON summary ({"fuzz_cases": N} or {"cases": N}),
    0 when there is none."""
    if path is None or not path.is_file():
        return 0
    try:
        summary = json.loads(path.read_text())
    except (OSError, ValueError):
        return 0
    if not isinstance(summary, dict):
        return 0
    for key in ("fuzz_cases", "cases", "total_cases"):
        value = summary.get(key)
        if isinstance(value, int) and not isinstance(value, bool) and value >= 0:
            return value
    return 0
