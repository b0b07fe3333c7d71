"""Section 1: process spawn -> first tools/list answer over stdio, against a one-tool MCPServer."""

from __future__ import annotations

import os
import tempfile
import time
from pathlib import Path
from typing import Any

from common import PYTHON, Row, StdioSession, delayed_sandbox, median, server_env

HERE = Path(__file__).resolve().parent


def with_bytecode_cache(env: dict[str, str] | None) -> dict[str, str]:
    """Let every candidate read and write compiled bytecode, as an installed package does.

    With PYTHONDONTWRITEBYTECODE set (as on some machines), a module edited since its .pyc was
    written is recompiled at every start, which would time the compiler rather than the server.
    The cache lives under benchmarks/results/ so nothing is written next to the sources.
    """
    env = dict(os.environ if env is None else env)
    env.pop("PYTHONDONTWRITEBYTECODE", None)
    env["PYTHONPYCACHEPREFIX"] = str(HERE / "results" / "pycache")
    return env


def spawn_to_tools_list(argv: list[str], env: dict[str, str] | None) -> float:
    """Seconds from spawning the process to holding its tools/list answer (initialize handshake first)."""
    started = time.perf_counter()
    with StdioSession(argv, env) as session:
        session.handshake()
        tools = session.request("tools/list")["tools"]
        elapsed = time.perf_counter() - started
    assert tools, "no tools listed"
    return elapsed


def run(quick: bool, context: dict[str, Any]) -> list[Row]:
    runs = 10 if quick else 15
    with delayed_sandbox() as sandbox, tempfile.TemporaryDirectory(prefix="efile-bench-cold-") as tmp:
        scratch = Path(tmp)
        sandbox_dir = scratch / "sandbox-home"
        sandbox_dir.mkdir()
        candidates = {
            "baseline": ([PYTHON, str(HERE / "baseline_server.py")], with_bytecode_cache(None)),
            # What Claude Desktop runs: settings from the environment, the API (here the sandbox) elsewhere.
            "efile": ([PYTHON, "-m", "efile_mcp"], with_bytecode_cache(server_env(sandbox, scratch / "audit.jsonl"))),
            # The try-it-yourself command: also starts the embedded sandbox (uvicorn) in the process.
            "efile --sandbox": (
                [PYTHON, "-m", "efile_mcp", "--sandbox", str(sandbox_dir), "--audit-log", str(scratch / "sb.jsonl")],
                with_bytecode_cache(server_env(sandbox, scratch / "unused.jsonl")),
            ),
        }
        for argv, env in list(candidates.values()) * 2:  # fill the bytecode and page caches, untimed
            spawn_to_tools_list(argv, env)
        times: dict[str, list[float]] = {name: [] for name in candidates}
        names = list(candidates)
        for i in range(runs):
            # Interleaved, with the order rotated each round, so drift and ordering effects cancel.
            for name in names[i % len(names) :] + names[: i % len(names)]:
                times[name].append(spawn_to_tools_list(*candidates[name]))
    base = median(times["baseline"])
    context["cold_start"] = {name: sorted(values) for name, values in times.items()}
    note = f"median of {runs}, interleaved"
    return [
        Row("1 cold start", "baseline one-tool MCPServer: spawn -> tools/list", base, "s", note=note),
        Row(
            "1 cold start",
            "efile-mcp (env config, as Claude Desktop runs it)",
            median(times["efile"]),
            "s",
            baseline=base,
            target=1.15,
            note=note,
        ),
        Row(
            "1 cold start",
            "efile-mcp --sandbox DIR (starts uvicorn too)",
            median(times["efile --sandbox"]),
            "s",
            baseline=base,
            note=note + "; informational",
        ),
    ]
