"""Test daemon: real Kubo v0.22 (PyPI `kubo-python`'s libkubo) behind a minimal Kubo RPC shim.

No installable package ships Kubo's HTTP RPC server here: `kubo-python` embeds real Kubo as a
shared library with a C API only (CreateRepo, RunNode, AddFile, Download, PinCID, UnpinCID,
GetNodeID, ...). This process runs that real node and translates the RPC calls the record store
uses onto it, so KuboBlockstore is exercised against Kubo's own importer, blockstore and pinner.
What the shim adds itself: HTTP/multipart handling, the JSON shapes (from Kubo's RPC docs),
existence checks and `block/stat` read from the node's flatfs directory (Kubo's Download and
PinCID wait forever for absent content). libkubo's AddFile takes no options, so only Kubo's
default add settings (CIDv0, 256 KiB chunks) are accepted; other settings get an error.

Safety: refuses to run unless the only network interface is loopback (start it inside
`unshare --net`); the repo gets no bootstrap peers, no mDNS, no routing, loopback-only
addresses, QUIC off, and a private-network swarm.key (LIBP2P_FORCE_PNET=1 must be set).
Serves HTTP on a Unix socket, which reaches out of the network namespace through the filesystem.
"""

from __future__ import annotations

import argparse
import base64
import ctypes
import json
import mmap
import os
import secrets
import signal
import socket
import socketserver
import sys
import tempfile
import threading
from http.server import BaseHTTPRequestHandler
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

from node.records.cid import CID, CIDError

AGENT = "kubo/0.22.0 (libkubo from kubo-python, medledger test RPC shim)"


def safe_config(repo: Path) -> None:
    path = repo / "config"
    config = json.loads(path.read_text())
    config["Bootstrap"] = []
    config.setdefault("Discovery", {}).setdefault("MDNS", {})["Enabled"] = False
    config.setdefault("Routing", {})["Type"] = "none"
    config["Addresses"].update(
        {
            "Swarm": ["/ip4/127.0.0.1/tcp/0"],
            "API": "/ip4/127.0.0.1/tcp/0",
            "Gateway": "/ip4/127.0.0.1/tcp/0",
            "Announce": [],
            "AppendAnnounce": [],
        }
    )
    transports = config.setdefault("Swarm", {}).setdefault("Transports", {})
    transports.setdefault("Network", {}).update(
        {"QUIC": False, "WebTransport": False, "WebRTCDirect": False, "Websocket": False}
    )
    config.setdefault("AutoNAT", {})["ServiceMode"] = "disabled"
    path.write_text(json.dumps(config, indent=2))
    key = "/key/swarm/psk/1.0.0/\n/base16/\n" + secrets.token_hex(32) + "\n"
    (repo / "swarm.key").write_text(key)


class LibKubo:
    """ctypes binding of the few libkubo calls used; one call at a time."""

    def __init__(self, lib_path: str, repo: Path) -> None:
        self.lib = ctypes.CDLL(lib_path)
        for name in ("AddFile", "GetNodeID", "GetNodeMultiAddrs"):
            getattr(self.lib, name).restype = ctypes.c_char_p
        self.lib.AddFile.argtypes = [ctypes.c_char_p, ctypes.c_char_p, ctypes.c_bool]
        self.repo = repo
        self._repo = str(repo).encode()
        self.lock = threading.Lock()

    def create(self) -> None:
        if self.lib.CreateRepo(self._repo) < 0:
            raise RuntimeError("CreateRepo failed")

    def run(self) -> None:
        if self.lib.RunNode(self._repo) < 0:
            raise RuntimeError("RunNode failed")

    def add(self, path: str) -> str:
        with self.lock:
            out = self.lib.AddFile(self._repo, path.encode(), False)
        if not out:
            raise RuntimeError("AddFile failed")
        return out.decode()

    def download(self, cid: str, dest: str) -> int:
        with self.lock:
            return int(self.lib.Download(self._repo, cid.encode(), dest.encode()))

    def pin(self, cid: str) -> int:
        with self.lock:
            return int(self.lib.PinCID(self._repo, cid.encode()))

    def unpin(self, cid: str) -> int:
        with self.lock:
            return int(self.lib.UnpinCID(self._repo, cid.encode()))

    def node_id(self) -> str:
        with self.lock:
            return (self.lib.GetNodeID(self._repo) or b"").decode().removeprefix("ID:")

    def addrs(self) -> list[str]:
        with self.lock:
            return json.loads(self.lib.GetNodeMultiAddrs(self._repo) or b"[]")

    def block_path(self, cid: CID) -> Path:
        key = base64.b32encode(cid.multihash).decode().rstrip("=")
        return self.repo / "blocks" / key[-3:-1] / f"{key}.data"

    def cleanup(self) -> None:
        self.lib.CleanupNode(self._repo)


