"""The walker at real storage sizes: deep, wide, flat and ImageNet-like trees, against an in-process fake.

`python benchmarks/bench_walk.py [--scale quick|full] [--only CASE ...] [--before DIR]` (also `run.py --only
walk`); `--before DIR` also measures the package in DIR (an older commit's `git archive`) in the same run.

The sandbox cannot serve millions of entries on a 2-core machine in minutes, so these cases read an
in-process fake `file/list` (`FakeListing`): a virtual tree generated on demand (nothing on disk), every
request answered after RTT (20 ms) like the sandbox, as JSON text (the envelope) decoded by each side as it
really does: the walker through efile-mcp's transport, the baselines as plain httpx (`json.loads`); encoding
it stands for the server's work, which shares the same 2 cores in the sandbox runs as well. The baselines
read the same fake in the same run:

- a sequential walker: one folder at a time, one request per page of the largest size the server accepts,
  summing sizes from the decoded answer (what `du` over the API with plain httpx would do, no concurrency);
- a sequential lister: the same, for one flat folder (also one decoding with pydantic-core's parser, the
  fastest at hand: how much of the ratio is the decoder).

Each measurement runs in a child process of its own, so its peak RSS (VmHWM) is its own.

| case | what | baseline | target |
|---|---|---|---|
| usage | disk_usage's walk (UsageWalk) of a binary tree, 8,191 folders, files in the 4,096 leaves | sequential walker | <= 0.2x, RSS < 150 MB |
| deep | disk_usage's walk of a chain of folders (nothing to read in parallel) | sequential walker | <= 1.1x |
| flat | disk_usage's walk of one flat folder | sequential lister, largest page | <= 1.2x |
| imagenet | disk_usage's walk of 1,000 folders of 1,281 files | sequential walker | <= 0.3x (the dry run's) |
| resumed | disk_usage across resumed calls (state through JSON, as the store keeps it), 3,000 folders | sequential walker | all calls <= 0.25x, RSS < 150 MB |
| missing | 30 deep (~2 KB) paths below a missing folder, looked up by the dry run's Inspector | | <= 100 listings |
"""

from __future__ import annotations

import argparse
import json
import os
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
#: Another copy of the package to measure (`--before DIR`: e.g. `git archive <commit> efile_mcp | tar -x -C DIR`),
#: in the same harness as this tree's.
if os.environ.get("BENCH_WALK_CODE"):
    sys.path.insert(0, os.environ["BENCH_WALK_CODE"])

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


def deep(levels: int, files_per_level: int) -> Shape:
    """A chain: each folder holds files and one sub-folder, `levels` deep (a conda env's site-packages is
    not this deep, but a chain is the walker's worst case: nothing to read in parallel)."""

    def contents(path: str) -> tuple[list[str], int] | None:
        if path != ROOT and not path.startswith(ROOT + "/"):
            return None
        level = 0 if path == ROOT else path[len(ROOT) + 1 :].count("/") + 1
        return ([] if level == levels else ["d"], files_per_level)

    return Shape(f"deep-{levels}", contents, (levels + 1) * files_per_level, levels + 1)


def flat(files: int) -> Shape:
    return Shape(f"flat-{files}", lambda path: ([], files) if path == ROOT else None, files, 1)


# ---------------------------------------------------------------------------------------------- the fake API


def plain_json(text: bytes) -> Any:
    """What a plain httpx lister does with an answer: `response.json()["data"]` (json.loads)."""
    return json.loads(text)["data"]


def fastest_json(text: bytes) -> Any:
    """The fastest decoding of an answer at hand (pydantic-core's parser, ~0.6x json.loads' time): a stronger
    baseline than plain httpx, to say how much of a ratio is the decoder."""
    import pydantic_core

    return pydantic_core.from_json(text, cache_strings="keys")["data"]


