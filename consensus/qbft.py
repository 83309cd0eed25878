"""The QBFT state machine: one height's rounds, and a driver across heights.

Pure and deterministic: inputs are method calls (a message arrived, a timer fired,
a block was built, a new height starts), outputs are lists of actions for the
node to carry out. No clocks, sockets, threads or randomness.

Protocol (QBFT as specified by ConsenSys and implemented by Besu):

- Round r of height h has one proposer (`proposer_for`). In round 0 it builds a
  block and sends PROPOSAL; in round r > 0 it proposes only once it holds a quorum
  of ROUND-CHANGEs for r, re-proposing (`with_round(block, r)`) the block of the
  highest prepared certificate among them, or a new block if none was prepared.
- A validator accepts the first valid PROPOSAL of a round (right author, block
  valid for the height, justification checked for r > 0) and sends PREPARE.
- On quorum PREPAREs for the accepted digest the round is *prepared*: the
  validator remembers the certificate and sends COMMIT with its commit seal.
- On quorum COMMITs for a digest whose block it knows (of any round of the
  height), it emits Finalized(block with the seals, sorted by signer address).
- When the round timer (request_timeout * 2**round) expires it sends
  ROUND-CHANGE for round + 1 carrying its prepared certificate. Seeing f + 1
  validators at rounds above its own, it jumps to the smallest of those rounds;
  seeing a quorum of ROUND-CHANGEs for a higher round, or a valid proposal for
  one, it moves to that round.

Own messages are handled internally before the Broadcast is returned, so the
node sends Broadcast.message to every other validator; a copy that loops back
is recognised as a duplicate and ignored.

Quorum is `consensus.seals.quorum(n)` = ceil(2n/3); f = (n - 1) // 3.
"""

from __future__ import annotations

import hashlib
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Generic, TypeVar

from consensus.extradata import ADDRESS_LENGTH
from consensus.interfaces import BlockOps, ConsensusBlock, SigningGuard
from consensus.messages import (
    COMMIT,
    PREPARE,
    PROPOSAL,
    Commit,
    Message,
    MessageError,
    Prepare,
    Proposal,
    RoundChange,
    address_of,
    decode_message,
    sign_commit,
    sign_prepare,
    sign_proposal,
    sign_round_change,
)
from consensus.seals import quorum

__all__ = [
    "Action",
    "BlockOps",
    "Broadcast",
    "BuildBlock",
    "ConsensusBlock",
    "Finalized",
    "Qbft",
    "SetTimer",
    "SigningGuard",
    "max_faulty",
    "proposer_for",
]

# Round timers grow as request_timeout * 2**round, capped at this exponent.
MAX_BACKOFF_EXPONENT = 16
# Per author and message kind, how many different rounds of one height are kept.
MAX_ROUNDS_PER_AUTHOR = 8
# Invalid proposals examined per round before further proposals for it are dropped.
MAX_PROPOSAL_ATTEMPTS = 4


@dataclass(frozen=True)
class Broadcast:
    """Send `message` to all other validators (it was already handled locally)."""

    message: bytes


@dataclass(frozen=True)
class SetTimer:
    """Call on_timeout(height, round) after `seconds`."""

    height: int
    round: int
    seconds: float


@dataclass(frozen=True)
class BuildBlock:
    """We propose in (height, round) with a fresh block: build one, then call on_block_built."""

    height: int
    round: int


@dataclass(frozen=True)
class Finalized:
    """`block` carries >= quorum commit seals: store it, then call new_height(height + 1)."""

    block: ConsensusBlock


Action = Broadcast | SetTimer | BuildBlock | Finalized


def _fingerprint(raw: bytes) -> bytes:
    """Identity of a raw message for de-duplication (not a signing hash)."""
    return hashlib.sha256(raw).digest()


def max_faulty(validator_count: int) -> int:
    """f: how many Byzantine validators n = 3f + 1 tolerates."""
    return (validator_count - 1) // 3


