"""`medledger compose`: the docker compose deployment matches the devnet it is derived from.

No Docker engine runs here, so these tests check the generated files themselves (parsed with
PyYAML), the node's ability to dial peers by DNS name (as compose's service DNS requires), the
container health probe against a real node, and the Dockerfile's consistency with the repo.
"""

from __future__ import annotations

import base64
import fnmatch
import re
import socket
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import dns.asyncresolver
import dns.message
import dns.rcode
import dns.rrset
import pytest
import trio
import yaml
from click.testing import CliRunner
from eth_keys import keys
from libp2p.crypto.ed25519 import Ed25519PrivateKey as Libp2pEd25519PrivateKey
from libp2p.peer.id import ID

from genesis.schema import load_genesis
from network import NetworkConfig, P2PNode, peer_id_from_secret
from node.cli_compose import compose_command
from node.cli_node import devnet_account_keys
from node.compose import KUBO_IMAGE, NODE_PYTHON, ComposeError, rpc_probe, to_yaml, write_compose
from node.devnet import DevnetNode, node_command
from node.keystore import read_keystore
from tests.nodeproc import new_node
from tests.test_network_harness import WAIT, FakeChain, Runner, allow, new_key, trio_test

REPO = Path(__file__).resolve().parent.parent
HOSPITALS = [f"hospital-{i}" for i in range(1, 5)]
NODES = [*HOSPITALS, "auditor"]
KUBOS = [f"ipfs-{name}" for name in HOSPITALS]


@pytest.fixture(scope="module")
def consortium(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, Any]]:
    out = tmp_path_factory.mktemp("compose") / "consortium"
    result = CliRunner().invoke(
        compose_command, ["--out", str(out), "--chain-id", "4242", "--block-period", "2"]
    )
    assert result.exit_code == 0, result.output
    text = (out / "docker-compose.yml").read_text()
    assert "$" not in text  # compose would interpolate it
    return out, yaml.safe_load(text)


def _keys(out: Path) -> dict[str, bytes]:
    passphrase = (out / "passphrase.txt").read_text().strip()
    found = {name: read_keystore(out / "keys" / f"{name}.json", passphrase) for name in HOSPITALS}
    found["auditor"] = read_keystore(out / "keys" / "auditor.node-key.json", passphrase)
    return found


def _host_plan(out: Path, root: Path) -> list[DevnetNode]:
    """The plan `medledger devnet --nodes 4 --auditor` makes for these keys on the host."""
    node_keys = _keys(out)
    return [
        DevnetNode(
            name=name, datadir=root / name,
            key_path=None if name == "auditor" else root / "keys" / f"{name}.json",
            node_key=node_keys[name], rpc_port=8545 + 2 * i, ws_port=8546 + 2 * i,
            p2p_port=30303 + i,
            node_key_path=root / "keys" / f"{name}.node-key.json" if name == "auditor" else None,
        )
        for i, name in enumerate(NODES)
    ]


def _documented_rewrite(command: list[str], node: DevnetNode, plan: list[DevnetNode]) -> list[str]:
    """docker/README.md's rewrites of a devnet command line for a container."""
    assert command[:3] == [sys.executable, "-m", "node"]
    by_port = {n.p2p_port: n.name for n in plan}
    fixed = {"--datadir": "/data", "--genesis": "/config/genesis.json",
             "--passphrase-file": "/config/passphrase.txt",
             "--node-key-passphrase-file": "/config/passphrase.txt", "--rpc-port": "8545",
             "--ws-port": "8546", "--p2p-port": "30303"}
    out: list[str] = []
    args = iter(command[3:])
    for arg in args:
        out.append(arg)
        if arg in fixed:
            next(args)
            out.append(fixed[arg])
        elif arg in ("--key", "--node-key-file"):
            out.append(f"/config/keys/{Path(next(args)).name}")
        elif arg == "--peer":
            match = re.fullmatch(r"/ip4/127\.0\.0\.1/tcp/(\d+)/p2p/(\w+)", next(args))
            assert match is not None
            out.append(f"/dns4/{by_port[int(match[1])]}/tcp/30303/p2p/{match[2]}")
    return [*out, "--rpc-host", "0.0.0.0", "--p2p-host", "0.0.0.0"]


def test_services_are_the_devnet_nodes_and_one_kubo_per_hospital(
    consortium: tuple[Path, dict[str, Any]],
) -> None:
    _out, compose = consortium
    assert list(compose["services"]) == [*NODES, *KUBOS]
    for name in NODES:
        assert compose["services"][name]["image"] == "medledger:latest"
        assert compose["services"][name]["networks"] == ["consortium"]
    for name in KUBOS:
        assert compose["services"][name]["image"] == KUBO_IMAGE
    assert re.fullmatch(r"ipfs/kubo:v\d+\.\d+\.\d+", KUBO_IMAGE)  # pinned, never :latest
    assert compose["networks"] == {"consortium": {"driver": "bridge"}}
    assert set(compose["volumes"]) == {f"{name}-data" for name in [*NODES, *KUBOS]}


