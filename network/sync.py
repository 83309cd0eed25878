"""The `/medledger/sync/1` request/response protocol: status handshake and block download.

One request per stream: the requester writes one length-prefixed RLP frame, the responder
writes one reply frame and closes the stream; the requester then waits for that close before
releasing its end. Every read and write has a timeout. The responder never lets an exception
escape its handler: in py-libp2p 0.8.1 an exception leaving any stream handler cancels every
inbound stream handler of that connection, gossipsub's reader included, which silently stops
gossip from the other side for good (the "stream-close bug").
"""

from __future__ import annotations

import contextlib
import struct
from collections.abc import Awaitable, Callable, Sequence
from typing import Protocol

import structlog
import trio
from libp2p.abc import IHost, INetStream
from libp2p.custom_types import TProtocol
from libp2p.network.stream.exceptions import StreamEOF
from libp2p.peer.id import ID

from network.codec import (
    MAX_REQUEST_BYTES,
    BlocksRequest,
    ChainStatus,
    ErrorReply,
    StatusRequest,
    SyncRequest,
    check_blocks_range,
    decode_reply,
    decode_request,
    encode_blocks_reply,
    encode_error_reply,
    encode_request,
    encode_status_reply,
)
from network.config import NetworkConfig
from network.errors import (
    ChainMismatchError,
    CodecError,
    MessageTooLargeError,
    PeerNotConnectedError,
    SyncError,
)
from network.forkcheck import compare_forks
from network.scoring import PENALTY_MALFORMED

log = structlog.get_logger("medledger.p2p")

SYNC_PROTOCOL = TProtocol("/medledger/sync/1")
MAX_RESPONSE_BYTES = 8 * 1024 * 1024  # soft budget; the first block is always sent
MAX_INFLIGHT_PER_PEER = 8
_FRAME_HEADER = struct.Struct(">I")


class SyncProvider(Protocol):
    """The chain as the sync protocol sees it; the node implements it over its Chain."""

    async def status(self) -> ChainStatus: ...

    async def blocks(self, start: int, count: int) -> list[bytes]: ...


# --------------------------------------------------------------------------- framing


async def _read_exactly(stream: INetStream, n: int) -> bytes:
    buffer = bytearray()
    while len(buffer) < n:
        try:
            chunk = await stream.read(n - len(buffer))
        except StreamEOF:
            chunk = b""
        if not chunk:
            raise SyncError(f"stream closed after {len(buffer)} of {n} bytes")
        buffer.extend(chunk)
    return bytes(buffer)


async def read_frame(stream: INetStream, max_bytes: int, timeout: float) -> bytes:
    """One length-prefixed frame; MessageTooLargeError before reading an oversized body."""
    with trio.fail_after(timeout):
        (length,) = _FRAME_HEADER.unpack(await _read_exactly(stream, _FRAME_HEADER.size))
        if length > max_bytes:
            raise MessageTooLargeError(f"frame of {length} bytes exceeds {max_bytes}")
        return await _read_exactly(stream, length)


async def write_frame(stream: INetStream, payload: bytes, timeout: float) -> None:
    with trio.fail_after(timeout):
        await stream.write(_FRAME_HEADER.pack(len(payload)) + payload)


async def _wait_for_eof(stream: INetStream, timeout: float) -> None:
    """Wait until the responder closes its side; extra bytes mean a broken responder."""
    with trio.fail_after(timeout):
        try:
            extra = await stream.read(1)
        except StreamEOF:
            return
        if extra:
            raise CodecError("responder sent data after its reply")


async def _reset_quietly(stream: INetStream) -> None:
    with trio.CancelScope(shield=True), contextlib.suppress(Exception):
        await stream.reset()  # may fail when the connection is gone already


# --------------------------------------------------------------------------- service


Disconnect = Callable[[str, str], Awaitable[None]]  # (peer id, reason): drop and ban the peer
Penalize = Callable[[str, float, str], None]  # (peer id, points, reason)


