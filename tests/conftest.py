from __future__ import annotations

import json
import logging
import re
import threading
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path
from typing import Any

import anyio
import pytest
from mcp import Client
from mcp.server.mcpserver import MCPServer

from efile_mcp.sandbox import RunningSandbox, SandboxConfig, run_sandbox_in_thread, seed_sample_tree
from efile_mcp.server import build_server
from efile_mcp.settings import Settings

from . import processes

# ---------------------------------------------------------------------------- the token never leaks

#: Every API token a sandbox issued in this run; at the end, nothing the suite produced may contain one.
ISSUED_TOKENS: set[str] = set()
_LOG_LINES: list[str] = []


class _KeepEverything(logging.Handler):
    def emit(self, record: logging.LogRecord) -> None:
        try:
            _LOG_LINES.append(self.format(record))
        except Exception:
            pass


def pytest_configure(config: pytest.Config) -> None:
    if not config.pluginmanager.is_registered(processes):
        config.pluginmanager.register(processes, "efile-processes")  # no process outlives the run
    handler = _KeepEverything(level=logging.DEBUG)
    logging.getLogger().addHandler(handler)
    logging.getLogger("efile_mcp").setLevel(logging.DEBUG)


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    """Grep everything the suite produced (files under the temp root, every log line) for any token."""
    if not ISSUED_TOKENS:
        return
    leaks: list[str] = []
    base = session.config._tmp_path_factory.getbasetemp()  # type: ignore[attr-defined]
    scanned = 0
    # The sandbox's tokens are 32 hex digits: every run of 32 or more hex digits in a file is cut into its windows of
    # 32 and looked up in a set, one pass a file (a thousand tokens times 170,000 files, one by one, took minutes).
    # Tokens of another shape (the sign-in center's) are looked for one by one.
    hex_tokens = {token.encode() for token in ISSUED_TOKENS if re.fullmatch(r"[0-9a-f]{32}", token)}
    other_tokens = [token.encode() for token in ISSUED_TOKENS if token.encode() not in hex_tokens]
    hex_runs = re.compile(rb"[0-9a-f]{32,}")

    def holds_token(data: bytes) -> bool:
        for found in hex_runs.finditer(data):
            run = found.group()
            if any(run[at : at + 32] in hex_tokens for at in range(len(run) - 31)):
                return True
        return any(token in data for token in other_tokens)

    for path in base.rglob("*"):
        if path.is_file() and not path.is_symlink() and path.stat().st_size < 50_000_000:
            scanned += 1
            if holds_token(path.read_bytes()):
                leaks.append(f"{path}")
    leaks += [line[:200] for line in _LOG_LINES if holds_token(line.encode("utf-8", "surrogatepass"))]
    reporter = session.config.pluginmanager.get_plugin("terminalreporter")
    if leaks:
        session.exitstatus = pytest.ExitCode.TESTS_FAILED
        if reporter:
            reporter.write_line(f"API TOKEN LEAKED into {len(leaks)} place(s): {leaks[:5]}", red=True)
    elif reporter:
        reporter.write_line(
            f"token hygiene: {len(ISSUED_TOKENS)} tokens, {scanned} files and {len(_LOG_LINES)} log lines scanned, no leak"
        )
    from .invariants import FIGURES

    if reporter and FIGURES:
        reporter.write_line("invariant figures: " + ", ".join(f"{k} {v}" for k, v in sorted(FIGURES.items())))


@pytest.fixture
def sandbox(tmp_path: Path, request: pytest.FixtureRequest) -> Iterator[RunningSandbox]:
    """A sandbox efile API over `tmp_path/home` seeded with the sample tree, on 127.0.0.1.

    Other SandboxConfig fields can be set with indirect parametrisation:
    `@pytest.mark.parametrize("sandbox", [{"task_step_delay": 0.01}], indirect=True)`.
    """
    root = seed_sample_tree(tmp_path / "home")
    overrides = getattr(request, "param", None) or {}
    with run_sandbox_in_thread(SandboxConfig(root=root, **overrides)) as running:
        ISSUED_TOKENS.add(running.token)
        try:
            yield running
        finally:
            if isinstance(running.sandbox.fault, HeldRequest):
                running.sandbox.fault.release()  # a held call must not hold up the server's shutdown


class HeldRequest:
    """A sandbox fault hook: the first `passed` calls of `endpoint` go through; the next one is held on the wire.

    A test waits for `arrived` (the held call has reached the server), cancels, and then waits for `dropped`
    (the client abandoned the held call: the cancel reached the server's HTTP client). Every later call is
    held too, so nothing the cancelled code might still send goes unnoticed in `calls`. `release()` (also at
    the sandbox fixture's end) lets held calls through.
    """

    def __init__(self, endpoint: str, passed: int) -> None:
        self.endpoint, self.passed, self.calls = endpoint, passed, 0
        self.arrived, self.dropped, self.released = threading.Event(), threading.Event(), threading.Event()

    async def __call__(self, name: str, request: Any) -> None:
        if name != self.endpoint:
            return None
        self.calls += 1
        if self.calls <= self.passed:
            return None
        self.arrived.set()
        while not self.released.is_set():  # polls on the sandbox's own loop, not in the test
            if await request.is_disconnected():
                self.dropped.set()
                return None
            await anyio.sleep(0.005)
        return None

    def release(self) -> None:
        self.released.set()


