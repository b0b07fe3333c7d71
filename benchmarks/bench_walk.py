"""The walker at real storage sizes: deep, wide, flat and ImageNet-like trees, against an in-process fake.

`python benchmarks/bench_walk.py [--scale quick|full] [--only CASE ...]` (also `run.py --only walk`).

The sandbox cannot serve millions of entries on a 2-core machine in minutes, so these cases read an
in-process fake `file/list` (`FakeListing`): a virtual tree generated on demand (nothing on disk), every
request answered after RTT (20 ms) like the sandbox, and its page validated into the same wire models as
a real answer (`FileListResult.model_validate`), so parsing costs what it costs for real. The baselines
read the same fake in the same run:

- a sequential walker: one folder at a time, one request per page of the largest size the server accepts,
  summing sizes (what `du` over the API would do with no concurrency);
- a sequential lister: the same, for one flat folder.

Each measurement runs in a child process of its own, so its peak RSS (VmHWM) is its own.

| case | what | baseline | target |
|---|---|---|---|
| usage | disk_usage's walk (UsageWalk) of a binary tree, 8,191 folders, files in the 4,096 leaves | sequential walker | <= 0.2x, RSS < 150 MB |
| flat | disk_usage's walk of one flat folder | sequential lister, largest page | <= 1.2x |
| imagenet | disk_usage's walk of 1,000 folders of 1,281 files | sequential walker | <= 0.2x |
| resumed | disk_usage across resumed calls (state through JSON, as the store keeps it), 3,000 folders | sequential walker | all calls <= 0.25x, RSS < 150 MB |
| missing | 30 deep (~2 KB) paths below a missing folder, looked up by the dry run's Inspector | | <= 100 listings |
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import anyio

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))

from common import RTT, Row  # noqa: E402

from efile_mcp.errors import NotFoundError  # noqa: E402
from efile_mcp.models.wire import FileListResult  # noqa: E402

ROOT = "/public/home/bench/data"
MAX_LIMIT = 100_000  # the largest page the fake (like the sandbox, and SCNet as third parties saw it) accepts
TIMES = [f"2025-{1 + i % 12:02d}-{1 + i % 28:02d} {i % 24:02d}:{i % 60:02d}:{(7 * i) % 60:02d}" for i in range(997)]


# ---------------------------------------------------------------------------------------------- shapes


@dataclass(frozen=True)
class Shape:
    """A virtual tree: `contents(path)` -> (sub-folder names, number of files), or None when it does not exist."""

    name: str
    contents: Callable[[str], tuple[list[str], int] | None]
    files: int
    folders: int


def binary(depth: int, files_per_leaf: int) -> Shape:
    """A complete binary tree of `depth` levels below the root: 2**(depth+1)-1 folders, files in the leaves."""

    def contents(path: str) -> tuple[list[str], int] | None:
        if path != ROOT and not path.startswith(ROOT + "/"):
            return None
        level = 0 if path == ROOT else path[len(ROOT) + 1 :].count("/") + 1
        return ([], files_per_leaf) if level == depth else (["a", "b"], 0)

    leaves = 2**depth
    return Shape(f"binary-{depth}", contents, leaves * files_per_leaf, 2 * leaves - 1)


def imagenet(classes: int, per_class: int) -> Shape:
    def contents(path: str) -> tuple[list[str], int] | None:
        if path == ROOT:
            return [f"n{c:08d}" for c in range(classes)], 0
        if path.startswith(ROOT + "/n") and path.count("/") == ROOT.count("/") + 1:
            return [], per_class
        return None

    return Shape(f"imagenet-{classes}x{per_class}", contents, classes * per_class, classes + 1)


def flat(files: int) -> Shape:
    return Shape(f"flat-{files}", lambda path: ([], files) if path == ROOT else None, files, 1)


# ---------------------------------------------------------------------------------------------- the fake API


class FakeListing:
    """`EfileApi.list_dir` over a `Shape`, after RTT seconds a request; counts requests and their concurrency."""

    def __init__(self, shape: Shape, delay: float = RTT) -> None:
        self.shape = shape
        self.delay = delay
        self.requests = 0
        self.in_flight = 0
        self.most_in_flight = 0

    async def list_dir(
        self,
        path: str | None = None,
        *,
        keyword: str | None = None,
        start: int = 0,
        limit: int = 100,
        order_by: str | None = None,
        order: str | None = None,
        on_retry: Any = None,
    ) -> FileListResult:
        self.requests += 1
        self.in_flight += 1
        self.most_in_flight = max(self.most_in_flight, self.in_flight)
        try:
            await anyio.sleep(self.delay)
        finally:
            self.in_flight -= 1
        if limit > MAX_LIMIT:
            from efile_mcp.errors import ApiError

            raise ApiError("10004", f"limit at most {MAX_LIMIT}")
        where = path or ROOT
        found = self.shape.contents(where)
        if found is None:
            raise NotFoundError("911020", f"{where} does not exist")
        dirs, files = found
        if keyword:  # a look-up by name: small, built whole
            names = [(d, True) for d in dirs if keyword in d]
            names += [(f"f{i:07d}.jpg", False) for i in range(files) if keyword in f"f{i:07d}.jpg"]
            total, page = len(names), names[start : start + limit]
        else:  # only the page asked for is built: the fake's cost must not grow with the folder
            total = len(dirs) + files
            end = min(total, start + limit)
            page = [(dirs[i], True) for i in range(start, min(end, len(dirs)))]
            page += [(f"f{i - len(dirs):07d}.jpg", False) for i in range(max(start, len(dirs)), end)]
        base = where.rstrip("/")
        data = {
            "total": total,
            "path": where,
            "fileList": [
                {
                    "name": name,
                    "path": f"{base}/{name}",
                    "type": "dir" if is_dir else "file",
                    "size": 4096 if is_dir else 1000 + (hash(name) & 0xFFFF),
                    "isDirectory": is_dir,
                    "isRegularFile": not is_dir,
                    "isSymbolicLink": False,
                    "owner": "bench",
                    "group": "bench",
                    "permission": "rwxr-xr-x" if is_dir else "rw-r--r--",
                    "lastModifiedTime": TIMES[hash(name) % len(TIMES)],
                }
                for name, is_dir in page
            ],
        }
        return FileListResult.model_validate(data)


# ---------------------------------------------------------------------------------------------- the child runs


def peak_rss_mb() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return 0.0


async def ours(shape: Shape, *, max_entries: int, max_seconds: float, calls_max: int = 1) -> dict[str, Any]:
    """disk_usage's walk as the guard runs it (the default concurrency), resumed through JSON up to `calls_max`."""
    from efile_mcp.client.walk import Listings, WalkLimits
    from efile_mcp.config import Settings
    from efile_mcp.guard.insight import UsageWalk

    fake = FakeListing(shape)
    concurrency = Settings.model_fields["concurrency"].default
    usage = UsageWalk(ROOT)
    started = time.perf_counter()
    calls = 0
    while True:
        listings = Listings(fake, concurrency=concurrency, keep=False)  # type: ignore[arg-type]
        stats = await usage.read_on(listings, WalkLimits.starting_now(max_entries, max_seconds))
        calls += 1
        if usage.walk.finished or calls >= calls_max:
            break
        usage = UsageWalk.from_json(json.loads(json.dumps(usage.to_json())))  # what the state store keeps
    return {
        "seconds": time.perf_counter() - started,
        "files": usage.total.files,
        "complete": stats.complete,
        "calls": calls,
        "requests": fake.requests,
        "most_in_flight": fake.most_in_flight,
        "rss_mb": peak_rss_mb(),
    }


