""" "Delete my old ImageNet copy": one folder of 1,281,000 files in 1,000 sub-folders, named by path in remove_paths.

`python benchmarks/bench_folder_removal.py [--scale quick|full] [--only CASE ...] [--rounds N] [--code DIR]`
(also `run.py --only folder-removal`, at the quick size).

The real Guard and Removal (built as the server builds them, with the settings' defaults) run over the
real `EfileTransport`, whose httpx transport is `fake_efile.FakeEfile`: an in-process fake efile API
over a virtual ImageNet-like tree (bench_walk's shape; nothing on disk), every request answered after
20 ms, every page decoded by the client from JSON text. The case, as an agent runs it:

1. the dry run of `remove_paths([folder])` (mode delete, and again mode quarantine): the folder is
   looked up in its parent's listing and walked (totals, a fingerprint over every entry); a walk larger
   than one call's budget answers `resume`, and the dry run is called again with it until the plan
   carries its confirmation token;
2. the execution by token: the re-check (the folder walked again, its fingerprint compared), then one
   `async-remove` (delete) or `mkdir` + `move` + manifest upload (quarantine).

The baseline is one sequential walk of the same tree in the same run (bench_walk's: one folder at a
time, 100,000-entry pages, sizes summed from the decoded JSON). Each side runs in a child process of its
own; the peak RSS (VmHWM) is reset between the dry run and the execution (/proc/self/clear_refs), so each
has its own, and the child's RSS once everything is imported and the guard built is the idle figure.

| figure | target |
|---|---|
| dry run, all its calls | <= 0.3x one sequential walk |
| execution, re-check included | <= 0.35x one sequential walk |
| peak RSS of the dry run, of the execution | < 300 MB |
"""

from __future__ import annotations

import argparse
import importlib
import json
import os
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import anyio

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))
sys.path.insert(0, str(HERE))
#: Another copy of the package to measure (`--code DIR`, e.g. `git archive <commit> efile_mcp | tar -x -C DIR`):
#: a before/after in the same harness, or a stable copy while the working tree is being edited.
if os.environ.get("BENCH_CODE"):
    sys.path.insert(0, os.environ["BENCH_CODE"])
    # Imported now: its modules are found through the package from then on, whatever bench_walk puts on sys.path.
    importlib.import_module("efile_mcp")

from bench_walk import ROOT, Shape, imagenet, peak_rss_mb, sequential  # noqa: E402
from common import RTT, Row  # noqa: E402
from fake_efile import HOME, FakeEfile  # noqa: E402

SCALES: dict[str, Shape] = {
    "quick": imagenet(100, 1280),  # 128,000 files, 101 folders: ~30 s in all
    "full": imagenet(1000, 1281),  # 1,281,000 files, 1,001 folders: the case, ~3 minutes
}
#: quarantine-links: the same tree with every file a symbolic link (a dataset "copied" as a farm of links),
#: quarantined (a move carries links as links): what the dry run keeps of links grows with them, or not.
CASES = ("delete", "quarantine", "quarantine-links")
DRY_RUN_TARGET, EXECUTION_TARGET, RSS_TARGET_MB = 0.3, 0.35, 300


def rss_mb() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


def reset_peak() -> bool:
    """Start VmHWM again from the current RSS (Linux >= 4.0); False where it cannot."""
    try:
        Path("/proc/self/clear_refs").write_text("5")
    except OSError:
        return False
    return True


@dataclass
class Nobody:
    """The client of the execution: no form, no URL (confirm=auto then runs on the token, as over stdio)."""

    session: str | None = "bench"
    has_form: bool = False
    has_url: bool = False
    answered: bool = False

    async def ask(self, question: str, timeout: float) -> Any:
        return "no_answer"

    async def open_url(self, message: str, url: str, timeout: float) -> bool:
        return False


