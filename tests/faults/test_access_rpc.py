"""Access security of the JSON-RPC listeners: loopback by default, no admin namespace unless
asked, restrictive CORS, request size limits, per-client rate limits, account permissioning
and read-only (auditor) nodes. Real `medledger node run` processes and real HTTP/WebSocket."""

from __future__ import annotations

import json
import shutil
import socket
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from websockets.exceptions import ConnectionClosed, InvalidStatus
from websockets.sync.client import connect as ws_connect

from genesis.builder import new_consortium
from genesis.schema import AllocAccount, dump_genesis
from node.config import load_config
from node.keystore import write_keystore
from node.ratelimit import DEFAULT_FHIR_LIMIT, DEFAULT_RPC_LIMIT, ClientRateLimiter, RateLimit
from node.rpc.errors import LIMIT_EXCEEDED
from node.rpc.readonly import METHOD_NOT_SUPPORTED
from node.runtime import NodeConfig
from tests.helpers import PASSPHRASE, USER_KEYS, USERS, decode, make_genesis, transfer
from tests.nodeproc import MEDLEDGER, NodeProcess, new_node
from tests.test_rpc_server import running_server

pytestmark = pytest.mark.slow
JSON = {"Content-Type": "application/json"}


def call(url: str, method: str, *params: Any, **headers: str) -> httpx.Response:
    return httpx.post(url, json={"jsonrpc": "2.0", "id": 7, "method": method,
                                 "params": list(params)}, headers=headers, timeout=30)


@pytest.fixture(scope="module")
def permissioned(tmp_path_factory: pytest.TempPathFactory) -> Iterator[NodeProcess]:
    """A node with defaults (but free ports) on a chain with account permissioning on:
    USERS[0] is a member, USERS[1] is funded but not a member."""
    tmp = tmp_path_factory.mktemp("permissioned")
    genesis, keys = new_consortium(
        1, prefund={USERS[0]: 10**24}, alloc={USERS[1]: AllocAccount(balance=10**24)},
        predeploy_system=True, empty_block_period_seconds=1,
    )
    files = tmp / "files"
    files.mkdir()
    (files / "genesis.json").write_text(dump_genesis(genesis))
    write_keystore(files / "validator.json", keys[0], PASSPHRASE, kdf_iterations=2**4)
    (files / "pass.txt").write_text(PASSPHRASE)
    node = NodeProcess(datadir=tmp / "node", genesis=files / "genesis.json",
                       key=files / "validator.json", passphrase=files / "pass.txt").start()
    try:
        yield node
    finally:
        node.stop()


# ------------------------------------------------------------------------------ defaults


def test_defaults_are_loopback_only_and_admin_off() -> None:
    settings = load_config(None, {"node.datadir": "/d", "node.genesis": "/g"}, environ={})
    for name in ("rpc.host", "p2p.host", "metrics.host"):
        assert settings[name] == "127.0.0.1", name
    assert settings["rpc.admin"] is False
    assert settings["rpc.cors_origins"] == []
    assert settings["node.read_only"] is False
    config = NodeConfig(datadir=Path("/d"), genesis=make_genesis(), validator_key=None)
    assert (config.rpc_host, config.p2p_host, config.metrics_host) == ("127.0.0.1",) * 3
    assert config.admin_rpc is False and config.cors_origins == ()
    assert config.rpc_rate_limit == DEFAULT_RPC_LIMIT and DEFAULT_RPC_LIMIT.enabled
    assert DEFAULT_FHIR_LIMIT.enabled
    node_config = settings.node_config(make_genesis(), None)
    assert node_config.rpc_rate_limit == RateLimit(100.0, 200, False)


def _non_loopback_address() -> str | None:
    """An address of this machine that is not loopback (None if it has none)."""
    probe = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    try:
        probe.connect(("10.255.255.255", 1))  # UDP: no packet is sent
        address = probe.getsockname()[0]
    except OSError:
        return None
    finally:
        probe.close()
    return None if address.startswith("127.") else address


def test_running_node_listens_on_loopback_only(permissioned: NodeProcess) -> None:
    endpoints = json.loads((permissioned.datadir / "endpoints.json").read_text())
    assert endpoints["http"].startswith("http://127.0.0.1:")
    port = int(endpoints["http"].rsplit(":", 1)[1])
    ss = subprocess.run(["ss", "-Hltn", f"sport = :{port}"], capture_output=True, text=True)
    if ss.returncode == 0 and ss.stdout.strip():
        assert all(" 127.0.0.1:" in line for line in ss.stdout.strip().splitlines()), ss.stdout
    other = _non_loopback_address()
    if other is not None:
        with pytest.raises(OSError), socket.create_connection((other, port), timeout=3):
            pass


