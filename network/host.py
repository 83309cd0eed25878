"""P2PNode: the libp2p host of a medledger node, with permissioning, gossip, sync and dialling.

Security is noise only and muxing yamux only (py-libp2p would otherwise also offer plaintext,
secio, TLS and mplex). Nothing is discovered or dialled implicitly: the static peers and
`add_peer` are the only outbound connections.
"""

from __future__ import annotations

import contextlib
import ipaddress
import socket
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

import multiaddr
import structlog
import trio
from eth_utils import to_checksum_address
from libp2p import new_host
from libp2p.abc import IHost, INetConn, INetStream, INetwork, INotifee
from libp2p.custom_types import TProtocol
from libp2p.network.config import ConnectionConfig, RetryConfig
from libp2p.network.exceptions import SwarmException
from libp2p.peer.id import ID
from libp2p.security.noise.transport import PROTOCOL_ID as NOISE_PROTOCOL_ID
from libp2p.stream_muxer.yamux.yamux import PROTOCOL_ID as YAMUX_PROTOCOL_ID
from libp2p.stream_muxer.yamux.yamux import Yamux
from libp2p.tools.anyio_service import background_trio_service

from network.codec import ChainStatus
from network.config import NetworkConfig
from network.dialer import Signal, StaticPeer, StaticPeerDialer
from network.errors import ChainMismatchError, NetworkError, NotRunningError, SyncError
from network.gossip import GossipService, Handler
from network.identity import address_from_secret, address_of_peer, key_pair_from_secret
from network.permissions import AllowList, GatedNoiseTransport, refusal_reason
from network.scoring import PENALTY_MALFORMED, PeerScores
from network.sync import SYNC_PROTOCOL, SyncProvider, SyncService

log = structlog.get_logger("medledger.p2p")

MAX_CONNECTIONS = 128
HANDSHAKE_ATTEMPTS = 3
CLOSE_TIMEOUT = 10.0


@dataclass(frozen=True)
class PeerInfo:
    peer_id: str
    address: bytes
    addrs: tuple[str, ...]
    direction: str  # "inbound" or "outbound" (of the first connection)
    connected_since: float  # unix time
    score: float
    status: ChainStatus | None = None  # from the last status exchange
    static: bool = False


@dataclass
class _PeerState:
    address: bytes
    direction: str
    connected_since: float
    status: ChainStatus | None = None
    handshake: trio.Event = field(default_factory=trio.Event)


class _ConnectionEvents(INotifee):
    """Forwards swarm connection events to the node (stream events are not needed)."""

    def __init__(self, node: P2PNode) -> None:
        self._node = node

    async def connected(self, network: INetwork, conn: INetConn) -> None:
        self._node._on_connected(conn)

    async def disconnected(self, network: INetwork, conn: INetConn) -> None:
        self._node._on_disconnected(conn)

    async def opened_stream(self, network: INetwork, stream: INetStream) -> None:
        await trio.lowlevel.checkpoint()

    async def closed_stream(self, network: INetwork, stream: INetStream) -> None:
        await trio.lowlevel.checkpoint()

    async def listen(self, network: INetwork, multiaddr: multiaddr.Multiaddr) -> None:
        await trio.lowlevel.checkpoint()

    async def listen_close(self, network: INetwork, multiaddr: multiaddr.Multiaddr) -> None:
        await trio.lowlevel.checkpoint()


StreamHandler = Callable[[INetStream], Awaitable[None]]


def _guarded(protocol: str, handler: StreamHandler) -> StreamHandler:
    """Stream handler that never raises: in py-libp2p 0.8.1 an exception leaving a handler
    cancels all inbound handlers of the connection (gossip stops) or crashes the whole host."""

    async def guarded(stream: INetStream) -> None:
        try:
            await handler(stream)
        except Exception as exc:
            log.info(
                "stream handler failed",
                protocol=protocol,
                peer=stream.muxed_conn.peer_id.to_base58(),
                error=repr(exc),
            )
            with trio.CancelScope(shield=True), contextlib.suppress(Exception):
                await stream.reset()  # may fail when the connection is gone already

    return guarded


