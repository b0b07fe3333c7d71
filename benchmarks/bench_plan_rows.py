"""Section 13: a 100,000-path selection, dry run + execution in one approval, against sequential posts (issue 15).

`python -m efile_mcp` over stdio (raw JSON-RPC, what a host sees) dry-runs `select` on 100,000 files in
1,000 folders and executes the plan by its token alone; the plan is kept as rows in the SQLite state store.
Baseline in the same run: plain httpx posting the same number of paths to async-remove, 100 a request, one
after another, with no checks. The server's peak resident memory (VmHWM) is read after each step.

    python benchmarks/bench_plan_rows.py [--quick]      (quick: 20,000 paths)
    python benchmarks/bench_plan_rows.py --million      (1,000,000 files by select across resumed calls)
    python benchmarks/bench_plan_rows.py --million --type=file   (the same with type "file"; default: "any")
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


def _plan_and_execute(sandbox: Any, tmp: str, name: str, select: dict[str, Any]) -> dict[str, Any]:
    """Dry-run `select` over stdio (reading on with `resume` until the plan is whole), then execute it by its
    token alone; the server's peak RSS after each step."""
    with efile_stdio(sandbox, Path(tmp) / f"{name}.jsonl") as session:
        session.request("tools/list")
        idle = session.peak_rss_mb()
        sandbox_cpu = sandbox.cpu_seconds()
        started = time.perf_counter()
        plan, plan_chars, _ = call(session, "remove_paths", {"select": select, "mode": "delete"})
        calls = 1
        while plan.get("resume"):
            plan, chars, _ = call(session, "remove_paths", {"resume": plan["resume"]})
            plan_chars, calls = max(plan_chars, chars), calls + 1
        dry_run = time.perf_counter() - started
        rss_dry = session.peak_rss_mb()
        started = time.perf_counter()
        arguments = {"dry_run": False, "confirmation_token": plan["confirmation_token"]}
        done, done_chars, _ = call(session, "remove_paths", arguments)
        execution = time.perf_counter() - started
        rss_exec = session.peak_rss_mb()
        sandbox_cpu = sandbox.cpu_seconds() - sandbox_cpu
    return {
        "sandbox_cpu": sandbox_cpu,
        "plan": plan,
        "done": done,
        "calls": calls,
        "dry_run": dry_run,
        "execution": execution,
        "idle": idle,
        "rss_dry": rss_dry,
        "rss_exec": rss_exec,
        "chars": (plan_chars, done_chars),
    }


