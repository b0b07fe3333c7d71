"""The real thing: `efile-mcp` as a subprocess over stdio, as Claude Desktop starts it, in both protocol eras."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest
from mcp import Client, StdioServerParameters

from efile_mcp.sandbox import seed_sample_tree
from efile_mcp.tools.registry import TOOLS

from ..conftest import audit_lines, call_error, call_ok

HOME = "/public/home/demo"


def server_params(root: Path, audit: Path, *extra: str, env: dict[str, str] | None = None) -> StdioServerParameters:
    return StdioServerParameters(
        command=sys.executable,
        args=["-m", "efile_mcp", "--sandbox", str(root), "--audit-log", str(audit), *extra],
        env={"PYTHONPATH": os.pathsep.join(sys.path), **(env or {})},
    )


@pytest.mark.parametrize("mode", ["legacy", "auto"])
async def test_agent_session_over_stdio_removes_exactly_the_confirmed_paths(tmp_path: Path, mode: str) -> None:
    root = seed_sample_tree(tmp_path / "home")
    before = {p.relative_to(root) for p in root.rglob("*")}
    audit = tmp_path / "audit.jsonl"
    targets = [f"{HOME}/scratch/run-001", f"{HOME}/scratch/big-run", f"{HOME}/数据/结果.csv"]
    async with Client(
        server_params(root, audit, "--allowed-root", f"{HOME}/scratch", "--allowed-root", f"{HOME}/数据"), mode=mode
    ) as client:
        assert client.protocol_version == ("2025-11-25" if mode == "legacy" else "2026-07-28")
        tools = {tool.name: tool for tool in (await client.list_tools()).tools}
        assert set(tools) == {spec.name for spec in TOOLS}  # the registry says which tools there are
        plan = await call_ok(client, "remove_paths", {"paths": [*targets, f"{HOME}/notes.txt"]})
        assert plan["confirm_paths"] == targets  # notes.txt is outside the allowed roots
        done = await call_ok(
            client,
            "remove_paths",
            {"paths": targets, "dry_run": False, "confirmation_token": plan["confirmation_token"]},
        )
        queued = [item["task_id"] for item in done["items"] if item["status"] == "queued"]
        if queued:
            report = await call_ok(client, "get_task", {"task_ids": queued, "wait_seconds": 30})
            assert report["all_terminal"] and {t["status"] for t in report["tasks"]} == {"complete"}
        await call_error(
            client,
            "remove_paths",
            {"paths": targets, "dry_run": False, "confirmation_token": plan["confirmation_token"]},
        )
    after = {p.relative_to(root) for p in root.rglob("*")}
    gone = before - after
    removed_roots = {Path("scratch/run-001"), Path("scratch/big-run"), Path("数据/结果.csv")}
    assert removed_roots <= gone
    assert all(any(p == r or r in p.parents for r in removed_roots) for p in gone), "something else was deleted"
    assert [line["event"] for line in audit_lines(audit)] == ["plan", "intent", "execution", "refusal"]


INITIALIZE = [
    {
        "jsonrpc": "2.0",
        "id": 1,
        "method": "initialize",
        "params": {"protocolVersion": "2025-11-25", "capabilities": {}, "clientInfo": {"name": "raw", "version": "0"}},
    },
    {"jsonrpc": "2.0", "method": "notifications/initialized"},
]


def raw_session(args: list[str], messages: list[dict[str, object]], timeout: float = 60) -> tuple[list[str], str]:
    """Speak raw JSON-RPC over the server's stdio; keep stdin open until every request is answered."""
    errors = tempfile.TemporaryFile(mode="w+")  # noqa: SIM115 (closed after the process ends) a file, not a pipe: a chatty stderr cannot block the server
    proc = subprocess.Popen(
        [sys.executable, "-m", "efile_mcp", *args],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=errors,
        text=True,
        env={**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)},
    )
    assert proc.stdin and proc.stdout
    wanted = {m["id"] for m in messages if "id" in m}
    lines: list[str] = []
    try:
        for message in messages:
            proc.stdin.write(json.dumps(message) + "\n")
        proc.stdin.flush()
        while wanted:
            line = proc.stdout.readline()
            if not line:
                break
            lines.append(line)
            if line.strip():
                wanted.discard(json.loads(line).get("id"))
        proc.stdin.close()
        proc.wait(timeout=timeout)
        errors.seek(0)
        stderr = errors.read()
    finally:
        proc.kill()
        errors.close()
    return lines, stderr


def test_stdout_carries_only_mcp_messages(tmp_path: Path) -> None:
    root = seed_sample_tree(tmp_path / "home")
    messages = [
        *INITIALIZE,
        {"jsonrpc": "2.0", "id": 2, "method": "tools/list"},
        {"jsonrpc": "2.0", "id": 3, "method": "tools/call", "params": {"name": "list_files", "arguments": {}}},
        {
            "jsonrpc": "2.0",
            "id": 4,
            "method": "tools/call",
            "params": {"name": "remove_paths", "arguments": {"paths": [f"{HOME}/scratch/tmp.log"]}},
        },
    ]
    lines, stderr = raw_session(
        ["--sandbox", str(root), "--audit-log", str(tmp_path / "a.jsonl"), "--log-level", "DEBUG"], messages
    )
    parsed = [json.loads(line) for line in lines if line.strip()]  # every stdout line is a JSON-RPC message
    assert all(message.get("jsonrpc") == "2.0" for message in parsed)
    assert sorted(m["id"] for m in parsed if "id" in m) == [1, 2, 3, 4]
    assert "Traceback" not in stderr
    assert "sandbox" in stderr  # logs went to stderr


def test_read_only_flag_over_stdio_lists_no_writing_tool(tmp_path: Path) -> None:
    root = seed_sample_tree(tmp_path / "home")
    messages = [*INITIALIZE, {"jsonrpc": "2.0", "id": 2, "method": "tools/list"}]
    lines, _ = raw_session(["--sandbox", str(root), "--read-only", "--audit-log", str(tmp_path / "a.jsonl")], messages)
    listing = next(m for m in map(json.loads, filter(str.strip, lines)) if m.get("id") == 2)
    assert sorted(tool["name"] for tool in listing["result"]["tools"]) == sorted(
        spec.name for spec in TOOLS if spec.read_only
    )
    assert {"remove_paths", "restore_paths", "cancel_tasks"}.isdisjoint(
        tool["name"] for tool in listing["result"]["tools"]
    )
