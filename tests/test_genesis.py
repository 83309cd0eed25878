"""Genesis schema, builder and the `medledger genesis` commands."""

from __future__ import annotations

import copy
import json
import os
import stat
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner
from eth_utils import to_checksum_address

from genesis.builder import new_consortium, private_key_to_address
from genesis.schema import (
    AllocAccount,
    Genesis,
    GenesisError,
    QbftParams,
    dump_genesis,
    genesis_to_json,
    load_genesis,
    parse_genesis,
)
from node.cli_genesis import genesis_group
from node.keystore import keystore_address, read_keystore

FAST_SCRYPT = "4096"
# Well-known EIP-55 test vectors.
CHECKSUMMED = "0x5aAeb6053F3E94C9b9A09f33669435E7Ef1BeAed"
CHECKSUMMED_2 = "0xfB6916095ca1df60bB79Ce92cE3Ea74c37c5d359"
V1 = "0x" + "11" * 20
V2 = "0x" + "22" * 20
CONTRACT = "0x" + "cc" * 20


def valid_doc() -> dict[str, Any]:
    return {
        "chainId": 1337,
        "timestamp": "0x5",
        "gasLimit": "0x1c9c380",
        "baseFeePerGas": "0x3b9aca00",
        "qbft": {
            "blockPeriodSeconds": 2,
            "emptyBlockPeriodSeconds": 12,
            "requestTimeoutSeconds": 5,
            "epochLength": 100,
        },
        "validators": [V1, V2],
        "alloc": {
            V1: {"balance": "0xde0b6b3a7640000"},
            CONTRACT: {
                "balance": "0",
                "nonce": "0x1",
                "code": "0x6080604052",
                "storage": {"0x0": "0x1", "0x2a": "12345"},
            },
        },
        "systemContracts": {"nodePermissioning": CONTRACT},
    }


def error_of(doc: Any) -> str:
    with pytest.raises(GenesisError) as info:
        parse_genesis(doc)
    return str(info.value)


def with_change(path: list[Any], value: Any) -> dict[str, Any]:
    doc = valid_doc()
    target: Any = doc
    for key in path[:-1]:
        target = target[key]
    target[path[-1]] = value
    return doc


def without(path: list[Any]) -> dict[str, Any]:
    doc = valid_doc()
    target: Any = doc
    for key in path[:-1]:
        target = target[key]
    del target[path[-1]]
    return doc


# --------------------------------------------------------------------------- parsing


def test_parse_valid_document_values() -> None:
    g = parse_genesis(valid_doc())
    assert g.chain_id == 1337
    assert g.validators == (bytes.fromhex("11" * 20), bytes.fromhex("22" * 20))
    assert g.qbft == QbftParams(2, 12, 5, 100)
    assert g.timestamp == 5
    assert g.gas_limit == 30_000_000
    assert g.base_fee_per_gas == 10**9
    assert g.vanity == bytes(32)
    contract = g.alloc[bytes.fromhex("cc" * 20)]
    assert contract == AllocAccount(
        balance=0, nonce=1, code=bytes.fromhex("6080604052"), storage={0: 1, 42: 12345}
    )
    assert g.alloc[bytes.fromhex("11" * 20)].balance == 10**18
    assert g.system_contracts == {"nodePermissioning": bytes.fromhex("cc" * 20)}


def test_defaults_for_optional_fields() -> None:
    g = parse_genesis({"chainId": "0x539", "validators": [V1]})
    assert g.chain_id == 1337
    assert g.qbft == QbftParams()
    assert g.alloc == {} and g.system_contracts == {}
    assert (g.gas_limit, g.base_fee_per_gas, g.timestamp) == (30_000_000, 10**9, 0)


