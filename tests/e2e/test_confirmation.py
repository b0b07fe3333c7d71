"""Every way the confirmation can be abused is refused, as a tool error that says what to do, with nothing sent."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import anyio
import pytest
from mcp import Client

from efile_mcp.sandbox import RunningSandbox
from efile_mcp.server import build_server

from ..clocks import ManualClock
from ..conftest import audit_lines, call_error, call_ok

# ---------------------------------------------------------------------------- through the MCP surface


async def plan_for(client: Client, paths: list[str]) -> dict[str, Any]:
    plan = await call_ok(client, "remove_paths", {"paths": paths})
    assert plan["confirmation_token"]
    return plan


async def execute(client: Client, paths: list[str], token: str | None) -> str:
    arguments: dict[str, Any] = {"paths": paths, "dry_run": False}
    if token is not None:
        arguments["confirmation_token"] = token
    return await call_error(client, "remove_paths", arguments)


def assert_nothing_sent(sandbox: RunningSandbox) -> None:
    assert sandbox.sandbox.request_counts["async-remove"] == 0
    assert sandbox.sandbox.received_remove_paths == []


def tamper(token: str) -> str:
    return token[:-2] + ("AA" if not token.endswith("AA") else "BB")


async def test_execution_without_a_token_is_refused(client: Client, sandbox: RunningSandbox, audit_path: Path) -> None:
    path = f"{sandbox.home}/scratch/tmp.log"
    text = await execute(client, [path], None)
    assert "dry_run=true first" in text
    text = await execute(client, [path], "")
    assert "dry_run=true first" in text
    assert_nothing_sent(sandbox)
    assert [(line["event"], line["reason"]) for line in audit_lines(audit_path)] == [
        ("refusal", "missing_token"),
        ("refusal", "missing_token"),
    ]


async def test_tampered_token_is_refused(client: Client, sandbox: RunningSandbox) -> None:
    paths = [f"{sandbox.home}/scratch/tmp.log"]
    plan = await plan_for(client, paths)
    text = await execute(client, paths, tamper(plan["confirmation_token"]))
    assert "not valid" in text and "dry_run=true again" in text
    assert_nothing_sent(sandbox)


async def test_truncated_token_is_refused(client: Client, sandbox: RunningSandbox) -> None:
    paths = [f"{sandbox.home}/scratch/tmp.log"]
    plan = await plan_for(client, paths)
    text = await execute(client, paths, plan["confirmation_token"][:20])
    assert "not valid" in text
    assert_nothing_sent(sandbox)


async def test_reused_token_is_refused(client: Client, sandbox: RunningSandbox, audit_path: Path) -> None:
    paths = [f"{sandbox.home}/scratch/tmp.log"]
    plan = await plan_for(client, paths)
    await call_ok(
        client, "remove_paths", {"paths": paths, "dry_run": False, "confirmation_token": plan["confirmation_token"]}
    )
    sent = list(sandbox.sandbox.received_remove_paths)
    text = await execute(client, paths, plan["confirmation_token"])
    # Not a bare "already used": the plan says it ran, and what came of it.
    assert "already executed (1 removed)" in text and "nothing more was done" in text
    assert sandbox.sandbox.received_remove_paths == sent
    assert audit_lines(audit_path)[-1]["reason"] == "already_executed"


async def test_expired_token_is_refused(make_settings: Any, sandbox: RunningSandbox, era: str) -> None:
    clock = ManualClock()
    server = build_server(make_settings(confirm_ttl=5), clock=clock)
    paths = [f"{sandbox.home}/scratch/tmp.log"]
    async with Client(server, mode=era) as client:
        plan = await plan_for(client, paths)
        clock.now += 6  # the server's clock, not a sleep
        text = await execute(client, paths, plan["confirmation_token"])
    assert "expired" in text and "dry_run=true again" in text
    assert_nothing_sent(sandbox)


async def test_token_from_another_server_process_is_refused(
    make_settings: Any, sandbox: RunningSandbox, era: str
) -> None:
    paths = [f"{sandbox.home}/scratch/tmp.log"]
    async with Client(build_server(make_settings()), mode=era) as other:
        foreign = (await plan_for(other, paths))["confirmation_token"]
    async with Client(build_server(make_settings()), mode=era) as client:
        text = await execute(client, paths, foreign)
    assert "another efile-mcp process" in text
    assert_nothing_sent(sandbox)


@pytest.mark.parametrize("shape", ["superset", "subset", "other"])
async def test_a_different_path_set_is_refused(client: Client, sandbox: RunningSandbox, shape: str) -> None:
    home = sandbox.home
    confirmed = [f"{home}/scratch/tmp.log", f"{home}/scratch/run-002"]
    plan = await plan_for(client, confirmed)
    given = {
        "superset": [*confirmed, f"{home}/scratch/run-001"],
        "subset": confirmed[:1],
        "other": [confirmed[0], f"{home}/scratch/run-001"],
    }[shape]
    text = await execute(client, given, plan["confirmation_token"])
    assert "differ" in text and "confirm_paths" in text
    assert_nothing_sent(sandbox)


async def test_tokens_swapped_between_two_plans_are_refused(client: Client, sandbox: RunningSandbox) -> None:
    first = [f"{sandbox.home}/scratch/tmp.log"]
    second = [f"{sandbox.home}/scratch/run-002"]
    plan_one = await plan_for(client, first)
    plan_two = await plan_for(client, second)
    assert "differ" in await execute(client, first, plan_two["confirmation_token"])
    assert "differ" in await execute(client, second, plan_one["confirmation_token"])
    assert_nothing_sent(sandbox)


async def test_a_refused_path_cannot_ride_along_with_a_valid_token(client: Client, sandbox: RunningSandbox) -> None:
    paths = [f"{sandbox.home}/scratch/tmp.log"]
    plan = await plan_for(client, paths)
    text = await execute(client, [*paths, f"{sandbox.home}/.ssh"], plan["confirmation_token"])
    assert "not allowed" in text and ".ssh" in text
    assert_nothing_sent(sandbox)


async def test_concurrent_replay_lets_exactly_one_execution_through(client: Client, sandbox: RunningSandbox) -> None:
    paths = [f"{sandbox.home}/scratch/run-001", f"{sandbox.home}/scratch/tmp.log"]
    plan = await plan_for(client, paths)
    arguments = {"paths": paths, "dry_run": False, "confirmation_token": plan["confirmation_token"]}
    results: list[bool] = []

    async def attempt() -> None:
        result = await client.call_tool("remove_paths", arguments)
        results.append(result.is_error)

    async with anyio.create_task_group() as tg:
        for _ in range(5):
            tg.start_soon(attempt)
    assert sorted(results) == [False, True, True, True, True]
    assert sorted(sandbox.sandbox.received_remove_paths) == sorted(paths)
