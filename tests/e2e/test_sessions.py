"""HTTP sessions are bounded on purpose, over a real socket: abandoned sessions are reaped, a full replica
says when to retry, one token's flood does not deny the others, and SIGTERM lets a call in flight finish.
"""

from __future__ import annotations

import json
import signal
import time
from pathlib import Path
from typing import Any

import anyio
import httpx2 as httpx
import pytest
from mcp.shared.exceptions import MCPError

from efile_mcp.sandbox import RunningSandbox
from efile_mcp.sandbox.faults import FaultPlan, FaultRule
from efile_mcp.serve_http import CLIENT_KEY, SessionLimits

from ..clocks import ManualClock
from ..conftest import HeldRequest, audit_lines, call_ok, wait_for_event
from .test_http import HTTP_TOKEN, PROCESSES, connect, http_process, settings_env

INITIALIZE = {
    "jsonrpc": "2.0",
    "id": 1,
    "method": "initialize",
    "params": {
        "protocolVersion": "2025-06-18",
        "capabilities": {},
        "clientInfo": {"name": "abandoner", "version": "1"},
    },
}
OTHER_TOKEN = "test-only-second-team-token-9876543210"


def headers(token: str = HTTP_TOKEN, session: str | None = None) -> dict[str, str]:
    found = {
        "Authorization": f"Bearer {token}",
        "Content-Type": "application/json",
        "Accept": "application/json, text/event-stream",
    }
    if session is not None:
        found["Mcp-Session-Id"] = session
        found["Mcp-Protocol-Version"] = "2025-06-18"
    return found


async def open_session(http: httpx.AsyncClient, url: str, token: str = HTTP_TOKEN) -> httpx.Response:
    """An initialize and nothing after it: a client that opens a session and walks away."""
    return await http.post(url, headers=headers(token), content=json.dumps(INITIALIZE))


async def open_many(url: str, count: int, token: str = HTTP_TOKEN) -> list[str]:
    ids: list[str] = []
    limiter = anyio.Semaphore(16)
    async with httpx.AsyncClient(timeout=30) as http:

        async def one() -> None:
            async with limiter:
                answer = await open_session(http, url, token)
            assert answer.status_code == 200, answer.text
            ids.append(answer.headers["mcp-session-id"])

        async with anyio.create_task_group() as tg:
            for _ in range(count):
                tg.start_soon(one)
    return ids


