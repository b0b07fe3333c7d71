"""Context is a budget: what every session pays for `tools/list`, and what the largest legal call of each tool costs.

Every answer of every tool also writes its times one way: ISO 8601 with the offset.

Tools are taken from the registry, never spelled here. Each tool is called with the largest legal value of every
argument, read from its published schema (an integer at its maximum, every value of an enum in turn) or, for
arguments that name things, from `LARGEST` below (keyed by argument name, so a new tool with the usual arguments is
covered without a line here). What an answer offers to continue with (next page, a resume point, a confirmation
token) is followed once. Every answer must keep its text summary within `TEXT_MAX` and its structured content
within `STRUCTURED_MAX` characters, and the tool list within `TOOLS_LIST_MAX`.
"""

from __future__ import annotations

import json
import re
import secrets
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import pytest
from mcp import Client

from efile_mcp.models.results import (
    STRUCTURED_MAX,
    GetTaskResult,
    ListFilesResult,
    RemoveItem,
    RemovePathsResult,
    RemoveSummary,
    TaskInfo,
    json_chars,
)
from efile_mcp.sandbox import RunningSandbox
from efile_mcp.server import build_server
from efile_mcp.tools.output import TEXT_MAX, render
from efile_mcp.tools.registry import TOOLS

from .invariants import FIGURES

#: tools/list in all, as json.dumps writes it (the measure of issue 15: 31,378 before).
TOOLS_LIST_MAX = 12_000
#: Paths one call may name in this test's configuration: enough to outgrow any unfitted answer many times.
MAX_PATHS = 300
#: A long but ordinary file name (80 characters), so every listed entry costs what a real one can.
LONG = "run-2026-11-20_epoch-{i:04d}_rank-{r:03d}_checkpoint-shard-of-the-very-long-model-name.pt"


async def test_tools_list_fits_the_budget(make_settings: Callable[..., Any]) -> None:
    async with Client(build_server(make_settings()), mode="legacy") as client:
        tools = (await client.list_tools()).tools
    published = [tool.model_dump(mode="json", by_alias=True, exclude_none=True) for tool in tools]
    size = len(json.dumps(published))
    FIGURES["tools/list chars"] = size
    per_tool = {tool["name"]: len(json.dumps(tool)) for tool in published}
    assert size <= TOOLS_LIST_MAX, f"tools/list is {size} characters (budget {TOOLS_LIST_MAX}): {per_tool}"
    assert {tool.name for tool in tools} == {spec.name for spec in TOOLS}


# ---------------------------------------------------------------------------------------------- largest calls


@dataclass
class Run:
    """What the calls so far produced, for the arguments that name things."""

    sandbox: RunningSandbox
    big: str  # a folder of many long-named entries
    made: int = 0
    task_ids: list[str] = field(default_factory=list)
    #: Executed plans, with the paths their dry run named, the last quarantined one last.
    executed: list[tuple[str, list[str]]] = field(default_factory=list)
    task_plans: list[str] = field(default_factory=list)

    def fresh_files(self) -> list[str]:
        """MAX_PATHS new long-named files in a new folder (each removal works on files that exist)."""
        self.made += 1
        folder = self.sandbox.root / "scratch" / f"doomed-{self.made:02d}-{LONG.format(i=0, r=0)[:40]}"
        folder.mkdir(parents=True)
        for i in range(MAX_PATHS):
            (folder / LONG.format(i=i, r=self.made)).write_bytes(b"x" * (i + 1))
        return [f"{self.sandbox.home}/scratch/{folder.name}/{LONG.format(i=i, r=self.made)}" for i in range(MAX_PATHS)]


def _select(run: Run) -> dict[str, Any]:
    paths = run.fresh_files()
    return {"path": paths[0].rpartition("/")[0]}


def _paths(run: Run, schema: dict[str, Any]) -> list[str]:
    """New files to name; beside a plan_id (a restore), the paths of the plan executed last."""
    if "plan_id" in schema.get("properties", {}) and run.executed:
        return run.executed[-1][1]
    return run.fresh_files()


def _plan_id(run: Run, schema: dict[str, Any]) -> str | None:
    """Beside task_ids, a plan whose execution started server tasks; else the plan executed last."""
    if "task_ids" in schema.get("properties", {}):
        return run.task_plans[-1] if run.task_plans else None
    return run.executed[-1][0] if run.executed else None


