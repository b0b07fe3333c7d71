"""disk_usage's walk (guard/insight.py `UsageWalk`) over an in-memory listing: the ranking and the rest."""

from __future__ import annotations

import json

import anyio
import pytest

from efile_mcp.client import walk as walk_module
from efile_mcp.client.walk import Listings, WalkLimits
from efile_mcp.guard.insight import Totals, UsageWalk
from efile_mcp.models.times import parse_server_time

from .test_walk_unit import ROOT, DataListings, MemoryListings, Node

#: The listing as the wire model (every entry made) and as decoded JSON (pages of files summed, not made).
SOURCES = [MemoryListings, DataListings]


@pytest.fixture
def files_pages(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """How many pages were read as pages of files (without an entry each)."""
    read: list[int] = []
    real = walk_module.files_page

    def counting(data: object, floor: walk_module.Floor, lead: bool = False) -> object:
        page = real(data, floor, lead)
        if page is not None:
            read.append(len(page[0]))
        return page

    monkeypatch.setattr(walk_module, "files_page", counting)
    return read


def stamp(i: int) -> str:
    return f"2026-{1 + i % 12:02d}-{1 + i % 28:02d} 10:{i % 60:02d}:00"


@pytest.mark.parametrize("source_type", SOURCES)
@pytest.mark.parametrize("pages", [1, 7])
async def test_a_large_flat_folder_ranks_its_largest_children_and_sums_every_other_one_exactly(
    monkeypatch: pytest.MonkeyPatch, pages: int, source_type: type[MemoryListings], files_pages: list[int]
) -> None:
    """Whatever the page a child comes in, the kept children are the largest and the rest holds all others."""
    monkeypatch.setattr(UsageWalk, "KEPT", 20)
    children: dict[str, Node] = {f"f{i:04d}": Node("file", (i * 7919) % 1000, stamp(i)) for i in range(400)}
    children.update({f"l{i:02d}": Node("symlink", 50 + i, stamp(1000 + i)) for i in range(5)})
    children["sub"] = Node("directory", 4096, stamp(7))
    folders = {ROOT: children, f"{ROOT}/sub": {"inner": Node("file", 999_999, stamp(3))}}
    source = source_type(folders, page_cap=len(children) // pages + 1)
    usage = UsageWalk(ROOT)
    stats = await usage.read_on(Listings(source, keep=False), WalkLimits(10**6, anyio.current_time() + 60))  # type: ignore[arg-type]
    assert stats.complete
    rows, rest, rest_count = usage.children()
    sized = {name: (node.size if node.kind == "file" else 0) for name, node in children.items() if name != "sub"}
    sized["sub"] = 999_999
    largest = sorted(sized, key=lambda name: (-sized[name], name))[:20]
    assert [name for name, _, _ in rows] == largest
    others = [name for name in sized if name not in largest]
    assert rest_count == len(others) == 406 - 20
    assert rest.size == sum(sized[name] for name in others)
    assert rest.files == sum(1 for name in others if children[name].kind == "file")
    assert rest.links == sum(1 for name in others if children[name].kind == "symlink")
    assert rest.newest == max(parse_server_time(children[name].modified) or 0 for name in others)
    total = usage.total
    assert (total.size, total.files, total.dirs, total.links) == (sum(sized.values()), 401, 1, 5)
    # What the state store keeps reads back the same.
    again = UsageWalk.from_json(json.loads(json.dumps(usage.to_json())))
    assert again.children()[1:] == (rest, rest_count)
    # Pages of files only (the sub-folder's, the root's before its links) were summed, not read entry by entry.
    assert bool(files_pages) == (source_type is DataListings)


@pytest.mark.parametrize("source_type", SOURCES)
@pytest.mark.parametrize("pages", [1, 9])
async def test_among_children_of_one_size_the_first_names_are_shown(
    monkeypatch: pytest.MonkeyPatch, pages: int, source_type: type[MemoryListings], files_pages: list[int]
) -> None:
    """A folder of empty files (markers, locks): the kept rows are its first names, whatever the pages."""
    monkeypatch.setattr(UsageWalk, "KEPT", 20)
    children = {f"e{i:04d}": Node("file", 0, stamp(i)) for i in range(300)}
    children["big"] = Node("file", 10)
    source = source_type({ROOT: children}, page_cap=len(children) // pages + 1)
    usage = UsageWalk(ROOT)
    await usage.read_on(Listings(source, keep=False), WalkLimits(10**6, anyio.current_time() + 60))  # type: ignore[arg-type]
    rows, rest, rest_count = usage.children()
    assert [name for name, _, _ in rows] == ["big"] + [f"e{i:04d}" for i in range(19)]
    assert (rest_count, rest.files, rest.size) == (281, 281, 0)
    resumed = UsageWalk.from_json(json.loads(json.dumps(usage.to_json())))
    assert [name for name, _, _ in resumed.children()[0]] == [name for name, _, _ in rows]
    assert sum(files_pages) == (301 if source_type is DataListings else 0)  # every page read as files


@pytest.mark.parametrize("source_type", SOURCES)
@pytest.mark.parametrize("pages", [1, 6])
async def test_folders_and_files_of_one_size_rank_by_files_then_name(
    monkeypatch: pytest.MonkeyPatch, pages: int, source_type: type[MemoryListings]
) -> None:
    """A folder's size is its tree's: a folder of two 5-byte files ranks with the 10-byte files, above them
    (more files), and the kept rows are the same however the pages were read."""
    monkeypatch.setattr(UsageWalk, "KEPT", 20)
    children = {f"f{i:03d}": Node("file", 9 + i % 2, stamp(i)) for i in range(300)}
    children.update({f"d{i:02d}": Node("directory", 4096) for i in range(30)})
    folders = {ROOT: children} | {f"{ROOT}/d{i:02d}": {"x": Node("file", 5), "y": Node("file", 5)} for i in range(30)}
    source = source_type(folders, page_cap=len(children) // pages + 1)
    usage = UsageWalk(ROOT)
    await usage.read_on(Listings(source, keep=False), WalkLimits(10**6, anyio.current_time() + 60))  # type: ignore[arg-type]
    rows, rest, rest_count = usage.children()
    key = {name: (node.size, 1) for name, node in children.items() if node.kind == "file"}
    key.update({f"d{i:02d}": (10, 2) for i in range(30)})
    largest = sorted(key, key=lambda name: (-key[name][0], -key[name][1], name))[:20]
    assert [name for name, _, _ in rows] == largest
    assert (rest_count, rest.size) == (330 - 20, sum(key[name][0] for name in key if name not in largest))


@pytest.mark.parametrize("floor_files", [0, 1, 2])
def test_a_page_of_files_sums_exactly_what_the_ranking_would_not_keep(
    monkeypatch: pytest.MonkeyPatch, floor_files: int
) -> None:
    """Read against the ranking's floor, a file is summed without an entry iff ranking it would leave it out."""
    monkeypatch.setattr(UsageWalk, "KEPT", 1)
    usage = UsageWalk(ROOT)
    usage._rank("m", "directory" if floor_files != 1 else "file", Totals(size=5, files=floor_files))
    items = [
        {"name": name, "path": f"{ROOT}/{name}", "size": size, "lastModifiedTime": None}
        | {"isRegularFile": True, "isDirectory": False, "isSymbolicLink": False}
        for size in (4, 5, 6)
        for name in ("a", "m", "z")
    ]
    read = walk_module.files_page({"total": len(items), "fileList": items}, usage.floor(0))
    assert read is not None
    above = {entry.name + str(entry.size) for entry in read[0].above}
    floor_key = usage.ranked[0][:3]
    for item in items:
        ranked = (item["size"], 1, type(floor_key[2])(item["name"])) > floor_key
        assert (item["name"] + str(item["size"]) in above) == ranked, (item, floor_key)
