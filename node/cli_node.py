"""`medledger node run`, `medledger devnet` and `medledger status`."""

from __future__ import annotations

import json
import shutil
import tempfile
from dataclasses import replace
from pathlib import Path
from typing import Any

import click
import httpx
import trio
from eth_keys import keys
from eth_utils import keccak, to_checksum_address

from genesis.builder import new_consortium
from genesis.schema import Genesis, GenesisError, dump_genesis, load_genesis
from node.config import ConfigError, NodeSettings, load_config, overrides_from_click
from node.cprofile_env import run_profiled
from node.db import StorageError
from node.devnet import DevnetSupervisor, plan_devnet
from node.keystore import KeystoreError, read_keystore, resolve_passphrase
from node.logs import configure_logging
from node.nodekey import NodeKeyError, resolve_node_key
from node.records.keys import RecordKeyError, load_private_key
from node.runtime import NodeConfig, run_until_signal

DEVNET_ACCOUNTS_SEED = b"medledger devnet account"
DEVNET_CHAIN_ID = 1337


def _common_rpc_options(fn: Any) -> Any:
    fn = click.option("--rpc-host", default="127.0.0.1", show_default=True,
                      help="Address the JSON-RPC listeners bind to.")(fn)
    fn = click.option("--rpc-port", type=click.IntRange(0, 65535), default=8545,
                      show_default=True,
                      help="JSON-RPC over HTTP (and WebSocket); 0 = any free.")(fn)
    fn = click.option("--ws-port", type=click.IntRange(0, 65535), default=8546,
                      show_default=True, help="Extra JSON-RPC WebSocket port; 0 = any free.")(fn)
    fn = click.option("--log-level", default="info", show_default=True,
                      type=click.Choice(["debug", "info", "warning", "error"]))(fn)
    fn = click.option("--log-format", default="auto", show_default=True,
                      type=click.Choice(["auto", "json", "console"]),
                      help="auto: human-readable on a terminal, JSON otherwise.")(fn)
    return fn


def _setup_logs(level: str, log_format: str) -> None:
    configure_logging(level, json_output=None if log_format == "auto" else log_format == "json")


def _run(config: NodeConfig) -> None:
    try:
        run_profiled(trio.run, run_until_signal, config)  # plain trio.run unless profiling
    except StorageError as exc:
        raise click.ClickException(str(exc)) from None
    except ValueError as exc:
        raise click.ClickException(str(exc)) from None
    except OSError as exc:
        raise click.ClickException(_os_failure(exc)) from None
    except BaseExceptionGroup as group:
        # A storage failure while running (disk full, a corrupt table read) or a listener
        # that cannot bind arrives wrapped in trio's nursery groups: the operator gets its
        # message, not a traceback.
        cause = _operational_failure(group)
        if cause is None:
            raise
        raise click.ClickException(f"node stopped: {cause}") from None


def _os_failure(exc: OSError) -> str:
    if "listen" in str(exc):
        return f"cannot start JSON-RPC listener: {exc}"
    return f"cannot start the node: {exc}"


def _operational_failure(group: BaseExceptionGroup) -> str | None:
    """The message of the first storage failure (StorageError, or an OSError such as ENOSPC
    from a node file, or a listener's bind error) in `group`, or None when it holds none."""
    errors = _leaves(group)
    for exc in errors:
        if isinstance(exc, StorageError):
            return str(exc)
    for exc in errors:
        if isinstance(exc, OSError):
            return _os_failure(exc)
    return None


def _leaves(exc: BaseException) -> list[BaseException]:
    if isinstance(exc, BaseExceptionGroup):
        return [leaf for inner in exc.exceptions for leaf in _leaves(inner)]
    return [exc]


@click.group("node")
def node_group() -> None:
    """Run a consortium node."""


@node_group.command("run")
@click.option("--config", "config_path", type=click.Path(dir_okay=False, path_type=Path),
              default=None, help="TOML config file (see `medledger config example`); flags and "
                                 "MEDLEDGER_<SECTION>_<KEY> variables override it.")
@click.option("--datadir", type=click.Path(file_okay=False, path_type=Path), default=None,
              help="Chain database and node files.")
@click.option("--genesis", "genesis_path", type=click.Path(dir_okay=False, path_type=Path),
              default=None, help="Consortium genesis.json.")
@click.option("--key", "key_path", type=click.Path(dir_okay=False, path_type=Path),
              help="Validator key file (keystore v3). Without it the node signs with its node "
                   "key once voted in, and otherwise follows.")
@click.option("--passphrase-file", type=click.Path(dir_okay=False, path_type=Path),
              help="File holding the key's passphrase (else $MEDLEDGER_PASSPHRASE, else prompt).")