#: The largest legal value of each argument that names something, by argument name.
LARGEST: dict[str, Callable[[Run, dict[str, Any]], Any]] = {
    "path": lambda run, schema: run.big,
    "paths": _paths,
    "plan_id": _plan_id,
    "select": lambda run, schema: _select(run),
    "task_ids": lambda run, schema: (run.task_ids + [f"unknown-{i}" for i in range(500)])[:500],
}
#: Arguments that continue or narrow a call: left out (an answer's own continuation is followed instead).
NARROWING = {
    "cursor",
    "resume",
    "start",
    "confirmation_token",
    "keyword",
    "name",
    "wait_seconds",
    "dry_run",
    "min_size",
    "max_size",
    "older_than_days",
    "newer_than_days",
}
#: Every time in an answer: ISO 8601 with the offset (the storage's +08:00), whichever tool wrote it.
ISO_WITH_OFFSET = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}[+-]\d{2}:\d{2}$")
TIME_KEY = re.compile(r"(^|_)(modified|time|at)$")


def times_in(value: Any, key: str = "") -> list[tuple[str, Any]]:
    """(key, value) of every field of an answer whose name says it is a time."""
    if isinstance(value, dict):
        return [found for k, v in value.items() for found in times_in(v, k)]
    if isinstance(value, list):
        return [found for v in value for found in times_in(v, key)]
    return [(key, value)] if TIME_KEY.search(key) else []


#: What an answer offers to go on with -> the argument that takes it.
CONTINUATIONS = {"next_cursor": "cursor", "next_start": "start", "resume": "resume"}


def _calls(schema: dict[str, Any], run: Run) -> list[dict[str, Any]]:
    """The largest legal argument sets: every integer at its maximum, then one set per value of each enum."""
    base: dict[str, Any] = {}
    enums: dict[str, list[Any]] = {}
    for name, prop in schema.get("properties", {}).items():
        if "enum" in prop:
            enums[name] = list(prop["enum"])
        elif name in LARGEST:
            base[name] = None  # filled per call: each call gets its own things to name
        elif prop.get("type") == "integer" and "maximum" in prop:
            base[name] = prop["maximum"]
        elif name in schema.get("required", []) and name not in NARROWING:
            pytest.fail(f"teach test_answer_sizes.LARGEST the largest legal value of the required argument {name!r}")
    variants = [dict(base)] + [{**base, name: value} for name, values in enums.items() for value in values]
    if "paths" in base and "select" in base:  # one or the other
        variants = [{k: v for k, v in call.items() if k != "select"} for call in variants] + [
            {k: v for k, v in base.items() if k != "paths"}
        ]
    for call in variants:
        for name in call:
            if name in LARGEST:
                call[name] = LARGEST[name](run, schema)
    return [{k: v for k, v in call.items() if v is not None} for call in variants]


