"""A Byzantine validator for fault tests: a real node that also attacks its peers.

It runs the normal node (chain, txpool, libp2p, QBFT driver) with a validator key, and a
saboteur task beside it. The node behaves honestly until the file DATADIR/byzantine.go
appears (a compromised validator); then the saboteur, signing with the same key, publishes
through the node's own gossip what an honest validator never sends: equivocating
proposals and votes, blocks with a wrong state root, forged commit seals, an oversized
block, a block with a transaction from an account that account permissioning refuses,
replays of old messages, and floods. Each attack is logged as a `byzantine action`
event, which the chaos controller counts, and `byzantine done` follows the last; the file
is consumed, so a new one starts another round. The honest nodes must refuse all of it
and keep finalizing.

Run: python -m node.chaos.byzantine --datadir D --genesis G --key K --passphrase-file P
     --rpc-port 0 --ws-port 0 --p2p-port N --peer MADDR... --scenarios equivocate,flood,...
"""

from __future__ import annotations

import collections
import os
import signal
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import click
import rlp
import structlog
import trio
from eth.abc import BlockAPI, SignedTransactionAPI
from eth_account import Account
from eth_keys import keys
from eth_utils import to_checksum_address

from consensus.extradata import QbftExtraData
from consensus.messages import sign_commit, sign_prepare, sign_proposal
from consensus.qbft import proposer_for
from consensus.seals import seal_hash, sign_seal
from genesis.schema import load_genesis
from network import Validation, encode_tx_batch
from node.chaos import SCENARIOS
from node.keystore import read_keystore, resolve_passphrase
from node.logs import configure_logging
from node.rpc.eth_api import StateReader
from node.runtime import Node, NodeConfig

log = structlog.get_logger("medledger.byzantine")

OVERSIZED_BYTES = 3 * 1024 * 1024
TURN_TIMEOUT = 60.0
TRIGGER_FILE = "byzantine.go"
FLOOD_SIGNED = 200
FLOOD_GARBAGE = 100


