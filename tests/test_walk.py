"""The walker: budgets checked before each request, resumable walks, flat folders in parallel pages.

Against the sandbox over real HTTP; requests are counted by the sandbox, concurrency by the client.
"""

from __future__ import annotations

import json
import os
from collections.abc import AsyncIterator
from pathlib import Path

import anyio
import pytest

from efile_mcp.client import EfileApi, EfileTransport, RetryPolicy, StaticToken
from efile_mcp.client import walk as walk_module
from efile_mcp.client.walk import ClosedDir, Entry, Listings, TreeWalk, WalkLimits
from efile_mcp.errors import MalformedResponseError
from efile_mcp.sandbox import RunningSandbox

pytestmark = pytest.mark.anyio

FAST = RetryPolicy(attempts=4, budget=5.0, base_delay=0.01, max_delay=0.05)


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture
async def api(sandbox: RunningSandbox) -> AsyncIterator[EfileApi]:
    transport = EfileTransport(sandbox.base_url, StaticToken(sandbox.token), retry=FAST, concurrency=8)
    yield EfileApi(transport)
    await transport.aclose()


def tree_figures(root: Path) -> tuple[int, int, int]:
    """(bytes of regular files, regular files, folders) below `root`, as the storage has them."""
    size = files = dirs = 0
    for base, names, leaves in os.walk(root):
        dirs += len(names)
        files += len(leaves)
        size += sum((Path(base) / leaf).stat().st_size for leaf in leaves)
    return size, files, dirs


class Seen:
    """Every entry a walk handed over, and the root's totals when it closed."""

    def __init__(self) -> None:
        self.paths: list[str] = []
        self.largest_batch = 0
        self.root: ClosedDir | None = None

    def on_entries(self, folder: str, depth: int, batch: list[Entry]) -> None:
        self.largest_batch = max(self.largest_batch, len(batch))
        self.paths += [f"{folder}/{entry.name}" for entry in batch]

    def on_closed(self, closed: ClosedDir) -> None:
        if closed.depth == 0:
            self.root = closed


async def test_the_entry_budget_is_checked_before_each_request_never_overrun(
    api: EfileApi, sandbox: RunningSandbox
) -> None:
    # scratch holds ~315 entries, 300 of them in three shards that would all be asked for at once.
    sandbox.sandbox.request_counts.clear()
    walk = TreeWalk(f"{sandbox.home}/scratch")
    stats = await Listings(api, concurrency=8).walk(walk, limits=WalkLimits.starting_now(100, 30))
    assert stats.entries_seen <= 100
    assert stats.stopped == "entry_budget" and not stats.complete
    assert walk.frontier, "what was not read stays in the frontier, for the next call"
    assert sandbox.sandbox.request_counts["file/list"] <= 6


