"""Never sign two different blocks at one height, round and step, even across restarts.

Before the validator signs a QBFT proposal, prepare or commit, the digest is
written to LevelDB with a synchronous write. A restarted node reads it back and
refuses to sign anything else for that (height, round, step): equivocation
would need a second key, not a crash.
"""

from __future__ import annotations

import threading

from node.db import LevelDBStore

_PREFIX = b"medledger:qbft-signed:"


class PersistentSigningGuard:
    def __init__(self, store: LevelDBStore) -> None:
        self._store = store
        self._lock = threading.Lock()

    @staticmethod
    def _key(height: int, round_number: int, kind: int) -> bytes:
        return _PREFIX + height.to_bytes(8, "big") + round_number.to_bytes(4, "big") + bytes([kind])

    def allow(self, height: int, round: int, kind: int, digest: bytes) -> bool:  # noqa: A002
        key = self._key(height, round, kind)
        with self._lock:
            signed = self._store.get(key)
            if signed is not None:
                return signed == digest
            self._store.write({key: digest})
            return True

    def highest_round(self, height: int) -> int | None:
        """The highest round this node signed anything in at `height`, if any."""
        prefix = _PREFIX + height.to_bytes(8, "big")
        rounds = [int.from_bytes(key[len(prefix):len(prefix) + 4], "big")
                  for key, _ in self._store.iterate_prefix(prefix)]
        return max(rounds) if rounds else None

    def prune_below(self, height: int) -> int:
        """Forget what was signed below `height` (final heights can never be signed again)."""
        stale = [key for key, _ in self._store.iterate_prefix(_PREFIX)
                 if int.from_bytes(key[len(_PREFIX):len(_PREFIX) + 8], "big") < height]
        if stale:
            self._store.write(dict.fromkeys(stale))
        return len(stale)