@click.option("--node-key-file", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="Node key (keystore v3, `medledger keys new --type node`) of a node without "
                   "--key. Default: DATADIR/node-key.json, created encrypted on first start.")
@click.option("--node-key-passphrase-file", type=click.Path(dir_okay=False, path_type=Path),
              default=None, help="File holding the node key's passphrase (else as --key's).")
@click.option("--empty-block-period", type=click.FloatRange(min=0.1), default=None,
              help="Seconds between empty blocks (default: from genesis).")
@click.option("--p2p-host", default="127.0.0.1", show_default=True,
              help="Address the libp2p host listens on.")
@click.option("--p2p-port", type=click.IntRange(0, 65535), default=None,
              help="libp2p TCP port (0 = any free). Without it the node has no network, "
                   "which only a single-validator chain can use.")
@click.option("--peer", "peers", multiple=True,
              help="Static peer multiaddr (/ip4/H/tcp/P/p2p/ID); repeatable. Kept connected.")
@click.option("--admin-rpc", is_flag=True, help="Enable the admin_ JSON-RPC namespace.")
@click.option("--read-only", is_flag=True,
              help="Auditor node: refuse transactions and FHIR writes, never seal (no --key).")
@click.option("--metrics", is_flag=True,
              help="Serve Prometheus /metrics and /health/{liveness,readiness}.")
@click.option("--metrics-host", default="127.0.0.1", show_default=True)
@click.option("--metrics-port", type=click.IntRange(0, 65535), default=9545, show_default=True)
@click.option("--fhir-port", type=click.IntRange(0, 65535), default=None,
              help="Serve the FHIR R4 API on this port (0 = any free); off without it.")
@click.option("--fhir-host", default="127.0.0.1", show_default=True)
@click.option("--fhir-key", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="Keystore v3 of the hospital's FHIR service account (a doctor/nurse account "
                   "registered on chain); same passphrase source as --key.")
@click.option("--fhir-record-key", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="The hospital's RSA record key (PEM, PKCS#8 encrypted with the passphrase).")
@click.option("--fhir-tls-cert", type=click.Path(dir_okay=False, path_type=Path), default=None)
@click.option("--fhir-tls-key", type=click.Path(dir_okay=False, path_type=Path), default=None)
@click.option("--fhir-token-ttl", type=click.FloatRange(min=1), default=900.0, show_default=True,
              help="Seconds a bearer token lives (automatic logoff).")
@_common_rpc_options
def node_run(config_path: Path | None, **params: object) -> None:
    """Run a node (settings from --config, environment and flags)."""
    ctx = click.get_current_context()
    fhir_options = {k: params.pop(k) for k in list(params) if k.startswith("fhir_")}

    def given(name: str) -> bool:
        return ctx.get_parameter_source(name) is click.core.ParameterSource.COMMANDLINE

    # The config loader types values itself, as it does for the TOML file's strings and lists.
    plain = {k: str(v) if isinstance(v, Path) else list(v) if isinstance(v, tuple) else v
             for k, v in params.items()}
    try:
        settings = load_config(config_path, overrides_from_click(plain, given))
    except ConfigError as exc:
        raise click.ClickException(str(exc)) from None
    _setup_logs(settings["log.level"], settings["log.format"])
    if settings["p2p.peers"] and not settings["p2p.enabled"]:
        raise click.UsageError("--peer needs --p2p-port")
    genesis_path = settings["node.genesis"]
    try:
        genesis = load_genesis(genesis_path)
    except GenesisError as exc:
        raise click.ClickException(f"genesis {genesis_path}: {exc}") from None
    key_path = settings["node.key"]
    key = _load_key(key_path, settings["node.passphrase_file"]) if key_path else None
    node_key = _node_key(settings) if key is None and settings["p2p.enabled"] else None
    config = replace(
        settings.node_config(genesis, key), node_key=node_key, metrics=settings["metrics.enabled"],
        metrics_host=settings["metrics.host"], metrics_port=settings["metrics.port"],
        health=settings.health_policy(),
    )
    if fhir_options["fhir_port"] is not None:
        config = replace(config, **_fhir_settings(fhir_options, config.datadir,
                                                  settings["node.passphrase_file"]))
    _run(config)


