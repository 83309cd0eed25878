"""TOML config: precedence file < env < flags, clear errors, `config check` as a subprocess."""

from __future__ import annotations

import os
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

from genesis.schema import load_genesis
from node.config import SCHEMA, ConfigError, example_toml, load_config, overrides_from_click
from tests.helpers import VALIDATOR_KEY, write_node_files


def write_config(tmp_path: Path, body: str) -> Path:
    path = tmp_path / "medledger.toml"
    path.write_text(body)
    return path


def test_precedence_and_node_config(tmp_path: Path) -> None:
    genesis_path, key_path, _ = write_node_files(tmp_path)
    path = write_config(tmp_path, f"""
[node]
datadir = "data"
genesis = "{genesis_path.name}"
key = "{key_path}"
[rpc]
port = 9000
cors_origins = ["https://ehr.example"]
[p2p]
enabled = true
port = 30400
peers = ["/ip4/10.0.0.2/tcp/30303/p2p/16Uiu2HAm"]
[metrics]
enabled = true
""")
    env = {"MEDLEDGER_RPC_PORT": "9100", "MEDLEDGER_TXPOOL_SIZE": "100",
           "MEDLEDGER_PASSPHRASE": "not an option", "HOME": "/root"}
    settings = load_config(path, {"rpc.port": 9200, "p2p.peers": ()}, environ=env)
    assert settings["node.datadir"] == tmp_path / "data"  # relative to the file
    assert settings["rpc.port"] == 9200 and settings.sources["rpc.port"] == "flag"
    assert settings["txpool.size"] == 100
    assert settings.sources["txpool.size"] == "env MEDLEDGER_TXPOOL_SIZE"
    assert settings["metrics.enabled"] is True and settings["metrics.port"] == 9545
    config = settings.node_config(load_genesis(genesis_path), VALIDATOR_KEY)
    assert config.rpc_port == 9200 and config.p2p_port == 30400 and config.static_peers == ()
    assert config.cors_origins == ("https://ehr.example",) and config.txpool_size == 100
    assert config.empty_block_period is None
    assert settings.health_policy().max_lag_blocks == 2
    # The effective config printed by `config check` is itself a valid config file.
    reparsed = tomllib.loads(settings.to_toml())
    assert reparsed["rpc"]["port"] == 9200 and reparsed["txpool"]["size"] == 100


@pytest.mark.parametrize(("body", "env", "message"), [
    ("[rpc]\nprot = 1\n", {}, "unknown option rpc.prot (did you mean port?)"),
    ("[rcp]\nport = 1\n", {}, "unknown section [rcp] (did you mean rpc?)"),
    ("[rpc]\nport = 70000\n", {}, "rpc.port must be a port number 0-65535"),
    ("[rpc]\nport = \"x\"\n", {}, "rpc.port must be an integer"),
    ("[log]\nlevel = \"loud\"\n", {}, "log.level must be one of"),
    ("[rpc\n", {}, "is not valid TOML"),
    ("", {"MEDLEDGER_RPC_PORTT": "1"}, "unknown option variable MEDLEDGER_RPC_PORTT"),
    ("", {"MEDLEDGER_P2P_ENABLED": "maybe"}, "environment MEDLEDGER_P2P_ENABLED: p2p.enabled"),
    ("[txpool]\nsize = 0\n", {}, "txpool.size must be positive"),
    ("[p2p]\npeers = [\"/ip4/1.2.3.4/tcp/1/p2p/x\"]\n", {}, "p2p.peers needs p2p.enabled"),
])
def test_errors_name_the_option_and_the_source(
    tmp_path: Path, body: str, env: dict[str, str], message: str
) -> None:
    path = write_config(tmp_path, "[node]\ndatadir = \"d\"\ngenesis = \"g.json\"\n" + body)
    with pytest.raises(ConfigError) as caught:
        load_config(path, environ=env)
    assert message in str(caught.value)


def test_required_options_and_example() -> None:
    with pytest.raises(ConfigError, match="node.datadir is required"):
        load_config(None, environ={})
    example = example_toml()
    parsed = tomllib.loads(example)
    for option in SCHEMA:
        assert option.env in example and option.doc in example
        if option.default is not None:
            assert parsed[option.section][option.key] == option.default
    given = {"rpc_port", "p2p_port", "peers"}
    overrides = overrides_from_click(
        {"rpc_port": 1, "rpc_host": "0.0.0.0", "p2p_port": 2, "peers": ("/ip4/a/p2p/b",)},
        given.__contains__,
    )
    assert overrides == {"rpc.port": 1, "p2p.port": 2, "p2p.enabled": True,
                         "p2p.peers": ("/ip4/a/p2p/b",)}


def test_config_check_command(tmp_path: Path) -> None:
    genesis_path, key_path, _ = write_node_files(tmp_path)
    good = write_config(tmp_path, f"[node]\ndatadir = \"data\"\ngenesis = \"{genesis_path}\"\n"
                                  f"key = \"{key_path}\"\n")
    env = {k: v for k, v in os.environ.items() if not k.startswith("MEDLEDGER_")}

    def check(path: Path, extra: dict[str, str]) -> subprocess.CompletedProcess[str]:
        return subprocess.run([sys.executable, "-m", "node.cli_config", "check", "--config",
                               str(path)], capture_output=True, text=True, timeout=60,
                              env={**env, **extra})

    result = check(good, {"MEDLEDGER_RPC_WS_PORT": "0"})
    assert result.returncode == 0, result.stderr
    assert "ws_port = 0  # env MEDLEDGER_RPC_WS_PORT" in result.stdout
    assert "port = 8545  # default" in result.stdout
    assert "configuration OK" in result.stderr

    missing_key = write_config(tmp_path, f"[node]\ndatadir = \"data\"\n"
                                         f"genesis = \"{genesis_path}\"\nkey = \"nope.json\"\n")
    result = check(missing_key, {})
    assert result.returncode != 0 and "node.key: keystore" in result.stderr
    assert "not found" in result.stderr
