"""A one-node development chain with the FHIR API, demo accounts and sample records, for
trying the web UI (`uv run python -m node.fhir.uidemo`, then open the printed /ui/ URL).

Development only: the demo keys are derived from public names and printed. Two hospitals
(A and B) share one validator; Hospital A's node serves FHIR and the UI. The steps are the
ones a real hospital takes: the admin registers the FHIR service account as a doctor (the
node refuses to serve FHIR before that), then staff and patients; a doctor writes records.
The end-to-end browser test (tests/test_web_ui_e2e.py) uses the same setup.
"""

from __future__ import annotations

import argparse
import json
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
from eth_account import Account
from eth_keys import keys
from eth_utils import keccak, to_checksum_address

from contracts.bindings import MedLedger, Role
from genesis.builder import new_consortium
from genesis.schema import dump_genesis
from genesis.system import Member
from node.fhir.auth import sign_request
from node.keystore import write_keystore
from node.records.keys import generate_private_key, save_private_key

Rpc = Callable[..., Any]
PASSPHRASE = "medledger ui demo"
STAFF = (("doc-a", "admin-a", Role.DOCTOR), ("auditor-a", "admin-a", Role.AUDITOR),
         ("doc-b", "admin-b", Role.DOCTOR))
PATIENTS = (("pat-1", "Rivera", "Maria"), ("pat-2", "Okafor", "Ada"))
ACTORS = ("admin-a", "admin-b", "service-a", "doc-a", "doc-b", "auditor-a", "pat-1", "pat-2",
          "nurse-new")


def key_of(name: str) -> bytes:
    return keccak(b"medledger-ui-demo actor " + name.encode())


def address_of(name: str) -> bytes:
    return keys.PrivateKey(key_of(name)).public_key.to_canonical_address()


@dataclass(frozen=True)
class DemoFiles:
    genesis: Path
    validator: Path
    service: Path  # the FHIR service account's keystore
    record_key: Path  # the hospital's RSA record key (PEM, encrypted)
    passphrase: Path

    def fhir_args(self) -> list[str]:
        return ["--fhir-key", str(self.service), "--fhir-record-key", str(self.record_key)]


def write_files(directory: Path, *, empty_block_period: int = 5) -> DemoFiles:
    """Genesis (Hospital A administered by admin-a, B by admin-b, every actor funded) and
    the key files, in `directory`. Also writes keystores for the staff (<name>.json)."""
    directory.mkdir(parents=True, exist_ok=True)
    genesis, validator_keys = new_consortium(
        1, predeploy_system=True,
        members=[Member("Hospital A", address_of("admin-a")),
                 Member("Hospital B", address_of("admin-b"))],
        prefund={address_of(a): 10**24 for a in ACTORS},
        empty_block_period_seconds=empty_block_period,
    )
    (directory / "genesis.json").write_text(dump_genesis(genesis))
    write_keystore(directory / "validator.json", validator_keys[0], PASSPHRASE,
                   kdf_iterations=2**4)
    for name in ACTORS:
        write_keystore(directory / f"{name}.json", key_of(name), PASSPHRASE, kdf_iterations=2**4)
    save_private_key(directory / "record.pem", generate_private_key(), PASSPHRASE)
    (directory / "pass.txt").write_text(PASSPHRASE)
    return DemoFiles(directory / "genesis.json", directory / "validator.json",
                     directory / "service-a.json", directory / "record.pem",
                     directory / "pass.txt")


