"""eth_subscribe plumbing: WebSocket connections, their subscriptions and notification fan-out.

Publishing never waits on a client. Every connection has a bounded outbound queue; a
client that reads so slowly that its queue fills up is disconnected (close code 1008)
instead of making the publisher wait or letting memory grow. The chain runs in a worker
thread, so `publish_threadsafe` hands events over to the trio loop without blocking.
"""

from __future__ import annotations

import itertools
import json
import secrets
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import structlog
import trio

from node.rpc.errors import (
    INVALID_PARAMS,
    LIMIT_EXCEEDED,
    METHOD_NOT_FOUND,
    SERVER_ERROR,
    RpcError,
    invalid_params,
)

if TYPE_CHECKING:
    from node.rpc.dispatch import CallContext, Dispatcher

Matcher = Callable[[Any], list[Any]]
"""Turns one published event into the results (zero or more) sent to one subscription."""
MatcherFactory = Callable[[list[Any]], Matcher]
"""Validates a subscription's params (raising RpcError) and builds its matcher."""

CLOSE_SLOW_CONSUMER = 1008  # policy violation: the client does not read its notifications
_connection_ids = itertools.count(1)


class WsConnection:
    """One WebSocket client as the RPC layer sees it: a bounded queue of outbound text frames.

    The server's writer task drains the queue to the socket. All methods must be called
    from the trio loop thread.
    """

    def __init__(self, *, max_queue: int = 10_000, remote: str = "", log: Any = None) -> None:
        if max_queue < 1:
            raise ValueError("max_queue must be at least 1")
        self.id = next(_connection_ids)
        self.remote = remote
        self.max_queue = max_queue
        self.close_code: int | None = None
        self.close_reason = ""
        self._log = log if log is not None else structlog.get_logger("rpc")
        self._send_channel, self._receive_channel = trio.open_memory_channel[str](max_queue)
        self._scope: trio.CancelScope | None = None
        self._closed = False

    @property
    def closed(self) -> bool:
        """True once the client went away or the server decided to close the connection."""
        return self._closed

    def send_nowait(self, message: str) -> bool:
        """Queue a notification without waiting; on overflow close the connection, return False."""
        if self._closed:
            return False
        try:
            self._send_channel.send_nowait(message)
        except trio.WouldBlock:
            self._log.warning(
                "rpc.ws_slow_consumer",
                connection=self.id,
                remote=self.remote,
                queued=self.max_queue,
            )
            self.close(CLOSE_SLOW_CONSUMER, "slow consumer: outbound queue full")
            return False
        except (trio.ClosedResourceError, trio.BrokenResourceError):
            return False
        return True

    async def send(self, message: str) -> None:
        """Queue a response, waiting for room: requests in flight per connection are bounded,
        so waiting here is backpressure on that client only. Dropped once closed."""
        if self._closed:
            return
        try:
            await self._send_channel.send(message)
        except (trio.ClosedResourceError, trio.BrokenResourceError):
            return

    def close(self, code: int = 1000, reason: str = "") -> None:
        """Close from the server side (idempotent): stops the connection's tasks, then the
        server sends a close frame with `code` and `reason`."""
        if self._closed:
            return
        self._closed = True
        self.close_code = code
        self.close_reason = reason
        self._send_channel.close()
        if self._scope is not None:
            self._scope.cancel()

    def attach(self, scope: trio.CancelScope) -> None:
        """Server side: the scope running this connection's reader, writer and requests."""
        self._scope = scope
        if self._closed:
            scope.cancel()

    def outbound(self) -> trio.MemoryReceiveChannel[str]:
        """Server side: the queue the writer task drains to the socket."""
        return self._receive_channel

    def mark_disconnected(self) -> None:
        """Server side: the client is gone; later sends are dropped."""
        self._closed = True
        self._send_channel.close()

    def __repr__(self) -> str:
        return f"WsConnection(id={self.id}, remote={self.remote!r}, closed={self._closed})"


@dataclass(frozen=True)
class _Subscription:
    id: str
    kind: str
    connection: WsConnection
    matcher: Matcher


def _encode(value: Any) -> str:
    return json.dumps(value, separators=(",", ":"), allow_nan=False)


