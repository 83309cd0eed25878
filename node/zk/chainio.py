"""The ZK contracts over a node's Ethereum JSON-RPC (httpx, no web3): rebuild the research tree
from public logs, submit proofs, read state. Used by `medledger zk` on the client side.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

import httpx
from eth_account import Account
from eth_utils import to_checksum_address

from contracts.bindings import LogEntry
from contracts.zk_bindings import ResearchConsent
from node.zk.merkle import MerkleTree

RECEIPT_TIMEOUT = 60.0
PROOF_TX_GAS = 500_000
"""Gas limit for enroll / proveAttribute: they use about 250k-280k (bench/zk.py); unused gas is
not charged."""
LEAVE_TX_GAS = 3_000_000
"""Gas limit for leaveResearch (40 Poseidon calls, under 2.5M): estimating it on a py-evm node
runs that many calls per bisection step and takes long."""


class RpcError(RuntimeError):
    """The node answered with a JSON-RPC error, or not at all; `data` is the revert data of a
    reverted eth_call or estimate, when the node gave it."""

    def __init__(self, message: str, data: bytes | None = None) -> None:
        super().__init__(message)
        self.data = data


def _hex(data: bytes) -> str:
    return "0x" + data.hex()


def _bytes(value: str) -> bytes:
    return bytes.fromhex(value[2:] if value.startswith("0x") else value)


@dataclass(frozen=True)
class Receipt:
    tx_hash: bytes
    success: bool
    block_number: int
    gas_used: int
    logs: tuple[LogEntry, ...]


class JsonRpc:
    """A minimal synchronous Ethereum JSON-RPC client."""

    def __init__(self, url: str, timeout: float = 30.0) -> None:
        self.url = url
        self._client = httpx.Client(timeout=timeout)
        self._id = 0

    def close(self) -> None:
        self._client.close()

    def request(self, method: str, params: list[Any]) -> Any:
        self._id += 1
        try:
            response = self._client.post(
                self.url, json={"jsonrpc": "2.0", "id": self._id, "method": method,
                                "params": params})
            response.raise_for_status()
            body = response.json()
        except (httpx.HTTPError, ValueError) as exc:
            raise RpcError(f"{method}: {exc}") from exc
        if "error" in body:
            error = body["error"]
            data = error.get("data")
            revert = _bytes(data) if isinstance(data, str) and data.startswith("0x") else None
            raise RpcError(f"{method}: {error.get('message')}", revert)
        return body["result"]

    def call(self, to: bytes, data: bytes) -> bytes:
        """A bindings CallFn (eth_call at latest); reverts raise RpcError with the data."""
        return _bytes(self.request("eth_call", [{"to": _hex(to), "data": _hex(data)}, "latest"]))

    def logs(self, address: bytes, topic0: bytes) -> list[LogEntry]:
        found = self.request("eth_getLogs", [{"address": _hex(address), "topics": [_hex(topic0)],
                                             "fromBlock": "0x0", "toBlock": "latest"}])
        return [LogEntry(_bytes(log["address"]), tuple(_bytes(t) for t in log["topics"]),
                         _bytes(log["data"])) for log in found]

    def transact(self, private_key: bytes, to: bytes, data: bytes, *, gas: int | None = None,
                 timeout: float = RECEIPT_TIMEOUT) -> Receipt:
        """Sign and send an EIP-1559 transaction, wait for its receipt. Without `gas`, the node
        estimates it (+20 %); proof submissions pass a fixed limit instead, since estimating
        repeats the pairing check many times (seconds each in py-evm)."""
        sender = Account.from_key(private_key).address
        chain_id = int(self.request("eth_chainId", []), 16)
        nonce = int(self.request("eth_getTransactionCount", [sender, "pending"]), 16)
        if gas is None:
            estimate = int(self.request("eth_estimateGas", [
                {"from": sender, "to": _hex(to), "data": _hex(data)}]), 16)
            gas = estimate + estimate // 5
        gas_price = int(self.request("eth_gasPrice", []), 16)
        tx = {"type": 2, "chainId": chain_id, "nonce": nonce, "to": to_checksum_address(to),
              "value": 0, "data": data, "gas": gas,
              "maxFeePerGas": 2 * gas_price + 1, "maxPriorityFeePerGas": 1}
        raw = Account.sign_transaction(tx, private_key).raw_transaction
        tx_hash = _bytes(self.request("eth_sendRawTransaction", [_hex(bytes(raw))]))
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            receipt = self.request("eth_getTransactionReceipt", [_hex(tx_hash)])
            if receipt is not None:
                return Receipt(
                    tx_hash, int(receipt["status"], 16) == 1, int(receipt["blockNumber"], 16),
                    int(receipt["gasUsed"], 16),
                    tuple(LogEntry(_bytes(log["address"]),
                                   tuple(_bytes(t) for t in log["topics"]), _bytes(log["data"]))
                          for log in receipt["logs"]))
            time.sleep(0.25)
        raise RpcError(f"no receipt for 0x{tx_hash.hex()} after {timeout:.0f} s")


def research_tree(rpc: JsonRpc, contract: ResearchConsent | None = None) -> MerkleTree:
    """The research-consent tree rebuilt from ResearchConsentGiven logs, checked against the
    contract's leaf count and current root (a node that hides or alters leaves is detected)."""
    contract = contract or ResearchConsent()
    events = contract.decode_logs(rpc.logs(contract.address,
                                           contract.event_topic("ResearchConsentGiven")))
    by_index = {int(e.args["leafIndex"]): int(e.args["commitment"]) for e in events}
    count = contract.leaf_count(rpc.call)
    if sorted(by_index) != list(range(count)):
        raise RpcError(f"logs hold leaves {sorted(by_index)[:5]}..., contract has {count}")
    tree = MerkleTree(by_index[i] for i in range(count))
    withdrawn = contract.decode_logs(rpc.logs(contract.address,
                                              contract.event_topic("ResearchConsentWithdrawn")))
    for event in withdrawn:
        tree.remove(int(event.args["leafIndex"]))
    if tree.root != contract.current_root(rpc.call):
        raise RpcError("the tree rebuilt from logs does not match the contract's root")
    return tree
