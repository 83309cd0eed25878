"""ClusterBlockstore's REST calls, against a loopback stand-in for IPFS Cluster.

No IPFS Cluster build is installable here, so this stand-in answers as the Cluster 1.x REST API
documents (`POST /add` NDJSON, `POST|DELETE|GET /pins/{cid}`), storing content in a real
EmbeddedBlockstore; it checks the requests the client sends (replication factor, add options).
"""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest

from node.records.blockstore import IntegrityError, NotFoundError
from node.records.cluster import ClusterBlockstore
from node.records.embedded import EmbeddedBlockstore


class ClusterStandIn(BaseHTTPRequestHandler):
    store: EmbeddedBlockstore
    requests: list[tuple[str, str, dict[str, str]]]
    pins: dict[str, dict[str, str]]
    corrupt_add = False

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002
        return

    def _reply(self, status: int, doc: Any) -> None:
        body = json.dumps(doc).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def _route(self, method: str) -> tuple[str, dict[str, str]]:
        url = urlsplit(self.path)
        query = {k: v[-1] for k, v in parse_qs(url.query).items()}
        self.requests.append((method, url.path, query))
        return url.path, query

    def _read_body(self) -> bytes:
        if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
            out = bytearray()
            while size := int(self.rfile.readline().split(b";")[0], 16):
                out += self.rfile.read(size)
                self.rfile.readline()
            self.rfile.readline()
            return bytes(out)
        return self.rfile.read(int(self.headers.get("Content-Length", "0")))

    def do_POST(self) -> None:
        path, query = self._route("POST")
        if path == "/add":
            boundary = self.headers["Content-Type"].split("boundary=")[1].encode()
            body = self._read_body()
            content = body[body.index(b"\r\n\r\n") + 4 : body.rindex(b"\r\n--" + boundary)]
            cid = self.store.put(content + (b"!" if self.corrupt_add else b""))
            self.pins[cid] = query
            line = {"name": "blob", "cid": cid, "size": len(content), "allocations": ["peerA"]}
            body = json.dumps(line).encode() + b"\n"
            self.send_response(200)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)
        elif path.startswith("/pins/"):
            cid = path.removeprefix("/pins/")
            self.pins[cid] = query
            self._reply(200, {"cid": cid, "replication_factor_min": int(query["replication-min"])})
        else:
            self._reply(404, {"code": 404, "message": "not found"})

    def do_DELETE(self) -> None:
        path, _ = self._route("DELETE")
        cid = path.removeprefix("/pins/")
        if self.pins.pop(cid, None) is None:
            self._reply(404, {"code": 404, "message": "pin not found"})
        else:
            self._reply(200, {"cid": cid})

    def do_GET(self) -> None:
        path, _ = self._route("GET")
        cid = path.removeprefix("/pins/")
        if cid not in self.pins:
            self._reply(404, {"code": 404, "message": "cid is not part of the global state"})
            return
        peer_map = {"peerA": {"status": "pinned"}, "peerB": {"status": "pinning"}}
        self._reply(200, {"cid": {"/": cid}, "name": "", "peer_map": peer_map})


@pytest.fixture()
def cluster(tmp_path: Path) -> Iterator[tuple[ClusterBlockstore, type[ClusterStandIn]]]:
    handler = type("Handler", (ClusterStandIn,), {})
    handler.store = EmbeddedBlockstore(tmp_path, durable=False)
    handler.requests, handler.pins = [], {}
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    client = ClusterBlockstore(
        f"http://127.0.0.1:{server.server_address[1]}",
        handler.store,
        replication_min=2,
        replication_max=3,
        retries=0,
    )
    yield client, handler
    client.close()
    server.shutdown()
    server.server_close()


def test_add_pin_status_unpin(cluster: tuple[ClusterBlockstore, type[ClusterStandIn]]) -> None:
    client, handler = cluster
    data = b"record ciphertext" * 40_000
    cid = client.put(data)
    method, path, query = handler.requests[0]
    assert (method, path) == ("POST", "/add")
    assert query["replication-min"] == "2" and query["replication-max"] == "3"
    assert query["cid-version"] == "1" and query["raw-leaves"] == "true"
    assert b"".join(client.get(cid)) == data
    client.pin(cid)
    assert handler.requests[-1][2]["replication-min"] == "2"
    status = client.status(cid)
    assert status.cid == cid and status.pinned_on == 1 and status.peers["peerB"] == "pinning"
    client.unpin(cid)
    with pytest.raises(NotFoundError):
        client.unpin(cid)
    with pytest.raises(NotFoundError):
        client.status(cid)


def test_cid_mismatch_detected(cluster: tuple[ClusterBlockstore, type[ClusterStandIn]]) -> None:
    client, handler = cluster
    handler.corrupt_add = True
    with pytest.raises(IntegrityError):
        client.put(b"some bytes")


def test_replication_bounds_checked(tmp_path: Path) -> None:
    with pytest.raises(ValueError):
        ClusterBlockstore(
            "http://127.0.0.1:9", EmbeddedBlockstore(tmp_path), replication_min=3, replication_max=2
        )