def test_round_trip_is_exact() -> None:
    doc = valid_doc()
    doc["vanity"] = "0x" + "ab" * 32
    g = parse_genesis(doc)
    out = genesis_to_json(g)
    assert parse_genesis(out) == g
    assert genesis_to_json(parse_genesis(json.loads(json.dumps(out)))) == out
    assert out["validators"] == [to_checksum_address(V1), to_checksum_address(V2)]
    assert out["gasLimit"] == "0x1c9c380"
    cs_contract = to_checksum_address(CONTRACT)
    assert out["alloc"][cs_contract]["storage"] == {"0x0": "0x1", "0x2a": "0x3039"}
    assert out["systemContracts"] == {"nodePermissioning": cs_contract}
    assert out["vanity"] == "0x" + "ab" * 32


@pytest.mark.parametrize("spelling", [16, "16", "0x10", "0x0010", "0016"])
def test_number_spellings(spelling: Any) -> None:
    g = parse_genesis(with_change(["alloc", V1, "balance"], spelling))
    assert g.alloc[bytes.fromhex("11" * 20)].balance == 16


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (True, "alloc.{V1}.balance: not a number"),
        (-1, "alloc.{V1}.balance: negative numbers are not allowed"),
        ("-1", "alloc.{V1}.balance: not a number"),
        (1.0, "alloc.{V1}.balance: not a number: floats are not allowed"),
        ("1.5", "alloc.{V1}.balance: not a number"),
        ("1e3", "alloc.{V1}.balance: not a number"),
        ("1_000", "alloc.{V1}.balance: not a number"),
        (" 1", "alloc.{V1}.balance: not a number"),
        ("0x", "alloc.{V1}.balance: not a number"),
        ("0X10", "alloc.{V1}.balance: not a number"),
        ("abc", "alloc.{V1}.balance: not a number"),
        (None, "alloc.{V1}.balance: not a number"),
        ([1], "alloc.{V1}.balance: not a number"),
        (2**256, "alloc.{V1}.balance: out of range"),
        ("0x1" + "0" * 64, "alloc.{V1}.balance: out of range"),
        ("9" * 100, "alloc.{V1}.balance: out of range"),
    ],
)
def test_bad_numbers(value: Any, expected: str) -> None:
    assert error_of(with_change(["alloc", V1, "balance"], value)).startswith(expected.format(V1=V1))


@pytest.mark.parametrize(
    ("path", "value", "expected"),
    [
        (["chainId"], 0, "chainId: out of range: 0 (must be between 1 and 2**63-1)"),
        (["chainId"], 2**63, "chainId: out of range"),
        (["gasLimit"], 4999, "gasLimit: out of range: 4999 (must be between 5000 and 2**63-1)"),
        (["gasLimit"], hex(2**63), "gasLimit: out of range"),
        (["timestamp"], 2**64, "timestamp: out of range"),
        (["alloc", V1, "nonce"], 2**64 - 1, f"alloc.{V1}.nonce: out of range"),
        (["qbft", "blockPeriodSeconds"], 0, "qbft.blockPeriodSeconds: out of range: 0"),
        (["qbft", "requestTimeoutSeconds"], "0", "qbft.requestTimeoutSeconds: out of range"),
        (["qbft", "epochLength"], 0, "qbft.epochLength: out of range"),
        (
            ["qbft", "emptyBlockPeriodSeconds"],
            1,
            "qbft.emptyBlockPeriodSeconds: out of range: 1 "
            "(must be between blockPeriodSeconds (2) and",
        ),
    ],
)
def test_out_of_range(path: list[Any], value: Any, expected: str) -> None:
    assert error_of(with_change(path, value)).startswith(expected)


def test_storage_value_out_of_range() -> None:
    doc = valid_doc()
    doc["alloc"][CONTRACT]["storage"] = {"0x1": hex(2**256)}
    assert (
        error_of(doc)
        == f"alloc.{CONTRACT}.storage.0x1: out of range: {hex(2**256)!r} exceeds 2**256-1"
    )


