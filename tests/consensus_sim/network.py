"""Simulated clock and network: delays, loss and partitions all come from one seeded RNG."""

from __future__ import annotations

import heapq
import random
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any


class EventLoop:
    def __init__(self) -> None:
        self.now = 0.0
        self._queue: list[tuple[float, int, Callable[[], None]]] = []
        self._seq = 0

    def schedule(self, delay: float, callback: Callable[[], None]) -> None:
        self._seq += 1
        heapq.heappush(self._queue, (self.now + delay, self._seq, callback))

    def run_until(self, deadline: float, stop: Callable[[], bool]) -> None:
        while self._queue and self._queue[0][0] <= deadline and not stop():
            when, _, callback = heapq.heappop(self._queue)
            self.now = when
            callback()
        if not stop():
            self.now = max(self.now, deadline)


@dataclass(frozen=True)
class Partition:
    start: float
    end: float
    groups: tuple[frozenset[int], ...]

    def separates(self, a: int, b: int, now: float) -> bool:
        if not self.start <= now < self.end:
            return False
        return not any(a in g and b in g for g in self.groups)


class Network:
    def __init__(
        self,
        loop: EventLoop,
        rng: random.Random,
        *,
        loss: float,
        delay: tuple[float, float],
        partition: Partition | None,
    ) -> None:
        self.loop = loop
        self.rng = rng
        self.loss = loss
        self.delay = delay
        self.partition = partition
        self.receivers: dict[int, Callable[[int, Any], None]] = {}
        self.sent = 0
        self.delivered = 0
        self.dropped = 0

    def attach(self, index: int, receiver: Callable[[int, Any], None]) -> None:
        self.receivers[index] = receiver

    def send(self, src: int, dst: int, payload: Any) -> None:
        self.sent += 1
        receiver = self.receivers.get(dst)
        if receiver is None:
            self.dropped += 1
            return
        if src != dst:
            if self.partition is not None and self.partition.separates(src, dst, self.loop.now):
                self.dropped += 1
                return
            if self.loss and self.rng.random() < self.loss:
                self.dropped += 1
                return
            delay = self.rng.uniform(*self.delay)
        else:
            delay = 0.001

        def deliver() -> None:
            self.delivered += 1
            receiver(src, payload)

        self.loop.schedule(delay, deliver)

    def broadcast(self, src: int, payload: Any, count: int) -> None:
        for dst in range(count):
            self.send(src, dst, payload)