class Handler(BaseHTTPRequestHandler):
    kubo: LibKubo
    protocol_version = "HTTP/1.1"

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002
        return

    def _send(self, status: int, body: bytes, ctype: str = "application/json") -> None:
        self.send_response(status)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def _json(self, doc: Any) -> None:
        self._send(200, json.dumps(doc).encode() + b"\n")

    def _error(self, message: str, status: int = 500) -> None:
        body = json.dumps({"Message": message, "Code": 0, "Type": "error"}).encode()
        self._send(status, body + b"\n")

    def _body_to(self, handle: Any) -> None:
        if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
            while True:
                size = int(self.rfile.readline().split(b";")[0].strip(), 16)
                if size == 0:
                    while self.rfile.readline() not in (b"\r\n", b"\n", b""):
                        pass
                    return
                remaining = size
                while remaining:
                    piece = self.rfile.read(min(remaining, 1 << 20))
                    if not piece:
                        raise ConnectionError("body ended early")
                    handle.write(piece)
                    remaining -= len(piece)
                self.rfile.readline()
        remaining = int(self.headers.get("Content-Length", "0"))
        while remaining:
            piece = self.rfile.read(min(remaining, 1 << 20))
            if not piece:
                raise ConnectionError("body ended early")
            handle.write(piece)
            remaining -= len(piece)

    def _local_cid(self, arg: str) -> CID | None:
        try:
            cid = CID.parse(arg)
        except CIDError as exc:
            self._error(f"invalid path {arg!r}: {exc}")
            return None
        if not self.kubo.block_path(cid).is_file():
            self._error(f"block was not found locally (offline): ipld: could not find {arg}")
            return None
        return cid

    def do_GET(self) -> None:
        self._error("405 - Method Not Allowed", 405)

    def do_POST(self) -> None:
        url = urlsplit(self.path)
        query = {k: v[-1] for k, v in parse_qs(url.query).items()}
        command = url.path.removeprefix("/api/v0/")
        handler = {
            "add": self._add,
            "cat": self._cat,
            "pin/add": self._pin_add,
            "pin/rm": self._pin_rm,
            "block/stat": self._block_stat,
            "id": self._id,
        }.get(command)
        if handler is None or not url.path.startswith("/api/v0/"):
            self._send(404, b"404 page not found\n", "text/plain")
            return
        handler(query)

    def _add(self, query: dict[str, str]) -> None:
        unsupported = {
            "cid-version": ("0",),
            "raw-leaves": ("false",),
            "chunker": ("size-262144",),
            "hash": ("sha2-256",),
        }
        for name, allowed in unsupported.items():
            if name in query and query[name] not in allowed:
                # Drain the body so the client sees the answer, not a reset connection.
                with open(os.devnull, "wb") as sink:
                    self._body_to(sink)
                self._error(f"libkubo AddFile only does Kubo's default add; {name}={query[name]}")
                return
        match = (self.headers.get("Content-Type") or "").split("boundary=")
        if len(match) != 2:
            self._error("expected multipart/form-data with a boundary", 400)
            return
        boundary = match[1].strip().strip('"').encode()
        with tempfile.TemporaryDirectory(dir=self.kubo.repo.parent) as tmp:
            raw_path = Path(tmp) / "body"
            with open(raw_path, "wb") as handle:
                self._body_to(handle)
            file_path = Path(tmp) / "file"
            if not _extract_first_part(raw_path, file_path, boundary):
                self._error("malformed multipart body", 400)
                return
            cid = self.kubo.add(str(file_path))
        if query.get("pin", "true") == "false":
            self.kubo.unpin(cid)
        self._json({"Name": "blob", "Hash": cid})

    def _cat(self, query: dict[str, str]) -> None:
        arg = query.get("arg", "")
        if self._local_cid(arg) is None:
            return
        with tempfile.TemporaryDirectory(dir=self.kubo.repo.parent) as tmp:
            dest = str(Path(tmp) / "out")
            if self.kubo.download(arg, dest) != 0:
                self._error(f"libkubo Download failed for {arg}")
                return
            size = os.path.getsize(dest)
            self.send_response(200)
            self.send_header("Content-Type", "text/plain")
            self.send_header("X-Stream-Output", "1")
            self.send_header("Content-Length", str(size))
            self.end_headers()
            with open(dest, "rb") as handle:
                while piece := handle.read(1 << 20):
                    self.wfile.write(piece)

    def _pin_add(self, query: dict[str, str]) -> None:
        arg = query.get("arg", "")
        if self._local_cid(arg) is None:
            return
        if self.kubo.pin(arg) != 0:
            self._error(f"pin: libkubo PinCID failed for {arg}")
            return
        self._json({"Pins": [arg]})

    def _pin_rm(self, query: dict[str, str]) -> None:
        arg = query.get("arg", "")
        if self.kubo.unpin(arg) != 0:
            self._error("not pinned or pinned indirectly")
            return
        self._json({"Pins": [arg]})

    def _block_stat(self, query: dict[str, str]) -> None:
        arg = query.get("arg", "")
        cid = self._local_cid(arg)
        if cid is None:
            return
        self._json({"Key": arg, "Size": self.kubo.block_path(cid).stat().st_size})

    def _id(self, query: dict[str, str]) -> None:
        node_id = self.kubo.node_id()
        addrs = [f"{a}/p2p/{node_id}" for a in self.kubo.addrs()]
        self._json({"ID": node_id, "Addresses": addrs, "AgentVersion": AGENT})


