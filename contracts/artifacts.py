"""Load the committed solc-js artifacts (contracts/artifacts/*.json) without needing npm.

The node and the tests deploy and call contracts from these files; compile.mjs writes them
and CI proves they match the sources, so reading them is all the runtime needs.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

_ARTIFACTS_DIR = Path(__file__).resolve().parent / "artifacts"
# EVM code that solc does not produce (circomlibjs' Poseidon), in the same format; consulted when
# a name is not among the solc artifacts.
_EXTRA_ARTIFACTS_DIR = Path(__file__).resolve().parent / "zk" / "artifacts"


class ArtifactNotFoundError(KeyError):
    """Raised when no artifact with the requested contract name exists."""

    def __str__(self) -> str:
        # KeyError's default __str__ quotes the message; keep it readable.
        return str(self.args[0]) if self.args else ""


@dataclass(frozen=True)
class Artifact:
    """ABI and bytecode of one compiled contract."""

    name: str
    abi: list[dict[str, Any]]
    bytecode: bytes
    deployed_bytecode: bytes


def artifacts_dir() -> Path:
    """Directory holding the committed artifact JSON files."""
    return _ARTIFACTS_DIR


def available_artifacts(directory: Path | None = None) -> list[str]:
    """Sorted contract names that have an artifact."""
    directory = _ARTIFACTS_DIR if directory is None else directory
    if not directory.is_dir():
        return []
    return sorted(path.stem for path in directory.glob("*.json"))


def _decode_hex(value: Any, field: str, path: Path) -> bytes:
    if not isinstance(value, str) or not value.startswith("0x"):
        raise ValueError(f"{path}: field {field!r} must be a 0x-prefixed hex string")
    try:
        return bytes.fromhex(value[2:])
    except ValueError as exc:
        raise ValueError(f"{path}: field {field!r} is not valid hex: {exc}") from exc


def load_artifact(name: str, directory: Path | None = None) -> Artifact:
    """Load <directory>/<name>.json (default: contracts/artifacts, then contracts/zk/artifacts);
    unknown names list others."""
    if directory is None:
        extra = _EXTRA_ARTIFACTS_DIR / f"{name}.json"
        plain = "/" not in name and "\\" not in name and not name.startswith(".")
        if plain and name and not (_ARTIFACTS_DIR / f"{name}.json").is_file() and extra.is_file():
            directory = _EXTRA_ARTIFACTS_DIR
        else:
            directory = _ARTIFACTS_DIR
    path = directory / f"{name}.json"
    if not name or "/" in name or "\\" in name or name.startswith(".") or not path.is_file():
        available = ", ".join(available_artifacts(directory)) or "none"
        raise ArtifactNotFoundError(
            f"no contract artifact named {name!r} in {directory} (available: {available})"
        )
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as exc:
        raise ValueError(f"{path}: not valid JSON: {exc}") from exc
    if not isinstance(data, dict):
        raise ValueError(f"{path}: artifact must be a JSON object")
    if data.get("contractName") != name:
        raise ValueError(
            f"{path}: contractName {data.get('contractName')!r} does not match file name {name!r}"
        )
    abi = data.get("abi")
    if not isinstance(abi, list) or not all(isinstance(entry, dict) for entry in abi):
        raise ValueError(f"{path}: field 'abi' must be a list of objects")
    return Artifact(
        name=name,
        abi=abi,
        bytecode=_decode_hex(data.get("bytecode"), "bytecode", path),
        deployed_bytecode=_decode_hex(data.get("deployedBytecode"), "deployedBytecode", path),
    )
