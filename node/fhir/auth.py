"""Who is calling: EIP-191 signed requests and the short-lived bearer tokens they buy.

A signed request carries `X-Medledger-Address`, `X-Medledger-Timestamp` (unix seconds),
`X-Medledger-Nonce` and `X-Medledger-Signature`: an EIP-191 `personal_sign` signature over
`request_message(...)` (method, path with query, SHA-256 of the body, timestamp, nonce).
The timestamp must be within `max_skew` seconds of the node's clock and a nonce is accepted
once per address inside that window, so a captured request cannot be replayed.
`POST /auth/token` with a signed request returns a random bearer token valid `token_ttl`
seconds (automatic logoff); `DELETE /auth/token` ends it early.
"""

from __future__ import annotations

import hashlib
import secrets
import time
from dataclasses import dataclass

from eth_account import Account
from eth_account.messages import encode_defunct

from node.fhir.errors import unauthorized

HEADER_ADDRESS = "x-medledger-address"
HEADER_TIMESTAMP = "x-medledger-timestamp"
HEADER_NONCE = "x-medledger-nonce"
HEADER_SIGNATURE = "x-medledger-signature"


def request_message(method: str, target: str, body_sha256: str, timestamp: int, nonce: str) -> str:
    """The text a client signs (EIP-191 personal_sign) for one request."""
    return "\n".join(
        ["medledger-fhir-request/v1", method.upper(), target, body_sha256, str(timestamp), nonce]
    )


def sign_request(
    private_key: bytes, method: str, target: str, body: bytes, *, timestamp: int | None = None,
    nonce: str | None = None,
) -> dict[str, str]:
    """Headers for a signed request (used by clients and tests)."""
    ts = int(time.time()) if timestamp is None else timestamp
    nonce = nonce or secrets.token_hex(16)
    message = request_message(method, target, hashlib.sha256(body).hexdigest(), ts, nonce)
    signed = Account.sign_message(encode_defunct(text=message), private_key)
    return {
        "X-Medledger-Address": Account.from_key(private_key).address,
        "X-Medledger-Timestamp": str(ts),
        "X-Medledger-Nonce": nonce,
        "X-Medledger-Signature": "0x" + bytes(signed.signature).hex(),
    }


@dataclass(frozen=True)
class SignedRequest:
    address: bytes
    timestamp: int
    nonce: str
    signature: bytes


def parse_signed(headers: dict[str, str]) -> SignedRequest | None:
    """The signature headers, or None when the request carries none."""
    if HEADER_SIGNATURE not in headers:
        return None
    try:
        address = bytes.fromhex(headers[HEADER_ADDRESS].removeprefix("0x"))
        timestamp = int(headers[HEADER_TIMESTAMP])
        nonce = headers[HEADER_NONCE]
        signature = bytes.fromhex(headers[HEADER_SIGNATURE].removeprefix("0x"))
    except (KeyError, ValueError):
        raise unauthorized("incomplete or malformed X-Medledger-* signature headers") from None
    if len(address) != 20 or len(signature) != 65 or not 8 <= len(nonce) <= 128:
        raise unauthorized("malformed X-Medledger-* signature headers")
    return SignedRequest(address, timestamp, nonce, signature)


class Authenticator:
    """Checks signatures, remembers nonces, issues and expires bearer tokens."""

    def __init__(self, *, token_ttl: float, max_skew: float = 300.0) -> None:
        self.token_ttl = token_ttl
        self.max_skew = max_skew
        self._nonces: dict[tuple[bytes, str], float] = {}
        self._tokens: dict[str, tuple[bytes, float]] = {}

    def verify_signed(
        self, signed: SignedRequest, method: str, target: str, body_sha256: str
    ) -> bytes:
        now = time.time()
        if abs(now - signed.timestamp) > self.max_skew:
            raise unauthorized("request timestamp outside the allowed clock skew")
        message = request_message(method, target, body_sha256, signed.timestamp, signed.nonce)
        try:
            signer = Account.recover_message(encode_defunct(text=message),
                                             signature=signed.signature)
        except Exception:  # eth_account raises several types for a bad signature
            raise unauthorized("invalid request signature") from None
        if bytes.fromhex(signer[2:]) != signed.address:
            raise unauthorized("request signature does not match X-Medledger-Address")
        self._expire(now)
        key = (signed.address, signed.nonce)
        if key in self._nonces:
            raise unauthorized("replayed request (nonce already used)")
        self._nonces[key] = signed.timestamp + self.max_skew
        return signed.address

    def issue_token(self, address: bytes) -> tuple[str, int]:
        token = secrets.token_urlsafe(32)
        self._tokens[token] = (address, time.time() + self.token_ttl)
        return token, int(self.token_ttl)

    def token_address(self, token: str) -> bytes:
        entry = self._tokens.get(token)
        if entry is None or entry[1] <= time.time():
            self._tokens.pop(token, None)
            raise unauthorized("unknown or expired bearer token")
        return entry[0]

    def revoke_token(self, token: str) -> None:
        self._tokens.pop(token, None)

    def _expire(self, now: float) -> None:
        if len(self._nonces) > 1024:
            self._nonces = {k: v for k, v in self._nonces.items() if v > now - self.max_skew}
        if len(self._tokens) > 1024:
            self._tokens = {k: v for k, v in self._tokens.items() if v[1] > now}