@pytest.mark.parametrize("sandbox", [{"inline_max_entries": 0, "task_step_delay": 0.05}], indirect=True)
async def test_every_answer_fits_whatever_the_arguments(
    sandbox: RunningSandbox, make_settings: Callable[..., Any]
) -> None:
    big = sandbox.root / "scratch" / "answers"
    for r in range(60):  # 60 folders of 3 files, beside 1,000 files: every list and top is full
        for i in range(3):
            path = big / f"folder-{r:03d}-{LONG.format(i=0, r=r)[:60]}" / LONG.format(i=i, r=r)
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_bytes(b"y" * (100 + r))
    for i in range(1000):
        (big / LONG.format(i=i, r=999)).write_bytes(b"z" * i)
    run = Run(sandbox=sandbox, big=f"{sandbox.home}/scratch/answers")
    server = build_server(make_settings(max_paths=MAX_PATHS, confirm="token"))
    largest: dict[str, tuple[int, int]] = {}
    times_seen: set[str] = set()
    async with Client(server) as client:
        schemas = {tool.name: tool.input_schema for tool in (await client.list_tools()).tools}

        async def call(
            tool: str, arguments: dict[str, Any], follow: bool = True, refusable: bool = False
        ) -> dict[str, Any]:
            result = await client.call_tool(tool, arguments)
            text = "\n".join(getattr(block, "text", "") for block in result.content)
            # An enum value this configuration refuses (e.g. a mode it does not offer) is still measured.
            assert refusable or not result.is_error, f"{tool} {sorted(arguments)}: {text[:300]}"
            answer = result.structured_content or {}
            sizes = (len(text), json_chars(answer))
            shown = {k: (v if not isinstance(v, list) else f"[{len(v)}]") for k, v in arguments.items()}
            assert sizes[0] <= TEXT_MAX, f"{tool} {shown}: text of {sizes[0]} characters"
            assert not text.lstrip().startswith("{"), f"{tool}: the text repeats the structured content"
            assert sizes[1] <= STRUCTURED_MAX, f"{tool} {shown}: structured content of {sizes[1]} characters"
            largest[tool] = max(largest.get(tool, (0, 0)), sizes, key=lambda s: s[1])
            for key, value in times_in(answer):
                assert isinstance(value, str) and ISO_WITH_OFFSET.match(value), f"{tool}: {key}={value!r}"
                times_seen.add(key)
            run.task_ids += [t for t in answer.get("task_ids", []) if t not in run.task_ids]
            if not follow:
                return answer
            for offered, argument in CONTINUATIONS.items():
                if answer.get(offered) is not None and argument in schemas[tool].get("properties", {}):
                    await call(tool, {**arguments, argument: answer[offered]}, follow=False)
            if answer.get("confirmation_token"):
                # The token alone executes (the plan carries paths and mode); detail shapes this answer too.
                execution = {"dry_run": False, "confirmation_token": answer["confirmation_token"]}
                execution.update({k: v for k, v in arguments.items() if k == "detail"})
                done = await call(tool, execution, follow=False)
                if done.get("task_count") and done.get("plan_id"):  # tasks to follow (ids listed up to 50)
                    run.task_plans.append(done["plan_id"])
                if done.get("plan_id") and arguments.get("paths"):  # for a restore: a quarantined plan goes last
                    quarantined = done.get("summary", {}).get("quarantined")
                    where = len(run.executed) if quarantined else 0
                    run.executed.insert(where, (done["plan_id"], arguments.get("paths") or []))
            return answer

        for spec in TOOLS:
            for index, arguments in enumerate(_calls(schemas[spec.name], run)):
                await call(spec.name, arguments, refusable=index > 0)
    assert set(largest) == {spec.name for spec in TOOLS}
    # Listing, walk, task and token times were all among them (one format: no tool writes a bare local time).
    assert {"modified", "newest_modified", "submit_time", "expires_at"} <= times_seen, times_seen
    for tool, (text, structured) in largest.items():
        FIGURES[f"{tool} largest text chars"] = text
        FIGURES[f"{tool} largest structured chars"] = structured
    print({tool: {"text": t, "structured": s} for tool, (t, s) in largest.items()})


# ---------------------------------------------------------------------------------------------- the fitting itself


def _task(i: int) -> TaskInfo:
    return TaskInfo(
        task_id=f"task-{i:06d}-{secrets.token_hex(8)}",
        status="processing",
        operation_type="delete",
        source_path="/public/home/alice/scratch/" + LONG.format(i=i, r=1),
        error_code="911020",
        error_msg="the path does not exist or was removed by another request meanwhile",
        total_num=123456,
        processed_num=654,
        total_size=123456789012,
        processed_size=1234567,
        progress="0.53%",
        submit_time="2026-11-20T10:00:00+08:00",
        update_time="2026-11-20T10:00:05+08:00",
    )


def test_fifty_long_tasks_are_cut_to_the_budget_and_counted() -> None:
    answer = GetTaskResult(tasks=[_task(i) for i in range(50)], not_found=[], all_terminal=False)
    assert json_chars(answer.model_dump(mode="json", exclude_none=True)) > STRUCTURED_MAX  # the case is real
    rendered = render(answer)
    assert rendered.structured_content is not None
    assert json_chars(rendered.structured_content) <= STRUCTURED_MAX
    shown = len(rendered.structured_content["tasks"])
    assert 0 < shown < 50 and rendered.structured_content["tasks_not_shown"] == 50 - shown


def test_a_full_removal_lists_exceptions_first_and_counts_the_rest() -> None:
    items = [
        RemoveItem(path=f"/public/home/alice/scratch/{LONG.format(i=i, r=2)}", status="would_remove", size=i)
        for i in range(400)
    ]
    items[350] = RemoveItem(path="/public/home/alice/scratch/link", status="refused", reason="a symbolic link")
    answer = RemovePathsResult(
        dry_run=True, summary=RemoveSummary(requested=400, distinct=400), items=items, next_step="show the person"
    )
    rendered = render(answer)
    assert rendered.structured_content is not None
    assert json_chars(rendered.structured_content) <= STRUCTURED_MAX
    listed = rendered.structured_content["items"]
    assert listed[0]["status"] == "refused"
    assert rendered.structured_content["items_not_shown"] == 400 - len(listed)
    (text,) = [block.text for block in rendered.content if hasattr(block, "text")]
    assert "link: refused (a symbolic link)" in text and "not listed" in text


