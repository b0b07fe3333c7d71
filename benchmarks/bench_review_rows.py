"""The person's review page of a 100,000 and a 1,000,000-path plan: memory and answer times (issue 15).

A plan of synthetic rows (ImageNet-like: 1,000 files in each of N/1,000 folders, the folders in a
shuffled order, so the plan's order is not the paths' order) is stored as rows in a SQLite state store.
A child process per case imports the review code from a code root (this tree, or a snapshot of the code
before, e.g. `git worktree add /tmp/review-before <commit>`), serves the page in-process (the ReviewSite's own
loopback listener, read with httpx over TCP: the ASGI transport would hold a whole CSV) and reads, in turn: the page, the tree's root, a search for a
name in the plan's last chunk, a list page deep in the plan, the whole CSV, and the page again. It
reports each answer's time, the process's CPU time (the server and the client, all threads: steadier than
the wall clock on a shared machine) and its size and its peak resident memory (VmHWM) after each step, against the
same process's idle peak (imports done, store open, one request served). Another child per case runs
`efile-mcp approve`'s conversation (the plan's summary, on a terminal that answers Enter: nothing decided).

    python benchmarks/bench_review_rows.py [--sizes 100000,1000000] [--before /tmp/review-before]
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
PLAN_ID = "b0b0b0b0b0b0b0b0b0b0b0b0"
HOME = "/public/home/alice"
PER_FOLDER = 1000


def vm_hwm_mb() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError("no VmHWM")


def folder_order(count: int) -> list[int]:
    """The folders in a fixed shuffled order (a walk's order, not the names')."""
    import random

    order = list(range(count))
    random.Random(15).shuffle(order)
    return order


def last_name(rows: int) -> str:
    """A file name that is in the plan's last chunk (its last folder in plan order), and only there."""
    folders = rows // PER_FOLDER
    last = folder_order(folders)[-1]
    return f"n{last:08d}_{PER_FOLDER - 3:04d}.JPEG"


def build(state: Path, rows: int) -> None:
    """Store the plan (rows in chunks, then its header) with the code of this tree."""
    sys.path.insert(0, str(REPO))
    import anyio

    from efile_mcp.guard.seen import Plan, SeenPath, save_plan
    from efile_mcp.guard.store import open_store

    now = time.time()
    folders = rows // PER_FOLDER
    paths = []
    for k in folder_order(folders):
        base = f"{HOME}/datasets/imagenet/train/n{k:08d}"
        for i in range(PER_FOLDER):
            size = 50_000 + (k * 7919 + i * 104_729) % 200_000
            paths.append(SeenPath(f"{base}/n{k:08d}_{i:04d}.JPEG", "file", size, now - 86400 * (k % 300), size))
    summary = {"would_remove": rows, "total_size": sum(p.size for p in paths), "file_count": rows, "folder_count": 0}
    plan = Plan(PLAN_ID, now + 86400, paths, created_at=now, summary=summary, select={"path": HOME, "type": "file"})

    async def main() -> None:
        store = open_store(None, state)
        try:
            await save_plan(store, plan)
        finally:
            await store.aclose()

    anyio.run(main)


def serve(state: Path, code: Path, rows: int) -> dict[str, Any]:
    """In this (child) process: serve the page with the code at `code` and read it, step by step."""
    sys.path.insert(0, str(code))
    import anyio
    import httpx2 as httpx

    import efile_mcp
    from efile_mcp.guard.store import open_store
    from efile_mcp.review import ReviewSite

    assert Path(efile_mcp.__file__).resolve().is_relative_to(code.resolve()), efile_mcp.__file__
    found: dict[str, Any] = {"rows": rows, "code": str(code)}

    async def main() -> None:
        store = open_store(None, state)
        site = ReviewSite(store, browser="never")  # its own loopback listener, in this event loop
        async with httpx.AsyncClient(timeout=3600) as http:
            url = await site.url_for(PLAN_ID, time.time() + 3600)
            assert (await http.get(url.split("/review/")[0] + "/review/assets/page.css")).status_code == 200
            found["idle_mb"] = vm_hwm_mb()
            steps: list[dict[str, Any]] = []

            async def step(name: str, path: str, **params: Any) -> httpx.Response:
                started, cpu = time.perf_counter(), time.process_time()
                answer = await http.get(url + path, params=params)
                seconds, cpu = time.perf_counter() - started, time.process_time() - cpu
                assert answer.status_code == 200, (name, answer.status_code, answer.text[:300])
                steps.append(
                    {"step": name, "s": seconds, "cpu": cpu, "bytes": len(answer.content), "hwm_mb": vm_hwm_mb()}
                )
                return answer

            page = await step("page (first view)", "")
            assert f'data-value="{rows}"' in page.text
            top = (await step("tree root", "api/children")).json()
            assert top["folder"]["items"] == rows, top["folder"]
            needle = last_name(rows)
            found_rows = (await step("search (a name in the last chunk)", "api/paths", q=needle.upper())).json()
            assert found_rows["total"] == 1 and found_rows["items"][0]["path"].endswith(needle), found_rows
            deep = (await step("list page deep in the plan", "api/paths", offset=rows - 600, limit=500)).json()
            assert len(deep["items"]) == 500
            started, cpu = time.perf_counter(), time.process_time()
            removes = size = 0
            async with http.stream("GET", url + "plan.csv") as download:
                async for line in download.aiter_lines():
                    size += len(line) + 2
                    removes += line.startswith("remove,")
            assert removes == rows, removes
            csv_s, cpu = time.perf_counter() - started, time.process_time() - cpu
            steps.append({"step": "whole CSV", "s": csv_s, "cpu": cpu, "bytes": size, "hwm_mb": vm_hwm_mb()})
            await step("page (again)", "")
            found["steps"] = steps
        await site.aclose()
        await store.aclose()

    anyio.run(main)
    found["peak_mb"] = vm_hwm_mb()
    found["over_idle_mb"] = found["peak_mb"] - found["idle_mb"]
    return found


