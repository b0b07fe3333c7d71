"""HTTP needs `Authorization: Bearer <token>` on every request: EFILE_HTTP_TOKEN, or a generated one in a 0600 file."""

from __future__ import annotations

import json
import os
import stat
from pathlib import Path

import httpx2 as httpx
import pytest

from efile_mcp.sandbox import RunningSandbox

from ..conftest import call_ok, run_cli
from .test_http import HTTP_TOKEN, connect, free_port, http_process, settings_env

INITIALIZE = {
    "jsonrpc": "2.0",
    "id": 1,
    "method": "initialize",
    "params": {"protocolVersion": "2025-11-25", "capabilities": {}, "clientInfo": {"name": "x", "version": "0"}},
}
MCP_HEADERS = {"Accept": "application/json, text/event-stream", "Content-Type": "application/json"}


def assert_refused(answer: httpx.Response) -> None:
    assert answer.status_code == 401
    assert answer.headers["www-authenticate"] == 'Bearer realm="efile-mcp"'
    (line,) = answer.text.strip().splitlines()
    body = json.loads(line)
    assert body["error"] == "unauthorized" and "Authorization: Bearer <token>" in body["message"]
    assert HTTP_TOKEN not in answer.text


async def test_a_request_without_the_right_bearer_token_gets_401_and_the_right_one_works(
    sandbox: RunningSandbox, tmp_path: Path
) -> None:
    with http_process(env=settings_env(sandbox, tmp_path / "audit.jsonl")) as (url, stderr):
        assert_refused(httpx.post(url, json=INITIALIZE, headers=MCP_HEADERS, timeout=10))
        for wrong in (
            f"Bearer {HTTP_TOKEN}x",
            f"Bearer {HTTP_TOKEN[:-1]}",
            "Bearer",
            f"Basic {HTTP_TOKEN}",
            HTTP_TOKEN,
        ):
            assert_refused(
                httpx.post(url, json=INITIALIZE, headers={**MCP_HEADERS, "Authorization": wrong}, timeout=10)
            )
        assert_refused(httpx.get(url, timeout=10))  # every method, every path
        assert_refused(httpx.get(url.replace("/mcp", "/other"), timeout=10))
        ok = httpx.post(
            url, json=INITIALIZE, headers={**MCP_HEADERS, "Authorization": f"bearer {HTTP_TOKEN}"}, timeout=10
        )
        assert ok.status_code == 200
        async with connect(url) as client:
            assert "remove_paths" in {tool.name for tool in (await client.list_tools()).tools}
            listing = await call_ok(client, "list_files", {"path": f"{sandbox.home}/scratch"})
        assert {entry["name"] for entry in listing["entries"]} >= {"big-run", "tmp.log"}
        log = stderr.read_text()
    assert HTTP_TOKEN not in log
    assert "Authorization: Bearer <EFILE_HTTP_TOKEN>" not in log  # INFO, and the default level is WARNING


async def test_without_efile_http_token_a_generated_token_is_kept_in_a_private_file_named_on_stderr(
    sandbox: RunningSandbox, tmp_path: Path
) -> None:
    state = tmp_path / "state"
    env = settings_env(sandbox, tmp_path / "audit.jsonl", EFILE_STATE_DIR=str(state))
    del env["EFILE_HTTP_TOKEN"]
    token_file = state / "http-token"
    with http_process(env=env) as (url, stderr):
        token = token_file.read_text().strip()
        assert stat.S_IMODE(token_file.stat().st_mode) == 0o600 and token_file.stat().st_uid == os.getuid()
        assert len(token) >= 40
        assert_refused(httpx.post(url, json=INITIALIZE, headers=MCP_HEADERS, timeout=10))
        async with connect(url, token=token) as client:
            await call_ok(client, "storage_status", {})
        first = stderr.read_text()
    (line,) = [line for line in first.splitlines() if "http-token" in line]
    assert line.startswith("efile-mcp WARNING ") and str(token_file) in line and "(made now)" in line
    assert "Authorization: Bearer <token>" in line
    assert token not in first

    with http_process(env=env) as (url, stderr):  # a restart keeps the token: client configs keep working
        async with connect(url, token=token) as client:
            await call_ok(client, "storage_status", {})
        second = stderr.read_text()
    assert token_file.read_text().strip() == token
    assert f"{token_file} (kept from an earlier start)" in second and token not in second


def test_a_token_file_other_users_can_read_is_refused_with_one_line(sandbox: RunningSandbox, tmp_path: Path) -> None:
    state = tmp_path / "state"
    state.mkdir()
    (state / "http-token").write_text("a-token-someone-may-have-read-0123456789\n")
    (state / "http-token").chmod(0o644)
    env = settings_env(sandbox, tmp_path / "audit.jsonl", EFILE_STATE_DIR=str(state))
    del env["EFILE_HTTP_TOKEN"]
    proc = run_cli("--transport", "http", "--port", str(free_port()), env=env)
    assert proc.returncode == 2 and proc.stdout == ""
    (line,) = proc.stderr.strip().splitlines()
    assert str(state / "http-token") in line and "readable by other users (mode 0644)" in line and "chmod 600" in line
    assert "someone-may-have-read" not in proc.stderr


@pytest.mark.parametrize(
    "token", ["short", "has a space in it 0123456789", "nön-ascii-0123456789", "team-a-token-0123456789,short"]
)
def test_an_unusable_efile_http_token_is_refused_with_one_line(
    sandbox: RunningSandbox, tmp_path: Path, token: str
) -> None:
    env = settings_env(sandbox, tmp_path / "audit.jsonl", EFILE_HTTP_TOKEN=token)
    proc = run_cli("--transport", "http", "--port", str(free_port()), env=env)
    assert proc.returncode == 2 and proc.stdout == ""
    (line,) = proc.stderr.strip().splitlines()
    assert line.startswith("efile-mcp: invalid setting EFILE_HTTP_TOKEN: use at least 16 printable ASCII characters")
    assert token not in line


def test_several_tokens_each_let_in_and_a_token_listed_twice_is_refused(tmp_path: Path) -> None:
    from efile_mcp.errors import ConfigError
    from efile_mcp.serve_http import http_token
    from efile_mcp.settings import Settings

    tokens = http_token(Settings(http_token=" team-a-token-0123456789 , team-b-token-0123456789 "))
    assert tokens.values == ("team-a-token-0123456789", "team-b-token-0123456789")
    assert "team-a" not in repr(tokens)
    with pytest.raises(ConfigError, match="listed twice"):
        http_token(Settings(http_token="team-a-token-0123456789,team-a-token-0123456789"))