def test_duplicate_storage_slot_after_normalisation() -> None:
    doc = valid_doc()
    doc["alloc"][CONTRACT]["storage"] = {"0x1": "0x1", "1": "0x2"}
    assert error_of(doc) == (f"alloc.{CONTRACT}.storage.1: duplicate storage slot (same as 0x1)")


@pytest.mark.parametrize(
    ("path", "name", "expected"),
    [
        ([], "chainID", "chainID: unknown field (did you mean 'chainId'?)"),
        ([], "validator", "validator: unknown field (did you mean 'validators'?)"),
        (
            ["qbft"],
            "blockPeriod",
            "qbft.blockPeriod: unknown field (did you mean 'blockPeriodSeconds'?)",
        ),
        (["alloc", V1], "balanse", f"alloc.{V1}.balanse: unknown field (did you mean 'balance'?)"),
        ([], "zzz", "zzz: unknown field (known fields: chainId, timestamp,"),
    ],
)
def test_unknown_fields(path: list[Any], name: str, expected: str) -> None:
    doc = valid_doc()
    target: Any = doc
    for key in path:
        target = target[key]
    target[name] = 1
    assert error_of(doc).startswith(expected)


def test_missing_required_fields() -> None:
    assert error_of(without(["chainId"])) == "chainId: missing required field"
    assert error_of(without(["validators"])).startswith("validators: missing required field")
    assert error_of(with_change(["validators"], [])) == (
        "validators: at least one validator is required"
    )
    assert error_of(with_change(["validators"], V1)) == (
        "validators: expected an array of addresses, got string"
    )
    assert error_of([1, 2]) == "expected a JSON object, got array"


@pytest.mark.parametrize(
    ("address", "reason"),
    [
        ("0x" + "11" * 19, "expected '0x' followed by 40 hex digits"),
        ("0x" + "11" * 21, "expected '0x' followed by 40 hex digits"),
        ("11" * 20, "expected '0x' followed by 40 hex digits"),
        ("0x" + "zz" * 20, "expected '0x' followed by 40 hex digits"),
        (CHECKSUMMED.replace("aA", "Aa"), "fails its EIP-55 checksum"),
        (12, "expected a string, got number"),
    ],
)
def test_bad_validator_address(address: Any, reason: str) -> None:
    message = error_of(with_change(["validators", 1], address))
    assert message.startswith("validators.1: bad address: ")
    assert reason in message


@pytest.mark.parametrize(
    "spelling", [CHECKSUMMED, CHECKSUMMED.lower(), "0x" + CHECKSUMMED[2:].upper()]
)
def test_accepted_address_spellings(spelling: str) -> None:
    g = parse_genesis(with_change(["validators", 1], spelling))
    assert g.validators[1] == bytes.fromhex(CHECKSUMMED[2:])


def test_bad_alloc_address_names_the_key() -> None:
    doc = valid_doc()
    doc["alloc"]["0x1234"] = {"balance": "1"}
    assert error_of(doc).startswith("alloc.0x1234: bad address")


def test_duplicate_validator_is_case_insensitive() -> None:
    doc = with_change(["validators"], [CHECKSUMMED, V1, CHECKSUMMED.lower()])
    assert error_of(doc) == (
        f"validators.2: duplicate validator {CHECKSUMMED} (same as validators.0)"
    )


def test_duplicate_alloc_address() -> None:
    doc = valid_doc()
    doc["alloc"][CHECKSUMMED] = {"balance": "1"}
    doc["alloc"][CHECKSUMMED.lower()] = {"balance": "2"}
    assert error_of(doc) == (
        f"alloc.{CHECKSUMMED.lower()}: duplicate alloc address (same as alloc.{CHECKSUMMED})"
    )


