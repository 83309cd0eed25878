"""A small sampling profiler for the node under load: `python -m bench.sampler OUT -- ARGS...`.

It runs `medledger ARGS...` in this process with a thread that samples every thread's Python
stack every `interval` seconds (sys._current_frames), and on exit writes where the samples
fell: by function on top of the stack (own time) and by function anywhere on it (inclusive).
Unlike cProfile it sees the chain worker thread as well as the event loop, and its cost is
one stack walk per thread per sample (about 1 % of a core at the default 10 ms), so the node
can be profiled during the very sweep that is being measured. Samples where a thread waits
(epoll, a lock, a condition) are counted as idle, not as work. Time in C code is charged to
the Python function that called it. Being in-process, it takes the GIL to sample, so its
view leans toward the points where threads release the GIL; py-spy gives exact attribution
when it can be installed and may attach to the process.
"""

from __future__ import annotations

import atexit
import json
import sys
import threading
import time
from collections import Counter
from pathlib import Path
from types import FrameType
from typing import Any

# Frames that mean "this thread is waiting", by (file suffix, function name).
_IDLE = {
    ("trio/_core/_io_epoll.py", "get_events"),
    ("threading.py", "wait"),
    ("threading.py", "_wait_for_tstate_lock"),
    ("trio/_core/_thread_cache.py", "_work"),
    ("queue.py", "get"),
    ("selectors.py", "select"),
}


def _short(filename: str) -> str:
    for marker in ("site-packages/", "/work/main/", "lib/python3.11/"):
        if marker in filename:
            return filename.split(marker, 1)[1]
    return filename


def _label(frame: FrameType) -> str:
    code = frame.f_code
    return f"{_short(code.co_filename)}:{code.co_firstlineno}({code.co_name})"


# Frames on every stack of a thread (start-up, thread pools): left out of the inclusive view.
_PLUMBING = ("threading.py", "trio/_core/", "trio/_threads.py", "outcome/", "<frozen",
             "bench/sampler.py", "node/cli", "click/", "trio/_signals.py", "medledger:")


def _area(label: str) -> str:
    """The component a frame belongs to: a package, or a module of this repository."""
    path = label.split(":", 1)[0]
    parts = path.split("/")
    if parts[0] in ("node", "consensus", "network", "genesis", "contracts", "bench"):
        return "/".join(parts[:2]).removesuffix(".py")
    if len(parts) == 1:
        return "stdlib " + parts[0].removesuffix(".py")
    return parts[0]


def _is_idle(frame: FrameType) -> bool:
    name, filename = frame.f_code.co_name, frame.f_code.co_filename
    return any(filename.endswith(suffix) and name == fn for suffix, fn in _IDLE)


class Sampler:
    def __init__(self, interval: float = 0.01) -> None:
        self.interval = interval
        self.own: Counter[str] = Counter()
        self.areas: Counter[str] = Counter()
        self.inclusive: Counter[str] = Counter()
        self.busy = 0
        self.idle = 0
        self.ticks = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="bench-sampler", daemon=True)
        self.started = time.monotonic()

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(1.0)

    def _run(self) -> None:
        me = threading.get_ident()
        while not self._stop.wait(self.interval):
            self.ticks += 1
            for ident, frame in sys._current_frames().items():
                if ident == me:
                    continue
                if _is_idle(frame):
                    self.idle += 1
                    continue
                self.busy += 1
                leaf = _label(frame)
                self.own[leaf] += 1
                self.areas[_area(leaf)] += 1
                seen: set[str] = set()
                current: FrameType | None = frame
                while current is not None:
                    label = _label(current)
                    if label not in seen:
                        seen.add(label)
                        self.inclusive[label] += 1
                    current = current.f_back

    def summary(self, limit: int = 20) -> dict[str, Any]:
        busy = max(self.busy, 1)

        def rows(counter: Counter[str], key: str = "function") -> list[dict[str, Any]]:
            return [{key: label, "samples": n, "share_of_busy": round(n / busy, 3)}
                    for label, n in counter.most_common(limit)]

        inclusive = Counter({label: n for label, n in self.inclusive.items()
                             if not label.startswith(_PLUMBING)})

        return {
            "profiler": "bench.sampler",
            "interval_s": self.interval,
            "wall_s": round(time.monotonic() - self.started, 2),
            "samples": self.ticks,
            "busy_thread_samples": self.busy,
            "idle_thread_samples": self.idle,
            # Busy samples per tick: 1.0 means one thread was always running Python code.
            "busy_threads_mean": round(self.busy / max(self.ticks, 1), 3),
            "by_area": rows(self.areas, "area"),
            "by_own_time": rows(self.own),
            "by_inclusive": rows(inclusive),
        }


def summarize_folded(text: str, interval: float, limit: int = 20) -> dict[str, Any]:
    """The same summary from py-spy's raw (folded) output: `frame;frame;... count` lines,
    each frame `function (file:line)`, root first. py-spy leaves idle threads out."""
    own: Counter[str] = Counter()
    areas: Counter[str] = Counter()
    inclusive: Counter[str] = Counter()
    busy = idle = 0
    for line in text.splitlines():
        stack, _, count_text = line.rpartition(" ")
        if not stack or not count_text.isdigit():
            continue
        count = int(count_text)
        labels = []
        for frame in stack.split(";"):
            name, _, where = frame.rpartition(" (")
            path, _, lineno = where.rstrip(")").rpartition(":")
            labels.append(f"{_short(path)}:{lineno}({name})" if path else frame)
        leaf_path, _, leaf_rest = labels[-1].partition(":")
        leaf_name = leaf_rest.partition("(")[2].rstrip(")").rsplit(".", 1)[-1]
        if any(leaf_path.endswith(suffix) and leaf_name == fn for suffix, fn in _IDLE):
            idle += count  # py-spy's own idle test misses epoll and lock waits
            continue
        busy += count
        own[labels[-1]] += count
        areas[_area(labels[-1])] += count
        for label in set(labels):
            if not label.startswith(_PLUMBING):
                inclusive[label] += count
    total = max(busy, 1)

    def rows(counter: Counter[str], key: str = "function") -> list[dict[str, Any]]:
        return [{key: label, "samples": n, "share_of_busy": round(n / total, 3)}
                for label, n in counter.most_common(limit)]

    return {"profiler": "py-spy", "interval_s": interval, "busy_thread_samples": busy,
            "idle_thread_samples": idle, "samples": busy + idle, "busy_threads_mean": None,
            "by_area": rows(areas, "area"), "by_own_time": rows(own),
            "by_inclusive": rows(inclusive)}


def main() -> None:
    if len(sys.argv) < 3 or sys.argv[2] != "--":
        print("usage: python -m bench.sampler OUT.json -- MEDLEDGER_ARGS...", file=sys.stderr)
        sys.exit(2)
    out = Path(sys.argv[1])
    sampler = Sampler()

    def write() -> None:
        sampler.stop()
        out.write_text(json.dumps(sampler.summary()))

    sys.argv = ["medledger", *sys.argv[3:]]
    # Import first: start-up imports are seconds of CPU that say nothing about the node's work.
    from node.cli import main as medledger_main

    atexit.register(write)
    sampler.start()
    medledger_main()


if __name__ == "__main__":
    main()
