"""The node's configuration: one TOML file, overridden by environment variables, then CLI flags.

Every option is declared once in `SCHEMA` with its type, default and documentation; the loader,
the environment mapping (MEDLEDGER_<SECTION>_<KEY>, e.g. MEDLEDGER_RPC_PORT=8547), the
documented template (`medledger config example`) and `config check` all come from it, so they
cannot drift apart. Relative paths in the file are relative to the file's directory. Unknown
sections or keys are errors (a typo must not silently fall back to a default).
"""

from __future__ import annotations

import difflib
import os
import tomllib
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from genesis.schema import Genesis
    from node.health import HealthPolicy
    from node.runtime import NodeConfig

ENV_PREFIX = "MEDLEDGER_"


class ConfigError(ValueError):
    """The configuration is invalid; the message names the option, where it came from and why."""


@dataclass(frozen=True)
class Option:
    section: str
    key: str
    kind: str  # str | int | float | bool | path | list | port | level | format
    default: Any
    doc: str

    @property
    def name(self) -> str:
        return f"{self.section}.{self.key}"

    @property
    def env(self) -> str:
        return f"{ENV_PREFIX}{self.section.upper()}_{self.key.upper()}"


SCHEMA: tuple[Option, ...] = (
    Option("node", "datadir", "path", None, "Chain database and node files (required)."),
    Option("node", "genesis", "path", None, "The consortium genesis.json (required)."),
    Option("node", "key", "path", None,
           "Validator key file (keystore v3). Without it the node does not seal."),
    Option("node", "passphrase_file", "path", None,
           "File holding the key's passphrase; else $MEDLEDGER_PASSPHRASE; else a prompt."),
    Option("node", "node_key", "path", None,
           "Node key (keystore v3) of a networked node without `key`: its P2P identity. "
           "Default: DATADIR/node-key.json, created encrypted on first start."),
    Option("node", "node_key_passphrase_file", "path", None,
           "File holding the node key's passphrase; else passphrase_file's passphrase."),
    Option("node", "read_only", "bool", False,
           "Auditor node: follows the chain, refuses transactions (JSON-RPC) and FHIR writes, "
           "never seals; cannot be combined with node.key."),
    Option("rpc", "host", "str", "127.0.0.1", "Address the JSON-RPC listeners bind to."),
    Option("rpc", "port", "port", 8545, "JSON-RPC over HTTP and WebSocket; 0 = any free port."),
    Option("rpc", "ws_port", "port", 8546, "Extra WebSocket-only port; 0 = any free port."),
    Option("rpc", "admin", "bool", False,
           "Enable the admin_ namespace (peers, admin_snapshot): keep the RPC on loopback."),
    Option("rpc", "max_body_bytes", "int", 5 * 1024 * 1024,
           "Largest HTTP body / WebSocket message accepted."),
    Option("rpc", "max_batch", "int", 1000, "Most requests in one JSON-RPC batch."),
    Option("rpc", "cors_origins", "list", [],
           "Browser origins allowed to call the RPC (\"*\" = any)."),
    Option("rpc", "rate_limit", "float", 100.0,
           "Requests per second per client IP (an HTTP request or WebSocket message; a batch "
           "counts once); beyond it HTTP 429 / error -32005. 0 = no limit."),
    Option("rpc", "rate_burst", "int", 200,
           "Requests a client may send at once before rpc.rate_limit applies."),
    Option("rpc", "rate_limit_loopback", "bool", False,
           "Also limit loopback clients (local tools and a local reverse proxy are exempt)."),
    Option("p2p", "enabled", "bool", False,
           "Join the consortium network (off: a single-validator chain only)."),
    Option("p2p", "host", "str", "127.0.0.1", "Address the libp2p host listens on."),
    Option("p2p", "port", "port", 30303, "libp2p TCP port; 0 = any free port."),
    Option("p2p", "peers", "list", [],
           "Static peers, multiaddrs /ip4/H/tcp/P/p2p/ID, kept connected."),
    Option("txpool", "size", "int", 8192, "Most transactions kept in the pool."),
    Option("txpool", "min_priority_fee", "int", 0,
           "Smallest priority fee (wei per gas) the pool accepts."),
    Option("consensus", "empty_block_period", "float", 0.0,
           "Seconds between empty blocks; 0 = the genesis value."),
    Option("log", "level", "level", "info", "debug, info, warning or error."),
    Option("log", "format", "format", "auto",
           "json, console, or auto (console on a terminal, JSON otherwise)."),
    Option("metrics", "enabled", "bool", False,
           "Serve /metrics (Prometheus) and /health/* on the ops listener."),
    Option("metrics", "host", "str", "127.0.0.1",
           "Address of the ops listener (keep it on loopback or a management network)."),
    Option("metrics", "port", "port", 9545, "Port of the ops listener; 0 = any free port."),
    Option("health", "max_lag_blocks", "int", 2,
           "Ready only when the head is at most this many blocks behind the network."),
    Option("health", "min_peers", "int", 1,
           "Ready only with at least this many peers (networked nodes)."),
    Option("health", "liveness_timeout", "float", 30.0,
           "Alive only if the chain worker answers within this many seconds."),
)
OPTIONS: dict[str, Option] = {option.name: option for option in SCHEMA}
SECTIONS: tuple[str, ...] = tuple(dict.fromkeys(option.section for option in SCHEMA))
REQUIRED = ("node.datadir", "node.genesis")
_POSITIVE = {"rpc.max_body_bytes", "rpc.max_batch", "txpool.size", "health.liveness_timeout",
             "rpc.rate_burst"}
