"""Per-peer misbehaviour score with exponential recovery, and the temporary bans it leads to.

Honest consortium members never lose points, so the numbers only need to separate an occasional
invalid message (a bug, a race) from a peer that keeps sending them.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass

# Penalties (points lost) per kind of misbehaviour.
PENALTY_REJECTED = 10.0  # a gossip handler returned REJECT
PENALTY_MALFORMED = 20.0  # an oversized or undecodable gossip / sync message


@dataclass
class _Entry:
    score: float
    at: float


class PeerScores:
    """Scores start at 0, drop with penalties and recover towards 0 with a half-life.

    A peer whose score falls to `ban_threshold` or below is banned for `ban_seconds`; the gate
    refuses it meanwhile and its score restarts at 0 when the ban ends.
    """

    def __init__(
        self,
        *,
        half_life: float = 60.0,
        ban_threshold: float = -45.0,  # about five rejected messages within a minute
        ban_seconds: float = 60.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.half_life = half_life
        self.ban_threshold = ban_threshold
        self.ban_seconds = ban_seconds
        self._clock = clock
        self._entries: dict[str, _Entry] = {}
        self._bans: dict[str, float] = {}

    def score(self, peer: str) -> float:
        entry = self._entries.get(peer)
        if entry is None:
            return 0.0
        now = self._clock()
        entry.score *= 0.5 ** ((now - entry.at) / self.half_life)
        entry.at = now
        if entry.score > -0.01:
            del self._entries[peer]
            return 0.0
        return entry.score

    def penalize(self, peer: str, amount: float) -> bool:
        """Lower the score; True when this penalty banned the peer (the caller disconnects it)."""
        if self.ban_remaining(peer) > 0:
            return False
        score = self.score(peer) - amount
        self._entries[peer] = _Entry(score, self._clock())
        if score <= self.ban_threshold:
            self.ban(peer, self.ban_seconds)
            return True
        return False

    def ban(self, peer: str, seconds: float) -> None:
        self._bans[peer] = self._clock() + seconds
        self._entries.pop(peer, None)

    def ban_remaining(self, peer: str) -> float:
        until = self._bans.get(peer)
        if until is None:
            return 0.0
        remaining = until - self._clock()
        if remaining <= 0:
            del self._bans[peer]
            return 0.0
        return remaining
