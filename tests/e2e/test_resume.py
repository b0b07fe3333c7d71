"""Work larger than one call resumes: disk_usage and find_paths read on from a saved frontier.

The walk's state lives in the state store, so a restarted server (SQLite) or another server process
sharing Redis continues it; resumed calls never read from the start (the sandbox counts the listings).
"""

from __future__ import annotations

import os
import sys
from collections.abc import Callable, Iterator
from contextlib import AsyncExitStack
from pathlib import Path
from typing import Any

import pytest
from mcp import Client, StdioServerParameters

from efile_mcp.sandbox import RunningSandbox
from efile_mcp.server import build_server
from efile_mcp.settings import Settings

from ..conftest import call_error, call_ok, child_env
from ..redis_server import RedisServer, start_redis

pytestmark = pytest.mark.anyio


def tree_figures(root: Path) -> tuple[int, int, int]:
    """(bytes of regular files, regular files, folders) below `root`, as the storage has them."""
    size = files = dirs = 0
    for base, names, leaves in os.walk(root):
        dirs += len(names)
        files += len(leaves)
        size += sum((Path(base) / leaf).stat().st_size for leaf in leaves)
    return size, files, dirs


async def usage_once(settings: Settings, arguments: dict[str, Any]) -> dict[str, Any]:
    """One disk_usage call on a server started for it and stopped after it: every call is a restart."""
    async with Client(build_server(settings)) as client:
        return await call_ok(client, "disk_usage", arguments)


async def test_disk_usage_resumes_across_server_restarts_and_never_reads_from_the_start(
    make_settings: Callable[..., Settings], sandbox: RunningSandbox
) -> None:
    settings = make_settings()
    root = f"{sandbox.home}/scratch"
    folders = sum(1 for _ in os.walk(sandbox.root / "scratch"))
    answer = await usage_once(settings, {"path": root, "max_entries": 100})
    requests = answer["requests"]
    assert answer["complete"] is False and answer["resume"] and answer["folders_pending"]
    assert answer["entries_seen"] <= 100
    assert "resume" in answer["incomplete_reason"]
    calls = 1
    while answer.get("resume"):
        answer = await usage_once(settings, {"resume": answer["resume"], "max_entries": 100})
        requests += answer["requests"]
        calls += 1
        assert calls < 10
    size, files, dirs = tree_figures(sandbox.root / "scratch")
    assert answer["complete"] is True and "resume" not in answer
    assert (answer["total_size"], answer["file_count"], answer["dir_count"]) == (size, files, dirs)
    assert calls >= 4
    # Every folder listed about once over all the calls (a folder cut by a budget takes one more page).
    assert requests <= folders + calls
    whole = await usage_once(settings, {"path": root})
    assert whole["children"] == answer["children"] and whole.get("others") == answer.get("others")


async def test_a_finished_or_unknown_resume_value_is_a_clear_error(
    make_settings: Callable[..., Settings], sandbox: RunningSandbox
) -> None:
    async with Client(build_server(make_settings())) as client:
        error = await call_error(client, "disk_usage", {"resume": "usage-0123456789abcdef"})
    assert "disk_usage again without it" in error


async def test_find_paths_pages_resume_across_a_restart_and_a_default_answer_is_complete(
    make_settings: Callable[..., Settings], sandbox: RunningSandbox
) -> None:
    settings = make_settings()
    shard = f"{sandbox.home}/scratch/big-run/shard-0"
    async with Client(build_server(settings)) as client:
        small = await call_ok(client, "find_paths", {"path": f"{sandbox.home}/scratch/run-001"})
        first = await call_ok(client, "find_paths", {"path": shard, "name": "*.dat", "limit": 30})
    assert small["complete"] is True and not small.get("incomplete_reason") and not small.get("next_cursor")
    assert small["total_matches"] == 6  # 4 files, the checkpoints folder and its 2 files
    assert first["complete"] is False and first["next_cursor"] and len(first["matches"]) == 30
    seen = [m["path"] for m in first["matches"]]
    cursor = first["next_cursor"]
    while cursor:
        async with Client(build_server(settings)) as client:  # a restart between pages
            page = await call_ok(client, "find_paths", {"path": shard, "cursor": cursor, "limit": 30})
        seen += [m["path"] for m in page["matches"]]
        cursor = page.get("next_cursor")
        # Each page reads on from the entry after the last match handed out: never the first entries again.
        assert page["entries_seen"] == min(100, len(seen))
    assert len(seen) == len(set(seen)) == 100
    assert page["total_matches"] == 100 and page["complete"] is True


