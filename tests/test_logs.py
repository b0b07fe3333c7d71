"""stderr logging: INFO for start-up facts, WARNING for what to act on, one format for every line (uvicorn's
too), `--log-format json` one object a line; stdout stays MCP's alone."""

from __future__ import annotations

import json
from pathlib import Path

from efile_mcp.sandbox import RunningSandbox

from .conftest import run_cli
from .e2e.test_http import connect, http_process, settings_env


def test_stdio_start_up_facts_are_info_and_hidden_at_the_default_level(tmp_path: Path) -> None:
    root = tmp_path / "root"
    root.mkdir()
    env = {"EFILE_STATE_DIR": str(tmp_path / "state"), "EFILE_AUDIT_LOG": str(tmp_path / "audit.jsonl")}
    quiet = run_cli("--sandbox", str(root), env=env)  # stdin is empty: the server starts and ends
    assert quiet.returncode == 0 and quiet.stdout == ""
    # Nothing but where the sandbox's audit trail went (a fresh directory kept after exit: the person's to read
    # or remove); the start-up facts are INFO.
    assert [line for line in quiet.stderr.splitlines() if "sandbox: audit log" not in line] == []
    told = run_cli("--sandbox", str(root), "--log-level", "info", env=env)
    assert told.returncode == 0 and told.stdout == ""
    (line,) = [line for line in told.stderr.splitlines() if "is served as" in line]
    assert line.startswith(
        f"efile-mcp INFO efile_mcp: sandbox: {root} is served as /public/home/demo at http://127.0.0.1:"
    )
    assert [line for line in told.stderr.splitlines() if " WARNING " in line and "audit log" not in line] == []


async def test_http_logs_in_one_text_format_including_uvicorns_lines(sandbox: RunningSandbox, tmp_path: Path) -> None:
    env = settings_env(sandbox, tmp_path / "audit.jsonl", EFILE_LOG_LEVEL="INFO")
    with http_process(env=env) as (url, stderr):
        async with connect(url) as client:
            await client.list_tools()
        text = stderr.read_text()
    lines = text.splitlines()
    assert lines and all(line.startswith("efile-mcp ") for line in lines), text
    assert f"efile-mcp INFO efile_mcp.http: serving MCP over Streamable HTTP at {url}" in lines
    assert any(line.startswith("efile-mcp INFO uvicorn.error: Uvicorn running on") for line in lines), text
    assert any(
        line.startswith("efile-mcp INFO uvicorn.access: ") and '"POST /mcp HTTP/1.1" 200' in line for line in lines
    )
    assert not any(" WARNING " in line for line in lines), text  # EFILE_HTTP_TOKEN given: nothing to act on


async def test_log_format_json_is_one_object_a_line_for_every_logger(sandbox: RunningSandbox, tmp_path: Path) -> None:
    env = settings_env(sandbox, tmp_path / "audit.jsonl", EFILE_LOG_LEVEL="info")
    with http_process("--log-format", "json", env=env) as (url, stderr):
        async with connect(url) as client:
            await client.list_tools()
        text = stderr.read_text()
    entries = [json.loads(line) for line in text.splitlines()]  # every line is JSON
    assert entries
    for entry in entries:
        assert set(entry) == {"time", "level", "logger", "message"}, entry
        assert entry["time"].endswith("+00:00") and "T" in entry["time"]
    assert {"efile_mcp.http", "uvicorn.error", "uvicorn.access"} <= {entry["logger"] for entry in entries}
    assert {
        "level": "INFO",
        "logger": "efile_mcp.http",
        "message": f"serving MCP over Streamable HTTP at {url}",
    }.items() <= next(e for e in entries if e["logger"] == "efile_mcp.http").items()


def test_a_settings_error_is_json_too_when_json_was_asked_for() -> None:
    proc = run_cli(env={"EFILE_LOG_FORMAT": "json", "EFILE_MAX_PATHS": "lots"})
    assert proc.returncode == 2 and proc.stdout == ""
    (line,) = proc.stderr.strip().splitlines()
    entry = json.loads(line)
    assert entry["level"] == "ERROR" and entry["logger"] == "efile_mcp"
    assert entry["message"].startswith("invalid setting EFILE_MAX_PATHS (or --max-paths): ")
