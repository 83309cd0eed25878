"""Configuration of the peer-to-peer layer and the gossip topic names derived from it."""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass

GOSSIP_KINDS = ("tx", "qbft", "block")
DEFAULT_MAX_MESSAGE_BYTES = 4 * 1024 * 1024
HASH_LENGTH = 32


def topic_name(chain_id: int, kind: str) -> str:
    """The gossipsub topic of `kind` on chain `chain_id`: /medledger/<chain_id>/<kind>."""
    if kind not in GOSSIP_KINDS:
        raise ValueError(f"unknown gossip kind {kind!r} (known: {', '.join(GOSSIP_KINDS)})")
    return f"/medledger/{chain_id}/{kind}"


@dataclass(frozen=True)
class NetworkConfig:
    """What the node decides about its P2P endpoint; the tuning fields have safe defaults.

    `static_peers` are full multiaddrs with a /p2p/<peer id> suffix; they are dialled and kept
    connected. Nothing else is ever dialled: no mDNS, no bootstrap list, no relay, no UPnP.
    """

    chain_id: int
    genesis_hash: bytes
    listen_host: str = "127.0.0.1"
    listen_port: int = 0
    static_peers: tuple[str, ...] = ()
    max_message_bytes: int = DEFAULT_MAX_MESSAGE_BYTES
    # Tuning (seconds unless stated otherwise).
    request_timeout: float = 10.0  # each read/write step of a sync request
    handler_timeout: float = 10.0  # a gossip handler slower than this counts as IGNORE
    ban_seconds: float = 60.0  # how long a peer whose score fell too low stays disconnected
    reconnect_max_backoff: float = 30.0
    max_gossip_rate: float = 5000.0  # messages per topic per second accepted from one peer
    outbound_queue_size: int = 1024  # gossip RPCs queued per peer before new ones are dropped

    def __post_init__(self) -> None:
        if not isinstance(self.chain_id, int) or isinstance(self.chain_id, bool):
            raise ValueError("chain_id must be an integer")
        if not 1 <= self.chain_id < 2**63:
            raise ValueError(f"chain_id out of range: {self.chain_id}")
        if not isinstance(self.genesis_hash, bytes) or len(self.genesis_hash) != HASH_LENGTH:
            raise ValueError("genesis_hash must be 32 bytes")
        try:
            ipaddress.ip_address(self.listen_host)
        except ValueError:
            raise ValueError(
                f"listen_host must be an IPv4 or IPv6 address, got {self.listen_host!r}"
            ) from None
        if not 0 <= self.listen_port <= 65535:
            raise ValueError(f"listen_port out of range: {self.listen_port}")
        if isinstance(self.static_peers, str):
            raise ValueError("static_peers must be a sequence of multiaddr strings")
        object.__setattr__(self, "static_peers", tuple(self.static_peers))
        if not 1024 <= self.max_message_bytes <= 64 * 1024 * 1024:
            raise ValueError("max_message_bytes must be between 1 KiB and 64 MiB")
        for name in ("request_timeout", "handler_timeout", "ban_seconds", "reconnect_max_backoff"):
            if not getattr(self, name) > 0:
                raise ValueError(f"{name} must be positive")
        if not self.max_gossip_rate > 0:
            raise ValueError("max_gossip_rate must be positive")
        if self.outbound_queue_size < 32:
            raise ValueError("outbound_queue_size must be at least 32")

    def topic(self, kind: str) -> str:
        return topic_name(self.chain_id, kind)

    @property
    def listen_multiaddr(self) -> str:
        version = ipaddress.ip_address(self.listen_host).version
        return f"/ip{version}/{self.listen_host}/tcp/{self.listen_port}"