def proposer_for(
    validators: Sequence[bytes], parent_proposer: bytes | None, round: int  # noqa: A002
) -> bytes:
    """The proposer of `round`, as Besu's round-robin ProposerSelector.

    With the validators sorted by address: if the parent block's proposer is a
    validator at index i, the proposer is validators[(i + 1 + round) % n]. If it
    is not a validator (height 1, whose parent is genesis: pass None; or a
    proposer just voted out), start from the first validator whose address is
    greater than the parent proposer's (wrapping to the first; index 0 for None),
    and take validators[(start + round) % n].
    """
    ordered = sorted(validators)
    if not ordered:
        raise ValueError("a validator set cannot be empty")
    n = len(ordered)
    if parent_proposer is not None and parent_proposer in ordered:
        start = ordered.index(parent_proposer) + 1
    elif parent_proposer is None:
        start = 0
    else:
        start = next((i for i, v in enumerate(ordered) if v > parent_proposer), 0)
    return ordered[(start + round) % n]


_M = TypeVar("_M", Prepare, Commit, RoundChange)


class _RoundStore(Generic[_M]):
    """Messages of one kind at one height: per round, first message per author wins.

    Each author may occupy at most MAX_ROUNDS_PER_AUTHOR rounds; beyond that its
    lowest round is evicted, so a faulty validator can only crowd out itself.
    """

    def __init__(self) -> None:
        self.by_round: dict[int, dict[bytes, _M]] = {}
        self._rounds_of: dict[bytes, list[int]] = {}

    def add(self, message: _M) -> bool:
        author, round_number = message.author, message.round
        bucket = self.by_round.get(round_number)
        if bucket is not None and author in bucket:
            return False
        rounds = self._rounds_of.setdefault(author, [])
        if len(rounds) >= MAX_ROUNDS_PER_AUTHOR:
            lowest = min(rounds)
            if round_number < lowest:
                return False
            rounds.remove(lowest)
            self._drop(lowest, author)
        rounds.append(round_number)
        self.by_round.setdefault(round_number, {})[author] = message
        return True

    def _drop(self, round_number: int, author: bytes) -> None:
        bucket = self.by_round.get(round_number)
        if bucket is not None:
            bucket.pop(author, None)
            if not bucket:
                del self.by_round[round_number]

    def discard_below(self, round_number: int) -> None:
        for stale in [r for r in self.by_round if r < round_number]:
            for author in list(self.by_round[stale]):
                self._rounds_of[author].remove(stale)
            del self.by_round[stale]

    def at(self, round_number: int) -> dict[bytes, _M]:
        return self.by_round.get(round_number, {})

    def conflicts(self, message: _M) -> bool:
        """Whether the author already sent a different digest in this round (equivocation)."""
        known = self.at(message.round).get(message.author)
        return known is not None and getattr(known, "digest", None) != getattr(
            message, "digest", None
        )


@dataclass
class _Prepared:
    round: int
    block: ConsensusBlock
    prepares: tuple[Prepare, ...]


@dataclass
class _Height:
    """Everything known about one height; dropped when the next height starts."""

    height: int
    validators: tuple[bytes, ...]
    members: frozenset[bytes]
    parent_proposer: bytes | None
    quorum: int
    round: int = 0
    finalized: bool = False
    proposals: dict[int, ConsensusBlock] = field(default_factory=dict)
    proposal_attempts: Counter[int] = field(default_factory=Counter)
    known_blocks: dict[bytes, ConsensusBlock] = field(default_factory=dict)
    prepares: _RoundStore[Prepare] = field(default_factory=_RoundStore)
    commits: _RoundStore[Commit] = field(default_factory=_RoundStore)
    round_changes: _RoundStore[RoundChange] = field(default_factory=_RoundStore)
    latest_rc_round: dict[bytes, int] = field(default_factory=dict)
    prepared: _Prepared | None = None
    committed_rounds: set[int] = field(default_factory=set)
    proposed_rounds: set[int] = field(default_factory=set)
    # Rounds where we asked the node to build a block, with the round changes to justify it.
    pending_build: dict[int, tuple[RoundChange, ...]] = field(default_factory=dict)
    seen: set[bytes] = field(default_factory=set)


