"""`medledger zk`: identities, commitments, proofs (snarkjs, client side), offline verification
(py_ecc) and submission of proofs to the ZK contracts over JSON-RPC."""

from __future__ import annotations

import json
import os
import time
from pathlib import Path
from typing import Any

import click

from node.keystore import KeystoreError, read_keystore, resolve_passphrase
from node.zk.groth16 import ProofFormatError
from node.zk.identity import (
    MAX_ATTRIBUTE_VALUE,
    attribute_commitment,
    identity_commitment,
    new_salt,
    new_secret,
    signal_hash,
    study_id,
)
from node.zk.poseidon import FIELD

PATH = click.Path(path_type=Path)
EXISTING = click.Path(path_type=Path, exists=True, dir_okay=False)


def _write_private(path: Path, document: dict[str, Any]) -> None:
    """Secrets go to a new file readable by the owner only."""
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        raise click.ClickException(f"{path} exists; not overwriting a secret") from None
    with os.fdopen(fd, "w", encoding="utf-8") as handle:
        handle.write(json.dumps(document, indent=2) + "\n")


def _read_json(path: Path) -> dict[str, Any]:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise click.ClickException(f"cannot read {path}: {exc}") from None
    if not isinstance(data, dict):
        raise click.ClickException(f"{path}: expected a JSON object")
    return data


def _field_int(text: str, what: str) -> int:
    try:
        value = int(text, 0)
    except ValueError:
        raise click.BadParameter(f"{what} must be an integer (decimal or 0x hex)") from None
    if not 0 <= value < FIELD:
        raise click.BadParameter(f"{what} must be below the BN254 scalar field order")
    return value


def _study(name: str | None, number: str | None) -> int:
    if (name is None) == (number is None):
        raise click.UsageError("give exactly one of --study NAME or --study-id N")
    return study_id(name) if name is not None else _field_int(str(number), "--study-id")


@click.group("zk")
def zk_group() -> None:
    """Zero-knowledge research enrolment and attribute proofs."""


# ------------------------------------------------------------------------ identities, values


@zk_group.command("identity")
@click.option("--out", type=PATH, required=True, help="New file for the secret (mode 0600).")
def identity_command(out: Path) -> None:
    """Create a patient's research identity; prints the commitment to register on chain."""
    secret = new_secret()
    commitment = identity_commitment(secret)
    _write_private(out, {"secret": str(secret), "commitment": str(commitment)})
    click.echo(json.dumps({"commitment": str(commitment), "file": str(out)}))


@zk_group.command("commit")
@click.option("--value", type=click.IntRange(0, MAX_ATTRIBUTE_VALUE), required=True,
              help="Unsigned 64-bit value (scale fixed-point values, e.g. HbA1c x 10).")
@click.option("--out", type=PATH, required=True,
              help="New file for the opening (value, salt): the patient's copy (mode 0600).")
def commit_command(value: int, out: Path) -> None:
    """Commit to an attribute value; prints the commitment a clinician attests on chain."""
    salt = new_salt()
    commitment = attribute_commitment(value, salt)
    _write_private(out, {"value": str(value), "salt": str(salt), "commitment": str(commitment)})
    click.echo(json.dumps({"commitment": str(commitment), "file": str(out)}))


@zk_group.command("study-id")
@click.argument("name")
def study_id_command(name: str) -> None:
    """The study id (field element) for a study name or protocol id."""
    click.echo(str(study_id(name)))


# ------------------------------------------------------------------------ proving


@zk_group.group("prove")
def prove_group() -> None:
    """Make a proof with snarkjs (needs node and `npm ci --prefix contracts/zk`)."""


@prove_group.command("membership")
@click.option("--identity", "identity_file", type=EXISTING, required=True)
@click.option("--study", "study_name", help="Study name (hashed to the study id).")
@click.option("--study-id", "study_number", help="Study id as a number.")
@click.option("--rpc", help="Node JSON-RPC URL: rebuild the tree from the chain's logs.")
@click.option("--leaves", type=EXISTING,
              help="JSON list of all leaf commitments in order (instead of --rpc).")