def _fhir_settings(
    options: dict[str, Any], datadir: Path, passphrase_file: str | Path | None
) -> dict[str, Any]:
    """FhirConfig and the service account's keys from `node run`'s --fhir-* options."""
    from node.fhir import FhirConfig  # loads the FHIR stack only when the API is enabled

    if options["fhir_key"] is None or options["fhir_record_key"] is None:
        raise click.UsageError("--fhir-port needs --fhir-key and --fhir-record-key")
    service_key = _load_key(options["fhir_key"], Path(passphrase_file) if passphrase_file else None)
    try:
        passphrase = resolve_passphrase(Path(passphrase_file) if passphrase_file else None)
        if passphrase is None:
            raise click.ClickException("the FHIR record key needs a passphrase "
                                       "(--passphrase-file or $MEDLEDGER_PASSPHRASE)")
        record_key = load_private_key(options["fhir_record_key"], passphrase)
        fhir = FhirConfig(
            datadir=datadir / "fhir", host=options["fhir_host"], port=options["fhir_port"],
            certfile=options["fhir_tls_cert"], keyfile=options["fhir_tls_key"],
            token_ttl=options["fhir_token_ttl"],
        )
    except (RecordKeyError, KeystoreError, ValueError) as exc:
        raise click.ClickException(f"FHIR API: {exc}") from None
    return {"fhir": fhir, "fhir_key": service_key, "fhir_record_key": record_key}


def _load_key(key_path: Path, passphrase_file: Path | None) -> bytes:
    try:
        passphrase = resolve_passphrase(passphrase_file)
        if passphrase is None:
            if not click.get_text_stream("stdin").isatty():
                raise click.ClickException(
                    "no passphrase for the key: use --passphrase-file or $MEDLEDGER_PASSPHRASE"
                )
            passphrase = click.prompt(f"Passphrase for {key_path}", hide_input=True)
        return read_keystore(key_path, passphrase)
    except KeystoreError as exc:
        raise click.ClickException(str(exc)) from None


def _node_key(settings: NodeSettings) -> bytes:
    """The decrypted node key of a networked node without a validator key (node.nodekey)."""
    passphrase_file = (settings["node.node_key_passphrase_file"]
                       or settings["node.passphrase_file"])

    def passphrase() -> str | None:
        secret = resolve_passphrase(passphrase_file)
        if secret is None and click.get_text_stream("stdin").isatty():
            secret = click.prompt("Node key passphrase", hide_input=True)
        return secret

    try:
        return resolve_node_key(settings["node.datadir"], settings["node.node_key"], passphrase)
    except (NodeKeyError, KeystoreError) as exc:
        raise click.ClickException(str(exc)) from None


def devnet_account_keys(count: int) -> list[bytes]:
    """Well-known development keys (public knowledge: never use them on a real network)."""
    return [keccak(DEVNET_ACCOUNTS_SEED + i.to_bytes(4, "big")) for i in range(count)]


def devnet_genesis(accounts: int, block_period: int) -> tuple[Genesis, bytes]:
    dev_keys = devnet_account_keys(accounts)
    prefund = {
        keys.PrivateKey(k).public_key.to_canonical_address(): 10**24 for k in dev_keys
    }
    genesis, validator_keys = new_consortium(
        1, chain_id=DEVNET_CHAIN_ID, block_period_seconds=block_period, prefund=prefund
    )
    return genesis, validator_keys[0]


@click.command("devnet")
@click.option("--nodes", type=click.IntRange(1, 16), default=1, show_default=True,
              help="Validators (hospitals). More than one runs each as its own process.")
@click.option("--auditor", is_flag=True, help="Also run a read-only auditor node (--nodes > 1).")
@click.option("--datadir", type=click.Path(file_okay=False, path_type=Path), default=None,
              help="Keep the chain here (default: a temporary directory removed on exit).")
@click.option("--accounts", type=click.IntRange(0, 100), default=5, show_default=True,
              help="Pre-funded development accounts to print.")
@click.option("--block-period", type=click.IntRange(1), default=1, show_default=True)
@click.option("--p2p-port", type=click.IntRange(0, 65535), default=30303, show_default=True,
              help="First libp2p port (one per node); 0 = any free ports.")
@_common_rpc_options
def devnet(
    nodes: int, auditor: bool, datadir: Path | None, accounts: int, block_period: int,
    p2p_port: int, rpc_host: str, rpc_port: int, ws_port: int, log_level: str, log_format: str,
) -> None:
    """Run a throw-away consortium chain for development (one or several hospitals)."""
    _setup_logs(log_level, log_format)
    temporary = datadir is None
    root = Path(tempfile.mkdtemp(prefix="medledger-devnet-")) if datadir is None else datadir
    try:
        if nodes == 1 and not auditor:
            _single_node_devnet(root, accounts, block_period, rpc_host, rpc_port, ws_port)
        else:
            _multi_node_devnet(root, nodes, auditor, accounts, block_period, rpc_port, p2p_port,
                               log_level)
    except GenesisError as exc:
        raise click.ClickException(f"devnet genesis: {exc}") from None
    finally:
        if temporary:
            shutil.rmtree(root, ignore_errors=True)


