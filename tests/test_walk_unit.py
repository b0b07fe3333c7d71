"""The walker alone (client/walk.py): `Listings` over an in-memory listing source instead of HTTP.

The source answers `list_dir` as the efile API does, with the quirks the docs and third parties
disagree on (capped pages, an ignored `start`, a refused large `limit`, `children` beyond a cut page),
counts every request and the most in flight at once. No server, no sockets: a failure here points at
the walker, not at a story. The sandbox-backed walker tests (resume, budgets over HTTP) are tests/test_walk.py.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import anyio
import pytest

from efile_mcp.client import walk as walk_module
from efile_mcp.client.walk import (
    DOCUMENTED_PAGE,
    HUGE_PAGE,
    LARGE_PAGE,
    ClosedDir,
    Entry,
    Listings,
    TreeWalk,
    WalkLimits,
)
from efile_mcp.errors import ApiError, AuthError, NotFoundError
from efile_mcp.models.times import parse_server_time
from efile_mcp.models.wire import ChildFolder, FileEntry, FileListResult

ROOT = "/public/home/u"
STAMP = "2026-11-20 10:00:00"


@dataclass
class Node:
    kind: str  # "file" | "directory" | "symlink"
    size: int = 0
    modified: str = STAMP


@dataclass
class MemoryListings:
    """An efile `file/list` over a dict of folders: {folder path: {name: Node}}, answered in name order."""

    folders: dict[str, dict[str, Node]]
    page_cap: int | None = None
    ignores_start: bool = False
    max_limit: int = 100_000
    unreadable: set[str] = field(default_factory=set)
    refuse_token: bool = False
    requests: list[tuple[str, int, int]] = field(default_factory=list)
    #: Page offsets answered late: {start: event-loop turns more than the others}.
    late: dict[int, int] = field(default_factory=dict)
    in_flight: int = 0
    most_in_flight: int = 0

    async def list_dir(
        self,
        path: str | None = None,
        *,
        keyword: str | None = None,
        start: int = 0,
        limit: int = 100,
        order_by: str | None = None,
        order: str | None = None,
        on_retry: object = None,
    ) -> FileListResult:
        assert path is not None
        self.requests.append((path, start, limit))
        self.in_flight += 1
        self.most_in_flight = max(self.most_in_flight, self.in_flight)
        try:
            await anyio.sleep(0)  # a real request yields: let concurrent readers overlap
            for _ in range(self.late.get(start, 0)):
                await anyio.sleep(0)
            if self.refuse_token:
                raise AuthError("10008", "token expired", endpoint="/file/list")
            if limit > self.max_limit:
                raise ApiError("10004", f"limit must be at most {self.max_limit}", endpoint="/file/list")
            if path in self.unreadable:
                raise ApiError("911030", f"permission denied: {path}", endpoint="/file/list")
            if path not in self.folders:
                raise NotFoundError("911020", f"file or directory does not exist: {path}", endpoint="/file/list")
            names = sorted(n for n in self.folders[path] if keyword is None or keyword in n)
            begin = 0 if self.ignores_start else start
            size = min(limit, self.page_cap or limit)
            page = names[begin : begin + size]
            return FileListResult(
                total=len(names),
                path=path,
                fileList=[self._entry(path, name, self.folders[path][name]) for name in page],
                children=[
                    ChildFolder(path=f"{path}/{name}") for name in names if self.folders[path][name].kind == "directory"
                ],
            )
        finally:
            self.in_flight -= 1

    @staticmethod
    def _entry(folder: str, name: str, node: Node) -> FileEntry:
        return FileEntry(
            name=name,
            path=f"{folder}/{name}",
            size=node.size,
            isDirectory=node.kind == "directory",
            isRegularFile=node.kind == "file",
            isSymbolicLink=node.kind == "symlink",
            lastModifiedTime=node.modified,
        )


@dataclass
class DataListings(MemoryListings):
    """The same, answering as `EfileApi` does: `list_dir_data` hands the walker the answer's decoded JSON."""

    async def list_dir_data(self, path: str | None = None, **arguments: object) -> object:
        return (await self.list_dir(path, **arguments)).model_dump(by_alias=True)  # type: ignore[arg-type]

    @staticmethod
    def parse_list(data: object) -> FileListResult:
        return FileListResult.model_validate(data)


