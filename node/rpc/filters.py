"""State behind eth_newFilter, eth_newBlockFilter, eth_newPendingTransactionFilter and the
polling calls (eth_getFilterChanges, eth_getFilterLogs, eth_uninstallFilter).

Polling clients disappear without uninstalling, so filters idle longer than the timeout
are dropped (geth: 5 minutes), and every filter's buffer is bounded so a client that
stops polling cannot grow memory without limit: the oldest results go first and the
filter is marked `overflowed`. Thread-safe: the chain pushes events from its worker
thread while RPC handlers poll from the trio loop.
"""

from __future__ import annotations

import secrets
import threading
import time
from collections import OrderedDict, deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import structlog

from node.rpc.errors import LIMIT_EXCEEDED, SERVER_ERROR, RpcError

FILTER_KINDS = frozenset({"block", "pending", "logs"})


@dataclass
class FilterEntry:
    """One installed filter. `meta` is the caller's (e.g. parsed log criteria for getFilterLogs)."""

    id: str
    kind: str
    matcher: Callable[[Any], list[Any]]
    meta: Any
    last_access: float
    pending: deque[Any] = field(default_factory=deque)
    overflowed: bool = False  # results were dropped since the last eth_getFilterChanges


class FilterManager:
    """Installed filters with idle expiry and bounded buffers."""

    def __init__(
        self,
        *,
        timeout_seconds: float = 300.0,
        max_filters: int = 10_000,
        max_buffer: int = 10_000,
        clock: Callable[[], float] = time.monotonic,
        log: Any = None,
    ) -> None:
        if timeout_seconds <= 0 or max_filters < 1 or max_buffer < 1:
            raise ValueError("timeout_seconds, max_filters and max_buffer must be positive")
        self._timeout = timeout_seconds
        self._max_filters = max_filters
        self._max_buffer = max_buffer
        self._clock = clock
        self._log = log if log is not None else structlog.get_logger("rpc")
        self._lock = threading.RLock()
        self._filters: OrderedDict[str, FilterEntry] = OrderedDict()  # least recently used first

    def install(self, kind: str, matcher: Callable[[Any], list[Any]], *, meta: Any = None) -> str:
        """Add a filter that collects `matcher(event)` for every pushed event of `kind`."""
        if kind not in FILTER_KINDS:
            expected = ", ".join(sorted(FILTER_KINDS))
            raise ValueError(f"unknown filter kind {kind!r}, expected one of: {expected}")
        with self._lock:
            self._expire_locked()
            if len(self._filters) >= self._max_filters:
                raise RpcError(LIMIT_EXCEEDED, f"too many filters (max {self._max_filters})")
            filter_id = "0x" + secrets.token_hex(16)
            self._filters[filter_id] = FilterEntry(
                id=filter_id,
                kind=kind,
                matcher=matcher,
                meta=meta,
                last_access=self._clock(),
                pending=deque(maxlen=self._max_buffer),
            )
            return filter_id

    def push(self, kind: str, event: Any) -> None:
        """Append the matching results of one event to every filter of that kind."""
        with self._lock:
            self._expire_locked()
            for entry in self._filters.values():
                if entry.kind != kind:
                    continue
                try:
                    results = entry.matcher(event)
                except Exception:
                    self._log.error("rpc.filter_matcher_failed", filter=entry.id, exc_info=True)
                    continue
                for result in results:
                    if len(entry.pending) == self._max_buffer:
                        entry.overflowed = True  # the deque drops the oldest on append
                    entry.pending.append(result)

    def changes(self, filter_id: str) -> list[Any]:
        """Results collected since the last call (eth_getFilterChanges); clears the buffer."""
        with self._lock:
            entry = self._touch_locked(filter_id)
            results = list(entry.pending)
            entry.pending.clear()
            entry.overflowed = False
            return results

    def get(self, filter_id: str) -> FilterEntry:
        """The filter itself (eth_getFilterLogs reads its criteria from `meta`); counts as use."""
        with self._lock:
            return self._touch_locked(filter_id)

    def uninstall(self, filter_id: str) -> bool:
        """Remove a filter; False if there is no such (live) filter."""
        with self._lock:
            self._expire_locked()
            if not isinstance(filter_id, str):
                return False
            return self._filters.pop(filter_id.lower(), None) is not None

    def expire(self) -> int:
        """Drop filters idle longer than the timeout; returns how many were dropped."""
        with self._lock:
            return self._expire_locked()

    def __len__(self) -> int:
        with self._lock:
            return len(self._filters)

    def _touch_locked(self, filter_id: str) -> FilterEntry:
        self._expire_locked()
        entry = self._filters.get(filter_id.lower()) if isinstance(filter_id, str) else None
        if entry is None:
            raise RpcError(SERVER_ERROR, "filter not found")
        entry.last_access = self._clock()
        self._filters.move_to_end(entry.id)
        return entry

    def _expire_locked(self) -> int:
        deadline = self._clock() - self._timeout
        dropped = 0
        while self._filters:
            oldest = next(iter(self._filters.values()))
            if oldest.last_access >= deadline:
                break
            del self._filters[oldest.id]
            dropped += 1
        return dropped