def test_each_command_is_the_devnet_command_with_container_paths(
    consortium: tuple[Path, dict[str, Any]], tmp_path: Path,
) -> None:
    out, compose = consortium
    plan = _host_plan(out, tmp_path)
    for node in plan:
        expected = node_command(node, plan, tmp_path / "genesis.json", tmp_path / "passphrase.txt")
        assert compose["services"][node.name]["command"] == _documented_rewrite(
            expected, node, plan
        )


def test_static_peers_are_every_other_node_by_service_name(
    consortium: tuple[Path, dict[str, Any]],
) -> None:
    out, compose = consortium
    node_keys = _keys(out)
    for name in NODES:
        command = compose["services"][name]["command"]
        peers = [command[i + 1] for i, arg in enumerate(command) if arg == "--peer"]
        assert sorted(peers) == sorted(
            f"/dns4/{other}/tcp/30303/p2p/{peer_id_from_secret(node_keys[other])}"
            for other in NODES if other != name
        )
        p2p_port = command[command.index("--p2p-port") + 1]
        assert p2p_port == "30303" and command[command.index("--p2p-host") + 1] == "0.0.0.0"


def test_genesis_validators_are_the_keystores(consortium: tuple[Path, dict[str, Any]]) -> None:
    out, _compose = consortium
    genesis = load_genesis(out / "genesis.json")
    node_keys = _keys(out)

    def address(key: bytes) -> bytes:
        return keys.PrivateKey(key).public_key.to_canonical_address()

    assert list(genesis.validators) == [address(node_keys[name]) for name in HOSPITALS]
    assert list(genesis.node_allowlist) == [address(node_keys["auditor"])]
    assert genesis.chain_id == 4242 and genesis.qbft.block_period_seconds == 2
    for dev_key in devnet_account_keys(5):
        assert genesis.alloc[address(dev_key)].balance == 10**24
    assert not (out / "hospital-1").exists() and not (out / "auditor").exists()


def test_ports_are_published_on_loopback_only(consortium: tuple[Path, dict[str, Any]]) -> None:
    _out, compose = consortium
    published: list[str] = []
    for name, service in compose["services"].items():
        for port in service.get("ports", []):
            assert isinstance(port, dict), f"{name}: short port syntax hides host_ip"
            assert port["host_ip"] == "127.0.0.1", name
            published.append(port["published"])
    expected_rpc = [str(8545 + i) for i in range(2 * len(NODES))]
    assert published == [*expected_rpc, "5001", "5002", "5003", "5004"]
    assert "expose" not in str(compose)


def test_config_is_mounted_read_only_and_data_on_named_volumes(
    consortium: tuple[Path, dict[str, Any]],
) -> None:
    out, compose = consortium
    for name, service in compose["services"].items():
        for volume in service["volumes"]:
            if volume["type"] == "bind":
                assert volume["read_only"] is True, (name, volume)
                assert (out / volume["source"]).is_file(), (name, volume)
            else:
                assert volume["type"] == "volume" and volume["source"] == f"{name}-data"
    hospital = {v["target"]: v["source"] for v in compose["services"]["hospital-3"]["volumes"]}
    assert hospital == {"/config/genesis.json": "./genesis.json",
                        "/config/keys/hospital-3.json": "./keys/hospital-3.json",
                        "/config/passphrase.txt": "./passphrase.txt", "/data": "hospital-3-data"}
    auditor = {v["target"]: v["source"] for v in compose["services"]["auditor"]["volumes"]}
    assert auditor == {"/config/genesis.json": "./genesis.json", "/data": "auditor-data",
                       "/config/keys/auditor.node-key.json": "./keys/auditor.node-key.json",
                       "/config/passphrase.txt": "./passphrase.txt"}


def _init_script(out: Path, kubo: str) -> str:
    return (out / "ipfs" / f"{kubo}.sh").read_text()


def _kubo_identity(script: str) -> tuple[str, str]:
    match = re.search(r'"PeerID": "(\w+)"\|.*"PrivKey": "([A-Za-z0-9+/=]+)"\|', script)
    assert match is not None
    return match[1], match[2]