@pytest.mark.parametrize(
    ("path", "value", "expected"),
    [
        (["alloc", CONTRACT, "code"], "0x123", "bad hex"),
        (["alloc", CONTRACT, "code"], "6080", "bad hex"),
        (["alloc", CONTRACT, "code"], "0xzz", "bad hex"),
        (["alloc", CONTRACT, "code"], 6080, "expected a 0x-hex string, got number"),
        (["vanity"], "0x1234", "must be exactly 32 bytes"),
        (["vanity"], "0x12345", "bad hex"),
    ],
)
def test_bad_hex(path: list[Any], value: Any, expected: str) -> None:
    message = error_of(with_change(path, value))
    field_path = ".".join(path)
    assert message.startswith(f"{field_path}: {expected}")


def test_system_contract_must_be_in_alloc_with_code() -> None:
    cs = to_checksum_address(CONTRACT)
    missing = valid_doc()
    del missing["alloc"][CONTRACT]
    assert error_of(missing) == f"systemContracts.nodePermissioning: {cs} is not in alloc"

    codeless = with_change(["alloc", CONTRACT, "code"], "0x")
    assert error_of(codeless) == f"systemContracts.nodePermissioning: {cs} has no code in alloc"

    twice = with_change(["systemContracts", "accountPermissioning"], CONTRACT)
    assert error_of(twice) == (
        f"systemContracts.accountPermissioning: {cs} is already used by "
        "systemContracts.nodePermissioning"
    )

    bad_name = with_change(["systemContracts", "1bad name"], CONTRACT)
    assert error_of(bad_name).startswith("systemContracts: contract name must be a letter")

    bad_address = with_change(["systemContracts", "nodePermissioning"], "0x12")
    assert error_of(bad_address).startswith("systemContracts.nodePermissioning: bad address")


def test_wrong_container_types() -> None:
    assert error_of(with_change(["qbft"], [])) == "qbft: expected a JSON object, got array"
    assert error_of(with_change(["alloc"], None)) == "alloc: expected a JSON object, got null"
    assert error_of(with_change(["alloc", V1], "0x1")) == (
        f"alloc.{V1}: expected a JSON object, got string"
    )
    assert error_of(with_change(["alloc", CONTRACT, "storage"], [])) == (
        f"alloc.{CONTRACT}.storage: expected a JSON object, got array"
    )


# --------------------------------------------------------------------------- dataclasses


def test_direct_construction_enforces_invariants() -> None:
    address = bytes.fromhex("11" * 20)
    g = Genesis(chain_id=5, validators=[address], qbft=QbftParams(), alloc={}, system_contracts={})
    assert g.validators == (address,)
    with pytest.raises(GenesisError, match=r"^validators\.1: duplicate validator"):
        Genesis(5, (address, address), QbftParams(), {}, {})
    with pytest.raises(GenesisError, match=r"^validators\.0: must be a 20-byte address"):
        Genesis(5, (b"\x01" * 19,), QbftParams(), {}, {})
    with pytest.raises(GenesisError, match=r"^balance: out of range"):
        AllocAccount(balance=-1)
    with pytest.raises(GenesisError, match=r"^emptyBlockPeriodSeconds: out of range"):
        QbftParams(block_period_seconds=5, empty_block_period_seconds=4)


def test_genesis_does_not_share_caller_mappings() -> None:
    address = bytes.fromhex("11" * 20)
    alloc = {address: AllocAccount(balance=1)}
    storage = {1: 2}
    account = AllocAccount(code=b"\x00", storage=storage)
    g = Genesis(1, (address,), QbftParams(), alloc, {})
    alloc.clear()
    storage[3] = 4
    assert g.alloc == {address: AllocAccount(balance=1)}
    assert account.storage == {1: 2}


# --------------------------------------------------------------------------- files


def test_load_genesis_file(tmp_path: Path) -> None:
    path = tmp_path / "genesis.json"
    path.write_text(json.dumps(valid_doc()))
    assert load_genesis(path) == parse_genesis(valid_doc())
    assert load_genesis(str(path)).chain_id == 1337


