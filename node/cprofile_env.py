"""Opt-in cProfile of a whole node process: `MEDLEDGER_CPROFILE=PATH medledger node run ...`.

The benchmark sets the variable on the node processes it starts (a devnet's validators too,
through the inherited environment) to see where a node's time goes. cProfile follows one
thread, and a node's work is spread over the trio loop and its worker threads (py-evm runs in
the chain worker), so every thread started while profiling gets its own profiler; on exit all of
them are merged into one pstats file at PATH (`{pid}` in PATH becomes the process id, so nodes
sharing an environment write separate files).
"""

from __future__ import annotations

import cProfile
import os
import pstats
import sys
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

PROFILE_ENV = "MEDLEDGER_CPROFILE"

T = TypeVar("T")


def run_profiled(fn: Callable[..., T], *args: Any) -> T:
    """`fn(*args)`, profiled into $MEDLEDGER_CPROFILE when it is set (else just called)."""
    target = os.environ.get(PROFILE_ENV)
    if not target:
        return fn(*args)
    path = Path(target.replace("{pid}", str(os.getpid())))
    profilers: list[cProfile.Profile] = []
    lock = threading.Lock()

    def start_in_thread(frame: Any, event: str, arg: Any) -> None:
        # threading installs this in each new thread; swap it for a C-level profiler.
        sys.setprofile(None)
        profiler = cProfile.Profile()
        with lock:
            profilers.append(profiler)
        profiler.enable()

    main = cProfile.Profile()
    profilers.append(main)
    threading.setprofile(start_in_thread)
    main.enable()
    try:
        return fn(*args)
    finally:
        main.disable()
        threading.setprofile(None)  # type: ignore[arg-type]
        _dump(profilers, path)


def _dump(profilers: list[cProfile.Profile], path: Path) -> None:
    stats: pstats.Stats | None = None
    for profiler in profilers:
        profiler.create_stats()
        if not getattr(profiler, "stats", None):
            continue
        if stats is None:
            stats = pstats.Stats(profiler)
        else:
            stats.add(profiler)
    if stats is None:
        return
    path.parent.mkdir(parents=True, exist_ok=True)
    stats.dump_stats(str(path))
