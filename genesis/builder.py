"""Build a fresh consortium genesis together with newly generated validator keys."""

from __future__ import annotations

import secrets
from collections.abc import Callable, Mapping, Sequence

from eth_keys import keys
from eth_keys.constants import SECPK1_N
from eth_utils import to_checksum_address

from genesis.schema import AllocAccount, Genesis, GenesisError, QbftParams, at_path
from genesis.system import Member, default_setup, system_alloc


def generate_private_key() -> bytes:
    """A uniformly random secp256k1 private key from the OS CSPRNG."""
    while True:
        candidate = secrets.token_bytes(32)
        if 0 < int.from_bytes(candidate, "big") < SECPK1_N:
            return candidate


def private_key_to_address(private_key: bytes) -> bytes:
    """The 20-byte canonical address controlled by `private_key`."""
    return keys.PrivateKey(private_key).public_key.to_canonical_address()


def new_consortium(
    n_validators: int,
    *,
    chain_id: int = 1337,
    block_period_seconds: int = 1,
    empty_block_period_seconds: int = 10,
    prefund: Mapping[bytes, int] | None = None,
    validator_balance: int = 10**24,
    alloc: Mapping[bytes, AllocAccount] | None = None,
    system_contracts: Mapping[str, bytes] | None = None,
    predeploy_system: bool = False,
    members: Sequence[Member] | None = None,
) -> tuple[Genesis, list[bytes]]:
    """A genesis with `n_validators` fresh validators (in generation order) and their keys.

    Validators get `validator_balance` wei each, `prefund` accounts get their balances, and
    `alloc` / `system_contracts` let callers pre-deploy contracts. An address may appear only once
    across validators, `prefund`, `alloc` and the system contracts, so that nothing is silently
    overwritten.

    With `predeploy_system`, the system contracts (genesis/system.py) are predeployed: `members`
    found the consortium (default: one member per validator, administered by the validator
    address), the validators are the allowed nodes, and validators plus prefunded accounts are
    the explicitly allowed accounts.
    """
    if isinstance(n_validators, bool) or not isinstance(n_validators, int) or n_validators < 1:
        raise GenesisError(f"must be a positive integer, got {n_validators!r}", "n_validators")
    private_keys = [generate_private_key() for _ in range(n_validators)]
    validators = tuple(private_key_to_address(k) for k in private_keys)

    accounts: dict[bytes, AllocAccount] = {}
    sources: dict[bytes, str] = {}

    def add(address: bytes, source: str, make: Callable[[], AllocAccount]) -> None:
        if not isinstance(address, bytes) or len(address) != 20:
            raise GenesisError(f"must be a 20-byte address, got {address!r}", source)
        path = f"{source}.{to_checksum_address(address)}"
        if address in accounts:
            raise GenesisError(f"already allocated by {sources[address]}", path)
        with at_path(path):
            accounts[address] = make()
        sources[address] = source

    for address in validators:
        add(address, "validators", lambda: AllocAccount(balance=validator_balance))
    for address, balance in (prefund or {}).items():
        add(address, "prefund", lambda balance=balance: AllocAccount(balance=balance))
    for address, account in (alloc or {}).items():
        add(address, "alloc", lambda account=account: account)
    names = dict(system_contracts or {})
    if predeploy_system:
        setup = default_setup(
            validators, members=members, accounts=[*validators, *(prefund or {})]
        )
        system_accounts, system_names = system_alloc(setup)
        for address, account in system_accounts.items():
            add(address, "systemContracts", lambda account=account: account)
        for name, address in system_names.items():
            if name in names:
                raise GenesisError("already given in system_contracts", f"systemContracts.{name}")
            names[name] = address
    elif members is not None:
        raise GenesisError("members need predeploy_system=True", "members")

    with at_path("qbft"):
        qbft = QbftParams(
            block_period_seconds=block_period_seconds,
            empty_block_period_seconds=empty_block_period_seconds,
        )
    genesis = Genesis(
        chain_id=chain_id,
        validators=validators,
        qbft=qbft,
        alloc=accounts,
        system_contracts=names,
    )
    return genesis, private_keys
