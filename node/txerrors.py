"""Errors raised by the transaction pool.

Messages reuse geth's wording wherever geth has one, because wallets, web3.py users and
operators already recognise (and sometimes match on) those strings.
"""

from __future__ import annotations

#: JSON-RPC "invalid params": the raw bytes are not a decodable transaction.
RPC_INVALID_PARAMS = -32602
#: JSON-RPC server error used by geth for every transaction-pool rejection.
RPC_SERVER_ERROR = -32000

ERR_OVERSIZED_DATA = "oversized data"
ERR_INVALID_ENCODING = "invalid transaction encoding"
ERR_TX_TYPE_NOT_SUPPORTED = "transaction type not supported"
ERR_INVALID_SENDER = "invalid sender"
ERR_INVALID_CHAIN_ID = "invalid chain id"
ERR_UNPROTECTED = "only replay-protected (EIP-155) transactions allowed"
ERR_ALREADY_KNOWN = "already known"
ERR_NONCE_MAX = "nonce has max value"
ERR_FEE_CAP_VERY_HIGH = "max fee per gas higher than 2^256-1"
ERR_TIP_VERY_HIGH = "max priority fee per gas higher than 2^256-1"
ERR_SET_CODE_CREATE = "EIP-7702 transaction cannot be used to create contract"
ERR_EMPTY_AUTH_LIST = "EIP-7702 transaction with empty auth list"
ERR_MAX_INITCODE_SIZE = "max initcode size exceeded"
ERR_INTRINSIC_GAS = "intrinsic gas too low"
ERR_FLOOR_DATA_GAS = "insufficient gas for floor data gas cost"
ERR_GAS_LIMIT = "exceeds block gas limit"
ERR_TIP_ABOVE_FEE_CAP = "max priority fee per gas higher than max fee per gas"
ERR_FEE_CAP_BELOW_BASE_FEE = "max fee per gas less than block base fee"
ERR_UNDERPRICED = "transaction underpriced"
ERR_NONCE_TOO_LOW = "nonce too low"
ERR_NONCE_TOO_HIGH = "nonce too high"
ERR_INSUFFICIENT_FUNDS = "insufficient funds for gas * price + value"
ERR_REPLACE_UNDERPRICED = "replacement transaction underpriced"
ERR_SENDER_LIMIT = "too many pending transactions for sender"
ERR_POOL_FULL = "txpool is full"
ERR_SENDER_NOT_PERMITTED = "sender account not permitted"


class TxPoolError(Exception):
    """A rejected transaction; `code` and `message` map straight onto a JSON-RPC error."""

    code: int
    message: str

    def __init__(self, message: str, code: int = RPC_SERVER_ERROR) -> None:
        super().__init__(message)
        self.message = message
        self.code = code

    def __repr__(self) -> str:
        return f"TxPoolError(code={self.code}, message={self.message!r})"
