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

from ..conftest import call_error, call_ok, child_env
from ..redis_server import RedisServer, start_redis

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


async def test_a_replica_killed_mid_execution_is_resumed_by_the_other_sending_each_path_once(
    sandbox: RunningSandbox, redis_server: RedisServer, tmp_path: Path
) -> None:
    """Issue 16: SIGKILL while batches are on the wire; the token is not burnt, the other replica finishes."""
    from ..conftest import HeldRequest, audit_lines, wait_for_event
    from .test_http import PROCESSES, connect, http_process, settings_env

    folder = sandbox.root / "scratch" / "many"
    folder.mkdir()
    for i in range(250):  # three batches of at most 100
        (folder / f"f{i:03d}.txt").write_text("x\n")
    targets = [f"{sandbox.home}/scratch/many/f{i:03d}.txt" for i in range(250)]
    shared = {
        "EFILE_STATE_URL": redis_server.url,
        "EFILE_CONFIRM_SECRET": SECRET,
        "EFILE_CONFIRM": "token",
        "EFILE_REMOVE_MODE": "delete",
        "EFILE_CONCURRENCY": "1",  # one batch after another: the kill lands between two of them
        "EFILE_EXECUTION_LEASE": "2",
    }
    held = HeldRequest("async-remove", passed=1)  # the first batch lands, the second is held on the wire
    with (
        http_process(env=settings_env(sandbox, tmp_path / "a.jsonl", **shared)) as (url_a, _),
        http_process(env=settings_env(sandbox, tmp_path / "b.jsonl", **shared)) as (url_b, _),
    ):
        async with connect(url_b) as b:
            plan = await call_ok(b, "remove_paths", {"paths": targets})
            token = plan["confirmation_token"]
            try:
                async with connect(url_a) as a:
                    sandbox.sandbox.fault = held
                    async with anyio.create_task_group() as tg:
                        tg.start_soon(a.call_tool, "remove_paths", {"dry_run": False, "confirmation_token": token})
                        await wait_for_event(held.arrived, "the second batch reached the storage")
                        PROCESSES[url_a].kill()
                        PROCESSES[url_a].wait()
                        held.release()  # the storage goes on with what it was sent
            except* Exception:
                pass  # replica A is gone mid-call
            sandbox.sandbox.fault = None
            with anyio.fail_after(20):  # the storage finishes the tasks A had sent
                while len(list(folder.iterdir())) > 50:
                    await anyio.sleep(0.05)
            # Retried on B: refused while A's lease could still be alive, then resumed, once.
            with anyio.fail_after(20):
                while True:
                    result = await b.call_tool("remove_paths", {"dry_run": False, "confirmation_token": token})
                    text = " ".join(getattr(block, "text", "") for block in result.content)
                    if not (result.is_error and "being executed right now" in text):
                        break
                    await anyio.sleep(0.2)
            assert not result.is_error, text
            assert text.startswith("Execution") or "Resumed" in text
            done = result.structured_content or {}
            assert "Resumed" in done["next_step"]
            assert done["summary"]["missing"] == 200 and done["summary"]["removed"] + done["summary"]["queued"] == 50
            again = await call_error(b, "remove_paths", {"dry_run": False, "confirmation_token": token})
            assert "already executed" in again
    with anyio.fail_after(20):
        while any(folder.iterdir()):
            await anyio.sleep(0.05)
    received = sandbox.sandbox.received_remove_paths
    assert sorted(received) == sorted(targets)  # every path sent exactly once, over both replicas
    assert any(line["event"] == "reconciled" for line in audit_lines(tmp_path / "b.jsonl"))