def test_a_page_of_long_entries_is_cut_where_the_next_page_starts() -> None:
    from efile_mcp.models.results import FileInfo

    entries = [
        FileInfo(name=LONG.format(i=i, r=3), path=f"/public/home/alice/{LONG.format(i=i, r=3)}", type="file", size=i)
        for i in range(200)
    ]
    page = ListFilesResult(path="/public/home/alice", total=1000, start=400, entries=entries, next_start=600)
    rendered = render(page)
    assert rendered.structured_content is not None
    kept = len(rendered.structured_content["entries"])
    assert kept < 200 and rendered.structured_content["next_start"] == 400 + kept
    assert json_chars(rendered.structured_content) <= STRUCTURED_MAX
    (text,) = [block.text for block in rendered.content if hasattr(block, "text")]
    assert f"start={400 + kept}" in text


def test_children_with_very_long_paths_are_summed_into_the_rest() -> None:
    from efile_mcp.models.results import DiskUsageResult, UsageChild, UsageRest

    deep = "/public/home/alice/" + "/".join(["a-rather-long-folder-name-of-a-workflow"] * 10)
    children = [
        UsageChild(path=f"{deep}/{LONG.format(i=i, r=4)}", type="file", size=1000 - i, file_count=1) for i in range(50)
    ]
    answer = DiskUsageResult(
        path=deep,
        total_size=10**6,
        file_count=60,
        dir_count=0,
        complete=True,
        entries_seen=60,
        requests=1,
        children=children,
        others=UsageRest(count=10, size=100, file_count=10),
    )
    rendered = render(answer)
    assert rendered.structured_content is not None
    assert json_chars(rendered.structured_content) <= STRUCTURED_MAX
    shown = rendered.structured_content["children"]
    others = rendered.structured_content["others"]
    assert len(shown) < 50 and others["count"] == 10 + 50 - len(shown)
    assert sum(c["size"] for c in shown) + others["size"] == sum(c.size for c in children) + 100


async def test_find_pages_of_very_long_paths_fit_and_give_every_match_once(
    sandbox: RunningSandbox, make_settings: Callable[..., Any]
) -> None:
    """50 matches whose paths run to ~1,000 characters would be 50 KB: each page ends at the budget, none is lost."""
    deep = sandbox.root / "scratch" / "/".join(["a-folder-name-that-a-pipeline-made-up-of-many-parts"] * 18)
    deep.mkdir(parents=True)
    for i in range(60):
        (deep / LONG.format(i=i, r=5)).write_bytes(b"x" * (i + 1))
    seen: list[str] = []
    async with Client(build_server(make_settings())) as client:
        arguments: dict[str, Any] = {"path": f"{sandbox.home}/scratch", "name": "run-2026-*", "limit": 50}
        while True:
            result = await client.call_tool("find_paths", arguments)
            answer = result.structured_content
            assert not result.is_error and answer is not None
            assert json_chars(answer) <= STRUCTURED_MAX
            assert len(answer["matches"]) < 50 or "next_cursor" not in answer
            seen += [match["path"] for match in answer["matches"]]
            if "next_cursor" not in answer:
                break
            arguments = {**arguments, "cursor": answer["next_cursor"]}
    assert len(seen) == len(set(seen)) == 60


def test_a_summary_of_paths_thousands_of_characters_long_still_fits() -> None:
    from efile_mcp.models.results import ItemStatus, ParentGroup

    deep = "/public/home/alice/" + "/".join(["a-rather-long-folder-name-of-a-workflow"] * 40)

    def item(i: int, status: ItemStatus = "would_remove") -> RemoveItem:
        return RemoveItem(path=f"{deep}/{LONG.format(i=i, r=6)}", status=status, size=i)

    answer = RemovePathsResult(
        dry_run=True,
        summary=RemoveSummary(requested=5000, distinct=5000),
        exceptions=[item(i, "refused") for i in range(12)],
        largest=[item(i) for i in range(8)],
        by_parent=[ParentGroup(parent=f"{deep}/{i}", count=i, size=i) for i in range(8)],
        confirm_paths=[item(i).path for i in range(50)],
        next_step="show the person",
    )
    rendered = render(answer)
    assert rendered.structured_content is not None
    assert json_chars(rendered.structured_content) <= STRUCTURED_MAX
    shown = rendered.structured_content.get("exceptions", [])
    assert shown and rendered.structured_content["exceptions_not_shown"] == 12 - len(shown)