@click.option("--signal-file", type=EXISTING, help="Bind the hash of this file to the proof.")
@click.option("--out", type=PATH, required=True)
def prove_membership_command(identity_file: Path, study_name: str | None,
                             study_number: str | None, rpc: str | None, leaves: Path | None,
                             signal_file: Path | None, out: Path) -> None:
    """Prove research consent for a study without revealing which patient."""
    from node.zk.merkle import MerkleTree
    from node.zk.proofio import write_proof
    from node.zk.prover import ProofError, ProverUnavailable, prove_membership

    sid = _study(study_name, study_number)
    secret = _field_int(str(_read_json(identity_file).get("secret", "")), "identity secret")
    if (rpc is None) == (leaves is None):
        raise click.UsageError("give exactly one of --rpc URL or --leaves FILE")
    if rpc is not None:
        from node.zk.chainio import JsonRpc, RpcError, research_tree

        client = JsonRpc(rpc)
        try:
            tree = research_tree(client)
        except RpcError as exc:
            raise click.ClickException(str(exc)) from None
        finally:
            client.close()
    else:
        assert leaves is not None
        try:
            tree = MerkleTree(int(v, 0) if isinstance(v, str) else int(v)
                              for v in json.loads(leaves.read_text(encoding="utf-8")))
        except (ValueError, TypeError) as exc:
            raise click.ClickException(f"{leaves}: {exc}") from None
    signal = signal_hash(signal_file.read_bytes()) if signal_file else 0
    try:
        proof = prove_membership(secret, tree, sid, signal)
    except (ProofError, ProverUnavailable) as exc:
        raise click.ClickException(str(exc)) from None
    write_proof(out, proof)
    click.echo(json.dumps({"proof": str(out), "studyId": str(sid),
                           "nullifier": str(proof.nullifier), "root": str(proof.root),
                           "provingMs": round(proof.proving_ms)}))


@prove_group.command("attribute")
@click.option("--opening", type=EXISTING, required=True, help="File written by `zk commit`.")
@click.option("--op", type=click.Choice(["ge", "lt"]), required=True,
              help="ge: value >= threshold; lt: value < threshold.")
@click.option("--threshold", type=click.IntRange(0, MAX_ATTRIBUTE_VALUE), required=True)
@click.option("--context", default="0", help="Field element the proof is bound to (study id).")
@click.option("--out", type=PATH, required=True)
def prove_attribute_command(opening: Path, op: str, threshold: int, context: str,
                            out: Path) -> None:
    """Prove a threshold predicate over a committed value without revealing it."""
    from node.zk.proofio import write_proof
    from node.zk.prover import AttributeOp, ProofError, ProverUnavailable, prove_attribute

    data = _read_json(opening)
    value = _field_int(str(data.get("value", "")), "opening value")
    salt = _field_int(str(data.get("salt", "")), "opening salt")
    try:
        proof = prove_attribute(value, salt, AttributeOp[op.upper()], threshold,
                                _field_int(context, "--context"))
    except (ProofError, ProverUnavailable, ValueError) as exc:
        raise click.ClickException(str(exc)) from None
    write_proof(out, proof)
    click.echo(json.dumps({"proof": str(out), "commitment": str(proof.commitment),
                           "provingMs": round(proof.proving_ms)}))


# ------------------------------------------------------------------------ verify, submit


@zk_group.command("verify")
@click.argument("proof_file", type=EXISTING)
def verify_command(proof_file: Path) -> None:
    """Verify a proof offline in pure Python (py_ecc); exit status 1 if it is invalid.

    This checks the proof itself; whether its root is recent, its nullifier unused or its
    commitment attested is chain state that `submit` (or an eth_call of verifyMembership /
    verifyAttribute) checks."""
    from node.zk.proofio import read_proof, verify_offline

    try:
        proof = read_proof(proof_file)
    except ProofFormatError as exc:
        raise click.ClickException(str(exc)) from None
    started = time.perf_counter()
    valid = verify_offline(proof)
    elapsed = (time.perf_counter() - started) * 1000
    click.echo(json.dumps({"valid": valid, "verifyMs": round(elapsed)}))
    if not valid:
        raise SystemExit(1)


@zk_group.command("calldata")
@click.argument("proof_file", type=EXISTING)
def calldata_command(proof_file: Path) -> None:
    """The transaction (to, data) that submits a proof, for any wallet or web3 client."""
    from node.zk.proofio import read_proof, submission

    try:
        to, data = submission(read_proof(proof_file))
    except ProofFormatError as exc:
        raise click.ClickException(str(exc)) from None
    click.echo(json.dumps({"to": "0x" + to.hex(), "data": "0x" + data.hex()}))


