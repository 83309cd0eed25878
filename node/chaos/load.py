"""Load during a chaos campaign, and the ledger of what the cluster acknowledged.

Transactions: signed transfers sent to random live nodes; one counts as acknowledged once a
node returns its receipt (then it must exist, in the same block, on every node at the end).
Records: `medledger record put` processes encrypt a file into a node's record store, some
killed with SIGKILL mid-upload; a record counts as acknowledged once `put` printed its CID
(then it must decrypt to the same bytes at the end), and its SHA3 is anchored on chain by
a transaction (checked like any other once a receipt acknowledged it).
"""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path

import httpx
from eth_account import Account
from eth_keys import keys

from node.chaos.cluster import ChaosCluster

BATCH_PER_ACCOUNT = 5


def signed_transfer(key: bytes, nonce: int, *, to: bytes, value: int = 1,
                    data: bytes = b"", chain_id: int = 1337) -> tuple[bytes, str]:
    tx = Account.sign_transaction({
        "chainId": chain_id, "nonce": nonce, "to": "0x" + to.hex(), "value": value,
        "gas": 21_000 + 16 * len(data) + 1000, "maxFeePerGas": 10**11,
        "maxPriorityFeePerGas": 10**9, "data": data, "type": 2,
    }, key)
    return bytes(tx.raw_transaction), "0x" + bytes(tx.hash).hex()


@dataclass(frozen=True)
class Acked:
    tx_hash: str
    block_hash: str
    block_number: int


class TxLoad(threading.Thread):
    """Keeps transfers flowing to whichever nodes answer; records acknowledged receipts."""

    def __init__(self, cluster: ChaosCluster, user_keys: list[bytes], rng: random.Random) -> None:
        super().__init__(name="chaos-load", daemon=True)
        self.cluster = cluster
        self.user_keys = user_keys
        self.rng = random.Random(rng.randrange(2**32))
        self.stop_event = threading.Event()
        self.pending: dict[str, float] = {}
        self.acked: dict[str, Acked] = {}
        self.lock = threading.Lock()
        self.sent = 0

    def anchor(self, data: bytes) -> str | None:
        """Send a transaction carrying `data` (a record's digest); its hash, or None."""
        key = self.user_keys[0]
        index = self.rng.randrange(len(self.cluster.nodes))
        address = "0x" + keys.PrivateKey(key).public_key.to_canonical_address().hex()
        with self.lock:
            nonce = self.cluster.try_rpc(index, "eth_getTransactionCount", address, "pending")
            if nonce is None:
                return None
            raw, tx_hash = signed_transfer(key, int(nonce, 16), to=bytes(20), data=data)
            if self.cluster.try_rpc(index, "eth_sendRawTransaction", "0x" + raw.hex()) is None:
                return None
            self.pending[tx_hash] = time.monotonic()
            return tx_hash

    def run(self) -> None:
        while not self.stop_event.is_set():
            try:
                self._send_batch()
                self._collect_receipts()
            except (httpx.HTTPError, ValueError, KeyError, TypeError):
                pass  # a node went down mid-call: the next round picks another
            self.stop_event.wait(0.3)

    def _send_batch(self) -> None:
        index = self.rng.randrange(len(self.cluster.nodes))
        batch = []
        hashes = []
        with self.lock:
            for key in self.user_keys[1:]:
                address = "0x" + keys.PrivateKey(key).public_key.to_canonical_address().hex()
                nonce = self.cluster.try_rpc(index, "eth_getTransactionCount", address, "pending")
                if nonce is None:
                    return
                for n in range(int(nonce, 16), int(nonce, 16) + BATCH_PER_ACCOUNT):
                    raw, tx_hash = signed_transfer(key, n, to=bytes(19) + b"\x01")
                    batch.append({"jsonrpc": "2.0", "id": len(batch),
                                  "method": "eth_sendRawTransaction",
                                  "params": ["0x" + raw.hex()]})
                    hashes.append(tx_hash)
            url = f"http://127.0.0.1:{self.cluster.nodes[index].rpc_port}"
            replies = httpx.post(url, json=batch, timeout=10).json()
            now = time.monotonic()
            for reply in replies:
                if "result" in reply:
                    self.pending[hashes[reply["id"]]] = now
                    self.sent += 1

    def _collect_receipts(self) -> None:
        index = self.rng.randrange(len(self.cluster.nodes))
        with self.lock:
            candidates = list(self.pending)[:60]
        for tx_hash in candidates:
            receipt = self.cluster.try_rpc(index, "eth_getTransactionReceipt", tx_hash)
            if receipt:
                with self.lock:
                    self.pending.pop(tx_hash, None)
                    self.acked[tx_hash] = Acked(tx_hash, receipt["blockHash"],
                                                int(receipt["blockNumber"], 16))
        with self.lock:  # never acknowledged (sent to a node killed before gossiping): forget
            stale = [h for h, at in self.pending.items() if time.monotonic() - at > 120]
            for tx_hash in stale:
                del self.pending[tx_hash]

    def finish(self, timeout: float = 30.0) -> None:
        """Stop sending and collect the receipts still outstanding."""
        self.stop_event.set()
        self.join(timeout)
        deadline = time.monotonic() + timeout
        while self.pending and time.monotonic() < deadline:
            before = len(self.pending)
            self._collect_receipts()
            if len(self.pending) == before:
                time.sleep(0.5)