def test_admin_namespace_is_off_by_default(permissioned: NodeProcess) -> None:
    for method in ("admin_peers", "admin_nodeInfo", "admin_addPeer", "admin_snapshot"):
        reply = call(permissioned.http, method).json()
        assert reply["error"]["code"] == -32601, (method, reply)


def test_cors_is_restrictive_by_default(permissioned: NodeProcess) -> None:
    evil = {"Origin": "https://evil.example"}
    reply = call(permissioned.http, "eth_chainId", **evil)
    assert reply.status_code == 200
    assert "access-control-allow-origin" not in reply.headers
    preflight = httpx.options(permissioned.http, headers={
        **evil, "Access-Control-Request-Method": "POST",
        "Access-Control-Request-Headers": "content-type"})
    assert "access-control-allow-origin" not in preflight.headers
    assert "access-control-allow-methods" not in preflight.headers
    # A simple (non-preflighted) cross-site POST cannot carry JSON: refused.
    form = httpx.post(permissioned.http, content=b'{"jsonrpc":"2.0","id":1,"method":"eth_chainId"}',
                      headers={**evil, "Content-Type": "text/plain"})
    assert form.status_code == 415
    ws = permissioned.ws
    with pytest.raises((InvalidStatus, ConnectionClosed)), \
            ws_connect(ws, additional_headers=evil, open_timeout=10) as conn:
        conn.send(json.dumps({"jsonrpc": "2.0", "id": 1, "method": "eth_chainId"}))
        conn.recv(timeout=10)


def test_cors_allows_only_configured_origins() -> None:
    with running_server(cors_origins=("https://ehr.hospital.example",)) as server:
        ok = httpx.post(server.url, json={"jsonrpc": "2.0", "id": 1, "method": "test_echo",
                                          "params": []},
                        headers={"Origin": "https://ehr.hospital.example"})
        assert ok.headers["access-control-allow-origin"] == "https://ehr.hospital.example"
        other = httpx.post(server.url, json={"jsonrpc": "2.0", "id": 1, "method": "test_echo",
                                             "params": []},
                           headers={"Origin": "https://ehr.hospital.example.evil"})
        assert "access-control-allow-origin" not in other.headers


def test_request_size_limit(permissioned: NodeProcess) -> None:
    big = b'{"jsonrpc":"2.0","id":1,"method":"eth_chainId","params":["' + b"a" * (6 << 20) + b'"]}'
    reply = httpx.post(permissioned.http, content=big, headers=JSON, timeout=60)
    assert reply.status_code == 413
    assert "too large" in reply.json()["error"]["message"]
    assert call(permissioned.http, "eth_chainId").status_code == 200  # still serving
    with running_server(max_body_bytes=1024, max_ws_message_bytes=1024) as server:
        payload = {"jsonrpc": "2.0", "id": 1, "method": "test_echo", "params": ["x" * 2000]}
        assert httpx.post(server.url, json=payload).status_code == 413
        with ws_connect(server.ws_url) as conn:  # the WebSocket layer closes: 1009 too big
            conn.send(json.dumps(payload))
            with pytest.raises(ConnectionClosed) as closed:
                conn.recv(timeout=10)
            assert closed.value.rcvd is not None and closed.value.rcvd.code == 1009


# ---------------------------------------------------------------------------- rate limits


def test_token_bucket_refills_and_forgets_old_clients() -> None:
    now = [0.0]
    limiter = ClientRateLimiter(RateLimit(rate=2.0, burst=3), max_clients=2,
                                clock=lambda: now[0])
    assert [limiter.check("10.0.0.1") for _ in range(3)] == [None] * 3
    wait = limiter.check("10.0.0.1")
    assert wait is not None and 0 < wait <= 0.5
    assert limiter.check("10.0.0.2") is None  # another client has its own bucket
    now[0] += 0.5
    assert limiter.check("10.0.0.1") is None  # one token back after 1/rate seconds
    assert limiter.check("127.0.0.1") is None and limiter.check("::1") is None  # exempt
    limiter.check("10.0.0.3")  # a third client evicts the least recently seen
    assert len(limiter._buckets) == 2
    strict = ClientRateLimiter(RateLimit(rate=1.0, burst=1, limit_loopback=True))
    assert strict.check("127.0.0.1") is None and strict.check("127.0.0.1") is not None
    with pytest.raises(ValueError):
        RateLimit(rate=-1)


