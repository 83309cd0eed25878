"""Gossip over py-libp2p gossipsub: one topic per kind, handlers that decide before relaying.

A handler runs as the topic validator, so its verdict decides whether the message is relayed:
ACCEPT relays it, IGNORE drops it quietly, REJECT drops it and costs the forwarding peer score.
The subscription queues of py-libp2p are not used (the handler already saw the message), which
also avoids their 32-message limit and its warnings.
"""

from __future__ import annotations

import enum
import time
from collections.abc import Awaitable, Callable
from functools import partial

import structlog
import trio
from eth_utils import to_checksum_address
from libp2p.abc import IHost
from libp2p.peer.id import ID
from libp2p.pubsub.gossipsub import PROTOCOL_ID_V11, PROTOCOL_ID_V12, GossipSub
from libp2p.pubsub.pb import rpc_pb2
from libp2p.pubsub.pubsub import Pubsub
from libp2p.pubsub.rpc_queue import RpcQueue

from network.config import GOSSIP_KINDS, NetworkConfig
from network.errors import MessageTooLargeError
from network.identity import address_of_peer
from network.permissions import AllowList
from network.scoring import PENALTY_MALFORMED, PENALTY_REJECTED, PeerScores

log = structlog.get_logger("medledger.p2p")

# Room for the protobuf framing, signature, key and signed peer record around a payload.
RPC_OVERHEAD_BYTES = 64 * 1024
GOSSIP_PROTOCOLS = (PROTOCOL_ID_V12, PROTOCOL_ID_V11)


class Validation(enum.Enum):
    ACCEPT = "accept"
    REJECT = "reject"
    IGNORE = "ignore"


Handler = Callable[[str, bytes], Awaitable[Validation]]
Penalize = Callable[[str, float, str], None]


class _DiscardSink:
    """Stands in for a subscription's send channel: messages were handled by the validator."""

    def send_nowait(self, _message: object) -> None:
        return None

    def close(self) -> None:
        return None

    async def aclose(self) -> None:
        return None


class _TunedPeerQueues(dict[ID, RpcQueue]):
    """Pubsub creates each peer's outbound queue with fixed limits (32 RPCs, 1 MiB); this map
    resizes every queue as Pubsub stores it, since Pubsub offers no setting for either."""

    def __init__(self, max_size: int, max_message_size: int) -> None:
        super().__init__()
        self._max_size = max_size
        self._max_message_size = max_message_size

    def __setitem__(self, peer: ID, queue: RpcQueue) -> None:
        queue.max_message_size = self._max_message_size
        queue._queue.max_size = self._max_size
        super().__setitem__(peer, queue)


