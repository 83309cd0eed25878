"""`medledger zk`: identities and commitments, proving (snarkjs), offline verification (py_ecc),
calldata, and (slow) the whole flow against a real node over JSON-RPC."""

from __future__ import annotations

import json
import stat
from collections.abc import Iterator
from pathlib import Path

import pytest
from click.testing import CliRunner, Result

from contracts.bindings import MedLedger, Role
from contracts.zk_bindings import AttributeRegistry, ResearchConsent
from genesis.schema import AllocAccount, Genesis, QbftParams
from genesis.system import Member, default_setup, system_alloc
from node.cli import main
from node.keystore import write_keystore
from node.zk.chainio import JsonRpc
from node.zk.identity import attribute_commitment, study_id
from tests.helpers import (
    PASSPHRASE,
    USER_KEYS,
    USERS,
    VALIDATOR,
    address_of,
    write_node_files,
)
from tests.nodeproc import NodeProcess
from tests.zk_support import requires_snarkjs


def zk(*args: str) -> Result:
    return CliRunner().invoke(main, ["zk", *args], env={"MEDLEDGER_PASSPHRASE": PASSPHRASE})


def ok(*args: str) -> dict[str, object]:
    result = zk(*args)
    assert result.exit_code == 0, result.output
    return json.loads(result.stdout.strip().splitlines()[-1])


def test_identity_and_commit_files_are_private_and_never_overwritten(tmp_path: Path) -> None:
    identity = tmp_path / "id.json"
    shown = ok("identity", "--out", str(identity))
    stored = json.loads(identity.read_text())
    assert shown["commitment"] == stored["commitment"]
    assert stat.S_IMODE(identity.stat().st_mode) == 0o600
    again = zk("identity", "--out", str(identity))
    assert again.exit_code != 0 and "not overwriting" in again.output
    opening = tmp_path / "hba1c.json"
    ok("commit", "--value", "61", "--out", str(opening))
    data = json.loads(opening.read_text())
    assert int(data["commitment"]) == attribute_commitment(61, int(data["salt"]))
    assert zk("commit", "--value", str(2**64), "--out", str(tmp_path / "x")).exit_code != 0
    assert ok_text("study-id", "cohort-1") == str(study_id("cohort-1"))


def ok_text(*args: str) -> str:
    result = zk(*args)
    assert result.exit_code == 0, result.output
    return result.stdout.strip()


def test_verify_rejects_malformed_proof_files(tmp_path: Path) -> None:
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps({"kind": "membership", "proof": {}, "publicSignals": []}))
    result = zk("verify", str(bad))
    assert result.exit_code != 0 and "pi_a" in result.output


@requires_snarkjs
def test_membership_from_a_leaves_file(tmp_path: Path) -> None:
    identity = tmp_path / "id.json"
    mine = str(ok("identity", "--out", str(identity))["commitment"])
    leaves = tmp_path / "leaves.json"
    leaves.write_text(json.dumps(["0x1234", mine, 99]))
    proof_file = tmp_path / "p.json"
    made = ok("prove", "membership", "--identity", str(identity), "--study-id", "5",
              "--leaves", str(leaves), "--out", str(proof_file))
    assert made["studyId"] == "5"
    tx = ok("calldata", str(proof_file))
    assert str(tx["data"]).startswith("0x" + ResearchConsent().selector("enroll").hex())
    both = zk("prove", "membership", "--identity", str(identity), "--study-id", "5",
              "--study", "x", "--leaves", str(leaves), "--out", str(proof_file))
    assert both.exit_code != 0


@requires_snarkjs
def test_attribute_prove_verify_calldata(tmp_path: Path) -> None:
    opening = tmp_path / "age.json"
    ok("commit", "--value", "42", "--out", str(opening))
    proof_file = tmp_path / "proof.json"
    made = ok("prove", "attribute", "--opening", str(opening), "--op", "ge", "--threshold", "18",
              "--context", "7", "--out", str(proof_file))
    assert made["commitment"] == json.loads(opening.read_text())["commitment"]
    assert ok("verify", str(proof_file))["valid"] is True

    document = json.loads(proof_file.read_text())
    document["publicSignals"][1] = "17"  # claim a different threshold
    tampered = tmp_path / "tampered.json"
    tampered.write_text(json.dumps(document))
    result = zk("verify", str(tampered))
    assert result.exit_code == 1 and json.loads(result.stdout)["valid"] is False

    tx = ok("calldata", str(proof_file))
    registry = AttributeRegistry()
    assert tx["to"] == "0x" + registry.address.hex()
    assert str(tx["data"]).startswith("0x" + registry.selector("proveAttribute").hex())

    refused = zk("prove", "attribute", "--opening", str(opening), "--op", "lt", "--threshold",
                 "40", "--out", str(tmp_path / "no.json"))
    assert refused.exit_code != 0 and "does not satisfy LT 40" in refused.output


