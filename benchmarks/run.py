"""Run the efile-mcp benchmarks: `python benchmarks/run.py [--quick] [--only NAME ...]`.

Prints a table, writes benchmarks/results/latest.json (not committed) and benchmarks/RESULTS.md
(committed: the latest figures with the date and the machine). Every figure that has a baseline is
a ratio against it, measured in the same run; the sandbox adds a 20 ms round trip to every request.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from datetime import UTC, datetime
from importlib.metadata import version
from pathlib import Path
from typing import Any

import bench_cold_start
import bench_dry_run_cost
import bench_folder_removal
import bench_get_task
import bench_load
import bench_memory
import bench_plan_rows
import bench_quarantine
import bench_removal
import bench_tree_tools
import bench_walk
from common import Row

HERE = Path(__file__).resolve().parent
SECTIONS = {
    "cold-start": bench_cold_start.run,
    "removal": bench_removal.run,
    "dry-run-cost": bench_dry_run_cost.run,
    "get-task": bench_get_task.run,
    "memory": bench_memory.run_memory,
    "limits": bench_memory.run_limits,
    "usage": bench_tree_tools.run_usage,
    "select": bench_tree_tools.run_select,
    "sizes": bench_tree_tools.run_sizes,
    "quarantine": bench_quarantine.run,
    "load": bench_load.run,
    "plan-rows": bench_plan_rows.run,
    # An in-process fake file/list at 20 ms (the sandbox cannot serve millions of entries in minutes) at the
    # quick sizes; the sizes: python benchmarks/bench_walk.py --scale full
    "walk": lambda quick, context: bench_walk.run(True),
    # "Delete my old ImageNet copy": the real Guard over an in-process fake efile API (fake_efile.py), 128,000
    # files here; the 1,281,000: python benchmarks/bench_folder_removal.py --scale full
    "folder-removal": lambda quick, context: bench_folder_removal.run(True),
}
COLUMNS = ("section", "measure", "value", "baseline", "ratio", "target", "verdict", "note")


def machine() -> dict[str, Any]:
    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return {
        "cpu": cpu,
        "cores": os.cpu_count(),
        "os": platform.platform(),
        "python": platform.python_version(),
        "mcp": version("mcp"),
        "efile-mcp": version("efile-mcp"),
    }


def _number(value: float | None, unit: str = "") -> str:
    if value is None:
        return ""
    text = f"{value:,.0f}" if abs(value) >= 1000 or float(value).is_integer() else f"{value:.3g}"
    return f"{text} {unit}".strip()


def cells(row: Row) -> list[str]:
    ratio = row.ratio
    if row.target is None:
        target = ""
    elif ratio is not None:
        target = f"≤ {row.target:g}×"
    else:
        target = f"≤ {_number(row.target, row.unit)}"
    return [
        row.section,
        row.measure,
        _number(row.value, row.unit),
        _number(row.baseline, row.unit),
        "" if ratio is None else f"{ratio:.2f}×",
        target,
        row.verdict,
        row.note,
    ]


def print_table(rows: list[Row]) -> None:
    table = [list(COLUMNS)] + [cells(row) for row in rows]
    widths = [max(len(line[i]) for line in table) for i in range(len(table[0]))]
    for n, line in enumerate(table):
        print("  ".join(cell.ljust(width) for cell, width in zip(line, widths, strict=False)).rstrip())
        if n == 0:
            print("  ".join("-" * width for width in widths))


def write_markdown(rows: list[Row], info: dict[str, Any], path: Path) -> None:
    box = info["machine"]
    command = "python benchmarks/run.py"
    lines = [
        "# efile-mcp benchmark results",
        "",
        (
            f"Latest run: {info['date']}, `{command}`. Machine: {box['cpu']}, {box['cores']} cores, {box['os']}, "
            f"Python {box['python']}, mcp {box['mcp']}, efile-mcp {box['efile-mcp']}."
        ),
        "",
        (
            f"Load average (1, 5, 15 min) before the run {', '.join(map(str, info['load_average']['before']))}, "
            f"after {', '.join(map(str, info['load_average']['after']))}; sections took "
            + ", ".join(f"{k} {v} s" for k, v in info["section_seconds"].items())
            + "."
        ),
        "",
        "Ratios are against a baseline measured in the same run (lower is better). The sandbox efile API",
        "runs in its own process and adds a 20 ms round trip to every request. See benchmarks/README.md.",
        "",
        "| " + " | ".join(COLUMNS) + " |",
        "|" + "---|" * len(COLUMNS),
    ]
    lines += ["| " + " | ".join(cell.replace("|", "/") for cell in cells(row)) + " |" for row in rows]
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer rounds; the memory sweep stops at 10,000 paths")
    parser.add_argument(
        "--only",
        action="append",
        choices=list(SECTIONS),
        metavar="NAME",
        help=f"run only this section (repeatable): {', '.join(SECTIONS)}",
    )
    args = parser.parse_args(argv)
    chosen = args.only or list(SECTIONS)
    load_before = os.getloadavg()  # the machine may be shared: the load says how much
    context: dict[str, Any] = {}  # sections share measurements through it (limits reuse the memory sweep)
    rows: list[Row] = []
    timings = {}
    for name in chosen:
        started = time.perf_counter()
        rows += SECTIONS[name](args.quick, context)
        timings[name] = round(time.perf_counter() - started, 1)
        print(f"[{name}: {timings[name]} s]", file=sys.stderr, flush=True)
    info = {
        "date": datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC"),
        "machine": machine(),
        "quick": args.quick,
        "sections": chosen,
        "section_seconds": timings,
        "load_average": {"before": [round(x, 2) for x in load_before], "after": [round(x, 2) for x in os.getloadavg()]},
    }
    print_table(rows)
    results = HERE / "results"
    results.mkdir(exist_ok=True)
    raw = {
        k: v if not isinstance(v, list) or not v or not hasattr(v[0], "__dict__") else [vars(p) for p in v]
        for k, v in context.items()
    }
    payload = {**info, "rows": [row.as_json() for row in rows], "raw": raw}
    (results / "latest.json").write_text(json.dumps(payload, indent=2, default=str) + "\n", encoding="utf-8")
    complete = chosen == list(SECTIONS) and not args.quick  # the committed table only holds complete runs
    if complete:
        write_markdown(rows, info, HERE / "RESULTS.md")
    print(f"\nwrote {results / 'latest.json'}" + (f" and {HERE / 'RESULTS.md'}" if complete else ""))
    return 0


if __name__ == "__main__":
    sys.exit(main())
