"""The audit reconciles: an `intent` a crash left without an outcome gets a `reconciled` record at the next start,
with each path's state as the storage shows it, and nothing that already has an outcome is reconciled again.

Crashes are simulated by writing the records the way the guard does (`encode_record`, with the `process`
field an intent carries), naming a process that is gone.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import anyio
import httpx2 as httpx
from mcp import Client
from mcp.shared.exceptions import MCPError

from efile_mcp.client import RetryPolicy, StaticToken
from efile_mcp.client.api import EfileApi
from efile_mcp.client.transport import EfileTransport
from efile_mcp.client.walk import Listings
from efile_mcp.guard.audit import PROCESS, AuditLog, encode_record
from efile_mcp.guard.reconcile import open_intents, reconcile
from efile_mcp.sandbox import RunningSandbox
from efile_mcp.sandbox.faults import FaultPlan, FaultRule
from efile_mcp.server import build_server
from efile_mcp.settings import Settings

from .conftest import HeldRequest, audit_lines, call_ok, dry_run_then_execute, wait_for_event
from .e2e.test_http import PROCESSES, connect, http_process, settings_env


def dead_process() -> str:
    """The `process` field of an intent whose writer is gone (a finished child's pid on this host)."""
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    child.wait()
    return f"{socket.gethostname()}:{child.pid}:0badc0de"


def stamp(ago: timedelta = timedelta(0)) -> str:
    return (datetime.now(UTC) - ago).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def record(event: str, when: str | None = None, **fields: Any) -> bytes:
    line = encode_record(event, fields)
    if when is not None:  # as written back then
        line = line.replace(line[9:33], when.encode(), 1)
    return line


def intent(plan_id: str, paths: list[str], process: str, when: str | None = None, **extra: Any) -> bytes:
    fields = {"tool": "remove_paths", "plan_id": plan_id, "confirmed_by": "token", "paths": paths, "changed": []}
    return record("intent", when, **fields, **extra, process=process)


def execution(plan_id: str) -> bytes:
    return record("execution", tool="remove_paths", dry_run=False, decision="executed", plan_id=plan_id, items=[])


@asynccontextmanager
async def storage(sandbox: RunningSandbox, retry: RetryPolicy | None = None) -> AsyncIterator[Listings]:
    """What the storage shows, read the way the server reads it."""
    transport = EfileTransport(sandbox.base_url, StaticToken(sandbox.token), retry=retry)
    try:
        yield Listings(EfileApi(transport), keep=False)
    finally:
        await transport.aclose()


async def wait_for_reconciled(audit: Path, count: int) -> list[dict[str, Any]]:
    with anyio.fail_after(20):
        while len(found := [r for r in audit_lines(audit) if r["event"] == "reconciled"]) < count:
            await anyio.sleep(0.05)
    return found


async def test_intents_left_by_a_crash_are_reconciled_at_start_with_each_paths_state(
    sandbox: RunningSandbox, make_settings: Callable[..., Settings], audit_path: Path
) -> None:
    scratch = f"{sandbox.home}/scratch"
    gone, there = f"{scratch}/run-001/stdout.log", f"{scratch}/tmp.log"
    folder_there, folder_gone = f"{scratch}/run-002", f"{scratch}/never-was"
    dead = dead_process()
    audit_path.parent.mkdir(parents=True, exist_ok=True)
    (sandbox.root / "scratch" / "run-001" / "stdout.log").unlink()  # the crashed removal got this far
    # Rotated away by logrotate: one intent closed in the current file, one never closed.
    rotated = audit_path.with_name(audit_path.name + ".1")
    rotated.write_bytes(
        intent("plan-closed-later", [there], dead, stamp(timedelta(hours=2)))
        + intent("plan-rotated", [folder_gone], dead, stamp(timedelta(hours=2)), mode="quarantine")
    )
    os.utime(rotated, (1, 1))
    audit_path.write_bytes(
        execution("plan-closed-later")
        + intent("plan-crashed", [gone, there, folder_there, folder_gone], dead, task_ids=["t-1"])
        + intent("plan-done", [there], dead)
        + execution("plan-done")
        # Still running: another process alive on this host, and a replica elsewhere a minute ago.
        + intent("plan-live-here", [there], f"{socket.gethostname()}:{os.getppid()}:feedface")
        + intent("plan-elsewhere-now", [there], "other-host:4242:cafe", stamp(timedelta(minutes=1)))
        # A replica elsewhere that stopped an hour ago: its execution is over, one way or another.
        + intent("plan-elsewhere-old", [gone], "other-host:4242:cafe", stamp(timedelta(hours=1)))
        # Written before intents named their process.
        + record("intent", tool="remove_paths", plan_id="plan-older-format", paths=[there])
    )

    async with Client(build_server(make_settings())) as client:
        found = await wait_for_reconciled(audit_path, 4)
        # The server answers while (and after) it reconciles.
        assert (await client.call_tool("storage_status", {})).is_error is False

    by_plan = {r["plan_id"]: r for r in found}
    assert sorted(by_plan) == ["plan-crashed", "plan-elsewhere-old", "plan-older-format", "plan-rotated"]
    crashed = by_plan["plan-crashed"]
    assert crashed["gone"] == [gone, folder_gone]
    assert crashed["still_there"] == [there, folder_there]
    assert crashed["unknown"] == []
    assert crashed["task_ids"] == ["t-1"]
    assert crashed["counts"] == {"gone": 2, "still_there": 2, "unknown": 0}
    assert crashed["intent_time"] and crashed["tool"] == "remove_paths"
    assert by_plan["plan-rotated"]["gone"] == [folder_gone]
    # A quarantine's path gone from its place is most likely in quarantine: the record says where to look.
    assert by_plan["plan-rotated"]["mode"] == "quarantine" and "restore_paths" in by_plan["plan-rotated"]["reason"]
    assert "restore_paths" not in crashed["reason"]
    assert by_plan["plan-elsewhere-old"]["gone"] == [gone]
    assert by_plan["plan-older-format"]["still_there"] == [there]
    # Reading only: the storage is as it was.
    assert (sandbox.root / "scratch" / "tmp.log").exists() and not sandbox.sandbox.received_remove_paths

    # Once reconciled, never again: the next pass finds nothing to do (the live ones are still left).
    audit = AuditLog(audit_path)
    async with storage(sandbox) as states:
        again = await reconcile(audit, states)
        assert again.reconciled == []
        assert sorted(again.left_running) == ["plan-elsewhere-now", "plan-live-here"]
        # A resumed execution names its plan and holds its lease: reconciled whoever wrote the intent.
        resumed = await reconcile(audit, states, plan_ids=["plan-live-here"])
        assert resumed.reconciled == ["plan-live-here"]
    audit.close()
    assert len([r for r in audit_lines(audit_path) if r["event"] == "reconciled"]) == 5


async def test_an_execution_that_finished_leaves_nothing_to_reconcile_and_this_process_is_left_alone(
    sandbox: RunningSandbox, make_settings: Callable[..., Settings], audit_path: Path
) -> None:
    async with Client(build_server(make_settings())) as client:
        await dry_run_then_execute(client, [f"{sandbox.home}/scratch/tmp.log"])
    intents = [r for r in audit_lines(audit_path) if r["event"] == "intent"]
    assert intents and all(r["process"] == PROCESS for r in intents), "an intent names the process that wrote it"
    # This process's own intent without an outcome (a removal in flight right now) is not touched at start.
    with audit_path.open("ab") as out:
        out.write(intent("plan-in-flight", [f"{sandbox.home}/scratch/run-002"], PROCESS))
    audit = AuditLog(audit_path)
    async with storage(sandbox) as states:
        done = await reconcile(audit, states)
    audit.close()
    assert done.reconciled == [] and done.left_running == ["plan-in-flight"]


async def test_an_unreadable_path_is_recorded_as_unknown_with_why(
    sandbox: RunningSandbox, make_settings: Callable[..., Settings], audit_path: Path
) -> None:
    audit_path.parent.mkdir(parents=True, exist_ok=True)
    audit_path.write_bytes(intent("plan-x", [f"{sandbox.home}/scratch/tmp.log"], dead_process()))
    sandbox.sandbox.faults = FaultPlan([FaultRule("http_5xx", endpoint="*")])
    audit = AuditLog(audit_path)
    async with storage(sandbox, RetryPolicy(attempts=1, budget=1.0)) as states:
        done = await reconcile(audit, states)
    audit.close()
    assert done.reconciled == ["plan-x"]
    (found,) = [r for r in audit_lines(audit_path) if r["event"] == "reconciled"]
    assert found["gone"] == found["still_there"] == []
    assert [u["path"] for u in found["unknown"]] == [f"{sandbox.home}/scratch/tmp.log"]
    assert found["unknown"][0]["error"]


async def test_a_replica_killed_after_sending_is_reconciled_by_the_next_start(
    sandbox: RunningSandbox, tmp_path: Path
) -> None:
    """The crash the issue saw: SIGKILL while the removal is on the wire; the storage acts anyway, nobody records it."""
    targets = [f"{sandbox.home}/scratch/tmp.log", f"{sandbox.home}/scratch/run-002"]
    audit = tmp_path / "audit.jsonl"
    env = settings_env(sandbox, audit, EFILE_REMOVE_MODE="delete")
    held = HeldRequest("async-remove", passed=0)
    with http_process(env=env) as (url, _):
        replica = PROCESSES[url]
        try:
            async with connect(url) as client:
                plan = await call_ok(client, "remove_paths", {"paths": targets})
                sandbox.sandbox.fault = held
                execute = {"paths": targets, "dry_run": False, "confirmation_token": plan["confirmation_token"]}
                async with anyio.create_task_group() as tg:
                    tg.start_soon(client.call_tool, "remove_paths", execute)
                    await wait_for_event(held.arrived, "the removal reached the storage")
                    replica.kill()
                    replica.wait()
                    held.release()  # the storage goes on with what it was sent
        except* (httpx.HTTPError, MCPError):
            pass  # the replica is gone mid-call
    with anyio.fail_after(10):  # the storage's task finishes what it was sent
        while (sandbox.root / "scratch" / "tmp.log").exists() or (sandbox.root / "scratch" / "run-002").exists():
            await anyio.sleep(0.05)
    (intent_record,) = [r for r in audit_lines(audit) if r["event"] == "intent"]
    assert not [r for r in audit_lines(audit) if r["event"] in ("execution", "reconciled")]

    with http_process(env=env):  # the next start, here or on another replica sharing the audit log
        (found,) = await wait_for_reconciled(audit, 1)
    assert found["plan_id"] == intent_record["plan_id"]
    assert sorted(found["gone"]) == sorted(targets) and found["still_there"] == found["unknown"] == []


def test_only_the_newest_rotated_files_are_read_and_compressed_ones_never(tmp_path: Path) -> None:
    audit = tmp_path / "audit.jsonl"
    dead = dead_process()
    for age in range(1, 6):  # audit.jsonl.5 (oldest) ... audit.jsonl.1
        rotated = audit.with_name(f"audit.jsonl.{age}")
        rotated.write_bytes(intent(f"plan-in-{age}", ["/p"], dead))
        os.utime(rotated, (10_000 - age, 10_000 - age))
    (tmp_path / "audit.jsonl.6.gz").write_bytes(intent("plan-compressed", ["/p"], dead))
    audit.write_bytes(intent("plan-current", ["/p"], dead))
    assert {i.plan_id for i in open_intents(audit)} == {"plan-in-3", "plan-in-2", "plan-in-1", "plan-current"}