async def sequential(shape: Shape) -> dict[str, Any]:
    """The baseline: one folder at a time, largest pages, sizes summed."""
    fake = FakeListing(shape)
    started = time.perf_counter()
    stack, files, size = [ROOT], 0, 0
    while stack:
        folder = stack.pop()
        start = 0
        while True:
            page = await fake.list_dir(folder, start=start, limit=MAX_LIMIT)
            for entry in page.file_list:
                if entry.is_directory:
                    stack.append(f"{folder}/{entry.name}")
                else:
                    files += 1
                    size += entry.size or 0
            start += len(page.file_list)
            if not page.file_list or start >= page.total:
                break
    return {
        "seconds": time.perf_counter() - started,
        "files": files,
        "requests": fake.requests,
        "rss_mb": peak_rss_mb(),
    }


async def missing_paths() -> dict[str, Any]:
    from efile_mcp.client.walk import Listings, WalkLimits
    from efile_mcp.guard.inspect import Inspector
    from efile_mcp.guard.paths import PathPolicy

    shape = imagenet(10, 10)
    fake = FakeListing(shape)
    deep = "/".join(f"level{i:03d}-x" for i in range(180))
    paths = [f"{ROOT}/gone-{n:02d}/{deep}" for n in range(30)]
    started = time.perf_counter()
    found = await Inspector(  # type: ignore[arg-type]
        Listings(fake), PathPolicy([ROOT]), WalkLimits.starting_now(200_000, 60)
    ).check(paths, walk_folders=True)
    return {
        "seconds": time.perf_counter() - started,
        "missing": len(found.missing),
        "requests": fake.requests,
        "path_bytes": len(paths[0].encode()),
        "rss_mb": peak_rss_mb(),
    }