def flat(count: int, **options: object) -> MemoryListings:
    return MemoryListings({ROOT: {f"f{i:06d}": Node("file", 1) for i in range(count)}}, **options)  # type: ignore[arg-type]


def tree(branching: int = 3, depth: int = 3, files: int = 4) -> MemoryListings:
    """`branching` folders per level, `depth` levels, `files` files of 10 bytes and one link in every folder."""
    folders: dict[str, dict[str, Node]] = {}

    def build(path: str, level: int) -> None:
        folders[path] = {f"file-{i}.dat": Node("file", 10) for i in range(files)}
        folders[path]["link"] = Node("symlink", 99)  # a link's own size: never added, never followed
        if level < depth:
            for i in range(branching):
                folders[path][f"dir-{i}"] = Node("directory", 4096)
                build(f"{path}/dir-{i}", level + 1)

    build(ROOT, 0)
    return MemoryListings(folders)


def far_limits(entries: int = 10**9) -> WalkLimits:
    return WalkLimits(entries, anyio.current_time() + 3600)


class Closed:
    def __init__(self) -> None:
        self.by_path: dict[str, ClosedDir] = {}

    def __call__(self, closed: ClosedDir) -> None:
        assert closed.path not in self.by_path, f"{closed.path} closed twice"
        self.by_path[closed.path] = closed


# ---------------------------------------------------------------------------------------------- one folder


async def test_a_large_folder_is_read_whole_in_large_pages_and_kept_for_the_call() -> None:
    source = flat(2 * LARGE_PAGE + 7)
    listings = Listings(source)  # type: ignore[arg-type]
    listing = await listings.read_dir(ROOT)
    assert listing.complete and len(listing.entries) == listing.total == 2 * LARGE_PAGE + 7
    # The first page, then the rest in the largest page the server takes (it may read the folder per page), asked
    # from the entry before it: the page must begin with the name read last (the folder did not change meanwhile).
    assert [(start, limit) for _, start, limit in source.requests] == [(0, LARGE_PAGE), (LARGE_PAGE - 1, HUGE_PAGE)]
    await listings.read_dir(ROOT)
    assert len(source.requests) == 2  # asked once per call


@pytest.mark.parametrize("second_page_last", [False, True])
async def test_a_large_folder_is_read_in_pages_out_together_each_entry_once(
    monkeypatch: pytest.MonkeyPatch, second_page_last: bool
) -> None:
    monkeypatch.setattr(walk_module, "LARGE_PAGE", 10)
    monkeypatch.setattr(walk_module, "HUGE_PAGE", 20)
    # The second page (the one that shows the server honours `start`) may come back after the later ones.
    source = flat(10 + 6 * 20 + 5, late={10: 5} if second_page_last else {})
    listing = await Listings(source).read_dir(ROOT)  # type: ignore[arg-type]
    assert listing.complete and sorted(listing.entries) == [f"f{i:06d}" for i in range(135)]
    assert [start for _, start, _ in source.requests] == [0, 9, 28, 47, 66, 85, 104, 123]  # each from the entry before
    # After the first page, the second is not waited for alone: HUGE_IN_FLIGHT pages are out at once.
    assert source.most_in_flight == walk_module.HUGE_IN_FLIGHT


@pytest.mark.parametrize("second_page_last", [False, True])
async def test_a_server_ignoring_start_on_a_large_folder_costs_a_few_pages_once_and_counts_nothing_twice(
    monkeypatch: pytest.MonkeyPatch, second_page_last: bool
) -> None:
    monkeypatch.setattr(walk_module, "LARGE_PAGE", 10)
    monkeypatch.setattr(walk_module, "HUGE_PAGE", 20)
    source = flat(10 + 6 * 20 + 5, ignores_start=True, late={10: 5} if second_page_last else {})
    source.folders[ROOT + "/other"] = {f"g{i:03d}": Node("file", 1) for i in range(100)}
    listings = Listings(source)  # type: ignore[arg-type]
    listing = await listings.read_dir(ROOT)
    assert not listing.complete and sorted(listing.entries) == [f"f{i:06d}" for i in range(10)]
    assert len(source.requests) <= 1 + walk_module.HUGE_IN_FLIGHT  # the first page, then one wave at most
    source.requests.clear()
    other = await listings.read_dir(ROOT + "/other")
    assert not other.complete and len(other.entries) == 10
    # Remembered for the call: the next large folder's second page goes alone and nothing more is asked.
    assert [start for _, start, _ in source.requests] == [0, 9]


