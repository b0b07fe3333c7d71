"""Streamable HTTP for shared deployments: end to end in both eras, DNS-rebinding protection, replicas."""

from __future__ import annotations

import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx2 as httpx
import pytest
from mcp import Client

from efile_mcp.sandbox import RunningSandbox

from .conftest import call_error, call_ok, child_env, run_cli


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@contextmanager
def http_server(*args: str, env: dict[str, str] | None = None) -> Iterator[str]:
    """`efile-mcp --transport http` as a process; yields its MCP endpoint once it accepts connections."""
    port = free_port()
    proc = subprocess.Popen(
        [sys.executable, "-m", "efile_mcp", "--transport", "http", "--port", str(port), *args],
        stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
        env=child_env(**(env or {})),
    )
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
                break
            except OSError:
                if proc.poll() is not None:
                    raise AssertionError(f"server exited: {proc.stderr.read() if proc.stderr else ''}") from None
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.05)
        yield f"http://127.0.0.1:{port}/mcp"
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()


def settings_env(sandbox: RunningSandbox, audit: Path, **extra: str) -> dict[str, str]:
    return {
        "EFILE_BASE_URL": sandbox.base_url,
        "EFILE_TOKEN": sandbox.token,
        "EFILE_ALLOWED_ROOTS": f"{sandbox.home}/scratch",
        "EFILE_AUDIT_LOG": str(audit),
        **extra,
    }


@pytest.mark.parametrize("mode", ["legacy", "auto"])
async def test_removal_end_to_end_over_http(sandbox: RunningSandbox, tmp_path: Path, mode: str) -> None:
    targets = [f"{sandbox.home}/scratch/big-run", f"{sandbox.home}/scratch/tmp.log"]
    with http_server(env=settings_env(sandbox, tmp_path / "audit.jsonl")) as url:
        async with Client(url, mode=mode) as client:
            assert {t.name for t in (await client.list_tools()).tools} == {
                "storage_status", "disk_usage", "find_paths", "list_files", "remove_paths", "get_task", "cancel_tasks"}
            plan = await call_ok(client, "remove_paths", {"paths": targets})
            done = await call_ok(client, "remove_paths", {
                "paths": targets, "dry_run": False, "confirmation_token": plan["confirmation_token"]})
            report = await call_ok(client, "get_task", {"task_ids": done["task_ids"], "wait_seconds": 30})
    assert report["all_terminal"] and {t["status"] for t in report["tasks"]} == {"complete"}
    assert sorted(sandbox.sandbox.received_remove_paths) == sorted(targets)
    assert not (sandbox.root / "scratch" / "big-run").exists()


def test_dns_rebinding_protection_refuses_foreign_hosts_and_origins(sandbox: RunningSandbox, tmp_path: Path) -> None:
    initialize = {"jsonrpc": "2.0", "id": 1, "method": "initialize", "params": {
        "protocolVersion": "2025-11-25", "capabilities": {}, "clientInfo": {"name": "x", "version": "0"}}}
    headers = {"Accept": "application/json, text/event-stream", "Content-Type": "application/json"}
    with http_server(env=settings_env(sandbox, tmp_path / "audit.jsonl")) as url:
        ok = httpx.post(url, json=initialize, headers=headers, timeout=10)
        rebound = httpx.post(url, json=initialize, headers={**headers, "Host": "attacker.example"}, timeout=10)
        cross_site = httpx.post(url, json=initialize, headers={**headers, "Origin": "http://attacker.example"}, timeout=10)
    assert ok.status_code == 200
    assert rebound.status_code in (400, 403, 421) and cross_site.status_code in (400, 403)


def test_binding_beyond_loopback_needs_named_hosts(sandbox: RunningSandbox, tmp_path: Path) -> None:
    proc = run_cli(
        "--transport", "http", "--host", "0.0.0.0", "--port", str(free_port()),
        env=settings_env(sandbox, tmp_path / "a.jsonl"),
    )
    assert proc.returncode == 2
    (line,) = proc.stderr.strip().splitlines()
    assert "EFILE_HTTP_ALLOWED_HOSTS" in line


async def test_replicas_sharing_the_confirmation_secret_accept_each_others_tokens(
    sandbox: RunningSandbox, tmp_path: Path
) -> None:
    target = [f"{sandbox.home}/scratch/tmp.log"]
    shared = {"EFILE_CONFIRM_SECRET": "a shared secret for this test only"}
    with (
        http_server(env=settings_env(sandbox, tmp_path / "a.jsonl", **shared)) as replica_a,
        http_server(env=settings_env(sandbox, tmp_path / "b.jsonl", **shared)) as replica_b,
        http_server(env=settings_env(sandbox, tmp_path / "c.jsonl")) as loner,
    ):
        async with Client(replica_a) as a, Client(replica_b) as b, Client(loner) as c:
            plan = await call_ok(a, "remove_paths", {"paths": target})
            execute = {"paths": target, "dry_run": False, "confirmation_token": plan["confirmation_token"]}
            assert "another efile-mcp process" in await call_error(c, "remove_paths", execute)
            done = await call_ok(b, "remove_paths", execute)
    assert [i["status"] for i in done["items"]] == ["removed"]
    assert sandbox.sandbox.received_remove_paths == target
