"""A quarantine's record and manifest in parts: `python benchmarks/bench_quarantine_parts.py [--quick] [--before DIR]`.

The quarantine half of an execution of a plan of N paths (default 100,000; --quick 20,000), as execution
sends it: one `Quarantine.send` per batch of rows (20,000, execution.BATCH_ROWS; --quick 4,000, so that both
scales send five batches), against the sandbox in its own process (20 ms a request), each measurement in a
child process of its own (its peak RSS is its own). Reported per code: wall time of the sends, peak RSS,
bytes written to the state store (SQLite) and bytes of manifests uploaded (and how many uploads the sandbox
refused), then storage_status's time over the result, and restore_paths of the whole plan (time, and the
peak RSS from just before it).

`--paths N` and `--batch B` set other sizes (more batches show the old code's quadratic cost).

`--before DIR` also measures the package in DIR (`git archive <commit> efile_mcp | tar -x -C DIR`), e.g. the
code before the record and manifest went in parts, in the same run: ratios are this tree / that one. It
rewrote the whole record twice per batch and every root's whole manifest once per batch (quadratic in the
plan), with `cover=uncover`, which the sandbox (like the API's documented default) refuses for an existing
file: every manifest after the first batch's was refused, so its manifest held the first batch only.
"""

from __future__ import annotations

import argparse
import inspect
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
if os.environ.get("BENCH_QUARANTINE_CODE"):  # the package to measure in a child (--before DIR)
    sys.path.insert(0, os.environ["BENCH_QUARANTINE_CODE"])
sys.path.insert(1 if os.environ.get("BENCH_QUARANTINE_CODE") else 0, str(HERE.parent))

from common import Row, delayed_sandbox  # noqa: E402

PER_FOLDER = 1_000


