"""Start-up behaviour (one clear line, no traceback), settings and the tool registry (the audit log: test_audit.py)."""

from __future__ import annotations

import json
from typing import Any

import pytest
from mcp import Client

from efile_mcp.sandbox import RunningSandbox
from efile_mcp.server import build_server
from efile_mcp.settings import Settings
from efile_mcp.tools.registry import TOOLS, offered

from ..conftest import call_ok, run_cli

GOOD = {"EFILE_BASE_URL": "https://efile.example/efile", "EFILE_TOKEN": "tok-123-secret"}


@pytest.mark.parametrize(
    ("args", "env", "expected"),
    [
        ((), {}, "EFILE_BASE_URL (or --base-url) is not set"),
        ((), {"EFILE_BASE_URL": "https://efile.example"}, "EFILE_TOKEN is not set"),
        ((), {**GOOD, "EFILE_MAX_PATHS": "lots"}, "invalid setting EFILE_MAX_PATHS (or --max-paths)"),
        (("--max-paths", "0"), GOOD, "invalid setting EFILE_MAX_PATHS (or --max-paths)"),
        ((), {**GOOD, "EFILE_READ_ONLY": "perhaps"}, "invalid setting EFILE_READ_ONLY"),
        ((), {**GOOD, "EFILE_BASE_URL": "efile.example"}, "invalid setting EFILE_BASE_URL"),
        ((), {**GOOD, "EFILE_ALLOWED_ROOTS": "scratch"}, "invalid setting EFILE_ALLOWED_ROOTS"),
        (("--allowed-root", "/"), GOOD, "invalid setting EFILE_ALLOWED_ROOTS"),
        ((), {**GOOD, "EFILE_PROTECTED": "a/b"}, "invalid setting EFILE_PROTECTED"),
        ((), {**GOOD, "EFILE_CONFIRM_TTL": "1"}, "invalid setting EFILE_CONFIRM_TTL"),
        (("--audit-log", "/proc/forbidden/audit.jsonl"), GOOD, "cannot write the audit log"),
    ],
)
def test_bad_settings_fail_at_start_with_one_clear_line(
    args: tuple[str, ...], env: dict[str, str], expected: str
) -> None:
    proc = run_cli(*args, env=env)
    assert proc.returncode == 2
    assert proc.stdout == ""
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1, proc.stderr
    assert expected in lines[0]
    assert "Traceback" not in proc.stderr
    assert "tok-123-secret" not in proc.stderr


def test_token_is_not_a_flag() -> None:
    proc = run_cli("--token", "abc-secret")
    assert proc.returncode == 2 and "set EFILE_TOKEN in the environment" in proc.stderr
    assert "abc-secret" not in proc.stderr


def test_settings_read_comma_separated_lists_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("EFILE_ALLOWED_ROOTS", "/work/a, /public/home/u/scratch ,")
    monkeypatch.setenv("EFILE_PROTECTED", ".kube,.aws")
    monkeypatch.setenv("EFILE_READ_ONLY", "1")
    settings = Settings()
    assert settings.allowed_roots == ("/work/a", "/public/home/u/scratch")
    assert settings.protected == (".kube", ".aws")
    assert settings.read_only is True
    assert "s3cr3t" not in repr(Settings(token="s3cr3t-value"))


async def test_extra_protected_names_are_enforced(make_settings: Any, sandbox: RunningSandbox) -> None:
    server = build_server(make_settings(protected=("checkpoints",)))
    async with Client(server) as client:
        plan = await call_ok(client, "remove_paths", {"paths": [f"{sandbox.home}/scratch/run-001/checkpoints"]})
    assert plan["items"][0]["status"] == "refused" and "checkpoints" in plan["items"][0]["reason"]


# The audit log's tests are in test_audit.py.


# ---------------------------------------------------------------------------- registry


def test_every_tool_is_annotated_and_named_once() -> None:
    names = [spec.name for spec in TOOLS]
    assert len(names) == len(set(names))
    for spec in TOOLS:
        a = spec.annotations
        assert None not in (a.read_only_hint, a.destructive_hint, a.idempotent_hint, a.open_world_hint), spec.name
        assert a.title and spec.description.strip()
    destructive = [spec.name for spec in TOOLS if spec.annotations.destructive_hint]
    assert destructive == ["remove_paths"]


def test_read_only_mode_offers_only_read_only_tools() -> None:
    ro = Settings(read_only=True)
    assert {spec.name for spec in offered(ro)} == {spec.name for spec in TOOLS if spec.read_only}
    assert all(spec.annotations.read_only_hint for spec in offered(ro))
    assert {"remove_paths", "restore_paths", "cancel_tasks"}.isdisjoint(spec.name for spec in offered(ro))


async def test_published_schemas_match_the_contract(client: Client) -> None:
    tools = {tool.name: tool for tool in (await client.list_tools()).tools}
    remove = tools["remove_paths"]
    props = remove.input_schema["properties"]
    assert props["dry_run"]["default"] is True
    paths_schema = props["paths"]
    assert paths_schema["minItems"] == 1 and paths_schema["maxItems"] == Settings().max_paths
    assert remove.annotations is not None
    assert (remove.annotations.destructive_hint, remove.annotations.read_only_hint) == (True, False)
    assert remove.annotations.open_world_hint is False
    get_task = tools["get_task"].input_schema["properties"]
    ids_schema = get_task["task_ids"]
    assert get_task["wait_seconds"]["maximum"] == 55 and ids_schema["maxItems"] == 500
    for tool in tools.values():
        assert tool.output_schema is not None, tool.name
        schema = json.dumps(tool.output_schema)
        # snake_case for agents: no camelCase wire alias leaks into an output schema
        for camel in ("taskId", "sourcePath", "errorCode", "totalNum", "fileList", "lastModifiedTime"):
            assert camel not in schema, (tool.name, camel)
    removal_output = json.dumps(remove.output_schema)
    for field in ("confirmation_token", "expires_at", "task_ids", "summary"):  # nested objects are plain "object"
        assert field in removal_output
