"""Node keys encrypted at rest: resolution order, legacy plain keys, the node run options."""

from __future__ import annotations

import json
import os
import signal
import stat
import subprocess
import sys
import time
from pathlib import Path

import pytest
from click.testing import CliRunner

from network import peer_id_from_secret
from node.cli import main
from node.keystore import read_keystore, write_keystore
from node.nodekey import NODE_KEYSTORE_FILE, NodeKeyError, read_node_key, resolve_node_key
from tests.helpers import PASSPHRASE, write_node_files

NODE_KEY = bytes.fromhex("5c" * 32)


def _passphrase(value: str | None = PASSPHRASE):  # type: ignore[no-untyped-def]
    return lambda: value


def test_explicit_keystore_is_decrypted(tmp_path: Path) -> None:
    path = tmp_path / "node.json"
    write_keystore(path, NODE_KEY, PASSPHRASE, kdf_iterations=16)
    assert resolve_node_key(tmp_path / "data", path, _passphrase()) == NODE_KEY
    with pytest.raises(NodeKeyError, match="wrong passphrase"):
        resolve_node_key(tmp_path / "data", path, _passphrase("other"))
    with pytest.raises(NodeKeyError, match="no passphrase for the node key"):
        resolve_node_key(tmp_path / "data", path, _passphrase(None))


def test_plain_key_file_is_refused_with_the_fix(tmp_path: Path) -> None:
    plain = tmp_path / "p2p.key"
    plain.write_text(NODE_KEY.hex() + "\n")
    with pytest.raises(NodeKeyError, match="plain, unencrypted key.*keys import --type node"):
        read_node_key(plain, _passphrase())


def test_first_start_creates_an_encrypted_key_and_reuses_it(tmp_path: Path) -> None:
    datadir = tmp_path / "data"
    key = resolve_node_key(datadir, None, _passphrase(), kdf_iterations=16)
    created = datadir / NODE_KEYSTORE_FILE
    assert json.loads(created.read_text())["version"] == 3
    assert key.hex() not in created.read_text()
    assert stat.S_IMODE(created.stat().st_mode) == 0o600
    assert read_keystore(created, PASSPHRASE) == key
    assert resolve_node_key(datadir, None, _passphrase()) == key


def test_no_key_and_no_passphrase_says_what_to_provide(tmp_path: Path) -> None:
    with pytest.raises(NodeKeyError, match="keys new --type node.*--node-key-passphrase-file"):
        resolve_node_key(tmp_path / "data", None, _passphrase(None))
    assert not (tmp_path / "data" / NODE_KEYSTORE_FILE).exists()


def test_legacy_plain_datadir_key_still_starts(tmp_path: Path) -> None:
    datadir = tmp_path / "data"
    datadir.mkdir()
    (datadir / "p2p.key").write_text(NODE_KEY.hex())
    assert resolve_node_key(datadir, None, _passphrase(None)) == NODE_KEY
    assert not (datadir / NODE_KEYSTORE_FILE).exists()  # never silently re-keyed


def test_node_run_refuses_a_plain_node_key_file(tmp_path: Path) -> None:
    genesis, _key, passphrase = write_node_files(tmp_path / "files")
    plain = tmp_path / "p2p.key"
    plain.write_text(NODE_KEY.hex())
    result = CliRunner().invoke(main, [
        "node", "run", "--datadir", str(tmp_path / "d"), "--genesis", str(genesis),
        "--p2p-port", "0", "--node-key-file", str(plain),
        "--node-key-passphrase-file", str(passphrase),
    ])
    assert result.exit_code != 0
    assert "plain, unencrypted key" in result.output


def test_node_run_rejects_node_key_with_validator_key(tmp_path: Path) -> None:
    genesis, key, passphrase = write_node_files(tmp_path / "files")
    result = CliRunner().invoke(main, [
        "node", "run", "--datadir", str(tmp_path / "d"), "--genesis", str(genesis),
        "--key", str(key), "--passphrase-file", str(passphrase), "--p2p-port", "0",
        "--node-key-file", str(key),
    ])
    assert result.exit_code != 0
    assert "a validator's node key is its validator key" in result.output


def test_follower_runs_with_an_encrypted_node_key_from_config(tmp_path: Path) -> None:
    genesis, _key, passphrase = write_node_files(tmp_path / "files")
    node_key_file = tmp_path / "node-key.json"
    write_keystore(node_key_file, NODE_KEY, PASSPHRASE, kdf_iterations=16)
    datadir = tmp_path / "follower"
    config = tmp_path / "node.toml"
    config.write_text(
        f'[node]\ndatadir = "{datadir}"\ngenesis = "{genesis}"\n'
        f'node_key = "{node_key_file}"\nnode_key_passphrase_file = "{passphrase}"\n'
        '[rpc]\nport = 0\nws_port = 0\n[p2p]\nenabled = true\nport = 0\n'
        '[log]\nformat = "json"\n'
    )
    log = tmp_path / "follower.log"
    proc = subprocess.Popen(
        [sys.executable, "-m", "node", "node", "run", "--config", str(config)],
        stdout=log.open("ab"), stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )
    try:
        deadline = time.monotonic() + 60
        endpoints = datadir / "endpoints.json"
        while not (endpoints.exists() and json.loads(endpoints.read_text()).get("pid") == proc.pid):
            assert proc.poll() is None, log.read_text()
            assert time.monotonic() < deadline, log.read_text()
            time.sleep(0.1)
        assert json.loads(endpoints.read_text())["peer_id"] == peer_id_from_secret(NODE_KEY)
        assert NODE_KEY.hex() not in log.read_text()
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(30)
