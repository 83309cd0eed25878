"""eth_call and eth_estimateGas on py-evm: read-only execution against a block's state.

Calls run in py-evm's costless state (gas price 0) on a snapshot that is
reverted afterwards, so they can never change stored state. Reverts become
JSON-RPC error 3 with the revert data, as geth reports them.
"""

from __future__ import annotations

from collections.abc import Mapping

from eth.abc import BlockHeaderAPI, ComputationAPI, SignedTransactionAPI, StateAPI
from eth.estimators.gas import binary_gas_search
from eth.exceptions import Revert, VMError
from eth.vm.spoof import SpoofTransaction
from eth_abi import decode as abi_decode
from eth_utils import ValidationError

from node.chain import Chain
from node.rpc.errors import EXECUTION_REVERTED, SERVER_ERROR, RpcError
from node.rpc.params import CallRequest, StateOverride

_ERROR_STRING_SELECTOR = bytes.fromhex("08c379a0")
_PANIC_SELECTOR = bytes.fromhex("4e487b71")
_ZERO_ADDRESS = b"\x00" * 20


def revert_error(output: bytes) -> RpcError:
    """The error geth returns for a reverted call: code 3, reason when readable, data always."""
    message = "execution reverted"
    try:
        if output[:4] == _ERROR_STRING_SELECTOR:
            (reason,) = abi_decode(["string"], output[4:])
            message = f"execution reverted: {reason}"
        elif output[:4] == _PANIC_SELECTOR:
            (code,) = abi_decode(["uint256"], output[4:])
            message = f"execution reverted: panic code 0x{code:x}"
    except Exception:  # undecodable revert data: keep the generic message, data tells all
        message = "execution reverted"
    return RpcError(EXECUTION_REVERTED, message, "0x" + output.hex())


def _apply_overrides(state: StateAPI, overrides: Mapping[bytes, StateOverride]) -> None:
    for address, override in overrides.items():
        if override.balance is not None:
            state.set_balance(address, override.balance)
        if override.nonce is not None:
            state.set_nonce(address, override.nonce)
        if override.code is not None:
            state.set_code(address, override.code)
        if override.state is not None:
            state.delete_storage(address)
            for slot, value in override.state.items():
                state.set_storage(address, slot, value)
        if override.state_diff is not None:
            for slot, value in override.state_diff.items():
                state.set_storage(address, slot, value)


def _spoof(
    state: StateAPI, vm_class: type, request: CallRequest, gas_limit: int
) -> SignedTransactionAPI:
    sender = request.from_ or _ZERO_ADDRESS
    gas = gas_limit if request.gas is None else min(request.gas, gas_limit)
    unsigned = vm_class.create_unsigned_transaction(
        nonce=state.get_nonce(sender),
        gas_price=0,
        gas=gas,
        to=request.to if request.to is not None else b"",
        value=request.value,
        data=request.data,
    )
    return SpoofTransaction(unsigned, from_=sender)


def _raise_if_failed(computation: ComputationAPI) -> None:
    if not computation.is_error:
        return
    error = computation.error
    if isinstance(error, Revert):
        raise revert_error(computation.output)
    raise RpcError(SERVER_ERROR, f"execution failed: {type(error).__name__} {error}".strip())


def call(
    chain: Chain,
    header: BlockHeaderAPI,
    request: CallRequest,
    overrides: Mapping[bytes, StateOverride] | None = None,
) -> bytes:
    """Execute a call on the state after `header`; return its output."""
    vm = chain.vm_at(header)
    with vm.in_costless_state() as state:
        if overrides:
            _apply_overrides(state, overrides)
        tx = _spoof(state, type(vm), request, state.gas_limit)
        if request.value and state.get_balance(tx.sender) < request.value:
            raise RpcError(SERVER_ERROR, "insufficient funds for gas * price + value")
        try:
            computation = state.costless_execute_transaction(tx)
        except ValidationError as exc:
            raise RpcError(SERVER_ERROR, str(exc)) from exc
        _raise_if_failed(computation)
        return computation.output


def estimate_gas(chain: Chain, header: BlockHeaderAPI, request: CallRequest) -> int:
    """Smallest gas limit that lets the transaction succeed (binary search, as py-evm's)."""
    vm = chain.vm_at(header)
    with vm.in_costless_state() as state:
        tx = _spoof(state, type(vm), request, state.gas_limit)
        if request.value and state.get_balance(tx.sender) < request.value:
            raise RpcError(SERVER_ERROR, "insufficient funds for gas * price + value")
        snapshot = state.snapshot()
        try:
            computation = state.costless_execute_transaction(tx)
        except ValidationError as exc:
            raise RpcError(SERVER_ERROR, str(exc)) from exc
        finally:
            state.revert(snapshot)
        _raise_if_failed(computation)
        try:
            return int(binary_gas_search(state, tx, tolerance=1))
        except VMError as exc:
            raise RpcError(SERVER_ERROR, f"gas required exceeds allowance ({exc})") from exc
