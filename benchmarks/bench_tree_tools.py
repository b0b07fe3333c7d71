"""Sections 7-9: the tree tools over stdio: disk_usage on ~100k entries, remove by select, answer sizes.

Every guarded figure comes from `python -m efile_mcp` over stdio spoken to in raw JSON-RPC (what a
host sees), against the sandbox in its own process with a 20 ms round trip. The baselines are plain
httpx against the same sandbox in the same run, interleaved with the guarded runs:

- `usage`: a sequential walker, one file/list per folder, one request at a time (what a script
  without concurrency does), summing the sizes of the same tree;
- `select`: the existing removal baseline (async-remove, 100 paths a request, sequential).

`sizes` measures the characters of each answer's text content (the JSON a host that reads text
hands the model), for a 1,000 and a 10,000-path dry run and their executions by token alone.
"""

from __future__ import annotations

import json
import tempfile
import time
from collections import deque
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx2 as httpx
from common import (
    Row,
    Sandbox,
    StdioSession,
    baseline_remove,
    delayed_sandbox,
    efile_stdio,
    make_tree,
    median,
    remaining_files,
)

from efile_mcp.models.wire import FILE_LIST

# ---------------------------------------------------------------------------- helpers

#: 10 × 10 top and middle folders, 20 leaves each: 2,000 leaves of 50 files, 2,111 folders, ~102k entries.
TOP, MIDDLE, LEAVES, FILES = 10, 10, 20, 50
WALK_PAGE = 5000  # the page the server's walker asks for (client/walk.py LARGE_PAGE): one request a folder here


def spread(values: list[float]) -> str:
    if len(values) < 2:
        return f"n={len(values)}"
    return f"median of {len(values)}, range {min(values):.3g}–{max(values):.3g}"


def call(session: StdioSession, name: str, arguments: dict[str, Any]) -> tuple[dict[str, Any], int, int]:
    """(structured content, characters of the text content, characters of the request's arguments)."""
    result = session.request("tools/call", {"name": name, "arguments": arguments})
    text = "".join(block.get("text", "") for block in result.get("content", ()) if block.get("type") == "text")
    if result.get("isError"):
        raise RuntimeError(
            f"{name} answered an error: {text[:500]}\nserver stderr (tail): {session.stderr_text()[-2000:]}"
        )
    return result["structuredContent"], len(text), len(json.dumps(arguments, separators=(",", ":")))


def make_usage_tree(sandbox: Sandbox, name: str) -> tuple[int, int, int]:
    """The disk_usage tree under home/name: (folders below it, files, bytes)."""
    folders = files = size = 0
    for t in range(TOP):
        for m in range(MIDDLE):
            for leaf in range(LEAVES):
                local = sandbox.root / name / f"t{t:02d}" / f"m{m:02d}" / f"l{leaf:02d}"
                local.mkdir(parents=True)
                for f in range(FILES):
                    body = b"x" * (64 + f)
                    (local / f"f{f:03d}.dat").write_bytes(body)
                    files += 1
                    size += len(body)
    folders = TOP + TOP * MIDDLE + TOP * MIDDLE * LEAVES
    return folders, files, size


def sequential_walk(sandbox: Sandbox, root: str) -> tuple[float, int, int, int]:
    """The baseline: plain httpx, one file/list per folder, one at a time. (seconds, requests, files, bytes)."""
    requests = files = size = 0
    with httpx.Client(base_url=sandbox.base_url, headers={"token": sandbox.token}, timeout=60) as http:
        started = time.perf_counter()
        todo = deque([root])
        while todo:
            folder = todo.popleft()
            answer = http.get(FILE_LIST, params={"path": folder, "start": 0, "limit": WALK_PAGE}).json()
            requests += 1
            data = answer["data"]
            assert data["total"] <= WALK_PAGE, "the baseline reads one page per folder"
            for entry in data["fileList"]:
                if entry.get("isSymbolicLink"):
                    continue
                if entry.get("isDirectory"):
                    todo.append(entry["path"])
                elif entry.get("isRegularFile"):
                    files += 1
                    size += entry["size"]
        return time.perf_counter() - started, requests, files, size


