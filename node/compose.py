"""A docker compose deployment of the devnet consortium: hospitals, an auditor and private IPFS.

The compose file is derived from the same plan the local devnet runs (`plan_devnet`) and the same
argument list (`node_command`), so the two cannot drift apart. Only what differs between a
process on the host and a container is rewritten:

- paths: genesis, keystores and passphrase are bind-mounted read-only under /config; each node's
  datadir is its own named volume at /data (the auditor's encrypted node key is mounted under
  /config/keys like the validators' keys);
- ports: every container uses the standard ports (RPC 8545, WebSocket 8546, libp2p 30303); the
  plan's ports become the host ports the RPC listeners are published on, on 127.0.0.1 only;
- addresses: listeners bind 0.0.0.0 inside the container and static peers are addressed by
  service name (/dns4/hospital-2/tcp/30303/p2p/<peer id>), resolved by compose's DNS.
"""

from __future__ import annotations

import base64
import dataclasses
import json
import re
import secrets
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat
from libp2p.peer.id import ID

from network import peer_id_from_secret
from node.devnet import DevnetNode, node_command, plan_devnet

NODE_IMAGE = "medledger:latest"
KUBO_IMAGE = "ipfs/kubo:v0.36.0"
NETWORK = "consortium"

CONFIG_DIR = Path("/config")
DATA_DIR = Path("/data")
CONTAINER_GENESIS = CONFIG_DIR / "genesis.json"
CONTAINER_PASSPHRASE = CONFIG_DIR / "passphrase.txt"
CONTAINER_KEYS = CONFIG_DIR / "keys"
CONTAINER_RPC_PORT = 8545
CONTAINER_WS_PORT = 8546
CONTAINER_P2P_PORT = 30303
NODE_PYTHON = "/opt/medledger/.venv/bin/python"  # the image's virtualenv (docker/Dockerfile)

KUBO_SWARM_PORT = 4001
KUBO_API_PORT = 5001
KUBO_REPO = "/data/ipfs"
KUBO_INIT_SCRIPT = "/container-init.d/050-medledger-private.sh"

HOST_RPC_PORT = 8545  # first host port: node i publishes RPC on 8545 + 2i and WS on 8546 + 2i
HOST_KUBO_API_PORT = 5001  # Kubo RPC of hospital i on 127.0.0.1:5001 + i - 1

COMPOSE_FILE = "docker-compose.yml"
COMPOSE_GENESIS = "genesis.json"
PASSPHRASE_FILE = "passphrase.txt"


class ComposeError(Exception):
    """The deployment cannot be written (e.g. the output directory is not empty)."""


@dataclasses.dataclass(frozen=True)
class ContainerNode(DevnetNode):
    """A devnet node as seen from inside its container: peers dial it by service name."""

    def multiaddr(self) -> str:
        return f"/dns4/{self.name}/tcp/{self.p2p_port}/p2p/{peer_id_from_secret(self.node_key)}"


def container_view(node: DevnetNode) -> ContainerNode:
    """`node` with container paths and the standard in-container ports."""
    key_path = None if node.key_path is None else CONTAINER_KEYS / node.key_path.name
    node_key_path = (
        None if node.node_key_path is None else CONTAINER_KEYS / node.node_key_path.name
    )
    return ContainerNode(
        name=node.name, datadir=DATA_DIR, key_path=key_path, node_key=node.node_key,
        rpc_port=CONTAINER_RPC_PORT, ws_port=CONTAINER_WS_PORT, p2p_port=CONTAINER_P2P_PORT,
        node_key_path=node_key_path,
    )


def container_command(node: DevnetNode, nodes: Sequence[DevnetNode]) -> list[str]:
    """The image's arguments (its ENTRYPOINT is `medledger`) for `node` of the devnet plan."""
    view = container_view(node)
    views = [view if other is node else container_view(other) for other in nodes]
    command = node_command(view, views, CONTAINER_GENESIS, CONTAINER_PASSPHRASE)
    prefix = [sys.executable, "-m", "node"]
    if command[:3] != prefix:
        raise ComposeError(f"node_command no longer starts with {prefix}: {command[:3]}")
    return [*command[3:], "--rpc-host", "0.0.0.0", "--p2p-host", "0.0.0.0"]