async def test_a_walk_resumed_in_small_steps_sees_every_entry_once_with_the_same_sums(
    api: EfileApi, sandbox: RunningSandbox, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(walk_module, "LARGE_PAGE", 40)  # shards of 100 files take three pages each
    root = f"{sandbox.home}/scratch"
    whole = Seen()
    await Listings(api).walk(
        TreeWalk(root, fingerprint=True),
        whole.on_entries,
        limits=WalkLimits.starting_now(10_000, 30),
        on_closed=whole.on_closed,
    )
    steps = Seen()
    state = TreeWalk(root, fingerprint=True).to_json()
    calls = 0
    while True:
        walk = TreeWalk.from_json(json.loads(json.dumps(state)))  # what the state store keeps between calls
        await Listings(api).walk(
            walk, steps.on_entries, limits=WalkLimits.starting_now(37, 30), on_closed=steps.on_closed
        )
        calls += 1
        if walk.finished:
            break
        state = walk.to_json()
    assert calls >= 315 // 37
    assert sorted(steps.paths) == sorted(whole.paths) and len(set(steps.paths)) == len(steps.paths)
    assert whole.root is not None and steps.root is not None
    size, files, dirs = tree_figures(sandbox.root / "scratch")
    assert (steps.root.totals.size, steps.root.totals.files, steps.root.totals.dirs) == (size, files, dirs)
    assert steps.root.fingerprint == whole.root.fingerprint and steps.root.complete


async def test_a_flat_folder_is_read_in_parallel_pages_and_never_held_whole(
    api: EfileApi, sandbox: RunningSandbox, monkeypatch: pytest.MonkeyPatch
) -> None:
    flat = sandbox.root / "scratch" / "flat"
    flat.mkdir()
    for i in range(2_000):
        (flat / f"f{i:05d}.dat").write_bytes(b"x" * (i % 7))
    monkeypatch.setattr(walk_module, "LARGE_PAGE", 100)
    monkeypatch.setattr(walk_module, "HUGE_PAGE", 100)  # a server that takes no larger page than the first
    in_flight = most = 0
    list_dir_data = api.list_dir_data

    async def counted(*args: object, **kwargs: object) -> object:
        nonlocal in_flight, most
        in_flight += 1
        most = max(most, in_flight)
        try:
            return await list_dir_data(*args, **kwargs)  # type: ignore[arg-type]
        finally:
            in_flight -= 1

    monkeypatch.setattr(api, "list_dir_data", counted)
    seen = Seen()
    sandbox.sandbox.request_counts.clear()
    stats = await Listings(api, concurrency=8).walk(
        f"{sandbox.home}/scratch/flat", seen.on_entries, limits=WalkLimits.starting_now(100_000, 30)
    )
    assert stats.complete and len(set(seen.paths)) == 2_000
    # One request per page, none repeated: 1 + ceil(1,900 / 99), each later page from the entry read before it.
    assert sandbox.sandbox.request_counts["file/list"] == 21
    assert seen.largest_batch <= 100, "a page at a time, not the folder whole"
    assert most >= 4, "pages after the second one are asked for in parallel"


async def test_a_large_folder_is_read_on_in_the_largest_pages_one_at_a_time(
    api: EfileApi, sandbox: RunningSandbox, monkeypatch: pytest.MonkeyPatch
) -> None:
    flat = sandbox.root / "scratch" / "flat"
    flat.mkdir()
    for i in range(2_500):
        (flat / f"f{i:05d}.dat").touch()
    monkeypatch.setattr(walk_module, "LARGE_PAGE", 100)
    monkeypatch.setattr(walk_module, "HUGE_PAGE", 1_000)
    seen = Seen()
    sandbox.sandbox.request_counts.clear()
    stats = await Listings(api).walk(
        f"{sandbox.home}/scratch/flat", seen.on_entries, limits=WalkLimits.starting_now(100_000, 30)
    )
    assert stats.complete and len(set(seen.paths)) == 2_500
    # 100, then 1,000, 1,000 and 400: a server that reads the folder for every page does it 4 times, not 25.
    assert sandbox.sandbox.request_counts["file/list"] == 4
    assert seen.largest_batch <= 1_000


@pytest.mark.parametrize("sandbox", [{"list_max_limit": 1_000}], indirect=True)
async def test_a_server_refusing_a_large_page_is_read_in_the_pages_it_takes(
    api: EfileApi, sandbox: RunningSandbox, monkeypatch: pytest.MonkeyPatch
) -> None:
    flat = sandbox.root / "scratch" / "flat"
    flat.mkdir()
    for i in range(2_500):
        (flat / f"f{i:05d}.dat").touch()
    monkeypatch.setattr(walk_module, "LARGE_PAGE", 500)
    seen = Seen()
    stats = await Listings(api).walk(
        f"{sandbox.home}/scratch/flat", seen.on_entries, limits=WalkLimits.starting_now(100_000, 30)
    )
    assert stats.complete and len(set(seen.paths)) == 2_500


@pytest.mark.parametrize("sandbox", [{"list_ignores_start": True}], indirect=True)
async def test_a_server_ignoring_start_is_not_counted_twice_even_when_a_walk_resumes_mid_folder(
    api: EfileApi, sandbox: RunningSandbox, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(walk_module, "LARGE_PAGE", 40)
    seen = Seen()
    walk = TreeWalk(f"{sandbox.home}/scratch/big-run/shard-0")
    await Listings(api).walk(walk, seen.on_entries, limits=WalkLimits.starting_now(30, 30))
    assert walk.frontier and walk.frontier[0][2] == 30  # cut by the budget after 30 entries
    stats = await Listings(api).walk(walk, seen.on_entries, limits=WalkLimits.starting_now(1_000, 30))
    assert len(seen.paths) == len(set(seen.paths)) == 30
    assert not stats.complete and stats.incomplete_dirs == 1


async def test_the_deadline_stops_new_requests_and_keeps_the_frontier(api: EfileApi, sandbox: RunningSandbox) -> None:
    walk = TreeWalk(f"{sandbox.home}/scratch")
    stats = await Listings(api).walk(walk, limits=WalkLimits(1_000_000, anyio.current_time() - 1))
    assert stats.stopped == "deadline" and stats.requests == 0 and walk.frontier


async def test_task_lookups_ask_as_many_ids_per_request_as_the_api_takes(
    api: EfileApi, sandbox: RunningSandbox
) -> None:
    sandbox.sandbox.request_counts.clear()
    lookup = await api.tasks([f"{i:032x}" for i in range(1_200)])
    assert len(lookup.not_found) == 1_200
    assert sandbox.sandbox.request_counts["task/list"] == 3  # 500 a request, not 100: 3 requests, not 12


async def test_a_call_that_walks_and_then_looks_its_finds_up_lists_each_folder_once(
    api: EfileApi, sandbox: RunningSandbox
) -> None:
    # A dry run by select: the search walks, then each match is looked up (and a re-check does the same).
    listings = Listings(api, keep=True)
    seen = Seen()
    await listings.walk(f"{sandbox.home}/scratch/big-run", seen.on_entries, limits=WalkLimits.starting_now(10_000, 30))
    sandbox.sandbox.request_counts.clear()
    found = await listings.entries([p for p in seen.paths if p.endswith(".dat")])
    assert len(found) == 300 and all(isinstance(entry, Entry) for entry in found.values())
    assert sandbox.sandbox.request_counts["file/list"] == 0


WIRE_ITEMS = [
    {"name": "a", "path": "/x/a", "isDirectory": True, "size": 4096, "lastModifiedTime": "2026-11-20 10:00:00"},
    {"name": "b", "path": "/x/b", "isRegularFile": True, "size": 12, "lastModifiedTime": "2026-11-20 10:00:01"},
    {"name": "c", "path": "/x/c", "isSymbolicLink": True, "isDirectory": True, "size": 7},
    {"name": "d", "path": "/x/d", "type": "Folder", "size": None},
    {"name": "e", "path": "/x/e", "type": "-", "size": -3, "extra": {"kept": "as the wire model keeps it"}},
    {"name": "f", "path": "/x/f", "type": "socket"},
    {"name": "g", "path": "/x/g", "isDirectory": False, "isRegularFile": False, "type": "l"},
]


@pytest.mark.parametrize(
    ("data", "direct"),
    [
        ({"total": 7, "fileList": WIRE_ITEMS, "children": [{"id": 3, "label": "a", "path": "/x/a"}]}, True),
        ({"fileList": WIRE_ITEMS[:2]}, True),
        ({"total": 1, "fileList": [{**WIRE_ITEMS[1], "size": "12"}]}, False),  # odd: the wire model reads it
        ({"total": 1, "fileList": [{**WIRE_ITEMS[1], "isRegularFile": "true"}]}, False),
    ],
)
def test_the_walkers_direct_reading_of_a_page_is_the_wire_models(data: dict[str, object], direct: bool) -> None:
    read = walk_module.slim_page(data)
    assert (read is not None) == direct
    assert read is None or read == walk_module._slim(EfileApi.parse_list(data))


def test_a_page_the_walker_cannot_read_directly_is_still_a_malformed_answer() -> None:
    assert walk_module.slim_page({"total": 1, "fileList": "nope"}) is None
    with pytest.raises(MalformedResponseError):
        EfileApi.parse_list({"total": 1, "fileList": "nope"})


async def test_a_second_walk_in_the_same_call_reads_the_folders_the_first_one_read(
    api: EfileApi, sandbox: RunningSandbox
) -> None:
    # Execution by select: the re-check walks the plan's folders, then the selection is walked again to count
    # what now matches and was not previewed; the second walk asks nothing the first one read whole.
    listings = Listings(api, keep=True)
    first, second = Seen(), Seen()
    limits = WalkLimits.starting_now(10_000, 30)
    await listings.walk(f"{sandbox.home}/scratch", first.on_entries, limits=limits)
    sandbox.sandbox.request_counts.clear()
    await listings.walk(f"{sandbox.home}/scratch", second.on_entries, limits=limits)
    assert sorted(second.paths) == sorted(first.paths)
    assert sandbox.sandbox.request_counts["file/list"] == 0
