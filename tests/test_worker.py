"""ChainWorker: one thread, results and errors handed back, urgent calls first, withdrawal."""

from __future__ import annotations

import threading
from collections.abc import Callable

import pytest
import trio

from node.worker import ChainWorker


def test_results_and_errors_come_back_from_the_worker_thread() -> None:
    worker = ChainWorker()

    async def main() -> None:
        assert await worker.run(lambda a, b: a + b, 2, 3) == 5
        assert await worker.run(threading.current_thread) is not threading.current_thread()
        with pytest.raises(KeyError, match="missing"):
            await worker.run({}.__getitem__, "missing")

    trio.run(main)
    worker.close()


def _blocker() -> tuple[threading.Event, threading.Event, Callable[[], None]]:
    """A call that holds the worker thread until released (started is set once it runs)."""
    started, release = threading.Event(), threading.Event()

    def block() -> None:
        started.set()
        release.wait(30)

    return started, release, block


def test_urgent_calls_run_before_waiting_normal_calls() -> None:
    worker = ChainWorker()
    started, release, block = _blocker()
    order: list[str] = []

    async def main() -> None:
        async with trio.open_nursery() as nursery:
            try:
                nursery.start_soon(worker.run, block)
                while not started.is_set():
                    await trio.sleep(0.001)
                for name in ("normal-1", "normal-2"):
                    nursery.start_soon(worker.run, order.append, name)
                    await trio.sleep(0.01)
                nursery.start_soon(lambda: worker.run(order.append, "urgent", urgent=True))
                await trio.sleep(0.01)
                assert worker.pending == 3
            finally:
                release.set()

    trio.run(main)
    worker.close()
    assert order == ["urgent", "normal-1", "normal-2"]


def test_a_cancelled_caller_withdraws_its_queued_call() -> None:
    worker = ChainWorker()
    started, release, block = _blocker()
    ran: list[str] = []

    async def main() -> None:
        async with trio.open_nursery() as nursery:
            try:
                nursery.start_soon(worker.run, block)
                while not started.is_set():
                    await trio.sleep(0.001)
                with trio.move_on_after(0.05) as scope:
                    await worker.run(ran.append, "withdrawn")
                assert scope.cancelled_caught
            finally:
                release.set()
        assert await worker.run(ran.append, "later") is None

    trio.run(main)
    worker.close()
    assert ran == ["later"]


def test_a_cancelled_caller_still_waits_for_a_running_call() -> None:
    worker = ChainWorker()
    started = threading.Event()
    finished: list[bool] = []

    def slow() -> None:
        started.set()
        threading.Event().wait(0.2)
        finished.append(True)

    async def main() -> None:
        with trio.move_on_after(0.05):
            await worker.run(slow)
        assert started.is_set()
        assert finished == [True]  # the caller did not return while the call still ran

    trio.run(main)
    worker.close()