class Saboteur:
    """Attacks the network through `node`'s gossip with `key`, one scenario after another."""

    def __init__(self, node: Node, key: bytes, scenarios: tuple[str, ...]) -> None:
        unknown = set(scenarios) - set(SCENARIOS)
        if unknown:
            raise ValueError(f"unknown scenarios: {', '.join(sorted(unknown))}")
        self.node = node
        self.key = key
        self.address = keys.PrivateKey(key).public_key.to_canonical_address()
        self.scenarios = scenarios
        self.seen_qbft: collections.deque[tuple[int, bytes]] = collections.deque(maxlen=400)
        self._last_attacked = 0  # one attack per height we propose at
        honest_handler = node._gossip_qbft

        async def recording_handler(peer_id: str, payload: bytes) -> Validation:
            self.seen_qbft.append((self.node.chain.head.block_number, payload))
            return await honest_handler(peer_id, payload)

        node._gossip_qbft = recording_handler  # type: ignore[method-assign]

    # -- helpers ---------------------------------------------------------------------------

    @property
    def p2p(self) -> Any:
        assert self.node.p2p is not None
        return self.node.p2p

    async def _chain(self, fn: Callable[..., Any], *args: Any) -> Any:
        return await self.node.worker.run(fn, *args)

    def _my_turn_next(self) -> bool:
        chain = self.node.chain
        head = chain.head
        parent_proposer = None if head.block_number == 0 else bytes(head.coinbase)
        return proposer_for(chain.validators_after(head), parent_proposer, 0) == self.address

    async def _wait_turn(self) -> int:
        """Wait for a head after which we propose in round 0; hold our honest proposal back
        (the attack is the proposal) and return the height to attack."""
        with trio.fail_after(TURN_TIMEOUT):
            while True:
                head = await self._chain(lambda: self.node.chain.head.block_number)
                if head + 1 > self._last_attacked and await self._chain(self._my_turn_next):
                    self._last_attacked = head + 1
                    assert self.node.driver is not None
                    self.node.driver.address = None  # the driver builds nothing this height
                    return head + 1
                while await self._chain(lambda: self.node.chain.head.block_number) == head:
                    await trio.sleep(0.02)

    def _release_turn(self) -> None:
        assert self.node.driver is not None
        self.node.driver.address = self.address

    def _build(self, txs: list[SignedTransactionAPI], variant: int = 0) -> BlockAPI:
        """A block on the head (chain worker thread), not left staged; another `variant`
        gives another block (a later timestamp)."""
        chain = self.node.chain
        head = chain.head
        built = chain.build_block(
            txs, timestamp=max(int(time.time()), head.timestamp + 1) + variant,
            proposer=self.address,
        )
        chain.discard_built()
        if built.rejected:
            raise RuntimeError(f"built block refused a transaction: {built.rejected[0][1]}")
        return built.block

    def _signed_raw(self, key: bytes, nonce: int, *, to: bytes, value: int = 0,
                    data: bytes = b"", gas: int = 21_000) -> bytes:
        chain = self.node.chain
        base_fee = int(chain.pending_header(chain.head.timestamp + 1).base_fee_per_gas)
        return bytes(Account.sign_transaction({
            "chainId": chain.chain_id, "nonce": nonce, "to": to_checksum_address(to),
            "value": value,
            "gas": gas, "maxFeePerGas": 2 * base_fee + 10**9, "maxPriorityFeePerGas": 10**9,
            "data": data, "type": 2,
        }, key).raw_transaction)

    def _signed_tx(self, key: bytes, nonce: int, **fields: Any) -> SignedTransactionAPI:
        chain = self.node.chain
        raw = self._signed_raw(key, nonce, **fields)
        return chain.vm_at(chain.head).get_transaction_builder().decode(raw)

    async def _propose(self, height: int, block: BlockAPI) -> None:
        proposal = sign_proposal(self.key, height, 0, rlp.encode(block))
        await self.p2p.publish("qbft", proposal.encode())

    def _action(self, scenario: str, **fields: Any) -> None:
        log.warning("byzantine action", scenario=scenario, **fields)

    # -- scenarios ---------------------------------------------------------------------------

    async def run(self) -> None:
        trigger = self.node.config.datadir / TRIGGER_FILE
        while True:
            while not trigger.exists():
                await trio.sleep(0.25)
            trigger.unlink()
            await self._wait_live()
            await self._attack()

    async def _wait_live(self) -> None:
        """Until the node follows the chain live: caught up, and seen two new heads."""
        sync = self.node.sync
        assert sync is not None
        with trio.fail_after(TURN_TIMEOUT * 2):
            changes = 0
            last = await self._chain(lambda: self.node.chain.head.block_number)
            while changes < 2 or last < sync.highest_seen:
                await trio.sleep(0.05)
                head = await self._chain(lambda: self.node.chain.head.block_number)
                if head != last:
                    changes, last = changes + 1, head

    async def _attack(self) -> None:
        attacks: dict[str, Callable[[], Awaitable[dict[str, Any]]]] = {
            "equivocate": self.equivocate, "bad_state_root": self.bad_state_root,
            "bad_seal": self.bad_seal, "oversized": self.oversized,
            "unpermitted_tx": self.unpermitted_tx, "replay": self.replay, "flood": self.flood,
        }
        for scenario in self.scenarios:
            try:
                fields = await attacks[scenario]()
            except Exception as exc:  # an attack that could not be mounted is reported
                log.error("byzantine action failed", scenario=scenario, error=repr(exc))
                continue
            finally:
                self._release_turn()
            self._action(scenario, **fields)
            await trio.sleep(1.0)
        log.warning("byzantine done", scenarios=list(self.scenarios))

    async def equivocate(self) -> dict[str, Any]:
        """Two different valid blocks for one round, and conflicting PREPAREs and COMMITs."""
        height = await self._wait_turn()
        first = await self._chain(self._build, [], 0)
        second = await self._chain(self._build, [], 1)
        await self._propose(height, first)
        await self._propose(height, second)
        for digest in (os.urandom(32), os.urandom(32)):
            await self.p2p.publish("qbft", sign_prepare(self.key, height, 0, digest).encode())
            await self.p2p.publish("qbft", sign_commit(self.key, height, 0, digest).encode())
        return {"height": height, "blocks": ["0x" + seal_hash(b.header).hex()
                                             for b in (first, second)]}

    async def bad_state_root(self) -> dict[str, Any]:
        height = await self._wait_turn()
        block = await self._chain(self._build, [])
        forged = block.copy(header=block.header.copy(state_root=os.urandom(32)))
        await self._propose(height, forged)
        return {"height": height}

    async def bad_seal(self) -> dict[str, Any]:
        """A 'final' block whose commit seals are forged (only ours, repeated), and a proposal
        whose signature was tampered with."""
        block = await self._chain(self._build, [])
        extra = QbftExtraData.decode(block.header.extra_data)
        seal = sign_seal(seal_hash(block.header), self.key)
        sealed = block.copy(header=block.header.copy(
            extra_data=extra.with_seals((seal, seal, seal)).encode()))
        await self.p2p.publish("block", rlp.encode(sealed))
        raw = bytearray(sign_proposal(self.key, block.number, 0, rlp.encode(block)).encode())
        raw[-5] ^= 0xFF  # inside the signature: the recovered author is someone else
        await self.p2p.publish("qbft", bytes(raw))
        return {"height": block.number}

    async def oversized(self) -> dict[str, Any]:
        """A proposal carrying a 3 MiB transaction its header does not account for."""
        height = await self._wait_turn()

        def make() -> BlockAPI:
            block = self._build([])
            nonce = StateReader(self.node.chain).get_nonce(self.address) + 1000
            big = self._signed_tx(self.key, nonce, to=self.address,
                                  data=os.urandom(OVERSIZED_BYTES), gas=60_000_000)
            return block.copy(transactions=[big])

        block = await self._chain(make)
        await self._propose(height, block)
        return {"height": height, "bytes": len(rlp.encode(block))}

    async def unpermitted_tx(self) -> dict[str, Any]:
        """Fund a fresh account (allowed: a permitted sender), then propose a block with a
        transaction from it, which no honest pool would admit."""
        outsider = os.urandom(32)
        outsider_address = keys.PrivateKey(outsider).public_key.to_canonical_address()

        def fund() -> bytes:
            chain = self.node.chain
            nonce = self.node.txpool.pending_nonce(self.address, StateReader(chain))
            raw = self._signed_raw(self.key, nonce, to=outsider_address, value=10**18)
            head = chain.head
            pooled = self.node.txpool.add(
                raw, StateReader(chain), block_gas_limit=head.gas_limit,
                base_fee=int(chain.pending_header(head.timestamp + 1).base_fee_per_gas),
            )
            return bytes(pooled.hash)

        await self._chain(fund)
        with trio.fail_after(TURN_TIMEOUT):
            while await self._chain(
                lambda: StateReader(self.node.chain).get_balance(outsider_address)
            ) == 0:
                await trio.sleep(0.2)
        height = await self._wait_turn()

        def make() -> tuple[BlockAPI, bytes]:
            tx = self._signed_tx(outsider, 0, to=self.address, value=1)
            return self._build([tx]), bytes(tx.hash)

        block, tx_hash = await self._chain(make)
        await self._propose(height, block)
        return {"height": height, "sender": "0x" + outsider_address.hex(),
                "tx": "0x" + tx_hash.hex()}

    async def replay(self) -> dict[str, Any]:
        """Re-publish consensus messages of past heights and old final blocks."""
        head = await self._chain(lambda: self.node.chain.head.block_number)
        old = [raw for height, raw in list(self.seen_qbft) if height < head - 1][-60:]
        for raw in old:
            await self.p2p.publish("qbft", raw)
        blocks = await self._chain(lambda: [
            rlp.encode(self.node.chain.block_or_raise(n)) for n in range(max(1, head - 3), head)
        ])
        for raw in blocks:
            await self.p2p.publish("block", raw)
        return {"messages": len(old), "blocks": len(blocks)}

    async def flood(self) -> dict[str, Any]:
        """Signed votes for future heights (buffer limits), then garbage (penalties, ban)."""
        head = await self._chain(lambda: self.node.chain.head.block_number)
        signed = 0
        for i in range(FLOOD_SIGNED):
            height = head + 1 + i % 10
            message = sign_prepare(self.key, height, i // 10, os.urandom(32))
            await self.p2p.publish("qbft", message.encode())
            await trio.sleep(0)  # signing is synchronous: let the node's own tasks run
            signed += 1
        garbage = 0
        for _ in range(FLOOD_GARBAGE):  # undecodable transactions: the pools drop them
            await self.p2p.publish("tx", encode_tx_batch([os.urandom(120)]))
            garbage += 1
        for _ in range(1):  # an undecodable consensus message: a penalty (a ban at five)
            await self.p2p.publish("qbft", os.urandom(200))
            garbage += 1
        return {"signed": signed, "garbage": garbage}


async def _serve(config: NodeConfig, key: bytes, scenarios: tuple[str, ...]) -> None:
    node = Node(config)
    saboteur = Saboteur(node, key, scenarios)
    async with trio.open_nursery() as nursery:
        with trio.open_signal_receiver(signal.SIGINT, signal.SIGTERM) as signals:
            await nursery.start(node.run)
            nursery.start_soon(saboteur.run)
            async for _ in signals:
                nursery.cancel_scope.cancel()
                break


@click.command()
@click.option("--datadir", required=True, type=click.Path(file_okay=False, path_type=Path))
@click.option("--genesis", "genesis_path", required=True,
              type=click.Path(dir_okay=False, path_type=Path))
@click.option("--key", "key_path", required=True, type=click.Path(dir_okay=False, path_type=Path))
@click.option("--passphrase-file", required=True, type=click.Path(dir_okay=False, path_type=Path))
@click.option("--rpc-port", type=int, default=0)
@click.option("--ws-port", type=int, default=0)
@click.option("--p2p-port", type=int, required=True)
@click.option("--peer", "peers", multiple=True)
@click.option("--scenarios", default=",".join(SCENARIOS), show_default=True)
@click.option("--log-format", type=click.Choice(["json", "console"]), default="json")
def main(datadir: Path, genesis_path: Path, key_path: Path, passphrase_file: Path,
         rpc_port: int, ws_port: int, p2p_port: int, peers: tuple[str, ...], scenarios: str,
         log_format: str) -> None:
    """Run a Byzantine validator (tests only)."""
    configure_logging("info", json_output=log_format == "json")
    passphrase = resolve_passphrase(passphrase_file)
    if passphrase is None:
        raise click.ClickException(f"no passphrase in {passphrase_file}")
    key = read_keystore(key_path, passphrase)
    config = NodeConfig(
        datadir=datadir, genesis=load_genesis(genesis_path), validator_key=key,
        rpc_port=rpc_port, ws_port=ws_port, p2p_port=p2p_port, static_peers=peers,
        admin_rpc=True,
    )
    chosen = tuple(s for s in scenarios.split(",") if s)
    trio.run(_serve, config, key, chosen)


if __name__ == "__main__":
    main()