async def wait_for_event(event: threading.Event, what: str, timeout: float = 10) -> None:
    """Wait (off the event loop) for something that will happen; fail naming it if it does not."""
    if not await anyio.to_thread.run_sync(event.wait, timeout):
        pytest.fail(f"waited {timeout} s: {what}")


# ---------------------------------------------------------------------------- MCP server over the sandbox

ERAS = ["legacy", "auto"]  # 2025-11-25 (Claude Desktop) and 2026-07-28


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture
def audit_path(tmp_path: Path) -> Path:
    return tmp_path / "state" / "audit.jsonl"


@pytest.fixture
def make_settings(sandbox: RunningSandbox, audit_path: Path) -> Callable[..., Settings]:
    def make(**overrides: Any) -> Settings:
        values: dict[str, Any] = {
            "base_url": sandbox.base_url,
            "token": sandbox.token,
            "allowed_roots": (f"{sandbox.home}/scratch", f"{sandbox.home}/projects", f"{sandbox.home}/数据"),
            "audit_log": audit_path,
            "state_dir": audit_path.parent,
            "retry_budget": 5.0,
            # Permanent removal, as the tests written before the quarantine expect; quarantine tests ask for it.
            "remove_mode": "delete",
        }
        values.update(overrides)
        return Settings(**values)

    return make


@pytest.fixture
def server(make_settings: Callable[..., Settings]) -> MCPServer[Any]:
    return build_server(make_settings())


@pytest.fixture(params=ERAS)
def era(request: pytest.FixtureRequest) -> str:
    return request.param


@pytest.fixture
async def client(server: MCPServer[Any], era: str) -> AsyncIterator[Client]:
    async with Client(server, mode=era) as connected:
        yield connected


def audit_lines(path: Path) -> list[dict[str, Any]]:
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]


async def call_ok(client: Client, name: str, arguments: dict[str, Any]) -> dict[str, Any]:
    result = await client.call_tool(name, arguments)
    text = " ".join(getattr(block, "text", "") for block in result.content)
    assert not result.is_error, text
    assert result.structured_content is not None
    return result.structured_content


async def dry_run_then_execute(client: Client, paths: list[str]) -> tuple[dict[str, Any], dict[str, Any]]:
    """The agent's happy path: preview, then execute exactly the previewed set with its token."""
    plan = await call_ok(client, "remove_paths", {"paths": paths})
    done = await call_ok(
        client, "remove_paths", {"paths": paths, "dry_run": False, "confirmation_token": plan["confirmation_token"]}
    )
    return plan, done


async def call_error(client: Client, name: str, arguments: dict[str, Any]) -> str:
    result = await client.call_tool(name, arguments)
    text = " ".join(getattr(block, "text", "") for block in result.content)
    assert result.is_error, f"expected a tool error, got {result.structured_content}"
    return text


# ---------------------------------------------------------------------------- child processes


def child_env(**extra: str) -> dict[str, str]:
    """The environment for an `efile-mcp` child process: this one's, minus any EFILE_/SCNET_ setting of
    the developer's shell, plus this interpreter's import path and `extra`."""
    import os
    import sys

    clean = {k: v for k, v in os.environ.items() if not k.startswith(("EFILE_", "SCNET_"))}
    return {**clean, "PYTHONPATH": os.pathsep.join(sys.path), **extra}


def run_cli(*args: str, env: dict[str, str] | None = None, timeout: float = 60) -> Any:
    """Run `python -m efile_mcp ARGS` to completion; returns the CompletedProcess (text)."""
    import subprocess
    import sys

    return subprocess.run(
        [sys.executable, "-m", "efile_mcp", *args],
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=timeout,
        env=child_env(**(env or {})),
    )


def recording_browser_script(log: Path) -> str:
    """A $BROWSER program that opens nothing and appends the page address it was sent to `log`.

    Like a real browser it follows the server's private launcher file (file://, a meta refresh) to the page,
    at once: the server removes its launchers when it stops.
    """
    import sys

    return (
        f"#!{sys.executable}\nimport re, sys, urllib.parse\naddress = sys.argv[1]\n"
        "if address.startswith('file://'):\n"
        "    text = open(urllib.parse.unquote(urllib.parse.urlsplit(address).path), encoding='utf-8').read()\n"
        '    address = re.search(r\'http-equiv="refresh" content="0;url=([^"]+)"\', text).group(1)\n'
        f"open({str(log)!r}, 'a').write(address + '\\n')\n"
    )