async def test_a_walk_stopped_while_the_second_page_is_unchecked_resumes_there_and_counts_each_entry_once(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(walk_module, "LARGE_PAGE", 10)
    monkeypatch.setattr(walk_module, "HUGE_PAGE", 20)
    source = flat(10 + 6 * 20 + 5)
    asked = 0

    def stop() -> bool:  # says stop just as the pages after the first are about to leave
        nonlocal asked
        asked += len(source.requests) == 1
        return asked >= 2

    walk = TreeWalk(ROOT)
    closed = Closed()
    stats = await Listings(source).walk(walk, limits=far_limits(), on_closed=closed, stop=stop)  # type: ignore[arg-type]
    assert stats.stopped == "caller" and [pending[2] for pending in walk.frontier] == [10]
    stats = await Listings(source).walk(walk, limits=far_limits(), on_closed=closed)  # type: ignore[arg-type]
    assert stats.complete and walk.finished and closed.by_path[ROOT].totals.files == 135


async def test_a_server_that_caps_pages_is_read_to_the_end_in_its_steps() -> None:
    source = flat(100, page_cap=7)
    listing = await Listings(source).read_dir(ROOT)  # type: ignore[arg-type]
    assert listing.complete and sorted(listing.entries) == [f"f{i:06d}" for i in range(100)]
    assert len(source.requests) == 17  # 1 + ceil(93 / 6): each later page begins with the entry read before it


async def test_a_server_that_ignores_start_is_detected_not_looped_and_the_listing_marked_incomplete() -> None:
    source = flat(50, page_cap=20, ignores_start=True)
    listing = await Listings(source).read_dir(ROOT)  # type: ignore[arg-type]
    assert not listing.complete and len(listing.entries) == 20 and listing.total == 50
    assert len(source.requests) == 2  # the second page repeated the first: stop


async def test_a_refused_large_page_falls_back_to_the_documented_size() -> None:
    source = flat(2500, max_limit=DOCUMENTED_PAGE)
    listings = Listings(source)  # type: ignore[arg-type]
    listing = await listings.read_dir(ROOT)
    assert listing.complete and len(listing.entries) == 2500
    # LARGE_PAGE and then HUGE_PAGE are refused once each; every page read is the documented size.
    assert [limit for _, _, limit in source.requests if limit > DOCUMENTED_PAGE] == [LARGE_PAGE, HUGE_PAGE]
    assert len([limit for _, _, limit in source.requests if limit == DOCUMENTED_PAGE]) == 3
    source.requests.clear()
    source.folders[ROOT + "/sub"] = {f"g{i}": Node("file") for i in range(3)}
    await listings.read_dir(ROOT + "/sub")  # the fallback is remembered for the rest of the call
    assert source.requests == [(ROOT + "/sub", 0, DOCUMENTED_PAGE)]


async def test_sub_folders_a_cut_listing_left_out_are_still_found_through_children() -> None:
    source = MemoryListings(
        {ROOT: {**{f"a{i:03d}": Node("file", 1) for i in range(30)}, "zz-folder": Node("directory")}},
        page_cap=10,
        ignores_start=True,
    )
    listing = await Listings(source).read_dir(ROOT)  # type: ignore[arg-type]
    assert not listing.complete
    assert listing.entries["zz-folder"] == Entry("zz-folder", "directory", 0, None)  # walkable, not sized


async def test_one_entry_is_looked_up_by_name_and_an_absent_one_or_parent_is_none() -> None:
    source = tree(branching=1, depth=1)
    listings = Listings(source)  # type: ignore[arg-type]
    found = await listings.entry(f"{ROOT}/file-1.dat")
    assert found is not None and (found.kind, found.size) == ("file", 10)
    assert found.mtime == parse_server_time(STAMP)
    assert await listings.entry(f"{ROOT}/nothing-here") is None
    assert await listings.entry(f"{ROOT}/no-such-folder/x") is None


# ---------------------------------------------------------------------------------------------- trees


async def test_a_walk_sums_the_tree_bottom_up_and_never_follows_a_link() -> None:
    source = tree(branching=3, depth=3, files=4)
    closed = Closed()
    walk = TreeWalk(ROOT)
    stats = await Listings(source, concurrency=4).walk(walk, limits=far_limits(), on_closed=closed)  # type: ignore[arg-type]
    folders = len(source.folders)  # 1 + 3 + 9 + 27
    assert stats.complete and walk.finished and stats.dirs_listed == folders == 40
    root = closed.by_path[ROOT].totals
    assert (root.files, root.size, root.dirs, root.links) == (4 * folders, 40 * folders, folders - 1, folders)
    assert set(closed.by_path) == set(source.folders)  # every folder closed once, links never listed
    assert all(not path.endswith("/link") for path, _, _ in source.requests)
    leaf = closed.by_path[f"{ROOT}/dir-0/dir-0/dir-0"].totals
    assert (leaf.files, leaf.size, leaf.dirs) == (4, 40, 0)


async def test_a_walk_stays_within_its_concurrency() -> None:
    source = tree(branching=6, depth=2, files=1)
    await Listings(source, concurrency=3).walk(TreeWalk(ROOT), limits=far_limits())  # type: ignore[arg-type]
    assert 1 < source.most_in_flight <= 3


async def test_max_depth_zero_reads_the_root_alone() -> None:
    source = tree(branching=2, depth=2)
    seen: list[str] = []
    await Listings(source).walk(  # type: ignore[arg-type]
        TreeWalk(ROOT, max_depth=0),
        lambda folder, depth, batch: seen.extend(e.name for e in batch),
        limits=far_limits(),
    )
    assert [path for path, _, _ in source.requests] == [ROOT]
    assert "dir-0" in seen and "file-0.dat" in seen


async def test_an_unreadable_folder_is_recorded_and_the_walk_goes_on_with_its_tree_marked_incomplete() -> None:
    source = tree(branching=2, depth=2, files=1)
    source.unreadable.add(f"{ROOT}/dir-1")
    closed = Closed()
    stats = await Listings(source).walk(TreeWalk(ROOT), limits=far_limits(), on_closed=closed)  # type: ignore[arg-type]
    assert [u.path for u in stats.unreadable] == [f"{ROOT}/dir-1"] and "911030" in stats.unreadable[0].reason
    assert not stats.complete
    assert closed.by_path[f"{ROOT}/dir-0"].complete and not closed.by_path[ROOT].complete
    assert f"{ROOT}/dir-0/dir-1" in closed.by_path  # its sibling's tree was read


async def test_a_refused_token_ends_the_walk_instead_of_marking_every_folder_unreadable() -> None:
    source = tree(branching=2, depth=1)
    source.refuse_token = True
    with pytest.raises(AuthError):
        await Listings(source).walk(TreeWalk(ROOT), limits=far_limits())  # type: ignore[arg-type]


async def test_a_walk_past_its_deadline_sends_nothing_and_says_why() -> None:
    source = tree()
    walk = TreeWalk(ROOT)
    stats = await Listings(source).walk(walk, limits=WalkLimits(10**6, anyio.current_time() - 1))  # type: ignore[arg-type]
    assert source.requests == [] and stats.stopped == "deadline" and not walk.finished


async def test_an_entry_budget_stops_the_walk_before_it_is_overrun_and_the_rest_waits_in_the_frontier() -> None:
    source = tree(branching=3, depth=3, files=4)
    walk = TreeWalk(ROOT)
    stats = await Listings(source, concurrency=8).walk(walk, limits=far_limits(25))  # type: ignore[arg-type]
    assert stats.stopped == "entry_budget" and stats.entries_seen <= 25
    assert walk.frontier and not walk.finished
    stats = await Listings(source, concurrency=8).walk(walk, limits=far_limits())  # type: ignore[arg-type]
    assert walk.finished and stats.entries_seen == sum(len(f) for f in source.folders.values())


@pytest.mark.parametrize("concurrency", [1, 8])
async def test_a_tree_fingerprint_changes_with_any_entry_deep_inside_and_not_with_reading_order(
    concurrency: int,
) -> None:
    async def fingerprint(source: MemoryListings) -> int:
        closed = Closed()
        await Listings(source, concurrency=concurrency).walk(  # type: ignore[arg-type]
            TreeWalk(ROOT, fingerprint=True), limits=far_limits(), on_closed=closed
        )
        return closed.by_path[ROOT].fingerprint

    baseline = await fingerprint(tree())
    assert await fingerprint(tree()) == baseline
    resized = tree()
    resized.folders[f"{ROOT}/dir-2/dir-1/dir-0"]["file-3.dat"].size = 11
    touched = tree()
    touched.folders[f"{ROOT}/dir-0/dir-0"]["file-0.dat"].modified = "2026-11-20 10:00:01"
    renamed = tree()
    renamed.folders[f"{ROOT}/dir-1"]["file-9.dat"] = renamed.folders[f"{ROOT}/dir-1"].pop("file-0.dat")
    assert len({baseline, await fingerprint(resized), await fingerprint(touched), await fingerprint(renamed)}) == 4


# ---------------------------------------------------------------------------------------------- reading a page

ABSENT = object()
FLAGS = [True, False, None, ABSENT, "true"]


@pytest.mark.parametrize("size", [5, 0, -3, None, ABSENT, "12", True])
@pytest.mark.parametrize("mtime", [STAMP, None, ABSENT, 5])
def test_every_shape_of_an_entry_is_read_as_the_wire_model_reads_it(size: object, mtime: object) -> None:
    """The walker reads pages itself (a quick loop for the usual entries, a careful one for the rest): whatever
    the flags, size and time, what it reads is what the wire model reads, or it leaves the page to the model."""
    import itertools

    items = []
    for link, folder, regular, kind in itertools.product(FLAGS, FLAGS, FLAGS, [ABSENT, "file", "d", "l", "pipe"]):
        fields = {
            "isSymbolicLink": link,
            "isDirectory": folder,
            "isRegularFile": regular,
            "type": kind,
            "size": size,
            "lastModifiedTime": mtime,
        }
        items.append({"name": "n", "path": "/x/n", **{k: v for k, v in fields.items() if v is not ABSENT}})
    direct = 0
    for item in items:
        data = {"total": 1, "fileList": [item]}
        read = walk_module.slim_page(data)
        quick = walk_module._usual_entries([item])
        assert quick is None or quick == walk_module._entries([item]), item
        if read is not None:
            direct += 1
            assert read == walk_module._slim(walk_module.EfileApi.parse_list(data)), item
    if size in (5, 0, -3, None) and size is not True and mtime in (STAMP, None):
        assert walk_module._usual_entries([items[0]])  # a link with every field: the quick loop's
    # The usual shapes are read directly; a size or a time of another type never is.
    assert bool(direct) == (size != "12" and size is not True and mtime != 5)
    # A page mixing them all: read directly only if every entry is, and then entry for entry the same.
    whole = walk_module.slim_page({"total": len(items), "fileList": items})
    assert (whole is not None) == (direct == len(items))


@pytest.mark.parametrize("budget", [150, 200, 260, 300])
async def test_pages_held_for_the_start_check_count_against_the_budget(
    monkeypatch: pytest.MonkeyPatch, budget: int
) -> None:
    """Two large folders read at once, their second pages late: what is held unchecked is still reserved,
    so the other folder is never granted past the walk's entry budget."""
    monkeypatch.setattr(walk_module, "LARGE_PAGE", 10)
    monkeypatch.setattr(walk_module, "HUGE_PAGE", 20)
    big = {f"f{i:06d}": Node("file", 1) for i in range(10 + 6 * 20 + 5)}
    folders = {ROOT: {"a": Node("directory"), "b": Node("directory")}, f"{ROOT}/a": dict(big), f"{ROOT}/b": dict(big)}
    source = MemoryListings(folders, late={10: 6})
    walk = TreeWalk(ROOT)
    stats = await Listings(source).walk(walk, limits=far_limits(budget))  # type: ignore[arg-type]
    assert stats.entries_seen <= budget
    stats = await Listings(source).walk(walk, limits=far_limits())  # type: ignore[arg-type]
    assert walk.finished and stats.complete and stats.entries_seen == 2 + 2 * 135


# ------------------------------------------------------------------------------- a folder changed between calls


def _name(i: int) -> str:
    return f"f{i:06d}"


RESUMED_CHANGES: dict[str, tuple[Any, bool]] = {
    # name: (what happens to the folder between the calls, given the index of the last entry read; read whole after)
    "nothing": (lambda names, last: None, True),
    "one file added before the point reached": (lambda names, last: names.update({"a-new": Node("file", 1)}), True),
    "forty added before it": (
        lambda names, last: names.update({f"a{i:03d}": Node("file", 1) for i in range(40)}),
        True,
    ),
    "one file removed before it": (lambda names, last: names.pop(_name(3)), True),
    "ten removed before it": (lambda names, last: [names.pop(_name(i)) for i in range(last - 20, last - 10)], True),
    "the last file read removed": (lambda names, last: names.pop(_name(last)), False),
    "more removed before it than it looks back": (
        lambda names, last: [names.pop(_name(i)) for i in range(last + 1)],
        False,
    ),
    "one added after it": (lambda names, last: names.update({"g-new": Node("file", 1)}), True),
}


@pytest.mark.parametrize("page_cap", [None, 7], ids=["pages-as-asked", "capped-pages"])
@pytest.mark.parametrize("change", list(RESUMED_CHANGES))
async def test_a_folder_read_in_part_resumes_after_the_last_name_read_so_no_entry_is_handed_twice_or_skipped(
    change: str, page_cap: int | None
) -> None:
    """A job writes or removes files in a folder a search is reading across calls: every entry after the last one
    read is handed once, none again (a plan would hold it twice); a folder where that name is gone is marked
    incomplete, not read on from a guessed offset (never read whole by mistake: `whole` says which is right)."""
    source = flat(100, page_cap=page_cap)
    walk = TreeWalk(ROOT, aggregate=False)
    handed: list[str] = []

    def on_entries(folder: str, depth: int, batch: list[Entry]) -> None:
        handed.extend(entry.name for entry in batch)

    await Listings(source).walk(walk, on_entries, limits=far_limits(40))  # type: ignore[arg-type]
    read = len(handed)
    assert 30 <= read <= 40 and handed == [_name(i) for i in range(read)] and walk.frontier
    alter, whole = RESUMED_CHANGES[change]
    alter(source.folders[ROOT], read - 1)
    stats = await Listings(source).walk(walk, on_entries, limits=far_limits())  # type: ignore[arg-type]
    assert walk.finished
    assert len(handed) == len(set(handed)), "an entry handed twice"
    after = sorted(name for name in source.folders[ROOT] if name > _name(read - 1))
    if stats.incomplete_dirs == 0:
        assert handed[read:] == after
    else:
        assert handed[read:] == []
    # Pages capped below the look-back find the name only where it was: a shift marks the folder incomplete.
    assert stats.incomplete_dirs == (0 if whole else 1) or (page_cap is not None and change != "nothing")


async def test_a_resumed_folder_with_only_its_look_back_left_in_the_budget_stops_instead_of_asking_again() -> None:
    """The page a resumed folder begins with reaches back over the last name read: a call whose budget covers no
    more than that makes no progress and must end (the next call reads on), not ask the same page in a loop."""
    source = flat(100)
    walk = TreeWalk(ROOT, aggregate=False)
    await Listings(source).walk(walk, limits=far_limits(40))  # type: ignore[arg-type]
    source.requests.clear()
    stats = await Listings(source).walk(walk, limits=far_limits(1))  # type: ignore[arg-type]
    assert stats.stopped == "entry_budget" and len(source.requests) == 1 and walk.frontier[0][2] == 40
    for _ in range(200):  # two entries a call: the look-back and one more, until the folder's end
        if walk.finished:
            break
        await Listings(source).walk(walk, limits=far_limits(2))  # type: ignore[arg-type]
    assert walk.finished and walk.stats.entries_seen == 100


async def test_a_walk_whose_budget_is_held_by_requests_in_flight_waits_for_them_instead_of_spinning(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Near the end of a budget, the requests in flight hold what is left: a folder started then is granted nothing
    and goes back to the frontier. Started again at once, it spun without end, starving the answers it waited for
    (a call then ran to its deadline, 30 s, for a few listings)."""
    folders: dict[str, dict[str, Node]] = {ROOT: {f"d{i:03d}": Node("directory") for i in range(200)}}
    folders.update({f"{ROOT}/d{i:03d}": {"x.out": Node("file", 1)} for i in range(200)})
    source = MemoryListings(folders, late={0: 200})  # every answer takes 200 turns of the event loop
    refused = 0
    real_grant = walk_module._Gate.grant

    def counting_grant(gate: walk_module._Gate, wanted: int, *, whole: bool = False) -> int:
        nonlocal refused
        granted = real_grant(gate, wanted, whole=whole)
        refused += granted == 0
        return granted

    monkeypatch.setattr(walk_module._Gate, "grant", counting_grant)
    walk = TreeWalk(ROOT, aggregate=False)
    stats = await Listings(source, concurrency=8).walk(walk, limits=far_limits(230))  # type: ignore[arg-type]
    assert stats.stopped == "entry_budget" and not walk.finished
    # At most one wave of starts (2 x concurrency) per answer that freed budget, whatever an answer takes.
    assert refused <= 16 * len(source.requests), f"{refused} starts granted nothing, {len(source.requests)} requests"


@dataclass
class ChangingListings(MemoryListings):
    """The same, where a job changes the folder just before the `at`-th request is answered (1: the second)."""

    at: int = 1
    change: Any = None
    changed: bool = False

    async def list_dir(self, path: str | None = None, **arguments: Any) -> FileListResult:
        if path == ROOT and len(self.requests) == self.at and not self.changed:
            self.changed = True
            self.change(self.folders[ROOT])
        return await super().list_dir(path, **arguments)


WHILE_READ = {
    "a file created before the page asked": lambda names: names.update({"a-new": Node("file", 1)}),
    "three created before it": lambda names: names.update({f"a{i}": Node("file", 1) for i in range(3)}),
    "a file removed before it": lambda names: names.pop(_name(2)),
    "a log rotated (one removed, one created)": lambda names: (names.pop(_name(2)), names.update({"a": Node("file")})),
    "a file created after it": lambda names: names.update({"z-new": Node("file", 1)}),
}


@pytest.mark.parametrize("pages", ["parallel", "capped"])
@pytest.mark.parametrize("at", [1, 3])
@pytest.mark.parametrize("change", list(WHILE_READ))
async def test_a_folder_changed_while_its_pages_are_read_hands_no_entry_twice_and_skips_none_unsaid(
    monkeypatch: pytest.MonkeyPatch, change: str, at: int, pages: str
) -> None:
    """Pages of one reading are answered at different moments: an entry created or removed before a page's offset
    meanwhile moves every later entry. Each page begins with the name read last, so nothing is handed twice; a
    reading that says it is whole holds every entry that was there throughout."""
    monkeypatch.setattr(walk_module, "LARGE_PAGE", 10)
    monkeypatch.setattr(walk_module, "HUGE_PAGE", 20)
    before = {_name(i): Node("file", 1) for i in range(125)}
    source = ChangingListings({ROOT: dict(before)}, page_cap=7 if pages == "capped" else None, at=at)
    source.change = WHILE_READ[change]
    handed: list[str] = []

    def on_entries(folder: str, depth: int, batch: list[Entry]) -> None:
        handed.extend(entry.name for entry in batch)

    walk = TreeWalk(ROOT, aggregate=False)
    stats = await Listings(source).walk(walk, on_entries, limits=far_limits())  # type: ignore[arg-type]
    assert source.changed and walk.finished
    assert len(handed) == len(set(handed)), sorted(name for name in handed if handed.count(name) > 1)
    throughout = set(before) & set(source.folders[ROOT])
    assert set(handed) <= set(before) | set(source.folders[ROOT])
    if stats.incomplete_dirs == 0:
        assert throughout <= set(handed), sorted(throughout - set(handed))