_NON_NEGATIVE = {"txpool.min_priority_fee", "consensus.empty_block_period", "rpc.rate_limit",
                 "health.max_lag_blocks", "health.min_peers"}


@dataclass(frozen=True)
class NodeSettings:
    """The effective configuration: a value and its source for every option."""

    values: Mapping[str, Any]
    sources: Mapping[str, str]  # "default" | "file <path>" | "env <NAME>" | "flag"

    def __getitem__(self, name: str) -> Any:
        return self.values[name]

    def node_config(self, genesis: Genesis, validator_key: bytes | None) -> NodeConfig:
        """The runtime's NodeConfig for these settings (genesis and key loaded by the caller)."""
        from node.ratelimit import RateLimit
        from node.runtime import NodeConfig

        v = self.values
        return NodeConfig(
            datadir=v["node.datadir"], genesis=genesis, validator_key=validator_key,
            rpc_host=v["rpc.host"], rpc_port=v["rpc.port"], ws_port=v["rpc.ws_port"],
            empty_block_period=v["consensus.empty_block_period"] or None,
            max_body_bytes=v["rpc.max_body_bytes"], max_batch=v["rpc.max_batch"],
            txpool_size=v["txpool.size"], min_priority_fee=v["txpool.min_priority_fee"],
            cors_origins=tuple(v["rpc.cors_origins"]), p2p_host=v["p2p.host"],
            p2p_port=v["p2p.port"] if v["p2p.enabled"] else None,
            static_peers=tuple(v["p2p.peers"]), admin_rpc=v["rpc.admin"],
            read_only=v["node.read_only"],
            rpc_rate_limit=RateLimit(rate=v["rpc.rate_limit"], burst=v["rpc.rate_burst"],
                                     limit_loopback=v["rpc.rate_limit_loopback"]),
        )

    def health_policy(self) -> HealthPolicy:
        from node.health import HealthPolicy

        v = self.values
        return HealthPolicy(max_lag_blocks=v["health.max_lag_blocks"],
                            min_peers=v["health.min_peers"],
                            liveness_timeout=v["health.liveness_timeout"])

    def to_toml(self, *, with_sources: bool = True) -> str:
        """The effective configuration as TOML (a valid config file), sources as comments."""
        lines: list[str] = []
        for section in SECTIONS:
            lines.append(f"[{section}]")
            for option in (o for o in SCHEMA if o.section == section):
                value = self.values[option.name]
                source = f"  # {self.sources[option.name]}" if with_sources else ""
                if value is None:
                    lines.append(f"# {option.key} = (not set){source}")
                else:
                    lines.append(f"{option.key} = {_toml_value(value)}{source}")
            lines.append("")
        return "\n".join(lines)


def _toml_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return repr(value)
    if isinstance(value, list | tuple):
        return "[" + ", ".join(_toml_value(item) for item in value) + "]"
    text = str(value).replace("\\", "\\\\").replace('"', '\\"')
    return f'"{text}"'


