"""The eth_, net_ and web3_ JSON-RPC methods over the node's chain and txpool.

Handlers parse parameters on the event loop, then run chain work through the
`ChainWorker` (one thread owns py-evm). Results are formatted like geth's, so
web3.py and ethers.js work unchanged.
"""

from __future__ import annotations

import platform
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from importlib.metadata import version
from typing import Any

from eth.abc import BlockAPI, BlockHeaderAPI
from eth_bloom import BloomFilter

from node.chain import Chain
from node.logindex import LogIndex
from node.rpc import execution
from node.rpc import formatters as fmt
from node.rpc.dispatch import CallContext, Dispatcher
from node.rpc.errors import LIMIT_EXCEEDED, SERVER_ERROR, RpcError, invalid_params
from node.rpc.filters import FilterManager
from node.rpc.params import (
    LogFilter,
    expect_params,
    log_matches,
    parse_address,
    parse_block_id,
    parse_block_number,
    parse_bool,
    parse_call_request,
    parse_data,
    parse_hash,
    parse_log_filter,
    parse_quantity,
    parse_state_override,
    parse_storage_slot,
)
from node.rpc.subscriptions import SubscriptionHub
from node.txpool import PoolTx, TxPool, TxPoolError
from node.worker import ChainWorker

Handler = Callable[[list[Any], CallContext], Awaitable[Any]]


@dataclass(frozen=True)
class EthApiConfig:
    max_log_block_range: int = 10_000
    max_log_results: int = 10_000
    max_fee_history_blocks: int = 1024
    min_priority_fee: int = 0


def client_version() -> str:
    return (
        f"medledger/v{version('medledger')}/{platform.system().lower()}-"
        f"{platform.machine()}/python{platform.python_version()}"
    )


class StateReader:
    """The txpool's view of the head state (nonce and balance)."""

    def __init__(self, chain: Chain) -> None:
        self._state = chain.state_at(chain.head)

    def get_nonce(self, address: bytes) -> int:
        return self._state.get_nonce(address)

    def get_balance(self, address: bytes) -> int:
        return self._state.get_balance(address)