SCALES: dict[str, dict[str, Shape]] = {
    # quick: minutes on 2 shared cores; full: the sizes (tens of minutes, mostly the sequential baselines).
    "quick": {
        "usage": binary(10, 61),  # 2,047 folders, 62,464 files
        "flat": flat(200_000),
        "imagenet": imagenet(250, 1281),  # 320,250 files
        "resumed": imagenet(300, 1000),  # 300,000 files
    },
    "full": {
        "usage": binary(12, 244),  # 8,191 folders, 999,424 files
        "flat": flat(200_000),
        "imagenet": imagenet(1000, 1281),  # 1,281,000 files
        "resumed": imagenet(3000, 1000),  # 3,000,000 files
    },
}


def child(case: str, who: str, scale: str) -> dict[str, Any]:
    if case == "missing":
        return anyio.run(missing_paths)
    shape = SCALES[scale][case]
    if who == "baseline":
        return anyio.run(sequential, shape)
    if case == "resumed":
        # Calls of a tenth of the tree each (the default budgets would take it in fewer, longer calls).
        return anyio.run(lambda: ours(shape, max_entries=shape.files // 10 + 1, max_seconds=600, calls_max=50))
    return anyio.run(lambda: ours(shape, max_entries=5_000_000, max_seconds=3600))


def in_child(case: str, who: str, scale: str) -> dict[str, Any]:
    done = subprocess.run(
        [sys.executable, __file__, "--child", case, who, "--scale", scale],
        capture_output=True,
        text=True,
        check=True,
        cwd=HERE.parent,
    )
    return json.loads(done.stdout.strip().splitlines()[-1])


# ---------------------------------------------------------------------------------------------- rows


def run(quick: bool = True, only: list[str] | None = None) -> list[Row]:
    scale = "quick" if quick else "full"
    rows: list[Row] = []
    cases = only or ["usage", "flat", "imagenet", "resumed", "missing"]
    for case in cases:
        if case == "missing":
            got = in_child("missing", "ours", scale)
            rows.append(
                Row(
                    "walk",
                    f"30 deep missing paths ({got['path_bytes']} B each): listings",
                    got["requests"],
                    "requests",
                    target=100,
                    note=f"{got['missing']} reported missing in {got['seconds']:.2f} s",
                )
            )
            continue
        shape = SCALES[scale][case]
        mine = in_child(case, "ours", scale)
        base = in_child(case, "baseline", scale)
        assert mine["files"] == base["files"] == shape.files, (mine, base, shape)
        target = {"usage": 0.2, "flat": 1.2, "imagenet": 0.2, "resumed": 0.25}[case]
        what = f"{shape.name}: {shape.files:,} files, {shape.folders:,} folders"
        rows.append(
            Row(
                "walk",
                f"{case} ({what})" + (f", {mine['calls']} resumed calls" if case == "resumed" else ""),
                mine["seconds"],
                "s",
                baseline=base["seconds"],
                target=target,
                note=(
                    f"{mine['requests']} requests (baseline {base['requests']}), up to {mine['most_in_flight']} at once; "
                    f"RTT {RTT * 1000:.0f} ms"
                ),
            )
        )
        rows.append(
            Row(
                "walk",
                f"{case}: peak RSS",
                mine["rss_mb"],
                "MB",
                target=150 if case in ("usage", "resumed", "imagenet") else None,
                note=f"baseline {base['rss_mb']:.0f} MB",
            )
        )
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--scale", choices=sorted(SCALES), default="quick")
    parser.add_argument("--only", action="append", choices=["usage", "flat", "imagenet", "resumed", "missing"])
    parser.add_argument("--child", nargs=2, metavar=("CASE", "WHO"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        print(json.dumps(child(args.child[0], args.child[1], args.scale)))
        return
    for row in run(args.scale == "quick", args.only):
        ratio = f"{row.ratio:.2f}x" if row.ratio is not None else ""
        print(
            f"{row.measure:<80} {row.value:>10.2f} {row.unit:<8} {ratio:>7} {row.verdict:<5} {row.note}",
            flush=True,
        )


if __name__ == "__main__":
    main()
