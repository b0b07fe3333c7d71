"""Section 2: a 10,000-path removal end to end through MCP (dry run + execution) against plain httpx.

The guarded flow runs twice per round: through a real stdio subprocess spoken to in raw JSON-RPC
(what a host sees, JSON encoding of 10,000 items included) and through the SDK's in-memory client.
The in-memory client re-validates every structured result against the tool's outputSchema with
jsonschema; that is the SDK client's cost, not the server's, so it is timed and shown separately.
"""

from __future__ import annotations

import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Self

import anyio
from common import (
    Row,
    baseline_remove,
    delayed_sandbox,
    efile_stdio,
    make_tree,
    median,
    remaining_files,
    settings_for,
)
from mcp import Client
from mcp.client.session import ClientSession

from efile_mcp.server import build_server

PARENTS, PER_PARENT = 100, 100
SECTION = "2 removal 10k"


@dataclass
class Flow:
    dry_run: float = 0.0
    execution: float = 0.0
    client_validation: float = 0.0  # in-memory only: SDK client's jsonschema re-validation of results
    server_cpu: float = 0.0  # stdio: CPU seconds of the server process; baseline: of the sandbox
    response_bytes: int = 0  # stdio only: size of the dry run's JSON-RPC answer

    @property
    def total(self) -> float:
        return self.dry_run + self.execution


class _TimedValidation:
    """Wraps ClientSession.validate_tool_result to add up the seconds it takes."""

    def __init__(self) -> None:
        self.seconds = 0.0
        self._original = ClientSession.validate_tool_result

    def __enter__(self) -> Self:
        original, timed = self._original, self

        async def validate(session: ClientSession, name: str, result: Any) -> None:
            started = time.perf_counter()
            try:
                await original(session, name, result)
            finally:
                timed.seconds += time.perf_counter() - started

        ClientSession.validate_tool_result = validate  # type: ignore[method-assign]
        return self

    def __exit__(self, *exc: object) -> None:
        ClientSession.validate_tool_result = self._original  # type: ignore[method-assign]


async def _in_memory(sandbox: Any, paths: list[str], audit: Path) -> Flow:
    flow = Flow()
    server = build_server(settings_for(sandbox, audit))
    async with Client(server) as client:
        with _TimedValidation() as validation:
            started = time.perf_counter()
            plan = await client.call_tool("remove_paths", {"paths": paths})
            flow.dry_run = time.perf_counter() - started
            assert not plan.is_error and plan.structured_content, plan.content
            # The token alone: above 50 paths the dry run answers a summary, without confirm_paths.
            arguments = {"dry_run": False, "confirmation_token": plan.structured_content["confirmation_token"]}
            started = time.perf_counter()
            done = await client.call_tool("remove_paths", arguments)
            flow.execution = time.perf_counter() - started
        flow.client_validation = validation.seconds
    assert not done.is_error and done.structured_content, done.content
    assert done.structured_content["summary"]["removed"] == len(paths), done.structured_content["summary"]
    return flow


def guarded_in_memory(sandbox: Any, paths: list[str], audit: Path) -> Flow:
    """The guarded flow through `mcp.Client(server)`, the server in this process."""
    return anyio.run(_in_memory, sandbox, paths, audit)


def guarded_stdio(sandbox: Any, paths: list[str], audit: Path) -> Flow:
    """The guarded flow through `python -m efile_mcp` over stdio, raw JSON-RPC."""
    flow = Flow()
    with efile_stdio(sandbox, audit, "--max-paths", str(max(len(paths), 1))) as session:
        cpu = session.cpu_seconds()
        started = time.perf_counter()
        plan = session.call_tool("remove_paths", {"paths": paths})
        flow.dry_run = time.perf_counter() - started
        flow.response_bytes = session.last_line_bytes
        arguments = {"dry_run": False, "confirmation_token": plan["confirmation_token"]}  # the token alone
        started = time.perf_counter()
        done = session.call_tool("remove_paths", arguments)
        flow.execution = time.perf_counter() - started
        flow.server_cpu = session.cpu_seconds() - cpu
    assert done["summary"]["removed"] == len(paths), done["summary"]
    return flow


def run(quick: bool, context: dict[str, Any]) -> list[Row]:
    rounds = 1 if quick else 3
    flows = {"baseline": None, "stdio": guarded_stdio, "in-memory": guarded_in_memory}
    runs: dict[str, list[Flow]] = {name: [] for name in flows}
    with delayed_sandbox() as sandbox, tempfile.TemporaryDirectory(prefix="efile-bench-rm-") as tmp:
        names = list(flows)
        for i in range(rounds):
            for name in names[i % 3 :] + names[: i % 3]:  # rotated order: drift cancels
                tree = f"{name}-{i}"
                paths = make_tree(sandbox, tree, PARENTS, PER_PARENT)  # a fresh copy of the tree each time
                flow = flows[name]
                if flow is None:
                    cpu = sandbox.cpu_seconds()
                    runs[name].append(Flow(execution=baseline_remove(sandbox, paths)))
                    runs[name][-1].server_cpu = sandbox.cpu_seconds() - cpu
                else:
                    runs[name].append(flow(sandbox, paths, Path(tmp) / f"{tree}.jsonl"))
                left = remaining_files(sandbox, tree)
                assert left == 0, f"{name}: {left} files were not removed"
    context["removal"] = {name: [vars(f) for f in values] for name, values in runs.items()}

    def med(name: str, attribute: str) -> float:
        return median([getattr(flow, attribute) for flow in runs[name]])

    base = med("baseline", "execution")
    note = f"{PARENTS * PER_PARENT:,} files in {PARENTS} dirs, 20 ms RTT; median of {rounds}"
    validation = med("in-memory", "client_validation")
    server_side = median([f.total - f.client_validation for f in runs["in-memory"]])
    return [
        Row(SECTION, "baseline: plain httpx, 100 paths/request, sequential", base, "s", note=note),
        Row(
            SECTION,
            "stdio: dry run + execution",
            med("stdio", "total"),
            "s",
            base,
            1.5,
            f"raw JSON-RPC; dry-run answer {med('stdio', 'response_bytes') / 1e3:.1f} kB",
        ),
        Row(SECTION, "stdio: execution alone", med("stdio", "execution"), "s", base, 1.0),
        Row(SECTION, "stdio: dry run alone", med("stdio", "dry_run"), "s", base, None, "informational"),
        Row(
            SECTION,
            "stdio: server CPU for both steps",
            med("stdio", "server_cpu"),
            "s",
            note="user+sys of the server process; the rest is waiting on the API",
        ),
        Row(
            SECTION,
            "sandbox CPU during the baseline",
            med("baseline", "server_cpu"),
            "s",
            note="the stand-in API's own work: a floor no client concurrency removes",
        ),
        Row(
            SECTION,
            "in-memory Client: dry run + execution",
            med("in-memory", "total"),
            "s",
            base,
            1.5,
            f"includes {validation:.2f} s of SDK client outputSchema validation",
        ),
        Row(SECTION, "in-memory Client: execution alone", med("in-memory", "execution"), "s", base, 1.0),
        Row(
            SECTION,
            "in-memory, server side: dry run + execution",
            server_side,
            "s",
            base,
            1.5,
            "client validation subtracted",
        ),
    ]
