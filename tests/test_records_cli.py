"""`medledger record ...` commands (record_group), run in-process with click's runner."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
from click.testing import CliRunner

from node.cli_record import record_group


@pytest.fixture()
def env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("MEDLEDGER_PASSPHRASE", "s3cret passphrase")
    monkeypatch.setenv("MEDLEDGER_RECORD_STORE", str(tmp_path / "store"))
    return tmp_path


def run(*args: str) -> str:
    result = CliRunner().invoke(record_group, list(args), catch_exceptions=False)
    assert result.exit_code == 0, result.output
    return result.stdout


def fails(*args: str) -> str:
    result = CliRunner().invoke(record_group, list(args), catch_exceptions=False)
    assert result.exit_code != 0
    return result.output


def test_put_get_grant(env: Path) -> None:
    for name in ("patient", "hospital", "doctor"):
        assert run("keygen", "--out", f"{name}.pem").strip().startswith("0x")
        assert (env / f"{name}.pem.pub").read_bytes().startswith(b"-----BEGIN PUBLIC KEY")
    data = os.urandom(2_500_000)
    (env / "scan.bin").write_bytes(data)
    put = json.loads(
        run("put", "scan.bin", "--patient", "patient.pem.pub", "--recipients", "hospital.pem.pub")
    )
    assert put["size"] == len(data) and len(put["recipients"]) == 2
    cid = put["record_cid"]
    got = json.loads(
        run("get", cid, "--out", "a.bin", "--key", "hospital.pem", "--expect-sha3", put["sha3_256"])
    )
    assert (env / "a.bin").read_bytes() == data and got["sha3_256"] == put["sha3_256"]
    assert "not wrapped for the given key" in fails(
        "get", cid, "--out", "b.bin", "--key", "doctor.pem"
    )
    granted = run("grant", cid, "--key", "patient.pem", "--to", "doctor.pem.pub").strip()
    run("get", granted, "--out", "b.bin", "--key", "doctor.pem")
    assert (env / "b.bin").read_bytes() == data
    assert "differs from the expected" in fails(
        "get", cid, "--out", "c.bin", "--key", "patient.pem", "--expect-sha3", "00" * 32
    )
    assert not (env / "c.bin").exists()
    assert "refusing to overwrite" in fails("get", cid, "--out", "a.bin", "--key", "patient.pem")
    rotated = json.loads(run("rotate", granted, "--key", "patient.pem", "-r", "patient.pem.pub"))
    assert rotated["content_cid"] != put["content_cid"]
    assert "not wrapped" in fails(
        "get", rotated["record_cid"], "--out", "d.bin", "--key", "doctor.pem"
    )


def test_wrong_passphrase(env: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    run("keygen", "--out", "k.pem")
    (env / "f.txt").write_text("note")
    cid = json.loads(run("put", "f.txt", "--patient", "k.pem.pub"))["record_cid"]
    monkeypatch.setenv("MEDLEDGER_PASSPHRASE", "wrong")
    assert "wrong passphrase" in fails("get", cid, "--out", "o.txt", "--key", "k.pem")
