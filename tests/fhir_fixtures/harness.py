"""A real single-validator node with the system contracts, a registered consortium and the
FHIR API, running on its own trio loop in a background thread; tests talk HTTP to it."""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import trio
from eth_account import Account
from eth_keys import keys
from eth_utils import keccak

from contracts.bindings import LogEntry, MedLedger, Role
from genesis.builder import new_consortium
from genesis.system import Member
from node.fhir import FhirConfig, FhirService, serve_fhir
from node.fhir.auth import sign_request
from node.records.embedded import EmbeddedBlockstore
from node.records.keys import generate_private_key
from node.records.store import RecordStore
from node.rpc.eth_api import StateReader
from node.runtime import Node, NodeConfig

ACTORS = ("admin-a", "admin-b", "service-a", "doc-a", "nurse-a", "doc-b", "auditor-a",
          "pat-1", "pat-2")


def key_of(name: str) -> bytes:
    return keccak(b"fhir-test actor " + name.encode())


def address_of(name: str) -> bytes:
    return keys.PrivateKey(key_of(name)).public_key.to_canonical_address()


@dataclass
class FhirNode:
    """Handles to the running node; `http(actor)` is a client that signs as that actor."""

    base: str
    node: Node
    service: FhirService
    token: trio.lowlevel.TrioToken
    cancel: trio.CancelScope
    thread: threading.Thread
    tokens: dict[str, str] = field(default_factory=dict)
    medledger: MedLedger = field(default_factory=MedLedger)

    def run(self, fn: Any, *args: Any) -> Any:
        """Run an async function on the node's loop."""
        return trio.from_thread.run(fn, *args, trio_token=self.token)

    def send_txs(self, txs: list[tuple[str, bytes]]) -> list[Any]:
        """Transactions signed by the named actors, pooled together and waited until final."""
        chain = self.service.chainio

        def add(actor: str, data: bytes) -> bytes:
            node = self.node
            state = StateReader(node.chain)
            sender = address_of(actor)
            base_fee = int(node.chain.pending_header(int(time.time())).base_fee_per_gas)
            tx = {"type": 2, "chainId": node.chain.chain_id,
                  "nonce": node.txpool.pending_nonce(sender, state),
                  "to": self.medledger.address, "value": 0, "data": data, "gas": 500_000,
                  "maxFeePerGas": 2 * base_fee + 10**8, "maxPriorityFeePerGas": 10**8}
            raw = bytes(Account.sign_transaction(tx, key_of(actor)).raw_transaction)
            return node.txpool.add(raw, state, block_gas_limit=node.chain.head.gas_limit,
                                   base_fee=base_fee).hash

        async def go() -> list[Any]:
            hashes = [await self.node.worker.run(add, actor, data) for actor, data in txs]
            return [await chain.wait(h) for h in hashes]

        receipts = self.run(go)
        for (actor, _), receipt in zip(txs, receipts, strict=True):
            assert receipt.success, f"{actor}: transaction failed"
        return receipts

    def send_tx(self, actor: str, data: bytes) -> Any:
        return self.send_txs([(actor, data)])[0]

    def view(self, fn: str, *args: Any) -> Any:
        return self.run(self.service.chainio.view, fn, *args)

    def bearer(self, actor: str) -> str:
        if actor not in self.tokens:
            headers = sign_request(key_of(actor), "POST", "/auth/token", b"")
            response = httpx.post(self.base + "/auth/token", headers=headers)
            assert response.status_code == 200, response.text
            self.tokens[actor] = response.json()["access_token"]
        return self.tokens[actor]

    def client(self, actor: str, **headers: str) -> httpx.Client:
        all_headers = {"Authorization": f"Bearer {self.bearer(actor)}",
                       "Content-Type": "application/fhir+json", **headers}
        return httpx.Client(base_url=self.base + "/fhir", headers=all_headers, timeout=60)

    def audit_events(self) -> list[Any]:
        """All AccessLogged events on chain so far (the index is read on the node's loop,
        the only thread that touches it)."""

        async def rows() -> list[Any]:
            await self.service.sync_audit()
            return self.service.index.db.execute(
                "SELECT address, topics, data FROM audit_logs ORDER BY block, log_index"
            ).fetchall()

        out = []
        for address, topics, data in self.run(rows):
            entry = LogEntry(bytes(address),
                             tuple(bytes(topics)[i:i + 32] for i in range(0, len(topics), 32)),
                             bytes(data))
            event = self.medledger.decode_log(entry)
            if event is not None and event.name == "AccessLogged":
                out.append(event)
        return out

    def record_id(self, rtype: str, rid: str) -> bytes:
        async def lookup() -> bytes:
            row = self.service.index.resource(rtype, rid)
            assert row is not None
            return row.record_id

        return self.run(lookup)

    def wait_block(self) -> None:
        """Wait until the pool is mined (audit transactions are not awaited by reads; they
        are pooled before the response is sent and leave the pool once in a final block)."""
        deadline = time.time() + 30
        while time.time() < deadline:
            if self.run(self.node.worker.run, lambda: len(self.node.txpool)) == 0:
                return
            time.sleep(0.1)
        raise AssertionError("transactions were not mined")

    def stop(self) -> None:
        trio.from_thread.run_sync(self.cancel.cancel, trio_token=self.token)
        self.thread.join(30)


