"""Record store benchmark: envelope throughput vs raw AES-256-GCM, and a 1 GB put/get.

Run: `uv run python -m bench.records [--size-mb 1024] [--crypto-mb 256] [--dir DIR]`.
Peak RSS growth is measured with Linux's VmHWM (reset through /proc/self/clear_refs).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import tempfile
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from node.records.embedded import EmbeddedBlockstore
from node.records.envelope import DEFAULT_CHUNK_SIZE, Encryptor, default_workers, iter_decrypt
from node.records.keys import generate_private_key
from node.records.store import RecordStore

MIB = 1 << 20


def rss_reset() -> None:
    Path("/proc/self/clear_refs").write_text("5")


def rss_peak_mib() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError("no VmHWM in /proc/self/status")


def timed(fn: Callable[[], object]) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def chunks(total_mib: int, block: bytes) -> Iterator[bytes]:
    for _ in range(total_mib):
        yield block


def crypto_throughput(total_mib: int) -> dict[str, float]:
    key = AESGCM.generate_key(bit_length=256)
    aead = AESGCM(key)
    block = os.urandom(MIB)
    nonce = os.urandom(12)

    def raw_serial() -> None:
        for _ in range(total_mib):
            aead.encrypt(nonce, block, None)

    def raw_parallel() -> None:
        with ThreadPoolExecutor(default_workers()) as pool:
            list(pool.map(lambda _: aead.encrypt(nonce, block, None), range(total_mib)))

    def envelope_encrypt() -> bytes:
        encryptor = Encryptor(key)
        last = b""
        for piece in encryptor.encrypt(chunks(total_mib, block)):
            last = piece
        return last

    envelope = b"".join(Encryptor(key).encrypt(chunks(min(total_mib, 64), block)))

    def envelope_decrypt() -> None:
        for _ in iter_decrypt(envelope, key):
            pass

    sha3 = timed(lambda: [hashlib.sha3_256(block) for _ in range(total_mib)])
    results = {
        "raw_aes_gcm_1thread_MBps": total_mib / timed(raw_serial),
        "raw_aes_gcm_parallel_MBps": total_mib / timed(raw_parallel),
        "sha3_256_MBps": total_mib / sha3,
        "envelope_encrypt_MBps": total_mib / timed(envelope_encrypt),
        "envelope_decrypt_MBps": min(total_mib, 64) / timed(envelope_decrypt),
    }
    return {k: round(v * MIB / 1e6, 1) for k, v in results.items()}


def put_get(size_mib: int, directory: Path) -> dict[str, float]:
    src = directory / "plain.bin"
    with src.open("wb") as handle:
        block = os.urandom(MIB)
        for i in range(size_mib):
            handle.write(block[:-8] + i.to_bytes(8, "big"))
    key = generate_private_key()
    store = RecordStore(EmbeddedBlockstore(directory / "store"), chunk_size=DEFAULT_CHUNK_SIZE)
    rss_reset()
    base = rss_peak_mib()
    start = time.perf_counter()
    with src.open("rb") as handle:
        result = store.put(handle, [key.public_key()])
    put_s = time.perf_counter() - start
    put_growth = rss_peak_mib() - base
    rss_reset()
    base = rss_peak_mib()
    out = directory / "out.bin"
    start = time.perf_counter()
    store.read_to_file(result.record_cid, key, out, expected_sha3=result.sha3_256)
    get_s = time.perf_counter() - start
    get_growth = rss_peak_mib() - base
    assert out.stat().st_size == size_mib * MIB
    return {
        "size_MB": round(size_mib * MIB / 1e6, 1),
        "put_s": round(put_s, 2),
        "put_MBps": round(size_mib * MIB / 1e6 / put_s, 1),
        "put_peak_rss_growth_MiB": round(put_growth, 1),
        "get_s": round(get_s, 2),
        "get_MBps": round(size_mib * MIB / 1e6 / get_s, 1),
        "get_peak_rss_growth_MiB": round(get_growth, 1),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size-mb", type=int, default=1024, help="put/get size in MiB")
    parser.add_argument("--crypto-mb", type=int, default=256, help="throughput sample in MiB")
    parser.add_argument("--dir", type=Path, default=None, help="scratch directory")
    args = parser.parse_args()
    report: dict[str, object] = {"cpus": os.cpu_count(), "workers": default_workers()}
    report["crypto"] = crypto_throughput(args.crypto_mb)
    with tempfile.TemporaryDirectory(dir=args.dir) as tmp:
        report["put_get"] = put_get(args.size_mb, Path(tmp))
    growth = report["put_get"]
    assert isinstance(growth, dict)
    report["rss_growth_under_100MiB"] = (
        max(growth["put_peak_rss_growth_MiB"], growth["get_peak_rss_growth_MiB"]) < 100
    )
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
