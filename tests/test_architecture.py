"""The layers point one way, and the published manifest matches the server."""

from __future__ import annotations

import json
import subprocess
import sys
import tomllib
from pathlib import Path

from efile_mcp import __version__
from efile_mcp.tools.registry import TOOLS

ROOT = Path(__file__).resolve().parent.parent


def test_import_contracts_hold() -> None:
    lint = Path(sys.executable).with_name("lint-imports")
    proc = subprocess.run([str(lint), "--no-cache"], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    contracts = len(tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["importlinter"]["contracts"])
    assert f"{contracts} kept, 0 broken" in proc.stdout


def test_manifest_lists_exactly_the_tools_the_server_offers() -> None:
    manifest = json.loads((ROOT / "manifest.json").read_text())
    assert [tool["name"] for tool in manifest["tools"]] == [spec.name for spec in TOOLS]
    assert manifest["version"] == __version__
    env = manifest["server"]["mcp_config"]["env"]
    assert "EFILE_TOKEN" in env and manifest["user_config"]["efile_token"]["sensitive"] is True


def test_no_print_to_stdout_in_server_code() -> None:
    """stdout carries MCP messages only; the demo (a client) and a command's own report (marked) print."""
    offenders = []
    for path in (ROOT / "efile_mcp").rglob("*.py"):
        if path.name == "demo.py":
            continue
        for number, line in enumerate(path.read_text().splitlines(), 1):
            stripped = line.strip()
            if "# stdout: a command's report" in stripped and path.name == "cli.py":
                continue  # `efile-mcp purge` reports to cron on stdout; the server never runs this path
            if stripped.startswith("print(") and "file=sys.stderr" not in stripped:
                offenders.append(f"{path.relative_to(ROOT)}:{number}")
            if "sys.stdout" in stripped:
                offenders.append(f"{path.relative_to(ROOT)}:{number}")
    assert offenders == []
