"""Section 13: a 100,000-path selection, dry run + execution in one approval, against sequential posts (issue 15).

`python -m efile_mcp` over stdio (raw JSON-RPC, what a host sees) dry-runs `select` on 100,000 files in
1,000 folders and executes the plan by its token alone; the plan is kept as rows in the SQLite state store.
Baseline in the same run: plain httpx posting the same number of paths to async-remove, 100 a request, one
after another, with no checks. The server's peak resident memory (VmHWM) is read after each step.

    python benchmarks/bench_plan_rows.py [--quick]      (quick: 20,000 paths)
"""

from __future__ import annotations

import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from bench_tree_tools import call
from common import Row, baseline_remove, delayed_sandbox, efile_stdio, make_tree, remaining_files

SECTION = "13 plan of 100k by select"


def run(quick: bool, context: dict[str, Any]) -> list[Row]:
    parents = 200 if quick else 1000
    per_parent = 100
    expected = parents * per_parent
    with delayed_sandbox() as sandbox, tempfile.TemporaryDirectory(prefix="efile-bench-rows-") as tmp:
        paths = make_tree(sandbox, "baseline", parents, per_parent)
        base = baseline_remove(sandbox, paths)
        del paths
        make_tree(sandbox, "select", parents, per_parent)
        with efile_stdio(sandbox, Path(tmp) / "select.jsonl") as session:
            session.request("tools/list")
            idle = session.peak_rss_mb()
            started = time.perf_counter()
            select = {"path": f"{sandbox.home}/select", "type": "file"}
            plan, plan_chars, _ = call(session, "remove_paths", {"select": select, "mode": "delete"})
            dry_run = time.perf_counter() - started
            rss_dry = session.peak_rss_mb()
            assert plan["summary"]["would_remove"] == expected, plan["summary"]
            started = time.perf_counter()
            arguments = {"dry_run": False, "confirmation_token": plan["confirmation_token"]}
            done, done_chars, _ = call(session, "remove_paths", arguments)
            execution = time.perf_counter() - started
            rss_exec = session.peak_rss_mb()
        assert done["summary"]["removed"] == expected, done["summary"]
        assert remaining_files(sandbox, "select") == 0
    context["plan_rows"] = {"paths": expected, "baseline": base, "dry_run": dry_run, "execution": execution}
    note = f"{expected:,} files in {parents} dirs, 20 ms RTT, one approval"
    return [
        Row(SECTION, "baseline: plain httpx, 100 paths/request, sequential", base, "s", note=note),
        Row(SECTION, "stdio select: dry run + execution by token", dry_run + execution, "s", base, 1.2, note),
        Row(SECTION, "stdio select: dry run alone", dry_run, "s", base),
        Row(SECTION, "stdio select: execution alone", execution, "s", base),
        Row(
            SECTION,
            "server peak RSS (VmHWM), both steps",
            max(idle, rss_dry, rss_exec),
            "MB",
            None,
            250.0,
            f"idle {idle:.0f} MB, after the dry run {rss_dry:.0f} MB, after the execution {rss_exec:.0f} MB",
        ),
        Row(
            SECTION,
            "answer text, dry run / execution",
            max(plan_chars, done_chars),
            "chars",
            None,
            12_000.0,
            f"dry run {plan_chars:,}, execution {done_chars:,} chars",
        ),
    ]


if __name__ == "__main__":
    for row in run("--quick" in sys.argv, {}):
        ratio = f" ({row.ratio:.2f}x)" if row.ratio is not None else ""
        print(f"{row.measure}: {row.value:,.2f} {row.unit}{ratio}  {row.note}")
