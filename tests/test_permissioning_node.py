"""The node consults AccountAllowList before a transaction enters its pool."""

from __future__ import annotations

from pathlib import Path

import pytest

from genesis.builder import new_consortium
from genesis.schema import AllocAccount, dump_genesis
from node.keystore import write_keystore
from tests.helpers import PASSPHRASE, USER_KEYS, USERS, transfer
from tests.nodeproc import NodeProcess

pytestmark = pytest.mark.slow


def test_unpermitted_account_is_refused_at_the_pool(tmp_path: Path) -> None:
    genesis, keys = new_consortium(
        1, prefund={USERS[0]: 10**24}, alloc={USERS[1]: AllocAccount(balance=10**24)},
        predeploy_system=True,
    )
    files = tmp_path / "files"
    files.mkdir()
    (files / "genesis.json").write_text(dump_genesis(genesis))
    write_keystore(files / "validator.json", keys[0], PASSPHRASE, kdf_iterations=2**4)
    (files / "pass.txt").write_text(PASSPHRASE)
    node = NodeProcess(datadir=tmp_path / "node", genesis=files / "genesis.json",
                       key=files / "validator.json", passphrase=files / "pass.txt").start()
    try:
        assert str(node.rpc("eth_sendRawTransaction", "0x" + transfer(USER_KEYS[0], 0).hex())
                   ).startswith("0x")
        with pytest.raises(RuntimeError, match="sender account not permitted"):
            node.rpc("eth_sendRawTransaction", "0x" + transfer(USER_KEYS[1], 0).hex())
        assert int(node.rpc("eth_getBalance", "0x" + USERS[1].hex(), "latest"), 16) == 10**24  # type: ignore[arg-type]
    finally:
        node.stop()
