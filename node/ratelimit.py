"""Per-client rate limits: one token bucket per client IP address, for the JSON-RPC and FHIR
listeners.

A client may send `burst` requests at once and `rate` per second on average; past that it is
answered HTTP 429 (JSON-RPC error -32005 on a WebSocket) until its bucket refills. Loopback
clients (the operator's own tools, a local reverse proxy, tests) are not limited unless
`limit_loopback` is set: behind a reverse proxy every client is the proxy, which must then do
the per-client limiting itself. Buckets of clients gone quiet are dropped, oldest first, once
`max_clients` are tracked, so a flood of source addresses cannot grow memory without bound.
"""

from __future__ import annotations

import ipaddress
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

DEFAULT_MAX_CLIENTS = 65_536


@dataclass(frozen=True)
class RateLimit:
    """`rate` requests per second per client (0: unlimited), bursts of up to `burst`."""

    rate: float = 0.0
    burst: int = 1
    limit_loopback: bool = False

    def __post_init__(self) -> None:
        if self.rate < 0:
            raise ValueError(f"rate limit must not be negative, got {self.rate}")
        if self.burst < 1:
            raise ValueError(f"rate limit burst must be at least 1, got {self.burst}")

    @property
    def enabled(self) -> bool:
        return self.rate > 0

    def describe(self) -> str:
        return f"{self.rate:g} requests/s per client, bursts of {self.burst}"


def _is_loopback(host: str) -> bool:
    try:
        return ipaddress.ip_address(host.split("%", 1)[0]).is_loopback
    except ValueError:
        return False


DEFAULT_RPC_LIMIT = RateLimit(rate=100.0, burst=200)
"""JSON-RPC default: 100 requests/s per client IP, bursts of 200 (loopback clients exempt)."""
DEFAULT_FHIR_LIMIT = RateLimit(rate=20.0, burst=50)
"""FHIR default: 20 requests/s per client IP, bursts of 50 (loopback clients exempt)."""


class ClientRateLimiter:
    """Token buckets keyed by client address; thread-safe, O(1) per request."""

    def __init__(
        self,
        limit: RateLimit,
        *,
        max_clients: int = DEFAULT_MAX_CLIENTS,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.limit = limit
        self._max_clients = max_clients
        self._clock = clock
        self._buckets: OrderedDict[str, tuple[float, float]] = OrderedDict()  # tokens, time
        self._lock = threading.Lock()

    def check(self, client: str | None) -> float | None:
        """Take a token for `client`; None when allowed, else seconds until one is available."""
        limit = self.limit
        if not limit.enabled or client is None:
            return None
        if not limit.limit_loopback and _is_loopback(client):
            return None
        now = self._clock()
        with self._lock:
            tokens, last = self._buckets.pop(client, (float(limit.burst), now))
            tokens = min(float(limit.burst), tokens + (now - last) * limit.rate)
            if tokens >= 1.0:
                tokens -= 1.0
                wait = None
            else:
                wait = (1.0 - tokens) / limit.rate
            self._buckets[client] = (tokens, now)  # most recently seen last
            while len(self._buckets) > self._max_clients:
                self._buckets.popitem(last=False)
        return wait

    def message(self) -> str:
        return f"rate limit exceeded: at most {self.limit.describe()}; retry later"


def client_host(scope: Mapping[str, Any]) -> str | None:
    """The client IP address of an ASGI scope (None when the server does not know it)."""
    client = scope.get("client")
    if isinstance(client, list | tuple) and client:
        return str(client[0])
    return None