def start_fhir_node(tmp: Path, *, token_ttl: float = 900.0, certfile: Path | None = None,
                    keyfile: Path | None = None) -> FhirNode:
    members = [Member("Hospital A", address_of("admin-a")), Member("Hospital B",
                                                                   address_of("admin-b"))]
    genesis, validator_keys = new_consortium(
        1, predeploy_system=True, members=members,
        prefund={address_of(a): 10**24 for a in ACTORS}, empty_block_period_seconds=60,
    )
    node = Node(NodeConfig(datadir=tmp / "node", genesis=genesis,
                           validator_key=validator_keys[0], rpc_port=0, ws_port=None))
    record_key = generate_private_key()
    store = RecordStore(EmbeddedBlockstore(tmp / "records"))
    service = FhirService(node.chain, node.worker, node.txpool, store, key_of("service-a"),
                          FhirConfig(datadir=tmp / "fhir", port=0, token_ttl=token_ttl,
                                     certfile=certfile, keyfile=keyfile),
                          record_key)
    ready = threading.Event()
    state: dict[str, Any] = {}

    async def main() -> None:
        with trio.CancelScope() as scope:
            state["cancel"] = scope
            state["token"] = trio.lowlevel.current_trio_token()
            async with trio.open_nursery() as nursery:
                await nursery.start(node.run)
                assert node.driver is not None
                node.driver.add_listener(service.on_block)
                state["register"] = nursery
                ready.set()

    def thread_main() -> None:
        try:
            trio.run(main)
        except BaseException as exc:  # surfaced to the waiting test
            state["error"] = exc
            ready.set()

    thread = threading.Thread(target=thread_main, daemon=True)
    thread.start()
    assert ready.wait(60), "node did not start"
    if "error" in state:
        raise state["error"]
    fhir = FhirNode("", node, service, state["token"], state["cancel"], thread)
    ml = fhir.medledger
    staff = (("service-a", "admin-a", Role.DOCTOR), ("doc-a", "admin-a", Role.DOCTOR),
             ("nurse-a", "admin-a", Role.NURSE), ("auditor-a", "admin-a", Role.AUDITOR),
             ("doc-b", "admin-b", Role.DOCTOR))
    fhir.send_txs(
        [(admin, ml.register_staff(address_of(name), keccak(name.encode()), role))
         for name, admin, role in staff]
        + [("admin-a", ml.register_patient(address_of(name), keccak(name.encode())))
           for name in ("pat-1", "pat-2")])
    # The patients let the hospital's FHIR service submit consent on their behalf.
    fhir.send_txs([(name, ml.set_delegate(address_of("service-a"), True))
                   for name in ("pat-1", "pat-2")])

    async def start_server() -> int:
        return await state["register"].start(serve_fhir, service)

    port = fhir.run(start_server)
    fhir.base = f"http://127.0.0.1:{port}"
    return fhir


def patient_resource(actor: str, family: str) -> dict[str, Any]:
    return {"resourceType": "Patient", "active": True, "gender": "female",
            "birthDate": "1970-01-01", "name": [{"family": family, "given": ["Ann"]}],
            "identifier": [{"system": "urn:medledger:account",
                            "value": "0x" + address_of(actor).hex()}]}


def create_patient(node: FhirNode, actor: str, family: str) -> str:
    """POST a Patient for `actor` as doc-a; its reference ("Patient/<id>")."""
    response = node.client("doc-a").post("/Patient", json=patient_resource(actor, family))
    assert response.status_code == 201, response.text
    return f"Patient/{response.json()['id']}"


def observation(patient_ref: str, code: str = "8867-4", value: float = 72.0,
                when: str = "2024-05-01T10:00:00Z") -> dict[str, Any]:
    return {"resourceType": "Observation", "status": "final",
            "code": {"coding": [{"system": "http://loinc.org", "code": code}]},
            "subject": {"reference": patient_ref}, "effectiveDateTime": when,
            "valueQuantity": {"value": value, "unit": "/min", "system": "http://unitsofmeasure.org",
                              "code": "/min"}}
