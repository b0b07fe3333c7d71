"""What the tools tell a model: no text that misleads it, and a mistake answered in one line it can act on."""

from __future__ import annotations

from typing import Any, get_args

from mcp import Client

from efile_mcp.models.results import ItemStatus
from efile_mcp.sandbox import RunningSandbox

from .conftest import call_error, call_ok


def _lines(text: str) -> list[str]:
    return [line for line in text.splitlines() if line.strip()]


async def test_find_paths_without_a_path_searches_the_home(client: Client, sandbox: RunningSandbox) -> None:
    found = await call_ok(client, "find_paths", {"name": "*.log"})
    assert found["path"] == sandbox.home
    assert f"{sandbox.home}/scratch/tmp.log" in {match["path"] for match in found["matches"]}
    schema = next(t for t in (await client.list_tools()).tools if t.name == "find_paths").input_schema
    assert "path" not in schema.get("required", [])


async def test_a_home_relative_path_is_refused_with_where_to_find_the_home(client: Client) -> None:
    for tool, arguments in (
        ("list_files", {"path": "~/scratch"}),
        ("disk_usage", {"path": "~"}),
        ("find_paths", {"path": "~/scratch"}),
        ("remove_paths", {"select": {"path": "~/scratch", "name": "*.log"}}),
    ):
        text = await call_error(client, tool, arguments)
        (problem,) = _lines(text)[1:]
        assert "path" in problem and "'/'" in problem and "storage_status" in problem, (tool, text)


async def test_every_detail_value_is_explained(client: Client) -> None:
    schema = next(t for t in (await client.list_tools()).tools if t.name == "remove_paths").input_schema
    detail = schema["properties"]["detail"]
    for value in detail["enum"]:
        assert f"{value}:" in detail["description"], value


async def test_wrong_argument_types_are_one_line_each_naming_the_argument(client: Client) -> None:
    text = await call_error(client, "list_files", {"limit": "many", "start": -1})
    head, *problems = _lines(text)
    assert "list_files" in head and "nothing was done" in head
    assert sorted(problems) == [
        '- limit: send a whole number (got "many").',
        "- start: send at least 0 (got -1).",
    ]
    text = await call_error(client, "cancel_tasks", {})
    assert _lines(text)[1:] == ["- task_ids: it is required."]
    text = await call_error(client, "remove_paths", {"select": {"path": "/a", "depth": 2, "type": "link"}})
    assert sorted(_lines(text)[1:]) == [
        "- select.depth: not a field here: leave it out.",
        "- select.type: send one of 'file', 'directory' or 'any' (got \"link\").",
    ]
    for answer in (text,):
        assert "pydantic" not in answer and "https://" not in answer and "validation error" not in answer


async def test_a_misspelt_argument_is_refused_not_dropped(client: Client, sandbox: RunningSandbox) -> None:
    """Dropped silently, `older_than_day` would make the search match everything: a broader answer, not an error."""
    text = await call_error(client, "find_paths", {"path": sandbox.home, "older_than_day": 30})
    (problem,) = _lines(text)[1:]
    assert problem.startswith("- older_than_day: not an argument of find_paths; it takes ")
    assert "older_than_days" in problem


async def test_ids_nobody_knows_are_not_all_ended(client: Client) -> None:
    answer = await call_ok(client, "get_task", {"task_ids": ["never-issued-1", "never-issued-2"]})
    assert answer["all_terminal"] is False
    assert answer["not_found"] == ["never-issued-1", "never-issued-2"]
    result = await client.call_tool("get_task", {"task_ids": ["never-issued-1"]})
    (text,) = [block.text for block in result.content if hasattr(block, "text")]
    assert "All ended: no" in text and "never-issued-1" in text


async def test_text_is_a_short_summary_with_what_to_do_next(client: Client, sandbox: RunningSandbox) -> None:
    result = await client.call_tool("list_files", {"path": f"{sandbox.home}/scratch", "limit": 1})
    (text,) = [block.text for block in result.content if hasattr(block, "text")]
    assert result.structured_content is not None
    assert not text.startswith("{") and "Next page: start=1" in text
    plan: dict[str, Any] = await call_ok(client, "remove_paths", {"paths": [f"{sandbox.home}/scratch/tmp.log"]})
    result = await client.call_tool("remove_paths", {"paths": [f"{sandbox.home}/scratch/tmp.log"]})
    (text,) = [block.text for block in result.content if hasattr(block, "text")]
    assert "would_remove 1" in text and "confirmation_token" in text and plan["next_step"][:20] in text
    result = await client.call_tool(
        "remove_paths", {"dry_run": False, "confirmation_token": plan["confirmation_token"]}
    )
    (text,) = [block.text for block in result.content if hasattr(block, "text")]
    assert result.structured_content is not None
    outcome = {k: v for k, v in result.structured_content["summary"].items() if k in get_args(ItemStatus) and v}
    assert outcome and all(f"{status} {count}" in text for status, count in outcome.items()), (outcome, text)