def rpc_probe(port: int = CONTAINER_RPC_PORT) -> str:
    """Python source that exits 0 when the JSON-RPC endpoint answers eth_blockNumber."""
    request = json.dumps({"jsonrpc": "2.0", "id": 1, "method": "eth_blockNumber", "params": []})
    return (
        "import json,sys,urllib.request as u;"
        f"r=u.urlopen(u.Request('http://127.0.0.1:{port}',data={request.encode()!r},"
        "headers={'Content-Type':'application/json'}),timeout=4);"
        "sys.exit(0 if 'result' in json.load(r) else 1)"
    )


@dataclasses.dataclass(frozen=True)
class KuboIdentity:
    """An Ed25519 libp2p identity in Kubo's config format (Identity.PeerID / Identity.PrivKey)."""

    peer_id: str
    private_key: str  # base64 of the protobuf-encoded private key

    @classmethod
    def generate(cls) -> KuboIdentity:
        key = Ed25519PrivateKey.generate()
        seed = key.private_bytes_raw()
        public = key.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw)
        # libp2p PublicKey/PrivateKey protobuf: field 1 KeyType (Ed25519 = 1), field 2 Data.
        public_proto = b"\x08\x01\x12\x20" + public
        private_proto = b"\x08\x01\x12\x40" + seed + public
        # Keys this small are inlined in the peer id with the identity multihash (0x00).
        peer_id = ID(b"\x00" + bytes([len(public_proto)]) + public_proto).to_base58()
        return cls(peer_id, base64.b64encode(private_proto).decode())


def swarm_key() -> str:
    """A fresh pre-shared key for a private IPFS swarm (docker/ipfs/README.md, step 1)."""
    return f"/key/swarm/psk/1.0.0/\n/base16/\n{secrets.token_hex(32)}\n"


def kubo_service_name(node_name: str) -> str:
    return f"ipfs-{node_name}"


def kubo_init_script(identity: KuboIdentity, peers: dict[str, KuboIdentity]) -> str:
    """Shell run by the kubo image before every daemon start (idempotent).

    Applies docker/ipfs/README.md's private-network settings except the `server` profile, whose
    address filters block the private ranges a compose network lives in.
    """
    peering = [
        {"ID": other.peer_id, "Addrs": [f"/dns4/{service}/tcp/{KUBO_SWARM_PORT}"]}
        for service, other in sorted(peers.items())
    ]
    settings = [
        ("--json", "Bootstrap", "[]"),
        ("--json", "Discovery.MDNS.Enabled", "false"),
        ("", "Routing.Type", "none"),
        ("--json", "Swarm.Transports.Network.QUIC", "false"),
        ("--json", "Swarm.Transports.Network.WebTransport", "false"),
        ("--json", "Swarm.Transports.Network.WebRTCDirect", "false"),
        ("", "Addresses.API", f"/ip4/0.0.0.0/tcp/{KUBO_API_PORT}"),
        ("", "Addresses.Gateway", "/ip4/127.0.0.1/tcp/8080"),
        ("--json", "Addresses.Swarm", json.dumps([f"/ip4/0.0.0.0/tcp/{KUBO_SWARM_PORT}"])),
        ("--json", "Peering.Peers", json.dumps(peering, separators=(",", ":"))),
    ]
    lines = [
        "#!/bin/sh",
        "# Generated by `medledger compose`: private IPFS swarm settings for this hospital.",
        "set -e",
        'config="$IPFS_PATH/config"',
        'rm -f "$IPFS_PATH/swarm.key"',
        f'cp {CONFIG_DIR}/ipfs/swarm.key "$IPFS_PATH/swarm.key"',
        'chmod 0400 "$IPFS_PATH/swarm.key"',
        "# Fixed identity, so that the other hospitals' Peering.Peers can name this node.",
        f"sed -i -e 's|\"PeerID\": \"[^\"]*\"|\"PeerID\": \"{identity.peer_id}\"|' "
        f"-e 's|\"PrivKey\": \"[^\"]*\"|\"PrivKey\": \"{identity.private_key}\"|' \"$config\"",
    ]
    for flag, key, value in settings:
        quoted = "'" + value.replace("'", "'\\''") + "'"
        lines.append(" ".join(part for part in ("ipfs config", flag, key, quoted) if part))
    return "\n".join(lines) + "\n"


