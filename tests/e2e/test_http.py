"""Streamable HTTP for shared deployments: end to end in both eras, DNS-rebinding protection, replicas.

Every request carries the bearer token (`connect`); the token itself is tested in test_http_auth.py.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import AsyncIterator, Iterator
from contextlib import ExitStack, asynccontextmanager, contextmanager
from pathlib import Path
from typing import Any

import httpx2 as httpx
import pytest
from mcp import Client
from mcp.client.streamable_http import streamable_http_client
from mcp.shared._httpx_utils import create_mcp_http_client

from efile_mcp.sandbox import RunningSandbox
from efile_mcp.tools.registry import TOOLS

from ..conftest import call_error, call_ok, child_env, run_cli
from ..redis_server import RedisServer, start_redis

#: The bearer token the test servers are started with (EFILE_HTTP_TOKEN in `settings_env`).
HTTP_TOKEN = "test-only-http-bearer-token-0123456789"
AUTH = {"Authorization": f"Bearer {HTTP_TOKEN}"}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_for_port(port: int, proc: subprocess.Popen[Any], stderr: Path) -> None:
    deadline = time.monotonic() + 30
    while True:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
            return
        except OSError:
            if proc.poll() is not None:
                raise AssertionError(f"server exited: {stderr.read_text()}") from None
            if time.monotonic() > deadline:
                raise
            time.sleep(0.05)


#: The process serving each endpoint `http_process` started, while it runs (for tests that signal it).
PROCESSES: dict[str, subprocess.Popen[Any]] = {}
#: ... and the file its stderr goes to.
STDERRS: dict[str, Path] = {}


@contextmanager
def http_process(*args: str, env: dict[str, str] | None = None, ready: bool = True) -> Iterator[tuple[str, Path]]:
    """`efile-mcp --transport http` as a process; yields its MCP endpoint once it accepts connections, and the
    file its stderr goes to (a file, not a pipe: a chatty server cannot block, the test can read it any time).

    `ready=False` yields at once (see `http_servers`, which starts several side by side)."""
    port = free_port()
    fd, name = tempfile.mkstemp(prefix="efile-mcp-http-", suffix=".stderr")
    stderr = Path(name)
    proc = subprocess.Popen(
        [sys.executable, "-m", "efile_mcp", "--transport", "http", "--port", str(port), *args],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=fd,
        text=True,
        env=child_env(**(env or {})),
    )
    try:
        if ready:
            wait_for_port(port, proc, stderr)
        url = f"http://127.0.0.1:{port}/mcp"
        PROCESSES[url], STDERRS[url] = proc, stderr
        yield url, stderr
    finally:
        PROCESSES.pop(f"http://127.0.0.1:{port}/mcp", None)
        STDERRS.pop(f"http://127.0.0.1:{port}/mcp", None)
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
        os.close(fd)
        stderr.unlink(missing_ok=True)


@contextmanager
def http_server(*args: str, env: dict[str, str] | None = None) -> Iterator[str]:
    with http_process(*args, env=env) as (url, _):
        yield url


@contextmanager
def http_servers(*envs: dict[str, str]) -> Iterator[list[str]]:
    """Several servers started side by side (each spends about a second importing), yielded once all serve."""
    with ExitStack() as stack:
        started = [stack.enter_context(http_process(env=env, ready=False)) for env in envs]
        for url, stderr in started:
            wait_for_port(int(url.rsplit(":", 1)[1].split("/")[0]), PROCESSES[url], stderr)
        yield [url for url, _ in started]


@asynccontextmanager
async def connect(url: str, token: str = HTTP_TOKEN, **options: Any) -> AsyncIterator[Client]:
    """An MCP client that sends `Authorization: Bearer <token>` with every request."""
    async with (
        create_mcp_http_client(headers={"Authorization": f"Bearer {token}"}) as http,
        Client(streamable_http_client(url, http_client=http), **options) as client,
    ):
        yield client


@contextmanager
def bearer_proxy(url: str, token: str = HTTP_TOKEN) -> Iterator[str]:
    """A loopback proxy that adds the bearer token to every request, for clients that cannot send a header
    (the conformance suite). Everything else, Host and Origin included, is passed on as it came."""
    import anyio
    import uvicorn

    upstream = url.rsplit("/mcp", 1)[0]

    async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] == "lifespan":
            while (message := await receive())["type"] != "lifespan.shutdown":
                await send({"type": "lifespan.startup.complete"})
            await send({"type": "lifespan.shutdown.complete"})
            return
        body = b""
        while True:
            message = await receive()
            body += message.get("body", b"")
            if not message.get("more_body"):
                break
        headers = [(k, v) for k, v in scope["headers"] if k.lower() not in (b"authorization", b"content-length")]
        headers.append((b"authorization", f"Bearer {token}".encode()))
        target = (
            upstream
            + scope["raw_path"].decode()
            + ("?" + scope["query_string"].decode() if scope["query_string"] else "")
        )
        async with httpx.AsyncClient(timeout=None) as http:
            request = http.build_request(scope["method"], target, headers=headers, content=body)
            answer = await http.send(request, stream=True)
            hop = {b"transfer-encoding", b"connection", b"content-length"}
            await send(
                {
                    "type": "http.response.start",
                    "status": answer.status_code,
                    "headers": [(k, v) for k, v in answer.headers.raw if k.lower() not in hop],
                }
            )
            try:
                async for chunk in answer.aiter_raw():
                    await send({"type": "http.response.body", "body": chunk, "more_body": True})
            except (httpx.HTTPError, anyio.ClosedResourceError):
                pass
            finally:
                await answer.aclose()
            await send({"type": "http.response.body", "body": b""})

    port = free_port()
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 10
    while not server.started:
        assert time.monotonic() < deadline and thread.is_alive(), "the bearer proxy did not start"
        time.sleep(0.02)
    try:
        yield f"http://127.0.0.1:{port}/mcp"
    finally:
        server.should_exit = True
        thread.join(timeout=10)


def settings_env(sandbox: RunningSandbox, audit: Path, **extra: str) -> dict[str, str]:
    return {
        "EFILE_BASE_URL": sandbox.base_url,
        "EFILE_TOKEN": sandbox.token,
        "EFILE_ALLOWED_ROOTS": f"{sandbox.home}/scratch",
        "EFILE_AUDIT_LOG": str(audit),
        "EFILE_STATE_DIR": str(audit.with_suffix(".state")),
        "EFILE_HTTP_TOKEN": HTTP_TOKEN,
        **extra,
    }


@pytest.mark.parametrize("mode", ["legacy", "auto"])
async def test_removal_end_to_end_over_http(sandbox: RunningSandbox, tmp_path: Path, mode: str) -> None:
    targets = [f"{sandbox.home}/scratch/big-run", f"{sandbox.home}/scratch/tmp.log"]
    # delete mode: this test follows the removal to its tasks (quarantine, the default, is tested on its own)
    with http_server(env=settings_env(sandbox, tmp_path / "audit.jsonl", EFILE_REMOVE_MODE="delete")) as url:
        async with connect(url, mode=mode) as client:
            assert {t.name for t in (await client.list_tools()).tools} == {spec.name for spec in TOOLS}
            plan = await call_ok(client, "remove_paths", {"paths": targets})
            done = await call_ok(
                client,
                "remove_paths",
                {"paths": targets, "dry_run": False, "confirmation_token": plan["confirmation_token"]},
            )
            report = await call_ok(client, "get_task", {"task_ids": done["task_ids"], "wait_seconds": 30})
    assert report["all_terminal"] and {t["status"] for t in report["tasks"]} == {"complete"}
    assert sorted(sandbox.sandbox.received_remove_paths) == sorted(targets)
    assert not (sandbox.root / "scratch" / "big-run").exists()


def test_dns_rebinding_protection_refuses_foreign_hosts_and_origins(sandbox: RunningSandbox, tmp_path: Path) -> None:
    initialize = {
        "jsonrpc": "2.0",
        "id": 1,
        "method": "initialize",
        "params": {"protocolVersion": "2025-11-25", "capabilities": {}, "clientInfo": {"name": "x", "version": "0"}},
    }
    headers = {"Accept": "application/json, text/event-stream", "Content-Type": "application/json"}
    with http_server(env=settings_env(sandbox, tmp_path / "audit.jsonl")) as url:
        headers |= AUTH  # the DNS-rebinding check applies to authenticated requests too
        ok = httpx.post(url, json=initialize, headers=headers, timeout=10)
        rebound = httpx.post(url, json=initialize, headers={**headers, "Host": "attacker.example"}, timeout=10)
        cross_site = httpx.post(
            url, json=initialize, headers={**headers, "Origin": "http://attacker.example"}, timeout=10
        )
    assert ok.status_code == 200
    assert rebound.status_code in (400, 403, 421) and cross_site.status_code in (400, 403)


def test_binding_beyond_loopback_needs_named_hosts(sandbox: RunningSandbox, tmp_path: Path) -> None:
    proc = run_cli(
        "--transport",
        "http",
        "--host",
        "0.0.0.0",
        "--port",
        str(free_port()),
        env=settings_env(sandbox, tmp_path / "a.jsonl"),
    )
    assert proc.returncode == 2
    (line,) = proc.stderr.strip().splitlines()
    assert "EFILE_HTTP_ALLOWED_HOSTS" in line


@pytest.fixture(scope="module")
def redis_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisServer]:
    server = start_redis(tmp_path_factory.mktemp("redis-http"))
    yield server
    server.stop()


async def test_replicas_sharing_the_confirmation_secret_and_a_store_accept_each_others_tokens(
    sandbox: RunningSandbox, tmp_path: Path, redis_server: RedisServer
) -> None:
    target = [f"{sandbox.home}/scratch/tmp.log"]
    shared = {
        "EFILE_CONFIRM_SECRET": "a shared secret for this test only",
        "EFILE_STATE_URL": redis_server.url,
        "EFILE_REMOVE_MODE": "delete",
    }
    with http_servers(
        settings_env(sandbox, tmp_path / "a.jsonl", **shared),
        settings_env(sandbox, tmp_path / "b.jsonl", **shared),
        settings_env(sandbox, tmp_path / "c.jsonl"),
    ) as (replica_a, replica_b, loner):
        async with connect(replica_a) as a, connect(replica_b) as b, connect(loner) as c:
            plan = await call_ok(a, "remove_paths", {"paths": target})
            execute = {"paths": target, "dry_run": False, "confirmation_token": plan["confirmation_token"]}
            assert "another efile-mcp process" in await call_error(c, "remove_paths", execute)
            done = await call_ok(b, "remove_paths", execute)
    assert [i["status"] for i in done["items"]] == ["removed"]
    assert sandbox.sandbox.received_remove_paths == target


async def test_a_shared_secret_without_a_shared_store_serves_read_only_and_says_why(
    sandbox: RunningSandbox, tmp_path: Path
) -> None:
    """Per-replica stores could each honour a token once: with a shared secret, that is a token redeemed twice."""
    env = settings_env(sandbox, tmp_path / "a.jsonl", EFILE_CONFIRM_SECRET="a shared secret for this test only")
    with http_process(env=env) as (url, stderr):
        async with connect(url) as client:
            tools = {t.name for t in (await client.list_tools()).tools}
            status = await call_ok(client, "storage_status", {})
        log = stderr.read_text()
    assert tools == {spec.name for spec in TOOLS if spec.read_only}
    assert status["read_only"] is True
    (line,) = [line for line in log.splitlines() if "EFILE_CONFIRM_SECRET" in line]
    assert line.startswith("efile-mcp WARNING ")
    assert "replicas sharing EFILE_CONFIRM_SECRET need a shared state store: set EFILE_STATE_URL=redis://" in line
    assert "removal is disabled until then" in line
    assert "a shared secret for this test only" not in log
