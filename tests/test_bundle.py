"""The MCP Bundle: the manifest validates, packs, holds what the host needs and nothing else, and starts.

Needs `npx` (Node.js) for the official `mcpb` tool and `uv` (a test dependency) to start the bundle
as Claude Desktop's `uv` server type does. CI sets EFILE_REQUIRE_BUNDLE_TOOLS=1, so there a missing
tool fails the test instead of skipping it.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
MCPB = "@anthropic-ai/mcpb@2.1.2"


def tool(name: str) -> str:
    found = shutil.which(name) or shutil.which(name, path=str(Path(sys.executable).parent))
    if found is None:
        if os.environ.get("EFILE_REQUIRE_BUNDLE_TOOLS"):
            pytest.fail(f"{name} is required here (EFILE_REQUIRE_BUNDLE_TOOLS is set) but not found")
        pytest.skip(f"{name} is not installed")
    return found


@pytest.fixture(scope="module")
def bundle(tmp_path_factory: pytest.TempPathFactory) -> Path:
    npx = tool("npx")
    out = tmp_path_factory.mktemp("bundle") / "efile-mcp.mcpb"
    validate = subprocess.run(
        [npx, "-y", MCPB, "validate", "manifest.json"], cwd=ROOT, capture_output=True, text=True, timeout=300
    )
    assert validate.returncode == 0 and "passes" in validate.stdout, validate.stdout + validate.stderr
    pack = subprocess.run([npx, "-y", MCPB, "pack", ".", str(out)], cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert pack.returncode == 0, pack.stdout + pack.stderr
    return out


def test_bundle_holds_the_package_and_no_environment(bundle: Path) -> None:
    with zipfile.ZipFile(bundle) as archive:
        names = archive.namelist()
        manifest = json.loads(archive.read("manifest.json"))
    assert {"manifest.json", "pyproject.toml", "README.md", "efile_mcp/__main__.py", "efile_mcp/server.py"} <= set(names)
    assert manifest == json.loads((ROOT / "manifest.json").read_text())
    assert manifest["server"]["type"] == "uv" and manifest["manifest_version"] == "0.4"
    forbidden = (".venv/", "venv/", "tests/", "benchmarks/", ".git/", "__pycache__", "site-packages")
    assert not [n for n in names if any(part in n for part in forbidden)]
    assert all(n.endswith((".py", ".json", ".toml", ".md")) for n in names), names
    assert bundle.stat().st_size < 500_000


def test_bundle_starts_the_way_the_host_starts_it(bundle: Path, tmp_path: Path) -> None:
    uv = tool("uv")
    with zipfile.ZipFile(bundle) as archive:
        archive.extractall(tmp_path / "app")
    manifest = json.loads((tmp_path / "app" / "manifest.json").read_text())
    config = manifest["server"]["mcp_config"]
    args = [a.replace("${__dirname}", str(tmp_path / "app")) for a in config["args"]] + ["--sandbox"]
    assert config["command"] == "uv"
    messages = [
        {"jsonrpc": "2.0", "id": 1, "method": "initialize", "params": {
            "protocolVersion": "2025-11-25", "capabilities": {}, "clientInfo": {"name": "host", "version": "0"}}},
        {"jsonrpc": "2.0", "method": "notifications/initialized"},
        {"jsonrpc": "2.0", "id": 2, "method": "tools/list"},
    ]
    proc = subprocess.Popen(
        [uv, *args], stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True,
        env={**os.environ, "UV_CACHE_DIR": str(tmp_path / "uv-cache"), "VIRTUAL_ENV": ""},
    )
    assert proc.stdin and proc.stdout
    try:
        proc.stdin.write("".join(json.dumps(m) + "\n" for m in messages))
        proc.stdin.flush()
        listing = None
        while listing is None:
            line = proc.stdout.readline()
            assert line, "the bundled server exited before answering"
            message = json.loads(line)
            if message.get("id") == 2:
                listing = message
        proc.stdin.close()
        proc.wait(timeout=30)
    finally:
        proc.kill()
    offered = [t["name"] for t in listing["result"]["tools"]]
    assert offered == [t["name"] for t in manifest["tools"]]
