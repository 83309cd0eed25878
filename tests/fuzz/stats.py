"""Counting fuzz cases for the fault report.

Every property calls `case()` once per generated example; the fuzz conftest counts failed
fuzz tests and writes `{"fuzz_cases": N, "failures": M}` to
$MEDLEDGER_FAULT_REPORT_DIR/fuzz.json (else to the pytest base temp directory) at the end
of the session, where `medledger chaos`'s fault report reads it.
"""

from __future__ import annotations

import json
import os
import threading
from pathlib import Path

REPORT_DIR_ENV = "MEDLEDGER_FAULT_REPORT_DIR"
REPORT_FILE = "fuzz.json"

_lock = threading.Lock()
_counts = {"fuzz_cases": 0, "failures": 0}


def case() -> None:
    """One fuzz example ran (call at the top of a property)."""
    with _lock:
        _counts["fuzz_cases"] += 1


def failure() -> None:
    with _lock:
        _counts["failures"] += 1


def summary() -> dict[str, int]:
    with _lock:
        return dict(_counts)


def write_summary(default_dir: Path) -> Path:
    """Write the summary JSON; returns its path."""
    directory = Path(os.environ.get(REPORT_DIR_ENV) or default_dir)
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / REPORT_FILE
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(summary()))
    tmp.replace(path)
    return path