# ---------------------------------------------------------------------------- 7 disk_usage


@dataclass
class UsageRun:
    seconds: float
    requests: int  # the answer's `requests` field
    sandbox_file_list: int  # what the sandbox counted for the same call
    rss_peak: float
    rss_idle: float
    server_cpu: float
    text_chars: int


def guarded_usage(sandbox: Sandbox, audit: Path, root: str, expect: tuple[int, int, int]) -> UsageRun:
    with efile_stdio(sandbox, audit) as session:
        session.request("tools/list")
        idle = session.peak_rss_mb()
        sandbox.reset_counts()
        cpu = session.cpu_seconds()
        started = time.perf_counter()
        answer, chars, _ = call(session, "disk_usage", {"path": root})
        seconds = time.perf_counter() - started
        server_cpu = session.cpu_seconds() - cpu
        counted = sandbox.request_counts().get("file/list", 0)
        peak = session.peak_rss_mb()
    folders, files, size = expect
    assert answer["complete"], answer.get("incomplete_reason")
    assert (answer["dir_count"], answer["file_count"], answer["total_size"]) == (folders, files, size), answer
    return UsageRun(seconds, answer["requests"], counted, peak, idle, server_cpu, chars)


def run_usage(quick: bool, context: dict[str, Any]) -> list[Row]:
    rounds = 1 if quick else 3
    section = "7 disk_usage 100k"
    base: list[tuple[float, int]] = []
    runs: list[UsageRun] = []
    with delayed_sandbox() as sandbox, tempfile.TemporaryDirectory(prefix="efile-bench-du-") as tmp:
        folders, files, size = make_usage_tree(sandbox, "usage")
        root = f"{sandbox.home}/usage"
        for i in range(rounds):
            order = ("baseline", "guarded") if i % 2 == 0 else ("guarded", "baseline")  # alternated: drift cancels
            for name in order:
                if name == "baseline":
                    seconds, requests, seen_files, seen_size = sequential_walk(sandbox, root)
                    assert (seen_files, seen_size) == (files, size)
                    base.append((seconds, requests))
                else:
                    runs.append(guarded_usage(sandbox, Path(tmp) / f"{i}.jsonl", root, (folders, files, size)))
    context["usage"] = {"baseline": base, "guarded": [vars(r) for r in runs], "folders": folders + 1, "files": files}
    walked = folders + 1  # the root is listed too
    base_s = median([b[0] for b in base])
    times = [r.seconds for r in runs]
    requests = median([r.requests for r in runs])
    counted = median([r.sandbox_file_list for r in runs])
    tree = f"{files:,} files in {walked:,} folders (3 levels), 20 ms RTT"
    return [
        Row(
            section,
            "baseline: sequential walker, plain httpx, 1 file/list per folder",
            base_s,
            "s",
            note=f"{tree}; {base[0][1]:,} requests; {spread([b[0] for b in base])}",
        ),
        Row(
            section,
            "stdio disk_usage: time",
            median(times),
            "s",
            base_s,
            0.3,
            f"{spread(times)}; ratio range {min(times) / base_s:.2f}–{max(times) / base_s:.2f}×",
        ),
        Row(
            section,
            "file/list requests per folder",
            counted / walked,
            "req",
            target=1.1,
            note=f"{counted:,.0f} counted by the sandbox, answer says {requests:,.0f}, {walked:,} folders",
        ),
        Row(
            section,
            "server peak RSS (VmHWM)",
            max(r.rss_peak for r in runs),
            "MB",
            target=200,
            note=f"worst of {len(runs)}; idle {median([r.rss_idle for r in runs]):.0f} MB",
        ),
        Row(
            section,
            "server CPU for the call",
            median([r.server_cpu for r in runs]),
            "s",
            note=f"user+sys of the server process; {spread([r.server_cpu for r in runs])}",
        ),
        Row(section, "answer text", median([r.text_chars for r in runs]), "chars", note="top 20 children"),
    ]


# ---------------------------------------------------------------------------- 8 remove by select


