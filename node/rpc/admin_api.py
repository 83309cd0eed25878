"""The admin_ JSON-RPC namespace: peers of this node. Off unless the operator enables it."""

from __future__ import annotations

from typing import Any

from node.rpc import formatters as fmt
from node.rpc.dispatch import CallContext, Dispatcher
from node.rpc.errors import SERVER_ERROR, RpcError, invalid_params
from node.rpc.eth_api import client_version
from node.rpc.params import expect_params


class AdminApi:
    def __init__(self, p2p: Any, chain_id: int, genesis_hash: bytes) -> None:
        self.p2p = p2p
        self.chain_id = chain_id
        self.genesis_hash = genesis_hash

    def install(self, dispatcher: Dispatcher) -> None:
        dispatcher.register("admin_peers", self.peers)
        dispatcher.register("admin_nodeInfo", self.node_info)
        dispatcher.register("admin_addPeer", self.add_peer)
        dispatcher.register("admin_removePeer", self.remove_peer)

    async def peers(self, params: list[Any], ctx: CallContext) -> list[dict[str, Any]]:
        expect_params(params, 0, 0)
        out = []
        for peer in self.p2p.peers():
            status = peer.status
            out.append({
                "id": peer.peer_id,
                "address": fmt.address(peer.address),
                "network": {"remoteAddresses": list(peer.addrs), "inbound": peer.direction
                            == "inbound", "static": peer.static},
                "connectedSince": int(peer.connected_since),
                "score": peer.score,
                "head": None if status is None else {
                    "number": fmt.quantity(status.head_number),
                    "hash": fmt.data(status.head_hash),
                },
            })
        return out

    async def node_info(self, params: list[Any], ctx: CallContext) -> dict[str, Any]:
        expect_params(params, 0, 0)
        return {
            "id": self.p2p.peer_id,
            "name": client_version(),
            "address": fmt.address(self.p2p.address),
            "listenAddrs": list(self.p2p.listen_addrs),
            "protocols": {"medledger": {
                "chainId": self.chain_id, "genesis": fmt.data(self.genesis_hash),
            }},
        }

    async def add_peer(self, params: list[Any], ctx: CallContext) -> bool:
        (maddr,) = expect_params(params, 1, 1)
        if not isinstance(maddr, str) or "/p2p/" not in maddr:
            raise invalid_params("invalid argument 0: expected a multiaddr ending in /p2p/<id>")
        try:
            await self.p2p.add_peer(maddr)
        except ValueError as exc:
            raise invalid_params(f"invalid argument 0: {exc}") from exc
        except Exception as exc:  # dial problems are the caller's information, not a crash
            raise RpcError(SERVER_ERROR, f"cannot add peer: {exc}") from exc
        return True

    async def remove_peer(self, params: list[Any], ctx: CallContext) -> bool:
        (peer_id,) = expect_params(params, 1, 1)
        if not isinstance(peer_id, str) or not peer_id:
            raise invalid_params("invalid argument 0: expected a peer id")
        candidate = peer_id.rsplit("/p2p/", 1)[-1]
        try:
            await self.p2p.remove_peer(candidate)
        except ValueError as exc:
            raise invalid_params(f"invalid argument 0: {exc}") from exc
        return True
