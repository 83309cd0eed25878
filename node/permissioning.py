"""The node consults the on-chain permissioning contracts, as Besu does with its own.

Nodes: the network allow-list is NodeAllowList's entries plus the current validators
(a vote can never cut the network off from its own validators), refreshed at start and
after every block whose logs touch the list. Accounts: AccountAllowList's verdict decides
whether a sender's transactions enter the pool; verdicts are cached per sender (the
contract decides on the sender alone) and the cache is dropped, and the pool re-checked,
after any block that changes account permissions. Blocks from other validators (proposals
and final blocks) are checked too, at their parent's state and without the pool's cache, so
a proposer cannot slip in a transaction the pool would have refused.
Chains whose genesis has no such contracts are not permissioned on chain.
"""

from __future__ import annotations

import threading
from collections.abc import Iterable

from eth.abc import BlockAPI, BlockHeaderAPI
from eth_utils import keccak

from contracts.bindings import LogEntry
from contracts.permissioning import allowed_nodes, permissioning_changed, transaction_allowed
from genesis.system import MEDLEDGER_ADDRESS
from node.chain import Chain
from node.rpc.errors import RpcError
from node.rpc.execution import call as evm_call
from node.rpc.params import CallRequest

MAX_BLOCK_VERDICTS = 4096


class OnChainPermissioning:
    NODE_LIST = "nodeAllowList"
    ACCOUNT_LIST = "accountAllowList"

    def __init__(self, chain: Chain) -> None:
        self.chain = chain
        contracts = chain.genesis.system_contracts
        self.nodes_enabled = self.NODE_LIST in contracts
        self.accounts_enabled = self.ACCOUNT_LIST in contracts
        self._verdicts: dict[bytes, bool] = {}
        self._block_verdicts: dict[tuple[bytes, bytes], bool] = {}
        self._lock = threading.Lock()

    def _call(self, to: bytes, data: bytes) -> bytes:
        return self._call_at(self.chain.head, to, data)

    def _call_at(self, header: BlockHeaderAPI, to: bytes, data: bytes) -> bytes:
        request = CallRequest(
            from_=None, to=to, gas=None, gas_price=None, max_fee_per_gas=None,
            max_priority_fee_per_gas=None, value=0, data=data, nonce=None, access_list=(),
            chain_id=None, tx_type=None,
        )
        try:
            return evm_call(self.chain, header, request)
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

    def refused_sender(self, block: BlockAPI) -> bytes | None:
        """The first sender in `block` that AccountAllowList refuses at the parent's state, or
        None when all may transact (chain worker thread). Verdicts are cached under the
        permissioning contracts' code and storage at the parent, so they can never be stale.
        ValueError for an unknown parent or a transaction whose sender cannot be recovered."""
        if not self.accounts_enabled or not block.transactions:
            return None
        parent = self.chain.header_by_hash(bytes(block.header.parent_hash))
        if parent is None:
            raise ValueError(f"block #{block.number} has an unknown parent")
        root = self._rules_fingerprint(parent)

        def call_at_parent(to: bytes, data: bytes) -> bytes:
            return self._call_at(parent, to, data)

        for tx in block.transactions:
            try:
                sender = bytes(tx.sender)
            except Exception as exc:  # py-evm raises several kinds for a bad signature
                raise ValueError(f"transaction 0x{tx.hash.hex()} has no valid sender") from exc
            key = (root, sender)
            with self._lock:
                verdict = self._block_verdicts.get(key)
            if verdict is None:
                verdict = bool(transaction_allowed(call_at_parent, sender))
                with self._lock:
                    if len(self._block_verdicts) >= MAX_BLOCK_VERDICTS:
                        self._block_verdicts.clear()
                    self._block_verdicts[key] = verdict
            if not verdict:
                return sender
        return None

    def _rules_fingerprint(self, header: BlockHeaderAPI) -> bytes:
        """What AccountAllowList's verdict depends on at `header`: its own and MedLedger's
        code and storage. Verdicts cached under it stay exact across blocks that leave
        both contracts alone (most blocks), without one EVM call per sender per block."""
        state = self.chain.state_at(header)
        account_db = state._account_db  # py-evm offers no public storage-root getter
        parts = []
        for address in (self.chain.genesis.system_contracts[self.ACCOUNT_LIST], MEDLEDGER_ADDRESS):
            parts.append(bytes(account_db._get_storage_root(address)))
            parts.append(bytes(state.get_code_hash(address)))
        return keccak(b"".join(parts))

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