@dataclass
class SelectRun:
    dry_run: float = 0.0
    execution: float = 0.0
    server_cpu: float = 0.0
    dry_run_chars: int = 0
    execution_chars: int = 0
    execution_argument_chars: int = 0
    execution_paths: int = 0  # paths (or a select) the execution call names: none, the token alone
    sandbox_cpu: float = 0.0
    dry_run_requests: dict[str, int] = field(default_factory=dict)
    requests: dict[str, int] = field(default_factory=dict)  # of the execution

    @property
    def total(self) -> float:
        return self.dry_run + self.execution


def execute_by_token(session: StdioSession, plan: dict[str, Any], run: SelectRun, expected: int) -> None:
    arguments = {"dry_run": False, "confirmation_token": plan["confirmation_token"]}  # no path: the token alone
    run.execution_paths = len(arguments.get("paths", ())) + ("select" in arguments)
    started = time.perf_counter()
    done, run.execution_chars, run.execution_argument_chars = call(session, "remove_paths", arguments)
    run.execution = time.perf_counter() - started
    assert done["summary"]["removed"] == expected, done["summary"]


def guarded_removal(
    sandbox: Sandbox, audit: Path, tree: str, expected: int, paths: list[str] | None = None
) -> SelectRun:
    """Dry run by select (or by `paths`, the reference flow of section 2), then execution by token alone."""
    run = SelectRun()
    arguments: dict[str, Any] = (
        {"paths": paths} if paths is not None else {"select": {"path": f"{sandbox.home}/{tree}", "type": "file"}}
    )
    with efile_stdio(sandbox, audit, "--max-paths", str(expected)) as session:
        sandbox.reset_counts()
        cpu, sandbox_cpu = session.cpu_seconds(), sandbox.cpu_seconds()
        started = time.perf_counter()
        plan, run.dry_run_chars, _ = call(session, "remove_paths", arguments)
        run.dry_run = time.perf_counter() - started
        assert plan["summary"]["would_remove"] == expected, plan["summary"]
        run.dry_run_requests = sandbox.request_counts()
        sandbox.reset_counts()
        execute_by_token(session, plan, run, expected)
        run.server_cpu = session.cpu_seconds() - cpu
        run.sandbox_cpu = sandbox.cpu_seconds() - sandbox_cpu
        run.requests = sandbox.request_counts()
    return run


def guarded_select(sandbox: Sandbox, audit: Path, tree: str, expected: int) -> SelectRun:
    return guarded_removal(sandbox, audit, tree, expected)


def _requests(counts: dict[str, int]) -> str:
    return ", ".join(f"{k} {v}" for k, v in sorted(counts.items()))


def run_select(quick: bool, context: dict[str, Any]) -> list[Row]:
    rounds = 1 if quick else 3
    parents, per_parent = 100, 100
    expected = parents * per_parent
    section = "8 remove select 10k"
    base: list[float] = []
    runs: dict[str, list[SelectRun]] = {"select": [], "paths": []}
    names = ["baseline", "select", "paths"]
    with delayed_sandbox() as sandbox, tempfile.TemporaryDirectory(prefix="efile-bench-sel-") as tmp:
        for i in range(rounds):
            for name in names[i % 3 :] + names[: i % 3]:  # rotated order: drift cancels
                tree = f"{name}-{i}"
                paths = make_tree(sandbox, tree, parents, per_parent)
                audit = Path(tmp) / f"{tree}.jsonl"
                if name == "baseline":
                    base.append(baseline_remove(sandbox, paths))
                elif name == "select":
                    runs[name].append(guarded_select(sandbox, audit, tree, expected))
                else:
                    runs[name].append(guarded_removal(sandbox, audit, tree, expected, paths))
                left = remaining_files(sandbox, tree)
                assert left == 0, f"{name}: {left} files were not removed"
    context["select"] = {"baseline": base, **{k: [vars(r) for r in v] for k, v in runs.items()}}
    base_s = median(base)
    sel, ref = runs["select"], runs["paths"]
    totals = [r.total for r in sel]

    def med(flows: list[SelectRun], attribute: str) -> float:
        return median([getattr(r, attribute) for r in flows])

    return [
        Row(
            section,
            "baseline: plain httpx, 100 paths/request, sequential",
            base_s,
            "s",
            note=f"{expected:,} files in {parents} dirs, 20 ms RTT; {spread(base)}",
        ),
        Row(
            section,
            "stdio select: dry run + execution by token",
            median(totals),
            "s",
            base_s,
            1.5,
            f"{spread(totals)}; ratio range {min(totals) / base_s:.2f}–{max(totals) / base_s:.2f}×",
        ),
        Row(
            section,
            "stdio select: dry run alone",
            med(sel, "dry_run"),
            "s",
            base_s,
            note=f"{spread([r.dry_run for r in sel])}; {_requests(sel[-1].dry_run_requests)}",
        ),
        Row(
            section,
            "stdio select: execution alone",
            med(sel, "execution"),
            "s",
            base_s,
            note=f"{spread([r.execution for r in sel])}; {_requests(sel[-1].requests)}",
        ),
        Row(
            section,
            "stdio select: server CPU / sandbox CPU, both steps",
            med(sel, "server_cpu"),
            "s",
            note=f"sandbox {med(sel, 'sandbox_cpu'):.2f} s; user+sys of each process",
        ),
        Row(
            section,
            "reference, stdio by paths: dry run + execution by token",
            med(ref, "total"),
            "s",
            base_s,
            note=f"section 2's flow in this run; {spread([r.total for r in ref])}; execution "
            f"{med(ref, 'execution'):.2f} s, {_requests(ref[-1].requests)}",
        ),
    ]


