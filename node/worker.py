"""One worker thread owns the chain, so the trio loop never blocks on py-evm.

py-evm and the txpool are not thread-safe and are CPU-bound. Every access goes
through `ChainWorker.run`, which runs the function in a trio worker thread with
a capacity of one: calls are serialized, and the event loop keeps serving
network I/O while a block is built or a call executes.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TypeVar

import trio

T = TypeVar("T")


class ChainWorker:
    def __init__(self) -> None:
        self._limiter = trio.CapacityLimiter(1)

    async def run(self, fn: Callable[..., T], *args: object) -> T:
        return await trio.to_thread.run_sync(fn, *args, limiter=self._limiter)
