"""IPFS Cluster REST backend: adds and pins go through the cluster with a replication factor.

The cluster decides which peers hold a record (`replication-min`/`replication-max`), so a
hospital's records survive the loss of its own IPFS node. Cluster does not serve content:
reads and `stat` go to an IPFS node (normally the Kubo RPC of the local cluster peer).
Responses are accepted in both the 1.x shape (CIDs as strings) and the older `{"/": cid}` one.
"""

from __future__ import annotations

import json
import secrets
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any, TypeVar

import httpx

from node.records.blockstore import (
    Blockstore,
    BlockstoreError,
    ByteSource,
    IntegrityError,
    NotFoundError,
    Stat,
)
from node.records.kubo import api_transport, is_rewindable, multipart_file
from node.records.unixfs import DagBuilder, DagProfile

T = TypeVar("T")


def _cid_field(value: Any) -> str:
    if isinstance(value, dict):
        value = value.get("/")
    if not isinstance(value, str) or not value:
        raise BlockstoreError("cluster answer lacks a CID")
    return value


@dataclass(frozen=True)
class PinStatus:
    """Cluster-wide state of one pin: status per cluster peer ("pinned", "pinning", ...)."""

    cid: str
    peers: dict[str, str]

    @property
    def pinned_on(self) -> int:
        return sum(1 for status in self.peers.values() if status == "pinned")


class ClusterBlockstore(Blockstore):
    """Writes and pins via IPFS Cluster's REST API, reads via `ipfs` (a Blockstore)."""

    def __init__(
        self,
        api: str,
        ipfs: Blockstore,
        *,
        replication_min: int = 2,
        replication_max: int = 3,
        profile: DagProfile | None = None,
        timeout: float = 120.0,
        retries: int = 3,
        backoff: float = 0.25,
        auth: tuple[str, str] | None = None,
    ) -> None:
        if not (replication_min == replication_max == -1) and not (
            1 <= replication_min <= replication_max
        ):
            raise ValueError("need 1 <= replication_min <= replication_max (or both -1: all peers)")
        self.ipfs = ipfs
        self.replication_min = replication_min
        self.replication_max = replication_max
        self.profile = profile or DagProfile.kubo_cidv1()
        self.retries = retries
        self.backoff = backoff
        base_url, transport = api_transport(api, retries)
        self._client = httpx.Client(
            base_url=base_url,
            transport=transport,
            timeout=httpx.Timeout(timeout, connect=min(timeout, 10.0)),
            auth=auth,
        )

    def close(self) -> None:
        self._client.close()
        self.ipfs.close()

    def _replication(self) -> dict[str, Any]:
        return {"replication-min": self.replication_min, "replication-max": self.replication_max}

    def _retrying(self, what: str, call: Callable[[], T], attempts: int | None = None) -> T:
        attempts = self.retries + 1 if attempts is None else attempts
        for attempt in range(attempts):
            try:
                return call()
            except httpx.TransportError as exc:
                if attempt == attempts - 1:
                    raise BlockstoreError(f"{what}: cluster unreachable: {exc!r}") from None
                time.sleep(self.backoff * 2**attempt)
        raise AssertionError("unreachable")

    @staticmethod
    def _check(what: str, response: httpx.Response) -> None:
        if response.status_code < 300:
            return
        body = response.read()
        try:
            message = str(json.loads(body).get("message", ""))
        except (ValueError, AttributeError):
            message = body[:200].decode("utf-8", "replace")
        text = f"{what}: cluster answered {response.status_code}: {message}"
        if response.status_code == 404 or "not found" in message.lower():
            raise NotFoundError(text)
        raise BlockstoreError(text)

    def put(self, source: ByteSource, *, pin: bool = True) -> str:
        """Add through the cluster (which pins with the replication factor); verify the CID."""
        if not pin:
            raise BlockstoreError("cluster adds always pin; use the IPFS backend for unpinned data")
        start = source.tell() if hasattr(source, "tell") and hasattr(source, "seek") else 0

        def call() -> str:
            if hasattr(source, "seek"):
                source.seek(start)  # type: ignore[union-attr]
            return self._add_once(source)

        return self._retrying("add", call, None if is_rewindable(source) else 1)

    def _add_once(self, source: ByteSource) -> str:
        boundary = secrets.token_hex(16)
        builder = DagBuilder(self.profile)
        params = {
            **self._replication(),
            "cid-version": self.profile.cid_version,
            "raw-leaves": str(self.profile.raw_leaves).lower(),
            "chunker": f"size-{self.profile.chunk_size}",
            "hash": "sha2-256",
            "stream-channels": "true",
        }
        headers = {"Content-Type": f"multipart/form-data; boundary={boundary}"}
        request = self._client.build_request(
            "POST",
            "/add",
            params=params,
            headers=headers,
            content=multipart_file(boundary, source, builder),
        )
        response = self._client.send(request, stream=True)
        try:
            self._check("add", response)
            cid: str | None = None
            for line in response.iter_lines():
                if not line.strip():
                    continue
                doc = json.loads(line)
                for item in doc if isinstance(doc, list) else [doc]:
                    cid = _cid_field(item.get("cid"))
        finally:
            response.close()
        if cid is None:
            raise BlockstoreError("add: cluster returned no CID")
        if cid != builder.finish().encode():
            raise IntegrityError(
                f"add: cluster returned {cid}, local hashing gave {builder.finish()}"
            )
        return cid

    def get(self, cid: str) -> Iterator[bytes]:
        return self.ipfs.get(cid)

    def stat(self, cid: str) -> Stat:
        return self.ipfs.stat(cid)

    def pin(self, cid: str) -> None:
        def call() -> None:
            self._check(f"pin {cid}", self._client.post(f"/pins/{cid}", params=self._replication()))

        self._retrying(f"pin {cid}", call)

    def unpin(self, cid: str) -> None:
        def call() -> None:
            self._check(f"unpin {cid}", self._client.delete(f"/pins/{cid}"))

        self._retrying(f"unpin {cid}", call)

    def status(self, cid: str) -> PinStatus:
        def call() -> PinStatus:
            response = self._client.get(f"/pins/{cid}")
            self._check(f"status {cid}", response)
            doc = response.json()
            peers = {
                str(peer): str(info.get("status", "unknown"))
                for peer, info in (doc.get("peer_map") or {}).items()
            }
            return PinStatus(_cid_field(doc.get("cid")), peers)

        return self._retrying(f"status {cid}", call)