def _check_port_free(host: str, port: int) -> None:
    """NetworkError if another socket listens on (host, port). py-libp2p listens with
    SO_REUSEPORT, so a second node on the same port would start and silently share (split)
    the incoming connections with the first; a probe without SO_REUSEPORT sees the conflict."""
    if port == 0:
        return
    family = socket.AF_INET6 if ipaddress.ip_address(host).version == 6 else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # ignore TIME_WAIT leftovers
        try:
            probe.bind((host, port))
        except OSError as exc:
            raise NetworkError(f"cannot listen on {host}:{port}: {exc.strerror}") from None


async def _no_auto_connect() -> None:
    await trio.lowlevel.checkpoint()


async def _refuse_implicit_dial(peer_id: ID) -> list[INetConn]:
    await trio.lowlevel.checkpoint()
    raise SwarmException(f"peer {peer_id} is not connected (medledger dials static peers only)")


class P2PNode:
    """The node's peer-to-peer endpoint; everything runs inside `run()`."""

    def __init__(
        self,
        config: NetworkConfig,
        node_key: bytes,
        allowlist: AllowList,
        sync_provider: SyncProvider,
    ) -> None:
        self.config = config
        self._key_pair = key_pair_from_secret(node_key)
        self.address = address_from_secret(node_key)
        self.peer_id = ID.from_pubkey(self._key_pair.public_key).to_base58()
        self._allowlist = allowlist
        self._provider = sync_provider
        self.scores = PeerScores(ban_seconds=config.ban_seconds)
        self._peers: dict[str, _PeerState] = {}
        self._connections_changed = Signal()
        self._permissions_changed = Signal()
        self._host: IHost | None = None
        self._gossip: GossipService | None = None
        self._sync: SyncService | None = None
        self._nursery: trio.Nursery | None = None
        self._pending_handlers: dict[str, Handler] = {}
        self._dialer = StaticPeerDialer(
            is_connected=self._is_connected,
            refusal=self._refusal,
            dial=self._dial,
            connections_changed=self._connections_changed,
            permissions_changed=self._permissions_changed,
            max_backoff=config.reconnect_max_backoff,
        )
        for spec in config.static_peers:
            self._add_static(StaticPeer.parse(spec))
        self.listen_addrs: list[str] = []

    # ------------------------------------------------------------------ lifecycle

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """Listen, join the gossip topics, serve sync, keep static peers connected; until
        cancelled. `task_status.started()` is called once listening (see `listen_addrs`)."""
        if self._host is not None:
            raise RuntimeError("P2PNode.run() is already running")
        _check_port_free(self.config.listen_host, self.config.listen_port)
        host = self._new_host()
        gossip = GossipService(
            host, self.config, self._allowlist, self.scores, penalize=self._penalize
        )
        sync = SyncService(
            host,
            self.config,
            self._provider,
            disconnect=self._disconnect_mismatched,
            penalize=self._penalize,
            on_status=self._record_status,
        )
        host.set_stream_handler(SYNC_PROTOCOL, sync.handle_stream)
        mux = host.get_mux()
        for protocol, handler in list(mux.handlers.items()):
            if protocol is None or handler is None:
                continue
            if protocol in gossip.router.get_protocols():
                handler = self._watch_gossip_stream(handler)
            mux.handlers[protocol] = _guarded(str(protocol), handler)
        host.get_network().register_notifee(_ConnectionEvents(self))
        token = trio.lowlevel.current_trio_token()
        unsubscribe = self._allowlist.subscribe(
            lambda: self._call_soon(token, self._permissions_changed.notify)
        )
        listen = multiaddr.Multiaddr(self.config.listen_multiaddr)
        try:
            async with trio.open_nursery() as nursery:
                self._nursery = nursery
                # Sync is served (and status handshakes run) from the first connection on;
                # publishing waits for the gossip subscriptions below.
                self._host, self._sync = host, sync
                async with (
                    host.run([listen]),
                    background_trio_service(gossip.pubsub),
                    background_trio_service(gossip.router),
                ):
                    for kind, handler in self._pending_handlers.items():
                        gossip.set_handler(kind, handler)
                    if not host.get_network().listeners:  # py-libp2p only logs the failure
                        raise NetworkError(f"cannot listen on {self.config.listen_multiaddr}")
                    await gossip.start()
                    self._gossip = gossip
                    self.listen_addrs = [str(a) for a in host.get_addrs()]
                    nursery.start_soon(self._dialer.run)
                    nursery.start_soon(self._enforce_allowlist)
                    log.info(
                        "p2p listening",
                        peer_id=self.peer_id,
                        address=to_checksum_address(self.address),
                        addrs=self.listen_addrs,
                    )
                    task_status.started()
                    try:
                        await trio.sleep_forever()
                    finally:
                        self._host = self._gossip = self._sync = None
                        await self._close_host(host)
                nursery.cancel_scope.cancel()
        finally:
            unsubscribe()
            self._host = self._gossip = self._sync = None
            self._nursery = None
            self._peers.clear()
            self.listen_addrs = []

    @staticmethod
    async def _close_host(host: IHost) -> None:
        """Close connections and listeners explicitly, shielded from the cancellation that
        stops the node: py-libp2p's own teardown is cancelled at its first await and leaves
        the TCP listener (a trio system task) accepting connections after run() returned."""
        with trio.CancelScope(shield=True), trio.move_on_after(CLOSE_TIMEOUT) as scope:
            try:
                # Listeners first: closing each connection takes py-libp2p ~0.2 s.
                for listener in list(host.get_network().listeners.values()):
                    await listener.close()
                await host.close()
            except Exception as exc:
                log.warning("p2p shutdown incomplete", error=repr(exc))
        if scope.cancelled_caught:
            log.warning("p2p shutdown timed out", timeout=CLOSE_TIMEOUT)

    def _new_host(self) -> IHost:
        host = new_host(
            key_pair=self._key_pair,
            sec_opt={
                NOISE_PROTOCOL_ID: GatedNoiseTransport(self._key_pair, self._allowlist, self.scores)
            },
            muxer_opt={TProtocol(YAMUX_PROTOCOL_ID): Yamux},
            listen_addrs=[multiaddr.Multiaddr(self.config.listen_multiaddr)],
            enable_mDNS=False,
            enable_upnp=False,
            bootstrap=None,
            disable_identify_address_discovery=True,
            connection_config=ConnectionConfig(
                max_connections=MAX_CONNECTIONS,
                min_connections=0,
                low_watermark=0,
                high_watermark=MAX_CONNECTIONS,
                max_connections_per_peer=2,
                dial_timeout=10.0,
            ),
        )
        # The swarm's auto-connector dials every peer in the peerstore (addresses learnt from
        # identify and gossip records) until it holds (low + high watermark) / 2 connections,
        # whatever the low watermark. Dialling is the static dialer's job alone: switch it off.
        network = host.get_network()
        network.auto_connector.maybe_connect = _no_auto_connect  # type: ignore[attr-defined]
        # Likewise, Swarm.new_stream() dials a peer that is not connected, from the peerstore;
        # pubsub retries and identify would redial a peer just dropped (or removed). Only the
        # static dialer's dial_addr() may open connections.
        network.dial_peer = _refuse_implicit_dial  # type: ignore[method-assign]
        # One attempt per dial: the static dialer owns retries and their back-off.
        network.retry_config = RetryConfig(max_retries=0)  # type: ignore[attr-defined]
        return host

    def _watch_gossip_stream(self, handler: StreamHandler) -> StreamHandler:
        """A peer's gossip stream to us lives as long as the connection. If it ends early (we
        reset it for an oversized or undecodable RPC), py-libp2p never repairs the state on
        either side: the peer keeps writing into the dead stream until a write fails, and
        subscriptions are lost. Disconnecting rebuilds both sides cleanly on the redial."""

        async def watched(stream: INetStream) -> None:
            peer = stream.muxed_conn.peer_id.to_base58()
            failure: Exception | None = None
            try:
                await handler(stream)
            except Exception as exc:
                failure = exc
            if self._connection_alive(stream) and self._nursery is not None:
                if failure is not None:
                    self._penalize(peer, PENALTY_MALFORMED, f"malformed gossip: {failure!r}")
                self._nursery.start_soon(self._drop, peer, "gossip stream from peer broke", False)
            if failure is not None:
                raise failure

        return watched

    @staticmethod
    def _call_soon(token: trio.lowlevel.TrioToken, fn: Callable[[], None]) -> None:
        with contextlib.suppress(trio.RunFinishedError):  # the node has stopped
            token.run_sync_soon(fn)

    def _running(self) -> tuple[IHost, GossipService, SyncService]:
        if self._host is None or self._gossip is None or self._sync is None:
            raise NotRunningError("the P2P node is not running")
        return self._host, self._gossip, self._sync

    def _sync_service(self) -> SyncService:
        if self._host is None or self._sync is None:
            raise NotRunningError("the P2P node is not running")
        return self._sync

    # ------------------------------------------------------------------ gossip

    def set_handler(self, kind: str, handler: Handler) -> None:
        """Handle gossip of `kind` ("tx", "qbft", "block"); its verdict decides relaying."""
        self.config.topic(kind)
        self._pending_handlers[kind] = handler
        if self._gossip is not None:
            self._gossip.set_handler(kind, handler)

    async def publish(self, kind: str, payload: bytes) -> None:
        """Gossip `payload`; MessageTooLargeError above max_message_bytes, fine without peers."""
        _, gossip, _ = self._running()
        await gossip.publish(kind, payload)

    def gossip_peers(self, kind: str) -> set[str]:
        """Peers in this node's gossip mesh for `kind` (they receive what it publishes)."""
        _, gossip, _ = self._running()
        return gossip.mesh_peers(kind)

    # ------------------------------------------------------------------ sync

    async def request_status(self, peer_id: str) -> ChainStatus:
        return await self._sync_service().request_status(peer_id)

    async def request_blocks(self, peer_id: str, start: int, count: int) -> list[bytes]:
        """Raw RLP blocks start..start+count-1 the peer has, in order (possibly fewer)."""
        return await self._sync_service().request_blocks(peer_id, start, count)

    # ------------------------------------------------------------------ peers

    def peers(self) -> list[PeerInfo]:
        if self._host is None:
            return []
        network = self._host.get_network()
        static = self._dialer.peers
        result = []
        for key, state in self._peers.items():
            conns = network.get_connections(ID.from_base58(key))
            if not conns:
                continue
            addrs = tuple(str(a) for conn in conns for a in conn.get_transport_addresses())
            result.append(
                PeerInfo(
                    peer_id=key,
                    address=state.address,
                    addrs=addrs,
                    direction=state.direction,
                    connected_since=state.connected_since,
                    score=self.scores.score(key),
                    status=state.status,
                    static=key in static,
                )
            )
        return result

    async def add_peer(self, maddr: str) -> None:
        """Add a static peer (multiaddr with /p2p/<id>) and keep it connected from now on."""
        peer = StaticPeer.parse(maddr)
        if peer.peer_id.to_base58() == self.peer_id:
            raise ValueError("cannot add this node itself as a peer")
        self._add_static(peer)
        await trio.lowlevel.checkpoint()

    def _add_static(self, peer: StaticPeer) -> None:
        if peer.peer_id.to_base58() == self.peer_id:
            raise ValueError(f"static peer {peer.spec} is this node itself")
        self._dialer.add(peer)

    async def remove_peer(self, peer_id: str) -> None:
        """Stop keeping `peer_id` connected and disconnect it (without a ban)."""
        was_static = self._dialer.remove(peer_id)
        if self._host is not None and self._is_connected(peer_id):
            log.info("disconnecting peer", peer=peer_id, reason="removed", static=was_static)
            await self._close_peer(peer_id)

    async def wait_connected(self, peer_id: str, *, handshake: bool = True) -> None:
        """Until `peer_id` is connected (and, by default, has exchanged status with us)."""
        while True:
            state = self._peers.get(peer_id)
            if state is not None and self._is_connected(peer_id):
                if not handshake:
                    return
                await state.handshake.wait()
                if self._peers.get(peer_id) is state:
                    return
            await self._connections_changed.wait()

    # ------------------------------------------------------------------ internals

    def _is_connected(self, peer_id: str) -> bool:
        if self._host is None:
            return False
        try:
            pid = ID.from_base58(peer_id)
        except Exception:
            return False
        return any(not c.is_closed for c in self._host.get_network().get_connections(pid))

    def _connection_alive(self, stream: INetStream) -> bool:
        """Whether the connection carrying `stream` is still open (not the peer's others)."""
        if self._host is None:
            return False
        muxed = stream.muxed_conn
        return any(
            conn.muxed_conn is muxed and not conn.is_closed
            for conn in self._host.get_network().get_connections(muxed.peer_id)
        )

    def _refusal(self, peer_id: str) -> str | None:
        return refusal_reason(address_of_peer(peer_id), self._allowlist, self.scores, peer_id)

    async def _dial(self, peer_id: ID, addr: multiaddr.Multiaddr) -> None:
        if self._host is None:
            raise NotRunningError("the P2P node is not running")
        # dial_addr, not host.connect: connect() also tries every address the peerstore learned
        # and keeps a 60 s negative cache after a failure, which would delay reconnecting.
        await self._host.get_network().dial_addr(addr, peer_id)

    def _on_connected(self, conn: INetConn) -> None:
        peer = conn.muxed_conn.peer_id
        key = peer.to_base58()
        if key not in self._peers:
            address = address_of_peer(peer) or b""
            direction = getattr(getattr(conn, "direction", None), "name", "unknown").lower()
            self._peers[key] = _PeerState(address, direction, time.time())
            log.info(
                "peer connected",
                peer=key,
                address=to_checksum_address(address) if address else None,
                direction=direction,
            )
            if self._nursery is not None:
                self._nursery.start_soon(self._handshake, key, self._peers[key])
        self._connections_changed.notify()

    def _on_disconnected(self, conn: INetConn) -> None:
        key = conn.muxed_conn.peer_id.to_base58()
        if not self._is_connected(key) and self._peers.pop(key, None) is not None:
            if self._sync is not None:
                self._sync.forget(key)
            log.info("peer disconnected", peer=key)
        self._connections_changed.notify()

    async def _handshake(self, key: str, state: _PeerState) -> None:
        """Exchange status with a new peer; a different chain disconnects it (and bans it)."""
        try:
            for attempt in range(1, HANDSHAKE_ATTEMPTS + 1):
                if self._peers.get(key) is not state or self._sync is None:
                    return
                try:
                    await self._sync.request_status(key)
                    return
                except ChainMismatchError:
                    return
                except SyncError as exc:
                    if attempt == HANDSHAKE_ATTEMPTS:
                        log.warning("status handshake failed", peer=key, error=str(exc))
                        return
                    await trio.sleep(0.2 * attempt)
                except Exception as exc:  # e.g. our own SyncProvider failing: keep running
                    log.error("status handshake failed", peer=key, error=repr(exc))
                    return
        finally:
            state.handshake.set()

    def _record_status(self, peer: str, status: ChainStatus) -> None:
        state = self._peers.get(peer)
        if state is not None:
            state.status = status

    def _penalize(self, peer: str, amount: float, reason: str) -> None:
        banned = self.scores.penalize(peer, amount)
        log.info("peer penalized", peer=peer, reason=reason, score=self.scores.score(peer))
        if banned and self._nursery is not None:
            self._nursery.start_soon(self._drop, peer, f"score too low after: {reason}", False)

    async def _disconnect_mismatched(self, peer: str, reason: str) -> None:
        await self._drop(peer, reason, True)

    async def _drop(self, peer: str, reason: str, ban: bool) -> None:
        if ban:
            self.scores.ban(peer, self.config.ban_seconds)
        remaining = self.scores.ban_remaining(peer)
        log.warning(
            "disconnecting peer", peer=peer, reason=reason, banned_for=round(remaining) or None
        )
        self._permissions_changed.notify()
        await self._close_peer(peer)

    async def _close_peer(self, peer: str) -> None:
        if self._host is None:
            return
        try:
            await self._host.disconnect(ID.from_base58(peer))
        except Exception as exc:  # already gone
            log.debug("disconnect failed", peer=peer, error=repr(exc))

    async def _enforce_allowlist(self) -> None:
        """Drop connected peers that a new allow-list no longer contains."""
        while True:
            await self._permissions_changed.wait()
            for key, state in list(self._peers.items()):
                if state.address not in self._allowlist and self._is_connected(key):
                    log.warning(
                        "disconnecting peer",
                        peer=key,
                        reason="address no longer on the allow-list",
                    )
                    await self._close_peer(key)
