"""The FHIR service's line to the chain: views on the head state and the hospital service
account's transactions, submitted to the node's own txpool, optionally awaited until final.

All py-evm and txpool access goes through the node's ChainWorker (one thread). Nonces are
assigned under a lock from the pool's pending nonce, so concurrent requests never collide.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import trio
from eth_account import Account
from eth_keys import keys

from contracts.bindings import ContractError, LogEntry, MedLedger, decode_revert
from node.chain import Chain
from node.rpc.errors import RpcError
from node.rpc.eth_api import StateReader
from node.rpc.execution import call as rpc_call
from node.rpc.params import CallRequest
from node.txpool import TxPool, TxPoolError
from node.worker import ChainWorker

TX_GAS = 400_000
TIP = 10**8
FINALITY_TIMEOUT = 60.0
POLL_SECONDS = 0.05


class ChainReverted(Exception):
    """A view or transaction reverted; `error` is the decoded custom error."""

    def __init__(self, error: ContractError | None, data: bytes) -> None:
        super().__init__(str(error) if error else f"reverted 0x{data.hex()}")
        self.error = error
        self.data = data

    @property
    def name(self) -> str:
        return self.error.name if self.error else "revert"


@dataclass(frozen=True)
class Receipt:
    tx_hash: bytes
    success: bool
    block_number: int
    timestamp: int
    logs: tuple[LogEntry, ...]


def _request(sender: bytes | None, to: bytes, data: bytes) -> CallRequest:
    return CallRequest(from_=sender, to=to, gas=None, gas_price=None, max_fee_per_gas=None,
                       max_priority_fee_per_gas=None, value=0, data=data, nonce=None,
                       access_list=(), chain_id=None, tx_type=None)


class ChainClient:
    def __init__(self, chain: Chain, worker: ChainWorker, txpool: TxPool, key: bytes) -> None:
        self.chain = chain
        self.worker = worker
        self.txpool = txpool
        self.key = key
        self.address = keys.PrivateKey(key).public_key.to_canonical_address()
        self.medledger = MedLedger()
        self._lock = trio.Lock()

    # -- views ------------------------------------------------------------------------------

    def call_sync(self, to: bytes, data: bytes, sender: bytes | None = None) -> bytes:
        """Worker thread only: a read-only call on the head state at wall-clock time."""
        try:
            return bytes(rpc_call(self.chain, self.chain.head, _request(sender, to, data)))
        except RpcError as exc:
            raw = bytes.fromhex(str(exc.data or "0x")[2:])
            raise ChainReverted(decode_revert(raw), raw) from None

    async def view(self, fn: str, *args: object) -> object:
        data = self.medledger.encode(fn, *args)
        out = await self.worker.run(self.call_sync, self.medledger.address, data)
        return self.medledger.decode(fn, out)

    async def views(self, calls: list[tuple[str, tuple[object, ...]]]) -> list[object]:
        """Several views in one worker hop."""
        encoded = [(fn, self.medledger.encode(fn, *args)) for fn, args in calls]

        def run() -> list[object]:
            return [self.medledger.decode(fn, self.call_sync(self.medledger.address, data))
                    for fn, data in encoded]

        return await self.worker.run(run)

    # -- transactions -----------------------------------------------------------------------

    async def submit(self, calldata: bytes, *, preflight: bool = True) -> bytes:
        """Sign and pool a MedLedger transaction from the service account; its hash.

        With `preflight`, the call is first run on the head state so a revert is reported
        (ChainReverted) instead of being mined."""
        to = self.medledger.address

        def work() -> bytes:
            if preflight:
                self.call_sync(to, calldata, sender=self.address)
            head = self.chain.head
            state = StateReader(self.chain)
            base_fee = int(self.chain.pending_header(int(time.time())).base_fee_per_gas)
            nonce = self.txpool.pending_nonce(self.address, state)
            tx = {"type": 2, "chainId": self.chain.chain_id, "nonce": nonce, "to": to,
                  "value": 0, "data": calldata, "gas": TX_GAS,
                  "maxFeePerGas": 2 * base_fee + TIP, "maxPriorityFeePerGas": TIP}
            raw = bytes(Account.sign_transaction(tx, self.key).raw_transaction)
            pooled = self.txpool.add(raw, state, block_gas_limit=head.gas_limit,
                                     base_fee=base_fee)
            return pooled.hash

        async with self._lock:
            try:
                return await self.worker.run(work)
            except TxPoolError as exc:
                raise RuntimeError(f"txpool refused the service transaction: {exc}") from exc

    async def wait(self, tx_hash: bytes, timeout: float = FINALITY_TIMEOUT) -> Receipt:
        """Wait until the transaction is in a final block (QBFT: immediate finality)."""
        with trio.fail_after(timeout):
            while True:
                receipt = await self.worker.run(self._receipt, tx_hash)
                if receipt is not None:
                    return receipt
                await trio.sleep(POLL_SECONDS)

    async def transact(self, calldata: bytes) -> Receipt:
        receipt = await self.wait(await self.submit(calldata))
        if not receipt.success:
            raise ChainReverted(None, b"")
        return receipt

    async def transact_many(self, calldatas: list[bytes]) -> list[Receipt]:
        """Pool all, then wait for all: a batch usually lands in one block."""
        hashes = [await self.submit(data) for data in calldatas]
        receipts = [await self.wait(h) for h in hashes]
        if not all(r.success for r in receipts):
            raise ChainReverted(None, b"")
        return receipts

    def _receipt(self, tx_hash: bytes) -> Receipt | None:
        location = self.chain.transaction_location(tx_hash)
        if location is None:
            return None
        number, index = location
        block = self.chain.block_by_number(number)
        receipt = self.chain.receipts(block)[index]
        logs = tuple(
            LogEntry(bytes(log.address), tuple(t.to_bytes(32, "big") for t in log.topics),
                     bytes(log.data))
            for log in receipt.logs
        )
        return Receipt(tx_hash, bool(receipt.state_root == b"\x01"), number,
                       int(block.header.timestamp), logs)
