"""The clean-up job through the MCP tools against the sandbox: see the tree, find, remove by selection, execute by token.

Every test goes over real HTTP to the sandbox (a faithful efile API over a local directory), in both
protocol eras.
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path
from typing import Any

import pytest
from mcp import Client

from efile_mcp.sandbox import RunningSandbox
from efile_mcp.server import build_server

from ..conftest import audit_lines, call_error, call_ok


def real(sandbox: RunningSandbox, virtual: str) -> Path:
    return sandbox.root / virtual.removeprefix(sandbox.home + "/")


def tree_bytes(path: Path) -> tuple[int, int]:
    size = files = 0
    for base, _dirs, names in os.walk(path):
        for name in names:
            info = os.lstat(os.path.join(base, name))
            if not os.path.islink(os.path.join(base, name)):
                size += info.st_size
                files += 1
    return size, files


def make_tree(root: Path, *, dirs: int, files_per_dir: int, size: int = 100, age_days: float = 0) -> list[Path]:
    made = []
    stamp = time.time() - age_days * 86400
    for d in range(dirs):
        folder = root / f"d{d:03d}"
        folder.mkdir(parents=True, exist_ok=True)
        for f in range(files_per_dir):
            path = folder / f"f{f:04d}.dat"
            path.write_bytes(b"x" * size)
            os.utime(path, (stamp, stamp))
            made.append(path)
        os.utime(folder, (stamp, stamp))
    return made


# ---------------------------------------------------------------------------- see the tree


async def test_disk_usage_tells_folder_sizes_in_one_call(client: Client, sandbox: RunningSandbox) -> None:
    scratch = f"{sandbox.home}/scratch"
    usage = await call_ok(client, "disk_usage", {"path": scratch, "top": 2})
    size, files = tree_bytes(real(sandbox, scratch))
    assert usage["total_size"] == size and usage["file_count"] == files
    assert usage["complete"] is True
    largest = usage["children"][0]
    big_size, big_files = tree_bytes(real(sandbox, f"{scratch}/big-run"))
    assert largest == {
        **largest,
        "path": f"{scratch}/big-run",
        "type": "directory",
        "size": big_size,
        "file_count": big_files,
    }
    assert largest["newest_modified"].endswith("+08:00")
    # The rest is summed, not listed: run-001, run-002, tmp.log.
    assert usage["others"]["count"] == 2
    assert sum(c["size"] for c in usage["children"]) + usage["others"]["size"] == size
    # One request per folder, not one per entry.
    folders = sum(1 for _ in os.walk(real(sandbox, scratch)))
    assert usage["requests"] <= folders * 1.1 + 1


async def test_disk_usage_over_budget_says_incomplete(client: Client, sandbox: RunningSandbox) -> None:
    usage = await call_ok(client, "disk_usage", {"path": f"{sandbox.home}/scratch", "max_entries": 100})
    assert usage["complete"] is False
    assert "entry budget" in usage["incomplete_reason"]


async def test_find_paths_by_name_size_and_age_largest_first(client: Client, sandbox: RunningSandbox) -> None:
    old = real(sandbox, f"{sandbox.home}/scratch/old")
    make_tree(old, dirs=2, files_per_dir=3, size=500, age_days=40)
    make_tree(real(sandbox, f"{sandbox.home}/scratch/new"), dirs=1, files_per_dir=2, size=500)
    found = await call_ok(
        client,
        "find_paths",
        {
            "path": f"{sandbox.home}/scratch",
            "name": "*.dat",
            "type": "file",
            "min_size": 400,
            "older_than_days": 30,
        },
    )
    assert found["total_matches"] == 6 and found["total_size"] == 3000 and found["complete"] is True
    assert {m["path"].split("/scratch/")[1].split("/")[0] for m in found["matches"]} == {"old"}
    assert all(m["modified"].endswith("+08:00") for m in found["matches"])
    folders = await call_ok(
        client,
        "find_paths",
        {"path": f"{sandbox.home}/scratch", "type": "directory", "max_depth": 1, "min_size": 10_000},
    )
    assert [m["path"].rsplit("/", 1)[1] for m in folders["matches"]] == ["big-run"]


async def test_find_paths_pages_with_a_cursor(client: Client, sandbox: RunningSandbox) -> None:
    scratch = f"{sandbox.home}/scratch/big-run"
    first = await call_ok(client, "find_paths", {"path": scratch, "type": "file", "limit": 50})
    assert len(first["matches"]) == 50 and first["next_cursor"] and first["complete"] is False
    seen = [m["path"] for m in first["matches"]]
    cursor = first["next_cursor"]
    while cursor:
        page = await call_ok(client, "find_paths", {"path": scratch, "cursor": cursor, "limit": 50})
        seen += [m["path"] for m in page["matches"]]
        cursor = page.get("next_cursor")
    # Pages come in walk order (each largest first); the last one has the totals of all of them.
    assert len(seen) == len(set(seen)) == 300
    assert page["total_matches"] == 300 and page["complete"] is True
    error = await call_error(client, "find_paths", {"path": scratch, "cursor": "find-0000:5"})
    assert "find_paths again" in error


async def test_storage_status_reports_roots_and_policy(client: Client, sandbox: RunningSandbox) -> None:
    status = await call_ok(client, "storage_status", {})
    assert f"{sandbox.home}/scratch" in status["allowed_roots"]
    assert ".ssh" in status["protected_names"]
    assert status["read_only"] is False and status["max_paths"] >= 1000
    assert "quota" in status


# ---------------------------------------------------------------------------- remove by selection


async def test_remove_by_select_then_execute_by_token_alone(
    client: Client, sandbox: RunningSandbox, audit_path: Path
) -> None:
    old = real(sandbox, f"{sandbox.home}/scratch/old")
    made = make_tree(old, dirs=3, files_per_dir=30, size=200, age_days=40)
    keep = make_tree(real(sandbox, f"{sandbox.home}/scratch/fresh"), dirs=1, files_per_dir=5, size=200)
    select = {"path": f"{sandbox.home}/scratch", "name": "f*.dat", "type": "file", "older_than_days": 30}
    plan = await call_ok(client, "remove_paths", {"select": select})
    assert plan["summary"]["would_remove"] == 90 and plan["summary"]["total_size"] == 90 * 200
    assert "items" not in plan  # 90 paths: a summary, not a list
    assert plan["plan_id"] and plan["confirmation_token"]
    assert sandbox.sandbox.request_counts["async-remove"] == 0
    # A file created after the dry run that matches the selection is never removed: it was not previewed.
    late = old / "d000" / "f9999.dat"
    late.write_bytes(b"y" * 200)
    stamp = time.time() - 40 * 86400
    os.utime(late, (stamp, stamp))
    os.utime(old / "d000", (stamp, stamp))
    done = await call_ok(client, "remove_paths", {"dry_run": False, "confirmation_token": plan["confirmation_token"]})
    assert done["summary"]["removed"] + done["summary"]["queued"] == 90
    assert all(not path.exists() for path in made)
    assert late.exists() and all(path.exists() for path in keep)
    assert done["not_previewed"] == 1 and "did not show" in done["next_step"]
    assert len(json.dumps(done)) < 8000
    intent = [line for line in audit_lines(audit_path) if line["event"] == "intent"]
    assert len(intent) == 1 and len(intent[0]["paths"]) == 90


async def test_a_folder_preview_tells_what_the_removal_really_deletes(client: Client, sandbox: RunningSandbox) -> None:
    run = f"{sandbox.home}/scratch/run-001"
    size, files = tree_bytes(real(sandbox, run))
    plan = await call_ok(client, "remove_paths", {"paths": [run]})
    (item,) = plan["items"]
    assert item["type"] == "directory" and item["size"] == size and item["file_count"] == files
    assert plan["summary"]["total_size"] == size and plan["summary"]["file_count"] == files
    assert "lower_bound" not in item and "task_id" not in item  # no null fields


async def test_a_folder_holding_a_protected_name_or_a_link_is_refused(client: Client, sandbox: RunningSandbox) -> None:
    cache = real(sandbox, f"{sandbox.home}/scratch/cache")
    (cache / "deep" / ".SSH").mkdir(parents=True)
    (cache / "deep" / ".SSH" / "id_rsa").write_text("key")
    links = real(sandbox, f"{sandbox.home}/scratch/links")
    links.mkdir()
    (links / "to-notes").symlink_to(real(sandbox, f"{sandbox.home}/notes.txt"))
    plan = await call_ok(
        client, "remove_paths", {"paths": [f"{sandbox.home}/scratch/cache", f"{sandbox.home}/scratch/links"]}
    )
    by_path = {item["path"]: item for item in plan["items"]}
    assert by_path[f"{sandbox.home}/scratch/cache"]["status"] == "refused"
    assert ".SSH" in by_path[f"{sandbox.home}/scratch/cache"]["reason"]
    assert by_path[f"{sandbox.home}/scratch/links"]["status"] == "refused"
    assert "to-notes" in by_path[f"{sandbox.home}/scratch/links"]["reason"]
    assert "confirmation_token" not in plan


async def test_a_thousand_path_answer_fits_an_agents_context(client: Client, sandbox: RunningSandbox) -> None:
    base = real(sandbox, f"{sandbox.home}/scratch/many")
    make_tree(base, dirs=10, files_per_dir=100, size=10)
    paths = [f"{sandbox.home}/scratch/many/d{d:03d}/f{f:04d}.dat" for d in range(10) for f in range(100)]
    paths[5] = f"{sandbox.home}/.ssh"
    paths[6] = f"{sandbox.home}/scratch/many/nope.dat"
    plan = await call_ok(client, "remove_paths", {"paths": paths})
    text = json.dumps(plan, ensure_ascii=False, separators=(",", ":"))
    assert len(text) <= 8000, len(text)
    assert (
        plan["summary"]["would_remove"] == 998 and plan["summary"]["refused"] == 1 and plan["summary"]["missing"] == 1
    )
    assert {e["status"] for e in plan["exceptions"]} == {"refused", "missing"}
    full = await call_ok(client, "remove_paths", {"paths": paths, "detail": "full"})
    # detail='full' lists every item that fits the answer's budget, and counts the rest.
    assert len(full["items"]) + full.get("items_not_shown", 0) == 1000
    done = await call_ok(client, "remove_paths", {"dry_run": False, "confirmation_token": plan["confirmation_token"]})
    assert len(json.dumps(done, separators=(",", ":"))) <= 8000
    assert done["summary"]["removed"] + done["summary"]["queued"] == 998


# ---------------------------------------------------------------------------- listing variants


@pytest.mark.parametrize(
    "sandbox",
    [{"list_ignores_start": True, "list_page_cap": 100}, {"list_page_cap": 100}, {"list_max_limit": 1000}],
    indirect=True,
    ids=["ignores-start", "caps-pages", "refuses-large-limit"],
)
async def test_usage_survives_every_listing_variant(client: Client, sandbox: RunningSandbox, request: Any) -> None:
    base = real(sandbox, f"{sandbox.home}/scratch/wide")
    make_tree(base, dirs=1, files_per_dir=250, size=10)
    usage = await call_ok(client, "disk_usage", {"path": f"{sandbox.home}/scratch/wide"})
    if "ignores-start" in request.node.callspec.id:
        # Only the first page can be read: never counted twice, never looped, and said so.
        assert usage["file_count"] == 100 and usage["complete"] is False
        assert "could not be read whole" in usage["incomplete_reason"]
    else:
        assert usage["file_count"] == 250 and usage["total_size"] == 2500 and usage["complete"] is True


@pytest.mark.parametrize("sandbox", [{"list_ignores_start": True, "list_page_cap": 100}], indirect=True)
async def test_a_dry_run_never_confirms_a_folder_it_could_not_read_whole(
    client: Client, sandbox: RunningSandbox
) -> None:
    base = real(sandbox, f"{sandbox.home}/scratch/wide")
    make_tree(base, dirs=1, files_per_dir=250, size=10)
    plan = await call_ok(client, "remove_paths", {"paths": [f"{sandbox.home}/scratch/wide"]})
    (item,) = plan["items"]
    # What could not be read could hold a protected name or a link: the folder is not confirmed, and says why.
    assert item["status"] == "refused" and "could not be read whole" in item["reason"]
    assert "confirmation_token" not in plan


async def test_restart_keeps_a_spent_token_spent(
    make_settings: Any, sandbox: RunningSandbox, tmp_path: Path, era: str
) -> None:
    settings = make_settings(confirm_secret="shared-secret-for-replicas-0123456789", state_dir=tmp_path / "state")
    target = f"{sandbox.home}/scratch/tmp.log"
    async with Client(build_server(settings), mode=era) as first:
        plan = await call_ok(first, "remove_paths", {"paths": [target]})
        await call_ok(first, "remove_paths", {"dry_run": False, "confirmation_token": plan["confirmation_token"]})
    real(sandbox, target).write_text("a later file at a confirmed path, never dry-run\n")
    async with Client(build_server(settings), mode=era) as restarted:
        error = await call_error(
            restarted, "remove_paths", {"dry_run": False, "confirmation_token": plan["confirmation_token"]}
        )
    assert "already executed (1 removed)" in error
    assert real(sandbox, target).exists()


async def test_storage_status_reports_the_quota_of_the_hpc_url(
    make_settings: Any, sandbox: RunningSandbox, era: str
) -> None:
    settings = make_settings(scnet_hpc_url=f"{sandbox.base_url}/hpc", scnet_user="demo")
    async with Client(build_server(settings), mode=era) as client:
        status = await call_ok(client, "storage_status", {})
    (quota,) = status["quota"]
    assert quota["path"] == sandbox.home and quota["limit_bytes"] == 300 * 1024**3  # the API's GB is a GiB
    used = quota["used_bytes"]
    assert 0 <= used < 1024**3 and quota["used_percent"] == round(used * 100 / 300 / 1024**3, 1)
    assert "quota_error" not in status


async def test_storage_status_says_why_quota_is_unknown(client: Client) -> None:
    status = await call_ok(client, "storage_status", {})
    assert status["quota"] == [] and "SCNET_HPC_URL" in status["quota_error"]
