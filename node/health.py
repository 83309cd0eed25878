"""Liveness and readiness rules for orchestrators (docker compose, Kubernetes, a load balancer).

Liveness: the node's loop answers and its chain worker finishes a trivial read within a timeout;
a deadlocked worker is what a restart fixes. Readiness: the node can serve current data, i.e.
its head is within `max_lag_blocks` of the highest block seen on the network, and a networked
node has at least `min_peers` peers (a node with no network, a single-validator chain, is
ready once its chain is open).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from node.metrics import NodeSnapshot


@dataclass(frozen=True)
class HealthPolicy:
    max_lag_blocks: int = 2
    min_peers: int = 1
    liveness_timeout: float = 30.0

    def __post_init__(self) -> None:
        if self.max_lag_blocks < 0:
            raise ValueError("max_lag_blocks must not be negative")
        if self.min_peers < 0:
            raise ValueError("min_peers must not be negative")
        if self.liveness_timeout <= 0:
            raise ValueError("liveness_timeout must be positive")


@dataclass(frozen=True)
class Readiness:
    ready: bool
    reasons: tuple[str, ...]
    details: dict[str, Any]

    def to_json(self) -> dict[str, Any]:
        return {"status": "ready" if self.ready else "not ready",
                "reasons": list(self.reasons), **self.details}


def readiness(snapshot: NodeSnapshot | None, policy: HealthPolicy) -> Readiness:
    """The readiness verdict for one snapshot of the node (None: the node could not be read)."""
    if snapshot is None:
        return Readiness(False, ("the chain worker did not answer",), {})
    reasons: list[str] = []
    if snapshot.blocks_behind > policy.max_lag_blocks:
        reasons.append(
            f"syncing: head {snapshot.head_number} is {snapshot.blocks_behind} blocks behind "
            f"{snapshot.sync_target} (allowed {policy.max_lag_blocks})"
        )
    if snapshot.networked and snapshot.peers < policy.min_peers:
        reasons.append(f"{snapshot.peers} peers connected, {policy.min_peers} needed")
    details = {
        "head": snapshot.head_number,
        "highest": snapshot.sync_target,
        "peers": snapshot.peers,
        "networked": snapshot.networked,
    }
    return Readiness(not reasons, tuple(reasons), details)
