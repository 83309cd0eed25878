"""medledger peer-to-peer layer over py-libp2p: permissioned gossip and block sync.

The node drives it; this package never imports `node`.
"""

from network.codec import (
    MAX_BLOCKS_PER_REQUEST,
    MAX_TX_BATCH_ITEMS,
    ChainStatus,
    decode_tx_batch,
    encode_tx_batch,
    split_tx_batches,
)
from network.config import GOSSIP_KINDS, NetworkConfig, topic_name
from network.errors import (
    ChainMismatchError,
    CodecError,
    MessageTooLargeError,
    NetworkError,
    NodeKeyError,
    NotRunningError,
    PeerNotConnectedError,
    SyncError,
)
from network.gossip import Handler, Validation
from network.host import P2PNode, PeerInfo
from network.identity import (
    address_from_secret,
    address_of_peer,
    load_or_create_node_key,
    peer_id_from_secret,
)
from network.permissions import AllowList
from network.sync import MAX_RESPONSE_BYTES, SYNC_PROTOCOL, SyncProvider

__all__ = [
    "GOSSIP_KINDS",
    "MAX_BLOCKS_PER_REQUEST",
    "MAX_RESPONSE_BYTES",
    "MAX_TX_BATCH_ITEMS",
    "SYNC_PROTOCOL",
    "AllowList",
    "ChainMismatchError",
    "ChainStatus",
    "CodecError",
    "Handler",
    "MessageTooLargeError",
    "NetworkConfig",
    "NetworkError",
    "NodeKeyError",
    "NotRunningError",
    "P2PNode",
    "PeerInfo",
    "PeerNotConnectedError",
    "SyncError",
    "SyncProvider",
    "Validation",
    "address_from_secret",
    "address_of_peer",
    "decode_tx_batch",
    "encode_tx_batch",
    "load_or_create_node_key",
    "peer_id_from_secret",
    "split_tx_batches",
    "topic_name",
]
