"""The committed web UI build (web/dist, served by the node under /ui/) equals a fresh Vite
build of web/src from web/package-lock.json, and the check notices when it does not."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow

REPO_ROOT = Path(__file__).resolve().parent.parent
WEB = REPO_ROOT / "web"


def _node() -> str:
    """The node executable, with web/node_modules installed from the lock file if absent."""
    node, npm = shutil.which("node"), shutil.which("npm")
    if node is None or npm is None:
        pytest.skip("node/npm not installed; CI installs them to check the web build")
    if not (WEB / "node_modules" / "vite").is_dir():
        subprocess.run([npm, "ci", "--prefix", str(WEB), "--no-audit", "--no-fund"],
                       check=True, capture_output=True, text=True, timeout=600)
    return node


def test_committed_build_matches_sources() -> None:
    node = _node()
    result = subprocess.run([node, str(WEB / "check-build.mjs")], capture_output=True,
                            text=True, timeout=300)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "web/dist matches the sources" in result.stdout


def test_check_detects_changed_stale_and_missing_files(tmp_path: Path) -> None:
    node = _node()
    work = tmp_path / "web"
    work.mkdir()
    for name in ("check-build.mjs", "package.json", "index.html", "vite.config.ts",
                 "tsconfig.json"):
        shutil.copy2(WEB / name, work / name)
    shutil.copytree(WEB / "src", work / "src")
    shutil.copytree(WEB / "dist", work / "dist")
    (work / "node_modules").symlink_to(WEB / "node_modules")
    artifacts = tmp_path / "contracts" / "artifacts"  # web/src imports the MedLedger ABI
    artifacts.mkdir(parents=True)
    shutil.copy2(REPO_ROOT / "contracts" / "artifacts" / "MedLedger.json", artifacts)

    index = work / "dist" / "index.html"
    index.write_text(index.read_text().replace("medledger", "medledger!"))
    (work / "dist" / "assets" / "old-build.js").write_text("stale")
    changed = subprocess.run([node, str(work / "check-build.mjs")], capture_output=True,
                             text=True, timeout=300)
    assert changed.returncode == 1
    assert "differs: web/dist/index.html" in changed.stderr
    assert "stale (no longer built): web/dist/assets/old-build.js" in changed.stderr

    shutil.rmtree(work / "dist")
    missing = subprocess.run([node, str(work / "check-build.mjs")], capture_output=True,
                             text=True, timeout=300)
    assert missing.returncode == 1 and "web/dist is missing" in missing.stderr