@pytest.mark.realtime  # a real server process's idle reaping / shutdown grace, in real seconds
async def test_a_thousand_abandoned_sessions_are_reaped_within_the_idle_timeout(
    sandbox: RunningSandbox, tmp_path: Path
) -> None:
    idle = 10.0
    env = settings_env(
        sandbox,
        tmp_path / "audit.jsonl",
        EFILE_HTTP_SESSION_IDLE_SECONDS=str(idle),
        EFILE_HTTP_SESSION_MAX="1000",
        EFILE_HTTP_SESSION_MAX_PER_TOKEN="1000",
    )
    with http_process(env=env) as (url, _):
        abandoned = await open_many(url, 1000)
        opened_at = time.monotonic()
        assert len(set(abandoned)) == 1000
        async with httpx.AsyncClient(timeout=30) as http:
            full = await open_session(http, url)
            # The replica is full: a clear 503 that says when to come back, not an SDK error to decode.
            assert full.status_code == 503
            assert 1 <= int(full.headers["retry-after"]) <= idle + 1
            assert "EFILE_HTTP_SESSION_MAX" in full.json()["message"]
            # Nobody closes them: the replica reaps them by itself, and a newcomer gets in.
            while (admitted := await open_session(http, url)).status_code == 503:
                assert time.monotonic() - opened_at < idle + 5, "abandoned sessions were not reaped in time"
                await anyio.sleep(0.2)
            assert admitted.status_code == 200
            # By the time the last one has been idle for the timeout (and a reaper's tick), every one is gone.
            await anyio.sleep(max(0.0, opened_at + idle + 1 - time.monotonic()))
            for session in abandoned[:: 1000 // 20]:
                gone = await http.post(
                    url,
                    headers=headers(session=session),
                    content=json.dumps({"jsonrpc": "2.0", "id": 2, "method": "tools/list"}),
                )
                assert gone.status_code == 404, "a reaped session must answer 404 (the client opens a new one)"


async def test_a_flood_from_one_token_does_not_deny_the_others(sandbox: RunningSandbox, tmp_path: Path) -> None:
    env = settings_env(
        sandbox,
        tmp_path / "audit.jsonl",
        EFILE_HTTP_TOKEN=f"{HTTP_TOKEN},{OTHER_TOKEN}",
        EFILE_HTTP_SESSION_MAX="50",
        EFILE_HTTP_SESSION_MAX_PER_TOKEN="5",
    )
    with http_process(env=env) as (url, stderr):
        async with connect(url, mode="legacy") as working:  # the flooding token's session opened before the flood
            await open_many(url, 4)
            async with httpx.AsyncClient(timeout=30) as http:
                refused = [await open_session(http, url) for _ in range(30)]
            assert {answer.status_code for answer in refused} == {429}
            assert int(refused[0].headers["retry-after"]) >= 1
            message = refused[0].json()["message"]
            assert "EFILE_HTTP_SESSION_MAX_PER_TOKEN" in message and "retry in" in message
            # The flooding token's own open session keeps working, and the other team is not denied.
            assert (await call_ok(working, "storage_status", {}))["allowed_roots"]
            async with connect(url, token=OTHER_TOKEN) as other:
                assert (await call_ok(other, "storage_status", {}))["allowed_roots"]
        # One warning line for the flood, not one per refused request.
        assert stderr.read_text().count("refusing new MCP sessions") == 1


@pytest.mark.realtime  # a real server process's idle reaping / shutdown grace, in real seconds
async def test_sigterm_lets_a_call_in_flight_finish_then_exits(sandbox: RunningSandbox, tmp_path: Path) -> None:
    env = settings_env(sandbox, tmp_path / "audit.jsonl", EFILE_HTTP_SHUTDOWN_SECONDS="20")
    answer: dict[str, Any] = {}
    with http_process(env=env) as (url, stderr):
        process = PROCESSES[url]
        started = time.monotonic()
        try:
            # legacy: a session with its GET stream open, which must not hold the shutdown up
            async with connect(url, mode="legacy") as client:
                await client.list_tools()  # the client checks answers against the tools' schemas: read them now
                sandbox.sandbox.faults = FaultPlan([FaultRule("slow", endpoint="file/list", seconds=2.0, burst=1)])

                async def long_call() -> None:
                    answer.update(await call_ok(client, "list_files", {"path": f"{sandbox.home}/scratch"}))

                async with anyio.create_task_group() as tg:
                    tg.start_soon(long_call)
                    while not sandbox.sandbox.faults.injected:
                        await anyio.sleep(0.02)
                    process.send_signal(signal.SIGTERM)
        except* httpx.ConnectError:
            pass  # the client's goodbye (DELETE) finds the server gone: it had stopped, as asked
        assert answer["entries"], "the call in flight was answered in full"
        assert time.monotonic() - started >= 2.0
        # uvicorn re-raises the signal once it has stopped: "ended by SIGTERM" (143 to a shell), as asked
        assert process.wait(timeout=20) in (0, -signal.SIGTERM)
        assert time.monotonic() - started < 15, "the open GET stream held the shutdown up"
        assert "waiting up to 20 s for 1 call(s) in flight" in stderr.read_text()


# ---------------------------------------------------------------------------- the bookkeeping, on a hand-moved clock


class FakeSdk:
    """Stands in for the SDK's app: a POST without a session id opens one; `live` is its table of sessions."""

    def __init__(self) -> None:
        self.live: set[str] = set()
        self.calls = 0

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        self.calls += 1
        headers = []
        if not any(k == b"mcp-session-id" for k, _ in scope["headers"]):
            session = f"s{len(self.live) + 1}"
            self.live.add(session)
            headers.append((b"mcp-session-id", session.encode()))
        await send({"type": "http.response.start", "status": 200, "headers": headers})
        await send({"type": "http.response.body", "body": b"{}"})


async def ask(app: Any, client: int, session: str | None = None) -> tuple[int, dict[str, str]]:
    headers = [(b"mcp-session-id", session.encode())] if session else []
    scope = {"type": "http", "method": "POST", "headers": headers, CLIENT_KEY: client}
    sent: list[dict[str, Any]] = []

    async def receive() -> dict[str, Any]:
        return {"type": "http.request", "body": b"", "more_body": False}

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    await app(scope, receive, send)
    return sent[0]["status"], {k.decode(): v.decode() for k, v in sent[0]["headers"]}


async def test_retry_after_is_when_the_least_recently_used_session_would_be_reaped() -> None:
    clock = ManualClock(1000.0)
    sdk = FakeSdk()
    limits = SessionLimits(sdk, live=lambda: sdk.live, max_sessions=10, max_per_client=2, idle_seconds=300, clock=clock)
    assert (await ask(limits, 0))[0] == 200  # s1 at 1000
    clock.advance(100)
    assert (await ask(limits, 0))[0] == 200  # s2 at 1100
    clock.advance(100)
    status, headers = await ask(limits, 0)
    assert (status, headers["retry-after"]) == (429, "100")  # s1 idles out at 1300
    await ask(limits, 0, "s1")  # s1 used at 1200: now s2 (1400) is the first to go
    assert (await ask(limits, 0))[1]["retry-after"] == "200"
    assert (await ask(limits, 1))[0] == 200  # another token is not held back
    sdk.live.discard("s2")  # the SDK reaped it
    assert (await ask(limits, 0))[0] == 200
    assert sdk.calls == 5  # the two refused requests never reached the SDK


async def test_a_session_answers_only_the_token_that_opened_it() -> None:
    sdk = FakeSdk()
    limits = SessionLimits(sdk, live=lambda: sdk.live, max_sessions=10, max_per_client=5, idle_seconds=300)
    await ask(limits, 0)
    assert (await ask(limits, 1, "s1"))[0] == 404
    assert (await ask(limits, 0, "s1"))[0] == 200
    assert sdk.calls == 2


async def test_sigterm_records_a_removal_that_outlasts_the_shutdown_time(
    sandbox: RunningSandbox, tmp_path: Path
) -> None:
    audit = tmp_path / "audit.jsonl"
    env = settings_env(sandbox, audit, EFILE_HTTP_SHUTDOWN_SECONDS="1", EFILE_REMOVE_MODE="delete")
    target = [f"{sandbox.home}/scratch/tmp.log"]
    held = HeldRequest("async-remove", passed=0)
    with http_process(env=env) as (url, _):
        process = PROCESSES[url]
        try:
            async with connect(url, mode="legacy") as client:
                await client.list_tools()
                plan = await call_ok(client, "remove_paths", {"paths": target})
                sandbox.sandbox.fault = held
                execute = {"paths": target, "dry_run": False, "confirmation_token": plan["confirmation_token"]}
                async with anyio.create_task_group() as tg:
                    tg.start_soon(client.call_tool, "remove_paths", execute)
                    await wait_for_event(held.arrived, "the removal reached the storage")
                    process.send_signal(signal.SIGTERM)
                    assert await anyio.to_thread.run_sync(process.wait, 20) in (0, -signal.SIGTERM)
                    tg.cancel_scope.cancel()
        except* (httpx.HTTPError, MCPError):
            pass
    records = audit_lines(audit)
    (intent,) = [r for r in records if r["event"] == "intent"]
    (outcome,) = [r for r in records if r["event"] == "execution" and r["plan_id"] == intent["plan_id"]]
    assert "interrupted" in outcome["decision"]