def send(rpc: Rpc, actor: str, data: bytes, *, chain_id: int = 1337) -> None:
    """One MedLedger transaction from `actor`, waited until final."""
    sender = to_checksum_address(address_of(actor))
    nonce = int(rpc("eth_getTransactionCount", sender, "pending"), 16)
    tx = {"type": 2, "chainId": chain_id, "nonce": nonce,
          "to": to_checksum_address(MedLedger().address), "value": 0, "data": data,
          "gas": 500_000, "maxFeePerGas": 10**10, "maxPriorityFeePerGas": 10**8}
    raw = bytes(Account.sign_transaction(tx, key_of(actor)).raw_transaction)
    tx_hash = rpc("eth_sendRawTransaction", "0x" + raw.hex())
    deadline = time.monotonic() + 60
    while (receipt := rpc("eth_getTransactionReceipt", tx_hash)) is None:
        if time.monotonic() > deadline:
            raise TimeoutError(f"{actor}: transaction never final")
        time.sleep(0.1)
    if receipt["status"] != "0x1":
        raise RuntimeError(f"{actor}: transaction reverted")


def register_service_account(rpc: Rpc) -> None:
    """Before the node serves FHIR: Hospital A's admin registers its service account."""
    send(rpc, "admin-a", MedLedger().register_staff(address_of("service-a"),
                                                    keccak(b"service-a"), Role.DOCTOR))


def fhir_post(base: str, actor: str, path: str, resource: dict[str, Any]) -> dict[str, Any]:
    body = json.dumps(resource).encode()
    headers = sign_request(key_of(actor), "POST", f"/fhir{path}", body)
    headers["Content-Type"] = "application/fhir+json"
    response = httpx.post(f"{base}/fhir{path}", content=body, headers=headers, timeout=60)
    if response.status_code != 201:
        raise RuntimeError(f"POST {path}: {response.status_code} {response.text}")
    result: dict[str, Any] = response.json()
    return result


def seed(rpc: Rpc, fhir_base: str) -> dict[str, str]:
    """Staff, patients and pat-1's records (heart rate, an ICD-10 condition, a CT study).
    Returns the Patient references by actor name."""
    ml = MedLedger()
    for name, admin, role in STAFF:
        send(rpc, admin, ml.register_staff(address_of(name), keccak(name.encode()), role))
    for name, _, _ in PATIENTS:
        send(rpc, "admin-a", ml.register_patient(address_of(name), keccak(name.encode())))
    refs = {}
    for name, family, given in PATIENTS:
        refs[name] = "Patient/" + fhir_post(fhir_base, "doc-a", "/Patient", {
            "resourceType": "Patient", "gender": "female", "birthDate": "1984-03-12",
            "name": [{"family": family, "given": [given]}],
            "identifier": [{"system": "urn:medledger:account",
                            "value": "0x" + address_of(name).hex()}]})["id"]
    for resource in (heart_rate(refs["pat-1"]), diabetes(refs["pat-1"]),
                     chest_ct(refs["pat-1"])):
        fhir_post(fhir_base, "doc-a", f"/{resource['resourceType']}", resource)
    return refs


def heart_rate(patient: str) -> dict[str, Any]:
    return {"resourceType": "Observation", "status": "final",
            "code": {"coding": [{"system": "http://loinc.org", "code": "8867-4",
                                 "display": "Heart rate"}], "text": "Heart rate"},
            "subject": {"reference": patient}, "effectiveDateTime": "2026-11-20T09:30:00Z",
            "valueQuantity": {"value": 72, "unit": "beats/min",
                              "system": "http://unitsofmeasure.org", "code": "/min"}}


def diabetes(patient: str) -> dict[str, Any]:
    return {"resourceType": "Condition",
            "clinicalStatus": {"coding": [{
                "system": "http://terminology.hl7.org/CodeSystem/condition-clinical",
                "code": "active", "display": "Active"}]},
            "code": {"coding": [{"system": "http://hl7.org/fhir/sid/icd-10-cm", "code": "E11.9",
                                 "display": "Type 2 diabetes mellitus without complications"}],
                     "text": "Type 2 diabetes mellitus"},
            "subject": {"reference": patient}, "onsetDateTime": "2019-06-01"}