def test_http_and_ws_rate_limit_per_client() -> None:
    limit = RateLimit(rate=1.0, burst=5, limit_loopback=True)
    with running_server(rate_limit=limit) as server:
        statuses = []
        with httpx.Client(timeout=10) as client:
            for _ in range(30):
                reply = client.post(server.url, json={"jsonrpc": "2.0", "id": 1,
                                                      "method": "test_echo", "params": []})
                statuses.append(reply.status_code)
                if reply.status_code == 429:
                    body = reply.json()
                    assert body["error"]["code"] == LIMIT_EXCEEDED
                    assert "rate limit exceeded" in body["error"]["message"]
                    assert int(reply.headers["retry-after"]) >= 1
        assert statuses[:5] == [200] * 5 and 429 in statuses
        time.sleep(1.2)
        assert httpx.post(server.url, json={"jsonrpc": "2.0", "id": 1, "method": "test_echo",
                                            "params": []}).status_code == 200
    with running_server(rate_limit=RateLimit(rate=0.5, burst=4, limit_loopback=True)) as server:
        answers = []
        with ws_connect(server.ws_url) as conn:  # the connection itself takes a token
            for i in range(10):
                conn.send(json.dumps({"jsonrpc": "2.0", "id": i, "method": "test_echo",
                                      "params": []}))
            for _ in range(10):
                answers.append(json.loads(conn.recv(timeout=10)))
            conn.send(json.dumps([{"jsonrpc": "2.0", "id": "a", "method": "test_echo"},
                                  {"jsonrpc": "2.0", "id": "b", "method": "test_echo"}]))
            batch = json.loads(conn.recv(timeout=10))
        limited = [a for a in answers if "error" in a]
        assert len(answers) - len(limited) >= 3 and limited
        assert {a["error"]["code"] for a in limited} == {LIMIT_EXCEEDED}
        assert sorted(a["id"] for a in answers) == list(range(10))  # ids kept
        assert [a["id"] for a in batch] == ["a", "b"]
        assert all(a["error"]["code"] == LIMIT_EXCEEDED for a in batch)
        # While the bucket is empty a new connection is refused (1013 try again later).
        with pytest.raises((InvalidStatus, ConnectionClosed)), \
                ws_connect(server.ws_url, open_timeout=10) as conn:
            conn.send("{}")
            conn.recv(timeout=10)


def test_loopback_clients_are_exempt_by_default(permissioned: NodeProcess) -> None:
    with httpx.Client(timeout=30) as client:
        for _ in range(DEFAULT_RPC_LIMIT.burst + 20):
            reply = client.post(permissioned.http, json={"jsonrpc": "2.0", "id": 1,
                                                         "method": "eth_chainId"})
            assert reply.status_code == 200


def test_rate_limit_comes_from_the_config_file(tmp_path: Path) -> None:
    path = tmp_path / "node.toml"
    path.write_text('[node]\ndatadir = "d"\ngenesis = "g.json"\n'
                    "[rpc]\nrate_limit = 2.5\nrate_burst = 7\nrate_limit_loopback = true\n")
    config = load_config(path, environ={}).node_config(make_genesis(), None)
    assert config.rpc_rate_limit == RateLimit(2.5, 7, True)
    env = load_config(path, environ={"MEDLEDGER_RPC_RATE_LIMIT": "0"})
    assert env.node_config(make_genesis(), None).rpc_rate_limit.enabled is False
    path.write_text('[node]\ndatadir = "d"\ngenesis = "g.json"\n[rpc]\nrate_burst = 0\n')
    with pytest.raises(ValueError, match="rpc.rate_burst must be positive"):
        load_config(path, environ={})


def test_configured_rate_limit_on_a_running_node(tmp_path: Path) -> None:
    """[rpc] rate_limit from the TOML file reaches the node; its HTTP and WebSocket ports
    share one budget per client."""
    config = tmp_path / "node.toml"
    config.write_text("[rpc]\nrate_limit = 0.2\nrate_burst = 6\nrate_limit_loopback = true\n")
    node = new_node(tmp_path)
    # The start-up probe takes some tokens: afterwards the budget runs out within a few calls.
    node.start("--config", str(config))
    try:
        statuses = [call(node.http, "eth_chainId").status_code for _ in range(12)]
        assert 429 in statuses, statuses
        limited = call(node.http, "eth_chainId")
        assert limited.status_code == 429
        assert limited.json()["error"]["code"] == LIMIT_EXCEEDED
        with pytest.raises((InvalidStatus, ConnectionClosed)), \
                ws_connect(node.ws, open_timeout=10) as conn:  # the other port: same bucket
            conn.send(json.dumps({"jsonrpc": "2.0", "id": 1, "method": "eth_chainId"}))
            conn.recv(timeout=10)
    finally:
        node.stop()


