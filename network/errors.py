"""Errors raised by the peer-to-peer layer; all derive from NetworkError (catch that one)."""

from __future__ import annotations


class NetworkError(Exception):
    """Base class for peer-to-peer failures."""


class NotRunningError(NetworkError):
    """The P2P node is not started (or already stopped)."""


class CodecError(NetworkError, ValueError):
    """Bytes from the wire (or given for the wire) do not form a valid message."""


class MessageTooLargeError(CodecError):
    """A payload exceeds the configured size limit."""


class NodeKeyError(NetworkError, ValueError):
    """The node key file is unreadable or does not hold a valid secp256k1 key."""


class SyncError(NetworkError):
    """A sync request failed: timeout, malformed response, error reply or lost peer."""


class PeerNotConnectedError(SyncError):
    """The peer has no open connection; sync requests never dial on their own."""


class ChainMismatchError(SyncError):
    """The peer runs a different chain (chain id or genesis hash); it has been disconnected."""
