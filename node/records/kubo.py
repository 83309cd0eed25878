"""Kubo RPC backend (`/api/v0/...`) spoken directly with httpx, streaming both ways.

Why not `ipfshttpclient`: its 0.7 release refuses to talk to Kubo newer than 0.8 and the project
is unmaintained; the handful of RPC calls needed here are simple POSTs. Every put is hashed
locally with the same UnixFS profile as it streams up, and every get as it streams down, so a
node that stored or served other bytes, or used other chunker settings, is caught.
"""

from __future__ import annotations

import json
import secrets
import time
from collections.abc import Callable, Iterator
from typing import Any, TypeVar

import httpx

from node.records.blockstore import (
    Blockstore,
    BlockstoreError,
    ByteSource,
    IntegrityError,
    NotFoundError,
    Stat,
    iter_source,
)
from node.records.cid import CID, CIDError
from node.records.unixfs import DagBuilder, DagProfile

T = TypeVar("T")
_NOT_FOUND_MARKERS = ("not pinned", "not found", "no link named", "failed to get block")


def api_transport(api: str, retries: int) -> tuple[str, httpx.HTTPTransport]:
    """Base URL and transport for an API address: http(s)://..., /ip4/.../tcp/N, or /unix/PATH."""
    if api.startswith(("http://", "https://")):
        return api.rstrip("/"), httpx.HTTPTransport(retries=retries)
    parts = api.split("/")
    if api.startswith("/unix/"):
        return "http://kubo", httpx.HTTPTransport(uds=api[len("/unix") :], retries=retries)
    if len(parts) == 5 and parts[1] in ("ip4", "ip6", "dns", "dns4", "dns6") and parts[3] == "tcp":
        host = f"[{parts[2]}]" if parts[1] == "ip6" else parts[2]
        return f"http://{host}:{int(parts[4])}", httpx.HTTPTransport(retries=retries)
    raise ValueError(f"unsupported API address {api!r}")


def multipart_file(boundary: str, source: ByteSource, builder: DagBuilder) -> Iterator[bytes]:
    """A one-file multipart/form-data body, streamed; every byte also goes through `builder`."""
    yield (
        f"--{boundary}\r\n"
        'Content-Disposition: form-data; name="file"; filename="blob"\r\n'
        "Content-Type: application/octet-stream\r\n\r\n"
    ).encode()
    for piece in iter_source(source):
        builder.write(piece)
        yield piece
    yield f"\r\n--{boundary}--\r\n".encode()


def is_rewindable(source: ByteSource) -> bool:
    return isinstance(source, bytes | bytearray | memoryview) or (
        hasattr(source, "seek") and hasattr(source, "tell")
    )