class GossipService:
    def __init__(
        self,
        host: IHost,
        config: NetworkConfig,
        allowlist: AllowList,
        scores: PeerScores,
        *,
        penalize: Penalize,
    ) -> None:
        self._host = host
        self._config = config
        self._allowlist = allowlist
        self._scores = scores
        self._penalize = penalize
        self._self_id = host.get_id()
        self._handlers: dict[str, Handler] = {}
        self._addresses: dict[ID, bytes | None] = {}
        self.router = GossipSub(
            protocols=list(GOSSIP_PROTOCOLS),
            # Up to D_lo (6) peers join the mesh as soon as they subscribe, not at the next
            # heartbeat; a consortium is small enough for everyone to be a direct mesh peer.
            degree=8,
            degree_low=6,
            degree_high=12,
            heartbeat_interval=1,
            time_to_live=30,
            # Adaptive gossip can stretch the heartbeat to 60 s; eclipse protection wants peers
            # on several IPs, which a loopback or single-site consortium never has.
            adaptive_gossip_enabled=False,
            eclipse_protection_enabled=False,
            spam_protection_enabled=True,
            max_messages_per_topic_per_second=config.max_gossip_rate,
        )
        max_rpc = config.max_message_bytes + RPC_OVERHEAD_BYTES
        self.pubsub = Pubsub(
            host,
            self.router,
            strict_signing=True,
            # The handler enforces config.handler_timeout itself; this is only a backstop.
            validation_timeout=config.handler_timeout + 5.0,
            max_inbound_rpc_size=max_rpc,
            allowed_topics={config.topic(kind) for kind in GOSSIP_KINDS},
        )
        self.pubsub.peer_queues = _TunedPeerQueues(config.outbound_queue_size, max_rpc)
        # Message ids are (origin, seqno) and py-libp2p starts seqnos at the wall-clock second,
        # adding one per message: a node that published faster than one message a second and
        # restarts reuses seqnos its peers still hold as seen (silently dropped as duplicates,
        # or as equivocation when the content differs) until it passes its old counter. Start
        # at the wall-clock nanosecond instead, beyond anything a previous run could reach.
        self.pubsub.counter = max(self.pubsub.counter, time.time_ns())

    async def start(self) -> None:
        """Subscribe to every kind (call once Pubsub and the router are running)."""
        await self.pubsub.wait_until_ready()
        for kind in GOSSIP_KINDS:
            topic = self._config.topic(kind)
            self.pubsub.set_topic_validator(topic, partial(self._validate, kind), True)
            await self.pubsub.subscribe(topic)
            self.pubsub.subscribed_topics_send[topic] = _DiscardSink()  # type: ignore[assignment]

    def set_handler(self, kind: str, handler: Handler) -> None:
        self._config.topic(kind)  # ValueError for an unknown kind
        self._handlers[kind] = handler

    async def publish(self, kind: str, payload: bytes) -> None:
        topic = self._config.topic(kind)
        if not isinstance(payload, bytes):
            raise TypeError(f"payload must be bytes, got {type(payload).__name__}")
        if len(payload) > self._config.max_message_bytes:
            raise MessageTooLargeError(
                f"{kind} message of {len(payload)} bytes exceeds {self._config.max_message_bytes}"
            )
        try:
            await self.pubsub.publish(topic, payload)
        except Exception as exc:  # best effort by design: sync recovers whatever gossip loses
            log.error("gossip publish failed", kind=kind, error=repr(exc))

    def mesh_peers(self, kind: str) -> set[str]:
        return {p.to_base58() for p in self.router.mesh.get(self._config.topic(kind), ())}

    def _address(self, peer: ID) -> bytes | None:
        if peer not in self._addresses:
            if len(self._addresses) > 4096:
                self._addresses.clear()
            self._addresses[peer] = address_of_peer(peer)
        return self._addresses[peer]

    async def _validate(self, kind: str, forwarder: ID, msg: rpc_pb2.Message) -> bool:
        """Pubsub's async validator: True relays (and marks seen), False drops."""
        if forwarder == self._self_id:
            return True  # our own publish, size-checked in publish()
        try:
            return await self._judge(kind, forwarder, msg)
        except Exception as exc:  # a bug here must not kill the pubsub reader
            log.error("gossip validation failed", kind=kind, error=repr(exc))
            return False

    async def _judge(self, kind: str, forwarder: ID, msg: rpc_pb2.Message) -> bool:
        sender = forwarder.to_base58()
        if self._address(forwarder) not in self._allowlist:
            log.info("gossip from a peer not on the allow-list dropped", peer=sender, kind=kind)
            return False
        if self._scores.ban_remaining(sender) > 0:
            return False  # already in flight when the peer was banned and disconnected
        origin = ID(msg.from_id)
        if origin == self._self_id:
            return False  # our own message coming back after the seen-cache forgot it
        origin_address = self._address(origin)
        if origin_address not in self._allowlist:
            shown = to_checksum_address(origin_address) if origin_address else origin.to_base58()
            log.info("gossip from an origin not on the allow-list dropped", origin=shown)
            return False
        if len(msg.data) > self._config.max_message_bytes:
            self._penalize(sender, PENALTY_MALFORMED, f"{kind} message of {len(msg.data)} bytes")
            return False
        handler = self._handlers.get(kind)
        if handler is None:
            return False
        verdict = Validation.IGNORE
        with trio.move_on_after(self._config.handler_timeout) as scope:
            try:
                verdict = await handler(sender, bytes(msg.data))
            except Exception as exc:
                log.error("gossip handler raised", kind=kind, peer=sender, error=repr(exc))
                return False
        if scope.cancelled_caught:
            log.warning("gossip handler timed out", kind=kind, peer=sender)
            return False
        if verdict is Validation.REJECT:
            self._penalize(sender, PENALTY_REJECTED, f"{kind} message rejected")
            return False
        if verdict is not Validation.ACCEPT and verdict is not Validation.IGNORE:
            log.error("gossip handler returned a non-Validation", kind=kind, verdict=repr(verdict))
            return False
        return verdict is Validation.ACCEPT