@dataclass(frozen=True)
class AckedRecord:
    store: Path
    record_cid: str
    sha3_256: str
    plaintext: bytes
    anchor_tx: str | None


class RecordLoad:
    """Encrypted record uploads into the nodes' record stores, some of them killed."""

    def __init__(self, root: Path, rng: random.Random) -> None:
        from node.records.keys import generate_private_key, public_key_pem

        self.root = root
        self.rng = random.Random(rng.randrange(2**32))
        self.patient_key = generate_private_key()
        self.patient_pem = root / "patient.pem"
        self.patient_pem.write_bytes(public_key_pem(self.patient_key.public_key()))
        self.acked: list[AckedRecord] = []
        self.killed = 0
        self.failed: list[str] = []
        self._threads: list[threading.Thread] = []
        self._lock = threading.Lock()

    def upload(self, store: Path, tx_load: TxLoad, *, kill_after: float | None) -> None:
        """Start one upload in the background; SIGKILL it after `kill_after` seconds."""
        thread = threading.Thread(target=self._upload, args=(store, tx_load, kill_after),
                                  daemon=True)
        thread.start()
        self._threads.append(thread)

    def _upload(self, store: Path, tx_load: TxLoad, kill_after: float | None) -> None:
        plaintext = self.rng.randbytes(self.rng.randrange(10_000, 600_000))
        source = self.root / f"record-{os.getpid()}-{time.monotonic_ns()}.bin"
        source.write_bytes(plaintext)
        proc = subprocess.Popen(
            [sys.executable, "-m", "node", "record", "put", str(source),
             "--patient", str(self.patient_pem), "--store", str(store)],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, stdin=subprocess.DEVNULL,
        )
        try:
            out, err = proc.communicate(timeout=kill_after if kill_after is not None else 120)
        except subprocess.TimeoutExpired:
            proc.send_signal(signal.SIGKILL)
            proc.communicate()
            with self._lock:
                self.killed += 1
            return
        if proc.returncode != 0:
            with self._lock:
                self.failed.append(err.decode(errors="replace")[-500:])
            return
        result = json.loads(out)
        anchor = tx_load.anchor(bytes.fromhex(result["sha3_256"][2:]))
        with self._lock:
            self.acked.append(AckedRecord(store, result["record_cid"], result["sha3_256"],
                                          plaintext, anchor))

    def join(self, timeout: float = 120.0) -> None:
        deadline = time.monotonic() + timeout
        for thread in self._threads:
            thread.join(max(0.1, deadline - time.monotonic()))

    def lost(self) -> list[str]:
        """Acknowledged records that no longer decrypt to what was stored."""
        from node.records.embedded import EmbeddedBlockstore
        from node.records.store import RecordStore

        missing: list[str] = []
        by_store: dict[Path, list[AckedRecord]] = {}
        for record in self.acked:
            by_store.setdefault(record.store, []).append(record)
        for store_dir, records in by_store.items():
            blockstore = EmbeddedBlockstore(store_dir)
            try:
                store = RecordStore(blockstore)
                for record in records:
                    try:
                        data = store.read_bytes(
                            record.record_cid, self.patient_key,
                            expected_sha3=bytes.fromhex(record.sha3_256[2:]),
                        )
                    except Exception as exc:  # any failure to read back is a lost record
                        missing.append(f"record {record.record_cid}: {exc!r}")
                        continue
                    if data != record.plaintext:
                        missing.append(f"record {record.record_cid}: content differs")
            finally:
                blockstore.close()
        return missing