def chest_ct(patient: str) -> dict[str, Any]:
    dcm = "http://dicom.nema.org/resources/ontology/DCM"
    return {"resourceType": "ImagingStudy", "status": "available",
            "identifier": [{"system": "urn:dicom:uid",
                            "value": "urn:oid:2.25.1234567890123456789"}],
            "subject": {"reference": patient}, "started": "2026-11-18T14:05:00Z",
            "modality": [{"system": dcm, "code": "CT"}], "description": "CT chest without contrast",
            "numberOfSeries": 1, "numberOfInstances": 120,
            "series": [{"uid": "2.25.98765432109876543210", "number": 1,
                        "modality": {"system": dcm, "code": "CT"},
                        "description": "Axial 1.25 mm", "numberOfInstances": 120,
                        "bodySite": {"system": "http://snomed.info/sct", "code": "51185008",
                                     "display": "Thoracic structure"}}]}


# -------------------------------------------------------------------------------- the script


class _Node:
    """`medledger node run` as a child process (the same binary a hospital runs)."""

    def __init__(self, files: DemoFiles, datadir: Path, rpc_port: int) -> None:
        self.files, self.datadir, self.rpc_port = files, datadir, rpc_port
        self.proc: subprocess.Popen[bytes] | None = None
        self.endpoints: dict[str, Any] = {}

    def start(self, *extra: str) -> None:
        path = self.datadir / "endpoints.json"
        path.unlink(missing_ok=True)
        log = (self.datadir.parent / "node.log").open("ab")
        self.proc = subprocess.Popen(
            [str(Path(sys.executable).with_name("medledger")), "node", "run",
             "--datadir", str(self.datadir), "--genesis", str(self.files.genesis),
             "--key", str(self.files.validator), "--passphrase-file", str(self.files.passphrase),
             "--rpc-port", str(self.rpc_port), "--ws-port", "0", "--log-format", "json", *extra],
            stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
        deadline = time.monotonic() + 90
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"the node exited ({self.proc.returncode}); see "
                                   f"{self.datadir.parent / 'node.log'}")
            if path.exists():
                info = json.loads(path.read_text())
                if info.get("pid") == self.proc.pid:
                    self.endpoints = info
                    return
            time.sleep(0.1)
        raise RuntimeError("the node did not start in 90 s")

    def rpc(self, method: str, *params: object) -> Any:
        reply = httpx.post(self.endpoints["http"], json={"jsonrpc": "2.0", "id": 1,
                                                         "method": method,
                                                         "params": list(params)},
                           timeout=30).json()
        if "error" in reply:
            raise RuntimeError(f"{method}: {reply['error']}")
        return reply["result"]

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            self.proc.wait(30)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--dir", type=Path, default=None,
                        help="keep the chain and key files here (default: a temporary dir)")
    parser.add_argument("--fhir-port", type=int, default=8080)
    parser.add_argument("--rpc-port", type=int, default=0)
    args = parser.parse_args(argv)
    root = args.dir or Path(tempfile.mkdtemp(prefix="medledger-ui-demo-"))
    if (root / "node").exists():
        parser.error(f"{root} already holds a demo chain: choose an empty --dir")
    files = write_files(root / "files")
    node = _Node(files, root / "node", args.rpc_port)
    try:
        node.start()
        register_service_account(node.rpc)
        node.stop()
        node.start("--fhir-port", str(args.fhir_port), *files.fhir_args())
        refs = seed(node.rpc, node.endpoints["fhir"])
        print(f"\nweb UI:  {node.endpoints['fhir']}/ui/")
        print(f"chain:   {root}  (node log: {root / 'node.log'})")
        print(f"keystores in {files.genesis.parent} (password: {PASSPHRASE!r}); private keys:")
        for name in ACTORS:
            print(f"  {name:10} 0x{address_of(name).hex()}  key {key_of(name).hex()}")
        print(f"patients: {refs}\nCtrl-C stops the node.")
        signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
        while True:
            time.sleep(3600)
    except KeyboardInterrupt:
        pass
    finally:
        node.stop()


if __name__ == "__main__":
    main()
