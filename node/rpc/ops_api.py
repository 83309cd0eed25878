"""admin_snapshot: a consistent copy of the running node's chain database, over JSON-RPC.

LevelDB admits one process per database, so a backup of a running node has to be taken by the
node itself. Install it only where the admin namespace is enabled (it writes files on the node's
machine); the destination must be an absolute path that does not exist yet.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

import trio

from node.backup import BackupError, snapshot_node
from node.rpc.dispatch import CallContext, Dispatcher
from node.rpc.errors import INVALID_PARAMS, RpcError

if TYPE_CHECKING:
    from node.runtime import Node

SNAPSHOT_FAILED = -32000


def install_ops_rpc(dispatcher: Dispatcher, node: Node) -> None:
    """Register admin_snapshot(dest) on `dispatcher` for `node`."""
    lock = trio.Lock()

    async def admin_snapshot(params: list[Any], ctx: CallContext) -> dict[str, Any]:
        if len(params) != 1 or not isinstance(params[0], str) or not params[0]:
            raise RpcError(INVALID_PARAMS, "invalid params: expected [destination directory]")
        dest = Path(params[0])
        if not dest.is_absolute():
            raise RpcError(INVALID_PARAMS, "the snapshot destination must be an absolute path")
        if lock.locked():
            raise RpcError(SNAPSHOT_FAILED, "a snapshot is already being taken")
        async with lock:
            try:
                info = await snapshot_node(node, dest)
            except BackupError as exc:
                raise RpcError(SNAPSHOT_FAILED, str(exc)) from None
            except OSError as exc:
                raise RpcError(SNAPSHOT_FAILED, f"cannot write the snapshot: {exc}") from None
        return {
            "path": info.path, "number": hex(info.head_number), "hash": info.head_hash,
            "stateRoot": info.state_root, "keys": info.keys, "bytes": info.bytes,
        }

    dispatcher.register("admin_snapshot", admin_snapshot)