def test_load_genesis_errors_name_the_file(tmp_path: Path) -> None:
    missing = tmp_path / "nope.json"
    with pytest.raises(GenesisError) as info:
        load_genesis(missing)
    assert str(info.value) == f"{missing}: file not found"

    bad = tmp_path / "bad.json"
    bad.write_text('{\n  "chainId": 1,\n  "validators": [,]\n}\n')
    with pytest.raises(GenesisError) as info:
        load_genesis(bad)
    assert str(info.value) == f"{bad}: invalid JSON at line 3 column 18: Expecting value"

    with pytest.raises(GenesisError, match="is a directory"):
        load_genesis(tmp_path)

    dup = tmp_path / "dup.json"
    dup.write_text(f'{{"chainId": 1, "chainId": 2, "validators": ["{V1}"]}}')
    with pytest.raises(GenesisError) as info:
        load_genesis(dup)
    assert str(info.value) == f"{dup}: invalid JSON: duplicate key 'chainId'"

    invalid = tmp_path / "invalid.json"
    invalid.write_text(json.dumps(without(["chainId"])))
    with pytest.raises(GenesisError) as info:
        load_genesis(invalid)
    assert str(info.value) == f"{invalid}: chainId: missing required field"
    assert info.value.path == "chainId"

    binary = tmp_path / "binary.json"
    binary.write_bytes(b"\xff\xfe\x00")
    with pytest.raises(GenesisError, match="not UTF-8 text"):
        load_genesis(binary)


# --------------------------------------------------------------------------- builder


def test_new_consortium() -> None:
    funded = bytes.fromhex(CHECKSUMMED[2:])
    g, keys = new_consortium(
        4,
        chain_id=99,
        block_period_seconds=2,
        empty_block_period_seconds=6,
        prefund={funded: 123},
        validator_balance=7,
    )
    assert len(keys) == 4 and len(set(keys)) == 4
    assert all(len(k) == 32 for k in keys)
    assert list(g.validators) == [private_key_to_address(k) for k in keys]
    assert g.chain_id == 99
    assert g.qbft == QbftParams(block_period_seconds=2, empty_block_period_seconds=6)
    assert {a: acc.balance for a, acc in g.alloc.items()} == {
        **{v: 7 for v in g.validators},
        funded: 123,
    }
    assert parse_genesis(genesis_to_json(g)) == g


def test_new_consortium_with_system_contract() -> None:
    contract = bytes.fromhex("cc" * 20)
    g, _ = new_consortium(
        1,
        alloc={contract: AllocAccount(code=b"\x60\x00")},
        system_contracts={"nodePermissioning": contract},
    )
    assert g.system_contracts == {"nodePermissioning": contract}
    assert g.alloc[contract].code == b"\x60\x00"


def test_new_consortium_rejects_bad_input() -> None:
    with pytest.raises(GenesisError, match="n_validators: must be a positive integer"):
        new_consortium(0)
    with pytest.raises(GenesisError, match=r"^qbft\.emptyBlockPeriodSeconds: out of range"):
        new_consortium(1, block_period_seconds=5, empty_block_period_seconds=2)
    funded = bytes.fromhex("aa" * 20)
    with pytest.raises(GenesisError, match=r"^alloc\.0x[Aa]{40}: already allocated by prefund"):
        new_consortium(1, prefund={funded: 1}, alloc={funded: AllocAccount(balance=2)})
    with pytest.raises(GenesisError, match=r"^prefund\.0x[Aa]{40}\.balance: out of range"):
        new_consortium(1, prefund={funded: -5})
    with pytest.raises(GenesisError, match=r"^chainId: out of range"):
        new_consortium(1, chain_id=0)


def test_dump_genesis_is_loadable(tmp_path: Path) -> None:
    g, _ = new_consortium(2)
    path = tmp_path / "g.json"
    path.write_text(dump_genesis(g))
    assert load_genesis(path) == g


# --------------------------------------------------------------------------- CLI


