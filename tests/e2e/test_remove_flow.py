"""The agent's removal flow through the MCP surface (in-memory client, both protocol eras) against the sandbox."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from mcp import Client

from efile_mcp.sandbox import RunningSandbox

from ..conftest import audit_lines, call_error, call_ok, dry_run_then_execute


def on_disk(sandbox: RunningSandbox, virtual: str) -> Path:
    return sandbox.root / virtual.removeprefix(sandbox.home + "/")


async def test_dry_run_previews_and_deletes_nothing(client: Client, sandbox: RunningSandbox, audit_path: Path) -> None:
    home = sandbox.home
    request = [
        f"{home}/scratch/run-001",
        f"{home}/scratch/tmp.log",
        f"{home}/scratch/run-999",
        f"{home}/.ssh",
        f"{home}/scratch/*.log",
        "/etc/passwd",
        f"{home}/projects/paper (draft)/main.tex",
        f"{home}/数据/结果.csv",
    ]
    plan = await call_ok(client, "remove_paths", {"paths": request})
    status = {item["path"]: item["status"] for item in plan["items"]}
    assert status == {
        f"{home}/scratch/run-001": "would_remove",
        f"{home}/scratch/tmp.log": "would_remove",
        f"{home}/scratch/run-999": "missing",
        f"{home}/.ssh": "refused",
        f"{home}/scratch/*.log": "refused",
        "/etc/passwd": "refused",
        f"{home}/projects/paper (draft)/main.tex": "would_remove",
        f"{home}/数据/结果.csv": "would_remove",
    }
    types = {item["path"]: item["type"] for item in plan["items"] if item["status"] == "would_remove"}
    assert types[f"{home}/scratch/run-001"] == "directory"
    assert types[f"{home}/scratch/tmp.log"] == "file"
    assert plan["dry_run"] is True
    assert plan["confirmation_token"] and plan["expires_at"]
    assert sorted(plan["confirm_paths"]) == sorted(p for p, s in status.items() if s == "would_remove")
    assert plan["summary"]["would_remove"] == 4 and plan["summary"]["refused"] == 3
    assert plan["summary"]["missing"] == 1
    # Nothing was sent to the destructive endpoint and nothing is gone.
    assert sandbox.sandbox.request_counts["async-remove"] == 0
    assert on_disk(sandbox, f"{home}/scratch/run-001").is_dir()
    assert on_disk(sandbox, f"{home}/scratch/tmp.log").is_file()
    (plan_line,) = [line for line in audit_lines(audit_path) if line["event"] == "plan"]
    assert plan_line["decision"] == "planned" and sorted(plan_line["removable"]) == sorted(plan["confirm_paths"])


async def test_confirmed_execution_removes_exactly_the_confirmed_set(
    client: Client, sandbox: RunningSandbox, audit_path: Path
) -> None:
    home = sandbox.home
    keep = [on_disk(sandbox, f"{home}/scratch/run-002"), on_disk(sandbox, f"{home}/notes.txt")]
    paths = [f"{home}/scratch/run-001", f"{home}/scratch/tmp.log", f"{home}/数据/结果.csv"]
    plan = await call_ok(client, "remove_paths", {"paths": paths})
    done = await call_ok(
        client,
        "remove_paths",
        {"paths": plan["confirm_paths"], "dry_run": False, "confirmation_token": plan["confirmation_token"]},
    )
    assert done["dry_run"] is False
    assert {item["status"] for item in done["items"]} == {"removed"}
    assert all(item["task_id"] for item in done["items"])
    assert sorted(done["task_ids"]) == sorted(item["task_id"] for item in done["items"])
    assert sorted(sandbox.sandbox.received_remove_paths) == sorted(paths)
    for path in paths:
        assert not on_disk(sandbox, path).exists()
    assert all(path.exists() for path in keep)
    assert on_disk(sandbox, f"{home}/scratch/big-run").is_dir()
    execution = [line for line in audit_lines(audit_path) if line["event"] == "execution"]
    assert len(execution) == 1 and sorted(execution[0]["task_ids"]) == sorted(done["task_ids"])


async def test_order_and_duplicates_do_not_matter_for_confirmation(client: Client, sandbox: RunningSandbox) -> None:
    home = sandbox.home
    a, b = f"{home}/scratch/run-001", f"{home}/scratch/tmp.log"
    plan = await call_ok(client, "remove_paths", {"paths": [a, b]})
    done = await call_ok(
        client,
        "remove_paths",
        {"paths": [b, a, b], "dry_run": False, "confirmation_token": plan["confirmation_token"]},
    )
    assert done["summary"]["removed"] == 2 and done["summary"]["requested"] == 3 and done["summary"]["distinct"] == 2
    assert sorted(sandbox.sandbox.received_remove_paths) == sorted([a, b])


async def test_paths_inside_another_requested_path_are_covered_not_sent(
    client: Client, sandbox: RunningSandbox
) -> None:
    home = sandbox.home
    parent = f"{home}/scratch/run-001"
    children = [f"{parent}/checkpoints", f"{parent}/checkpoints/ckpt-0001.pt", f"{parent}/stdout.log"]
    plan = await call_ok(client, "remove_paths", {"paths": [*children, parent]})
    assert plan["confirm_paths"] == [parent]
    assert plan["summary"]["covered"] == 3
    for item in plan["items"]:
        if item["path"] in children:
            assert item["status"] == "would_remove" and "inside" in item["reason"]
    done = await call_ok(
        client,
        "remove_paths",
        {"paths": [*children, parent], "dry_run": False, "confirmation_token": plan["confirmation_token"]},
    )
    assert sandbox.sandbox.received_remove_paths == [parent]
    assert {item["status"] for item in done["items"]} == {"removed"}
    assert done["task_ids"] == [next(i["task_id"] for i in done["items"] if i["path"] == parent)]


async def test_large_folder_is_queued_and_get_task_follows_it_to_the_end(
    client: Client, sandbox: RunningSandbox
) -> None:
    big = f"{sandbox.home}/scratch/big-run"
    _, done = await dry_run_then_execute(client, [big])
    (item,) = done["items"]
    assert item["status"] == "queued" and item["task_status"] in ("waiting", "processing")
    progress: list[tuple[float, float | None]] = []

    async def on_progress(value: float, total: float | None, message: str | None) -> None:
        progress.append((value, total))

    result = await client.call_tool(
        "get_task", {"task_ids": [item["task_id"]], "wait_seconds": 30}, progress_callback=on_progress
    )
    assert not result.is_error
    report = result.structured_content
    assert report is not None
    assert report["all_terminal"] is True and report["not_found"] == []
    (task,) = report["tasks"]
    assert task["status"] == "complete" and task["operation_type"] == "delete"
    assert task["processed_num"] == task["total_num"] and task["total_num"] > 200
    assert progress and progress[-1] == (1, 1)
    assert not on_disk(sandbox, big).exists()


async def test_get_task_reports_unknown_ids_as_not_found(client: Client) -> None:
    report = await call_ok(client, "get_task", {"task_ids": ["0" * 32, "f" * 32]})
    assert report["tasks"] == [] and report["not_found"] == ["0" * 32, "f" * 32]


@pytest.mark.parametrize("sandbox", [{"task_step_delay": 0.02}], indirect=True)
async def test_cancel_tasks_stops_a_queued_removal(client: Client, sandbox: RunningSandbox, audit_path: Path) -> None:
    big = f"{sandbox.home}/scratch/big-run"
    _, done = await dry_run_then_execute(client, [big])
    task_id = done["task_ids"][0]
    result = await call_ok(client, "cancel_tasks", {"task_ids": [task_id, "e" * 32]})
    by_id = {item["task_id"]: item for item in result["tasks"]}
    assert by_id[task_id]["cancelled"] is True and by_id[task_id]["status"] == "cancel"
    assert by_id["e" * 32]["cancelled"] is False and "not found" in by_id["e" * 32]["reason"]
    report = await call_ok(client, "get_task", {"task_ids": [task_id]})
    assert report["tasks"][0]["status"] == "cancel" and report["all_terminal"]
    assert on_disk(sandbox, big).exists()  # stopped before the end: some of it remains
    again = await call_ok(client, "cancel_tasks", {"task_ids": [task_id]})
    assert again["tasks"][0] == {"task_id": task_id, "cancelled": False, "status": "cancel", "reason": "already cancel"}
    assert [line["event"] for line in audit_lines(audit_path)][-2:] == ["cancel", "cancel"]


async def test_path_vanishing_between_dry_run_and_execution_is_reported_missing(
    client: Client, sandbox: RunningSandbox
) -> None:
    home = sandbox.home
    paths = [f"{home}/scratch/run-001", f"{home}/scratch/tmp.log", f"{home}/scratch/run-002"]
    plan = await call_ok(client, "remove_paths", {"paths": paths})
    on_disk(sandbox, f"{home}/scratch/tmp.log").unlink()  # someone else removed it meanwhile
    done = await call_ok(
        client, "remove_paths", {"paths": paths, "dry_run": False, "confirmation_token": plan["confirmation_token"]}
    )
    status = {item["path"]: item["status"] for item in done["items"]}
    assert status == {paths[0]: "removed", paths[1]: "missing", paths[2]: "removed"}
    assert not on_disk(sandbox, paths[0]).exists() and not on_disk(sandbox, paths[2]).exists()


async def test_list_files_pages_through_a_directory(client: Client, sandbox: RunningSandbox) -> None:
    home = await call_ok(client, "list_files", {})
    assert home["path"] == sandbox.home
    names = {entry["name"] for entry in home["entries"]}
    assert {"scratch", "projects", "notes.txt", ".ssh", "数据"} <= names
    shard = f"{sandbox.home}/scratch/big-run/shard-0"
    seen: list[str] = []
    start: int | None = 0
    while start is not None:
        page = await call_ok(client, "list_files", {"path": shard, "start": start, "limit": 40})
        assert page["total"] == 100
        seen += [entry["name"] for entry in page["entries"]]
        start = page.get("next_start")
    assert len(seen) == len(set(seen)) == 100
    logs = await call_ok(client, "list_files", {"path": f"{sandbox.home}/scratch/run-001", "keyword": "log"})
    assert sorted(entry["name"] for entry in logs["entries"]) == ["stderr.log", "stdout.log"]
    biggest = await call_ok(
        client,
        "list_files",
        {"path": f"{sandbox.home}/scratch/run-001", "keyword": ".log", "order_by": "size", "order": "desc", "limit": 1},
    )
    assert [entry["name"] for entry in biggest["entries"]] == ["stdout.log"] and biggest["next_start"] == 1
    assert "next_start" not in page  # the last page says nothing more: no null fields


async def test_list_files_errors_are_actionable(client: Client, sandbox: RunningSandbox) -> None:
    text = await call_error(client, "list_files", {"path": f"{sandbox.home}/nope"})
    assert "911020" in text and "does not exist" in text
    text = await call_error(client, "list_files", {"path": "scratch"})
    assert "absolute" in text


async def test_dry_run_cost_grows_with_parents_not_paths(client: Client, sandbox: RunningSandbox) -> None:
    shards = [f"{sandbox.home}/scratch/big-run/shard-{i}" for i in range(3)]
    paths = [f"{shard}/out-{n:04d}.dat" for n in range(300) for shard in shards if n % 3 == int(shard[-1])]
    assert len(paths) == 300
    sandbox.sandbox.reset_records()
    plan = await call_ok(client, "remove_paths", {"paths": paths})
    assert plan["summary"]["would_remove"] == 300
    # One listing per folder on the way (scratch, big-run: checked for links) and per parent, not per path.
    assert sandbox.sandbox.request_counts["file/list"] == 5


async def test_auth_failure_stops_the_call_and_names_the_fix(
    make_settings: Any, sandbox: RunningSandbox, era: str
) -> None:
    from efile_mcp.server import build_server

    server = build_server(make_settings(token="not-the-token"))
    async with Client(server, mode=era) as client:
        text = await call_error(client, "remove_paths", {"paths": [f"{sandbox.home}/scratch/tmp.log"]})
        assert "911406" in text and "EFILE_TOKEN" in text
        text = await call_error(client, "get_task", {"task_ids": ["a" * 32]})
        assert "EFILE_TOKEN" in text
    assert on_disk(sandbox, f"{sandbox.home}/scratch/tmp.log").exists()


async def test_no_allowed_roots_refuses_every_removal_and_says_how_to_fix(
    make_settings: Any, sandbox: RunningSandbox, era: str
) -> None:
    from efile_mcp.server import build_server

    server = build_server(make_settings(allowed_roots=()))
    async with Client(server, mode=era) as client:
        plan = await call_ok(client, "remove_paths", {"paths": [f"{sandbox.home}/scratch/tmp.log"]})
        (item,) = plan["items"]
        assert item["status"] == "refused" and "EFILE_ALLOWED_ROOTS" in item["reason"]
        assert "confirmation_token" not in plan
    assert sandbox.sandbox.request_counts["async-remove"] == 0


async def test_read_only_mode_offers_no_tool_that_writes(make_settings: Any, era: str) -> None:
    from efile_mcp.server import build_server
    from efile_mcp.tools.registry import TOOLS

    server = build_server(make_settings(read_only=True))
    async with Client(server, mode=era) as client:
        names = sorted(tool.name for tool in (await client.list_tools()).tools)
        assert names == sorted(spec.name for spec in TOOLS if spec.read_only)  # the registry's readers, nothing else
        text = await call_error(client, "remove_paths", {"paths": ["/x/y"]})
        assert "remove_paths" in text


async def test_too_many_paths_is_refused_whole(make_settings: Any, sandbox: RunningSandbox, audit_path: Path) -> None:
    from efile_mcp.server import build_server

    server = build_server(make_settings(max_paths=5))
    paths = [f"{sandbox.home}/scratch/run-001/f{i}" for i in range(6)]
    async with Client(server) as client:
        schema = next(t for t in (await client.list_tools()).tools if t.name == "remove_paths").input_schema
        paths_schema = schema["properties"]["paths"]
        assert paths_schema["maxItems"] == 5
        listings_at_start = sandbox.sandbox.request_counts["file/list"]  # (the roots are looked up at start)
        text = await call_error(client, "remove_paths", {"paths": paths})
        assert "6 paths" in text and "limit is 5" in text and "Split" in text
        text = await call_error(client, "remove_paths", {"paths": []})
        assert "at least one" in text
    assert sandbox.sandbox.request_counts["file/list"] == listings_at_start
    assert [line["reason"] for line in audit_lines(audit_path)] == ["too_many_paths", "no_paths"]


async def test_nothing_removable_gives_no_token(client: Client, sandbox: RunningSandbox) -> None:
    plan = await call_ok(client, "remove_paths", {"paths": [f"{sandbox.home}/scratch/none", f"{sandbox.home}/.bashrc"]})
    assert "confirmation_token" not in plan and "confirm_paths" not in plan
    assert "Nothing" in plan["next_step"]


async def test_a_folder_named_with_a_protected_path_inside_it_is_refused_too(
    client: Client, sandbox: RunningSandbox
) -> None:
    """The request itself says the protected path matters: its folder may not take it along."""
    folder = sandbox.root / "scratch" / "proj"
    (folder / ".ssh").mkdir(parents=True)
    (folder / ".ssh" / "id_ed25519").write_text("key")
    (folder / "data.csv").write_text("x")
    proj = f"{sandbox.home}/scratch/proj"
    plan = await call_ok(client, "remove_paths", {"paths": [proj, f"{proj}/.ssh", f"{sandbox.home}/scratch/tmp.log"]})
    status = {item["path"]: (item["status"], item.get("reason")) for item in plan["items"]}
    assert status[proj][0] == "refused" and "protected and named in this same request" in status[proj][1]
    assert status[f"{proj}/.ssh"][0] == "refused"
    assert plan["confirm_paths"] == [f"{sandbox.home}/scratch/tmp.log"]
    text = await call_error(
        client,
        "remove_paths",
        {"paths": [proj, f"{proj}/.ssh"], "dry_run": False, "confirmation_token": plan["confirmation_token"]},
    )
    assert "not allowed" in text
    assert (folder / ".ssh" / "id_ed25519").exists()


@pytest.mark.parametrize("sandbox", [{"task_step_delay": 0.02}], indirect=True)
async def test_a_cancel_that_went_out_is_audited_even_when_the_call_then_fails(
    client: Client, sandbox: RunningSandbox, audit_path: Path
) -> None:
    from efile_mcp.sandbox.faults import FaultPlan, FaultRule

    big = f"{sandbox.home}/scratch/big-run"
    _, done = await dry_run_then_execute(client, [big])
    sandbox.sandbox.faults = FaultPlan([FaultRule("unknown_code", endpoint="task/list", skip=1)])
    text = await call_error(client, "cancel_tasks", {"task_ids": done["task_ids"]})
    sandbox.sandbox.faults = None
    assert "999999" in text
    (last,) = audit_lines(audit_path)[-1:]
    assert last["event"] == "cancel" and last["task_ids"] == done["task_ids"] and "then" in last["decision"]
    assert sandbox.sandbox.tasks[done["task_ids"][0]].status == "cancel"
