"""System contracts predeployed by `medledger genesis new`: fixed addresses, genesis storage
that matches solc's storage layout, and a chain that starts governed by its founders."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner
from eth_utils import keccak, to_checksum_address

from contracts.artifacts import load_artifact
from contracts.bindings import AccountInfo, Role, system_contracts
from genesis import system
from genesis.builder import new_consortium
from genesis.schema import GenesisError, load_genesis
from genesis.system import (
    SYSTEM_CONTRACTS,
    Member,
    SystemSetup,
    default_setup,
    genesis_person_id,
    system_alloc,
)
from node.chain import Chain
from node.cli_genesis import genesis_group
from tests.contract_chain import Consortium, call_on

CONTRACTS_DIR = Path(__file__).resolve().parent.parent / "contracts"
LAYOUT_SCRIPT = r"""
const fs = require("fs");
const solc = require("solc");
const names = JSON.parse(process.argv[1]);
const sources = {};
for (const n of names) sources[n] = { content: fs.readFileSync(n, "utf8") };
const input = { language: "Solidity", sources, settings: {
  evmVersion: "prague", optimizer: { enabled: true, runs: 200 },
  outputSelection: { "*": { "*": ["storageLayout"] } } } };
const out = JSON.parse(solc.compile(JSON.stringify(input), {
  import: (p) => ({ contents: fs.readFileSync(p, "utf8") }) }));
const layouts = {};
for (const file of Object.values(out.contracts ?? {}))
  for (const [name, c] of Object.entries(file))
    layouts[name] = c.storageLayout.storage.map((s) => [s.label, Number(s.slot), s.offset]);