# ------------------------------------------------------------------------ against a node


@pytest.fixture
def zk_node(tmp_path: Path) -> Iterator[NodeProcess]:
    admin = USERS[0]
    setup = default_setup((VALIDATOR,), members=[Member("Hospital A", admin)], accounts=USERS)
    alloc, names = system_alloc(setup)
    for user in USERS:
        alloc[user] = AllocAccount(balance=10**24)
    genesis = Genesis(chain_id=1337, validators=(VALIDATOR,),
                      qbft=QbftParams(block_period_seconds=1, empty_block_period_seconds=1),
                      alloc=alloc, system_contracts=names)
    paths = write_node_files(tmp_path / "files", genesis)
    node = NodeProcess(datadir=tmp_path / "node", genesis=paths[0], key=paths[1],
                       passphrase=paths[2]).start()
    try:
        yield node
    finally:
        node.stop()


@pytest.mark.slow
@requires_snarkjs
@pytest.mark.timeout(300)
def test_membership_flow_against_a_running_node(tmp_path: Path, zk_node: NodeProcess) -> None:
    admin_key, patient_key, researcher_key, relayer_key = USER_KEYS
    patient, researcher = address_of(patient_key), address_of(researcher_key)
    medledger, consent = MedLedger(), ResearchConsent()
    rpc = JsonRpc(zk_node.http)
    try:
        for data in (medledger.register_patient(patient, b"\x01" * 32),
                     medledger.register_staff(researcher, b"\x02" * 32, Role.RESEARCHER)):
            assert rpc.transact(admin_key, medledger.address, data).success
        identity = tmp_path / "id.json"
        commitment = int(str(ok("identity", "--out", str(identity))["commitment"]))
        assert rpc.transact(patient_key, consent.address, consent.join_research(commitment)).success
        sid = study_id("cohort-cli")
        assert rpc.transact(researcher_key, consent.address,
                            consent.open_study(sid, b"\x00" * 32)).success

        proof_file = tmp_path / "membership.json"
        payload = tmp_path / "payload.bin"
        payload.write_bytes(b"what the patient shares")
        made = ok("prove", "membership", "--identity", str(identity), "--study", "cohort-cli",
                  "--rpc", zk_node.http, "--signal-file", str(payload), "--out", str(proof_file))
        assert int(str(made["root"])) == consent.current_root(rpc.call)
        assert ok("verify", str(proof_file))["valid"] is True

        relayer = tmp_path / "relayer.json"
        write_keystore(relayer, relayer_key, PASSPHRASE, kdf_iterations=2**4)
        sent = ok("submit", str(proof_file), "--rpc", zk_node.http, "--keystore", str(relayer))
        assert sent["success"] is True
        assert consent.study(rpc.call, sid).enrolled == 1
        again = zk("submit", str(proof_file), "--rpc", zk_node.http, "--keystore", str(relayer))
        assert again.exit_code != 0 and "NullifierUsed" in again.output

        # the patient withdraws consent: no more proofs from this identity
        own = tmp_path / "patient.json"
        write_keystore(own, patient_key, PASSPHRASE, kdf_iterations=2**4)
        left = ok("leave", "--identity", str(identity), "--rpc", zk_node.http,
                  "--keystore", str(own))
        assert left["success"] is True and left["leafIndex"] == 0
        assert consent.has_left(rpc.call, patient)
        refused = zk("prove", "membership", "--identity", str(identity), "--study", "cohort-cli",
                     "--rpc", zk_node.http, "--out", str(tmp_path / "no.json"))
        assert refused.exit_code != 0 and "not in the research-consent tree" in refused.output
    finally:
        rpc.close()