def _extract_first_part(raw_path: Path, out_path: Path, boundary: bytes) -> bool:
    """Copy the content of the first multipart part of `raw_path` into `out_path`."""
    with open(raw_path, "rb") as handle:
        if os.path.getsize(raw_path) == 0:
            return False
        with mmap.mmap(handle.fileno(), 0, access=mmap.ACCESS_READ) as view:
            opener = b"--" + boundary + b"\r\n"
            if view[: len(opener)] != opener:
                return False
            start = view.find(b"\r\n\r\n", len(opener))
            end = view.rfind(b"\r\n--" + boundary + b"--")
            if start < 0 or end < start + 4:
                return False
            with open(out_path, "wb") as out:
                for offset in range(start + 4, end, 1 << 20):
                    out.write(view[offset : min(offset + (1 << 20), end)])
    return True


class UnixHTTPServer(socketserver.ThreadingMixIn, socketserver.UnixStreamServer):
    daemon_threads = True


def only_loopback() -> bool:
    """True inside a network namespace whose only interface is loopback."""
    return [name for _, name in socket.if_nameindex()] == ["lo"]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--lib", required=True)
    parser.add_argument("--repo", required=True, type=Path)
    parser.add_argument("--socket", required=True)
    args = parser.parse_args()
    if not only_loopback():
        print("refusing to start: run inside `unshare --net` (loopback only)", file=sys.stderr)
        return 2
    if os.environ.get("LIBP2P_FORCE_PNET") != "1":
        print("refusing to start: LIBP2P_FORCE_PNET=1 is required", file=sys.stderr)
        return 2
    kubo = LibKubo(args.lib, args.repo)
    kubo.create()
    safe_config(args.repo)
    kubo.run()
    Handler.kubo = kubo
    server = UnixHTTPServer(args.socket, Handler)
    signal.signal(signal.SIGTERM, lambda *_: threading.Thread(target=server.shutdown).start())
    print(f"ready {kubo.node_id()}", flush=True)
    try:
        server.serve_forever()
    finally:
        server.server_close()
        kubo.cleanup()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