def transport_json() -> Callable[[bytes], Any]:
    """What efile-mcp's transport does with an answer, in the code measured (an older one has no fast path)."""
    from efile_mcp.client import transport
    from efile_mcp.models.wire import Envelope

    fast = getattr(transport, "decode_envelope", None)

    def decode(text: bytes) -> Any:
        envelope = fast(text) if fast is not None else None
        if envelope is None:
            envelope = Envelope.model_validate_json(text)
        return envelope.data

    return decode


class FakeListing:
    """`EfileApi.list_dir` over a `Shape`, after RTT seconds a request; counts requests and their concurrency.

    An answer is JSON text (the envelope), decoded by `decode` as the client measured decodes it: the walker
    as efile-mcp's transport does (`transport_json`), the baselines as plain httpx does (`plain_json`).
    """

    def __init__(self, shape: Shape, delay: float = RTT, decode: Callable[[bytes], Any] = plain_json) -> None:
        self.shape = shape
        self.delay = delay
        self.decode = decode
        self.requests = 0
        self.in_flight = 0
        self.most_in_flight = 0
        self._texts: dict[tuple[Any, ...], list[bytes]] = {}
        self._cached = 0

    async def list_dir(self, path: str | None = None, **arguments: Any) -> FileListResult:
        return FileListResult.model_validate(await self.list_dir_data(path, **arguments))

    async def list_dir_data(
        self,
        path: str | None = None,
        *,
        keyword: str | None = None,
        start: int = 0,
        limit: int = 100,
        order_by: str | None = None,
        order: str | None = None,
        on_retry: Any = None,
    ) -> dict[str, Any]:
        """What the transport hands over: the JSON answer's `data`, decoded (built here as it would be)."""
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
            text = self._page_text(dirs, files, start, limit, keyword, where)
        else:
            texts = self._folder_texts(dirs, files, where)
            total = len(dirs) + files
            if texts is None:
                listed = self._entry_texts(dirs, files, start, min(total, start + limit), where)
            else:
                listed = texts[start : start + limit]
            text = b'{"total": %d, "fileList": [%s]}' % (total, b", ".join(listed))
        # The answer travels as JSON text: the client decodes every page, its real cost. Encoding the entries
        # is the server's work, done once per distinct folder here, and a page is the join of its entries'
        # texts: the same cost for the walker and the baselines, whatever pages they ask for.
        text = b'{"code": "0", "msg": "success", "data": %s, "path": %s}}' % (text[:-1], json.dumps(where).encode())
        data: dict[str, Any] = self.decode(text)
        return data

    def _folder_texts(self, dirs: list[str], files: int, where: str) -> list[bytes] | None:
        """Every entry of a folder encoded, once per distinct folder (up to 400,000 entries in all)."""
        key = (tuple(dirs), files, len(where))
        texts = self._texts.get(key)
        if texts is None and self._cached + len(dirs) + files <= 400_000:
            texts = self._texts[key] = self._entry_texts(dirs, files, 0, len(dirs) + files, where)
            self._cached += len(texts)
        return texts

    def warm(self) -> None:
        """Encode the root's entries before the clock starts: the server's work is not the client's."""
        found = self.shape.contents(ROOT)
        if found is not None:
            self._folder_texts(found[0], found[1], ROOT)

    @staticmethod
    def _entry_texts(dirs: list[str], files: int, start: int, end: int, where: str) -> list[bytes]:
        """Entries `start` to `end` (folders first, then files) as JSON texts."""
        page = [(dirs[i], True) for i in range(start, min(end, len(dirs)))]
        page += [(f"f{i - len(dirs):07d}.jpg", False) for i in range(max(start, len(dirs)), end)]
        return [json.dumps(FakeListing._entry(name, is_dir, where)).encode() for name, is_dir in page]

    @staticmethod
    def _entry(name: str, is_dir: bool, where: str) -> dict[str, Any]:
        base = "/x" * (len(where) // 2)  # as long as the folder's path: what the server would send
        n = sum(map(ord, name))  # stable across processes (hash() is not)
        return {
            "name": name,
            "path": f"{base}/{name}",
            "type": "dir" if is_dir else "file",
            "size": 4096 if is_dir else 1000 + (n * 7919) % 65536,
            "isDirectory": is_dir,
            "isRegularFile": not is_dir,
            "isSymbolicLink": False,
            "owner": "bench",
            "group": "bench",
            "permission": "rwxr-xr-x" if is_dir else "rw-r--r--",
            "lastModifiedTime": TIMES[n % len(TIMES)],
        }

    @staticmethod
    def _page_text(dirs: list[str], files: int, start: int, limit: int, keyword: str, where: str) -> bytes:
        names = [(d, True) for d in dirs if keyword in d]
        names += [(f"f{i:07d}.jpg", False) for i in range(files) if keyword in f"f{i:07d}.jpg"]
        listed = [FakeListing._entry(name, is_dir, where) for name, is_dir in names[start : start + limit]]
        return json.dumps({"total": len(names), "fileList": listed}).encode()

    @staticmethod
    def parse_list(data: Any) -> FileListResult:
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
    from efile_mcp.guard.insight import UsageWalk
    from efile_mcp.settings import Settings

    fake = FakeListing(shape, decode=transport_json())
    fake.warm()
    concurrency = Settings.model_fields["concurrency"].default
    usage = UsageWalk(ROOT)
    started, cpu = time.perf_counter(), time.process_time()
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
        "cpu_seconds": time.process_time() - cpu,
        "files": usage.total.files,
        "complete": stats.complete,
        "calls": calls,
        "requests": fake.requests,
        "most_in_flight": fake.most_in_flight,
        "rss_mb": peak_rss_mb(),
    }