class EthApi:
    """Registers the Ethereum methods on a dispatcher; also publishes chain events."""

    def __init__(
        self,
        chain: Chain,
        txpool: TxPool,
        worker: ChainWorker,
        filters: FilterManager,
        hub: SubscriptionHub,
        config: EthApiConfig | None = None,
        peer_count: Callable[[], int] = lambda: 0,
        log_index: LogIndex | None = None,
    ) -> None:
        self.chain = chain
        self.log_index = log_index  # None: eth_getLogs scans the blocks
        self.txpool = txpool
        self.worker = worker
        self.filters = filters
        self.hub = hub
        self.config = config or EthApiConfig()
        self._peer_count = peer_count
        self._client_version = client_version()

    # -- registration ----------------------------------------------------------------------

    def install(self, dispatcher: Dispatcher) -> None:
        methods: dict[str, Handler] = {
            "web3_clientVersion": self.web3_client_version,
            "web3_sha3": self.web3_sha3,
            "net_version": self.net_version,
            "net_listening": self.net_listening,
            "net_peerCount": self.net_peer_count,
            "eth_chainId": self.eth_chain_id,
            "eth_syncing": self.eth_syncing,
            "eth_accounts": self.eth_accounts,
            "eth_blockNumber": self.eth_block_number,
            "eth_getBlockByNumber": self.eth_get_block_by_number,
            "eth_getBlockByHash": self.eth_get_block_by_hash,
            "eth_getBlockTransactionCountByNumber": self.eth_get_block_tx_count_by_number,
            "eth_getBlockTransactionCountByHash": self.eth_get_block_tx_count_by_hash,
            "eth_getTransactionByHash": self.eth_get_transaction_by_hash,
            "eth_getTransactionByBlockNumberAndIndex": self.eth_get_tx_by_number_and_index,
            "eth_getTransactionByBlockHashAndIndex": self.eth_get_tx_by_hash_and_index,
            "eth_getTransactionReceipt": self.eth_get_transaction_receipt,
            "eth_getBlockReceipts": self.eth_get_block_receipts,
            "eth_getTransactionCount": self.eth_get_transaction_count,
            "eth_getBalance": self.eth_get_balance,
            "eth_getCode": self.eth_get_code,
            "eth_getStorageAt": self.eth_get_storage_at,
            "eth_call": self.eth_call,
            "eth_estimateGas": self.eth_estimate_gas,
            "eth_gasPrice": self.eth_gas_price,
            "eth_maxPriorityFeePerGas": self.eth_max_priority_fee,
            "eth_feeHistory": self.eth_fee_history,
            "eth_sendRawTransaction": self.eth_send_raw_transaction,
            "eth_getLogs": self.eth_get_logs,
            "eth_newFilter": self.eth_new_filter,
            "eth_newBlockFilter": self.eth_new_block_filter,
            "eth_newPendingTransactionFilter": self.eth_new_pending_filter,
            "eth_getFilterChanges": self.eth_get_filter_changes,
            "eth_getFilterLogs": self.eth_get_filter_logs,
            "eth_uninstallFilter": self.eth_uninstall_filter,
        }
        for name, handler in methods.items():
            dispatcher.register(name, handler)
        self.hub.register_kind("newHeads", self._new_heads_matcher)
        self.hub.register_kind("logs", self._logs_matcher)
        self.hub.register_kind("newPendingTransactions", self._pending_matcher)
        self.hub.install(dispatcher)

    # -- events from the producer / importer (called on the trio thread) -------------------

    def publish_block(self, block: BlockAPI, logs: list[dict[str, Any]]) -> None:
        header_json = fmt.format_header(block.header)
        self.hub.publish("newHeads", header_json)
        self.filters.push("block", "0x" + block.hash.hex())
        if logs:
            self.hub.publish("logs", logs)
            self.filters.push("logs", logs)

    def publish_pending(self, tx_hash: bytes) -> None:
        self.hub.publish("newPendingTransactions", "0x" + tx_hash.hex())
        self.filters.push("pending", "0x" + tx_hash.hex())

    def block_logs(self, block: BlockAPI) -> list[dict[str, Any]]:
        """Formatted logs of a block (worker thread)."""
        return self._logs_of_block(block, None)

    @staticmethod
    def _new_heads_matcher(params: list[Any]) -> Callable[[Any], list[Any]]:
        if params:
            raise invalid_params("newHeads takes no parameters")
        return lambda header: [header]

    @staticmethod
    def _pending_matcher(params: list[Any]) -> Callable[[Any], list[Any]]:
        if params and params != [False]:
            raise invalid_params("full pending transaction objects are not supported")
        return lambda tx_hash: [tx_hash]

    @staticmethod
    def _logs_matcher(params: list[Any]) -> Callable[[Any], list[Any]]:
        if len(params) > 1:
            raise invalid_params("too many arguments, want at most 2")
        criteria = parse_log_filter(params[0] if params else {}, 1)
        if criteria.block_hash is not None or criteria.from_block is not None or (
            criteria.to_block is not None
        ):
            raise invalid_params("logs subscriptions take only address and topics")
        return lambda logs: [log for log in logs if _json_log_matches(criteria, log)]

    # -- block resolution (worker thread) --------------------------------------------------

    def _header_for(self, block_id: Any, *, required: bool = True) -> BlockHeaderAPI | None:
        if isinstance(block_id, bytes):
            header = self.chain.header_by_hash(block_id)
        elif block_id in ("latest", "pending", "safe", "finalized"):
            header = self.chain.head
        elif block_id == "earliest":
            header = self.chain.header_by_number(0)
        else:
            header = self.chain.header_by_number(int(block_id))
        if header is None and required:
            raise RpcError(SERVER_ERROR, "header not found")
        return header

    def _state_header(self, params: list[Any], index: int) -> BlockHeaderAPI:
        block_id = "latest" if params[index] is None else parse_block_id(params[index], index)
        header = self._header_for(block_id)
        assert header is not None
        return header

    # -- web3_ / net_ ----------------------------------------------------------------------

    async def web3_client_version(self, params: list[Any], ctx: CallContext) -> str:
        expect_params(params, 0, 0)
        return self._client_version

    async def web3_sha3(self, params: list[Any], ctx: CallContext) -> str:
        (value,) = expect_params(params, 1, 1)
        from eth_utils import keccak

        return "0x" + keccak(parse_data(value, 0)).hex()

    async def net_version(self, params: list[Any], ctx: CallContext) -> str:
        expect_params(params, 0, 0)
        return str(self.chain.chain_id)

    async def net_listening(self, params: list[Any], ctx: CallContext) -> bool:
        expect_params(params, 0, 0)
        return True

    async def net_peer_count(self, params: list[Any], ctx: CallContext) -> str:
        expect_params(params, 0, 0)
        return fmt.quantity(self._peer_count())

    # -- chain data ------------------------------------------------------------------------

    async def eth_chain_id(self, params: list[Any], ctx: CallContext) -> str:
        expect_params(params, 0, 0)
        return fmt.quantity(self.chain.chain_id)

    async def eth_syncing(self, params: list[Any], ctx: CallContext) -> bool:
        expect_params(params, 0, 0)
        return False

    async def eth_accounts(self, params: list[Any], ctx: CallContext) -> list[str]:
        expect_params(params, 0, 0)
        return []

    async def eth_block_number(self, params: list[Any], ctx: CallContext) -> str:
        expect_params(params, 0, 0)
        return fmt.quantity(await self.worker.run(lambda: self.chain.head.block_number))

    async def eth_get_block_by_number(self, params: list[Any], ctx: CallContext) -> Any:
        block_id, full = expect_params(params, 2, 2)
        parsed = parse_block_number(block_id, 0)
        full_txs = parse_bool(full, 1)

        def work() -> Any:
            header = self._header_for(parsed, required=False)
            if header is None:
                return None
            return fmt.format_block(self.chain.block_by_header(header), full_transactions=full_txs)

        return await self.worker.run(work)

    async def eth_get_block_by_hash(self, params: list[Any], ctx: CallContext) -> Any:
        block_hash, full = expect_params(params, 2, 2)
        parsed = parse_hash(block_hash, 0)
        full_txs = parse_bool(full, 1)

        def work() -> Any:
            block = self.chain.block_by_hash(parsed)
            return None if block is None else fmt.format_block(block, full_transactions=full_txs)

        return await self.worker.run(work)

    async def _block_from_param(self, value: Any, by_hash: bool) -> BlockAPI | None:
        parsed: Any = parse_hash(value, 0) if by_hash else parse_block_id(value, 0)

        def work() -> BlockAPI | None:
            if by_hash:
                return self.chain.block_by_hash(parsed)
            header = self._header_for(parsed, required=False)
            return None if header is None else self.chain.block_by_header(header)

        return await self.worker.run(work)

    async def eth_get_block_tx_count_by_number(self, params: list[Any], ctx: CallContext) -> Any:
        (block_id,) = expect_params(params, 1, 1)
        block = await self._block_from_param(block_id, by_hash=False)
        return None if block is None else fmt.quantity(len(block.transactions))

    async def eth_get_block_tx_count_by_hash(self, params: list[Any], ctx: CallContext) -> Any:
        (block_hash,) = expect_params(params, 1, 1)
        block = await self._block_from_param(block_hash, by_hash=True)
        return None if block is None else fmt.quantity(len(block.transactions))

    def _format_tx_in_block(self, block: BlockAPI, index: int) -> dict[str, Any] | None:
        if index >= len(block.transactions):
            return None
        return fmt.format_transaction(
            block.transactions[index],
            block_hash=block.hash,
            block_number=block.number,
            index=index,
            base_fee=block.header.base_fee_per_gas,
        )

    async def eth_get_tx_by_number_and_index(self, params: list[Any], ctx: CallContext) -> Any:
        block_id, index = expect_params(params, 2, 2)
        position = parse_quantity(index, 1)
        block = await self._block_from_param(block_id, by_hash=False)
        return None if block is None else self._format_tx_in_block(block, position)

    async def eth_get_tx_by_hash_and_index(self, params: list[Any], ctx: CallContext) -> Any:
        block_hash, index = expect_params(params, 2, 2)
        position = parse_quantity(index, 1)
        block = await self._block_from_param(block_hash, by_hash=True)
        return None if block is None else self._format_tx_in_block(block, position)

    async def eth_get_transaction_by_hash(self, params: list[Any], ctx: CallContext) -> Any:
        (tx_hash,) = expect_params(params, 1, 1)
        parsed = parse_hash(tx_hash, 0)

        def work() -> Any:
            location = self.chain.transaction_location(parsed)
            if location is not None:
                block = self.chain.block_by_number(location[0])
                if block is not None:
                    return self._format_tx_in_block(block, location[1])
            pooled = self.txpool.get(parsed)
            if pooled is None:
                return None
            return fmt.format_transaction(
                pooled.tx, block_hash=None, block_number=None, index=None, base_fee=None
            )

        return await self.worker.run(work)

    def _receipts_json(self, block: BlockAPI) -> list[dict[str, Any]]:
        receipts = self.chain.receipts(block)
        base_fee = block.header.base_fee_per_gas
        results: list[dict[str, Any]] = []
        previous_cumulative = 0
        log_index = 0
        for index, (tx, receipt) in enumerate(zip(block.transactions, receipts, strict=True)):
            effective_price = fmt.effective_gas_price(tx, base_fee)
            created = (
                fmt.contract_address_for(tx.sender, tx.nonce) if not tx.to else None
            )
            results.append(fmt.format_receipt(
                receipt,
                tx,
                block_hash=block.hash,
                block_number=block.number,
                index=index,
                gas_used=receipt.gas_used - previous_cumulative,
                log_index_start=log_index,
                effective_gas_price=effective_price,
                contract_address=created,
            ))
            previous_cumulative = receipt.gas_used
            log_index += len(receipt.logs)
        return results

    async def eth_get_transaction_receipt(self, params: list[Any], ctx: CallContext) -> Any:
        (tx_hash,) = expect_params(params, 1, 1)
        parsed = parse_hash(tx_hash, 0)

        def work() -> Any:
            location = self.chain.transaction_location(parsed)
            if location is None:
                return None
            block = self.chain.block_by_number(location[0])
            if block is None:
                return None
            return self._receipts_json(block)[location[1]]

        return await self.worker.run(work)

    async def eth_get_block_receipts(self, params: list[Any], ctx: CallContext) -> Any:
        (block_id,) = expect_params(params, 1, 1)
        parsed = parse_block_id(block_id, 0)

        def work() -> Any:
            header = self._header_for(parsed, required=False)
            return None if header is None else self._receipts_json(
                self.chain.block_by_header(header)
            )

        return await self.worker.run(work)

    # -- state -----------------------------------------------------------------------------

    async def eth_get_transaction_count(self, params: list[Any], ctx: CallContext) -> str:
        params = expect_params(params, 1, 2)
        address = parse_address(params[0], 0)
        pending = params[1] == "pending"

        def work() -> int:
            if pending:
                return self.txpool.pending_nonce(address, StateReader(self.chain))
            return self.chain.state_at(self._state_header(params, 1)).get_nonce(address)

        return fmt.quantity(await self.worker.run(work))

    async def eth_get_balance(self, params: list[Any], ctx: CallContext) -> str:
        params = expect_params(params, 1, 2)
        address = parse_address(params[0], 0)
        return fmt.quantity(await self.worker.run(
            lambda: self.chain.state_at(self._state_header(params, 1)).get_balance(address)
        ))

    async def eth_get_code(self, params: list[Any], ctx: CallContext) -> str:
        params = expect_params(params, 1, 2)
        address = parse_address(params[0], 0)
        return fmt.data(await self.worker.run(
            lambda: self.chain.state_at(self._state_header(params, 1)).get_code(address)
        ))

    async def eth_get_storage_at(self, params: list[Any], ctx: CallContext) -> str:
        params = expect_params(params, 2, 3)
        address = parse_address(params[0], 0)
        slot = parse_storage_slot(params[1], 1)
        value = await self.worker.run(
            lambda: self.chain.state_at(self._state_header(params, 2)).get_storage(address, slot)
        )
        return fmt.data(value.to_bytes(32, "big"))

    async def eth_call(self, params: list[Any], ctx: CallContext) -> str:
        params = expect_params(params, 1, 3)
        request = parse_call_request(params[0], 0)
        overrides = parse_state_override(params[2], 2) if params[2] is not None else None

        def work() -> bytes:
            return execution.call(self.chain, self._state_header(params, 1), request, overrides)

        return fmt.data(await self.worker.run(work))

    async def eth_estimate_gas(self, params: list[Any], ctx: CallContext) -> str:
        params = expect_params(params, 1, 2)
        request = parse_call_request(params[0], 0)

        def work() -> int:
            return execution.estimate_gas(self.chain, self._state_header(params, 1), request)

        return fmt.quantity(await self.worker.run(work))

    # -- fees ------------------------------------------------------------------------------

    def _next_base_fee(self) -> int:
        return int(self.chain.pending_header(int(time.time())).base_fee_per_gas)

    async def eth_gas_price(self, params: list[Any], ctx: CallContext) -> str:
        expect_params(params, 0, 0)
        base_fee = await self.worker.run(self._next_base_fee)
        return fmt.quantity(base_fee + self.config.min_priority_fee)

    async def eth_max_priority_fee(self, params: list[Any], ctx: CallContext) -> str:
        expect_params(params, 0, 0)
        return fmt.quantity(self.config.min_priority_fee)

    async def eth_fee_history(self, params: list[Any], ctx: CallContext) -> Any:
        params = expect_params(params, 2, 3)
        count = parse_quantity(params[0], 0) if not isinstance(params[0], int) else params[0]
        newest = parse_block_id(params[1], 1)
        percentiles: list[float] = []
        if params[2] is not None:
            if not isinstance(params[2], list) or not all(
                isinstance(p, int | float) and not isinstance(p, bool) and 0 <= p <= 100
                for p in params[2]
            ):
                raise invalid_params("invalid argument 2: percentiles must be numbers in [0, 100]")
            percentiles = [float(p) for p in params[2]]
            if percentiles != sorted(percentiles):
                raise invalid_params("invalid argument 2: percentiles must be ascending")
        count = min(count, self.config.max_fee_history_blocks)

        def work() -> Any:
            newest_header = self._header_for(newest)
            assert newest_header is not None
            last = newest_header.block_number
            first = max(0, last - count + 1)
            base_fees: list[str] = []
            ratios: list[float] = []
            rewards: list[list[str]] = []
            for number in range(first, last + 1) if count else ():
                block = self.chain.block_or_raise(number)
                header = block.header
                base_fees.append(fmt.quantity(header.base_fee_per_gas))
                ratios.append(header.gas_used / header.gas_limit if header.gas_limit else 0.0)
                if percentiles:
                    rewards.append(self._block_rewards(block, percentiles))
            next_fee = self.chain.pending_header(int(time.time())).base_fee_per_gas if (
                count and last == self.chain.head.block_number
            ) else (
                self.chain.block_or_raise(last + 1).header.base_fee_per_gas if count else 0
            )
            result: dict[str, Any] = {
                "oldestBlock": fmt.quantity(first if count else last),
                "baseFeePerGas": [*base_fees, fmt.quantity(next_fee)] if count else [],
                "gasUsedRatio": ratios,
            }
            if percentiles:
                result["reward"] = rewards
            return result

        return await self.worker.run(work)

    def _block_rewards(self, block: BlockAPI, percentiles: list[float]) -> list[str]:
        base_fee = block.header.base_fee_per_gas
        if not block.transactions:
            return [fmt.quantity(0) for _ in percentiles]
        receipts = self.chain.receipts(block)
        tips: list[tuple[int, int]] = []
        previous = 0
        for tx, receipt in zip(block.transactions, receipts, strict=True):
            tip = fmt.effective_gas_price(tx, base_fee) - base_fee
            tips.append((tip, receipt.gas_used - previous))
            previous = receipt.gas_used
        tips.sort()
        total = sum(gas for _, gas in tips) or 1
        out: list[str] = []
        for p in percentiles:
            threshold = total * p / 100
            cumulative = 0
            chosen = tips[-1][0]
            for tip, gas in tips:
                cumulative += gas
                if cumulative >= threshold:
                    chosen = tip
                    break
            out.append(fmt.quantity(chosen))
        return out

    # -- transactions ----------------------------------------------------------------------

    async def eth_send_raw_transaction(self, params: list[Any], ctx: CallContext) -> str:
        (raw_hex,) = expect_params(params, 1, 1)
        raw = parse_data(raw_hex, 0, max_bytes=self.txpool.max_tx_bytes)

        def work() -> PoolTx:
            head = self.chain.head
            base_fee = self._next_base_fee()
            return self.txpool.add(
                raw, StateReader(self.chain), block_gas_limit=head.gas_limit, base_fee=base_fee
            )

        try:
            pooled = await self.worker.run(work)
        except TxPoolError as exc:
            raise RpcError(exc.code, exc.message) from exc
        self.publish_pending(pooled.hash)
        return "0x" + pooled.hash.hex()

    # -- logs and filters ------------------------------------------------------------------

    def _logs_of_block(self, block: BlockAPI, criteria: LogFilter | None) -> list[dict[str, Any]]:
        if criteria is not None and not _bloom_may_match(block.header.bloom, criteria):
            return []
        logs: list[dict[str, Any]] = []
        log_index = 0
        for index, (tx, receipt) in enumerate(
            zip(block.transactions, self.chain.receipts(block), strict=True)
        ):
            for log in receipt.logs:
                topics = [topic.to_bytes(32, "big") for topic in log.topics]
                if criteria is None or log_matches(criteria, log.address, topics):
                    logs.append(fmt.format_log(
                        log,
                        block_hash=block.hash,
                        block_number=block.number,
                        tx_hash=tx.hash,
                        tx_index=index,
                        log_index=log_index,
                    ))
                log_index += 1
        return logs

    def _range_for(self, criteria: LogFilter) -> tuple[int, int]:
        head = self.chain.head.block_number

        def resolve(tag: Any, default: int) -> int:
            if tag is None or tag in ("latest", "pending", "safe", "finalized"):
                return default if tag is None else head
            if tag == "earliest":
                return 0
            return int(tag)

        first = resolve(criteria.from_block, head)
        last = resolve(criteria.to_block, head)
        if first > last:
            raise invalid_params("invalid block range params")
        # The cap applies to the range asked for, so a client learns the limit before the
        # chain grows into it.
        if last - first + 1 > self.config.max_log_block_range:
            raise RpcError(
                LIMIT_EXCEEDED,
                f"query exceeds max block range {self.config.max_log_block_range}",
            )
        return first, min(last, head)

    def _query_logs(self, criteria: LogFilter) -> list[dict[str, Any]]:
        if criteria.block_hash is not None:
            block = self.chain.block_by_hash(criteria.block_hash)
            if block is None:
                raise RpcError(SERVER_ERROR, "unknown block")
            return self._logs_of_block(block, criteria)
        first, last = self._range_for(criteria)
        results: list[dict[str, Any]] = []
        if self.log_index is not None:
            # The index answers for the blocks it covers; blocks past its head are scanned.
            answer = self.log_index.query(criteria, first, last, self.config.max_log_results + 1)
            results, first = answer.logs, max(first, answer.through + 1)
            self._check_log_count(results)
        for number in range(first, last + 1):
            header = self.chain.header_by_number(number)
            if header is None or not _bloom_may_match(header.bloom, criteria):
                continue
            results.extend(self._logs_of_block(self.chain.block_by_header(header), criteria))
            self._check_log_count(results)
        return results

    def _check_log_count(self, results: list[dict[str, Any]]) -> None:
        if len(results) > self.config.max_log_results:
            raise RpcError(
                LIMIT_EXCEEDED,
                f"query returned more than {self.config.max_log_results} results",
            )

    async def eth_get_logs(self, params: list[Any], ctx: CallContext) -> list[dict[str, Any]]:
        (value,) = expect_params(params, 1, 1)
        criteria = parse_log_filter(value, 0)
        return await self.worker.run(self._query_logs, criteria)

    async def eth_new_filter(self, params: list[Any], ctx: CallContext) -> str:
        (value,) = expect_params(params, 1, 1)
        criteria = parse_log_filter(value, 0)
        if criteria.block_hash is None:
            await self.worker.run(self._validate_filter_range, criteria)

        def matcher(logs: list[dict[str, Any]]) -> list[Any]:
            return [log for log in logs if _json_log_matches(criteria, log)
                    and _in_filter_range(criteria, log)]

        return self.filters.install("logs", matcher, meta=criteria)

    def _validate_filter_range(self, criteria: LogFilter) -> None:
        numeric = [t for t in (criteria.from_block, criteria.to_block) if isinstance(t, int)]
        if len(numeric) == 2 and numeric[0] > numeric[1]:
            raise invalid_params("invalid block range params")

    async def eth_new_block_filter(self, params: list[Any], ctx: CallContext) -> str:
        expect_params(params, 0, 0)
        return self.filters.install("block", lambda block_hash: [block_hash])

    async def eth_new_pending_filter(self, params: list[Any], ctx: CallContext) -> str:
        expect_params(params, 0, 1)
        return self.filters.install("pending", lambda tx_hash: [tx_hash])

    async def eth_get_filter_changes(self, params: list[Any], ctx: CallContext) -> list[Any]:
        (filter_id,) = expect_params(params, 1, 1)
        if not isinstance(filter_id, str):
            raise invalid_params("invalid argument 0: filter id must be a string")
        return self.filters.changes(filter_id)

    async def eth_get_filter_logs(self, params: list[Any], ctx: CallContext) -> list[Any]:
        (filter_id,) = expect_params(params, 1, 1)
        if not isinstance(filter_id, str):
            raise invalid_params("invalid argument 0: filter id must be a string")
        entry = self.filters.get(filter_id)
        if entry.kind != "logs":
            raise RpcError(SERVER_ERROR, "filter not found")
        return await self.worker.run(self._query_logs, entry.meta)

    async def eth_uninstall_filter(self, params: list[Any], ctx: CallContext) -> bool:
        (filter_id,) = expect_params(params, 1, 1)
        if not isinstance(filter_id, str):
            raise invalid_params("invalid argument 0: filter id must be a string")
        return self.filters.uninstall(filter_id)


def _bloom_may_match(bloom: int, criteria: LogFilter) -> bool:
    bloom_filter = BloomFilter(bloom)
    if criteria.addresses and not any(a in bloom_filter for a in criteria.addresses):
        return False
    for position in criteria.topics:
        if position and not any(topic in bloom_filter for topic in position):
            return False
    return True


def _json_log_matches(criteria: LogFilter, log: dict[str, Any]) -> bool:
    address = bytes.fromhex(log["address"][2:])
    topics = [bytes.fromhex(t[2:]) for t in log["topics"]]
    return log_matches(criteria, address, topics)


def _in_filter_range(criteria: LogFilter, log: dict[str, Any]) -> bool:
    number = int(log["blockNumber"], 16)
    if isinstance(criteria.from_block, int) and number < criteria.from_block:
        return False
    return not (isinstance(criteria.to_block, int) and number > criteria.to_block)
