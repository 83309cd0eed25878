"""A read-only node (an auditor's): JSON-RPC methods that would change the chain are refused.

An auditor follows and serves the chain but never submits anything to it: a transaction sent
to it would otherwise be pooled and gossiped to the validators under the auditor's name.
The write methods stay registered (so the answer is a clear refusal, not "method not found")
and answer EIP-1474's -32004 "method not supported" with the reason.
"""

from __future__ import annotations

import dataclasses
from typing import Any

from node.rpc.dispatch import CallContext, Dispatcher
from node.rpc.errors import RpcError

METHOD_NOT_SUPPORTED = -32004
WRITE_METHODS = frozenset({
    "eth_sendRawTransaction",
    "eth_sendTransaction",
    "qbft_proposeValidatorVote",
    "qbft_discardValidatorVote",
    "admin_addPeer",
    "admin_removePeer",
})
READ_ONLY_MESSAGE = (
    "this node is read-only (an auditor node): {method} is refused; send transactions to a "
    "hospital's (validator's) node"
)


def refuse_writes(dispatcher: Dispatcher) -> list[str]:
    """Replace every registered write method by a refusal; returns the methods replaced.
    Call after all APIs are installed and before metrics wrap the handlers."""
    methods = dispatcher._methods  # the registry has no public way to replace a handler
    replaced = sorted(name for name in methods if name in WRITE_METHODS)
    for name in replaced:
        methods[name] = dataclasses.replace(methods[name], handler=_refusal(name))
    return replaced


def _refusal(method: str) -> Any:
    async def refuse(params: list[Any], ctx: CallContext) -> Any:
        raise RpcError(METHOD_NOT_SUPPORTED, READ_ONLY_MESSAGE.format(method=method))

    return refuse