def _print_accounts(genesis: Genesis, root: Path, accounts: int) -> None:
    click.echo(f"medledger devnet: chain id {genesis.chain_id}, data in {root}")
    click.echo("Development accounts (publicly known keys: for this devnet only):")
    for k in devnet_account_keys(accounts):
        address = keys.PrivateKey(k).public_key.to_canonical_address()
        click.echo(f"  {to_checksum_address(address)}  key 0x{k.hex()}")
    click.echo("web3.py: inject ExtraDataToPOAMiddleware (QBFT extraData is over 32 bytes).")


def _single_node_devnet(
    root: Path, accounts: int, block_period: int, rpc_host: str, rpc_port: int, ws_port: int
) -> None:
    genesis_file = root / "genesis.json"
    if genesis_file.exists():
        genesis = load_genesis(genesis_file)
        validator_key = bytes.fromhex((root / "validator.key").read_text().strip())
    else:
        root.mkdir(parents=True, exist_ok=True)
        genesis, validator_key = devnet_genesis(accounts, block_period)
        genesis_file.write_text(dump_genesis(genesis))
        key_file = root / "validator.key"
        key_file.write_text(validator_key.hex())
        key_file.chmod(0o600)
    _print_accounts(genesis, root, accounts)
    _run(NodeConfig(
        datadir=root / "node", genesis=genesis, validator_key=validator_key,
        rpc_host=rpc_host, rpc_port=rpc_port, ws_port=ws_port,
    ))


def _multi_node_devnet(
    root: Path, nodes: int, auditor: bool, accounts: int, block_period: int, rpc_port: int,
    p2p_port: int, log_level: str,
) -> None:
    if (root / "genesis.json").exists():
        raise click.ClickException(
            f"{root} already holds a devnet; a multi-node devnet starts in a new directory "
            "(its nodes' ports and keys are planned afresh)"
        )
    prefund = {
        keys.PrivateKey(k).public_key.to_canonical_address(): 10**24
        for k in devnet_account_keys(accounts)
    }
    try:
        genesis, planned, passphrase_file = plan_devnet(
            root, validators=nodes, auditor=auditor, prefund=prefund, block_period=block_period,
            rpc_port=rpc_port, p2p_port=p2p_port, chain_id=DEVNET_CHAIN_ID,
        )
    except OSError as exc:
        raise click.ClickException(f"cannot set up the devnet: {exc}") from None
    _print_accounts(genesis, root, accounts)
    supervisor = DevnetSupervisor(root, planned, passphrase_file)
    supervisor.start_all()
    try:
        try:
            supervisor.wait_ready()
        except RuntimeError as exc:
            raise click.ClickException(str(exc)) from None
        for node in planned:
            role = "validator" if node.key_path is not None else "auditor"
            click.echo(f"  {node.name:<12} {role:<9} http://127.0.0.1:{node.rpc_port}  "
                       f"ws://127.0.0.1:{node.ws_port}  log {root / (node.name + '.log')}")
        click.echo("Running. Ctrl-C stops every node.")

        def died(name: str, code: int) -> None:
            raise click.ClickException(f"{name} exited with code {code}; see its log")

        supervisor.wait_for_signal(died)
    finally:
        supervisor.stop_all()
        click.echo("devnet stopped")


@click.command("status")
@click.option("--rpc", "rpc_url", default="http://127.0.0.1:8545", show_default=True,
              help="JSON-RPC endpoint of the node.")
@click.option("--json", "as_json", is_flag=True, help="Print machine-readable JSON.")
def status(rpc_url: str, as_json: bool) -> None:
    """Show a running node's chain id, head, peers and sync state."""
    calls = ["web3_clientVersion", "eth_chainId", "eth_blockNumber", "net_peerCount",
             "eth_syncing"]
    batch = [{"jsonrpc": "2.0", "id": i, "method": m, "params": []} for i, m in enumerate(calls)]
    try:
        response = httpx.post(rpc_url, json=batch, timeout=5.0)
        response.raise_for_status()
        replies = {reply["id"]: reply for reply in response.json()}
    except (httpx.HTTPError, ValueError, TypeError, KeyError) as exc:
        raise click.ClickException(f"cannot reach node at {rpc_url}: {exc}") from None
    results: dict[str, Any] = {}
    for i, method in enumerate(calls):
        reply = replies.get(i, {})
        if "error" in reply or "result" not in reply:
            raise click.ClickException(f"{method} failed: {reply.get('error')}")
        results[method] = reply["result"]
    head = int(results["eth_blockNumber"], 16)
    summary = {
        "client": results["web3_clientVersion"],
        "chainId": int(results["eth_chainId"], 16),
        "head": head,
        "peers": int(results["net_peerCount"], 16),
        "syncing": results["eth_syncing"],
    }
    if as_json:
        click.echo(json.dumps(summary))
        return
    for name, value in summary.items():
        click.echo(f"{name:>8}: {value}")
