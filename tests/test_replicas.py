"""Single use across replicas: two efile-mcp server processes sharing a real Redis (EFILE_STATE_URL).

Break 4 of the guard issue: with EFILE_CONFIRM_SECRET shared, a spent token redeemed again on another
replica (or after a restart) and deleted a later file at a confirmed path that was never dry-run.
"""

from __future__ import annotations

import sys
from collections.abc import Iterator
from contextlib import AsyncExitStack
from pathlib import Path

import anyio
import pytest
from mcp import Client, StdioServerParameters

from efile_mcp.sandbox import RunningSandbox

from .conftest import call_error, call_ok, child_env
from .redis_server import RedisServer, start_redis

SECRET = "replicas-share-this-confirmation-secret-0123456789"


@pytest.fixture(scope="module")
def redis_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisServer]:
    server = start_redis(tmp_path_factory.mktemp("redis-replicas"))
    yield server
    server.stop()


def replica(sandbox: RunningSandbox, redis_url: str, audit: Path) -> StdioServerParameters:
    env = child_env(
        EFILE_BASE_URL=sandbox.base_url,
        EFILE_TOKEN=sandbox.token,
        EFILE_ALLOWED_ROOTS=f"{sandbox.home}/scratch",
        EFILE_CONFIRM_SECRET=SECRET,
        EFILE_STATE_URL=redis_url,
        EFILE_AUDIT_LOG=str(audit),
        EFILE_CONFIRM="token",
        EFILE_REMOVE_MODE="delete",
    )
    return StdioServerParameters(command=sys.executable, args=["-m", "efile_mcp"], env=env)


async def test_a_token_redeems_once_across_two_server_processes(
    sandbox: RunningSandbox, redis_server: RedisServer, tmp_path: Path
) -> None:
    target = f"{sandbox.home}/scratch/tmp.log"
    local = sandbox.root / "scratch" / "tmp.log"
    async with AsyncExitStack() as stack:
        a = await stack.enter_async_context(Client(replica(sandbox, redis_server.url, tmp_path / "a.jsonl")))
        b = await stack.enter_async_context(Client(replica(sandbox, redis_server.url, tmp_path / "b.jsonl")))
        plan = await call_ok(a, "remove_paths", {"paths": [target]})
        # The plan lives in the shared store: the other replica executes it by the token alone.
        done = await call_ok(b, "remove_paths", {"dry_run": False, "confirmation_token": plan["confirmation_token"]})
        assert done["summary"]["removed"] == 1 and not local.exists()
        local.write_text("a later file at a confirmed path, never dry-run\n")
        error = await call_error(
            a, "remove_paths", {"dry_run": False, "confirmation_token": plan["confirmation_token"]}
        )
        assert "already executed (1 removed)" in error  # with what came of it, on the other replica
        assert local.exists()

        # Both replicas at once on one token: exactly one proceeds.
        plan = await call_ok(a, "remove_paths", {"paths": [f"{sandbox.home}/scratch/run-002"]})
        answers: list[bool] = []

        async def execute(client: Client) -> None:
            result = await client.call_tool(
                "remove_paths", {"dry_run": False, "confirmation_token": plan["confirmation_token"]}
            )
            answers.append(not result.is_error)

        async with anyio.create_task_group() as tg:
            tg.start_soon(execute, a)
            tg.start_soon(execute, b)
        assert sorted(answers) == [False, True]
    assert sandbox.sandbox.received_remove_paths.count(f"{sandbox.home}/scratch/run-002") == 1
