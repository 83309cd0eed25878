"""Network building blocks without sockets: node keys, scores, config, codecs, peer addresses."""

from __future__ import annotations

import os
import stat
import threading
from pathlib import Path

import pytest
import rlp
from eth_keys import keys

from network import (
    CodecError,
    MessageTooLargeError,
    NetworkConfig,
    NodeKeyError,
    address_from_secret,
    address_of_peer,
    decode_tx_batch,
    encode_tx_batch,
    load_or_create_node_key,
    peer_id_from_secret,
    split_tx_batches,
    topic_name,
)
from network.dialer import StaticPeer
from network.scoring import PeerScores

GENESIS = b"\x01" * 32


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_node_key_created_once_with_private_mode(tmp_path: Path) -> None:
    path = tmp_path / "datadir" / "p2p.key"
    key = load_or_create_node_key(path)
    assert len(key) == 32
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert path.read_text().strip() == key.hex()
    assert load_or_create_node_key(path) == key  # stable across restarts


def test_node_key_concurrent_first_start_agrees(tmp_path: Path) -> None:
    path = tmp_path / "p2p.key"
    results: list[bytes] = []
    threads = [
        threading.Thread(target=lambda: results.append(load_or_create_node_key(path)))
        for _ in range(8)
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(set(results)) == 1 and len(results) == 8


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ("", "expected 64 hex digits"),
        ("zz" * 32, "expected 64 hex digits"),
        ("ab" * 31, "expected 64 hex digits"),
        ("00" * 32, "not a valid secp256k1 private key"),
        ("ff" * 32, "not a valid secp256k1 private key"),  # above the curve order
    ],
)
def test_node_key_rejects_bad_files(tmp_path: Path, content: str, message: str) -> None:
    path = tmp_path / "p2p.key"
    path.write_text(content)
    with pytest.raises(NodeKeyError, match=message):
        load_or_create_node_key(path)
    assert path.read_text() == content  # never overwritten


def test_node_key_accepts_0x_prefix_and_validator_keys(tmp_path: Path) -> None:
    secret = os.urandom(32)
    path = tmp_path / "p2p.key"
    path.write_text("0x" + secret.hex().upper() + "\n")
    path.chmod(0o600)
    assert load_or_create_node_key(path) == secret


def test_identity_maps_to_the_ethereum_address() -> None:
    secret = bytes.fromhex("4c0883a69102937d6231471b5dbb6204fe5129617082792ae468d01a3f362318")
    expected = keys.PrivateKey(secret).public_key.to_canonical_address()
    assert address_from_secret(secret) == expected
    peer_id = peer_id_from_secret(secret)
    assert peer_id.startswith("16Uiu2")  # an inlined secp256k1 key
    assert address_of_peer(peer_id) == expected
    assert address_of_peer("12D3KooWD3eckifWpRn9wQpMG9R9hX3sD158z7EqHWmweQAJU5SA") is None
    assert address_of_peer("garbage") is None


def test_scores_decay_and_ban() -> None:
    clock = FakeClock()
    scores = PeerScores(half_life=60, ban_threshold=-45, ban_seconds=30, clock=clock)
    assert scores.score("p") == 0
    assert not scores.penalize("p", 20)
    assert scores.score("p") == -20
    clock.now += 60
    assert scores.score("p") == pytest.approx(-10)
    clock.now += 6000
    assert scores.score("p") == 0  # recovered and forgotten
    for _ in range(4):
        banned = scores.penalize("p", 10)
    assert not banned
    assert scores.penalize("p", 10)  # -50 <= -45
    assert scores.ban_remaining("p") == 30
    assert not scores.penalize("p", 10)  # already banned
    clock.now += 31
    assert scores.ban_remaining("p") == 0 and scores.score("p") == 0


def test_config_validation_and_topics() -> None:
    config = NetworkConfig(chain_id=1337, genesis_hash=GENESIS, static_peers=["/ip4/1.2.3.4"])  # type: ignore[arg-type]
    assert config.static_peers == ("/ip4/1.2.3.4",)
    assert config.listen_multiaddr == "/ip4/127.0.0.1/tcp/0"
    assert NetworkConfig(1, GENESIS, listen_host="::1").listen_multiaddr == "/ip6/::1/tcp/0"
    assert config.topic("qbft") == topic_name(1337, "qbft") == "/medledger/1337/qbft"
    for bad in (
        {"chain_id": 0},
        {"genesis_hash": b"\x01" * 31},
        {"listen_host": "localhost"},
        {"listen_port": 70000},
        {"max_message_bytes": 10},
        {"request_timeout": 0},
        {"outbound_queue_size": 8},
        {"static_peers": "/ip4/127.0.0.1/tcp/1"},
    ):
        with pytest.raises(ValueError):
            NetworkConfig(**{"chain_id": 1, "genesis_hash": GENESIS, **bad})  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="unknown gossip kind"):
        topic_name(1, "blocks")


def test_static_peer_parsing() -> None:
    peer_id = peer_id_from_secret(os.urandom(32))
    peer = StaticPeer.parse(f"/ip4/10.0.0.5/tcp/30303/p2p/{peer_id}")
    assert peer.peer_id.to_base58() == peer_id and str(peer.addr) == "/ip4/10.0.0.5/tcp/30303"
    assert str(StaticPeer.parse(f"/dns4/node-b/tcp/1/p2p/{peer_id}").addr) == "/dns4/node-b/tcp/1"
    for bad in (
        "/ip4/10.0.0.5/tcp/30303",
        f"/ip4/10.0.0.5/udp/1/p2p/{peer_id}",
        f"/ip4/10.0.0.5/tcp/1/ws/p2p/{peer_id}",
        f"/p2p/{peer_id}",
        "nonsense",
    ):
        with pytest.raises(ValueError):
            StaticPeer.parse(bad)


def test_tx_batches() -> None:
    txs = [os.urandom(n) for n in (1, 55, 56, 200, 70_000)]
    assert decode_tx_batch(encode_tx_batch(txs)) == txs
    with pytest.raises(CodecError):
        encode_tx_batch([])
    with pytest.raises(CodecError):
        encode_tx_batch([b"ok", b""])
    with pytest.raises(MessageTooLargeError):
        encode_tx_batch([b"x"] * 11, max_items=10)
    for bad in (
        b"",
        b"\x80",  # a byte string, not a list
        rlp.encode([]),  # empty batch
        rlp.encode([b"tx", [b"nested"]]),
        rlp.encode([b"tx", b""]),
        rlp.encode([b"tx"]) + b"\x00",
        b"\xc1" * 5000,
    ):
        with pytest.raises(CodecError):
            decode_tx_batch(bad)
    with pytest.raises(CodecError):
        decode_tx_batch(rlp.encode([b"t"] * 11), max_items=10)
    with pytest.raises(MessageTooLargeError):
        decode_tx_batch(rlp.encode([b"t" * 2000]), max_bytes=1024)


def test_split_tx_batches_respects_limits_and_order() -> None:
    txs = [bytes([i]) * 300 for i in range(100)]
    batches = split_tx_batches(txs, max_bytes=4096)
    assert all(len(batch) <= 4096 for batch in batches)
    assert [tx for batch in batches for tx in decode_tx_batch(batch)] == txs
    assert len(batches) == 8  # 13 transactions of 303 bytes fit in 4096 with the list prefix
    assert len(split_tx_batches(txs, max_items=30)) == 4
    assert split_tx_batches([]) == []
    with pytest.raises(MessageTooLargeError):
        split_tx_batches([b"x" * 5000], max_bytes=4096)
