"""Comparing two nodes' genesis fork schedules in the status handshake.

A fork changes how blocks from its height on are executed. Two nodes whose schedules differ
at a height the chain has reached hold different chains; the one missing a fork must not
keep validating (it would sign or import blocks under the old rules). Schedules that differ
only above both heads are the normal state of a rollout (some nodes restarted with the new
genesis, some not yet), so such peers stay connected and both sides log what is missing.
"""

from __future__ import annotations

from dataclasses import dataclass

from network.codec import ChainStatus


@dataclass(frozen=True)
class ForkComparison:
    """`conflict`: why the peer must be refused (None: compatible). `pending`: differences
    above both heads that must be fixed before the chain reaches them."""

    conflict: str | None
    pending: tuple[tuple[int, str], ...]


def compare_forks(local: ChainStatus, remote: ChainStatus) -> ForkComparison:
    """Compare `remote`'s schedule with ours given both heads."""
    ours = dict(local.forks)
    theirs = dict(remote.forks)
    reached = max(local.head_number, remote.head_number)
    pending: list[tuple[int, str]] = []
    for block in sorted(set(ours) | set(theirs)):
        mine, other = ours.get(block), theirs.get(block)
        if mine == other:
            continue
        if mine is not None and other is not None:
            what = (
                f"both schedule a fork at block {block} with different rules "
                f"(ours 0x{mine.hex()[:16]}, theirs 0x{other.hex()[:16]}): the genesis files "
                "differ"
            )
        elif mine is None:
            what = (
                f"the peer schedules a fork at block {block} that this node's genesis lacks: "
                "update this node's genesis file"
            )
        else:
            what = (
                f"this node schedules a fork at block {block} that the peer's genesis lacks: "
                "the peer must update its genesis file"
            )
        if block <= reached:
            return ForkComparison(
                conflict=f"fork schedule mismatch at block {block} (chain head #{reached}): "
                f"{what}",
                pending=(),
            )
        pending.append((block, what))
    return ForkComparison(conflict=None, pending=tuple(pending))