# -------------------------------------------------------------------------- permissioning


def test_non_member_cannot_send_transactions(permissioned: NodeProcess) -> None:
    outsider = transfer(USER_KEYS[1], 0)
    reply = call(permissioned.http, "eth_sendRawTransaction", "0x" + outsider.hex()).json()
    assert "sender account not permitted" in reply["error"]["message"], reply
    member = call(permissioned.http, "eth_sendRawTransaction",
                  "0x" + transfer(USER_KEYS[0], 0).hex()).json()
    tx_hash = member["result"]
    deadline = time.monotonic() + 60
    while permissioned.rpc("eth_getTransactionReceipt", tx_hash) is None:
        assert time.monotonic() < deadline, "member transaction not mined"
        time.sleep(0.2)
    # The outsider's transaction never made it anywhere: not pooled, not mined, no spend.
    outsider_hash = "0x" + _tx_hash(outsider).hex()
    assert permissioned.rpc("eth_getTransactionByHash", outsider_hash) is None
    assert int(str(permissioned.rpc("eth_getTransactionCount", "0x" + USERS[1].hex(),
                                    "latest")), 16) == 0


def _tx_hash(raw: bytes) -> bytes:
    return bytes(decode(raw).hash)


# -------------------------------------------------------------------------- read-only node


def test_read_only_node_refuses_writes(permissioned: NodeProcess, tmp_path: Path) -> None:
    # An auditor's node follows the same chain (here: a copy of the datadir, no network).
    snapshot = tmp_path / "auditor"
    proc = subprocess.run(  # a validator key and --read-only do not go together
        [str(MEDLEDGER), "node", "run", "--datadir", str(tmp_path / "x"),
         "--genesis", str(permissioned.genesis), "--key", str(permissioned.key),
         "--passphrase-file", str(permissioned.passphrase), "--read-only",
         "--rpc-port", "0", "--ws-port", "0"], capture_output=True, text=True, timeout=60)
    assert proc.returncode != 0 and "Traceback" not in proc.stderr
    assert "read-only (auditor) node does not seal" in proc.stderr

    # No admin RPC on this node (so no live snapshot): copy its datadir while it is stopped.
    assert permissioned.stop() == 0
    shutil.copytree(permissioned.datadir, snapshot)
    permissioned.start()
    auditor = subprocess.Popen(
        [str(MEDLEDGER), "node", "run", "--datadir", str(snapshot),
         "--genesis", str(permissioned.genesis), "--read-only", "--rpc-port", "0",
         "--ws-port", "0", "--log-format", "json"],
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, stdin=subprocess.DEVNULL)
    try:
        endpoints = snapshot / "endpoints.json"
        deadline = time.monotonic() + 60
        while not (endpoints.exists()
                   and json.loads(endpoints.read_text()).get("pid") == auditor.pid):
            assert auditor.poll() is None, auditor.stderr.read() if auditor.stderr else ""
            assert time.monotonic() < deadline, "auditor did not start"
            time.sleep(0.05)
        url = json.loads(endpoints.read_text())["http"]
        head = call(url, "eth_blockNumber").json()
        assert "result" in head  # reads work
        raw = "0x" + transfer(USER_KEYS[0], 5).hex()
        refused = call(url, "eth_sendRawTransaction", raw).json()
        assert refused["error"]["code"] == METHOD_NOT_SUPPORTED
        assert "read-only" in refused["error"]["message"]
        vote = call(url, "qbft_proposeValidatorVote", "0x" + "11" * 20, True).json()
        assert vote["error"]["code"] == METHOD_NOT_SUPPORTED
        nonces = [call(url, "eth_getTransactionCount", "0x" + USERS[0].hex(), tag).json()
                  for tag in ("latest", "pending")]
        assert nonces[0]["result"] == nonces[1]["result"]  # nothing was pooled
    finally:
        auditor.terminate()
        auditor.wait(30)
