"""How a node consults the on-chain permissioning contracts (as Besu does with its own).

- Nodes: after every new head whose logs touch NodeAllowList (`permissioning_changed`), call
  `refresh_node_allow_list` and feed the result to the network layer's AllowList; peers that
  are no longer allowed are dropped there. Validators stay allowed whatever the list says, so a
  vote can never cut the network off from its own validators.
- Accounts: before admitting a transaction to the pool and before including it in a block,
  call `transaction_allowed`; a sender that is neither an explicit entry nor an active account
  registered by an active member is refused.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Protocol

from contracts.bindings import AccountAllowList, CallFn, LogEntry, MedLedger, NodeAllowList


class ReplaceableAllowList(Protocol):
    """The network layer's AllowList: the node swaps its whole content."""

    def replace(self, addresses: Iterable[bytes]) -> None: ...


def allowed_nodes(call: CallFn, validators: Iterable[bytes] = ()) -> frozenset[bytes]:
    """Node addresses allowed now: NodeAllowList's entries plus the current validators."""
    return frozenset(NodeAllowList().allowed_nodes(call)) | frozenset(validators)


def refresh_node_allow_list(
    call: CallFn, allow_list: ReplaceableAllowList, validators: Iterable[bytes] = ()
) -> frozenset[bytes]:
    """Read the on-chain node list and replace `allow_list`'s content with it."""
    nodes = allowed_nodes(call, validators)
    allow_list.replace(nodes)
    return nodes


def transaction_allowed(
    call: CallFn,
    sender: bytes,
    to: bytes | None = None,
    value: int = 0,
    gas_price: int = 0,
    gas: int = 0,
    data: bytes = b"",
) -> bool:
    """AccountAllowList's verdict on a transaction (Besu's transactionAllowed)."""
    return AccountAllowList().transaction_allowed(call, sender, to, value, gas_price, gas, data)


def permissioning_changed(logs: Iterable[LogEntry]) -> tuple[bool, bool]:
    """(node list changed, account permissions changed) judging by a block's logs.

    Account permissions also change when MedLedger registers, (de)activates or suspends, so a
    node that caches transactionAllowed answers must drop its cache on either."""
    nodes, accounts, medledger = NodeAllowList(), AccountAllowList(), MedLedger()
    account_events = {
        medledger.event_topic(name)
        for name in ("AccountRegistered", "AccountStatusChanged", "MemberStatusChanged")
    }
    node_changed = account_changed = False
    for log in logs:
        if not log.topics:
            continue
        if log.address == nodes.address:
            node_changed = True
        elif log.address == accounts.address or (
            log.address == medledger.address and log.topics[0] in account_events
        ):
            account_changed = True
    return node_changed, account_changed
