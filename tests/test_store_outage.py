"""Store outages read as what they are: a real redis-server stopped and started again mid-run.

While it is down an agent gets one short tool error (no Redis text); nothing is deleted; the operator's
log says where and why; once it is back the server recovers by itself, and a token whose plan the
restarted store lost is refused with a request for a new dry run.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Callable
from pathlib import Path

import pytest
from mcp import Client

from efile_mcp.sandbox import RunningSandbox
from efile_mcp.server import build_server
from efile_mcp.settings import Settings
from efile_mcp.tools.tool_errors import STATE_STORE_UNREACHABLE

from .conftest import call_error, call_ok, dry_run_then_execute
from .e2e.test_http import STDERRS, connect, http_servers, settings_env
from .redis_server import start_redis


async def test_redis_restarted_mid_run_gives_clear_errors_then_recovers(
    sandbox: RunningSandbox, make_settings: Callable[..., Settings], tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    redis = start_redis(tmp_path / "redis")
    target = f"{sandbox.home}/scratch/tmp.log"
    try:
        async with Client(build_server(make_settings(state_url=redis.url))) as client:
            plan = await call_ok(client, "remove_paths", {"paths": [target]})
            redis.stop()

            with caplog.at_level(logging.WARNING, logger="efile_mcp.store"):
                execute = {"paths": [target], "dry_run": False, "confirmation_token": plan["confirmation_token"]}
                refused = await call_error(client, "remove_paths", execute)
                dry_run = await call_error(client, "remove_paths", {"paths": [f"{sandbox.home}/scratch/run-002"]})
            # One short sentence for the agent, the same whatever the call; nothing was sent.
            assert refused == dry_run and refused.endswith(STATE_STORE_UNREACHABLE) and len(refused) < 120
            assert (sandbox.root / "scratch" / "tmp.log").exists() and not sandbox.sandbox.received_remove_paths
            # Where and why are for the operator, in the log, once for the burst.
            outage_lines = [r.getMessage() for r in caplog.records if r.name == "efile_mcp.store"]
            assert len(outage_lines) == 1 and f"127.0.0.1:{redis.port}" in outage_lines[0]

            redis.start()  # without persistence, as the test server runs: every plan is gone
            lost = await call_error(client, "remove_paths", execute)
            # Said as it is: the store lost the plan (not "expired", not "another server"); a new dry run is needed.
            assert "the state store lost the plan" in lost and "nothing was deleted" in lost
            assert re.search(r"dry.run", lost) and "expired" not in lost
            assert len(lost) < 400
            assert not sandbox.sandbox.received_remove_paths

            # Recovered by itself: a new dry run and its token remove the file (deleted or quarantined), once.
            _, done = await dry_run_then_execute(client, [target])
            summary = done["summary"]
            assert summary["removed"] + summary["queued"] + summary.get("quarantined", 0) == 1
        assert not (sandbox.root / "scratch" / "tmp.log").exists()
    finally:
        redis.stop()


async def test_two_replicas_through_a_redis_restart(sandbox: RunningSandbox, tmp_path: Path) -> None:
    """Two real replica processes sharing a Redis that is restarted mid-run: clear errors on both, then recovery."""
    redis = start_redis(tmp_path / "redis")
    target = f"{sandbox.home}/scratch/tmp.log"
    shared = {
        "EFILE_CONFIRM_SECRET": "a shared secret for this test only",
        "EFILE_STATE_URL": redis.url,
        "EFILE_REMOVE_MODE": "delete",
    }
    try:
        with http_servers(
            settings_env(sandbox, tmp_path / "a.jsonl", **shared), settings_env(sandbox, tmp_path / "b.jsonl", **shared)
        ) as (url_a, url_b):
            async with connect(url_a) as a, connect(url_b) as b:
                plan = await call_ok(a, "remove_paths", {"paths": [target]})
                execute = {"paths": [target], "dry_run": False, "confirmation_token": plan["confirmation_token"]}
                redis.stop()
                for replica in (a, b):
                    assert (await call_error(replica, "remove_paths", execute)).endswith(STATE_STORE_UNREACHABLE)
                assert (sandbox.root / "scratch" / "tmp.log").exists()
                redis.start()
                lost = await call_error(b, "remove_paths", execute)
                assert "the state store lost the plan" in lost and "nothing was deleted" in lost
                plan = await call_ok(b, "remove_paths", {"paths": [target]})
                execute["confirmation_token"] = plan["confirmation_token"]
                done = await call_ok(a, "remove_paths", execute)
            assert f"127.0.0.1:{redis.port}" in STDERRS[url_b].read_text()  # where and why: in the operator's log
        assert [i["status"] for i in done["items"]] == ["removed"]
        assert sandbox.sandbox.received_remove_paths == [target]
    finally:
        redis.stop()