def build_guard(fake: FakeEfile, state_dir: Path, mode: str) -> tuple[Any, Any]:
    """The Guard as server.py builds it, with the settings' defaults, over the fake (returns guard, transport)."""
    from efile_mcp.client import EfileTransport, RetryPolicy, StaticToken
    from efile_mcp.guard.audit import AuditLog
    from efile_mcp.guard.guard import Guard
    from efile_mcp.guard.paths import DEFAULT_PROTECTED
    from efile_mcp.guard.sealing import ConfirmationSigner
    from efile_mcp.guard.store import open_store
    from efile_mcp.settings import Settings

    default = {name: field.default for name, field in Settings.model_fields.items()}
    transport = EfileTransport(
        "https://efile.bench.example",
        StaticToken("bench-token-value"),
        timeout=default["request_timeout"],
        retry=RetryPolicy(attempts=default["retry_attempts"], budget=default["retry_budget"]),
        concurrency=default["concurrency"],
        http_transport=fake.transport(),
    )
    guard = Guard(
        transport=transport,
        signer=ConfirmationSigner(secret=b"b" * 32, ttl=default["confirm_ttl"]),
        store=open_store(None, state_dir),
        audit=AuditLog(state_dir / "audit.jsonl"),
        roots=(HOME,),
        protected=DEFAULT_PROTECTED,
        max_paths=default["max_paths"],
        max_plan_paths=default["max_plan_paths"],
        read_only=False,
        confirm_mode=default["confirm"],
        walk_max_entries=default["walk_max_entries"],
        walk_max_seconds=default["walk_max_seconds"],
        concurrency=default["concurrency"],
        confirm_timeout=default["confirm_timeout"],
        remove_mode=mode,  # type: ignore[arg-type]
        execution_lease=default["execution_lease"],
        links_inside=default["links_inside"],
        quarantine_days=default["quarantine_days"],
    )
    return guard, transport


async def remove_folder(shape: Shape, mode: str) -> dict[str, Any]:
    """The dry run (resumed until whole), then the execution by token; each timed, each with its peak RSS."""
    from efile_mcp.guard.requests import RemovalRequest

    links = mode.endswith("-links")
    mode = mode.removesuffix("-links")
    fake = FakeEfile(shape, links=links)
    fake.warm()
    with tempfile.TemporaryDirectory(prefix="bench-folder-removal-") as state:
        guard, transport = build_guard(fake, Path(state), mode)
        try:
            idle = rss_mb()
            peak_resets = reset_peak()
            started, cpu = time.perf_counter(), time.process_time()
            plan = await guard.removal.preview([ROOT], None, mode=mode)  # type: ignore[arg-type]
            calls = 1
            while plan.resume:
                plan = await guard.removal.preview(None, None, resume=plan.resume)
                calls += 1
            dry = {
                "seconds": time.perf_counter() - started,
                "cpu_seconds": time.process_time() - cpu,
                "calls": calls,
                "requests": sum(fake.requests.values()),
                "most_in_flight": fake.most_in_flight,
                "rss_mb": peak_rss_mb(),
                "file_count": plan.summary.file_count,
                "token": bool(plan.confirmation_token),
            }
            assert plan.confirmation_token, plan.model_dump()
            assert plan.summary.file_count == (0 if links else shape.files), plan.model_dump()
            fake.requests.clear()
            fake.most_in_flight = 0
            reset_peak()
            started, cpu = time.perf_counter(), time.process_time()
            done = await guard.removal.execute(RemovalRequest(token=plan.confirmation_token), Nobody())
            execution = {
                "seconds": time.perf_counter() - started,
                "cpu_seconds": time.process_time() - cpu,
                "requests": dict(fake.requests),
                "most_in_flight": fake.most_in_flight,
                "rss_mb": peak_rss_mb(),
                "summary": done.summary.model_dump(exclude_none=True),
            }
            gone = fake.mount is None if mode == "delete" else fake.mount not in (None, ROOT)
            assert gone, (fake.mount, done.model_dump())
            return {
                "code": str(Path(sys.modules["efile_mcp"].__file__ or "").parent.parent),
                "idle_rss_mb": idle,
                "peak_resets": peak_resets,
                "dry_run": dry,
                "execution": execution,
            }
        finally:
            await transport.aclose()
            await guard.store.aclose()


def child(who: str, scale: str) -> dict[str, Any]:
    shape = SCALES[scale]
    if who == "baseline":
        return anyio.run(sequential, shape)
    return anyio.run(remove_folder, shape, who)


