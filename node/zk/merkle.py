"""Client-side mirror of ResearchConsent's incremental Poseidon Merkle tree.

The contract stores only the insertion frontier and the root; a patient's app rebuilds the tree
from the public `ResearchConsentGiven` leaves (in leaf-index order, emptied again by
`ResearchConsentWithdrawn`) to get the authentication path the membership circuit needs (or the
one `leaveResearch` needs). Node = Poseidon(left, right); empty leaves are 0; depth 20.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from functools import cache

from node.zk.poseidon import FIELD, poseidon

DEPTH = 20


@cache
def zero_hashes(depth: int = DEPTH) -> tuple[int, ...]:
    """Roots of empty subtrees per level: z[0] = 0, z[i + 1] = Poseidon(z[i], z[i])."""
    zeros = [0]
    for _ in range(depth):
        zeros.append(poseidon([zeros[-1], zeros[-1]]))
    return tuple(zeros)


@dataclass(frozen=True)
class MerklePath:
    """Authentication path of one leaf: siblings bottom-up, and the leaf index bits (1 = right)."""

    leaf_index: int
    siblings: tuple[int, ...]
    indices: tuple[int, ...]
    root: int


class MerkleTree:
    """All levels of the tree, recomputed from the leaves (about one hash per leaf)."""

    def __init__(self, leaves: Iterable[int] = (), depth: int = DEPTH) -> None:
        self.depth = depth
        self._leaves: list[int] = []
        for leaf in leaves:
            self._check_leaf(leaf)
            self._leaves.append(leaf)
        self._levels: list[list[int]] | None = None

    def _check_leaf(self, leaf: int) -> None:
        if not isinstance(leaf, int) or not 0 < leaf < FIELD:
            raise ValueError(f"a leaf must be a non-zero field element, got {leaf!r}")
        if len(self._leaves) >= 1 << self.depth:
            raise ValueError(f"tree of depth {self.depth} is full")

    def insert(self, leaf: int) -> int:
        """Append a leaf; returns its index."""
        self._check_leaf(leaf)
        self._leaves.append(leaf)
        self._levels = None
        return len(self._leaves) - 1

    @property
    def leaves(self) -> tuple[int, ...]:
        return tuple(self._leaves)

    def remove(self, index: int) -> None:
        """Empty leaf `index` (a withdrawal); the index stays taken."""
        if not 0 <= index < len(self._leaves):
            raise IndexError(f"no leaf {index} (tree has {len(self._leaves)})")
        self._leaves[index] = 0
        self._levels = None

    def index_of(self, leaf: int) -> int:
        try:
            if leaf == 0:
                raise ValueError
            return self._leaves.index(leaf)
        except ValueError:
            raise KeyError(f"leaf {leaf:#x} is not in the tree") from None

    def _build(self) -> list[list[int]]:
        if self._levels is None:
            zeros = zero_hashes(self.depth)
            levels = [list(self._leaves)]
            for level in range(self.depth):
                below = levels[-1]
                if len(below) % 2:
                    below = [*below, zeros[level]]
                levels.append(
                    [poseidon([below[i], below[i + 1]]) for i in range(0, len(below), 2)]
                )
            self._levels = levels
        return self._levels

    @property
    def root(self) -> int:
        top = self._build()[self.depth]
        return top[0] if top else zero_hashes(self.depth)[self.depth]

    def path(self, leaf_index: int) -> MerklePath:
        if not 0 <= leaf_index < len(self._leaves):
            raise IndexError(f"no leaf {leaf_index} (tree has {len(self._leaves)})")
        levels = self._build()
        zeros = zero_hashes(self.depth)
        siblings: list[int] = []
        indices: list[int] = []
        index = leaf_index
        for level in range(self.depth):
            sibling = index ^ 1
            nodes = levels[level]
            siblings.append(nodes[sibling] if sibling < len(nodes) else zeros[level])
            indices.append(index & 1)
            index >>= 1
        return MerklePath(leaf_index, tuple(siblings), tuple(indices), self.root)


def root_from_path(leaf: int, path: MerklePath) -> int:
    """The root a leaf and its path lead to (what the circuit computes)."""
    node = leaf
    for sibling, bit in zip(path.siblings, path.indices, strict=True):
        node = poseidon([sibling, node]) if bit else poseidon([node, sibling])
    return node
