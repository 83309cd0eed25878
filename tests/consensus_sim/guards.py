"""Signing guards for the simulator."""

from __future__ import annotations


class RecordingGuard:
    """Allows everything and records it, so a test can prove Qbft itself never equivocates."""

    def __init__(self) -> None:
        self.signed: dict[tuple[int, int, int], list[bytes]] = {}

    def allow(self, height: int, round: int, kind: int, digest: bytes) -> bool:  # noqa: A002
        self.signed.setdefault((height, round, kind), []).append(digest)
        return True

    def conflicts(self) -> dict[tuple[int, int, int], set[bytes]]:
        return {key: set(d) for key, d in self.signed.items() if len(set(d)) > 1}


class StrictGuard:
    """The node's contract, in memory: refuse a second digest for one (height, round, kind)."""

    def __init__(self) -> None:
        self.signed: dict[tuple[int, int, int], bytes] = {}
        self.refused = 0

    def allow(self, height: int, round: int, kind: int, digest: bytes) -> bool:  # noqa: A002
        key = (height, round, kind)
        previous = self.signed.setdefault(key, digest)
        if previous != digest:
            self.refused += 1
            return False
        return True
