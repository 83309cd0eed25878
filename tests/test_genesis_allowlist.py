"""The optional genesis `nodeAllowlist`: non-validator nodes allowed on the peer-to-peer network."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from genesis.schema import (
    Genesis,
    GenesisError,
    QbftParams,
    dump_genesis,
    genesis_to_json,
    load_genesis,
    parse_genesis,
)

V1 = "0x" + "11" * 20
AUDITOR = "0x" + "aa" * 20
AUDITOR_2 = "0x" + "bb" * 20
# EIP-55 test vector: mixed case with a valid checksum.
CHECKSUMMED = "0x5aAeb6053F3E94C9b9A09f33669435E7Ef1BeAed"


def doc(**extra: Any) -> dict[str, Any]:
    return {"chainId": 1337, "validators": [V1], **extra}


def error_of(data: Any) -> str:
    with pytest.raises(GenesisError) as info:
        parse_genesis(data)
    return str(info.value)


def test_absent_means_empty_and_is_not_written() -> None:
    g = parse_genesis(doc())
    assert g.node_allowlist == ()
    assert "nodeAllowlist" not in genesis_to_json(g)
    assert "nodeAllowlist" not in dump_genesis(g)


def test_parsed_in_order_and_round_trips() -> None:
    g = parse_genesis(doc(nodeAllowlist=[AUDITOR, CHECKSUMMED, AUDITOR_2]))
    assert g.node_allowlist == (
        bytes.fromhex("aa" * 20),
        bytes.fromhex(CHECKSUMMED[2:].lower()),
        bytes.fromhex("bb" * 20),
    )
    out = genesis_to_json(g)
    assert out["nodeAllowlist"] == [
        "0xaAaAaAaaAaAaAaaAaAAAAAAAAaaaAaAaAaaAaaAa",
        CHECKSUMMED,
        "0xbBbBBBBbbBBBbbbBbbBbbbbBBbBbbbbBbBbbBBbB",
    ]
    # Serialised right after the validators, and the canonical text parses back to an equal value.
    keys = list(out)
    assert keys.index("nodeAllowlist") == keys.index("validators") + 1
    assert parse_genesis(json.loads(dump_genesis(g))) == g


def test_empty_list_is_accepted() -> None:
    assert parse_genesis(doc(nodeAllowlist=[])).node_allowlist == ()


def test_a_validator_may_also_be_listed() -> None:
    g = parse_genesis(doc(nodeAllowlist=[V1]))
    assert g.node_allowlist == g.validators


@pytest.mark.parametrize(
    ("value", "message"),
    [
        (AUDITOR, "nodeAllowlist: expected an array of addresses, got string"),
        ({"a": AUDITOR}, "nodeAllowlist: expected an array of addresses, got object"),
        ([AUDITOR, 5], "nodeAllowlist.1: bad address: expected a string, got number"),
        (["0x1234"], "nodeAllowlist.0: bad address: expected '0x' followed by 40 hex digits"),
        (
            ["0x5aAeb6053F3E94C9b9A09f33669435E7Ef1BeAeD"],
            "nodeAllowlist.0: bad address: mixed-case",
        ),
        (
            [AUDITOR, AUDITOR_2, AUDITOR.upper().replace("0X", "0x")],
            "nodeAllowlist.2: duplicate address 0xaAaAaAaaAaAaAaaAaAAAAAAAAaaaAaAaAaaAaaAa "
            "(same as nodeAllowlist.0)",
        ),
    ],
)
def test_bad_values_name_the_entry(value: Any, message: str) -> None:
    assert message in error_of(doc(nodeAllowlist=value))


def test_misspelled_field_gets_a_suggestion() -> None:
    assert "did you mean 'nodeAllowlist'?" in error_of(doc(nodeAllowList=[AUDITOR]))


def test_dataclass_validates_direct_construction() -> None:
    address = bytes.fromhex("aa" * 20)
    g = Genesis(
        5,
        (b"\x11" * 20,),
        QbftParams(),
        {},
        {},
        node_allowlist=[address],  # type: ignore[arg-type]
    )
    assert g.node_allowlist == (address,)  # normalised to a tuple
    with pytest.raises(GenesisError, match=r"nodeAllowlist\.1: duplicate address"):
        Genesis(5, (b"\x11" * 20,), QbftParams(), {}, {}, node_allowlist=(address, address))
    with pytest.raises(GenesisError, match=r"nodeAllowlist\.0: must be a 20-byte address"):
        Genesis(5, (b"\x11" * 20,), QbftParams(), {}, {}, node_allowlist=(b"\x01" * 19,))
    with pytest.raises(GenesisError, match="nodeAllowlist: must be a sequence of addresses"):
        Genesis(5, (b"\x11" * 20,), QbftParams(), {}, {}, node_allowlist=address)  # type: ignore[arg-type]


def test_load_genesis_reports_the_file(tmp_path: Path) -> None:
    path = tmp_path / "genesis.json"
    path.write_text(json.dumps(doc(nodeAllowlist=[AUDITOR, "nope"])))
    with pytest.raises(GenesisError) as info:
        load_genesis(path)
    assert str(info.value).startswith(f"{path}: nodeAllowlist.1: bad address")
    path.write_text(json.dumps(doc(nodeAllowlist=[AUDITOR])))
    assert load_genesis(path).node_allowlist == (bytes.fromhex("aa" * 20),)
