"""Sections 5 and 6: the server's peak memory as removals grow, and the largest call that fits 60 s.

One sweep serves both: for each size a fresh `python -m efile_mcp` over stdio dry-runs and executes
the removal of that many files (100 per directory), and its VmHWM (peak resident memory) is read
after the handshake and after each step. The step times of the sweep give the per-path costs.
"""

from __future__ import annotations

import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import anyio
from common import Row, delayed_sandbox, efile_stdio, make_tree, settings_for
from mcp import Client

from efile_mcp.server import build_server
from efile_mcp.settings import Settings

CLIENT_TIMEOUT = 60.0  # seconds a host waits for one tool call (the MCP clients' usual default)
PER_PARENT = 100


@dataclass
class Point:
    paths: int
    rss_idle: float  # MB after initialize + tools/list
    rss_dry_run: float
    rss_execution: float
    dry_run: float  # seconds
    execution: float

    @property
    def peak(self) -> float:
        return max(self.rss_idle, self.rss_dry_run, self.rss_execution)


def measure(sandbox: Any, audit: Path, paths: list[str]) -> Point:
    with efile_stdio(sandbox, audit, "--max-paths", str(max(len(paths), 1))) as session:
        session.request("tools/list")
        idle = session.peak_rss_mb()
        if not paths:
            return Point(0, idle, idle, idle, 0.0, 0.0)
        started = time.perf_counter()
        plan = session.call_tool("remove_paths", {"paths": paths})
        dry_run = time.perf_counter() - started
        after_dry_run = session.peak_rss_mb()
        arguments = {"dry_run": False, "confirmation_token": plan["confirmation_token"]}  # the token alone
        started = time.perf_counter()
        done = session.call_tool("remove_paths", arguments)
        execution = time.perf_counter() - started
        after_execution = session.peak_rss_mb()
    assert done["summary"]["removed"] == len(paths), done["summary"]
    return Point(len(paths), idle, after_dry_run, after_execution, dry_run, execution)


def sweep(quick: bool, context: dict[str, Any]) -> list[Point]:
    """Run once per benchmark run; both sections read it."""
    if "sweep" not in context:
        sizes = [0, 1_000, 10_000] if quick else [0, 1_000, 10_000, 50_000]
        points = []
        with delayed_sandbox() as sandbox, tempfile.TemporaryDirectory(prefix="efile-bench-mem-") as tmp:
            for size in sizes:
                paths = make_tree(sandbox, f"n{size}", size // PER_PARENT, PER_PARENT)
                points.append(measure(sandbox, Path(tmp) / f"{size}.jsonl", paths))
        context["sweep"] = points
    return context["sweep"]


def run_memory(quick: bool, context: dict[str, Any]) -> list[Row]:
    points = sweep(quick, context)
    idle = points[0].peak
    rows = [Row("5 memory", "server peak RSS, idle (0 paths)", idle, "MB", note="VmHWM after tools/list")]
    for point in points[1:]:
        growth = (point.peak - idle) / point.paths * 10_000
        rows.append(
            Row(
                "5 memory",
                f"server peak RSS, {point.paths:,} paths (dry run + execution)",
                point.peak,
                "MB",
                target=150 if point.paths == 10_000 else None,
                note=f"+{point.peak - idle:.1f} MB over idle = {growth:.1f} MB per 10k paths",
            )
        )
    return rows


def _fit(points: list[Point], attribute: str) -> tuple[float, float]:
    """Least-squares line seconds = a + b * paths through the measured sizes."""
    xs = [p.paths for p in points]
    ys = [getattr(p, attribute) for p in points]
    mean_x, mean_y = sum(xs) / len(xs), sum(ys) / len(ys)
    b = sum((x - mean_x) * (y - mean_y) for x, y in zip(xs, ys, strict=False)) / sum((x - mean_x) ** 2 for x in xs)
    return mean_y - b * mean_x, b


async def _refusal_text(sandbox: Any, audit: Path) -> str:
    """What a call over the default EFILE_MAX_PATHS gets back (nothing is sent to the API)."""
    default = Settings.model_fields["max_paths"].default
    server = build_server(settings_for(sandbox, audit, max_paths=default))
    paths = [f"{sandbox.home}/x/f{i}" for i in range(default + 1)]
    async with Client(server) as client:
        result = await client.call_tool("remove_paths", {"paths": paths})
    return " ".join(getattr(block, "text", "") for block in result.content)


def run_limits(quick: bool, context: dict[str, Any]) -> list[Row]:
    points = [p for p in sweep(quick, context) if p.paths]
    rows = []
    limits = {}
    for step, attribute in (("dry run", "dry_run"), ("execution", "execution")):
        a, b = _fit(points, attribute)
        limits[step] = int((CLIENT_TIMEOUT - a) / b)
        rows.append(
            Row(
                "6 limits",
                f"{step}: seconds per 1000 paths (fit)",
                b * 1000,
                "s",
                note=f"t = {a:.2f} s + {b * 1000:.3f} s x paths/1000, fitted on "
                f"{', '.join(f'{p.paths:,}' for p in points)} paths (100 per dir, 20 ms RTT)",
            )
        )
    step = min(limits, key=limits.get)  # type: ignore[arg-type]
    rows.append(
        Row(
            "6 limits",
            f"largest call answered within {CLIENT_TIMEOUT:.0f} s",
            limits[step],
            "paths",
            note=f"N = (60 s - a) / b of the slower step ({step}); dry run alone: {limits['dry run']:,}",
        )
    )
    cap = Settings.model_fields["max_paths"].metadata  # the configurable ceiling of EFILE_MAX_PATHS
    ceiling = next((m.le for m in cap if getattr(m, "le", None) is not None), None)
    idle, largest = sweep(quick, context)[0].peak, points[-1]
    per_path = (largest.peak - idle) / largest.paths
    at = min(limits[step], ceiling or limits[step])
    rows.append(
        Row(
            "6 limits",
            f"server peak RSS at {at:,} paths (extrapolated)",
            idle + per_path * at,
            "MB",
            note=f"EFILE_MAX_PATHS can be set up to {ceiling:,}; {per_path * 1e3:.1f} MB per 1000 paths",
        )
    )
    with delayed_sandbox() as sandbox, tempfile.TemporaryDirectory(prefix="efile-bench-lim-") as tmp:
        sandbox.reset_counts()
        text = anyio.run(_refusal_text, sandbox, Path(tmp) / "audit.jsonl")
        sent = sum(sandbox.request_counts().values())
    context["refusal"] = {"text": text, "requests_sent": sent}
    rows.append(
        Row(
            "6 limits",
            "beyond EFILE_MAX_PATHS (default 1000): requests sent",
            sent,
            "req",
            target=0,
            note=f"refused up front: {text[:160]}",
        )
    )
    return rows