class SyncService:
    """Both halves of the sync protocol for one host."""

    def __init__(
        self,
        host: IHost,
        config: NetworkConfig,
        provider: SyncProvider,
        *,
        disconnect: Disconnect,
        penalize: Penalize,
        on_status: Callable[[str, ChainStatus], None],
    ) -> None:
        self._host = host
        self._config = config
        self._provider = provider
        self._disconnect = disconnect
        self._penalize = penalize
        self._on_status = on_status
        self._verified: set[str] = set()  # peers whose status request matched our chain
        self._inflight: dict[str, int] = {}
        self._fork_warned: set[tuple[str, int]] = set()  # (peer, fork block) already logged
        self.max_reply_bytes = MAX_RESPONSE_BYTES + config.max_message_bytes + 1024

    def forget(self, peer: str) -> None:
        """The peer's last connection closed: it must redo the status handshake."""
        self._verified.discard(peer)

    def _matches(self, peer: str, status: ChainStatus, local: ChainStatus) -> str | None:
        if status.chain_id != self._config.chain_id:
            return f"chain id {status.chain_id} differs from ours ({self._config.chain_id})"
        if status.genesis_hash != self._config.genesis_hash:
            return (
                f"genesis {status.genesis_hash.hex()} differs from ours "
                f"({self._config.genesis_hash.hex()})"
            )
        forks = compare_forks(local, status)
        if forks.conflict is not None:
            log.error("peer has another fork schedule", peer=peer, reason=forks.conflict)
            return forks.conflict
        for block, what in forks.pending:
            if (peer, block) not in self._fork_warned:
                self._fork_warned.add((peer, block))
                log.warning("fork schedules differ ahead of the chain", peer=peer,
                            fork_block=block, head=local.head_number, detail=what)
        return None

    # ----------------------------------------------------------------- responder

    async def handle_stream(self, stream: INetStream) -> None:
        """Answer one request; never raises (see the module docstring)."""
        peer = stream.muxed_conn.peer_id.to_base58()
        if self._inflight.get(peer, 0) >= MAX_INFLIGHT_PER_PEER:
            await self._reply_and_close(stream, encode_error_reply("busy"))
            return
        self._inflight[peer] = self._inflight.get(peer, 0) + 1
        try:
            await self._serve(peer, stream)
        except Exception as exc:
            log.warning("sync request failed", peer=peer, error=repr(exc))
            await _reset_quietly(stream)
        finally:
            self._inflight[peer] -= 1
            if not self._inflight[peer]:
                del self._inflight[peer]

    async def _serve(self, peer: str, stream: INetStream) -> None:
        timeout = self._config.request_timeout
        try:
            request = decode_request(await read_frame(stream, MAX_REQUEST_BYTES, timeout))
        except CodecError as exc:
            self._penalize(peer, PENALTY_MALFORMED, f"malformed sync request: {exc}")
            await self._reply_and_close(stream, encode_error_reply("malformed request"))
            return
        except (SyncError, trio.TooSlowError) as exc:
            log.info("sync request not received", peer=peer, error=str(exc) or "timeout")
            await _reset_quietly(stream)
            return
        try:
            reply, mismatch = await self._answer(peer, request)
        except Exception as exc:  # the provider failed: tell the peer instead of vanishing
            log.error("cannot answer sync request", peer=peer, error=repr(exc))
            reply, mismatch = encode_error_reply("internal error"), None
        await self._reply_and_close(stream, reply)
        if mismatch is not None:
            await self._disconnect(peer, mismatch)

    async def _answer(self, peer: str, request: SyncRequest) -> tuple[bytes, str | None]:
        if isinstance(request, StatusRequest):
            local = await self._provider.status()
            mismatch = self._matches(peer, request.status, local)
            if mismatch is not None:
                return encode_error_reply(f"wrong chain: {mismatch}"), f"wrong chain: {mismatch}"
            self._verified.add(peer)
            self._on_status(peer, request.status)
            return encode_status_reply(local), None
        if peer not in self._verified:
            return encode_error_reply("status handshake required"), None
        return encode_blocks_reply(await self._blocks(request)), None

    async def _blocks(self, request: BlocksRequest) -> list[bytes]:
        found = await self._provider.blocks(request.start, request.count)
        blocks: list[bytes] = []
        size = 0
        for block in list(found)[: request.count]:
            if not isinstance(block, bytes) or not block:
                raise TypeError("SyncProvider.blocks must return non-empty bytes")
            if blocks and size + len(block) > MAX_RESPONSE_BYTES:
                break
            if len(block) > self._config.max_message_bytes:
                raise MessageTooLargeError(f"block of {len(block)} bytes cannot be served")
            blocks.append(block)
            size += len(block)
        return blocks

    async def _reply_and_close(self, stream: INetStream, reply: bytes) -> None:
        try:
            await write_frame(stream, reply, self._config.request_timeout)
            await stream.close()
        except Exception:
            await _reset_quietly(stream)

    # ----------------------------------------------------------------- requester

    async def request_status(self, peer: str) -> ChainStatus:
        local = await self._provider.status()
        reply = await self._request(peer, StatusRequest(local))
        if isinstance(reply, ErrorReply):
            raise SyncError(f"peer {peer} refused status: {reply.reason}")
        if not isinstance(reply, ChainStatus):
            self._penalize(peer, PENALTY_MALFORMED, "blocks in reply to a status request")
            raise SyncError(f"peer {peer} sent blocks in reply to a status request")
        mismatch = self._matches(peer, reply, local)
        if mismatch is not None:
            await self._disconnect(peer, f"wrong chain: {mismatch}")
            raise ChainMismatchError(f"peer {peer} is on another chain: {mismatch}")
        self._on_status(peer, reply)
        return reply

    async def request_blocks(self, peer: str, start: int, count: int) -> list[bytes]:
        check_blocks_range(start, count)
        reply = await self._request(peer, BlocksRequest(start, count))
        if isinstance(reply, ErrorReply):
            raise SyncError(f"peer {peer} refused blocks: {reply.reason}")
        if not isinstance(reply, list) or len(reply) > count:
            self._penalize(peer, PENALTY_MALFORMED, "unexpected reply to a blocks request")
            raise SyncError(f"peer {peer} sent an unexpected reply to a blocks request")
        return reply

    async def _request(
        self, peer: str, request: SyncRequest
    ) -> ChainStatus | Sequence[bytes] | ErrorReply:
        try:
            peer_id = ID.from_base58(peer)
        except Exception:
            raise SyncError(f"not a peer id: {peer!r}") from None
        if not self._host.get_network().get_connections(peer_id):
            raise PeerNotConnectedError(f"peer {peer} is not connected")
        timeout = self._config.request_timeout
        try:
            with trio.fail_after(timeout):
                stream = await self._host.new_stream(peer_id, [SYNC_PROTOCOL])
        except trio.TooSlowError:
            raise SyncError(f"peer {peer}: timed out opening a sync stream") from None
        except Exception as exc:
            raise SyncError(f"peer {peer}: cannot open a sync stream: {exc}") from None
        try:
            await write_frame(stream, encode_request(request), timeout)
            reply = decode_reply(await read_frame(stream, self.max_reply_bytes, timeout))
            await _wait_for_eof(stream, timeout)
        except CodecError as exc:
            await _reset_quietly(stream)
            self._penalize(peer, PENALTY_MALFORMED, f"malformed sync reply: {exc}")
            raise SyncError(f"peer {peer} sent a malformed reply: {exc}") from None
        except trio.TooSlowError:
            await _reset_quietly(stream)
            raise SyncError(f"peer {peer}: sync request timed out after {timeout}s") from None
        except SyncError:
            await _reset_quietly(stream)
            raise
        except Exception as exc:
            await _reset_quietly(stream)
            raise SyncError(f"peer {peer}: sync stream failed: {exc!r}") from None
        except BaseException:  # cancelled: release the stream, then let cancellation through
            await _reset_quietly(stream)
            raise
        with contextlib.suppress(Exception):  # both sides are done: nothing is left behind
            await stream.close()
        return reply