def test_kubo_nodes_form_a_private_swarm_of_the_hospitals(
    consortium: tuple[Path, dict[str, Any]],
) -> None:
    out, compose = consortium
    swarm = (out / "ipfs" / "swarm.key").read_text().splitlines()
    assert swarm[:2] == ["/key/swarm/psk/1.0.0/", "/base16/"]
    assert re.fullmatch(r"[0-9a-f]{64}", swarm[2])
    identities = {kubo: _kubo_identity(_init_script(out, kubo)) for kubo in KUBOS}
    for kubo in KUBOS:
        service = compose["services"][kubo]
        assert service["environment"]["LIBP2P_FORCE_PNET"] == "1"
        mounts = {v["target"]: v["source"] for v in service["volumes"]}
        assert mounts["/config/ipfs/swarm.key"] == "./ipfs/swarm.key"
        assert mounts["/container-init.d/050-medledger-private.sh"] == f"./ipfs/{kubo}.sh"
        script = _init_script(out, kubo)
        assert "ipfs config --json Bootstrap '[]'" in script
        assert "ipfs config Routing.Type 'none'" in script
        assert "ipfs config --json Discovery.MDNS.Enabled 'false'" in script
        assert "ipfs config --json Swarm.Transports.Network.QUIC 'false'" in script
        peering = re.search(r"Peering\.Peers '(.*)'", script)
        assert peering is not None
        assert yaml.safe_load(peering[1]) == [
            {"ID": identities[other][0], "Addrs": [f"/dns4/{other}/tcp/4001"]}
            for other in KUBOS if other != kubo
        ]
        # The fixed identity is a valid libp2p Ed25519 key whose peer id is the one announced.
        peer_id, private_key = identities[kubo]
        proto = base64.b64decode(private_key)
        assert proto[:4] == b"\x08\x01\x12\x40"
        key = Libp2pEd25519PrivateKey.from_bytes(proto[4:36])
        assert key.get_public_key().to_bytes() == proto[36:]
        assert ID.from_pubkey(key.get_public_key()).to_base58() == peer_id
    assert len({peer for peer, _ in identities.values()}) == len(KUBOS)


def test_refuses_a_directory_that_already_holds_a_consortium(
    consortium: tuple[Path, dict[str, Any]],
) -> None:
    out, _compose = consortium
    before = (out / "genesis.json").read_bytes()
    result = CliRunner().invoke(compose_command, ["--out", str(out)])
    assert result.exit_code != 0 and "not an empty directory" in result.output
    assert (out / "genesis.json").read_bytes() == before
    with pytest.raises(ComposeError):
        write_compose(out)


def test_options_change_the_consortium(tmp_path: Path) -> None:
    compose_file = write_compose(tmp_path / "c", validators=2, auditor=False)
    compose = yaml.safe_load(compose_file.read_text())
    assert list(compose["services"]) == ["hospital-1", "hospital-2", "ipfs-hospital-1",
                                         "ipfs-hospital-2"]
    assert len(load_genesis(tmp_path / "c" / "genesis.json").validators) == 2
    assert not (tmp_path / "c" / "keys" / "auditor.node-key.json").exists()


def test_yaml_writer_round_trips_awkward_strings() -> None:
    value = {"a": ["yes", "1", "", "x: y", "quote \" and ' and \\", "line\nbreak", True, 7],
             "on": {}, "list": [], "nested": [{"k": ["v"]}, ["p", "q"]], "with space": "z"}
    assert yaml.safe_load("\n".join(to_yaml(value))) == value


def test_node_healthcheck_probe_against_a_real_node(
    consortium: tuple[Path, dict[str, Any]], tmp_path: Path,
) -> None:
    _out, compose = consortium
    test = compose["services"]["hospital-1"]["healthcheck"]["test"]
    assert test[:3] == ["CMD", NODE_PYTHON, "-c"] and test[3] == rpc_probe(8545)
    node = new_node(tmp_path).start()
    try:
        port = int(node.http.rsplit(":", 1)[1].rstrip("/"))
        ok = subprocess.run([sys.executable, "-c", rpc_probe(port)], capture_output=True)
        assert ok.returncode == 0, ok.stderr
    finally:
        node.stop()
    down = subprocess.run([sys.executable, "-c", rpc_probe(port)], capture_output=True)
    assert down.returncode != 0


class _DnsServer:
    """A real DNS server on loopback answering A queries from a fixed table."""

    def __init__(self, table: dict[str, str]) -> None:
        self.table = table
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.bind(("127.0.0.1", 0))
        self.sock.settimeout(0.2)
        self.port = self.sock.getsockname()[1]
        self.queries: list[str] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._serve, daemon=True)
        self._thread.start()

    def _serve(self) -> None:
        while not self._stop.is_set():
            try:
                data, peer = self.sock.recvfrom(4096)
            except TimeoutError:
                continue
            query = dns.message.from_wire(data)
            reply = dns.message.make_response(query)
            question = query.question[0]
            name = question.name.to_text().rstrip(".")
            self.queries.append(name)
            if name in self.table and question.rdtype == dns.rdatatype.A:
                reply.answer.append(dns.rrset.from_text(question.name, 5, "IN", "A",
                                                        self.table[name]))
            elif name not in self.table:
                reply.set_rcode(dns.rcode.NXDOMAIN)
            self.sock.sendto(reply.to_wire(), peer)

    def close(self) -> None:
        self._stop.set()
        self._thread.join()
        self.sock.close()