def example_toml() -> str:
    """A config file with every option, its documentation and its default."""
    lines = ["# medledger node configuration. Precedence: CLI flags > MEDLEDGER_<SECTION>_<KEY>",
             "# environment variables > this file > defaults. Paths are relative to this file.",
             ""]
    for section in SECTIONS:
        lines.append(f"[{section}]")
        for option in (o for o in SCHEMA if o.section == section):
            lines.append(f"# {option.doc} (env {option.env})")
            if option.default is None:
                lines.append(f"# {option.key} = ")
            else:
                lines.append(f"{option.key} = {_toml_value(option.default)}")
        lines.append("")
    return "\n".join(lines)


def _convert(option: Option, value: Any, where: str, base: Path | None) -> Any:
    """`value` checked and converted to the option's type; strings (env) are parsed."""

    def fail(expected: str) -> ConfigError:
        return ConfigError(f"{where}: {option.name} must be {expected}, got {value!r}")

    kind = option.kind
    from_text = isinstance(value, str) and kind not in ("str", "path", "level", "format")
    if kind == "bool":
        if isinstance(value, bool):
            return value
        if from_text and value.strip().lower() in ("true", "1", "yes", "on"):
            return True
        if from_text and value.strip().lower() in ("false", "0", "no", "off"):
            return False
        raise fail("true or false")
    if kind in ("int", "port"):
        if from_text:
            try:
                value = int(value.strip(), 0)
            except ValueError:
                raise fail("an integer") from None
        if not isinstance(value, int) or isinstance(value, bool):
            raise fail("an integer")
        if kind == "port" and not 0 <= value <= 65535:
            raise fail("a port number 0-65535")
        return value
    if kind == "float":
        if from_text:
            try:
                value = float(value.strip())
            except ValueError:
                raise fail("a number") from None
        if not isinstance(value, int | float) or isinstance(value, bool):
            raise fail("a number")
        return float(value)
    if kind == "list":
        if from_text:
            return [item.strip() for item in value.split(",") if item.strip()]
        if not isinstance(value, list) or not all(isinstance(i, str) for i in value):
            raise fail("a list of strings")
        return list(value)
    if not isinstance(value, str):
        raise fail("a string")
    if kind == "path":
        if not value:
            raise fail("a non-empty path")
        path = Path(value).expanduser()
        return path if path.is_absolute() or base is None else base / path
    if kind == "level" and value not in ("debug", "info", "warning", "error"):
        raise fail("one of debug, info, warning, error")
    if kind == "format" and value not in ("auto", "json", "console"):
        raise fail("one of auto, json, console")
    return value


def _suggest(name: str, choices: list[str]) -> str:
    close = difflib.get_close_matches(name, choices, n=1)
    return f" (did you mean {close[0]}?)" if close else ""


def _read_file(path: Path) -> dict[str, Any]:
    try:
        with open(path, "rb") as handle:
            return tomllib.load(handle)
    except FileNotFoundError:
        raise ConfigError(f"config file {path} not found") from None
    except OSError as exc:
        raise ConfigError(f"cannot read config file {path}: {exc.strerror}") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"config file {path} is not valid TOML: {exc}") from None


def load_config(
    path: Path | None,
    cli_overrides: Mapping[str, Any] | None = None,
    *,
    environ: Mapping[str, str] | None = None,
    require: tuple[str, ...] = REQUIRED,
) -> NodeSettings:
    """Defaults, then the TOML file at `path`, then MEDLEDGER_<SECTION>_<KEY> variables, then
    `cli_overrides` ({"rpc.port": 8547, ...}, already typed by click). Raises ConfigError."""
    environ = os.environ if environ is None else environ
    values: dict[str, Any] = {o.name: o.default for o in SCHEMA}
    sources: dict[str, str] = dict.fromkeys(values, "default")

    if path is not None:
        doc = _read_file(path)
        base = Path(path).resolve().parent
        where = f"config file {path}"
        for section, table in doc.items():
            if section not in SECTIONS:
                raise ConfigError(f"{where}: unknown section [{section}]"
                                  f"{_suggest(section, list(SECTIONS))}")
            if not isinstance(table, dict):
                raise ConfigError(f"{where}: {section} must be a [{section}] table")
            for key, value in table.items():
                name = f"{section}.{key}"
                option = OPTIONS.get(name)
                if option is None:
                    keys = [o.key for o in SCHEMA if o.section == section]
                    raise ConfigError(f"{where}: unknown option {name}{_suggest(key, keys)}")
                values[name] = _convert(option, value, where, base)
                sources[name] = f"file {path}"

    env_names = {o.env: o for o in SCHEMA}
    for variable, text in environ.items():
        if not variable.startswith(ENV_PREFIX):
            continue
        option = env_names.get(variable)
        if option is None:
            section = variable[len(ENV_PREFIX):].split("_", 1)[0].lower()
            if section in SECTIONS:
                raise ConfigError(f"environment: unknown option variable {variable}"
                                  f"{_suggest(variable, list(env_names))}")
            continue  # MEDLEDGER_PASSPHRASE and friends are not config options
        values[option.name] = _convert(option, text, f"environment {variable}", Path.cwd())
        sources[option.name] = f"env {variable}"

    for name, value in (cli_overrides or {}).items():
        option = OPTIONS.get(name)
        if option is None:
            raise ConfigError(f"unknown option {name}{_suggest(name, list(OPTIONS))}")
        values[name] = _convert(option, value if not isinstance(value, tuple) else list(value),
                                "command line", Path.cwd())
        sources[name] = "flag"

    _validate(values, sources, require)
    return NodeSettings(values=values, sources=sources)