async def sequential(shape: Shape, decode: Callable[[bytes], Any] = plain_json) -> dict[str, Any]:
    """The baseline: one folder at a time, largest pages, sizes summed."""
    fake = FakeListing(shape, decode=decode)
    fake.warm()
    started, cpu = time.perf_counter(), time.process_time()
    stack, files, size = [ROOT], 0, 0
    while stack:
        folder = stack.pop()
        start = 0
        while True:
            page = await fake.list_dir_data(folder, start=start, limit=MAX_LIMIT)
            entries = page["fileList"]
            for entry in entries:
                if entry["isDirectory"]:
                    stack.append(f"{folder}/{entry['name']}")
                else:
                    files += 1
                    size += entry["size"] or 0
            start += len(entries)
            if not entries or start >= page["total"]:
                break
    return {
        "seconds": time.perf_counter() - started,
        "cpu_seconds": time.process_time() - cpu,
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
        "deep": deep(300, 20),
        "flat": flat(200_000),
        "imagenet": imagenet(250, 1281),  # 320,250 files
        "resumed": imagenet(300, 1000),  # 300,000 files
    },
    "full": {
        "usage": binary(12, 244),  # 8,191 folders, 999,424 files
        "deep": deep(1000, 20),
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
    if who == "baseline-fastest":
        return anyio.run(sequential, shape, fastest_json)
    if case == "resumed":
        # Calls of a tenth of the tree each (the default budgets would take it in fewer, longer calls).
        return anyio.run(lambda: ours(shape, max_entries=shape.files // 10 + 1, max_seconds=600, calls_max=50))
    return anyio.run(lambda: ours(shape, max_entries=5_000_000, max_seconds=3600))


def in_child(case: str, who: str, scale: str, code: str | None = None) -> dict[str, Any]:
    """One measurement in a child process; `code`: the package from that folder instead of this tree's."""
    env = dict(os.environ)
    env.pop("BENCH_WALK_CODE", None)
    if code:
        env["BENCH_WALK_CODE"] = code
    done = subprocess.run(
        [sys.executable, __file__, "--child", case, who, "--scale", scale],
        capture_output=True,
        text=True,
        check=True,
        cwd=HERE.parent,
        env=env,
    )
    return json.loads(done.stdout.strip().splitlines()[-1])


# ---------------------------------------------------------------------------------------------- the sandbox


def flat_in_sandbox(files: int, rounds: int = 3) -> list[Row]:
    """The issue's own measurement: disk_usage over stdio (the real server) of one flat folder in the sandbox
    (its own process, 20 ms per request), against a plain-httpx sequential lister with the largest page."""
    import httpx2 as httpx
    from common import delayed_sandbox, efile_stdio

    from efile_mcp.models.wire import FILE_LIST

    rows: list[Row] = []
    with delayed_sandbox() as sandbox:
        folder = sandbox.root / "flat"
        folder.mkdir()
        for i in range(files):
            (folder / f"f{i:07d}.dat").touch()
        root = f"{sandbox.home}/flat"
        ours_s, base_s, rss, requests = [], [], [], 0
        # CPU of each side and of the sandbox while it served it: is the ratio about the client, or about the
        # pages the server lists (the sandbox sorts the whole folder for every page it answers)?
        cpu: dict[str, list[float]] = {"server": [], "sandbox_ours": [], "client": [], "sandbox_base": []}
        audit = Path(sandbox.root).parent / "audit.jsonl"
        for _ in range(rounds):
            with efile_stdio(sandbox, audit) as session:
                session.request("tools/list")
                server_cpu, sandbox_cpu = session.cpu_seconds(), sandbox.cpu_seconds()
                started = time.perf_counter()
                answer = session.call_tool("disk_usage", {"path": root})
                ours_s.append(time.perf_counter() - started)
                cpu["server"].append(session.cpu_seconds() - server_cpu)
                cpu["sandbox_ours"].append(sandbox.cpu_seconds() - sandbox_cpu)
                rss.append(session.peak_rss_mb())
                assert answer["file_count"] == files and answer["complete"], answer
                requests = answer["requests"]
            with httpx.Client(base_url=sandbox.base_url, headers={"token": sandbox.token}, timeout=120) as http:
                started, client_cpu, sandbox_cpu = time.perf_counter(), time.process_time(), sandbox.cpu_seconds()
                start = counted = 0
                while True:
                    data = http.get(FILE_LIST, params={"path": root, "start": start, "limit": MAX_LIMIT}).json()["data"]
                    counted += sum(1 for entry in data["fileList"] if entry.get("isRegularFile"))
                    start += len(data["fileList"])
                    if not data["fileList"] or start >= data["total"]:
                        break
                base_s.append(time.perf_counter() - started)
                cpu["client"].append(time.process_time() - client_cpu)
                cpu["sandbox_base"].append(sandbox.cpu_seconds() - sandbox_cpu)
                assert counted == files
    ours, base = sorted(ours_s)[rounds // 2], sorted(base_s)[rounds // 2]
    rows.append(
        Row(
            "walk",
            f"flat in the sandbox ({files:,} files): disk_usage over stdio",
            ours,
            "s",
            baseline=base,
            target=1.2,
            note=(
                f"{requests} requests; median of {rounds}, ours {min(ours_s):.2f}-{max(ours_s):.2f} s, "
                f"sequential lister ({MAX_LIMIT:,} a page) {min(base_s):.2f}-{max(base_s):.2f} s"
            ),
        )
    )
    rows.append(Row("walk", "flat in the sandbox: server peak RSS", max(rss), "MB", target=150))
    median = {side: sorted(values)[rounds // 2] for side, values in cpu.items()}
    rows.append(
        Row(
            "walk",
            "flat in the sandbox: CPU, efile-mcp server / sandbox while serving it",
            median["server"],
            "s",
            note=f"sandbox {median['sandbox_ours']:.2f} s; medians of {rounds}",
        )
    )
    rows.append(
        Row(
            "walk",
            "flat in the sandbox: CPU, plain-httpx lister / sandbox while serving it",
            median["client"],
            "s",
            note=f"sandbox {median['sandbox_base']:.2f} s; medians of {rounds}",
        )
    )
    return rows


# ---------------------------------------------------------------------------------------------- rows


def run(quick: bool = True, only: list[str] | None = None, before: str | None = None) -> list[Row]:
    scale = "quick" if quick else "full"
    rows: list[Row] = []
    cases = only or ["usage", "deep", "flat", "sandbox", "imagenet", "resumed", "missing"]
    for case in cases:
        if case == "sandbox":
            rows += flat_in_sandbox(200_000)
            continue
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
        # CPU-bound cases are noisy on a shared machine: rounds alternate, and the medians are compared.
        rounds = 5 if case == "flat" else 1
        mines, bases, olds, fastest = [], [], [], []
        for _ in range(rounds):
            if before:
                olds.append(in_child(case, "ours", scale, before))
            mines.append(in_child(case, "ours", scale))
            bases.append(in_child(case, "baseline", scale))
            if case == "flat":
                fastest.append(in_child(case, "baseline-fastest", scale))
        mine = sorted(mines, key=lambda got: got["seconds"])[rounds // 2]
        base = sorted(bases, key=lambda got: got["seconds"])[rounds // 2]
        spread = (
            f"; median of {rounds}, ours {min(m['seconds'] for m in mines):.2f}-{max(m['seconds'] for m in mines):.2f} s, "
            f"baseline {min(b['seconds'] for b in bases):.2f}-{max(b['seconds'] for b in bases):.2f} s"
            if rounds > 1
            else ""
        )
        assert mine["files"] == base["files"] == shape.files, (mine, base, shape)
        target = {"usage": 0.2, "deep": 1.1, "flat": 1.2, "imagenet": 0.3, "resumed": 0.25}[case]
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
                    f"RTT {RTT * 1000:.0f} ms{spread}"
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

        def median(runs: list[dict[str, Any]], key: str = "seconds") -> float:
            return float(sorted(got[key] for got in runs)[len(runs) // 2])

        if fastest:
            rows.append(
                Row(
                    "walk",
                    f"{case}: against a lister decoding with pydantic-core (not plain httpx)",
                    mine["seconds"],
                    "s",
                    baseline=median(fastest),
                    note=f"CPU ours {median(mines, 'cpu_seconds'):.2f} s, baseline {median(bases, 'cpu_seconds'):.2f} s, "
                    f"this one {median(fastest, 'cpu_seconds'):.2f} s (medians)",
                )
            )
        if olds:
            rows.append(
                Row(
                    "walk",
                    f"{case}: the code of {before} in the same run",
                    median(olds),
                    "s",
                    baseline=base["seconds"],
                    target=target,
                    note=f"CPU {median(olds, 'cpu_seconds'):.2f} s, {olds[0]['requests']} requests, "
                    f"RSS {median(olds, 'rss_mb'):.0f} MB",
                )
            )
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--scale", choices=sorted(SCALES), default="quick")
    parser.add_argument(
        "--only", action="append", choices=["usage", "deep", "flat", "imagenet", "resumed", "missing", "sandbox"]
    )
    parser.add_argument("--before", metavar="DIR", help="also measure the package in DIR (an older commit's), same run")
    parser.add_argument("--child", nargs=2, metavar=("CASE", "WHO"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        print(json.dumps(child(args.child[0], args.child[1], args.scale)))
        return
    for row in run(args.scale == "quick", args.only, args.before):
        ratio = f"{row.ratio:.2f}x" if row.ratio is not None else ""
        print(
            f"{row.measure:<80} {row.value:>10.2f} {row.unit:<8} {ratio:>7} {row.verdict:<5} {row.note}",
            flush=True,
        )


if __name__ == "__main__":
    main()