def _scalar(value: object) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, str):
        return json.dumps(value)  # a JSON string is a valid YAML double-quoted scalar
    raise ComposeError(f"cannot write {type(value).__name__} to YAML")


_PLAIN_KEY = re.compile(r"[A-Za-z_][A-Za-z0-9_.-]*")
_YAML_WORDS = {"y", "n", "yes", "no", "on", "off", "true", "false", "null"}


def _key(key: object) -> str:
    text = str(key)
    if _PLAIN_KEY.fullmatch(text) and text.lower() not in _YAML_WORDS:
        return text
    return json.dumps(text)


def to_yaml(value: object, indent: int = 0) -> list[str]:
    """Block-style YAML lines for dicts, lists and scalars (strings always quoted).

    Small on purpose: the compose file only holds these types, and the node image then needs
    no YAML library.
    """
    pad = " " * indent
    lines: list[str] = []
    if isinstance(value, dict):
        for key, item in value.items():
            if isinstance(item, dict | list) and item:
                lines.append(f"{pad}{_key(key)}:")
                lines += to_yaml(item, indent + 2)
            else:
                empty = "{}" if isinstance(item, dict) else "[]"
                text = empty if isinstance(item, dict | list) else _scalar(item)
                lines.append(f"{pad}{_key(key)}: {text}")
    elif isinstance(value, list):
        for item in value:
            if isinstance(item, dict | list) and item:
                nested = to_yaml(item, indent + 2)
                lines.append(f"{pad}- {nested[0].lstrip()}")
                lines += nested[1:]
            else:
                empty = "{}" if isinstance(item, dict) else "[]"
                lines.append(f"{pad}- {empty if isinstance(item, dict | list) else _scalar(item)}")
    else:
        lines.append(pad + _scalar(value))
    return lines


def _bind(source: str, target: Path | str) -> dict[str, Any]:
    return {"type": "bind", "source": source, "target": str(target), "read_only": True}


def _volume(source: str, target: Path | str) -> dict[str, Any]:
    return {"type": "volume", "source": source, "target": str(target)}


def _published(host_port: int, container_port: int) -> dict[str, Any]:
    return {"target": container_port, "published": str(host_port), "host_ip": "127.0.0.1",
            "protocol": "tcp"}


def node_service(node: DevnetNode, nodes: Sequence[DevnetNode], image: str) -> dict[str, Any]:
    volumes = [_bind(f"./{COMPOSE_GENESIS}", CONTAINER_GENESIS)]
    key_file = node.key_path or node.node_key_path
    if key_file is not None:
        volumes.append(_bind(f"./keys/{key_file.name}", CONTAINER_KEYS / key_file.name))
        volumes.append(_bind(f"./{PASSPHRASE_FILE}", CONTAINER_PASSPHRASE))
    volumes.append(_volume(f"{node.name}-data", DATA_DIR))
    return {
        "image": image,
        "command": container_command(node, nodes),
        "restart": "unless-stopped",
        "environment": {"PYTHONUNBUFFERED": "1"},
        "volumes": volumes,
        "ports": [
            _published(node.rpc_port, CONTAINER_RPC_PORT),
            _published(node.ws_port, CONTAINER_WS_PORT),
        ],
        "networks": [NETWORK],
        "healthcheck": {
            "test": ["CMD", NODE_PYTHON, "-c", rpc_probe()],
            "interval": "10s", "timeout": "5s", "retries": 6, "start_period": "30s",
        },
    }