def in_child(who: str, scale: str, code: str | None = None) -> dict[str, Any]:
    env = {**os.environ, "BENCH_CODE": code} if code else None
    done = subprocess.run(
        [sys.executable, __file__, "--child", who, "--scale", scale],
        capture_output=True,
        text=True,
        cwd=HERE.parent,
        env=env,
    )
    if done.returncode:
        raise RuntimeError(f"the {who} child failed:\n{done.stderr[-4000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def run(quick: bool = True, only: list[str] | None = None, code: str | None = None, rounds: int = 0) -> list[Row]:
    """Rounds alternate the baseline and each case (ours is CPU-bound, the baseline mostly waits: on a shared
    machine other work slows ours alone), and the medians are compared; 3 rounds at the quick size, 1 full."""
    scale = "quick" if quick else "full"
    shape = SCALES[scale]
    rounds = rounds or (3 if quick else 1)
    modes = only or list(CASES)
    bases: list[dict[str, Any]] = []
    runs: dict[str, list[dict[str, Any]]] = {mode: [] for mode in modes}
    load_before = os.getloadavg()[0]
    for _ in range(rounds):
        bases.append(in_child("baseline", scale))
        assert bases[-1]["files"] == shape.files, bases[-1]
        for mode in modes:
            runs[mode].append(in_child(mode, scale, code))
    load = f"load {load_before:.1f} -> {os.getloadavg()[0]:.1f}"

    def median(values: list[float]) -> float:
        return sorted(values)[len(values) // 2]

    def spread(values: list[float]) -> str:
        return f"; median of {len(values)}, {min(values):.2f}-{max(values):.2f} s" if len(values) > 1 else ""

    base = median([b["seconds"] for b in bases])
    base_cpu = median([b["cpu_seconds"] for b in bases])
    what = f"{shape.files:,} files in {shape.folders - 1:,} sub-folders"
    rows: list[Row] = []
    for mode in modes:
        dries = [got["dry_run"] for got in runs[mode]]
        executions = [got["execution"] for got in runs[mode]]
        dry, execution = dries[0], executions[0]
        requests = ", ".join(f"{n} {endpoint}" for endpoint, n in sorted(execution["requests"].items()))
        dry_seconds = [d["seconds"] for d in dries]
        exec_seconds = [e["seconds"] for e in executions]
        rows += [
            Row(
                "folder-removal",
                f"{mode}: dry run of one folder ({what}), {dry['calls']} call(s)",
                median(dry_seconds),
                "s",
                baseline=base,
                target=DRY_RUN_TARGET,
                note=(
                    f"{dry['requests']} requests, up to {dry['most_in_flight']} at once; CPU "
                    f"{median([d['cpu_seconds'] for d in dries]):.1f} s{spread(dry_seconds)}; baseline: one "
                    f"sequential walk, {bases[0]['requests']} requests, CPU {base_cpu:.1f} s"
                    f"{spread([b['seconds'] for b in bases])}; RTT {RTT * 1000:.0f} ms; {load}"
                ),
            ),
            Row(
                "folder-removal",
                f"{mode}: execution by token, re-check included",
                median(exec_seconds),
                "s",
                baseline=base,
                target=EXECUTION_TARGET,
                note=(f"{requests}; CPU {median([e['cpu_seconds'] for e in executions]):.1f} s{spread(exec_seconds)}"),
            ),
            Row(
                "folder-removal",
                f"{mode}: peak RSS of the dry run",
                max(d["rss_mb"] for d in dries),
                "MB",
                target=RSS_TARGET_MB,
                note=(
                    f"idle (imported, guard built) {runs[mode][0]['idle_rss_mb']:.0f} MB; baseline walk "
                    f"{bases[0]['rss_mb']:.0f} MB"
                ),
            ),
            Row(
                "folder-removal",
                f"{mode}: peak RSS of the execution",
                max(e["rss_mb"] for e in executions),
                "MB",
                target=RSS_TARGET_MB,
                note="peak since the dry run ended" if runs[mode][0]["peak_resets"] else "peak of the whole child",
            ),
        ]
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--scale", choices=sorted(SCALES), default="quick")
    parser.add_argument("--only", action="append", choices=list(CASES))
    parser.add_argument("--code", metavar="DIR", help="measure the efile_mcp package in DIR instead of this tree's")
    parser.add_argument("--rounds", type=int, default=0, help="rounds (medians compared); 3 quick, 1 full")
    parser.add_argument("--child", metavar="WHO", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        print(json.dumps(child(args.child, args.scale)))
        return
    for row in run(args.scale == "quick", args.only, args.code, args.rounds):
        ratio = f"{row.ratio:.2f}x" if row.ratio is not None else ""
        print(
            f"{row.measure:<80} {row.value:>10.2f} {row.unit:<4} {ratio:>7} {row.verdict:<5} {row.note}",
            flush=True,
        )


if __name__ == "__main__":
    main()
