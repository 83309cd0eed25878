"""Transaction pool: validates raw transactions and hands executable ones to the block producer.

Pure, deterministic logic: no I/O, no threads, no clock. The caller serialises access (one
event loop owns the pool) and supplies chain state through the small `StateView` protocol.

Data layout, chosen so that `add` costs O(log n) plus one ECDSA recovery:
- `_by_hash`: tx hash -> PoolTx. Accepted txs are inserted in arrival order, so the dict's
  iteration order *is* arrival order (`pending()` needs no sort).
- `_senders`: sender -> `_SenderTxs` (nonce -> PoolTx, plus the sorted nonce list), which gives
  `pending_nonce` by binary search and O(1) "next nonce" steps in `select`.
- two lazy min-heaps over each sender's *last* tx (its highest nonce): one keyed by
  max_priority_fee, one by max_fee. The effective tip is min(tip, max_fee - base_fee), and the
  minimum of that over a set is reached at the minimum tip or at the minimum max_fee, so the
  cheapest evictable tx is always the cheaper of the two heap tops, whatever the base fee.
"""

from __future__ import annotations

import heapq
from bisect import bisect_left, insort
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Protocol

import rlp
import structlog
from eth.abc import BlockAPI, SignedTransactionAPI
from eth.constants import CREATE_CONTRACT_ADDRESS, GAS_TX, SECPK1_N
from eth.vm.forks.berlin.constants import ACCESS_LIST_TRANSACTION_TYPE
from eth.vm.forks.cancun.constants import BLOB_TX_TYPE
from eth.vm.forks.london.constants import DYNAMIC_FEE_TRANSACTION_TYPE
from eth.vm.forks.prague.constants import (
    MAGIC as SET_CODE_MAGIC,
)
from eth.vm.forks.prague.constants import (  # noqa: I001
    SET_CODE_TRANSACTION_TYPE,
    STANDARD_TOKEN_COST,
    TOTAL_COST_FLOOR_PER_TOKEN,
)
from eth.vm.forks.prague.transactions import PragueTransactionBuilder
from eth.vm.forks.shanghai.constants import INITCODE_WORD_COST, MAX_INITCODE_SIZE
from eth_hash.auto import keccak
from eth_keys import keys
from eth_keys.exceptions import BadSignature, ValidationError

from node.txerrors import (
    ERR_ALREADY_KNOWN,
    ERR_EMPTY_AUTH_LIST,
    ERR_FEE_CAP_BELOW_BASE_FEE,
    ERR_FEE_CAP_VERY_HIGH,
    ERR_FLOOR_DATA_GAS,
    ERR_GAS_LIMIT,
    ERR_INSUFFICIENT_FUNDS,
    ERR_INTRINSIC_GAS,
    ERR_INVALID_CHAIN_ID,
    ERR_INVALID_ENCODING,
    ERR_INVALID_SENDER,
    ERR_MAX_INITCODE_SIZE,
    ERR_NONCE_MAX,
    ERR_NONCE_TOO_HIGH,
    ERR_NONCE_TOO_LOW,
    ERR_OVERSIZED_DATA,
    ERR_POOL_FULL,
    ERR_REPLACE_UNDERPRICED,
    ERR_SENDER_LIMIT,
    ERR_SENDER_NOT_PERMITTED,
    ERR_SET_CODE_CREATE,
    ERR_TIP_ABOVE_FEE_CAP,
    ERR_TIP_VERY_HIGH,
    ERR_TX_TYPE_NOT_SUPPORTED,
    ERR_UNDERPRICED,
    ERR_UNPROTECTED,
    RPC_INVALID_PARAMS,
    TxPoolError,
)

__all__ = [
    "PoolTx",
    "StateView",
    "TxPool",
    "TxPoolError",
    "floor_data_gas",
    "intrinsic_gas",
]

_log = structlog.get_logger(__name__)

