"""Plans from a selection larger than the typed-paths limit (issue 15): one approval, rows in the state store.

EFILE_MAX_PATHS bounds the paths an agent types in one call; a `select` is planned whole up to
EFILE_MAX_PLAN_PATHS, its plan kept as rows (not one blob), and sent in batches of at most 100 paths.
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Iterator
from contextlib import AsyncExitStack
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest
from mcp import Client

from efile_mcp.errors import PlanRowsChanged
from efile_mcp.guard.sealing import PathSetDigest, path_set_digest, plan_digest
from efile_mcp.guard.seen import (
    Plan,
    SeenPath,
    load_header,
    load_plan,
    save_plan,
    stored_digest,
    verified_units,
)
from efile_mcp.guard.store import RedisStore, SqliteStore, open_store
from efile_mcp.models.results import STRUCTURED_MAX
from efile_mcp.sandbox import RunningSandbox
from efile_mcp.server import build_server

from .conftest import call_error, call_ok
from .e2e.test_replicas import replica
from .redis_server import RedisServer, start_redis

OLD_LOGS = 20_000
KEPT = 30


def _many_logs(sandbox: RunningSandbox) -> Path:
    """20,000 old logs beside 30 files the selection leaves out, in one folder of the sandbox."""
    folder = sandbox.root / "scratch" / "job-array"
    folder.mkdir()
    for i in range(OLD_LOGS):
        (folder / f"slurm-{i:05d}.log").write_bytes(b"x")
    for i in range(KEPT):
        (folder / f"result-{i:02d}.csv").write_bytes(b"keep")
    return folder


def _size(answer: dict[str, Any]) -> int:
    return len(json.dumps(answer, ensure_ascii=False))


async def test_a_selection_over_the_typed_limit_is_planned_and_executed_in_one_approval(
    make_settings: Any, sandbox: RunningSandbox
) -> None:
    folder = _many_logs(sandbox)
    select = {"path": f"{sandbox.home}/scratch/job-array", "name": "*.log"}
    settings = make_settings(confirm="token")
    assert settings.max_paths < OLD_LOGS <= settings.max_plan_paths
    async with Client(build_server(settings)) as client:
        plan = await call_ok(client, "remove_paths", {"select": select})
        assert plan["summary"]["would_remove"] == OLD_LOGS and plan["confirmation_token"]
        assert _size(plan) <= STRUCTURED_MAX
        done = await call_ok(
            client, "remove_paths", {"dry_run": False, "confirmation_token": plan["confirmation_token"]}
        )
    assert done["summary"]["removed"] == OLD_LOGS
    assert _size(done) <= STRUCTURED_MAX
    assert sorted(p.name for p in folder.iterdir()) == [f"result-{i:02d}.csv" for i in range(KEPT)]
    # At most 100 paths per request: 20,000 paths took at least 200 removal requests.
    assert sandbox.sandbox.request_counts["async-remove"] >= OLD_LOGS // 100


async def test_typed_paths_over_the_limit_are_refused_with_advice_that_keeps_what_was_left_out(
    make_settings: Any, sandbox: RunningSandbox
) -> None:
    _many_logs(sandbox)
    home = sandbox.home
    async with Client(build_server(make_settings(max_paths=100, max_plan_paths=1000))) as client:
        typed = await call_error(
            client, "remove_paths", {"paths": [f"{home}/scratch/job-array/slurm-{i:05d}.log" for i in range(101)]}
        )
        selected = await call_error(
            client, "remove_paths", {"select": {"path": f"{home}/scratch/job-array", "name": "*.log"}}
        )
    assert "EFILE_MAX_PATHS" in typed and "select" in typed
    assert "EFILE_MAX_PLAN_PATHS" in selected
    for text in (typed, selected):
        # Removing the common parent would delete the 30 result files the selection left out.
        assert "parent" not in text.lower()
    assert sandbox.sandbox.request_counts["async-remove"] == 0


def _plan(count: int) -> Plan:
    paths = [SeenPath(f"/home/u/scratch/f{i:06d}", "file", 1, 1_700_000_000.0, 1) for i in range(count)]
    return Plan(plan_id="abc123", expires_at=2_000_000_000.0, paths=paths, created_at=1_700_000_000.0)


def test_the_digest_is_computed_a_path_at_a_time() -> None:
    paths = [f"/home/u/{name}" for name in ("b", "a", "c/d", "c")]
    digest = PathSetDigest()
    for path in sorted(paths):
        digest.add(path)
    assert digest.hexdigest() == path_set_digest(paths)


async def test_a_plan_is_kept_as_rows_and_survives_a_restart(tmp_path: Path) -> None:
    clock = lambda: 1_700_000_100.0  # noqa: E731
    plan = _plan(12_345)
    first = SqliteStore(tmp_path / "state.sqlite3", clock=clock)
    await save_plan(first, plan)
    await first.aclose()
    with sqlite3.connect(tmp_path / "state.sqlite3") as db:
        (rows,) = db.execute("SELECT count(*) FROM plan_rows WHERE plan_id = ?", ("abc123",)).fetchone()
        (header,) = db.execute("SELECT length(data) FROM plans WHERE plan_id = ?", ("abc123",)).fetchone()
    assert rows == 12_345 and header < 4_000  # the header stays small whatever the count
    second = SqliteStore(tmp_path / "state.sqlite3", clock=clock)
    loaded = await load_plan(second, "abc123")
    await second.aclose()
    assert loaded is not None and loaded.paths == plan.paths
    assert [n for n, _ in loaded.units] == [5_000, 5_000, 2_345]  # one unit a store request, its digest kept
    assert loaded.digest == plan_digest(loaded.units) != path_set_digest(plan.path_set)


async def test_each_unit_of_rows_is_checked_against_its_digest_when_it_is_read(tmp_path: Path) -> None:
    store = SqliteStore(tmp_path / "state.sqlite3", clock=lambda: 1_700_000_100.0)
    try:
        await save_plan(store, _plan(12_345))
        header = await load_header(store, "abc123")
        assert header is not None and header.paths == [] and header.count == 12_345
        assert await stored_digest(store, header) == header.digest  # from the header alone
        read = [len(rows) async for rows in verified_units(store, header)]
        assert read == [5_000, 5_000, 2_345]
        # A row changed in the store (its path, or only its size or time) is caught when its unit is read:
        # what comes before is handed out, nothing of that unit or after it.
        seen = SeenPath("/home/u/scratch/f007000", "file", 2, 1_700_000_000.0, 2)  # the same path, another size
        await store.save_plan_rows("abc123", 7_000, [json.dumps(seen.to_row()).encode()], header.expires_at)
        handed: list[int] = []
        with pytest.raises(PlanRowsChanged):
            async for rows in verified_units(store, header):
                handed.append(len(rows))
        assert handed == [5_000]
        # A header whose units do not add up to its count (lost, or rewritten) binds nothing.
        header.count += 1
        assert await stored_digest(store, header) is None
    finally:
        await store.aclose()


def _files(sandbox: RunningSandbox, count: int) -> tuple[Path, dict[str, Any]]:
    folder = sandbox.root / "scratch" / "batch"
    folder.mkdir()
    for i in range(count):
        (folder / f"f{i:03d}.out").write_bytes(b"x")
    return folder, {"path": f"{sandbox.home}/scratch/batch", "name": "*.out"}


async def test_a_path_changed_in_the_middle_batch_is_changed_and_not_sent(
    make_settings: Any, sandbox: RunningSandbox
) -> None:
    folder, select = _files(sandbox, 250)  # three batches of at most 100
    async with Client(build_server(make_settings(confirm="token"))) as client:
        plan = await call_ok(client, "remove_paths", {"select": select})
        (folder / "f150.out").write_bytes(b"xy")  # the middle batch's path grows after the dry run
        done = await call_ok(
            client, "remove_paths", {"dry_run": False, "confirmation_token": plan["confirmation_token"]}
        )
    assert (done["summary"]["removed"], done["summary"]["changed"]) == (249, 1)
    assert [p.name for p in folder.iterdir()] == ["f150.out"]
    assert f"{sandbox.home}/scratch/batch/f150.out" not in sandbox.sandbox.received_remove_paths
    assert len(sandbox.sandbox.received_remove_paths) == 249


async def test_an_execution_resumed_after_a_crash_does_not_send_what_finished_again(
    make_settings: Any, sandbox: RunningSandbox
) -> None:
    folder, select = _files(sandbox, 250)
    settings = make_settings(confirm="token")
    async with Client(build_server(settings)) as client:
        plan = await call_ok(client, "remove_paths", {"select": select})
        # A process redeemed the plan, sent its first batch (those 100 files are gone) and died: its lease is over.
        store = open_store(None, settings.state_dir)
        try:
            dead = await store.redeem(
                plan["plan_id"], datetime.fromisoformat(plan["expires_at"]).timestamp(), token_alone=True, lease=0.0
            )
        finally:
            await store.aclose()
        assert dead.won
        for i in range(100):
            (folder / f"f{i:03d}.out").unlink()
        done = await call_ok(
            client, "remove_paths", {"dry_run": False, "confirmation_token": plan["confirmation_token"]}
        )
    assert (done["summary"]["removed"], done["summary"]["missing"]) == (150, 100)
    assert sorted(sandbox.sandbox.received_remove_paths) == [
        f"{sandbox.home}/scratch/batch/f{i:03d}.out" for i in range(100, 250)
    ]
    assert not any(folder.iterdir())


@pytest.fixture(scope="module")
def redis_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisServer]:
    server = start_redis(tmp_path_factory.mktemp("redis-plan-rows"))
    yield server
    server.stop()


async def test_two_processes_on_redis_share_a_plans_rows(
    sandbox: RunningSandbox, redis_server: RedisServer, tmp_path: Path
) -> None:
    folder, select = _files(sandbox, 0)
    for i in range(10_500):  # over the 10,000 typed-paths limit
        (folder / f"g{i:05d}.out").write_bytes(b"x")
    async with AsyncExitStack() as stack:
        a = await stack.enter_async_context(Client(replica(sandbox, redis_server.url, tmp_path / "a.jsonl")))
        b = await stack.enter_async_context(Client(replica(sandbox, redis_server.url, tmp_path / "b.jsonl")))
        plan = await call_ok(a, "remove_paths", {"select": select})
        assert plan["summary"]["would_remove"] == 10_500
        store = RedisStore(redis_server.url)
        try:
            header = await store.load_plan(plan["plan_id"])
            rows = await store.load_plan_rows(plan["plan_id"], 10_499, 10)
        finally:
            await store.aclose()
        assert header is not None and len(header) < 4_000 and len(rows) == 1  # rows beside a small header
        done = await call_ok(b, "remove_paths", {"dry_run": False, "confirmation_token": plan["confirmation_token"]})
    assert done["summary"]["removed"] == 10_500, done
    assert not any(folder.iterdir())


# ---------------------------------------------------------------------------------------------- a selection found in rounds


def _tree(sandbox: RunningSandbox, folders: int, per_folder: int) -> Path:
    top = sandbox.root / "scratch" / "logs"
    for f in range(folders):
        folder = top / f"job-{f:02d}"
        folder.mkdir(parents=True)
        for i in range(per_folder):
            (folder / f"out-{i:03d}.log").write_bytes(b"x" * (i + 1))
        (folder / "keep.txt").write_bytes(b"keep")
    return top


async def test_a_file_selection_bigger_than_a_call_is_read_on_across_calls_and_a_restart(
    make_settings: Any, sandbox: RunningSandbox
) -> None:
    """The search resumes where it stopped (never from the start), in another server on the same state file;
    the plan and its token come only when the search is whole, and they hold every match once."""
    top = _tree(sandbox, 12, 100)
    select = {"path": f"{sandbox.home}/scratch/logs", "name": "*.log", "type": "file"}
    settings = make_settings(confirm="token", walk_max_entries=250)  # a call reads 250 entries, the tree 1,224
    answers = []
    async with Client(build_server(settings)) as client:
        answer = await call_ok(client, "remove_paths", {"select": select})
        answers.append(answer)
    async with Client(build_server(settings)) as client:  # a restart: the frontier and rows are in the store
        while answer.get("resume"):
            assert "confirmation_token" not in answer and answer["summary"]["would_remove"] < 1_200
            answer = await call_ok(client, "remove_paths", {"resume": answer["resume"]})
            answers.append(answer)
        assert len(answers) >= 5, [a["summary"]["would_remove"] for a in answers]
        # Each call reads on: what it planned grows, never restarts from nothing.
        counts = [a["summary"]["would_remove"] for a in answers]
        assert counts == sorted(counts) and counts[-1] == 1_200
        assert answer["summary"]["total_size"] == 12 * sum(range(1, 101))
        done = await call_ok(
            client, "remove_paths", {"dry_run": False, "confirmation_token": answer["confirmation_token"]}
        )
    assert done["summary"]["removed"] == 1_200
    assert sorted(p.name for p in top.rglob("*") if p.is_file()) == ["keep.txt"] * 12
    assert len(sandbox.sandbox.received_remove_paths) == 1_200 == len(set(sandbox.sandbox.received_remove_paths))


async def test_a_file_selection_over_the_plan_limit_is_refused_while_reading(
    make_settings: Any, sandbox: RunningSandbox
) -> None:
    _tree(sandbox, 3, 100)
    select = {"path": f"{sandbox.home}/scratch/logs", "type": "file"}
    async with Client(build_server(make_settings(max_plan_paths=150))) as client:
        text = await call_error(client, "remove_paths", {"select": select})
    assert "the selection matches at least" in text and "EFILE_MAX_PLAN_PATHS" in text
    assert "parent" not in text.split("EFILE_MAX_PLAN_PATHS")[1]  # never advises a folder holding what it left out
    assert not sandbox.sandbox.received_remove_paths


async def test_a_saved_walk_is_taken_by_one_caller_only(tmp_path: Path, redis_server: RedisServer) -> None:
    import anyio

    for store in (SqliteStore(tmp_path / "state.sqlite3"), RedisStore(redis_server.url)):
        try:
            await store.save_walk("dry-x", b"state", 4_000_000_000.0)
            got: list[bytes | None] = []

            async def take(store: Any = store, got: list[bytes | None] = got) -> None:
                got.append(await store.take_walk("dry-x"))

            async with anyio.create_task_group() as group:
                for _ in range(4):
                    group.start_soon(take)
            assert sorted(got, key=lambda v: v is None) == [b"state", None, None, None]
            assert await store.load_walk("dry-x") is None
        finally:
            await store.aclose()


async def test_a_selection_of_folders_bigger_than_a_call_is_read_on_across_calls_and_a_restart(
    make_settings: Any, sandbox: RunningSandbox
) -> None:
    """A selection that matches folders (type "any", the default) reads on across calls too: a matched folder
    is planned whole, its tree read afresh for the plan (across calls when it is bigger than one), and the
    matches inside it are covered by it, never planned apart. The plan and its token come when all is read."""
    top = _tree(sandbox, 12, 100)
    for i in range(100, 600):  # job-00 holds 601 entries: more than one call reads
        (top / "job-00" / f"out-{i:03d}.log").write_bytes(b"z")
    # "*-0*": the folders job-00 .. job-09 and every out-0NN.log file; those inside job-0N are covered.
    select = {"path": f"{sandbox.home}/scratch/logs", "name": "*-0*"}
    settings = make_settings(confirm="token", walk_max_entries=250)
    answers = []
    async with Client(build_server(settings)) as client:
        answer = await call_ok(client, "remove_paths", {"select": select})
        answers.append(answer)
    async with Client(build_server(settings)) as client:  # a restart: the frontier and rows are in the store
        while answer.get("resume"):
            assert "confirmation_token" not in answer
            answer = await call_ok(client, "remove_paths", {"resume": answer["resume"]})
            answers.append(answer)
        assert len(answers) >= 8, [a["summary"]["would_remove"] for a in answers]
        summary = answer["summary"]
        # 10 folders + job-10's and job-11's out-000 .. out-099 (200 files).
        assert (summary["would_remove"], summary["folder_count"]) == (210, 10), summary
        assert summary["covered"] == 100 + 9 * 100 + 0, summary  # out-0NN.log inside job-0N (job-00: out-000..099)
        assert summary["file_count"] == 10 * 101 + 500 + 200, summary
        done = await call_ok(
            client, "remove_paths", {"dry_run": False, "confirmation_token": answer["confirmation_token"]}
        )
        # Removed at once, or queued as server tasks (folders are).
        assert done["summary"]["removed"] + done["summary"]["queued"] == 210, done["summary"]
        await call_ok(client, "get_task", {"plan_id": answer["plan_id"], "wait_seconds": 20})
    assert sorted(p.name for p in top.iterdir()) == ["job-10", "job-11"]
    assert sorted(p.name for p in top.rglob("*")) == ["job-10", "job-11", "keep.txt", "keep.txt"]
    sent = sandbox.sandbox.received_remove_paths
    assert len(sent) == 210 == len(set(sent))