def run_cli(args: list[str], env: dict[str, str] | None = None) -> Any:
    """Invoke `medledger genesis ARGS` in-process (the subprocess test covers the entry point)."""
    runner = CliRunner()
    return runner.invoke(genesis_group, args, env={"MEDLEDGER_PASSPHRASE": "", **(env or {})})


def test_cli_new_with_passphrase_file(tmp_path: Path) -> None:
    secret = tmp_path / "pass.txt"
    secret.write_text("correct horse battery\n")
    out = tmp_path / "net"
    options = ["--chain-id", "4242", "--block-period", "2", "--empty-block-period", "4"]
    prefund = ["--prefund", f"{CHECKSUMMED}=1000", "--prefund", f"{CHECKSUMMED_2}=0x10"]
    result = run_cli(
        ["new", "--validators", "3", "--out", str(out), *options, *prefund]
        + ["--passphrase-file", str(secret), "--scrypt-n", FAST_SCRYPT]
    )
    assert result.exit_code == 0, result.output
    g = load_genesis(out / "genesis.json")
    assert g.chain_id == 4242
    assert g.qbft.block_period_seconds == 2 and g.qbft.empty_block_period_seconds == 4
    assert g.alloc[bytes.fromhex(CHECKSUMMED[2:])].balance == 1000
    assert g.alloc[bytes.fromhex(CHECKSUMMED_2[2:])].balance == 16
    assert not (out / "keys" / "passphrase.txt").exists()
    for i, validator in enumerate(g.validators, 1):
        key_file = out / "keys" / f"validator-{i}.json"
        assert stat.S_IMODE(key_file.stat().st_mode) == 0o600
        assert keystore_address(key_file) == validator
        assert private_key_to_address(read_keystore(key_file, "correct horse battery")) == validator
        assert to_checksum_address(validator) in result.stdout
    assert "correct horse" not in result.output


def test_cli_new_generates_passphrase(tmp_path: Path) -> None:
    out = tmp_path / "net"
    result = run_cli(["new", "--validators", "1", "--out", str(out), "--scrypt-n", FAST_SCRYPT])
    assert result.exit_code == 0, result.output
    pass_file = out / "keys" / "passphrase.txt"
    assert "passphrase.txt" in result.stderr
    assert stat.S_IMODE(pass_file.stat().st_mode) == 0o600
    passphrase = pass_file.read_text().rstrip("\n")
    assert len(passphrase) >= 32
    assert passphrase not in result.output
    g = load_genesis(out / "genesis.json")
    key = read_keystore(out / "keys" / "validator-1.json", passphrase)
    assert private_key_to_address(key) == g.validators[0]


def test_cli_new_uses_env_passphrase(tmp_path: Path) -> None:
    out = tmp_path / "net"
    result = run_cli(
        ["new", "--validators", "1", "--out", str(out), "--scrypt-n", FAST_SCRYPT],
        env={"MEDLEDGER_PASSPHRASE": "from-env"},
    )
    assert result.exit_code == 0, result.output
    assert not (out / "keys" / "passphrase.txt").exists()
    key = read_keystore(out / "keys" / "validator-1.json", "from-env")
    assert private_key_to_address(key) == load_genesis(out / "genesis.json").validators[0]


