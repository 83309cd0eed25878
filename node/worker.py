"""One worker thread owns the chain, so the trio loop never blocks on py-evm.

py-evm and the txpool are not thread-safe and are CPU-bound. Every access goes
through `ChainWorker.run`, which runs the function in one dedicated thread:
calls are serialized, and the event loop keeps serving network I/O while a
block is built or a call executes.

Consensus steps are *urgent*: under load the queue holds many transaction
admissions and RPC reads, and a QBFT step waiting behind them delays the whole
network's block (and can cost a round change). Urgent calls run before every
waiting normal call; within a class calls run in arrival order.
"""

from __future__ import annotations

import contextlib
import contextvars
import itertools
import queue
import threading
from collections.abc import Callable
from typing import Any, TypeVar

import trio

T = TypeVar("T")

URGENT = 0
NORMAL = 1


class _Job:
    __slots__ = ("fn", "args", "context", "token", "done", "value", "error", "state")

    def __init__(self, fn: Callable[..., Any], args: tuple[Any, ...]) -> None:
        self.fn = fn
        self.args = args
        self.context = contextvars.copy_context()
        self.token = trio.lowlevel.current_trio_token()
        self.done = trio.Event()
        self.value: Any = None
        self.error: BaseException | None = None
        self.state = "queued"  # queued -> running -> finished, or queued -> cancelled


class ChainWorker:
    def __init__(self) -> None:
        self._queue: queue.PriorityQueue[tuple[int, int, _Job | None]] = queue.PriorityQueue()
        self._order = itertools.count()
        self._state_lock = threading.Lock()
        self._thread: threading.Thread | None = None
        self._start_lock = threading.Lock()

    @property
    def pending(self) -> int:
        """Calls waiting to run (for metrics and tests)."""
        return self._queue.qsize()

    async def run(self, fn: Callable[..., T], *args: object, urgent: bool = False) -> T:
        """Run `fn(*args)` in the worker thread and return its result (or raise its error).

        Cancelling the caller before the call starts withdraws it; once it runs, the caller
        waits for it to finish, so a caller never sees a step "done" that is still running.
        """
        self._ensure_thread()
        job = _Job(fn, args)
        self._queue.put((URGENT if urgent else NORMAL, next(self._order), job))
        try:
            await job.done.wait()
        except trio.Cancelled:
            with self._state_lock:
                if job.state == "queued":
                    job.state = "cancelled"
                    raise
            with trio.CancelScope(shield=True):
                await job.done.wait()
            raise
        if job.error is not None:
            raise job.error
        return job.value  # type: ignore[no-any-return]

    def close(self) -> None:
        """Stop the thread once the calls already queued have run."""
        with self._start_lock:
            if self._thread is not None:
                self._queue.put((NORMAL + 1, next(self._order), None))
                self._thread.join()
                self._thread = None

    def _ensure_thread(self) -> None:
        if self._thread is not None:
            return
        with self._start_lock:
            if self._thread is None:
                self._thread = threading.Thread(
                    target=self._serve, name="chain-worker", daemon=True
                )
                self._thread.start()

    def _serve(self) -> None:
        while True:
            _, _, job = self._queue.get()
            if job is None:
                return
            with self._state_lock:
                if job.state == "cancelled":
                    continue
                job.state = "running"
            try:
                job.value = job.context.run(job.fn, *job.args)
            except BaseException as exc:  # handed to the caller, as trio.to_thread does
                job.error = exc
            job.state = "finished"
            # If the caller's loop is gone, nobody is waiting.
            with contextlib.suppress(trio.RunFinishedError):
                job.token.run_sync_soon(job.done.set)
