"""disk_usage's walk (guard/insight.py `UsageWalk`) over an in-memory listing: the ranking and the rest."""

from __future__ import annotations

import json

import anyio
import pytest

from efile_mcp.client.walk import Listings, WalkLimits
from efile_mcp.guard.insight import UsageWalk
from efile_mcp.models.times import parse_server_time

from .test_walk_unit import ROOT, MemoryListings, Node


def stamp(i: int) -> str:
    return f"2026-{1 + i % 12:02d}-{1 + i % 28:02d} 10:{i % 60:02d}:00"


@pytest.mark.parametrize("pages", [1, 7])
async def test_a_large_flat_folder_ranks_its_largest_children_and_sums_every_other_one_exactly(
    monkeypatch: pytest.MonkeyPatch, pages: int
) -> None:
    """Whatever the page a child comes in, the kept children are the largest and the rest holds all others."""
    monkeypatch.setattr(UsageWalk, "KEPT", 20)
    children: dict[str, Node] = {f"f{i:04d}": Node("file", (i * 7919) % 1000, stamp(i)) for i in range(400)}
    children.update({f"l{i:02d}": Node("symlink", 50 + i, stamp(1000 + i)) for i in range(5)})
    children["sub"] = Node("directory", 4096, stamp(7))
    folders = {ROOT: children, f"{ROOT}/sub": {"inner": Node("file", 999_999, stamp(3))}}
    source = MemoryListings(folders, page_cap=len(children) // pages + 1)
    usage = UsageWalk(ROOT)
    stats = await usage.read_on(Listings(source), WalkLimits(10**6, anyio.current_time() + 60))  # type: ignore[arg-type]
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


@pytest.mark.parametrize("pages", [1, 9])
async def test_among_children_of_one_size_the_first_names_are_shown(
    monkeypatch: pytest.MonkeyPatch, pages: int
) -> None:
    """A folder of empty files (markers, locks): the kept rows are its first names, whatever the pages."""
    monkeypatch.setattr(UsageWalk, "KEPT", 20)
    children = {f"e{i:04d}": Node("file", 0, stamp(i)) for i in range(300)}
    children["big"] = Node("file", 10)
    source = MemoryListings({ROOT: children}, page_cap=len(children) // pages + 1)
    usage = UsageWalk(ROOT)
    await usage.read_on(Listings(source), WalkLimits(10**6, anyio.current_time() + 60))  # type: ignore[arg-type]
    rows, rest, rest_count = usage.children()
    assert [name for name, _, _ in rows] == ["big"] + [f"e{i:04d}" for i in range(19)]
    assert (rest_count, rest.files, rest.size) == (281, 281, 0)
    resumed = UsageWalk.from_json(json.loads(json.dumps(usage.to_json())))
    assert [name for name, _, _ in resumed.children()[0]] == [name for name, _, _ in rows]
