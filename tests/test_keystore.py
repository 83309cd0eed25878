"""Validator key files: keystore v3 write/read, refusals and passphrase resolution."""

from __future__ import annotations

import json
import os
import stat
from pathlib import Path

import pytest
from eth_account import Account

from genesis.builder import generate_private_key, private_key_to_address
from node.keystore import (
    KeystoreError,
    keystore_address,
    read_keystore,
    resolve_passphrase,
    write_file_exclusive,
    write_keystore,
)

FAST = 2**12


@pytest.fixture
def key() -> bytes:
    return generate_private_key()


def test_write_then_read(tmp_path: Path, key: bytes) -> None:
    path = tmp_path / "validator-1.json"
    address = write_keystore(path, key, "s3cret pass", kdf_iterations=FAST)
    assert address == private_key_to_address(key)
    assert read_keystore(path, "s3cret pass") == key
    assert keystore_address(path) == address
    doc = json.loads(path.read_text())
    assert doc["version"] == 3
    assert doc["crypto"]["kdf"] == "scrypt"
    assert doc["crypto"]["kdfparams"]["n"] == FAST
    assert key.hex() not in path.read_text()
    # Standard tooling reads our files.
    assert bytes(Account.decrypt(doc, "s3cret pass")) == key


def test_default_work_factor_is_eth_account_default(tmp_path: Path, key: bytes) -> None:
    path = tmp_path / "k.json"
    write_keystore(path, key, "pw")
    assert json.loads(path.read_text())["crypto"]["kdfparams"]["n"] == 2**18


def test_file_mode_is_0600_even_with_permissive_umask(tmp_path: Path, key: bytes) -> None:
    old = os.umask(0o000)
    try:
        path = tmp_path / "k.json"
        write_keystore(path, key, "pw", kdf_iterations=FAST)
    finally:
        os.umask(old)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert [p.name for p in tmp_path.iterdir()] == ["k.json"]  # no temporary file left


def test_wrong_passphrase(tmp_path: Path, key: bytes) -> None:
    path = tmp_path / "k.json"
    write_keystore(path, key, "right", kdf_iterations=FAST)
    with pytest.raises(KeystoreError) as info:
        read_keystore(path, "wrong")
    assert str(info.value) == f"wrong passphrase for keystore {path}"


def test_refuses_to_overwrite(tmp_path: Path, key: bytes) -> None:
    path = tmp_path / "k.json"
    write_keystore(path, key, "first", kdf_iterations=FAST)
    before = path.read_bytes()
    with pytest.raises(KeystoreError, match=f"refusing to overwrite existing file {path}"):
        write_keystore(path, generate_private_key(), "second", kdf_iterations=FAST)
    assert path.read_bytes() == before
    assert read_keystore(path, "first") == key
    assert [p.name for p in tmp_path.iterdir()] == ["k.json"]


def test_refuses_dangling_symlink(tmp_path: Path, key: bytes) -> None:
    path = tmp_path / "k.json"
    path.symlink_to(tmp_path / "elsewhere.json")
    with pytest.raises(KeystoreError, match="refusing to overwrite"):
        write_keystore(path, key, "pw", kdf_iterations=FAST)
    assert not (tmp_path / "elsewhere.json").exists()


def test_write_errors(tmp_path: Path, key: bytes) -> None:
    with pytest.raises(KeystoreError, match="does not exist"):
        write_keystore(tmp_path / "no" / "k.json", key, "pw", kdf_iterations=FAST)
    with pytest.raises(KeystoreError, match="passphrase must be a non-empty string"):
        write_keystore(tmp_path / "k.json", key, "", kdf_iterations=FAST)
    with pytest.raises(KeystoreError, match="private key must be 32 bytes"):
        write_keystore(tmp_path / "k.json", key[:31], "pw", kdf_iterations=FAST)
    with pytest.raises(KeystoreError, match="not a valid secp256k1 scalar"):
        write_keystore(tmp_path / "k.json", bytes(32), "pw", kdf_iterations=FAST)
    with pytest.raises(KeystoreError, match="power of two"):
        write_keystore(tmp_path / "k.json", key, "pw", kdf_iterations=1000)
    assert list(tmp_path.iterdir()) == []


