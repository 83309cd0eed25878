"""`keys new|import|export-public|rotate`: encrypted files, never a secret printed."""

from __future__ import annotations

import json
import os
import stat
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from click.testing import CliRunner

from node.cli_keys import keys_group
from node.keystore import read_keystore
from node.records.keys import load_private_key
from tests.helpers import VALIDATOR, VALIDATOR_KEY

SECRET = "correct horse battery staple"


@dataclass
class Result:
    returncode: int
    stdout: str
    stderr: str


def keys(*args: str, env: dict[str, str] | None = None, subprocess_run: bool = False) -> Result:
    """Run the command in-process (fast) or as a real subprocess (as an operator would)."""
    full_env = {"MEDLEDGER_PASSPHRASE": SECRET, "MEDLEDGER_NEW_PASSPHRASE": "", **(env or {})}
    if subprocess_run:
        done = subprocess.run([sys.executable, "-m", "node.cli_keys", *args],
                              capture_output=True, text=True, timeout=60,
                              env={**os.environ, **full_env}, stdin=subprocess.DEVNULL)
        result = Result(done.returncode, done.stdout, done.stderr)
    else:
        outcome = CliRunner().invoke(keys_group, list(args), env=full_env)
        result = Result(outcome.exit_code, outcome.stdout, outcome.stderr)
    assert SECRET not in result.stdout + result.stderr
    return result


def ok(*args: str, env: dict[str, str] | None = None, subprocess_run: bool = False,
       ) -> dict[str, Any]:
    result = keys(*args, env=env, subprocess_run=subprocess_run)
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)


def test_secp_keys_new_import_export_rotate(tmp_path: Path) -> None:
    made = ok("new", "--type", "validator", "--out", str(tmp_path / "v.json"), "--scrypt-n", "16",
              subprocess_run=True)
    key_file = tmp_path / "v.json"
    assert stat.S_IMODE(key_file.stat().st_mode) == 0o600
    private = read_keystore(key_file, SECRET)
    assert private.hex() not in key_file.read_text()  # encrypted at rest
    shown = ok("export-public", str(key_file), subprocess_run=True)
    assert shown["address"] == made["address"] and shown["peerId"] == made["peerId"]
    assert private.hex() not in json.dumps(shown)

    plain = tmp_path / "p2p.key"
    plain.write_text(VALIDATOR_KEY.hex() + "\n")
    passfile = tmp_path / "pass.txt"
    passfile.write_text("another passphrase\n")
    imported = ok("import", "--type", "node", "--from", str(plain), "--out",
                  str(tmp_path / "node.json"), "--passphrase-file", str(passfile),
                  "--scrypt-n", "16")
    assert imported["address"].lower() == "0x" + VALIDATOR.hex()
    assert read_keystore(tmp_path / "node.json", "another passphrase") == VALIDATOR_KEY

    rotated = ok("rotate", str(key_file), "--out", str(tmp_path / "v2.json"), "--scrypt-n", "16")
    assert rotated["old"]["address"] == made["address"]
    assert rotated["new"]["address"] != made["address"] and rotated["next"]
    same = ok("rotate", str(key_file), "--out", str(tmp_path / "v3.json"), "--same-key",
              "--new-passphrase-file", str(passfile), "--scrypt-n", "16")
    assert same["new"]["address"] == made["address"] and same["next"] == []
    assert read_keystore(tmp_path / "v3.json", "another passphrase") == private

    refused = keys("new", "--type", "node", "--out", str(key_file), "--scrypt-n", "16")
    assert refused.returncode != 0 and "refusing to overwrite" in refused.stderr
    wrong = keys("export-public", str(key_file), env={"MEDLEDGER_PASSPHRASE": "nope"},
                 subprocess_run=True)
    assert wrong.returncode != 0 and "wrong passphrase" in wrong.stderr
    missing = keys("export-public", str(key_file), env={"MEDLEDGER_PASSPHRASE": ""})
    assert missing.returncode != 0 and "no passphrase" in missing.stderr
    bad = tmp_path / "bad.key"
    bad.write_text("xyz")
    rejected = keys("import", "--type", "validator", "--from", str(bad), "--out",
                    str(tmp_path / "b.json"))
    assert rejected.returncode != 0 and "64 hex digits" in rejected.stderr


def test_record_keys_new_export_rotate(tmp_path: Path) -> None:
    made = ok("new", "--type", "record", "--out", str(tmp_path / "r.pem"))
    assert made["bits"] == 3072 and "PUBLIC KEY" in made["publicKeyPem"]
    assert b"ENCRYPTED PRIVATE KEY" in (tmp_path / "r.pem").read_bytes()
    assert ok("export-public", str(tmp_path / "r.pem"))["keyId"] == made["keyId"]
    rotated = ok("rotate", str(tmp_path / "r.pem"), "--out", str(tmp_path / "r2.pem"))
    assert rotated["new"]["keyId"] != made["keyId"]
    assert load_private_key(tmp_path / "r2.pem", SECRET).key_size == 3072