class SubscriptionHub:
    """Subscriptions of all WebSocket connections, indexed by kind for publishing."""

    def __init__(self, *, max_per_connection: int = 1000, log: Any = None) -> None:
        if max_per_connection < 1:
            raise ValueError("max_per_connection must be at least 1")
        self._max_per_connection = max_per_connection
        self._log = log if log is not None else structlog.get_logger("rpc")
        self._kinds: dict[str, MatcherFactory] = {}
        self._by_kind: dict[str, dict[str, _Subscription]] = {}
        self._by_connection: dict[WsConnection, dict[str, _Subscription]] = {}
        self._token: trio.lowlevel.TrioToken | None = None

    def register_kind(self, kind: str, make_matcher: MatcherFactory) -> None:
        """Make `eth_subscribe(kind, ...)` available; `make_matcher(params after the kind)`."""
        if not isinstance(kind, str) or not kind:
            raise ValueError("subscription kind must be a non-empty string")
        if kind in self._kinds:
            raise ValueError(f"subscription kind {kind} is already registered")
        self._kinds[kind] = make_matcher
        self._by_kind[kind] = {}

    def kinds(self) -> list[str]:
        return sorted(self._kinds)

    def bind_loop(self, token: trio.lowlevel.TrioToken | None = None) -> None:
        """Remember the trio loop that owns the connections (default: the current one)."""
        self._token = token if token is not None else trio.lowlevel.current_trio_token()

    def subscribe(self, connection: WsConnection, kind: str, params: list[Any]) -> str:
        """Create a subscription and return its id ("0x" + 32 hex digits)."""
        if connection.closed:
            raise RpcError(SERVER_ERROR, "connection closed")
        factory = self._kinds.get(kind) if isinstance(kind, str) else None
        if factory is None:
            raise RpcError(INVALID_PARAMS, f"unsupported subscription type {kind}")
        own = self._by_connection.get(connection, {})
        if len(own) >= self._max_per_connection:
            raise RpcError(
                LIMIT_EXCEEDED,
                f"too many subscriptions on this connection (max {self._max_per_connection})",
            )
        matcher = factory(list(params))
        sub_id = "0x" + secrets.token_hex(16)
        subscription = _Subscription(sub_id, kind, connection, matcher)
        self._by_connection.setdefault(connection, {})[sub_id] = subscription
        self._by_kind[kind][sub_id] = subscription
        return sub_id

    def unsubscribe(self, connection: WsConnection, sub_id: str) -> bool:
        """Remove one of this connection's subscriptions; False if it has no such id."""
        if not isinstance(sub_id, str):
            return False
        own = self._by_connection.get(connection)
        subscription = None if own is None else own.pop(sub_id.lower(), None)
        if subscription is None:
            return False
        self._by_kind[subscription.kind].pop(subscription.id, None)
        if not own:
            del self._by_connection[connection]
        return True

    def drop_connection(self, connection: WsConnection) -> None:
        """Forget every subscription of a connection (it closed)."""
        own = self._by_connection.pop(connection, None)
        if own is None:
            return
        for subscription in own.values():
            self._by_kind[subscription.kind].pop(subscription.id, None)

    def subscription_count(self, kind: str | None = None) -> int:
        if kind is not None:
            return len(self._by_kind.get(kind, {}))
        return sum(len(subs) for subs in self._by_kind.values())

    def publish(self, kind: str, event: Any) -> None:
        """Queue eth_subscription notifications for every subscription of `kind` that the event
        matches. Never waits; call it from the trio loop thread (else `publish_threadsafe`)."""
        subscriptions = self._by_kind.get(kind)
        if not subscriptions:
            return
        encoded: dict[int, tuple[Any, str]] = {}  # one encoding per result object shared by subs
        for subscription in list(subscriptions.values()):
            connection = subscription.connection
            if connection.closed:
                self.drop_connection(connection)
                continue
            try:
                results = subscription.matcher(event)
                if not isinstance(results, list | tuple):
                    raise TypeError(f"matcher returned {type(results).__name__}, not a list")
                texts = []
                for result in results:
                    cached = encoded.get(id(result))
                    if cached is None:
                        cached = (result, _encode(result))
                        encoded[id(result)] = cached
                    texts.append(cached[1])
            except Exception:
                self._log.error(
                    "rpc.subscription_matcher_failed", kind=kind, subscription=subscription.id,
                    exc_info=True,
                )
                continue
            prefix = (
                '{"jsonrpc":"2.0","method":"eth_subscription","params":{"subscription":"'
                + subscription.id
                + '","result":'
            )
            for text in texts:
                if not connection.send_nowait(prefix + text + "}}"):
                    self.drop_connection(connection)
                    break

    def publish_threadsafe(self, kind: str, event: Any) -> None:
        """`publish` from any thread (the chain's worker thread): hands the event to the trio
        loop without waiting. Events are published in call order. Before `bind_loop` (no server
        running, hence no subscriber) or after the loop ended, the event is dropped."""
        token = self._token
        if token is None:
            return
        try:
            token.run_sync_soon(self._publish_guarded, kind, event)
        except trio.RunFinishedError:
            self._log.debug("rpc.publish_after_loop_end", kind=kind)

    def _publish_guarded(self, kind: str, event: Any) -> None:
        # run_sync_soon callbacks must not raise: that would crash the whole trio loop.
        try:
            self.publish(kind, event)
        except Exception:
            self._log.error("rpc.publish_failed", kind=kind, exc_info=True)

    def install(self, dispatcher: Dispatcher) -> None:
        """Register eth_subscribe and eth_unsubscribe (WebSocket only, like geth)."""
        dispatcher.register("eth_subscribe", self._eth_subscribe)
        dispatcher.register("eth_unsubscribe", self._eth_unsubscribe)

    async def _eth_subscribe(self, params: list[Any], ctx: CallContext) -> str:
        connection = _require_connection(ctx)
        if not params:
            raise invalid_params("missing value for required argument 0")
        kind = params[0]
        if not isinstance(kind, str):
            raise invalid_params("invalid argument 0: subscription type must be a string")
        return self.subscribe(connection, kind, list(params[1:]))

    async def _eth_unsubscribe(self, params: list[Any], ctx: CallContext) -> bool:
        connection = _require_connection(ctx)
        if len(params) != 1 or not isinstance(params[0], str):
            raise invalid_params("expected exactly one argument: the subscription id")
        return self.unsubscribe(connection, params[0])


def _require_connection(ctx: CallContext) -> WsConnection:
    if ctx.connection is None:
        # geth's answer over HTTP; -32601 lets clients treat it as "method unavailable here".
        raise RpcError(METHOD_NOT_FOUND, "notifications not supported")
    return ctx.connection