_SUPPORTED_TYPES = frozenset(
    {ACCESS_LIST_TRANSACTION_TYPE, DYNAMIC_FEE_TRANSACTION_TYPE, SET_CODE_TRANSACTION_TYPE}
)
_UINT64_MAX = 2**64 - 1
_UINT256_LIMIT = 2**256
_LEGACY_UNPROTECTED_V = (27, 28)


class StateView(Protocol):
    """The two account fields the pool needs, read at the current head."""

    def get_nonce(self, address: bytes) -> int: ...

    def get_balance(self, address: bytes) -> int: ...


@dataclass(frozen=True, slots=True)
class PoolTx:
    """A validated transaction with the fields the pool orders on, extracted once."""

    tx: SignedTransactionAPI
    raw: bytes
    hash: bytes
    sender: bytes
    nonce: int
    max_fee: int
    max_priority_fee: int
    gas: int
    cost: int
    received: int

    def effective_tip(self, base_fee: int) -> int:
        """Per-gas reward for the block proposer at `base_fee` (negative if not includable)."""
        return min(self.max_priority_fee, self.max_fee - base_fee)


def block_senders(block: BlockAPI) -> list[bytes]:
    """Accounts whose nonce or balance `block` can have moved against the pool: each
    transaction's sender and every EIP-7702 authority (best effort: an authorization that
    does not recover is skipped, as execution skips it)."""
    accounts: list[bytes] = []
    for tx in block.transactions:
        accounts.append(bytes(tx.sender))
        if tx.type_id != SET_CODE_TRANSACTION_TYPE:
            continue
        for auth in tx.authorization_list:
            message = SET_CODE_MAGIC + rlp.encode([auth.chain_id, auth.address, auth.nonce])
            try:
                signature = keys.Signature(vrs=(auth.y_parity, auth.r, auth.s))
                accounts.append(signature.recover_public_key_from_msg(message)
                                .to_canonical_address())
            except (BadSignature, ValidationError, ValueError):
                continue
    return accounts