def kubo_service(node: DevnetNode, index: int) -> dict[str, Any]:
    """Kubo for hospital number `index` (1-based), its RPC API published as 5000 + index."""
    service = kubo_service_name(node.name)
    return {
        "image": KUBO_IMAGE,
        "restart": "unless-stopped",
        "environment": {"LIBP2P_FORCE_PNET": "1", "IPFS_PATH": KUBO_REPO},
        "volumes": [
            _bind("./ipfs/swarm.key", CONFIG_DIR / "ipfs" / "swarm.key"),
            _bind(f"./ipfs/{service}.sh", KUBO_INIT_SCRIPT),
            _volume(f"{service}-data", KUBO_REPO),
        ],
        "ports": [_published(HOST_KUBO_API_PORT + index - 1, KUBO_API_PORT)],
        "networks": [NETWORK],
        "healthcheck": {
            "test": ["CMD", "ipfs", f"--api=/ip4/127.0.0.1/tcp/{KUBO_API_PORT}", "id"],
            "interval": "10s", "timeout": "5s", "retries": 6, "start_period": "20s",
        },
    }



def write_compose(
    out_dir: Path,
    *,
    validators: int = 4,
    auditor: bool = True,
    chain_id: int = 1337,
    block_period: int = 1,
    empty_block_period: int = 10,
    prefund: dict[bytes, int] | None = None,
    image: str = NODE_IMAGE,
) -> Path:
    """Write genesis, keys, passphrase, IPFS settings and docker-compose.yml into `out_dir`.

    Refuses a non-empty `out_dir`: it would mix keys of two consortia. Returns the compose file.
    """
    if validators < 1:
        raise ComposeError("a consortium needs at least one validator")
    if out_dir.exists() and (not out_dir.is_dir() or any(out_dir.iterdir())):
        raise ComposeError(f"{out_dir} exists and is not an empty directory")
    _genesis, nodes, _passphrase = plan_devnet(
        out_dir, validators=validators, auditor=auditor, prefund=dict(prefund or {}),
        block_period=block_period, rpc_port=HOST_RPC_PORT, p2p_port=CONTAINER_P2P_PORT,
        chain_id=chain_id, empty_block_period=empty_block_period,
    )
    # plan_devnet lays out datadirs for host processes; in compose they are named volumes.
    for node in nodes:
        node.datadir.rmdir()

    ipfs_dir = out_dir / "ipfs"
    ipfs_dir.mkdir()
    swarm = ipfs_dir / "swarm.key"
    swarm.write_text(swarm_key())
    swarm.chmod(0o600)
    hospitals = [n for n in nodes if n.key_path is not None]
    identities = {kubo_service_name(n.name): KuboIdentity.generate() for n in hospitals}
    for service, identity in identities.items():
        script = ipfs_dir / f"{service}.sh"
        others = {name: other for name, other in identities.items() if name != service}
        script.write_text(kubo_init_script(identity, others))
        script.chmod(0o700)

    services: dict[str, Any] = {node.name: node_service(node, nodes, image) for node in nodes}
    for index, node in enumerate(hospitals, start=1):
        services[kubo_service_name(node.name)] = kubo_service(node, index)
    volume_names = [f"{node.name}-data" for node in nodes]
    volume_names += [f"{service}-data" for service in identities]
    compose = {
        "services": services,
        "networks": {NETWORK: {"driver": "bridge"}},
        "volumes": {name: {} for name in volume_names},
    }
    compose_file = out_dir / COMPOSE_FILE
    header = (
        "# Generated by `medledger compose`. Build the node image first:\n"
        "#   docker build -f docker/Dockerfile -t medledger .\n"
        f"# then: docker compose -f {COMPOSE_FILE} up\n"
    )
    compose_file.write_text(header + "\n".join(to_yaml(compose)) + "\n")
    return compose_file