def test_read_errors(tmp_path: Path, key: bytes) -> None:
    missing = tmp_path / "missing.json"
    with pytest.raises(KeystoreError) as info:
        read_keystore(missing, "pw")
    assert str(info.value) == f"keystore {missing} not found"

    not_json = tmp_path / "not.json"
    not_json.write_text("hello")
    with pytest.raises(KeystoreError, match=f"keystore {not_json} is not JSON"):
        read_keystore(not_json, "pw")

    v4 = tmp_path / "v4.json"
    v4.write_text(json.dumps({"version": 4, "crypto": {}}))
    with pytest.raises(KeystoreError, match=f"{v4} is not a v3 keystore"):
        read_keystore(v4, "pw")
    with pytest.raises(KeystoreError, match="not a v3 keystore"):
        keystore_address(v4)

    with pytest.raises(KeystoreError, match="is a directory"):
        read_keystore(tmp_path, "pw")

    good = tmp_path / "good.json"
    write_keystore(good, key, "pw", kdf_iterations=FAST)
    doc = json.loads(good.read_text())
    doc["crypto"]["kdf"] = "argon2"
    broken = tmp_path / "broken.json"
    broken.write_text(json.dumps(doc))
    with pytest.raises(KeystoreError, match=f"keystore {broken} is malformed"):
        read_keystore(broken, "pw")


def test_address_field_must_match_key(tmp_path: Path, key: bytes) -> None:
    path = tmp_path / "k.json"
    write_keystore(path, key, "pw", kdf_iterations=FAST)
    doc = json.loads(path.read_text())
    doc["address"] = "ab" * 20
    tampered = tmp_path / "tampered.json"
    tampered.write_text(json.dumps(doc))
    assert keystore_address(tampered) == bytes.fromhex("ab" * 20)
    with pytest.raises(KeystoreError, match="address field does not match"):
        read_keystore(tampered, "pw")

    del doc["address"]
    anonymous = tmp_path / "anonymous.json"
    anonymous.write_text(json.dumps(doc))
    assert read_keystore(anonymous, "pw") == key
    with pytest.raises(KeystoreError, match="has no address field"):
        keystore_address(anonymous)

    doc["address"] = "0x1234"
    malformed = tmp_path / "malformed.json"
    malformed.write_text(json.dumps(doc))
    with pytest.raises(KeystoreError, match="malformed address field"):
        keystore_address(malformed)


def test_reads_geth_style_lowercase_address(tmp_path: Path, key: bytes) -> None:
    doc = Account.encrypt(key, "pw", kdf="scrypt", iterations=FAST)
    doc["address"] = doc["address"].lower()
    path = tmp_path / "geth.json"
    path.write_text(json.dumps(doc))
    assert keystore_address(path) == private_key_to_address(key)
    assert read_keystore(path, "pw") == key


def test_write_file_exclusive(tmp_path: Path) -> None:
    path = tmp_path / "genesis.json"
    write_file_exclusive(path, b"{}\n", 0o644)
    assert path.read_bytes() == b"{}\n"
    assert stat.S_IMODE(path.stat().st_mode) == 0o644
    with pytest.raises(KeystoreError, match="refusing to overwrite"):
        write_file_exclusive(path, b"other", 0o644)
    assert path.read_bytes() == b"{}\n"


def test_resolve_passphrase(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("MEDLEDGER_PASSPHRASE", raising=False)
    assert resolve_passphrase(None) is None
    monkeypatch.setenv("MEDLEDGER_PASSPHRASE", "")
    assert resolve_passphrase(None) is None
    monkeypatch.setenv("MEDLEDGER_PASSPHRASE", "from env")
    assert resolve_passphrase(None) == "from env"
    monkeypatch.setenv("OTHER_VAR", "other")
    assert resolve_passphrase(None, env_var="OTHER_VAR") == "other"

    pass_file = tmp_path / "pass.txt"
    pass_file.write_text(" spaced pass \r\n")
    assert resolve_passphrase(pass_file) == " spaced pass "  # file wins over env

    empty = tmp_path / "empty.txt"
    empty.write_text("\n")
    with pytest.raises(KeystoreError, match=f"passphrase file {empty} is empty"):
        resolve_passphrase(empty)
    with pytest.raises(KeystoreError, match="not found"):
        resolve_passphrase(tmp_path / "nope.txt")
