"""Transaction pool tests with real transactions signed by eth_account and decoded by py-evm."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import pytest
from eth.constants import SECPK1_N
from eth.vm.forks.prague.transactions import PragueTransactionBuilder
from eth_account import Account
from eth_account.signers.local import LocalAccount
from eth_hash.auto import keccak
from eth_keys import keys
from eth_utils import to_canonical_address

from node.txerrors import RPC_INVALID_PARAMS, RPC_SERVER_ERROR
from node.txpool import PoolTx, TxPool, TxPoolError

CHAIN_ID = 1337
GWEI = 10**9
BASE_FEE = 1 * GWEI
GAS_LIMIT = 30_000_000
RICH = 10**21
TO = "0x" + "11" * 20


def _account(label: str) -> LocalAccount:
    return Account.from_key(keccak(f"medledger-txpool-{label}".encode()))


ALICE, BOB, CAROL, DAVE, ERIN = (_account(n) for n in ("alice", "bob", "carol", "dave", "erin"))


def addr(acct: LocalAccount) -> bytes:
    return to_canonical_address(acct.address)


@dataclass
class DictState:
    """A StateView over plain dicts: accounts default to nonce 0 and balance 0."""

    nonces: dict[bytes, int] = field(default_factory=dict)
    balances: dict[bytes, int] = field(default_factory=dict)

    def get_nonce(self, address: bytes) -> int:
        return self.nonces.get(address, 0)

    def get_balance(self, address: bytes) -> int:
        return self.balances.get(address, 0)


def rich_state(*accounts: LocalAccount) -> DictState:
    return DictState(balances={addr(a): RICH for a in accounts})


def sign_1559(
    acct: LocalAccount,
    nonce: int,
    *,
    tip: int = 1 * GWEI,
    max_fee: int = 10 * GWEI,
    gas: int = 21_000,
    value: int = 1,
    to: str | None = TO,
    data: bytes = b"",
    chain_id: int = CHAIN_ID,
    **extra: Any,
) -> bytes:
    tx: dict[str, Any] = {
        "type": 2,
        "chainId": chain_id,
        "nonce": nonce,
        "maxPriorityFeePerGas": tip,
        "maxFeePerGas": max_fee,
        "gas": gas,
        "value": value,
        "data": data,
        **extra,
    }
    if to is not None:
        tx["to"] = to
    return bytes(acct.sign_transaction(tx).raw_transaction)


def sign_legacy(
    acct: LocalAccount,
    nonce: int,
    *,
    gas_price: int = 2 * GWEI,
    gas: int = 21_000,
    value: int = 1,
    chain_id: int | None = CHAIN_ID,
) -> bytes:
    tx: dict[str, Any] = {
        "nonce": nonce,
        "gasPrice": gas_price,
        "gas": gas,
        "to": TO,
        "value": value,
    }
    if chain_id is not None:
        tx["chainId"] = chain_id
    return bytes(acct.sign_transaction(tx).raw_transaction)


def py_evm_signed(acct: LocalAccount, unsigned: Any) -> bytes:
    """Sign a py-evm unsigned tx directly: lets tests build txs eth_account refuses to build."""
    return unsigned.as_signed_transaction(keys.PrivateKey(acct.key)).encode()


def tamper(raw: bytes, **fields: int) -> bytes:
    """Re-encode `raw` with some fields overwritten (signature left as is unless overwritten)."""
    return PragueTransactionBuilder.decode(raw).copy(**fields).encode()


def add(
    pool: TxPool,
    raw: bytes,
    state: DictState,
    *,
    base_fee: int = BASE_FEE,
    gas_limit: int = GAS_LIMIT,
) -> PoolTx:
    return pool.add(raw, state, block_gas_limit=gas_limit, base_fee=base_fee)


def rejected(
    pool: TxPool, raw: bytes, state: DictState, message: str, **kwargs: int
) -> TxPoolError:
    """Assert `raw` is refused with exactly `message` and that the pool did not change."""
    before = [p.hash for p in pool.pending()]
    with pytest.raises(TxPoolError) as info:
        add(pool, raw, state, **kwargs)
    assert info.value.message == message
    assert str(info.value) == message
    assert [p.hash for p in pool.pending()] == before
    return info.value


@pytest.fixture
def pool() -> TxPool:
    return TxPool(CHAIN_ID)


# ----------------------------------------------------------------- hashing, fields


def test_pool_tx_fields_and_hash_match_eth_account_for_1559_and_legacy(pool: TxPool) -> None:
    state = rich_state(ALICE, BOB)
    signed_1559 = ALICE.sign_transaction(
        {
            "type": 2,
            "chainId": CHAIN_ID,
            "nonce": 0,
            "maxPriorityFeePerGas": 2 * GWEI,
            "maxFeePerGas": 30 * GWEI,
            "gas": 50_000,
            "to": TO,
            "value": 12345,
        }
    )
    signed_legacy = BOB.sign_transaction(
        {"nonce": 0, "gasPrice": 3 * GWEI, "gas": 21_000, "to": TO, "value": 7, "chainId": CHAIN_ID}
    )
    a = add(pool, bytes(signed_1559.raw_transaction), state)
    b = add(pool, bytes(signed_legacy.raw_transaction), state)

    assert a.hash == bytes(signed_1559.hash)
    assert b.hash == bytes(signed_legacy.hash)
    assert a.hash == a.tx.hash and b.hash == b.tx.hash
    assert (a.sender, a.nonce, a.gas) == (addr(ALICE), 0, 50_000)
    assert (a.max_fee, a.max_priority_fee) == (30 * GWEI, 2 * GWEI)
    assert a.cost == 50_000 * 30 * GWEI + 12345
    assert (b.sender, b.max_fee, b.max_priority_fee) == (addr(BOB), 3 * GWEI, 3 * GWEI)
    assert b.cost == 21_000 * 3 * GWEI + 7
    assert b.raw == bytes(signed_legacy.raw_transaction)
    assert (a.received, b.received) == (0, 1)
    assert len(pool) == 2 and a.hash in pool and pool.get(b.hash) is b
    assert pool.get(b"\x00" * 32) is None and b"\x00" * 32 not in pool
    assert pool.pending() == [a, b]
    assert a.effective_tip(29 * GWEI) == 1 * GWEI


def test_access_list_and_set_code_transactions_are_accepted_with_their_intrinsic_gas(
    pool: TxPool,
) -> None:
    state = rich_state(ALICE, BOB)
    access_list = [{"address": TO, "storageKeys": ["0x" + "00" * 32]}]
    al_tx = {
        "type": 1,
        "chainId": CHAIN_ID,
        "nonce": 0,
        "gasPrice": 2 * GWEI,
        "to": TO,
        "value": 0,
        "accessList": access_list,
    }
    # 21000 + 2400 per address + 1900 per storage key
    too_little = bytes(ALICE.sign_transaction({**al_tx, "gas": 25_299}).raw_transaction)
    rejected(pool, too_little, state, "intrinsic gas too low")
    enough = ALICE.sign_transaction({**al_tx, "gas": 25_300})
    assert add(pool, bytes(enough.raw_transaction), state).hash == bytes(enough.hash)

    auth = Account.sign_authorization({"chainId": CHAIN_ID, "address": TO, "nonce": 0}, BOB.key)
    set_code = {
        "type": 4,
        "chainId": CHAIN_ID,
        "nonce": 0,
        "maxPriorityFeePerGas": GWEI,
        "maxFeePerGas": 10 * GWEI,
        "to": TO,
        "value": 0,
        "authorizationList": [auth],
    }
    # 21000 + 25000 per authorization
    short = bytes(BOB.sign_transaction({**set_code, "gas": 45_999}).raw_transaction)
    rejected(pool, short, state, "intrinsic gas too low")
    signed = BOB.sign_transaction({**set_code, "gas": 46_000})
    pooled = add(pool, bytes(signed.raw_transaction), state)
    assert pooled.tx.type_id == 4 and pooled.hash == bytes(signed.hash)


# ----------------------------------------------------------------- decode errors


@pytest.mark.parametrize(
    "raw",
    [
        b"",
        b"\x80",  # an RLP string, neither a list nor a typed envelope
        b"\xc0",  # empty list
        b"\x02\xc0",  # typed envelope with an empty payload
        b"\x02" + b"\xff" * 40,
        b"\xf8\x01garbage",
    ],
)
def test_undecodable_input_is_invalid_params(pool: TxPool, raw: bytes) -> None:
    with pytest.raises(TxPoolError) as info:
        pool.decode(raw)
    assert info.value.code == RPC_INVALID_PARAMS
    assert info.value.message.startswith("invalid transaction encoding")
    err = rejected(pool, raw, DictState(), info.value.message)
    assert err.code == RPC_INVALID_PARAMS


def test_trailing_bytes_after_a_valid_transaction_are_refused(pool: TxPool) -> None:
    raw = sign_1559(ALICE, 0)
    assert pool.decode(raw).nonce == 0
    with pytest.raises(TxPoolError) as info:
        pool.decode(raw + b"\x00")
    assert info.value.code == RPC_INVALID_PARAMS


@pytest.mark.parametrize("type_byte", [0x00, 0x03, 0x05, 0x7F])
def test_blob_and_unknown_types_are_not_supported(pool: TxPool, type_byte: int) -> None:
    raw = bytes([type_byte]) + sign_1559(ALICE, 0)[1:]
    with pytest.raises(TxPoolError) as info:
        add(pool, raw, rich_state(ALICE))
    assert info.value.code == RPC_SERVER_ERROR
    assert info.value.message.startswith("transaction type not supported")
    assert ("blob" in info.value.message) == (type_byte == 0x03)


def test_out_of_range_fields_are_refused(pool: TxPool) -> None:
    state = rich_state(ALICE)
    build = PragueTransactionBuilder.new_unsigned_dynamic_fee_transaction

    def unsigned(**over: int) -> Any:
        fields: dict[str, Any] = dict(
            chain_id=CHAIN_ID,
            nonce=0,
            max_priority_fee_per_gas=GWEI,
            max_fee_per_gas=10 * GWEI,
            gas=21_000,
            to=to_canonical_address(TO),
            value=0,
            data=b"",
            access_list=[],
        )
        fields.update(over)
        return build(**fields)

    rejected(pool, py_evm_signed(ALICE, unsigned(nonce=2**64 - 1)), state, "nonce has max value")
    rejected(
        pool,
        py_evm_signed(ALICE, unsigned(max_fee_per_gas=2**256, max_priority_fee_per_gas=1)),
        state,
        "max fee per gas higher than 2^256-1",
    )
    rejected(
        pool,
        py_evm_signed(ALICE, unsigned(max_priority_fee_per_gas=2**256)),
        state,
        "max priority fee per gas higher than 2^256-1",
    )
    big_gas = rejected(
        pool,
        py_evm_signed(ALICE, unsigned(gas=2**64)),
        state,
        "invalid transaction encoding: gas exceeds 2^64-1",
    )
    assert big_gas.code == RPC_INVALID_PARAMS


def test_set_code_transaction_shape_errors(pool: TxPool) -> None:
    state = rich_state(ALICE)
    auth = Account.sign_authorization({"chainId": CHAIN_ID, "address": TO, "nonce": 0}, BOB.key)
    py_auth = {
        "chain_id": auth.chain_id,
        "address": auth.address,
        "nonce": auth.nonce,
        "y_parity": auth.y_parity,
        "r": auth.r,
        "s": auth.s,
    }

    def set_code(to: bytes, authorizations: list[dict[str, Any]]) -> bytes:
        unsigned = PragueTransactionBuilder.new_unsigned_set_code_transaction(
            chain_id=CHAIN_ID,
            nonce=0,
            max_priority_fee_per_gas=GWEI,
            max_fee_per_gas=10 * GWEI,
            gas=100_000,
            to=to,  # type: ignore[arg-type]
            value=0,
            data=b"",
            access_list=[],
            authorization_list=authorizations,  # type: ignore[arg-type]
        )
        return py_evm_signed(ALICE, unsigned)

    rejected(
        pool,
        set_code(to_canonical_address(TO), []),
        state,
        "EIP-7702 transaction with empty auth list",
    )
    rejected(
        pool,
        set_code(b"", [py_auth]),
        state,
        "EIP-7702 transaction cannot be used to create contract",
    )
    assert add(pool, set_code(to_canonical_address(TO), [py_auth]), state).sender == addr(ALICE)


# ----------------------------------------------------------------- add() errors, in order


def test_oversized_data() -> None:
    pool = TxPool(CHAIN_ID, max_tx_bytes=300)
    state = rich_state(ALICE)
    small = sign_1559(ALICE, 0, gas=100_000, data=b"\x01" * 100)
    big = sign_1559(ALICE, 0, gas=100_000, data=b"\x01" * 300)
    assert len(small) <= 300 < len(big)
    err = rejected(pool, big, state, "oversized data")
    assert err.code == RPC_SERVER_ERROR
    add(pool, small, state)


def test_invalid_signatures_are_invalid_sender(pool: TxPool) -> None:
    state = rich_state(ALICE)
    raw = sign_1559(ALICE, 0)
    tx = PragueTransactionBuilder.decode(raw)
    rejected(pool, tamper(raw, s=0), state, "invalid sender")
    rejected(pool, tamper(raw, r=0), state, "invalid sender")
    rejected(pool, tamper(raw, r=SECPK1_N), state, "invalid sender")
    rejected(pool, tamper(raw, y_parity=2), state, "invalid sender")
    # The malleable twin (s -> N - s, parity flipped) recovers the same key; EIP-2 forbids it.
    rejected(
        pool, tamper(raw, s=SECPK1_N - tx.s, y_parity=1 - tx.y_parity), state, "invalid sender"
    )
    # An unsigned legacy tx (v = r = s = 0).
    legacy = PragueTransactionBuilder.decode(sign_legacy(ALICE, 0))
    rejected(pool, legacy.copy(v=0, r=0, s=0).encode(), state, "invalid sender")
    assert add(pool, raw, state).sender == addr(ALICE)


def test_tampered_payload_recovers_a_different_sender(pool: TxPool) -> None:
    raw = sign_1559(ALICE, 0)
    forged = tamper(raw, value=10**18)
    assert pool.decode(forged).sender != addr(ALICE)
    rejected(pool, forged, rich_state(ALICE), "insufficient funds for gas * price + value")


def test_chain_id_and_replay_protection(pool: TxPool) -> None:
    state = rich_state(ALICE)
    rejected(pool, sign_1559(ALICE, 0, chain_id=1), state, "invalid chain id")
    rejected(pool, sign_legacy(ALICE, 0, chain_id=1), state, "invalid chain id")
    rejected(
        pool,
        sign_legacy(ALICE, 0, chain_id=None),
        state,
        "only replay-protected (EIP-155) transactions allowed",
    )
    assert add(pool, sign_legacy(ALICE, 0), state).tx.v in (CHAIN_ID * 2 + 35, CHAIN_ID * 2 + 36)


def test_already_known(pool: TxPool) -> None:
    state = rich_state(ALICE)
    raw = sign_1559(ALICE, 0)
    add(pool, raw, state)
    rejected(pool, raw, state, "already known")


def test_intrinsic_gas_floor_and_initcode(pool: TxPool) -> None:
    state = rich_state(ALICE)
    rejected(pool, sign_1559(ALICE, 0, gas=20_999), state, "intrinsic gas too low")
    # 100 non-zero bytes of calldata: 21000 + 16 * 100.
    rejected(
        pool, sign_1559(ALICE, 0, gas=22_599, data=b"\x01" * 100), state, "intrinsic gas too low"
    )
    # EIP-7623: 1000 non-zero bytes need 21000 + 10 * 4 * 1000 although intrinsic is 37000.
    heavy = b"\x01" * 1000
    rejected(
        pool,
        sign_1559(ALICE, 0, gas=60_999, data=heavy),
        state,
        "insufficient gas for floor data gas cost",
    )
    # Creation: 53000 + 16 * 64 + EIP-3860 2 per initcode word (2 words).
    initcode = b"\x60" * 64
    rejected(
        pool,
        sign_1559(ALICE, 0, to=None, gas=54_027, data=initcode),
        state,
        "intrinsic gas too low",
    )
    rejected(
        pool,
        sign_1559(ALICE, 0, to=None, gas=3_000_000, data=b"\x60" * (49_152 + 1)),
        state,
        "max initcode size exceeded",
    )
    assert add(pool, sign_1559(ALICE, 0, to=None, gas=54_028, data=initcode), state).nonce == 0
    assert add(pool, sign_1559(ALICE, 1, gas=61_000, data=heavy), state).nonce == 1


def test_exceeds_block_gas_limit(pool: TxPool) -> None:
    state = rich_state(ALICE)
    raw = sign_1559(ALICE, 0, gas=1_000_001)
    rejected(pool, raw, state, "exceeds block gas limit", gas_limit=1_000_000)
    add(pool, raw, state, gas_limit=1_000_001)


def test_fee_field_errors() -> None:
    pool = TxPool(CHAIN_ID, min_priority_fee=2 * GWEI)
    state = rich_state(ALICE)
    rejected(
        pool,
        sign_1559(ALICE, 0, tip=11 * GWEI, max_fee=10 * GWEI),
        state,
        "max priority fee per gas higher than max fee per gas",
    )
    rejected(
        pool,
        sign_1559(ALICE, 0, tip=2 * GWEI, max_fee=5 * GWEI),
        state,
        "max fee per gas less than block base fee",
        base_fee=6 * GWEI,
    )
    rejected(
        pool, sign_1559(ALICE, 0, tip=GWEI, max_fee=10 * GWEI), state, "transaction underpriced"
    )
    # A tip above the minimum that the base fee eats into is underpriced too.
    rejected(
        pool,
        sign_1559(ALICE, 0, tip=3 * GWEI, max_fee=7 * GWEI),
        state,
        "transaction underpriced",
        base_fee=6 * GWEI,
    )
    rejected(pool, sign_legacy(ALICE, 0, gas_price=2 * GWEI), state, "transaction underpriced")
    add(pool, sign_1559(ALICE, 0, tip=2 * GWEI, max_fee=10 * GWEI), state)
    add(pool, sign_legacy(ALICE, 1, gas_price=3 * GWEI), state)


def test_nonce_too_low_and_too_high() -> None:
    pool = TxPool(CHAIN_ID, max_nonce_gap=2)
    state = rich_state(ALICE)
    state.nonces[addr(ALICE)] = 5
    rejected(pool, sign_1559(ALICE, 4), state, "nonce too low")
    rejected(pool, sign_1559(ALICE, 8), state, "nonce too high")
    add(pool, sign_1559(ALICE, 7), state)  # pending nonce 5, gap of 2 allowed
    add(pool, sign_1559(ALICE, 5), state)  # pending nonce now 6
    add(pool, sign_1559(ALICE, 8), state)
    rejected(pool, sign_1559(ALICE, 11), state, "nonce too high")
    add(pool, sign_1559(ALICE, 6), state)  # run 5..8 -> pending 9
    add(pool, sign_1559(ALICE, 11), state)


def test_insufficient_funds(pool: TxPool) -> None:
    raw = sign_1559(ALICE, 0, max_fee=10 * GWEI, gas=21_000, value=5)
    cost = 21_000 * 10 * GWEI + 5
    state = DictState(balances={addr(ALICE): cost - 1})
    rejected(pool, raw, state, "insufficient funds for gas * price + value")
    state.balances[addr(ALICE)] = cost
    assert add(pool, raw, state).cost == cost


def test_replacement_needs_both_fees_bumped(pool: TxPool) -> None:
    state = rich_state(ALICE)
    seen: list[bytes] = []
    pool.subscribe(lambda p: seen.append(p.hash))
    first = add(pool, sign_1559(ALICE, 0, tip=2 * GWEI, max_fee=10 * GWEI), state)
    add(pool, sign_1559(ALICE, 1, tip=2 * GWEI, max_fee=10 * GWEI), state)

    for tip, max_fee in [
        (2 * GWEI, 20 * GWEI),  # tip not bumped
        (4 * GWEI, 10 * GWEI),  # max fee not bumped
        (2_190_000_000, 11 * GWEI),  # tip bumped 9.5%
        (3 * GWEI, 10_900_000_000),  # max fee bumped 9%
    ]:
        raw = sign_1559(ALICE, 0, tip=tip, max_fee=max_fee)
        rejected(pool, raw, state, "replacement transaction underpriced")

    second = add(pool, sign_1559(ALICE, 0, tip=2_200_000_000, max_fee=11 * GWEI), state)
    assert len(pool) == 2
    assert first.hash not in pool and second.hash in pool
    assert [p.hash for p in pool.sender_txs(addr(ALICE))][0] == second.hash
    assert seen[-1] == second.hash and len(seen) == 3
    # The bump is relative to the tx now pooled, not the original one.
    rejected(
        pool,
        sign_1559(ALICE, 0, tip=2_300_000_000, max_fee=12 * GWEI),
        state,
        "replacement transaction underpriced",
    )
    # Legacy replaces legacy by gas price (both fee fields move together).
    add(pool, sign_legacy(ALICE, 2, gas_price=10 * GWEI), state)
    rejected(
        pool,
        sign_legacy(ALICE, 2, gas_price=10_500_000_000),
        state,
        "replacement transaction underpriced",
    )
    add(pool, sign_legacy(ALICE, 2, gas_price=11 * GWEI), state)
    assert len(pool) == 3


def test_replacement_in_a_full_pool_needs_no_eviction() -> None:
    pool = TxPool(CHAIN_ID, max_size=1, max_per_sender=1)
    state = rich_state(ALICE)
    add(pool, sign_1559(ALICE, 0, tip=GWEI), state)
    new = add(pool, sign_1559(ALICE, 0, tip=2 * GWEI, max_fee=20 * GWEI), state)
    assert pool.pending() == [new]


def test_per_sender_cap_ignores_already_mined_nonces() -> None:
    pool = TxPool(CHAIN_ID, max_per_sender=2)
    state = rich_state(ALICE, BOB)
    add(pool, sign_1559(ALICE, 0), state)
    add(pool, sign_1559(ALICE, 1), state)
    rejected(pool, sign_1559(ALICE, 2), state, "too many pending transactions for sender")
    add(pool, sign_1559(BOB, 0), state)  # other senders are unaffected
    state.nonces[addr(ALICE)] = 1  # nonce 0 mined; on_new_head not yet run
    add(pool, sign_1559(ALICE, 2), state)


# ----------------------------------------------------------------- eviction


def test_full_pool_evicts_cheapest_tail_of_another_sender() -> None:
    pool = TxPool(CHAIN_ID, max_size=3)
    state = rich_state(ALICE, BOB, CAROL, DAVE)
    a0 = add(pool, sign_1559(ALICE, 0, tip=1 * GWEI), state)  # cheapest, but not a tail
    a1 = add(pool, sign_1559(ALICE, 1, tip=5 * GWEI), state)
    b0 = add(pool, sign_1559(BOB, 0, tip=3 * GWEI), state)

    c0 = add(pool, sign_1559(CAROL, 0, tip=4 * GWEI), state)
    assert b0.hash not in pool
    assert {p.hash for p in pool.pending()} == {a0.hash, a1.hash, c0.hash}

    # Cheapest tail is now carol's (4 gwei): an equal or lower offer is refused.
    rejected(pool, sign_1559(DAVE, 0, tip=4 * GWEI), state, "txpool is full")
    rejected(pool, sign_1559(DAVE, 0, tip=2 * GWEI), state, "txpool is full")
    assert pool.pending_nonce(addr(ALICE), state) == 2


def test_eviction_never_takes_the_new_senders_own_tail() -> None:
    pool = TxPool(CHAIN_ID, max_size=3)
    state = rich_state(ALICE, BOB, CAROL)
    a0 = add(pool, sign_1559(ALICE, 0, tip=1 * GWEI), state)
    b0 = add(pool, sign_1559(BOB, 0, tip=3 * GWEI), state)
    c0 = add(pool, sign_1559(CAROL, 0, tip=4 * GWEI), state)
    a1 = add(pool, sign_1559(ALICE, 1, tip=5 * GWEI), state)
    assert b0.hash not in pool
    assert {p.hash for p in pool.pending()} == {a0.hash, c0.hash, a1.hash}


def test_eviction_ranks_by_effective_tip_at_the_current_base_fee() -> None:
    pool = TxPool(CHAIN_ID, max_size=2)
    state = rich_state(ALICE, BOB, CAROL)
    base = 5 * GWEI
    # High tip but max fee only 1 gwei above base: effective tip 1 gwei.
    a0 = add(pool, sign_1559(ALICE, 0, tip=5 * GWEI, max_fee=6 * GWEI), state, base_fee=base)
    b0 = add(pool, sign_1559(BOB, 0, tip=2 * GWEI, max_fee=50 * GWEI), state, base_fee=base)
    c0 = add(pool, sign_1559(CAROL, 0, tip=3 * GWEI, max_fee=50 * GWEI), state, base_fee=base)
    assert a0.hash not in pool
    assert {p.hash for p in pool.pending()} == {b0.hash, c0.hash}


def test_eviction_keeps_working_after_many_tail_changes() -> None:
    """Stale heap entries (replaced, removed, no longer last) must never pick a wrong victim."""
    pool = TxPool(CHAIN_ID, max_size=4)
    state = rich_state(ALICE, BOB, CAROL)
    a0 = add(pool, sign_1559(ALICE, 0, tip=GWEI), state)
    a1 = add(pool, sign_1559(ALICE, 1, tip=GWEI), state)
    pool.remove([a1.hash])  # a0 is alice's tail again
    a1b = add(pool, sign_1559(ALICE, 1, tip=9 * GWEI, max_fee=20 * GWEI), state)
    b0 = add(pool, sign_1559(BOB, 0, tip=2 * GWEI), state)
    b0r = add(pool, sign_1559(BOB, 0, tip=6 * GWEI, max_fee=20 * GWEI), state)  # replaces b0
    c0 = add(pool, sign_1559(CAROL, 0, tip=7 * GWEI), state)
    assert len(pool) == 4 and b0.hash not in pool
    # Tails: alice a1b (9), bob b0r (6), carol c0 (7). Stale entries at 1 and 2 gwei are ignored.
    d0 = add(pool, sign_1559(DAVE, 0, tip=8 * GWEI), rich_state(DAVE))
    assert b0r.hash not in pool
    assert {p.hash for p in pool.pending()} == {a0.hash, a1b.hash, c0.hash, d0.hash}


# ----------------------------------------------------------------- select()


def test_select_orders_by_tip_across_senders_and_nonce_within() -> None:
    pool = TxPool(CHAIN_ID)
    state = rich_state(ALICE, BOB, CAROL)
    a0 = add(pool, sign_1559(ALICE, 0, tip=1 * GWEI), state)
    a1 = add(pool, sign_1559(ALICE, 1, tip=5 * GWEI), state)
    b1 = add(pool, sign_1559(BOB, 1, tip=2 * GWEI), state)
    b0 = add(pool, sign_1559(BOB, 0, tip=3 * GWEI), state)
    c0 = add(pool, sign_1559(CAROL, 0, tip=1 * GWEI), state)  # ties alice's a0, arrived later
    chosen = pool.select(state, base_fee=BASE_FEE, gas_limit=GAS_LIMIT)
    assert chosen == [b0, b1, a0, a1, c0]
    assert pool.select(state, base_fee=BASE_FEE, gas_limit=GAS_LIMIT, max_count=2) == [b0, b1]
    assert pool.select(state, base_fee=BASE_FEE, gas_limit=GAS_LIMIT, max_count=0) == []
    assert len(pool) == 5  # select does not remove anything


def test_select_uses_effective_tip_and_skips_senders_below_base_fee() -> None:
    pool = TxPool(CHAIN_ID)
    state = rich_state(ALICE, BOB, CAROL)
    a0 = add(pool, sign_1559(ALICE, 0, tip=5 * GWEI, max_fee=10 * GWEI), state)
    b0 = add(pool, sign_1559(BOB, 0, tip=4 * GWEI, max_fee=100 * GWEI), state)
    c0 = add(pool, sign_1559(CAROL, 0, tip=GWEI, max_fee=7 * GWEI), state)
    c1 = add(pool, sign_1559(CAROL, 1, tip=50 * GWEI, max_fee=100 * GWEI), state)
    # base 8: alice's effective tip is 2, bob's 4; carol's first tx cannot pay, so none of hers.
    assert pool.select(state, base_fee=8 * GWEI, gas_limit=GAS_LIMIT) == [b0, a0]
    # A later tx below the base fee ends its sender's run.
    a1 = add(pool, sign_1559(ALICE, 1, tip=GWEI, max_fee=3 * GWEI), state)
    a2 = add(pool, sign_1559(ALICE, 2, tip=GWEI, max_fee=90 * GWEI), state)
    # base 4: alice 5, bob 4, carol 1 (then her second tx, tip 50, joins at once).
    assert pool.select(state, base_fee=4 * GWEI, gas_limit=GAS_LIMIT) == [a0, b0, c0, c1]
    assert a1 in pool.select(state, base_fee=BASE_FEE, gas_limit=GAS_LIMIT)
    assert a2 in pool.select(state, base_fee=BASE_FEE, gas_limit=GAS_LIMIT)


def test_select_packs_gas_and_skips_a_sender_that_does_not_fit() -> None:
    pool = TxPool(CHAIN_ID)
    state = rich_state(ALICE, BOB, CAROL)
    a0 = add(pool, sign_1559(ALICE, 0, tip=9 * GWEI, max_fee=20 * GWEI, gas=40_000), state)
    add(pool, sign_1559(BOB, 0, tip=8 * GWEI, max_fee=20 * GWEI, gas=50_000), state)
    add(pool, sign_1559(BOB, 1, tip=8 * GWEI, max_fee=20 * GWEI, gas=21_000), state)
    c0 = add(pool, sign_1559(CAROL, 0, tip=1 * GWEI, gas=21_000), state)
    c1 = add(pool, sign_1559(CAROL, 1, tip=1 * GWEI, gas=21_000), state)
    assert pool.select(state, base_fee=BASE_FEE, gas_limit=70_000) == [a0, c0]
    assert pool.select(state, base_fee=BASE_FEE, gas_limit=82_000) == [a0, c0, c1]
    assert pool.select(state, base_fee=BASE_FEE, gas_limit=20_999) == []


def test_select_starts_at_state_nonce_stops_at_gaps_and_respects_balance() -> None:
    pool = TxPool(CHAIN_ID)
    state = rich_state(ALICE, BOB)
    alice = [add(pool, sign_1559(ALICE, n), state) for n in (0, 1, 2, 4)]
    b = [add(pool, sign_1559(BOB, n, tip=2 * GWEI, value=10**18), state) for n in range(3)]
    state.nonces[addr(ALICE)] = 1
    # Bob can afford his txs one at a time but not all three together.
    state.balances[addr(BOB)] = 2 * b[0].cost + b[0].cost // 2
    chosen = pool.select(state, base_fee=BASE_FEE, gas_limit=GAS_LIMIT)
    assert chosen == [b[0], b[1], alice[1], alice[2]]


# ----------------------------------------------------------------- head changes, nonces


def test_on_new_head_drops_mined_and_unaffordable_txs() -> None:
    pool = TxPool(CHAIN_ID)
    state = rich_state(ALICE, BOB, CAROL)
    a = [add(pool, sign_1559(ALICE, n), state) for n in range(3)]
    b0 = add(pool, sign_1559(BOB, 0, value=10**18), state)
    b1 = add(pool, sign_1559(BOB, 1), state)
    c0 = add(pool, sign_1559(CAROL, 0), state)

    state.nonces[addr(ALICE)] = 2
    state.balances[addr(BOB)] = b0.cost - 1  # b1 still affordable on its own
    dropped = pool.on_new_head(state)
    assert dropped == [a[0].hash, a[1].hash, b0.hash]
    assert pool.pending() == [a[2], b1, c0]
    assert pool.pending_nonce(addr(ALICE), state) == 3
    assert pool.pending_nonce(addr(BOB), state) == 0  # b1 waits behind the gap
    assert pool.select(state, base_fee=BASE_FEE, gas_limit=GAS_LIMIT) == [a[2], c0]
    assert pool.on_new_head(state) == []

    # Restricting the re-check to some senders leaves the others alone.
    state.nonces[addr(CAROL)] = 1
    state.nonces[addr(ALICE)] = 3
    assert pool.on_new_head(state, senders=[addr(CAROL), addr(DAVE)]) == [c0.hash]
    assert a[2].hash in pool
    assert pool.on_new_head(state) == [a[2].hash]


def test_pending_nonce_with_gaps(pool: TxPool) -> None:
    state = rich_state(ALICE)
    assert pool.pending_nonce(addr(ALICE), state) == 0
    assert pool.pending_nonce(addr(BOB), DictState(nonces={addr(BOB): 7})) == 7
    for n in (0, 1, 3, 5, 6):
        add(pool, sign_1559(ALICE, n), state)
    assert pool.pending_nonce(addr(ALICE), state) == 2
    two = add(pool, sign_1559(ALICE, 2), state)
    assert pool.pending_nonce(addr(ALICE), state) == 4
    state.nonces[addr(ALICE)] = 2
    assert pool.pending_nonce(addr(ALICE), state) == 4
    state.nonces[addr(ALICE)] = 5
    assert pool.pending_nonce(addr(ALICE), state) == 7
    state.nonces[addr(ALICE)] = 9
    assert pool.pending_nonce(addr(ALICE), state) == 9
    state.nonces[addr(ALICE)] = 0
    pool.remove([two.hash, b"\x42" * 32])
    assert pool.pending_nonce(addr(ALICE), state) == 2
    assert [p.nonce for p in pool.sender_txs(addr(ALICE))] == [0, 1, 3, 5, 6]


def test_remove_all_of_a_sender_then_reuse(pool: TxPool) -> None:
    state = rich_state(ALICE)
    txs = [add(pool, sign_1559(ALICE, n), state) for n in range(3)]
    pool.remove(p.hash for p in txs)
    assert len(pool) == 0 and pool.sender_txs(addr(ALICE)) == []
    assert pool.select(state, base_fee=BASE_FEE, gas_limit=GAS_LIMIT) == []
    again = add(pool, txs[0].raw, state)  # the same bytes may come back once removed
    assert again.hash == txs[0].hash and again.received == 3


# ----------------------------------------------------------------- subscriptions


def test_subscribers_see_accepted_txs_only_and_a_failing_one_does_not_break_add(
    pool: TxPool,
) -> None:
    state = rich_state(ALICE)
    seen: list[PoolTx] = []

    def broken(_: PoolTx) -> None:
        raise RuntimeError("subscriber bug")

    record: Callable[[PoolTx], None] = seen.append
    pool.subscribe(broken)
    pool.subscribe(record)
    first = add(pool, sign_1559(ALICE, 0), state)
    with pytest.raises(TxPoolError):
        add(pool, sign_1559(ALICE, 0, chain_id=5), state)
    assert seen == [first] and first.hash in pool
    pool.unsubscribe(record)
    add(pool, sign_1559(ALICE, 1), state)
    assert seen == [first]


def test_constructor_rejects_nonsense_settings() -> None:
    with pytest.raises(ValueError):
        TxPool(0)
    with pytest.raises(ValueError):
        TxPool(CHAIN_ID, max_size=0)
    with pytest.raises(ValueError):
        TxPool(CHAIN_ID, price_bump_percent=-1)


# ----------------------------------------------------------------- volume


@pytest.mark.slow
def test_two_thousand_transactions_from_twenty_senders() -> None:
    senders = [_account(f"bulk-{i}") for i in range(20)]
    state = rich_state(*senders)
    pool = TxPool(CHAIN_ID)
    raws = {
        (i, n): sign_1559(acct, n, tip=(i + 1) * GWEI, max_fee=100 * GWEI)
        for n in range(100)
        for i, acct in enumerate(senders)
    }
    for raw in raws.values():  # interleaved: nonce 0 of everyone, then nonce 1, ...
        add(pool, raw, state)
    assert len(pool) == 2000
    for acct in senders:
        assert pool.pending_nonce(addr(acct), state) == 100

    chosen = pool.select(state, base_fee=BASE_FEE, gas_limit=2000 * 21_000)
    assert len(chosen) == 2000 and len({p.hash for p in chosen}) == 2000
    # Constant tip per sender: richest tipper first, each sender's txs in nonce order.
    expected = [keccak(raws[(i, n)]) for i in reversed(range(20)) for n in range(100)]
    assert [p.hash for p in chosen] == expected
    tips = [p.effective_tip(BASE_FEE) for p in chosen]
    assert tips == sorted(tips, reverse=True)

    half = pool.select(state, base_fee=BASE_FEE, gas_limit=1000 * 21_000)
    assert half == chosen[:1000]