def run(quick: bool, context: dict[str, Any]) -> list[Row]:
    parents = 200 if quick else 1000
    per_parent = 100
    expected = parents * per_parent
    rows: list[Row] = []
    with delayed_sandbox() as sandbox, tempfile.TemporaryDirectory(prefix="efile-bench-rows-") as tmp:
        paths = make_tree(sandbox, "baseline", parents, per_parent)
        base_cpu = sandbox.cpu_seconds()
        base = baseline_remove(sandbox, paths)
        base_cpu = sandbox.cpu_seconds() - base_cpu
        del paths
        note = f"{expected:,} files in {parents} dirs, 20 ms RTT, one approval"
        rows.append(Row(SECTION, "baseline: plain httpx, 100 paths/request, sequential", base, "s", note=note))
        # type "file": planned as it is found (guard/selection.py); type "any" may match folders: held whole.
        for kind in ("file", "any"):
            make_tree(sandbox, f"select-{kind}", parents, per_parent)
            select = {"path": f"{sandbox.home}/select-{kind}", "type": kind, "name": "f*.dat"}
            got = _plan_and_execute(sandbox, tmp, kind, select)
            assert got["plan"]["summary"]["would_remove"] == expected, got["plan"]["summary"]
            assert got["done"]["summary"]["removed"] == expected, got["done"]["summary"]
            assert remaining_files(sandbox, f"select-{kind}") == 0
            both = got["dry_run"] + got["execution"]
            rows += [
                Row(SECTION, f"select type={kind}: dry run + execution by token", both, "s", base, 1.2, note),
                Row(SECTION, f"select type={kind}: dry run alone", got["dry_run"], "s", base),
                Row(SECTION, f"select type={kind}: execution alone", got["execution"], "s", base),
                Row(
                    SECTION,
                    f"select type={kind}: the sandbox's CPU, both steps",
                    got["sandbox_cpu"],
                    "s",
                    base_cpu,
                    note=f"the sandbox's own work (listings, removals), against {base_cpu:.1f} s for the baseline's "
                    "posts: what no client can go below",
                ),
                Row(
                    SECTION,
                    f"select type={kind}: server peak RSS (VmHWM), both steps",
                    max(got["idle"], got["rss_dry"], got["rss_exec"]),
                    "MB",
                    None,
                    250.0,
                    f"idle {got['idle']:.0f} MB, after the dry run {got['rss_dry']:.0f} MB, after the execution "
                    f"{got['rss_exec']:.0f} MB",
                ),
                Row(
                    SECTION,
                    f"select type={kind}: answer text, dry run / execution",
                    max(got["chars"]),
                    "chars",
                    None,
                    12_000.0,
                    f"dry run {got['chars'][0]:,}, execution {got['chars'][1]:,} chars",
                ),
            ]
            context.setdefault("plan_rows", {})[kind] = {
                "paths": expected,
                "baseline": base,
                **{k: got[k] for k in ("dry_run", "execution", "calls")},
            }
    return rows


def run_million(folders: int = 1000, per_folder: int = 1000, kind: str = "any") -> list[Row]:
    """1,000,000 files by select (type `kind`; "any" is the default an agent gets): the dry run read across
    resumed calls, then one execution."""
    section = f"13b plan of 1M by select (type {kind})"
    expected = folders * per_folder
    with delayed_sandbox() as sandbox, tempfile.TemporaryDirectory(prefix="efile-bench-million-") as tmp:
        started = time.perf_counter()
        for d in range(folders):  # empty files: a million pages of tmpfs would be 4 GB of memory
            local = sandbox.root / "million" / f"d{d:04d}"
            local.mkdir(parents=True)
            for f in range(per_folder):
                (local / f"f{f:04d}.dat").touch()
        made = time.perf_counter() - started
        select = {"path": f"{sandbox.home}/million", "name": "*.dat", "type": kind}
        got = _plan_and_execute(sandbox, tmp, "million", select)
        assert got["plan"]["summary"]["would_remove"] == expected, got["plan"]["summary"]
        assert got["done"]["summary"]["removed"] == expected, got["done"]["summary"]
        assert remaining_files(sandbox, "million") == 0
    note = f"{expected:,} files in {folders} dirs, 20 ms RTT, sandbox (tree made in {made:.0f} s)"
    peak = max(got["idle"], got["rss_dry"], got["rss_exec"])
    return [
        Row(section, "dry run, all calls", got["dry_run"], "s", note=f"{got['calls']} calls (resume); {note}"),
        Row(section, "execution by token", got["execution"], "s", note=note),
        Row(
            section,
            "server peak RSS (VmHWM), both steps",
            peak,
            "MB",
            None,
            300.0,
            f"idle {got['idle']:.0f} MB, after the dry run {got['rss_dry']:.0f} MB, after the execution "
            f"{got['rss_exec']:.0f} MB",
        ),
        Row(section, "answer text, largest", max(got["chars"]), "chars", None, 12_000.0),
    ]


if __name__ == "__main__":
    kind = "file" if "--type=file" in sys.argv else "any"
    rows = run_million(kind=kind) if "--million" in sys.argv else run("--quick" in sys.argv, {})
    for row in rows:
        ratio = f" ({row.ratio:.2f}x)" if row.ratio is not None else ""
        print(f"{row.measure}: {row.value:,.2f} {row.unit}{ratio}  {row.note}")
