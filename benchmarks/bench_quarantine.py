"""Quarantine against permanent deletion, same run, same tree shapes: `python benchmarks/run.py --only quarantine`.

Two flows, each timed end to end over stdio (`python -m efile_mcp`, settings from the environment, the
sandbox in its own process with a 20 ms round trip), dry run + execution by the token alone:

- 10,000 files in 100 folders, chosen by `select` (type file): mode quarantine vs mode delete;
- one folder of 100,000 files, named by its path: mode quarantine vs mode delete.

The ratio is quarantine / delete (lower is better). A quarantine moves each confirmed path into the
root's .efile-quarantine (one file/move per 100 paths and target folder, plus one mkdir per folder),
where delete sends async-remove batches: the figures say what restorability costs. A queued deletion's
background work (the server's, after the call answered) is not counted, and is let finish before the
next flow. --quick: 2,000 files and a folder of 10,000.
"""

from __future__ import annotations

import os
import tempfile
import time
from pathlib import Path
from typing import Any

from bench_tree_tools import call, spread
from common import Row, Sandbox, delayed_sandbox, efile_stdio, make_tree

QUARANTINE_DIR = ".efile-quarantine"


def _files_in(path: Path) -> int:
    return sum(len(files) for _, _, files in os.walk(path))


def make_big_folder(sandbox: Sandbox, name: str, files: int) -> str:
    folder = sandbox.root / name / "big"
    folder.mkdir(parents=True)
    for i in range(files):
        (folder / f"f{i:06d}.dat").write_bytes(b"x" * 16)
    return f"{sandbox.home}/{name}/big"


def flow(sandbox: Sandbox, audit: Path, arguments: dict[str, Any], mode: str, expected: int) -> dict[str, Any]:
    """Dry run (with `mode`), then execution by the token alone; seconds and requests of each step."""
    with efile_stdio(sandbox, audit, "--max-paths", str(max(expected, 10))) as session:
        sandbox.reset_counts()
        started = time.perf_counter()
        plan, _, _ = call(session, "remove_paths", {**arguments, "mode": mode, "detail": "summary"})
        dry_run = time.perf_counter() - started
        assert plan.get("confirmation_token"), plan
        dry_requests = sandbox.request_counts()
        sandbox.reset_counts()
        started = time.perf_counter()
        done, chars, _ = call(
            session,
            "remove_paths",
            {"dry_run": False, "confirmation_token": plan["confirmation_token"], "detail": "summary"},
        )
        execution = time.perf_counter() - started
        summary = done["summary"]
        finished = summary["quarantined"] if mode == "quarantine" else summary["removed"] + summary["queued"]
        assert finished == plan["summary"]["would_remove"], summary
        return {
            "dry_run": dry_run,
            "execution": execution,
            "total": dry_run + execution,
            "dry_requests": dry_requests,
            "requests": sandbox.request_counts(),
            "chars": chars,
        }


def _requests(counts: dict[str, int]) -> str:
    return ", ".join(f"{k} {v}" for k, v in sorted(counts.items()))


def run(quick: bool, context: dict[str, Any]) -> list[Row]:
    select_files = 2_000 if quick else 10_000
    folder_files = 10_000 if quick else 100_000
    parents = 20 if quick else 100
    rows: list[Row] = []
    results: dict[str, dict[str, Any]] = {}
    with delayed_sandbox() as sandbox, tempfile.TemporaryDirectory(prefix="efile-bench-q-") as tmp:
        for mode in ("delete", "quarantine"):
            tree = f"select-{mode}"
            make_tree(sandbox, tree, parents, select_files // parents)
            arguments = {"select": {"path": f"{sandbox.home}/{tree}", "type": "file"}}
            results[f"select-{mode}"] = flow(sandbox, Path(tmp) / f"{tree}.jsonl", arguments, mode, select_files)
            assert _files_in(sandbox.root / tree) == 0
        held = _files_in(sandbox.root / QUARANTINE_DIR)
        assert held >= select_files, f"only {held} files in quarantine"
        for mode in ("delete", "quarantine"):
            tree = f"folder-{mode}"
            started = time.perf_counter()
            folder = make_big_folder(sandbox, tree, folder_files)
            made = time.perf_counter() - started
            results[f"folder-{mode}"] = flow(sandbox, Path(tmp) / f"{tree}.jsonl", {"paths": [folder]}, mode, 1)
            results[f"folder-{mode}"]["made"] = made
            # A delete of this size is queued: the sandbox deletes in the background. Let it finish before the
            # next flow, or its disk and CPU work would be charged to the quarantine measured next.
            deadline = time.monotonic() + 300
            while (sandbox.root / tree / "big").exists() and time.monotonic() < deadline:
                time.sleep(0.1)
        quarantined = sandbox.root / QUARANTINE_DIR
        assert _files_in(quarantined) >= select_files + folder_files
    context["quarantine"] = results

    for shape, label, note in (
        ("select", f"{select_files:,} files by select", f"{select_files:,} files in {parents} dirs"),
        ("folder", f"one folder of {folder_files:,} files", f"{folder_files:,} files in one folder"),
    ):
        delete, quarantine = results[f"{shape}-delete"], results[f"{shape}-quarantine"]
        section = f"quarantine {label}"
        rows += [
            Row(
                section,
                "delete mode: dry run + execution by token",
                delete["total"],
                "s",
                note=f"{note}, 20 ms RTT; execution {_requests(delete['requests'])}",
            ),
            Row(
                section,
                "quarantine mode: dry run + execution by token",
                quarantine["total"],
                "s",
                delete["total"],
                note=f"execution {_requests(quarantine['requests'])}; {spread([quarantine['total']])}",
            ),
            Row(
                section,
                "quarantine mode: execution alone",
                quarantine["execution"],
                "s",
                delete["execution"],
                note=f"delete's execution {delete['execution']:.3g} s; dry runs {quarantine['dry_run']:.3g} s "
                f"and {delete['dry_run']:.3g} s",
            ),
        ]
    return rows


if __name__ == "__main__":
    import sys

    figures: dict[str, Any] = {}
    for row in run("--quick" in sys.argv, figures):
        ratio = f"  ratio {row.ratio:.2f}x" if row.ratio is not None else ""
        print(f"{row.section} | {row.measure}: {row.value:.3g} {row.unit}{ratio}  ({row.note})")