def intrinsic_gas(tx: SignedTransactionAPI) -> int:
    """Prague intrinsic gas, including the EIP-3860 initcode word cost of contract creations.

    py-evm charges the initcode cost inside the computation rather than up front; geth and the
    spec count it as intrinsic, and a creation that cannot pay it can only fail, so it is
    checked here.
    """
    gas = tx.intrinsic_gas
    if tx.to == CREATE_CONTRACT_ADDRESS:
        gas += INITCODE_WORD_COST * ((len(tx.data) + 31) // 32)
    return gas


def floor_data_gas(tx: SignedTransactionAPI) -> int:
    """EIP-7623 minimum gas a Prague tx pays for its calldata; its gas limit must cover it."""
    zeros = tx.data.count(0)
    tokens = zeros + (len(tx.data) - zeros) * STANDARD_TOKEN_COST
    return GAS_TX + TOTAL_COST_FLOOR_PER_TOKEN * tokens


class _SenderTxs:
    """One sender's pooled txs: nonce -> tx, plus the nonces kept sorted for binary search."""

    __slots__ = ("by_nonce", "nonces")

    def __init__(self) -> None:
        self.by_nonce: dict[int, PoolTx] = {}
        self.nonces: list[int] = []

    def tail(self) -> PoolTx:
        return self.by_nonce[self.nonces[-1]]

    def count_from(self, nonce: int) -> int:
        """How many pooled txs have a nonce >= `nonce` (stale ones below do not count)."""
        return len(self.nonces) - bisect_left(self.nonces, nonce)

    def run_end(self, base: int) -> int:
        """First nonce >= `base` that is not pooled, i.e. the end of the gap-free run from base.

        Sorted distinct ints satisfy nonces[j] - j non-decreasing, so "nonces[j] == base + (j - i)"
        holds on a prefix of [i, len) and the run's last index is found by binary search.
        """
        nonces = self.nonces
        i = bisect_left(nonces, base)
        if i == len(nonces) or nonces[i] != base:
            return base
        offset = base - i
        lo, hi = i, len(nonces) - 1
        while lo < hi:
            mid = (lo + hi + 1) // 2
            if nonces[mid] - mid == offset:
                lo = mid
            else:
                hi = mid - 1
        return nonces[lo] + 1


_HeapEntry = tuple[int, int, bytes]  # (price key, -received, tx hash)


class TxPool:
    """Pending transactions of a py-evm (Prague) chain, validated geth-style on entry."""

    def __init__(
        self,
        chain_id: int,
        *,
        max_size: int = 8192,
        max_per_sender: int = 256,
        max_tx_bytes: int = 128 * 1024,
        price_bump_percent: int = 10,
        min_priority_fee: int = 0,
        max_nonce_gap: int = 64,
        sender_allowed: Callable[[bytes], bool] | None = None,
    ) -> None:
        if chain_id < 1:
            raise ValueError(f"chain_id must be >= 1 (EIP-155), got {chain_id}")
        for name, value, minimum in (
            ("max_size", max_size, 1),
            ("max_per_sender", max_per_sender, 1),
            ("max_tx_bytes", max_tx_bytes, 1),
            ("price_bump_percent", price_bump_percent, 0),
            ("min_priority_fee", min_priority_fee, 0),
            ("max_nonce_gap", max_nonce_gap, 0),
        ):
            if value < minimum:
                raise ValueError(f"{name} must be >= {minimum}, got {value}")
        self.chain_id = chain_id
        self.max_size = max_size
        self.max_per_sender = max_per_sender
        self.max_tx_bytes = max_tx_bytes
        self.price_bump_percent = price_bump_percent
        self.min_priority_fee = min_priority_fee
        self.max_nonce_gap = max_nonce_gap
        # Account permissioning (the on-chain AccountAllowList), consulted on entry.
        self.sender_allowed = sender_allowed
        self._legacy_v = (chain_id * 2 + 35, chain_id * 2 + 36)

        self._by_hash: dict[bytes, PoolTx] = {}
        self._senders: dict[bytes, _SenderTxs] = {}
        self._seq = 0
        self._tip_heap: list[_HeapEntry] = []
        self._fee_heap: list[_HeapEntry] = []
        self._subscribers: list[Callable[[PoolTx], None]] = []

    # ------------------------------------------------------------------ queries

    def __len__(self) -> int:
        return len(self._by_hash)

    def __contains__(self, tx_hash: object) -> bool:
        return tx_hash in self._by_hash

    def get(self, tx_hash: bytes) -> PoolTx | None:
        return self._by_hash.get(tx_hash)

    def pending(self) -> list[PoolTx]:
        """Every pooled tx (executable or waiting on a nonce gap), oldest arrival first."""
        return list(self._by_hash.values())

    def sender_txs(self, address: bytes) -> list[PoolTx]:
        """One sender's pooled txs in nonce order (for txpool_content-style introspection)."""
        txs = self._senders.get(address)
        if txs is None:
            return []
        return [txs.by_nonce[n] for n in txs.nonces]

    def pending_nonce(self, address: bytes, state: StateView) -> int:
        """Next nonce the sender should use: state nonce plus the gap-free run of pooled txs."""
        base = state.get_nonce(address)
        txs = self._senders.get(address)
        return base if txs is None else txs.run_end(base)

    # ---------------------------------------------------------------- decoding

    def decode(self, raw: bytes) -> SignedTransactionAPI:
        """Decode eth_sendRawTransaction bytes (legacy RLP list or 0x01/0x02/0x04 envelope).

        Raises TxPoolError: -32602 when the bytes are not a transaction, -32000 when they are
        one this chain does not accept (blob or unknown type, out-of-range fields).
        """
        if not raw:
            raise TxPoolError(f"{ERR_INVALID_ENCODING}: empty input", RPC_INVALID_PARAMS)
        first = raw[0]
        if first < 0x80:
            if first not in _SUPPORTED_TYPES:
                kind = " (blob transactions are not accepted)" if first == BLOB_TX_TYPE else ""
                raise TxPoolError(f"{ERR_TX_TYPE_NOT_SUPPORTED}: type {first}{kind}")
        elif first < 0xC0:
            raise TxPoolError(
                f"{ERR_INVALID_ENCODING}: neither an RLP list nor a typed envelope",
                RPC_INVALID_PARAMS,
            )
        try:
            tx = PragueTransactionBuilder.decode(raw)
            canonical = tx.encode() == raw
        except Exception as exc:  # rlp and py-evm raise many unrelated types on garbage
            raise TxPoolError(
                f"{ERR_INVALID_ENCODING}: {type(exc).__name__}", RPC_INVALID_PARAMS
            ) from exc
        if not canonical:
            # The hash must be the one the block will commit to, so only canonical bytes pass.
            raise TxPoolError(f"{ERR_INVALID_ENCODING}: not canonical", RPC_INVALID_PARAMS)
        self._check_field_ranges(tx)
        return tx

    @staticmethod
    def _check_field_ranges(tx: SignedTransactionAPI) -> None:
        """Reject values RLP can carry but the protocol cannot (geth fails these at decode)."""
        if tx.gas > _UINT64_MAX:
            raise TxPoolError(f"{ERR_INVALID_ENCODING}: gas exceeds 2^64-1", RPC_INVALID_PARAMS)
        if tx.value >= _UINT256_LIMIT:
            raise TxPoolError(f"{ERR_INVALID_ENCODING}: value exceeds 2^256-1", RPC_INVALID_PARAMS)
        if tx.nonce >= _UINT64_MAX:  # EIP-2681
            raise TxPoolError(ERR_NONCE_MAX)
        if tx.max_fee_per_gas >= _UINT256_LIMIT:
            raise TxPoolError(ERR_FEE_CAP_VERY_HIGH)
        if tx.max_priority_fee_per_gas >= _UINT256_LIMIT:
            raise TxPoolError(ERR_TIP_VERY_HIGH)
        if tx.type_id == SET_CODE_TRANSACTION_TYPE:
            if tx.to == CREATE_CONTRACT_ADDRESS:
                raise TxPoolError(ERR_SET_CODE_CREATE)
            if len(tx.authorization_list) == 0:
                raise TxPoolError(ERR_EMPTY_AUTH_LIST)

    @staticmethod
    def _recover_sender(tx: SignedTransactionAPI) -> bytes:
        """Recover the signer; one ECDSA recovery is the signature check (the costly step).

        High-s signatures are malleable copies of valid ones and are refused (EIP-2).
        """
        if not (0 < tx.r < SECPK1_N and 0 < tx.s <= SECPK1_N // 2):
            raise TxPoolError(ERR_INVALID_SENDER)
        try:
            return bytes(tx.sender)
        except Exception as exc:  # eth_keys raises BadSignature / ValidationError / ValueError
            raise TxPoolError(ERR_INVALID_SENDER) from exc

    def _check_chain_id(self, tx: SignedTransactionAPI) -> None:
        if tx.type_id is None:
            v = tx.v
            if v in _LEGACY_UNPROTECTED_V:
                raise TxPoolError(ERR_UNPROTECTED)
            if v not in self._legacy_v:
                raise TxPoolError(ERR_INVALID_CHAIN_ID)
        elif tx.chain_id != self.chain_id:
            raise TxPoolError(ERR_INVALID_CHAIN_ID)

    # ---------------------------------------------------------------- mutation

    def add(self, raw: bytes, state: StateView, *, block_gas_limit: int, base_fee: int) -> PoolTx:
        """Validate `raw` against the head (`state`, `block_gas_limit`, `base_fee`) and pool it.

        Either the tx is pooled (possibly replacing the sender's tx with the same nonce, or
        evicting a cheaper tx when the pool is full) and returned, or TxPoolError is raised and
        the pool is unchanged.
        """
        raw = bytes(raw)
        if len(raw) > self.max_tx_bytes:
            raise TxPoolError(ERR_OVERSIZED_DATA)
        tx_hash = keccak(raw)
        # Checking the hash before decoding gives the same answers as checking it after the
        # signature and chain-id steps (identical bytes pass those identically) and spares an
        # ECDSA recovery for every re-broadcast.
        if tx_hash in self._by_hash:
            raise TxPoolError(ERR_ALREADY_KNOWN)
        tx = self.decode(raw)
        sender = self._recover_sender(tx)
        self._check_chain_id(tx)
        if self.sender_allowed is not None and not self.sender_allowed(sender):
            raise TxPoolError(ERR_SENDER_NOT_PERMITTED)

        is_create = tx.to == CREATE_CONTRACT_ADDRESS
        if is_create and len(tx.data) > MAX_INITCODE_SIZE:
            raise TxPoolError(ERR_MAX_INITCODE_SIZE)
        gas = tx.gas
        if gas < intrinsic_gas(tx):
            raise TxPoolError(ERR_INTRINSIC_GAS)
        if gas < floor_data_gas(tx):
            raise TxPoolError(ERR_FLOOR_DATA_GAS)
        if gas > block_gas_limit:
            raise TxPoolError(ERR_GAS_LIMIT)
        max_fee = tx.max_fee_per_gas
        tip = tx.max_priority_fee_per_gas
        if tip > max_fee:
            raise TxPoolError(ERR_TIP_ABOVE_FEE_CAP)
        if max_fee < base_fee:
            raise TxPoolError(ERR_FEE_CAP_BELOW_BASE_FEE)
        if min(tip, max_fee - base_fee) < self.min_priority_fee:
            raise TxPoolError(ERR_UNDERPRICED)

        nonce = tx.nonce
        state_nonce = state.get_nonce(sender)
        if nonce < state_nonce:
            raise TxPoolError(ERR_NONCE_TOO_LOW)
        own = self._senders.get(sender)
        next_nonce = state_nonce if own is None else own.run_end(state_nonce)
        if nonce > next_nonce + self.max_nonce_gap:
            raise TxPoolError(ERR_NONCE_TOO_HIGH)
        cost = gas * max_fee + tx.value
        if state.get_balance(sender) < cost:
            raise TxPoolError(ERR_INSUFFICIENT_FUNDS)

        replaced = None if own is None else own.by_nonce.get(nonce)
        victim: PoolTx | None = None
        if replaced is not None:
            if not self._pays_bump(replaced, max_fee, tip):
                raise TxPoolError(ERR_REPLACE_UNDERPRICED)
        else:
            if own is not None and own.count_from(state_nonce) >= self.max_per_sender:
                raise TxPoolError(ERR_SENDER_LIMIT)
            if len(self._by_hash) >= self.max_size:
                victim = self._cheapest_tail(exclude=sender, base_fee=base_fee)
                if victim is None or victim.effective_tip(base_fee) >= min(tip, max_fee - base_fee):
                    raise TxPoolError(ERR_POOL_FULL)

        # Every check passed: from here on nothing can fail, so the pool never half-changes.
        pooled = PoolTx(
            tx=tx,
            raw=raw,
            hash=tx_hash,
            sender=sender,
            nonce=nonce,
            max_fee=max_fee,
            max_priority_fee=tip,
            gas=gas,
            cost=cost,
            received=self._seq,
        )
        self._seq += 1
        if victim is not None:
            self._remove_tx(victim)
        if replaced is not None:
            self._replace_tx(replaced, pooled)
        else:
            self._insert_tx(pooled)
        self._notify(pooled)
        return pooled

    def drop_unpermitted(self) -> list[bytes]:
        """Drop every tx whose sender account permissioning no longer allows; return hashes."""
        if self.sender_allowed is None:
            return []
        dropped = [
            pooled.hash
            for sender in list(self._senders)
            if not self.sender_allowed(sender)
            for pooled in self.sender_txs(sender)
        ]
        self.remove(dropped)
        return dropped

    def remove(self, tx_hashes: Iterable[bytes]) -> None:
        """Forget these txs (e.g. just included in a block); unknown hashes are ignored."""
        for tx_hash in tx_hashes:
            pooled = self._by_hash.get(tx_hash)
            if pooled is not None:
                self._remove_tx(pooled)

    def on_new_head(
        self, state: StateView, *, senders: Iterable[bytes] | None = None
    ) -> list[bytes]:
        """Drop txs whose nonce the new head has used and txs the sender can no longer afford.

        `senders` limits the re-check to those accounts (the block's senders and EIP-7702
        authorities: only their nonces and balances can have moved against the pool); None
        re-checks every sender. Returns the dropped hashes, sender by sender in nonce order.
        Later txs of a sender whose middle tx is dropped stay pooled, waiting for the gap to fill.
        """
        addresses = list(self._senders) if senders is None else list(dict.fromkeys(senders))
        dropped: list[PoolTx] = []
        for address in addresses:
            own = self._senders.get(address)
            if own is None:
                continue
            state_nonce = state.get_nonce(address)
            balance = state.get_balance(address)
            for nonce in own.nonces:
                pooled = own.by_nonce[nonce]
                if nonce < state_nonce or pooled.cost > balance:
                    dropped.append(pooled)
        for pooled in dropped:
            self._remove_tx(pooled)
        return [pooled.hash for pooled in dropped]

    # -------------------------------------------------------------- selection

    def select(
        self,
        state: StateView,
        *,
        base_fee: int,
        gas_limit: int,
        max_count: int | None = None,
    ) -> list[PoolTx]:
        """Executable txs for the next block, in the order to apply them.

        Per sender strictly in nonce order from the state nonce; across senders by effective tip
        (highest first, ties by arrival). A sender stops at its first tx that cannot pay the base
        fee, does not fit the remaining gas, or exceeds its remaining balance (each selected tx
        is charged its full `cost`, an upper bound of what execution takes), so every returned
        tx passes py-evm's validation when applied in this order.
        """
        if max_count is not None and max_count <= 0:
            return []
        heap: list[tuple[int, int, PoolTx]] = []
        budgets: dict[bytes, int] = {}
        for address, own in self._senders.items():
            head = own.by_nonce.get(state.get_nonce(address))
            if head is None or head.max_fee < base_fee:
                continue
            budgets[address] = state.get_balance(address)
            heap.append((-head.effective_tip(base_fee), head.received, head))
        heapq.heapify(heap)

        selected: list[PoolTx] = []
        gas_left = gas_limit
        while heap and gas_left >= GAS_TX:
            _, _, pooled = heapq.heappop(heap)
            budget = budgets[pooled.sender]
            if pooled.gas > gas_left or pooled.cost > budget:
                continue  # this sender is done for this block; others may still fit
            selected.append(pooled)
            gas_left -= pooled.gas
            budgets[pooled.sender] = budget - pooled.cost
            if max_count is not None and len(selected) >= max_count:
                break
            successor = self._senders[pooled.sender].by_nonce.get(pooled.nonce + 1)
            if successor is not None and successor.max_fee >= base_fee:
                heapq.heappush(
                    heap, (-successor.effective_tip(base_fee), successor.received, successor)
                )
        return selected

    # ---------------------------------------------------------- subscriptions

    def subscribe(self, callback: Callable[[PoolTx], None]) -> None:
        """Call `callback` with every newly accepted tx (replacements included).

        A failing callback is logged and does not undo the acceptance or starve the others.
        """
        self._subscribers.append(callback)

    def unsubscribe(self, callback: Callable[[PoolTx], None]) -> None:
        """Stop calling `callback`; unknown callbacks are ignored."""
        if callback in self._subscribers:
            self._subscribers.remove(callback)

    def _notify(self, pooled: PoolTx) -> None:
        for callback in list(self._subscribers):
            try:
                callback(pooled)
            except Exception:
                _log.exception("txpool_subscriber_failed", tx_hash=pooled.hash.hex())

    # --------------------------------------------------------------- internals

    def _pays_bump(self, old: PoolTx, max_fee: int, tip: int) -> bool:
        """geth's rule: both fee fields strictly higher and at least old*(100+bump)/100."""
        factor = 100 + self.price_bump_percent
        return (
            max_fee > old.max_fee
            and tip > old.max_priority_fee
            and max_fee >= old.max_fee * factor // 100
            and tip >= old.max_priority_fee * factor // 100
        )

    def _insert_tx(self, pooled: PoolTx) -> None:
        own = self._senders.get(pooled.sender)
        if own is None:
            own = self._senders[pooled.sender] = _SenderTxs()
        own.by_nonce[pooled.nonce] = pooled
        insort(own.nonces, pooled.nonce)
        self._by_hash[pooled.hash] = pooled
        if own.nonces[-1] == pooled.nonce:
            self._push_tail(pooled)

    def _replace_tx(self, old: PoolTx, new: PoolTx) -> None:
        own = self._senders[old.sender]
        del self._by_hash[old.hash]
        own.by_nonce[new.nonce] = new
        self._by_hash[new.hash] = new
        if own.nonces[-1] == new.nonce:
            self._push_tail(new)

    def _remove_tx(self, pooled: PoolTx) -> None:
        del self._by_hash[pooled.hash]
        own = self._senders[pooled.sender]
        del own.by_nonce[pooled.nonce]
        index = bisect_left(own.nonces, pooled.nonce)
        own.nonces.pop(index)
        if not own.nonces:
            del self._senders[pooled.sender]
        elif index == len(own.nonces):
            self._push_tail(own.tail())

    def _push_tail(self, pooled: PoolTx) -> None:
        """Record a sender's new last tx in both eviction heaps (older entries go stale)."""
        heapq.heappush(self._tip_heap, (pooled.max_priority_fee, -pooled.received, pooled.hash))
        heapq.heappush(self._fee_heap, (pooled.max_fee, -pooled.received, pooled.hash))
        if max(len(self._tip_heap), len(self._fee_heap)) > 2 * len(self._senders) + 1024:
            self._rebuild_heaps()

    def _rebuild_heaps(self) -> None:
        tails = [own.tail() for own in self._senders.values()]
        self._tip_heap = [(p.max_priority_fee, -p.received, p.hash) for p in tails]
        self._fee_heap = [(p.max_fee, -p.received, p.hash) for p in tails]
        heapq.heapify(self._tip_heap)
        heapq.heapify(self._fee_heap)

    def _live_tail(self, entry: _HeapEntry) -> PoolTx | None:
        """The heap entry's tx if it is still pooled and still its sender's last tx."""
        pooled = self._by_hash.get(entry[2])
        if pooled is None or -pooled.received != entry[1]:
            return None  # gone, or the same bytes pooled again later under a new entry
        if self._senders[pooled.sender].nonces[-1] != pooled.nonce:
            return None
        return pooled

    def _cheapest_tail(self, *, exclude: bytes, base_fee: int) -> PoolTx | None:
        """Lowest effective tip among other senders' last txs (removing one leaves no gap).

        Ties go to the newer arrival among the two heap candidates.
        """
        candidates: list[PoolTx] = []
        for heap in (self._tip_heap, self._fee_heap):
            skipped: list[_HeapEntry] = []
            while heap:
                pooled = self._live_tail(heap[0])
                if pooled is None:
                    heapq.heappop(heap)  # stale: drop for good
                elif pooled.sender == exclude:
                    skipped.append(heapq.heappop(heap))
                else:
                    candidates.append(pooled)
                    break
            for entry in skipped:
                heapq.heappush(heap, entry)
        if not candidates:
            return None
        return min(candidates, key=lambda p: (p.effective_tip(base_fee), -p.received))
