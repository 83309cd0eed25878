"""The qbft_ JSON-RPC namespace (Besu-compatible names): validator sets, votes, signers."""

from __future__ import annotations

from typing import Any

from consensus.extradata import QbftExtraData
from node.chain import Chain
from node.rpc import formatters as fmt
from node.rpc.dispatch import CallContext, Dispatcher
from node.rpc.errors import SERVER_ERROR, RpcError, invalid_params
from node.rpc.params import expect_params, parse_address, parse_block_number, parse_bool, parse_hash
from node.validators import PendingVotes
from node.worker import ChainWorker

DEFAULT_SIGNER_METRICS_BLOCKS = 100
MAX_SIGNER_METRICS_BLOCKS = 10_000


class QbftApi:
    def __init__(self, chain: Chain, worker: ChainWorker, votes: PendingVotes) -> None:
        self.chain = chain
        self.worker = worker
        self.votes = votes

    def install(self, dispatcher: Dispatcher) -> None:
        dispatcher.register("qbft_getValidatorsByBlockNumber", self.validators_by_number)
        dispatcher.register("qbft_getValidatorsByBlockHash", self.validators_by_hash)
        dispatcher.register("qbft_proposeValidatorVote", self.propose_vote)
        dispatcher.register("qbft_discardValidatorVote", self.discard_vote)
        dispatcher.register("qbft_getPendingVotes", self.pending_votes)
        dispatcher.register("qbft_getSignerMetrics", self.signer_metrics)

    def _resolve(self, tag: Any) -> int:
        head = self.chain.head.block_number
        if tag in ("latest", "pending", "safe", "finalized"):
            return head
        if tag == "earliest":
            return 0
        return int(tag)

    async def validators_by_number(self, params: list[Any], ctx: CallContext) -> list[str]:
        (value,) = expect_params(params, 1, 1)
        tag = parse_block_number(value, 0)

        def work() -> list[str]:
            header = self.chain.header_by_number(self._resolve(tag))
            if header is None:
                raise RpcError(SERVER_ERROR, "header not found")
            return [fmt.address(v) for v in QbftExtraData.decode(header.extra_data).validators]

        return await self.worker.run(work)

    async def validators_by_hash(self, params: list[Any], ctx: CallContext) -> list[str]:
        (value,) = expect_params(params, 1, 1)
        block_hash = parse_hash(value, 0)

        def work() -> list[str]:
            header = self.chain.header_by_hash(block_hash)
            if header is None:
                raise RpcError(SERVER_ERROR, "header not found")
            return [fmt.address(v) for v in QbftExtraData.decode(header.extra_data).validators]

        return await self.worker.run(work)

    async def propose_vote(self, params: list[Any], ctx: CallContext) -> bool:
        address_value, add_value = expect_params(params, 2, 2)
        address = parse_address(address_value, 0)
        add = parse_bool(add_value, 1)
        self.votes.propose(address, add)
        return True

    async def discard_vote(self, params: list[Any], ctx: CallContext) -> bool:
        (address_value,) = expect_params(params, 1, 1)
        return self.votes.discard(parse_address(address_value, 0))

    async def pending_votes(self, params: list[Any], ctx: CallContext) -> dict[str, bool]:
        expect_params(params, 0, 0)
        return {fmt.address(a): add for a, add in self.votes.as_dict().items()}

    async def signer_metrics(self, params: list[Any], ctx: CallContext) -> list[dict[str, Any]]:
        params = expect_params(params, 0, 2)
        first_tag = parse_block_number(params[0], 0) if params[0] is not None else None
        last_tag = parse_block_number(params[1], 1) if params[1] is not None else "latest"

        def work() -> list[dict[str, Any]]:
            last = min(self._resolve(last_tag), self.chain.head.block_number)
            first = (
                max(1, last - DEFAULT_SIGNER_METRICS_BLOCKS + 1) if first_tag is None
                else max(1, self._resolve(first_tag))
            )
            if first > last + 1:
                raise invalid_params("invalid block range params")
            if last - first + 1 > MAX_SIGNER_METRICS_BLOCKS:
                raise invalid_params(f"range exceeds {MAX_SIGNER_METRICS_BLOCKS} blocks")
            proposed: dict[bytes, list[int]] = {}
            head = self.chain.head
            for validator in self.chain.validators_after(head):
                proposed.setdefault(validator, [0, 0])
            for number in range(first, last + 1):
                header = self.chain.header_by_number(number)
                if header is None:
                    break
                entry = proposed.setdefault(bytes(header.coinbase), [0, 0])
                entry[0] += 1
                entry[1] = number
            return [
                {
                    "address": fmt.address(address),
                    "proposedBlockCount": fmt.quantity(count),
                    "lastProposedBlockNumber": fmt.quantity(last_number),
                }
                for address, (count, last_number) in sorted(proposed.items())
            ]

        return await self.worker.run(work)