def make_files(root: Path, count: int) -> None:
    """`count` files of 64 bytes in folders of PER_FOLDER under home/scratch/plan."""
    for d in range(-(-count // PER_FOLDER)):
        folder = root / "scratch" / "plan" / f"d{d:04d}"
        folder.mkdir(parents=True)
        for f in range(min(PER_FOLDER, count - d * PER_FOLDER)):
            (folder / f"f{f:04d}.dat").write_bytes(b"x" * 64)


def peak_rss_mb() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return 0.0


def reset_peak_rss() -> None:
    """Start VmHWM afresh (Linux: 5 > clear_refs), so the restore's peak is its own."""
    try:
        Path("/proc/self/clear_refs").write_text("5")
    except OSError:
        pass


async def child(base_url: str, token: str, home: str, root: str, count: int, batch: int) -> dict[str, Any]:
    from efile_mcp.client import EfileApi, EfileMover, EfileTransport, RetryPolicy, StaticToken
    from efile_mcp.client.remover import EfileRemover
    from efile_mcp.client.walk import Listings
    from efile_mcp.guard.audit import AuditLog
    from efile_mcp.guard.paths import PathPolicy
    from efile_mcp.guard.quarantine import Quarantine
    from efile_mcp.guard.seen import SeenPath
    from efile_mcp.guard.store import open_store

    state = Path(tempfile.mkdtemp(prefix="bench-quarantine-state-"))
    transport = EfileTransport(base_url, StaticToken(token), retry=RetryPolicy(attempts=3), concurrency=8)
    store = open_store(None, state)
    mover = EfileMover(transport)
    quarantine = Quarantine(
        mover,
        lambda: Listings(EfileApi(transport), concurrency=8),  # as the server (Guard._listings) makes them
        PathPolicy([f"{home}/scratch"]),
        AuditLog(state / "audit.jsonl"),
        store=store,
        remover=EfileRemover(transport),
        days=7,
    )
    written = {"bytes": 0, "writes": 0, "manifest_bytes": 0, "uploads": 0, "refused": 0}
    save_plan, upload = store.save_plan, mover.upload

    async def saving(plan_id: str, data: bytes, expires_at: float) -> None:
        written["bytes"] += len(data)
        written["writes"] += 1
        await save_plan(plan_id, data, expires_at)

    async def uploading(folder: str, name: str, content: bytes, **options: Any) -> None:
        written["manifest_bytes"] += len(content)
        written["uploads"] += 1
        try:
            await upload(folder, name, content, **options)
        except Exception:
            written["refused"] += 1
            raise

    store.save_plan = saving  # type: ignore[method-assign]
    mover.upload = uploading  # type: ignore[method-assign]
    seen = []
    local = Path(root) / "scratch" / "plan"
    for folder in sorted(local.iterdir()):
        for path in sorted(folder.iterdir()):
            info = path.stat()
            virtual = f"{home}/scratch/plan/{folder.name}/{path.name}"
            seen.append(SeenPath(virtual, "file", info.st_size, info.st_mtime, info.st_size, 1))
    numbered = "batch" in inspect.signature(quarantine.send).parameters
    quarantined = 0
    started = time.perf_counter()
    for number, first in enumerate(range(0, len(seen), batch)):
        extra: dict[str, Any] = {"batch": number} if numbered else {}
        items = await quarantine.send("benchplan", seen[first : first + batch], **extra)
        quarantined += sum(1 for item in items.values() if item.status == "quarantined")
    seconds = time.perf_counter() - started
    by_sends = dict(written)  # what the sends wrote (the restore's writes are not counted)
    del seen
    started = time.perf_counter()
    status = await quarantine.status()
    status_seconds = time.perf_counter() - started
    send_rss = peak_rss_mb()
    reset_peak_rss()
    started = time.perf_counter()
    restore = await quarantine.restore("benchplan")
    restore_seconds = time.perf_counter() - started
    await transport.aclose()
    await store.aclose()
    return {
        "seconds": seconds,
        "rss_mb": send_rss,
        "restore_seconds": restore_seconds,
        "restore_rss_mb": peak_rss_mb(),
        "restored": restore.summary.restored,
        "store_bytes": by_sends["bytes"],
        "store_writes": by_sends["writes"],
        "manifest_bytes": by_sends["manifest_bytes"],
        "uploads": by_sends["uploads"],
        "refused": by_sends["refused"],
        "quarantined": quarantined,
        "status_seconds": status_seconds,
        "status_count": status.total_count,
    }


def measure(count: int, batch: int, code: str | None) -> dict[str, Any]:
    """One quarantine of `count` fresh files, in a child process; `code`: the package in that folder."""
    with delayed_sandbox() as sandbox:
        make_files(sandbox.root, count)
        env = dict(os.environ)
        env.pop("BENCH_QUARANTINE_CODE", None)
        if code:
            env["BENCH_QUARANTINE_CODE"] = code
        arguments = [sandbox.base_url, sandbox.token, sandbox.home, str(sandbox.root), str(count), str(batch)]
        done = subprocess.run(
            [sys.executable, __file__, "--child", *arguments],
            capture_output=True,
            text=True,
            cwd=HERE.parent,
            env=env,
        )
        if done.returncode != 0:
            raise RuntimeError(f"the measurement failed: {done.stderr[-2000:]}")
        got: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
        return got


def run(quick: bool = True, before: str | None = None, paths: int | None = None, batch: int | None = None) -> list[Row]:
    count = paths or (20_000 if quick else 100_000)
    batch = batch or (4_000 if quick else 20_000)
    ours = measure(count, batch, None)
    old = measure(count, batch, before) if before else None
    where = f"{count:,} paths in batches of {batch:,}"
    assert ours["quarantined"] == count and ours["status_count"] == count, ours

    def row(measure_: str, key: str, unit: str, scale: float = 1.0, note: str = "") -> Row:
        return Row(
            "quarantine parts",
            f"{where}: {measure_}",
            ours[key] / scale,
            unit,
            baseline=old[key] / scale if old else None,
            note=note,
        )

    refused = f"; the code of {before}: {old['refused']} of {old['uploads']} refused" if old else ""
    rows = [
        row("sends, wall time", "seconds", "s"),
        row("peak RSS (child)", "rss_mb", "MB"),
        row(
            "bytes written to the state store",
            "store_bytes",
            "MB",
            1e6,
            f"{ours['store_writes']} writes" + (f"; the code of {before}: {old['store_writes']}" if old else ""),
        ),
        row(
            "bytes of manifests uploaded",
            "manifest_bytes",
            "MB",
            1e6,
            f"{ours['uploads']} uploads, {ours['refused']} refused{refused}",
        ),
        row(
            "restore_paths of the whole plan, wall time",
            "restore_seconds",
            "s",
            note=f"{ours['restored']:,} restored" + (f"; the code of {before}: {old['restored']:,}" if old else ""),
        ),
        row("restore_paths of the whole plan, peak RSS (reset before it)", "restore_rss_mb", "MB"),
        row(
            "storage_status afterwards",
            "status_seconds",
            "s",
            note=f"counts {ours['status_count']:,}"
            + (f"; the code of {before}: {old['status_count']:,}" if old else ""),
        ),
    ]
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="20,000 paths in batches of 4,000")
    parser.add_argument("--before", metavar="DIR", help="also measure the package in DIR (an older commit's), same run")
    parser.add_argument("--paths", type=int, help="paths in the plan (instead of 100,000 or 20,000)")
    parser.add_argument("--batch", type=int, help="rows per send (instead of 20,000 or 4,000)")
    parser.add_argument("--child", nargs=6, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        import anyio

        base_url, token, home, root, count, batch = args.child
        print(json.dumps(anyio.run(child, base_url, token, home, root, int(count), int(batch))))
        return
    for row in run(args.quick, args.before, args.paths, args.batch):
        ratio = f"{row.ratio:.2f}x" if row.ratio is not None else ""
        base = f"{row.baseline:.2f}" if row.baseline is not None else ""
        print(
            f"{row.measure:<75} {row.value:>10.2f} {row.unit:<4} before {base:>10} {ratio:>8}  {row.note}", flush=True
        )


if __name__ == "__main__":
    main()