def _validate(values: dict[str, Any], sources: dict[str, str], require: tuple[str, ...]) -> None:
    for name in require:
        if values[name] is None:
            option = OPTIONS[name]
            raise ConfigError(f"{name} is required: set [{option.section}] {option.key} in the "
                              f"config file, ${option.env}, or the command-line flag")
    for name in _POSITIVE:
        if values[name] <= 0:
            raise ConfigError(f"{name} must be positive, got {values[name]} ({sources[name]})")
    for name in _NON_NEGATIVE:
        if values[name] < 0:
            raise ConfigError(f"{name} must not be negative, got {values[name]} "
                              f"({sources[name]})")
    if values["p2p.peers"] and not values["p2p.enabled"]:
        raise ConfigError("p2p.peers needs p2p.enabled = true")
    for peer in values["p2p.peers"]:
        if not peer.startswith("/") or "/p2p/" not in peer:
            raise ConfigError(f"p2p.peers: {peer!r} is not a multiaddr like "
                              "/ip4/10.0.0.2/tcp/30303/p2p/16Uiu2...")
    if (values["node.passphrase_file"] is not None and values["node.key"] is None
            and not values["p2p.enabled"]):
        raise ConfigError("node.passphrase_file is set but there is no key to decrypt: no "
                          "node.key, and without p2p.enabled no node key either")
    if values["node.key"] is not None and values["node.node_key"] is not None:
        raise ConfigError("node.node_key and node.key are both set: a validator's node key is "
                          "its validator key; drop node.node_key")
    if values["node.node_key_passphrase_file"] is not None and values["node.key"] is not None:
        raise ConfigError("node.node_key_passphrase_file is set but this node uses node.key "
                          "(use node.passphrase_file)")
    if values["node.read_only"] and values["node.key"] is not None:
        raise ConfigError("node.read_only is set with node.key: a read-only (auditor) node does "
                          "not seal blocks; drop node.key")


CLI_PARAMS: dict[str, str] = {
    "datadir": "node.datadir", "genesis_path": "node.genesis", "key_path": "node.key",
    "passphrase_file": "node.passphrase_file", "node_key_file": "node.node_key",
    "node_key_passphrase_file": "node.node_key_passphrase_file",
    "rpc_host": "rpc.host", "rpc_port": "rpc.port",
    "ws_port": "rpc.ws_port", "admin_rpc": "rpc.admin", "p2p_host": "p2p.host",
    "p2p_port": "p2p.port", "peers": "p2p.peers",
    "empty_block_period": "consensus.empty_block_period", "log_level": "log.level",
    "read_only": "node.read_only",
    "log_format": "log.format", "metrics": "metrics.enabled", "metrics_host": "metrics.host",
    "metrics_port": "metrics.port",
}
"""`node run`'s click parameter names and the options they override."""


def overrides_from_click(
    params: Mapping[str, Any], given: Callable[[str], bool]
) -> dict[str, Any]:
    """The overrides of the flags the operator actually gave (not click's defaults).

    `given(name)` tells whether a parameter came from the command line, e.g.
    `lambda n: ctx.get_parameter_source(n) is click.core.ParameterSource.COMMANDLINE`.
    A given --p2p-port also turns the network on.
    """
    overrides: dict[str, Any] = {}
    for param, name in CLI_PARAMS.items():
        if param in params and given(param) and params[param] is not None:
            overrides[name] = params[param]
    if "p2p.port" in overrides:
        overrides["p2p.enabled"] = True
    return overrides