class KuboBlockstore(Blockstore):
    """A Kubo node's RPC API as a Blockstore (one connection pool, thread-safe)."""

    def __init__(
        self,
        api: str = "http://127.0.0.1:5001",
        *,
        profile: DagProfile | None = None,
        timeout: float = 60.0,
        retries: int = 3,
        backoff: float = 0.25,
        verify: bool = True,
    ) -> None:
        self.profile = profile or DagProfile.kubo_cidv1()
        self.verify = verify
        self.retries = retries
        self.backoff = backoff
        base_url, transport = api_transport(api, retries)
        self._client = httpx.Client(
            base_url=base_url + "/api/v0",
            transport=transport,
            timeout=httpx.Timeout(timeout, connect=min(timeout, 10.0)),
        )

    def close(self) -> None:
        self._client.close()

    # -- plumbing --------------------------------------------------------------------------
    def _retrying(self, what: str, call: Callable[[], T]) -> T:
        """Retry transport failures (not Kubo's answers) with exponential backoff."""
        for attempt in range(self.retries + 1):
            try:
                return call()
            except httpx.TransportError as exc:
                if attempt == self.retries:
                    raise BlockstoreError(f"{what}: Kubo unreachable: {exc!r}") from None
                time.sleep(self.backoff * 2**attempt)
        raise AssertionError("unreachable")

    @staticmethod
    def _raise_for(what: str, response: httpx.Response) -> None:
        if response.status_code == 200:
            return
        body = response.read()
        try:
            message = str(json.loads(body).get("Message", ""))
        except (ValueError, AttributeError):
            message = body[:200].decode("utf-8", "replace")
        text = f"{what}: Kubo answered {response.status_code}: {message}"
        if any(marker in message.lower() for marker in _NOT_FOUND_MARKERS):
            raise NotFoundError(text)
        raise BlockstoreError(text)

    def _rpc(self, what: str, path: str, params: dict[str, Any]) -> Any:
        def call() -> Any:
            response = self._client.post(path, params=params)
            self._raise_for(what, response)
            return response.json()

        return self._retrying(what, call)

    # -- Blockstore ------------------------------------------------------------------------
    def put(self, source: ByteSource, *, pin: bool = True) -> str:
        rewindable = is_rewindable(source)
        start = source.tell() if rewindable and hasattr(source, "tell") else 0
        attempts = self.retries + 1 if rewindable else 1
        for attempt in range(attempts):
            if attempt and hasattr(source, "seek"):
                source.seek(start)  # type: ignore[union-attr]
            try:
                return self._put_once(source, pin)
            except httpx.TransportError as exc:
                if attempt == attempts - 1:
                    raise BlockstoreError(f"add: Kubo unreachable: {exc!r}") from None
                time.sleep(self.backoff * 2**attempt)
        raise AssertionError("unreachable")

    def _put_once(self, source: ByteSource, pin: bool) -> str:
        boundary = secrets.token_hex(16)
        builder = DagBuilder(self.profile)
        params = {
            "cid-version": self.profile.cid_version,
            "raw-leaves": str(self.profile.raw_leaves).lower(),
            "chunker": f"size-{self.profile.chunk_size}",
            "hash": "sha2-256",
            "pin": str(pin).lower(),
            "progress": "false",
        }
        headers = {"Content-Type": f"multipart/form-data; boundary={boundary}"}
        body = multipart_file(boundary, source, builder)
        request = self._client.build_request(
            "POST", "/add", params=params, headers=headers, content=body
        )
        response = self._client.send(request, stream=True)
        try:
            self._raise_for("add", response)
            last: dict[str, Any] | None = None
            for line in response.iter_lines():
                if line.strip():
                    last = json.loads(line)
        finally:
            response.close()
        if not last or "Hash" not in last:
            raise BlockstoreError("add: Kubo returned no CID")
        cid = str(last["Hash"])
        if self.verify and cid != builder.finish().encode():
            raise IntegrityError(
                f"add: Kubo returned {cid}, local hashing gave {builder.finish()} "
                "(different content or chunker/CID settings)"
            )
        return cid

    def get(self, cid: str) -> Iterator[bytes]:
        try:
            parsed = CID.parse(cid)
        except CIDError as exc:
            raise BlockstoreError(str(exc)) from None

        def open_stream() -> httpx.Response:
            request = self._client.build_request("POST", "/cat", params={"arg": cid})
            response = self._client.send(request, stream=True)
            try:
                self._raise_for(f"cat {cid}", response)
            except BlockstoreError:
                response.close()
                raise
            return response

        response = self._retrying(f"cat {cid}", open_stream)
        return self._stream(parsed, response)

    def _stream(self, cid: CID, response: httpx.Response) -> Iterator[bytes]:
        profile = self.profile if self.profile.cid_version == cid.version else None
        builder = DagBuilder(profile or DagProfile.for_cid(cid)) if self.verify else None
        try:
            for piece in response.iter_bytes():
                if builder is not None:
                    builder.write(piece)
                yield piece
        except httpx.TransportError as exc:
            raise BlockstoreError(f"cat {cid}: stream broke: {exc!r}") from None
        finally:
            response.close()
        if builder is not None and builder.finish() != cid:
            raise IntegrityError(f"cat {cid}: received bytes do not hash to the CID")

    def pin(self, cid: str) -> None:
        self._rpc(f"pin/add {cid}", "/pin/add", {"arg": cid, "recursive": "true"})

    def unpin(self, cid: str) -> None:
        self._rpc(f"pin/rm {cid}", "/pin/rm", {"arg": cid, "recursive": "true"})

    def stat(self, cid: str) -> Stat:
        doc = self._rpc(f"block/stat {cid}", "/block/stat", {"arg": cid})
        return Stat(str(doc["Key"]), int(doc["Size"]))

    def id(self) -> dict[str, Any]:
        """The node's identity (`ID`, `Addresses`, `AgentVersion`, ...)."""
        doc = self._rpc("id", "/id", {})
        if not isinstance(doc, dict) or "ID" not in doc:
            raise BlockstoreError("id: unexpected answer from Kubo")
        return doc