def terminal(state: Path, code: Path, rows: int) -> dict[str, Any]:
    """In this (child) process: `efile-mcp approve`'s conversation with the code at `code`, on a terminal that
    answers Enter (nothing decided): the plan's summary is read and shown."""
    import io

    sys.path.insert(0, str(code))
    import anyio

    import efile_mcp
    from efile_mcp.guard.store import open_store
    from efile_mcp.review.terminal import Terminal, approve

    assert Path(efile_mcp.__file__).resolve().is_relative_to(code.resolve()), efile_mcp.__file__
    found: dict[str, Any] = {"rows": rows, "code": str(code)}

    async def main() -> None:
        store = open_store(None, state)
        found["idle_mb"] = vm_hwm_mb()
        shown = io.StringIO()
        started, cpu = time.perf_counter(), time.process_time()
        status = await approve(store, Terminal(io.StringIO("\n"), shown), plan_id=PLAN_ID)
        seconds, cpu = time.perf_counter() - started, time.process_time() - cpu
        assert status == 1 and f"{rows:,} paths" in shown.getvalue(), shown.getvalue()
        found["steps"] = [
            {"step": "approve: summary shown", "s": seconds, "cpu": cpu, "bytes": len(shown.getvalue()),
             "hwm_mb": vm_hwm_mb()}
        ]  # fmt: skip
        await store.aclose()

    anyio.run(main)
    found["peak_mb"] = vm_hwm_mb()
    found["over_idle_mb"] = found["peak_mb"] - found["idle_mb"]
    return found


def load_average() -> str:
    return " ".join(Path("/proc/loadavg").read_text().split()[:3])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sizes", default="100000,1000000", help="plan sizes, comma-separated")
    parser.add_argument("--before", type=Path, help="a code root of the review before (a git worktree)")
    parser.add_argument("--no-after", action="store_true", help="measure the --before code only")
    parser.add_argument("--out", type=Path, default=HERE / "results" / "review_rows.json")
    parser.add_argument("--build", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--serve", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--terminal", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--state", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--code", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.build:
        build(args.state, args.build)
        return
    if args.serve:
        print(json.dumps(serve(args.state, args.code, args.serve)))
        return
    if args.terminal:
        print(json.dumps(terminal(args.state, args.code, args.terminal)))
        return
    codes = [("before", args.before)] if args.before else []
    if not args.no_after:
        codes.append(("after", REPO))
    results: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory(prefix="efile-bench-review-") as tmp:
        for rows in (int(s) for s in args.sizes.split(",")):
            state = Path(tmp) / f"state-{rows}"
            started = time.perf_counter()
            subprocess.run([sys.executable, __file__, "--build", str(rows), "--state", str(state)], check=True)
            print(f"# {rows:,} rows stored in {time.perf_counter() - started:.1f} s", file=sys.stderr)
            for (label, code), mode in itertools.product(codes, ("serve", "terminal")):
                load = load_average()
                child = subprocess.run(
                    [sys.executable, __file__, f"--{mode}", str(rows), "--state", str(state), "--code", str(code)],
                    check=True,
                    capture_output=True,
                    text=True,
                    env={**os.environ, "PYTHONDONTWRITEBYTECODE": "1"},
                )
                found = json.loads(child.stdout.strip().splitlines()[-1])
                found |= {"label": label, "mode": mode, "load_before": load, "load_after": load_average()}
                results.append(found)
                print(
                    f"\n{label}, {mode}, {rows:,} rows: idle {found['idle_mb']:.0f} MB, peak {found['peak_mb']:.0f} MB, "
                    f"+{found['over_idle_mb']:.0f} MB over idle (load {load} -> {found['load_after']})"
                )
                for s in found["steps"]:
                    print(
                        f"  {s['step']:<36} {s['s']:8.3f} s (CPU {s['cpu']:7.3f} s) {s['bytes']:>12,} B  "
                        f"peak {s['hwm_mb']:7.0f} MB"
                    )
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(results, indent=1))


if __name__ == "__main__":
    main()