# ---------------------------------------------------------------------------- 9 answer sizes


def sizes_by_paths(sandbox: Sandbox, audit: Path, tree: str, parents: int, per_parent: int) -> SelectRun:
    run = SelectRun()
    paths = make_tree(sandbox, tree, parents, per_parent)
    with efile_stdio(sandbox, audit, "--max-paths", str(max(len(paths), 1000))) as session:
        started = time.perf_counter()
        plan, run.dry_run_chars, _ = call(session, "remove_paths", {"paths": paths})
        run.dry_run = time.perf_counter() - started
        assert plan["summary"]["would_remove"] == len(paths), plan["summary"]
        execute_by_token(session, plan, run, len(paths))
    assert remaining_files(sandbox, tree) == 0
    return run


def run_sizes(quick: bool, context: dict[str, Any]) -> list[Row]:
    section = "9 answer sizes"
    rows: list[Row] = []
    measured: dict[str, dict[str, Any]] = {}
    with delayed_sandbox() as sandbox, tempfile.TemporaryDirectory(prefix="efile-bench-size-") as tmp:
        cases = {
            "1,000 paths": (8000, lambda: sizes_by_paths(sandbox, Path(tmp) / "1k.jsonl", "p1k", 10, 100)),
            "10,000 paths": (12000, lambda: sizes_by_paths(sandbox, Path(tmp) / "10k.jsonl", "p10k", 100, 100)),
        }
        if "select" in context:  # the select section already measured its answers: the same call
            last = context["select"]["select"][-1]
            select_run = SelectRun(
                **{
                    k: last[k]
                    for k in ("dry_run_chars", "execution_chars", "execution_argument_chars", "execution_paths")
                }
            )
        else:
            make_tree(sandbox, "s10k", 100, 100)
            select_run = guarded_select(sandbox, Path(tmp) / "s10k.jsonl", "s10k", 10_000)
        for label, (target, measure) in cases.items():
            measured[label] = vars(measure())
            measured[label]["target"] = target
        measured["10,000 by select"] = {**vars(select_run), "target": 12000}
    context["sizes"] = measured
    for label, m in measured.items():
        target = m["target"]
        rows.append(Row(section, f"{label}: dry-run answer text", m["dry_run_chars"], "chars", target=target))
        rows.append(Row(section, f"{label}: execution answer text", m["execution_chars"], "chars", target=target))
        rows.append(
            Row(
                section,
                f"{label}: paths named by the execution call",
                m["execution_paths"],
                "paths",
                target=0,
                note=f"arguments: dry_run=false + confirmation_token, {m['execution_argument_chars']} chars",
            )
        )
    return rows