def test_cli_new_refuses_to_overwrite(tmp_path: Path) -> None:
    out = tmp_path / "net"
    out.mkdir()
    (out / "genesis.json").write_text("precious")
    result = run_cli(["new", "--validators", "1", "--out", str(out)])
    assert result.exit_code == 2
    assert f"refusing to overwrite existing {out / 'genesis.json'}" in result.stderr
    assert (out / "genesis.json").read_text() == "precious"
    assert not (out / "keys").exists()

    other = tmp_path / "other"
    (other / "keys").mkdir(parents=True)
    (other / "keys" / "validator-2.json").write_text("old key")
    result = run_cli(["new", "--validators", "2", "--out", str(other)])
    assert result.exit_code == 2
    assert "validator-2.json" in result.stderr
    assert sorted(p.name for p in (other / "keys").iterdir()) == ["validator-2.json"]
    assert not (other / "genesis.json").exists()


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (["--validators", "0"], "0 is not in the range 1<=x<=64"),
        (["--validators", "65"], "65 is not in the range 1<=x<=64"),
        (["--validators", "1", "--prefund", "0x12=5"], "bad address"),
        (["--validators", "1", "--prefund", f"{CHECKSUMMED}"], "expected ADDR=WEI"),
        (["--validators", "1", "--prefund", f"{CHECKSUMMED}=-1"], "not a number"),
        (
            ["--validators", "1", "--block-period", "5", "--empty-block-period", "2"],
            "qbft.emptyBlockPeriodSeconds: out of range",
        ),
        (["--validators", "1", "--scrypt-n", "1000"], "must be a power of two"),
        (["--validators", "1", "--passphrase-file", "/nonexistent/pass"], "not found"),
    ],
)
def test_cli_new_bad_arguments(tmp_path: Path, extra: list[str], message: str) -> None:
    out = tmp_path / "net"
    result = run_cli(["new", "--out", str(out), *extra])
    assert result.exit_code == 2, result.output
    assert message in result.stderr
    assert not (out / "genesis.json").exists()


def test_cli_check(tmp_path: Path) -> None:
    good = tmp_path / "good.json"
    good.write_text(json.dumps(valid_doc()))
    result = run_cli(["check", str(good)])
    assert result.exit_code == 0, result.output
    assert "chain id: 1337" in result.stdout
    assert "validators (2):" in result.stdout
    assert to_checksum_address(V2) in result.stdout
    assert "alloc accounts: 2" in result.stdout
    assert f"nodePermissioning: {to_checksum_address(CONTRACT)}" in result.stdout

    bad = tmp_path / "bad.json"
    doc = valid_doc()
    doc["qbft"]["blockPeriod"] = 1
    bad.write_text(json.dumps(doc))
    result = run_cli(["check", str(bad)])
    assert result.exit_code == 1
    assert result.stderr.strip() == (
        f"Error: {bad}: qbft.blockPeriod: unknown field (did you mean 'blockPeriodSeconds'?)"
    )
    assert result.stdout == ""
    assert "Traceback" not in result.output

    result = run_cli(["check", str(tmp_path / "missing.json")])
    assert result.exit_code == 1
    assert "missing.json: file not found" in result.stderr


def test_cli_as_real_subprocess(tmp_path: Path) -> None:
    """The installed console script works end to end, outside the test process."""
    script = Path(sys.executable).parent / "medledger"
    assert script.exists(), f"console script missing at {script}; run `uv sync`"
    out = tmp_path / "net"
    env = {**os.environ, "MEDLEDGER_PASSPHRASE": "subprocess-secret"}
    new_args = ["genesis", "new", "--validators", "2", "--out", str(out)]
    proc = subprocess.run(
        [str(script), *new_args, "--scrypt-n", FAST_SCRYPT],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr
    g = load_genesis(out / "genesis.json")
    assert len(g.validators) == 2
    for i, validator in enumerate(g.validators, 1):
        assert f"validator {i}: {to_checksum_address(validator)}" in proc.stdout
        key = read_keystore(out / "keys" / f"validator-{i}.json", "subprocess-secret")
        assert private_key_to_address(key) == validator
    assert "subprocess-secret" not in proc.stdout + proc.stderr

    again = subprocess.run(
        [str(script), *new_args],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert again.returncode == 2
    assert "refusing to overwrite" in again.stderr
    assert "Traceback" not in again.stderr

    check = subprocess.run(
        [str(script), "genesis", "check", str(out / "genesis.json")],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert check.returncode == 0, check.stderr
    assert "validators (2):" in check.stdout


def test_valid_doc_is_not_mutated_by_parsing() -> None:
    doc = valid_doc()
    snapshot = copy.deepcopy(doc)
    parse_genesis(doc)
    assert doc == snapshot
