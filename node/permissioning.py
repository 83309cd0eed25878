"""The node consults the on-chain permissioning contracts, as Besu does with its own.

Nodes: the network allow-list is NodeAllowList's entries plus the current validators
(a vote can never cut the network off from its own validators), refreshed at start and
after every block whose logs touch the list. Accounts: AccountAllowList's verdict decides
whether a sender's transactions enter the pool; verdicts are cached per sender (the
contract decides on the sender alone) and the cache is dropped, and the pool re-checked,
after any block that changes account permissions.
Chains whose genesis has no such contracts are not permissioned on chain.
"""

from __future__ import annotations

import threading
from collections.abc import Iterable

from eth.abc import BlockAPI

from contracts.bindings import LogEntry
from contracts.permissioning import allowed_nodes, permissioning_changed, transaction_allowed
from node.chain import Chain
from node.rpc.errors import RpcError
from node.rpc.execution import call as evm_call
from node.rpc.params import CallRequest


class OnChainPermissioning:
    NODE_LIST = "nodeAllowList"
    ACCOUNT_LIST = "accountAllowList"

    def __init__(self, chain: Chain) -> None:
        self.chain = chain
        contracts = chain.genesis.system_contracts
        self.nodes_enabled = self.NODE_LIST in contracts
        self.accounts_enabled = self.ACCOUNT_LIST in contracts
        self._verdicts: dict[bytes, bool] = {}
        self._lock = threading.Lock()

    def _call(self, to: bytes, data: bytes) -> bytes:
        request = CallRequest(
            from_=None, to=to, gas=None, gas_price=None, max_fee_per_gas=None,
            max_priority_fee_per_gas=None, value=0, data=data, nonce=None, access_list=(),
            chain_id=None, tx_type=None,
        )
        try:
            return evm_call(self.chain, self.chain.head, request)
        except RpcError as exc:
            raise ValueError(f"permissioning contract call failed: {exc.message}") from exc

    def allowed_nodes(self, validators: Iterable[bytes]) -> frozenset[bytes] | None:
        """Addresses allowed to connect now, or None when the chain has no node list."""
        if not self.nodes_enabled:
            return None
        return allowed_nodes(self._call, validators)

    def sender_allowed(self, sender: bytes) -> bool:
        """Whether AccountAllowList lets `sender` transact (chain worker thread)."""
        if not self.accounts_enabled:
            return True
        with self._lock:
            cached = self._verdicts.get(sender)
        if cached is not None:
            return cached
        verdict = bool(transaction_allowed(self._call, sender))
        with self._lock:
            self._verdicts[sender] = verdict
        return verdict

    def on_block(self, block: BlockAPI) -> tuple[bool, bool]:
        """(node list changed, account permissions changed) by this block; clears caches."""
        logs = [
            LogEntry(address=bytes(log.address),
                     topics=tuple(t.to_bytes(32, "big") for t in log.topics), data=log.data)
            for receipt in self.chain.receipts(block) for log in receipt.logs
        ]
        nodes_changed, accounts_changed = permissioning_changed(logs)
        if accounts_changed:
            with self._lock:
                self._verdicts.clear()
        return nodes_changed, accounts_changed
