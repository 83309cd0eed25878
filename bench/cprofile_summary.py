"""Summaries of the cProfile dumps node processes write under MEDLEDGER_CPROFILE (--profile).

A node's threads spend most of their wall time waiting (the trio loop in epoll, the worker
threads on their locks); cProfile counts those waits as the own time of the wait call. The
summary sets them apart, so the shares say where the busy time goes; its inclusive list keeps
to medledger's own functions (a library's inclusive time is mostly its callers' waits).
"""

from __future__ import annotations

import pstats
from pathlib import Path
from typing import Any

# Own time of these is waiting, not work.
REPO_ROOT = Path(__file__).resolve().parents[1]
IDLE_FUNCTIONS = (
    "<method 'acquire' of '_thread.lock' objects>",
    "<method 'poll' of 'select.epoll' objects>",
    "<method 'control' of 'select.kqueue' objects>",
    "<built-in method time.sleep>",
    "<method 'get' of '_queue.SimpleQueue' objects>",
)


def _short(filename: str) -> str:
    for marker in ("site-packages/", "/work/main/", "lib/python3.11/"):
        if marker in filename:
            return filename.split(marker, 1)[1]
    return filename


def summarize_pstats(paths: list[Path], *, limit: int = 12) -> dict[str, Any] | None:
    """Merged top functions of the dumps at `paths` (None when there are none)."""
    existing = [str(p) for p in paths if p.exists() and p.stat().st_size > 0]
    if not existing:
        return None
    stats = pstats.Stats(*existing)
    entries = stats.stats  # type: ignore[attr-defined]
    idle = sum(values[2] for (_, _, name), values in entries.items() if name in IDLE_FUNCTIONS)
    total = sum(values[2] for values in entries.values())
    busy = max(total - idle, 1e-9)

    def top(index: int, project_only: bool = False) -> list[dict[str, Any]]:
        rows = []
        ranked = sorted(((key, values) for key, values in entries.items()
                         if key[2] not in IDLE_FUNCTIONS
                         and (not project_only or _in_project(key[0], key[2]))),
                        key=lambda item: item[1][index], reverse=True)
        for (filename, line, name), values in ranked[:limit]:
            rows.append({"function": f"{_short(filename)}:{line}({name})", "calls": values[0],
                         "tottime_s": round(values[2], 3), "cumtime_s": round(values[3], 3),
                         "share_of_busy": round(values[index] / busy, 3)})
        return rows

    return {"profiler": "cProfile", "files": len(existing), "total_s": round(total, 2),
            "idle_s": round(idle, 2), "busy_s": round(busy, 2),
            "by_own_time": top(2), "by_cumulative": top(3, project_only=True)}


# Loops whose inclusive time is mostly the waiting inside them.
LOOP_FUNCTIONS = ("_serve", "run", "run_until_signal", "_run", "main", "_tx_gossip_loop")


def _in_project(filename: str, name: str) -> bool:
    """medledger's own code (not a library), minus its serving loops."""
    project = filename.startswith(str(REPO_ROOT)) and "/.venv/" not in filename
    return project and name not in LOOP_FUNCTIONS