@pytest.fixture
def service_dns(monkeypatch: pytest.MonkeyPatch) -> Iterator[_DnsServer]:
    """Route libp2p's DNS lookups to a loopback DNS server (compose's 127.0.0.11 stands in)."""
    server = _DnsServer({"hospital-2": "127.0.0.1"})
    real = dns.asyncresolver.Resolver

    def resolver(*_args: object, **_kwargs: object) -> dns.asyncresolver.Resolver:
        instance = real(configure=False)
        instance.nameservers = ["127.0.0.1"]
        instance.port = server.port
        return instance

    monkeypatch.setattr(dns.asyncresolver, "Resolver", resolver)
    yield server
    server.close()


def test_node_dials_a_static_peer_by_dns4_service_name(service_dns: _DnsServer) -> None:
    ka, kb = new_key(), new_key()
    allowlist = allow(ka, kb)

    def config(port: int, peers: tuple[str, ...]) -> NetworkConfig:
        return NetworkConfig(chain_id=1337, genesis_hash=b"\x01" * 32, listen_host="127.0.0.1",
                             listen_port=port, static_peers=peers)

    @trio_test
    async def run() -> None:
        async with trio.open_nursery() as nursery:
            runner = Runner(nursery)
            b = await runner.start(P2PNode(config(0, ()), kb, allowlist, FakeChain()))
            port = int(b.listen_addrs[0].split("/tcp/")[1].split("/")[0])
            spec = f"/dns4/hospital-2/tcp/{port}/p2p/{b.peer_id}"
            a = await runner.start(P2PNode(config(0, (spec,)), ka, allowlist, FakeChain()))
            with trio.fail_after(WAIT):
                await a.wait_connected(b.peer_id)
            (peer,) = a.peers()
            assert peer.peer_id == b.peer_id and peer.static
            nursery.cancel_scope.cancel()

    run()
    assert "hospital-2" in service_dns.queries


def _dockerfile() -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) with continuation lines joined and comments dropped."""
    lines = (REPO / "docker" / "Dockerfile").read_text().splitlines()
    instructions: list[tuple[str, str]] = []
    current = ""
    for line in lines:
        if line.strip().startswith("#") and not current:
            continue
        current += line.rstrip("\\").strip() + " "
        if not line.rstrip().endswith("\\"):
            if current.strip():
                word, _, rest = current.strip().partition(" ")
                instructions.append((word.upper(), rest.strip()))
            current = ""
    return instructions


def test_dockerfile_copies_existing_sources_and_installs_from_the_lock() -> None:
    instructions = _dockerfile()
    ignore = (REPO / "docker" / "Dockerfile.dockerignore").read_text().splitlines()
    patterns = [p.strip() for p in ignore if p.strip() and not p.startswith("#")]

    def sent_to_builder(path: str) -> bool:
        included = True
        for pattern in patterns:
            negate = pattern.startswith("!")
            body = pattern.lstrip("!").rstrip("/")
            if fnmatch.fnmatch(path, body):
                included = negate
        return included

    copies = [rest for word, rest in instructions if word == "COPY" and "--from" not in rest]
    assert copies
    for rest in copies:
        *sources, _dest = rest.split()
        for source in sources:
            assert (REPO / source).exists(), f"COPY source {source} missing"
            assert sent_to_builder(source), f"COPY source {source} excluded by .dockerignore"
    # Every package the wheel ships is in the image.
    copied = {s.rstrip("/") for rest in copies for s in rest.split()[:-1]}
    pyproject = (REPO / "pyproject.toml").read_text()
    packages = re.search(r'packages = \[(.*?)\]', pyproject)
    assert packages is not None
    assert set(re.findall(r'"(\w+)"', packages[1])) <= copied
    assert not sent_to_builder(".venv") and not sent_to_builder("tests")

    runs = [rest for word, rest in instructions if word == "RUN"]
    syncs = [r for r in runs if "uv sync" in r]
    assert syncs and all("--locked" in r and "--no-dev" in r for r in syncs)
    assert all("pip install" not in r or "uv==" in r for r in runs)  # nothing unpinned
    assert any("libgmp-dev" in r for r in runs)  # fastecdsa builds from source
    froms = [rest for word, rest in instructions if word == "FROM"]
    assert all(f.startswith("python:3.11-slim") for f in froms)
    entrypoint = dict(instructions)["ENTRYPOINT"]
    assert entrypoint == '["/opt/medledger/.venv/bin/medledger"]'
    assert Path(NODE_PYTHON).parent == Path("/opt/medledger/.venv/bin")