class Qbft:
    """QBFT for one validator (or a non-validating follower) across heights."""

    def __init__(
        self,
        *,
        private_key: bytes | None,
        block_ops: BlockOps,
        guard: SigningGuard,
        request_timeout: float,
        max_future_heights: int = 10,
        max_buffered: int = 10_000,
    ) -> None:
        if request_timeout <= 0:
            raise ValueError("request_timeout must be positive")
        if max_future_heights < 0 or max_buffered < 1:
            raise ValueError("buffer limits must be positive")
        self._key = private_key
        self._address = address_of(private_key) if private_key is not None else None
        self._ops = block_ops
        self._guard = guard
        self._timeout = float(request_timeout)
        self._max_future = max_future_heights
        self._max_buffered = max_buffered
        self._h: _Height | None = None
        # Future heights: height -> [(author, raw, fingerprint)] in arrival order.
        self._future: dict[int, list[tuple[bytes, bytes, bytes]]] = {}
        self._future_seen: set[bytes] = set()
        # Fingerprints seen at the previous height, whose late copies keep arriving.
        self._previous_seen: set[bytes] = set()
        self._future_by_author: Counter[bytes] = Counter()
        self._stats: Counter[str] = Counter()
        # Why the last rejected message was rejected, for the node to log its author.
        self.last_rejection: str | None = None

    # -- read-only views -------------------------------------------------------------------

    @property
    def address(self) -> bytes | None:
        return self._address

    @property
    def height(self) -> int:
        """The height being decided (0 before the first new_height)."""
        return self._h.height if self._h is not None else 0

    @property
    def round(self) -> int:
        return self._h.round if self._h is not None else 0

    @property
    def request_timeout(self) -> float:
        """Seconds of round 0's timer; later rounds double it."""
        return self._timeout

    def set_request_timeout(self, seconds: float) -> None:
        """Change the round timer from the next timer on (a genesis fork can change it)."""
        if not seconds > 0:
            raise ValueError("request_timeout must be positive")
        self._timeout = float(seconds)

    @property
    def is_validator(self) -> bool:
        """Whether this node signs at the current height (has a key and is in the set)."""
        return (
            self._h is not None and self._address is not None and self._address in self._h.members
        )

    @property
    def validators(self) -> tuple[bytes, ...]:
        return self._h.validators if self._h is not None else ()

    def proposer(self, round: int | None = None) -> bytes:  # noqa: A002
        """Proposer of `round` (default: the current round) at the current height."""
        if self._h is None:
            raise RuntimeError("no height started")
        r = self._h.round if round is None else round
        return proposer_for(self._h.validators, self._h.parent_proposer, r)

    def stats(self) -> dict[str, int]:
        """Counters: messages_received, messages_rejected, rejected_<reason>, duplicates,
        round_changes (local round advances), timeouts, <kind>_sent, finalized, ..."""
        result = dict(self._stats)
        result["future_buffered"] = sum(len(v) for v in self._future.values())
        return result

    # -- inputs ----------------------------------------------------------------------------

    def new_height(
        self,
        height: int,
        validators: Sequence[bytes],
        parent_proposer: bytes | None,
        *,
        now_round: int = 0,
    ) -> list[Action]:
        """Start deciding `height` (head + 1) with this validator set.

        `validators` may come in any order: they are sorted by address (Besu's order).
        `parent_proposer` is the coinbase of block height - 1 (None for height 1).
        `now_round` > 0 starts directly in that round and announces it with a
        ROUND-CHANGE (e.g. a restart that knows the network moved on).
        """
        if height < 1:
            raise ValueError("consensus heights start at 1")
        if self._h is not None and height <= self._h.height:
            raise ValueError(f"height {height} is not after the current height {self._h.height}")
        members = tuple(sorted(bytes(v) for v in validators))
        if not members:
            raise ValueError("a validator set cannot be empty")
        if any(len(v) != ADDRESS_LENGTH for v in members) or len(set(members)) != len(members):
            raise ValueError("validators must be distinct 20-byte addresses")
        if now_round < 0:
            raise ValueError("rounds are not negative")
        if self._h is not None:
            self._previous_seen = self._h.seen
        self._h = _Height(
            height=height,
            validators=members,
            members=frozenset(members),
            parent_proposer=bytes(parent_proposer) if parent_proposer is not None else None,
            quorum=quorum(len(members)),
            round=now_round,
        )
        actions: list[Action] = []
        if self.is_validator:
            actions.append(self._timer())
            if now_round == 0:
                if self.proposer(0) == self._address:
                    self._h.pending_build[0] = ()
                    actions.append(BuildBlock(height, 0))
            else:
                actions.extend(self._send_round_change())
        actions.extend(self._replay_future())
        return actions

    def on_message(self, raw: bytes) -> list[Action]:
        """A QBFT message from the network (a looped-back own message is ignored)."""
        self._stats["messages_received"] += 1
        if not isinstance(raw, bytes | bytearray | memoryview):
            return self._reject("malformed")
        return self._receive(bytes(raw))

    def _receive(self, raw: bytes) -> list[Action]:
        h = self._h
        if h is None:
            return self._reject("no_height")
        fingerprint = _fingerprint(raw)
        if (
            fingerprint in h.seen or fingerprint in self._previous_seen
            or fingerprint in self._future_seen
        ):
            self._stats["duplicates"] += 1
            return []
        try:
            message = decode_message(raw)
        except MessageError:
            return self._reject("malformed")
        if message.height > h.height:
            return self._buffer_future(message, raw, fingerprint)
        # Gossip delivers copies of every message: remember it to skip decoding them.
        if len(h.seen) < 4 * self._max_buffered:
            h.seen.add(fingerprint)
        if message.height < h.height:
            self._stats["stale"] += 1
            return []
        return self._handle(message)

    def on_timeout(self, height: int, round: int) -> list[Action]:  # noqa: A002
        """The round timer of (height, round) expired; stale timers are ignored."""
        h = self._h
        if h is None or h.finalized or height != h.height or round != h.round:
            return []
        self._stats["timeouts"] += 1
        return self._change_round(h.round + 1)

    def on_block_built(self, height: int, round: int, block: ConsensusBlock) -> list[Action]:  # noqa: A002
        """The block asked for by BuildBlock(height, round); ignored if we moved on."""
        h = self._h
        if (
            h is None or h.finalized or height != h.height or round != h.round
            or round not in h.pending_build or not self.is_validator
        ):
            self._stats["stale_builds"] += 1
            return []
        if block.number != height or block.round != round or block.proposer != self._address:
            raise ValueError(
                f"built block #{block.number} round {block.round} proposer "
                f"0x{bytes(block.proposer).hex()} does not match BuildBlock({height}, {round})"
            )
        justification = h.pending_build.pop(round)
        return self._propose(block, justification, ())

    # -- dispatch --------------------------------------------------------------------------

    def _handle(self, message: Message) -> list[Action]:
        h = self._h
        assert h is not None
        if h.finalized:
            self._stats["after_finalized"] += 1
            return []
        if message.author not in h.members:
            return self._reject("non_validator")
        if isinstance(message, Proposal):
            return self._on_proposal(message)
        if isinstance(message, Prepare):
            return self._on_prepare(message)
        if isinstance(message, Commit):
            return self._on_commit(message)
        return self._on_round_change(message)

    @property
    def rejected(self) -> int:
        """How many messages were rejected so far (see last_rejection for the latest reason)."""
        return self._stats["messages_rejected"]

    def _reject(self, reason: str) -> list[Action]:
        self.last_rejection = reason
        self._stats["messages_rejected"] += 1
        self._stats[f"rejected_{reason}"] += 1
        return []

    def _emit_own(self, message: Message) -> list[Action]:
        """Handle our own message locally, then ask the node to broadcast it."""
        h = self._h
        assert h is not None
        raw = message.encode()
        h.seen.add(_fingerprint(raw))
        self._stats[f"{type(message).__name__.lower()}_sent"] += 1
        return [Broadcast(raw), *self._handle(message)]

    # -- proposals -------------------------------------------------------------------------

    def _on_proposal(self, proposal: Proposal) -> list[Action]:
        h = self._h
        assert h is not None
        r = proposal.round
        if r in h.proposals:
            if proposal.author == self.proposer(r) and proposal.block != h.proposals[r].raw:
                return self._reject("equivocation")  # a second, different block for the round
            self._stats["duplicates"] += 1
            return []
        block, reason = self._check_proposal(proposal)
        if block is None:
            return self._reject(reason)
        h.proposals[r] = block
        h.known_blocks[block.digest] = block
        if r < h.round:
            # Too late to prepare, but a quorum may have committed it while we moved on.
            self._stats["late_proposals"] += 1
            return self._check_committed()
        actions: list[Action] = []
        if r > h.round:
            actions.extend(self._enter_round(r))
        if self.is_validator and self._guarded(r, PREPARE, block.digest):
            assert self._key is not None
            actions.extend(self._emit_own(sign_prepare(self._key, h.height, r, block.digest)))
        actions.extend(self._check_prepared(r))
        actions.extend(self._check_committed())
        return actions

    def _check_proposal(self, proposal: Proposal) -> tuple[ConsensusBlock | None, str]:
        """The proposed block if the proposal is valid, else (None, reason).

        Signature-only checks come first; the block is decoded and validated (which the
        node does by executing it) only for a justified proposal by the right proposer,
        and at most MAX_PROPOSAL_ATTEMPTS times per round.
        """
        h = self._h
        assert h is not None
        r = proposal.round
        if proposal.author != self.proposer(r):
            return None, "wrong_proposer"
        best: RoundChange | None = None
        if r == 0:
            if proposal.round_changes or proposal.prepares:
                return None, "round0_justification"
        else:
            best, reason = self._highest_prepared(proposal)
            if reason:
                return None, reason
            if best is None and proposal.prepares:
                return None, "justification_unexpected_prepares"
        if h.proposal_attempts[r] >= MAX_PROPOSAL_ATTEMPTS:
            return None, "proposal_attempts"
        h.proposal_attempts[r] += 1
        try:
            block = self._ops.decode(proposal.block)
        except ValueError:
            return None, "bad_block"
        if block.number != h.height or block.round != r:
            return None, "block_height_or_round"
        if best is None:
            # A fresh block: its proposer (coinbase) must be the message's author.
            if block.proposer != proposal.author:
                return None, "block_proposer"
        else:
            reason = self._check_reproposal(proposal, block, best)
            if reason:
                return None, reason
        if not self._ops.validate(block):
            return None, "invalid_block"
        return block, ""

    def _highest_prepared(self, proposal: Proposal) -> tuple[RoundChange | None, str]:
        """Check a round r > 0 proposal's round changes: a quorum for (height, r) from
        distinct validators, consistent certificates. Returns the round change with the
        highest prepared round (None if nobody prepared), or a rejection reason."""
        h = self._h
        assert h is not None
        r = proposal.round
        authors: set[bytes] = set()
        best: RoundChange | None = None
        digest_of_round: dict[int, bytes] = {}
        for rc in proposal.round_changes:
            if rc.height != h.height or rc.round != r or rc.author not in h.members:
                return None, "justification_round_change"
            if rc.author in authors:
                return None, "justification_duplicate"
            authors.add(rc.author)
            if rc.prepared_round is not None and rc.prepared_digest is not None:
                if rc.prepared_round >= r:
                    return None, "justification_prepared_round"
                known = digest_of_round.setdefault(rc.prepared_round, rc.prepared_digest)
                if known != rc.prepared_digest:
                    return None, "justification_conflict"
                if best is None or rc.prepared_round > (best.prepared_round or 0):
                    best = rc
        if len(authors) < h.quorum:
            return None, "justification_quorum"
        return best, ""

    def _check_reproposal(
        self, proposal: Proposal, block: ConsensusBlock, best: RoundChange
    ) -> str:
        """The block must be the highest prepared one, re-rounded, with its prepare quorum."""
        assert best.prepared_round is not None and best.prepared_digest is not None
        try:
            as_prepared = self._ops.with_round(block, best.prepared_round)
        except ValueError:
            return "justification_block"
        if as_prepared.digest != best.prepared_digest:
            return "justification_not_highest_prepared"
        prepares = proposal.prepares
        if not self._valid_certificate(best.prepared_round, best.prepared_digest, prepares):
            return "justification_prepares"
        return ""

    def _valid_certificate(
        self, prepared_round: int, digest: bytes, prepares: Sequence[Prepare]
    ) -> bool:
        h = self._h
        assert h is not None
        authors: set[bytes] = set()
        for p in prepares:
            if (
                p.height != h.height or p.round != prepared_round or p.digest != digest
                or p.author not in h.members or p.author in authors
            ):
                return False
            authors.add(p.author)
        return len(authors) >= h.quorum

    def _propose(
        self,
        block: ConsensusBlock,
        round_changes: tuple[RoundChange, ...],
        prepares: tuple[Prepare, ...],
    ) -> list[Action]:
        h = self._h
        assert h is not None and self._key is not None
        r = h.round
        h.proposed_rounds.add(r)
        if not self._guarded(r, PROPOSAL, block.digest):
            return []
        proposal = sign_proposal(
            self._key, h.height, r, block.raw, round_changes=round_changes, prepares=prepares
        )
        return self._emit_own(proposal)

    def _guarded(self, round_number: int, kind: int, digest: bytes) -> bool:
        h = self._h
        assert h is not None
        if self._guard.allow(h.height, round_number, kind, digest):
            return True
        self._stats["guard_refused"] += 1
        return False

    # -- prepares and commits --------------------------------------------------------------

    def _on_prepare(self, prepare: Prepare) -> list[Action]:
        h = self._h
        assert h is not None
        if prepare.round < h.round:
            self._stats["old_round"] += 1
            return []
        if h.prepares.conflicts(prepare):
            return self._reject("equivocation")
        if not h.prepares.add(prepare):
            self._stats["duplicates"] += 1
            return []
        return self._check_prepared(prepare.round)

    def _check_prepared(self, round_number: int) -> list[Action]:
        """Quorum PREPAREs for the accepted proposal: remember the certificate, COMMIT."""
        h = self._h
        assert h is not None
        block = h.proposals.get(round_number)
        if (
            h.finalized or round_number != h.round or block is None
            or round_number in h.committed_rounds
        ):
            return []
        matching = tuple(
            p for p in h.prepares.at(round_number).values() if p.digest == block.digest
        )
        if len(matching) < h.quorum:
            return []
        h.committed_rounds.add(round_number)
        if h.prepared is None or h.prepared.round < round_number:
            h.prepared = _Prepared(round_number, block, matching)
        if not self.is_validator or not self._guarded(round_number, COMMIT, block.digest):
            return []
        assert self._key is not None
        return self._emit_own(sign_commit(self._key, h.height, round_number, block.digest))

    def _on_commit(self, commit: Commit) -> list[Action]:
        h = self._h
        assert h is not None
        if h.commits.conflicts(commit):
            return self._reject("equivocation")
        if not h.commits.add(commit):
            self._stats["duplicates"] += 1
            return []
        return self._check_committed(commit.round)

    def _check_committed(self, only_round: int | None = None) -> list[Action]:
        """Quorum COMMITs of one round for a block we know: the height is decided."""
        h = self._h
        assert h is not None
        if h.finalized:
            return []
        rounds = [only_round] if only_round is not None else sorted(h.commits.by_round)
        for r in rounds:
            by_digest: dict[bytes, list[Commit]] = {}
            for c in h.commits.at(r).values():
                by_digest.setdefault(c.digest, []).append(c)
            for digest, commits in by_digest.items():
                block = h.known_blocks.get(digest)
                if len(commits) >= h.quorum and block is not None:
                    h.finalized = True
                    self._stats["finalized"] += 1
                    seals = [c.commit_seal for c in sorted(commits, key=lambda c: c.author)]
                    return [Finalized(self._ops.with_seals(block, seals))]
        return []

    # -- round changes ---------------------------------------------------------------------

    def _on_round_change(self, rc: RoundChange) -> list[Action]:
        h = self._h
        assert h is not None
        if rc.round < h.round or rc.round == 0:
            self._stats["old_round"] += 1
            return []
        if rc.prepared_digest is not None:
            reason = self._check_round_change_certificate(rc)
            if reason:
                return self._reject(reason)
        if not h.round_changes.add(rc):
            self._stats["duplicates"] += 1
            return []
        if rc.round > h.latest_rc_round.get(rc.author, -1):
            h.latest_rc_round[rc.author] = rc.round
        # The certificate may name a block whose commits were waiting for it.
        actions = self._check_committed() if rc.prepared_digest is not None else []
        return actions or self._advance_rounds()

    def _check_round_change_certificate(self, rc: RoundChange) -> str:
        h = self._h
        assert h is not None
        assert rc.prepared_round is not None and rc.prepared_digest is not None
        if rc.prepared_round >= rc.round:
            return "rc_prepared_round"
        if not self._valid_certificate(rc.prepared_round, rc.prepared_digest, rc.prepares):
            return "rc_prepares"
        try:
            block = self._ops.decode(rc.prepared_block or b"")
        except ValueError:
            return "rc_block"
        if (
            block.digest != rc.prepared_digest or block.number != h.height
            or block.round != rc.prepared_round
        ):
            return "rc_block"
        # A quorum prepared this digest, so honest validators checked the block.
        h.known_blocks.setdefault(block.digest, block)
        return ""

    def _advance_rounds(self) -> list[Action]:
        """Apply the round-change rules until none fires."""
        h = self._h
        assert h is not None
        actions: list[Action] = []
        while not h.finalized:
            quorate = [
                r for r, bucket in h.round_changes.by_round.items()
                if r > h.round and len(bucket) >= h.quorum
            ]
            ahead = sorted(r for r in h.latest_rc_round.values() if r > h.round)
            if quorate:
                actions.extend(self._enter_round(max(quorate)))
            elif len(ahead) >= max_faulty(len(h.validators)) + 1:
                actions.extend(self._change_round(ahead[0]))
            else:
                break
        actions.extend(self._maybe_propose_after_round_change())
        return actions

    def _maybe_propose_after_round_change(self) -> list[Action]:
        h = self._h
        assert h is not None
        r = h.round
        if (
            h.finalized or r == 0 or not self.is_validator or self.proposer(r) != self._address
            or r in h.proposed_rounds or r in h.pending_build
        ):
            return []
        round_changes = tuple(h.round_changes.at(r).values())
        if len(round_changes) < h.quorum:
            return []
        best: RoundChange | None = None
        for rc in round_changes:
            if rc.prepared_round is not None and (
                best is None or rc.prepared_round > (best.prepared_round or 0)
            ):
                best = rc
        if best is None:
            h.pending_build[r] = round_changes
            return [BuildBlock(h.height, r)]
        assert best.prepared_digest is not None
        prepared_block = h.known_blocks[best.prepared_digest]
        return self._propose(self._ops.with_round(prepared_block, r), round_changes, best.prepares)

    def _change_round(self, new_round: int) -> list[Action]:
        """Move to a higher round on our own initiative and announce it with ROUND-CHANGE."""
        actions = self._enter_round(new_round)
        actions.extend(self._send_round_change())
        return actions

    def _send_round_change(self) -> list[Action]:
        h = self._h
        assert h is not None
        if not self.is_validator:
            return []
        assert self._key is not None
        cert = h.prepared
        if cert is None:
            rc = sign_round_change(self._key, h.height, h.round)
        else:
            rc = sign_round_change(
                self._key, h.height, h.round,
                prepared_round=cert.round, prepared_digest=cert.block.digest,
                prepared_block=cert.block.raw, prepares=cert.prepares,
            )
        return self._emit_own(rc)

    def _enter_round(self, new_round: int) -> list[Action]:
        h = self._h
        assert h is not None
        if new_round <= h.round:
            return []
        h.round = new_round
        self._stats["round_changes"] += 1
        h.pending_build = {r: j for r, j in h.pending_build.items() if r >= new_round}
        h.prepares.discard_below(new_round)
        h.round_changes.discard_below(new_round)
        return [self._timer()] if self.is_validator else []

    def _timer(self) -> SetTimer:
        h = self._h
        assert h is not None
        exponent = min(h.round, MAX_BACKOFF_EXPONENT)
        return SetTimer(h.height, h.round, self._timeout * (2**exponent))

    # -- future heights --------------------------------------------------------------------

    def _buffer_future(self, message: Message, raw: bytes, fingerprint: bytes) -> list[Action]:
        h = self._h
        assert h is not None
        if message.height > h.height + self._max_future:
            return self._reject("too_far_ahead")
        total = sum(len(v) for v in self._future.values())
        # Addresses outside today's set (possible future validators) share half the space.
        limit = self._max_buffered if message.author in h.members else self._max_buffered // 2
        per_author = max(32, self._max_buffered // max(1, len(h.validators)))
        if total >= limit or self._future_by_author[message.author] >= per_author:
            return self._reject("buffer_full")
        self._future.setdefault(message.height, []).append((message.author, raw, fingerprint))
        self._future_seen.add(fingerprint)
        self._future_by_author[message.author] += 1
        self._stats["buffered"] += 1
        return []

    def _replay_future(self) -> list[Action]:
        h = self._h
        assert h is not None
        ready = self._future.pop(h.height, [])
        for stale in [k for k in self._future if k < h.height or k > h.height + self._max_future]:
            del self._future[stale]
        self._future_seen = {f for entries in self._future.values() for _, _, f in entries}
        self._future_by_author = Counter(
            author for entries in self._future.values() for author, _, _ in entries
        )
        actions: list[Action] = []
        for _, raw, _ in ready:
            actions.extend(self._receive(raw))
        return actions
