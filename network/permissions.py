"""Who may connect: the address allow-list, and the noise transport that enforces it.

The check runs right after the noise handshake has authenticated the remote key and before the
muxer is negotiated, so a refused peer never gets a connection, a stream, or a gossip message in,
whichever side dialled.
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING

import structlog
from eth_utils import to_checksum_address
from libp2p.abc import IRawConnection, ISecureConn
from libp2p.crypto.keys import KeyPair
from libp2p.crypto.x25519 import create_new_key_pair as new_x25519_key_pair
from libp2p.peer.id import ID
from libp2p.security.exceptions import HandshakeFailure
from libp2p.security.noise.transport import Transport as NoiseTransport

from network.identity import address_of_peer

if TYPE_CHECKING:
    from genesis.schema import Genesis
    from network.scoring import PeerScores

log = structlog.get_logger("medledger.p2p")


class AllowList:
    """The set of 20-byte addresses allowed on the network; mutable, safe to read from any thread.

    Validators and the genesis `nodeAllowlist` seed it; the node replaces it when the on-chain
    permissioning changes, and subscribers (the P2P node) then drop peers no longer allowed.
    """

    def __init__(self, addresses: Iterable[bytes] = ()) -> None:
        self._lock = threading.Lock()
        self._addresses = self._validated(addresses)
        self._listeners: list[Callable[[], None]] = []

    @classmethod
    def from_genesis(cls, genesis: Genesis) -> AllowList:
        return cls((*genesis.validators, *genesis.node_allowlist))

    @staticmethod
    def _validated(addresses: Iterable[bytes]) -> frozenset[bytes]:
        if isinstance(addresses, bytes | str):
            raise TypeError("addresses must be an iterable of 20-byte addresses")
        result = frozenset(addresses)
        for address in result:
            if not isinstance(address, bytes) or len(address) != 20:
                raise ValueError(f"not a 20-byte address: {address!r}")
        return result

    def __contains__(self, address: object) -> bool:
        return address in self._addresses

    def __len__(self) -> int:
        return len(self._addresses)

    def addresses(self) -> frozenset[bytes]:
        return self._addresses

    def replace(self, addresses: Iterable[bytes]) -> None:
        """Swap in a new set (validated first: a bad entry leaves the old set in place)."""
        new = self._validated(addresses)
        with self._lock:
            changed = new != self._addresses
            self._addresses = new
            listeners = list(self._listeners)
        if changed:
            for listener in listeners:
                listener()

    def subscribe(self, listener: Callable[[], None]) -> Callable[[], None]:
        """Call `listener` (from the replacing thread) after each change; returns an unsubscribe."""
        with self._lock:
            self._listeners.append(listener)

        def unsubscribe() -> None:
            with self._lock:
                if listener in self._listeners:
                    self._listeners.remove(listener)

        return unsubscribe


def refusal_reason(
    address: bytes | None, allowlist: AllowList, scores: PeerScores, peer: str
) -> str | None:
    """Why `peer` may not be connected, or None when it may."""
    if address is None:
        return "identity key is not secp256k1"
    if address not in allowlist:
        return f"address {to_checksum_address(address)} is not on the allow-list"
    remaining = scores.ban_remaining(peer)
    if remaining > 0:
        return f"banned for another {remaining:.0f}s"
    return None


class GatedNoiseTransport(NoiseTransport):
    """Noise (XX) whose handshake also fails for remote keys that are not allowed to connect."""

    def __init__(self, key_pair: KeyPair, allowlist: AllowList, scores: PeerScores) -> None:
        super().__init__(key_pair, noise_privkey=new_x25519_key_pair().private_key)
        self._allowlist = allowlist
        self._scores = scores

    async def secure_inbound(self, conn: IRawConnection) -> ISecureConn:
        secured = await super().secure_inbound(conn)
        await self._admit(secured, "inbound")
        return secured

    async def secure_outbound(self, conn: IRawConnection, peer_id: ID) -> ISecureConn:
        secured = await super().secure_outbound(conn, peer_id)
        await self._admit(secured, "outbound")
        return secured

    async def _admit(self, secured: ISecureConn, direction: str) -> None:
        # The peer id comes from the identity key that signed the noise static key. (The
        # session's get_remote_public_key() is the X25519 noise key, not the identity key.)
        remote = secured.get_remote_peer()
        peer = remote.to_base58()
        address = address_of_peer(remote)
        reason = refusal_reason(address, self._allowlist, self._scores, peer)
        if reason is None:
            return
        log.warning(
            "refused peer",
            peer=peer,
            address=None if address is None else to_checksum_address(address),
            direction=direction,
            reason=reason,
        )
        with contextlib.suppress(Exception):  # already broken: nothing left to release
            await secured.close()
        raise HandshakeFailure(f"peer {peer} refused: {reason}")