const errors = (out.errors ?? []).filter((e) => e.severity === "error");
console.log(JSON.stringify({ layouts, errors }));
"""


def _solc_layouts() -> dict[str, list[list[Any]]]:
    node = shutil.which("node")
    if node is None or not (CONTRACTS_DIR / "node_modules" / "solc").is_dir():
        pytest.skip("node and contracts/node_modules (npm ci) are needed for solc's layout")
    sources = sorted(
        str(p.relative_to(CONTRACTS_DIR)) for p in (CONTRACTS_DIR / "src").rglob("*.sol")
    )
    result = subprocess.run(
        [node, "-e", LAYOUT_SCRIPT, json.dumps(sources)],
        cwd=CONTRACTS_DIR, capture_output=True, text=True, timeout=180, check=True,
    )
    output = json.loads(result.stdout)
    assert output["errors"] == []
    return {name: layout for name, layout in output["layouts"].items()}


def _slot(layout: list[list[Any]], label: str) -> tuple[int, int]:
    [(slot, offset)] = [(s, o) for name, s, o in layout if name == label]
    return slot, offset


def test_genesis_slots_match_solc_storage_layout() -> None:
    layouts = _solc_layouts()
    medledger = layouts["MedLedger"]
    assert _slot(medledger, "hospitalCount") == (system.MEDLEDGER_SLOT_COUNTS, 0)
    assert _slot(medledger, "memberCount") == (system.MEDLEDGER_SLOT_COUNTS, 4)
    assert _slot(medledger, "_hospitals") == (system.MEDLEDGER_SLOT_HOSPITALS, 0)
    assert _slot(medledger, "_hospitalNames") == (system.MEDLEDGER_SLOT_HOSPITAL_NAMES, 0)
    assert _slot(medledger, "_accounts") == (system.MEDLEDGER_SLOT_ACCOUNTS, 0)
    assert _slot(medledger, "_personAccounts") == (system.MEDLEDGER_SLOT_PERSON_ACCOUNTS, 0)
    for name in ("NodeAllowList", "AccountAllowList"):
        assert _slot(layouts[name], "_entries") == (system.ALLOW_LIST_SLOT_ENTRIES, 0)
        assert _slot(layouts[name], "_positions") == (system.ALLOW_LIST_SLOT_POSITIONS, 0)
    # canAccess reads mappings in assembly through SLOT_* constants: they must match too.
    source = (CONTRACTS_DIR / "src" / "MedLedger.sol").read_text()
    constants = dict(re.findall(r"constant SLOT_(\w+) = (\d+);", source))
    assert len(constants) == 7
    for constant, value in constants.items():
        words = constant.lower().split("_")
        label = "_" + words[0] + "".join(w.capitalize() for w in words[1:])
        assert _slot(medledger, label) == (int(value), 0), constant


def test_system_alloc_predeploys_runtime_code_at_fixed_addresses() -> None:
    setup = SystemSetup(members=[Member("A", b"\x0a" * 20)], nodes=[b"\x01" * 20],
                        accounts=[b"\x02" * 20])
    alloc, names = system_alloc(setup)
    assert names == {name: address for name, (_, address) in SYSTEM_CONTRACTS.items()}
    assert to_checksum_address(names["medLedger"]) == "0x4D4C000000000000000000000000000000000001"
    for name, (artifact, address) in SYSTEM_CONTRACTS.items():
        assert alloc[address].code == load_artifact(artifact).deployed_bytecode, name
        assert alloc[address].nonce == 1
    assert alloc[names["consortiumGovernance"]].storage == {}
    # One admin account word and person binding per member, counts in slot 0.
    storage = alloc[names["medLedger"]].storage
    assert storage[0] == 1 | (1 << 32)
    assert len(storage) == 5


def test_genesis_new_predeploys_a_working_consortium(tmp_path: Path) -> None:
    founders = [b"\xa1" * 20, b"\xb2" * 20]
    funded = "0x" + "cd" * 20
    result = CliRunner().invoke(
        genesis_group,
        ["new", "--validators", "2", "--out", str(tmp_path / "net"), "--scrypt-n", "4096",
         "--member", f"St. Mary's={to_checksum_address(founders[0])}",
         "--member", f"General={to_checksum_address(founders[1])}",
         "--prefund", f"{funded}=1000"],
        env={"MEDLEDGER_PASSPHRASE": "pw"},
    )
    assert result.exit_code == 0, result.output
    assert "system contract medLedger: 0x4D4C000000000000000000000000000000000001" in (
        result.stdout)
    genesis = load_genesis(tmp_path / "net" / "genesis.json")
    assert set(genesis.system_contracts) == set(SYSTEM_CONTRACTS)

    chain = Chain(tmp_path / "data", genesis)
    try:
        medledger, governance, nodes, accounts = system_contracts()
        view = call_on(chain)
        assert medledger.member_count(view) == 2
        assert medledger.member(view, 1) == ("St. Mary's", True)
        assert medledger.member(view, 2) == ("General", True)
        assert medledger.account_info(view, founders[1]) == AccountInfo(Role.ADMIN, 2, True)
        assert medledger.account_of_person(view, genesis_person_id(founders[0])) == founders[0]
        assert governance.votes_needed(view) == 2
        assert nodes.allowed_nodes(view) == list(genesis.validators)
        assert accounts.allowed_accounts(view) == [*genesis.validators, bytes.fromhex("cd" * 20)]
        assert accounts.is_account_allowed(view, founders[0])
    finally:
        chain.close()


def test_genesis_new_defaults_and_opt_out(tmp_path: Path) -> None:
    runner = CliRunner()
    env = {"MEDLEDGER_PASSPHRASE": "pw"}
    base = ["new", "--validators", "2", "--scrypt-n", "4096"]
    result = runner.invoke(genesis_group, [*base, "--out", str(tmp_path / "a")], env=env)
    assert result.exit_code == 0, result.output
    genesis = load_genesis(tmp_path / "a" / "genesis.json")
    chain = Chain(tmp_path / "data", genesis)
    try:
        view = call_on(chain)
        medledger = system_contracts()[0]
        for index, validator in enumerate(genesis.validators, 1):
            assert medledger.member(view, index) == (f"hospital-{index}", True)
            assert medledger.member_admin_of(view, validator) == index
    finally:
        chain.close()

    result = runner.invoke(genesis_group, [*base, "--out", str(tmp_path / "b"),
                                           "--no-system-contracts"], env=env)
    assert result.exit_code == 0, result.output
    assert load_genesis(tmp_path / "b" / "genesis.json").system_contracts == {}

    bad = runner.invoke(genesis_group, [*base, "--out", str(tmp_path / "c"),
                                        "--member", "no-address"], env=env)
    assert bad.exit_code == 2 and "expected NAME=ADMIN_ADDRESS" in bad.stderr
    long_name = "x" * 33 + "=0x" + "11" * 20
    bad = runner.invoke(genesis_group, [*base, "--out", str(tmp_path / "c"),
                                        "--member", long_name], env=env)
    assert bad.exit_code == 2 and "1-32 UTF-8 bytes" in bad.stderr
    assert not (tmp_path / "c" / "genesis.json").exists()


def test_setup_validation() -> None:
    admin = b"\x0a" * 20
    with pytest.raises(GenesisError, match="^members: at least one member"):
        SystemSetup(members=[], nodes=[admin])
    with pytest.raises(GenesisError, match=r"^members\.1\.name: duplicate member name"):
        SystemSetup(members=[Member("A", admin), Member("A", b"\x0b" * 20)], nodes=[admin])
    with pytest.raises(GenesisError, match=r"^members\.admin\.1: duplicate"):
        SystemSetup(members=[Member("A", admin), Member("B", admin)], nodes=[admin])
    with pytest.raises(GenesisError, match="^nodes: at least one node"):
        SystemSetup(members=[Member("A", admin)], nodes=[])
    with pytest.raises(GenesisError, match=r"^nodes\.0: the zero address"):
        SystemSetup(members=[Member("A", admin)], nodes=[b"\x00" * 20])
    with pytest.raises(GenesisError, match=r"^accounts\.1: duplicate"):
        SystemSetup(members=[Member("A", admin)], nodes=[admin], accounts=[admin, admin])
    with pytest.raises(GenesisError, match="^name: must be 1-32"):
        Member("", admin)
    with pytest.raises(GenesisError, match="^admin: must be a 20-byte address"):
        Member("A", b"\x01")
    setup = default_setup([admin, b"\x0b" * 20], extra_nodes=[b"\x0c" * 20, admin])
    assert [m.name for m in setup.members] == ["hospital-1", "hospital-2"]
    assert setup.nodes == (admin, b"\x0b" * 20, b"\x0c" * 20)


def test_builder_predeploys_and_refuses_clashes() -> None:
    g, _ = new_consortium(1, predeploy_system=True,
                          members=[Member("Founding", b"\x0a" * 20)])
    assert set(g.system_contracts) == set(SYSTEM_CONTRACTS)
    clash = SYSTEM_CONTRACTS["medLedger"][1]
    with pytest.raises(GenesisError, match="already allocated by prefund"):
        new_consortium(1, predeploy_system=True, prefund={clash: 1})
    with pytest.raises(GenesisError, match=r"^systemContracts\.medLedger: already given"):
        new_consortium(1, predeploy_system=True, alloc={b"\x0c" * 20: system_alloc(
            default_setup([b"\x0d" * 20]))[0][clash]}, system_contracts={"medLedger": b"\x0c" * 20})
    with pytest.raises(GenesisError, match="^members: members need predeploy_system"):
        new_consortium(1, members=[Member("A", b"\x0a" * 20)])


def test_contract_chain_genesis_is_reproducible(tmp_path: Path) -> None:
    """Two nodes building the same system genesis agree on the genesis hash."""
    first = Consortium(tmp_path / "a", register=False)
    second = Consortium(tmp_path / "b", register=False)
    try:
        assert first.chain.chain.genesis_hash == second.chain.chain.genesis_hash
        assert first.chain.genesis.alloc[system.MEDLEDGER_ADDRESS].storage[0] == 3 | (3 << 32)
        assert keccak(first.chain.genesis.alloc[system.MEDLEDGER_ADDRESS].code) == keccak(
            load_artifact("MedLedger").deployed_bytecode)
    finally:
        first.close()
        second.close()