@zk_group.command("submit")
@click.argument("proof_file", type=EXISTING)
@click.option("--rpc", required=True, help="Node JSON-RPC URL.")
@click.option("--keystore", type=EXISTING, required=True,
              help="Keystore of the sending account (a relayer keeps the patient unlinked).")
@click.option("--passphrase-file", type=EXISTING)
def submit_command(proof_file: Path, rpc: str, keystore: Path,
                   passphrase_file: Path | None) -> None:
    """Send a proof to ResearchConsent.enroll / AttributeRegistry.proveAttribute."""
    from contracts.zk_bindings import decode_zk_revert
    from node.zk.chainio import PROOF_TX_GAS, JsonRpc, RpcError
    from node.zk.proofio import read_proof, submission

    try:
        proof = read_proof(proof_file)
        passphrase = resolve_passphrase(passphrase_file)
        if passphrase is None:
            raise click.ClickException("no passphrase: --passphrase-file or MEDLEDGER_PASSPHRASE")
        key = read_keystore(keystore, passphrase)
    except (ProofFormatError, KeystoreError) as exc:
        raise click.ClickException(str(exc)) from None
    to, data = submission(proof)
    client = JsonRpc(rpc)
    try:
        try:
            client.call(to, data)  # preflight: the contract's reason instead of a failed tx
        except RpcError as exc:
            error = decode_zk_revert(exc.data) if exc.data else None
            raise click.ClickException(f"refused: {error or exc}") from None
        receipt = client.transact(key, to, data, gas=PROOF_TX_GAS)
    except RpcError as exc:
        raise click.ClickException(str(exc)) from None
    finally:
        client.close()
    click.echo(json.dumps({"txHash": "0x" + receipt.tx_hash.hex(), "success": receipt.success,
                           "block": receipt.block_number, "gasUsed": receipt.gas_used}))
    if not receipt.success:
        raise SystemExit(1)


@zk_group.command("leave")
@click.option("--identity", "identity_file", type=EXISTING, required=True)
@click.option("--rpc", required=True, help="Node JSON-RPC URL.")
@click.option("--keystore", type=EXISTING, required=True,
              help="The patient's own account (or a delegate / home-hospital admin with --for).")
@click.option("--for", "patient_hex", help="Patient address when sending as delegate or admin.")
@click.option("--passphrase-file", type=EXISTING)
def leave_command(identity_file: Path, rpc: str, keystore: Path, patient_hex: str | None,
                  passphrase_file: Path | None) -> None:
    """Withdraw research consent: empty the identity's leaf (final for the account)."""
    from contracts.zk_bindings import ResearchConsent, decode_zk_revert
    from node.zk.chainio import LEAVE_TX_GAS, JsonRpc, RpcError, research_tree

    secret = _field_int(str(_read_json(identity_file).get("secret", "")), "identity secret")
    commitment = identity_commitment(secret)
    try:
        passphrase = resolve_passphrase(passphrase_file)
        if passphrase is None:
            raise click.ClickException("no passphrase: --passphrase-file or MEDLEDGER_PASSPHRASE")
        key = read_keystore(keystore, passphrase)
    except KeystoreError as exc:
        raise click.ClickException(str(exc)) from None
    contract = ResearchConsent()
    client = JsonRpc(rpc)
    try:
        tree = research_tree(client, contract)
        try:
            path = tree.path(tree.index_of(commitment))
        except KeyError:
            raise click.ClickException("this identity is not in the research tree") from None
        if patient_hex is None:
            data = contract.leave_research(commitment, path.siblings)
        else:
            patient = bytes.fromhex(patient_hex.removeprefix("0x"))
            if len(patient) != 20:
                raise click.BadParameter("--for must be a 20-byte address")
            data = contract.leave_research_for(patient, commitment, path.siblings)
        receipt = client.transact(key, contract.address, data, gas=LEAVE_TX_GAS)
    except RpcError as exc:
        error = decode_zk_revert(exc.data) if exc.data else None
        raise click.ClickException(f"refused: {error or exc}") from None
    finally:
        client.close()
    click.echo(json.dumps({"txHash": "0x" + receipt.tx_hash.hex(), "success": receipt.success,
                           "leafIndex": path.leaf_index}))
    if not receipt.success:
        raise SystemExit(1)