async def test_a_thousand_find_paths_calls_keep_the_state_store_small(
    make_settings: Callable[..., Settings], sandbox: RunningSandbox, audit_path: Path
) -> None:
    # Each call leaves a cursor (more matches than the limit): a frontier, not the matches.
    async with Client(build_server(make_settings())) as client:
        for _ in range(1_000):
            page = await call_ok(
                client, "find_paths", {"path": f"{sandbox.home}/scratch/big-run", "type": "file", "limit": 1}
            )
            assert page["next_cursor"]
    store = sum(p.stat().st_size for p in audit_path.parent.glob("state.sqlite3*"))
    assert store < 10_000_000, f"the state store grew to {store} bytes"


# ---------------------------------------------------------------------------------------------- Redis


@pytest.fixture(scope="module")
def redis_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisServer]:
    server = start_redis(tmp_path_factory.mktemp("redis-resume"))
    yield server
    server.stop()


def replica(sandbox: RunningSandbox, redis_url: str, state: Path) -> StdioServerParameters:
    env = child_env(
        EFILE_BASE_URL=sandbox.base_url,
        EFILE_TOKEN=sandbox.token,
        EFILE_ALLOWED_ROOTS=f"{sandbox.home}/scratch",
        EFILE_STATE_URL=redis_url,
        EFILE_STATE_DIR=str(state),
        EFILE_AUDIT_LOG=str(state / "audit.jsonl"),
        EFILE_WALK_MAX_ENTRIES="100",
    )
    return StdioServerParameters(command=sys.executable, args=["-m", "efile_mcp"], env=env)


async def test_disk_usage_started_on_one_replica_is_read_on_by_another_through_redis(
    sandbox: RunningSandbox, redis_server: RedisServer, tmp_path: Path
) -> None:
    async with AsyncExitStack() as stack:
        a = await stack.enter_async_context(Client(replica(sandbox, redis_server.url, tmp_path / "a")))
        b = await stack.enter_async_context(Client(replica(sandbox, redis_server.url, tmp_path / "b")))
        answer = await call_ok(a, "disk_usage", {"path": f"{sandbox.home}/scratch"})
        assert answer["complete"] is False and answer["resume"]
        turns = [b, a]
        calls = 1
        while answer.get("resume"):
            answer = await call_ok(turns[calls % 2], "disk_usage", {"resume": answer["resume"]})
            calls += 1
            assert calls < 10
    size, files, dirs = tree_figures(sandbox.root / "scratch")
    assert (answer["total_size"], answer["file_count"], answer["dir_count"]) == (size, files, dirs)
    assert calls >= 4


async def test_a_dry_run_too_big_for_one_call_reads_on_across_restarts_and_only_then_gives_a_token(
    make_settings: Callable[..., Settings], sandbox: RunningSandbox
) -> None:
    secret = "one-secret-for-every-restart-0123456789"  # the token outlives the process that issued it
    small = make_settings(walk_max_entries=100, confirm_secret=secret)  # big-run holds 303 entries
    folder = f"{sandbox.home}/scratch/big-run"
    async with Client(build_server(small)) as client:
        answer = await call_ok(client, "remove_paths", {"paths": [folder], "mode": "delete"})
    assert answer["resume"] and not answer.get("confirmation_token")
    assert "resume" in answer["next_step"]
    calls = 1
    while answer.get("resume"):
        async with Client(build_server(small)) as client:  # a restart between the calls
            answer = await call_ok(client, "remove_paths", {"resume": answer["resume"]})
        calls += 1
        assert calls < 10
    size, files, _ = tree_figures(sandbox.root / "scratch" / "big-run")
    assert calls >= 3 and answer["confirmation_token"]
    assert (answer["summary"]["total_size"], answer["summary"]["file_count"]) == (size, files)
    # Execution re-checks the folder whole in one call: a server with the default budget.
    async with Client(build_server(make_settings(confirm_secret=secret))) as client:
        error = await call_error(client, "remove_paths", {"resume": "dry-0123456789abcdef"})
        assert "again without it" in error
        done = await call_ok(
            client, "remove_paths", {"dry_run": False, "confirmation_token": answer["confirmation_token"]}
        )
    assert done["summary"]["removed"] + done["summary"].get("queued", 0) == 1
    assert not (sandbox.root / "scratch" / "big-run").exists() or done["summary"].get("queued")


async def test_a_plan_whose_dry_run_took_several_calls_executes_on_the_same_budget(
    make_settings: Callable[..., Settings], sandbox: RunningSandbox
) -> None:
    # The execution's re-check reads the folder whole in one call: the entry budget of a call is not its limit.
    settings = make_settings(walk_max_entries=100)
    folder = f"{sandbox.home}/scratch/big-run"
    async with Client(build_server(settings)) as client:
        answer = await call_ok(client, "remove_paths", {"paths": [folder], "mode": "delete"})
        while answer.get("resume"):
            answer = await call_ok(client, "remove_paths", {"resume": answer["resume"]})
        done = await call_ok(
            client, "remove_paths", {"dry_run": False, "confirmation_token": answer["confirmation_token"]}
        )
    statuses = [item["status"] for item in done.get("items") or []]
    assert statuses in (["removed"], ["queued"]), done
