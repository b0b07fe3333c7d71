"""Red team: sub-folders recovered from `children` after a cut reading (client/walk.py at 5e6f01e).

`_children_left_out` looks each sub-folder `children` names but no page listed up by name (a keyword page from
offset 0, DOCUMENTED_PAGE entries) and walks it only if that page lists the exact name as a folder; at most
CHILDREN_LOOKED_UP, never more than the gate's room. Attacks: a link walked through, a reading claiming whole, the
budget overrun, names with keyword/glob characters, case. 2 breaks found (a deeper folder of the same name in a
recursive keyword search; look-up pages uncounted), both fixed after bf8b297 and passing now. Sandbox-level attacks use tests/test_removal.py's `world`
and the helpers of tests/e2e/test_redteam_pages.py; walker-level ones its in-memory `Source`.
"""

from __future__ import annotations

import dataclasses
import os
from pathlib import Path
from typing import Any

import anyio
import pytest

from efile_mcp.sandbox.envelope import ok
from efile_mcp.sandbox.file_list import ListingRules, describe, list_folder, parse_query

from ..test_removal import FakeClient, World, request
from ..test_removal import world as world  # the fixture
from .redteam_helpers import (
    _files,
    _listed,
    _scratch,
    _select,
    _sent,
    _server,
    _stored_paths,
    _virtual,
)
from .test_redteam_pages import ROOT, Source, _limits

pytestmark = pytest.mark.anyio


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


# ---------------------------------------------------------------------------- sandbox: links named in `children`


def _rules(world: World) -> ListingRules:
    config = world.sandbox.sandbox.config
    return ListingRules(config.list_max_limit, config.list_page_cap, config.list_ignores_start, config.list_children)


def _java_children(world: World, folder: Path, recursive_keyword: bool = False) -> list[str]:
    """`children` count links to folders (a Java server's isDirectory follows links). `recursive_keyword`: a keyword
    search also answers matches in sub-folders (a server's search), ordered by path as such a search would be."""
    keywords: list[str] = []

    async def fault(endpoint: str, request: Any) -> Any:
        if endpoint != "file/list" or _listed(request).rstrip("/") != _virtual(world, folder):
            return None
        sandbox = world.sandbox.sandbox
        rules = _rules(world)
        query = parse_query(request.query_params, sandbox.home, rules)
        data = await anyio.to_thread.run_sync(list_folder, sandbox.fs, query, rules)
        base = _virtual(world, folder)
        links = sorted(p.name for p in folder.iterdir() if p.is_symlink() and p.is_dir())
        data["children"] += [{"id": f"{base}/{n}", "label": n, "path": f"{base}/{n}"} for n in links]
        if query.keyword:
            keywords.append(query.keyword)
        if recursive_keyword and query.keyword:
            deeper: list[Any] = []
            for sub in sorted(p for p in folder.iterdir() if p.is_dir() and not p.is_symlink()):
                below = dataclasses.replace(query, path=_virtual(world, sub), start=0)
                deeper += (await anyio.to_thread.run_sync(list_folder, sandbox.fs, below, rules))["fileList"]
            items = deeper + data["fileList"]
            items.sort(key=lambda item: item["path"])
            data["fileList"] = items[: query.limit]
            data["total"] = len(items)
        return ok(data)

    world.sandbox.sandbox.fault = fault
    return keywords


async def _preview_and_execute(world: World, relative: str) -> list[str]:
    removal = world.removal(confirm="token")
    answer = await removal.preview(None, _select(world, relative))
    planned = await _stored_paths(world, answer.plan_id) if answer.plan_id else []
    if answer.confirmation_token:
        await removal.execute(request(answer), FakeClient())
    return planned


def _logs(world: World, link: str, **real: int) -> tuple[Path, Path]:
    logs, precious = _scratch(world) / "logs", _scratch(world) / "precious"
    for j in range(4):
        _files(logs / f"job-{j}", 5, prefix="o")
    for name, count in real.items():
        _files(logs / name, count, prefix="o")
    _files(precious, 5, prefix="o")
    (logs / link).symlink_to("../precious")
    return logs, precious


_RECURSIVE_BREAK = (
    "BREAK: _children_left_out takes the first entry of the keyword page whose *name* is the child's, never checking"
    " its `path`: a server whose keyword search also answers matches below the folder (ordered by path) lists"
    " logs/job-0/z-link (a real folder) before logs/z-link (the link), so the link is recovered as a folder and"
    " precious/ is planned and deleted through it. Fix: keep an entry of the look-up only if its `path` is"
    " join(folder, name) (slim entries drop `path`: compare it in the look-up's own read of the page)"
)


# Was a break (fixed after bf8b297; _RECURSIVE_BREAK says how): the look-up now keeps only the entry whose path
# is this folder's, and recovers it only if it is the one entry of that name there and a folder.
async def test_a_link_whose_name_a_deeper_folder_shares_is_not_walked_through(world: World) -> None:
    logs, precious = _logs(world, "z-link")
    _files(logs / "job-0" / "z-link", 1, prefix="d")  # a real folder of the same name, one level down
    _server(world, ignores_start=True, page_cap=3)
    keywords = _java_children(world, logs, recursive_keyword=True)
    planned = await _preview_and_execute(world, "logs")
    assert keywords  # the look-up was made
    assert [p for p in planned if "/logs/z-link/" in p] == []
    assert len(list(precious.iterdir())) == 5
    assert [p for p in _sent(world) if "/logs/z-link/" in p] == []


async def test_a_link_beside_a_folder_differing_in_case_only_is_not_walked_through(world: World) -> None:
    """Held: keyword matching is casefold ('z-Link' finds 'z-link' too), the name compared exactly."""
    logs, precious = _logs(world, "z-Link", **{"z-link": 2})
    _server(world, ignores_start=True, page_cap=3)
    keywords = _java_children(world, logs)
    planned = await _preview_and_execute(world, "logs")
    assert "z-link" in keywords
    assert [p for p in planned if "/logs/z-Link/" in p] == []
    assert len(list(precious.iterdir())) == 5
    assert [p for p in _sent(world) if "/z-Link/" in p] == []


@pytest.mark.parametrize("name", ["z[ab]*?", "z%_link", "z.*link$", "z link\\", "z'\"link"])
async def test_a_link_with_keyword_special_characters_is_not_walked_through(world: World, name: str) -> None:
    """Held: the keyword is the name itself (a substring on the sandbox); a link found by it stays a link."""
    logs, precious = _logs(world, name)
    _server(world, ignores_start=True, page_cap=3)
    keywords = _java_children(world, logs)
    planned = await _preview_and_execute(world, "logs")
    assert name.casefold() in keywords  # the look-up was made
    assert [p for p in planned if f"/logs/{name}/" in p] == []
    assert len(list(precious.iterdir())) == 5


async def test_a_link_whose_name_is_in_many_names_is_not_walked_through(world: World) -> None:
    """Held: the link 'zo' is in the names of files sorted around it (yzo*.out before it), beyond the capped keyword
    page: not recovered."""
    logs, precious = _logs(world, "zo")
    _files(logs, 6, prefix="yzo")
    _server(world, ignores_start=True, page_cap=3)
    keywords = _java_children(world, logs)
    planned = await _preview_and_execute(world, "logs")
    assert "zo" in keywords
    assert [p for p in planned if "/logs/zo/" in p] == []
    assert len(list(precious.iterdir())) == 5


# ---------------------------------------------------------------------------- the walker alone


def _served(source: Source) -> list[int]:
    counts: list[int] = []

    def edit(items: list[Any], start: int, limit: int) -> list[Any]:
        counts.append(len(items))
        return items

    source.edit = edit
    return counts


_LOOKUP_BUDGET_BREAK = (
    "BREAK: the look-ups of `_children_left_out` are granted from the gate and settled, but the entries their keyword"
    " pages bring are never counted (entries_seen), and a look-up that finds nothing takes no room: a walk of"
    " max_entries 300 over a folder (server ignoring start, pages capped at 100) of 300 files whose 64 sub-folders'"
    " names are in every file's name (so no look-up finds its name) makes 66 requests and is served 6600 entries,"
    " 22 times its budget (with max_entries 50000 and no cap: 74064). Fix: count each look-up's raw entries in"
    " stats.entries_seen (settle then count, as pages are), and stop the look-ups when the gate's room is spent"
)


# Was a break (fixed after bf8b297; _LOOKUP_BUDGET_BREAK says how): each look-up's page is counted against the budget.
async def test_children_look_ups_stay_within_the_entry_budget() -> None:
    from efile_mcp.client.walk import Listings, TreeWalk

    tags = "".join(f"d{j:02d}" for j in range(64))
    folder: dict[str, int] = {f"a{i:04d}-{tags}.out": 1 for i in range(300)}
    folder.update({f"d{j:02d}/": 0 for j in range(64)})
    folders = {ROOT: folder}
    folders.update({f"{ROOT}/d{j:02d}": {"x": 1} for j in range(64)})
    source = Source(folders, ignores_start=True, cap=100)
    served = _served(source)
    walk = TreeWalk(ROOT, aggregate=False)
    stats = await Listings(source, keep=False).walk(walk, limits=_limits(300))  # type: ignore[arg-type]
    assert stats.incomplete_dirs >= 1  # never whole
    assert sum(served) <= 300 + 100, (sum(served), len(served), stats.entries_seen)


async def test_a_sub_folder_beyond_its_keyword_page_leaves_the_folder_incomplete() -> None:
    """Held: a real sub-folder whose look-up does not find it (capped page, many names holding its name) is not
    walked, and the folder is not claimed whole."""
    from efile_mcp.client.walk import Listings, TreeWalk

    folder: dict[str, int] = {f"a{i:02d}-zz.out": 1 for i in range(20)}
    folder["zz/"] = 0
    folders = {ROOT: folder, f"{ROOT}/zz": {"x": 1}}
    source = Source(folders, ignores_start=True, cap=5)
    walk = TreeWalk(ROOT, aggregate=False)
    handed: list[str] = []

    def on_entries(path: str, depth: int, batch: list[Any]) -> None:
        handed.extend(f"{path}/{entry.name}" for entry in batch)

    stats = await Listings(source, keep=False).walk(walk, on_entries, limits=_limits(10**6))  # type: ignore[arg-type]
    assert stats.incomplete_dirs >= 1
    assert len(handed) == len(set(handed))


async def test_a_recovered_sub_folder_is_handed_once_across_resumed_calls() -> None:
    """Held: a sequential walk (find_paths' paging) in small budgets over a cut folder whose sub-folders are
    recovered: no entry handed twice, and the walk ends."""
    from efile_mcp.client.walk import Listings, TreeWalk

    folder: dict[str, int] = {f"f{i:02d}": 1 for i in range(12)}
    folder.update({f"s{j}/": 0 for j in range(6)})
    folders = {ROOT: folder}
    folders.update({f"{ROOT}/s{j}": {f"x{k}": 1 for k in range(4)} for j in range(6)})
    source = Source(folders, ignores_start=True, cap=4)
    walk = TreeWalk(ROOT, aggregate=False)
    handed: list[str] = []

    def on_entries(path: str, depth: int, batch: list[Any]) -> int | None:
        handed.extend(f"{path}/{entry.name}" for entry in batch[:2])
        return 2 if len(batch) > 2 else None

    calls = 0
    for _ in range(200):
        calls += 1
        await Listings(source, keep=False).walk(  # type: ignore[arg-type]
            walk, on_entries, limits=_limits(10**6), sequential=True
        )
        if walk.finished:
            break
    assert walk.finished, calls
    assert len(handed) == len(set(handed)), sorted(h for h in handed if handed.count(h) > 1)


# ---------------------------------------------------------------------------- a server listing '..'


def _dot_dot_listed(world: World, folder: Path, in_pages: bool) -> list[str]:
    """A server listing '..' as a folder (an `ls -a` behind it): in `children`, and in every page (`in_pages`) or in
    keyword pages only; a path ending in '/..' is answered as the folder above, as a server resolving it would."""
    sandbox = world.sandbox.sandbox
    base = _virtual(world, folder)
    above: list[str] = []

    async def fault(endpoint: str, request: Any) -> Any:
        if endpoint != "file/list":
            return None
        listed = _listed(request).rstrip("/")
        rules = _rules(world)
        if listed == f"{base}/..":
            above.append(listed)
            params = dict(request.query_params)
            params["path"] = _virtual(world, folder.parent)
            query = parse_query(params, sandbox.home, rules)
            return ok(await anyio.to_thread.run_sync(list_folder, sandbox.fs, query, rules))
        if listed != base:
            return None
        query = parse_query(request.query_params, sandbox.home, rules)
        data = await anyio.to_thread.run_sync(list_folder, sandbox.fs, query, rules)
        data["children"] = [*data["children"], {"id": f"{base}/..", "label": "..", "path": f"{base}/.."}]
        if in_pages or query.keyword:
            item = describe(f"{base}/..", "..", os.stat(folder.parent, follow_symlinks=False))
            data["fileList"] = [item, *data["fileList"]][: query.limit]
            data["total"] += 1
        return ok(data)

    sandbox.fault = fault
    return above


@pytest.mark.parametrize("in_pages", [True, False])
async def test_a_folder_listed_as_dot_dot_is_not_planned_nor_deleted_through(world: World, in_pages: bool) -> None:
    logs, precious = _logs(world, "z-link")
    _server(world, ignores_start=True, page_cap=3)
    _dot_dot_listed(world, logs, in_pages)  # (the walker does list logs/..: 4 requests; the plan drops it)
    planned = await _preview_and_execute(world, "logs")
    assert [p for p in planned if "/.." in p] == []
    assert len(list(precious.iterdir())) == 5
    assert [p for p in _sent(world) if "/.." in p] == []


async def test_look_ups_after_a_cut_are_bounded_outside_a_walk() -> None:
    """Held (a cost noted): `entries` (the dry run's and execution's look-ups) reads a cut parent whole through
    read_dir, which has no gate: its `children` look-ups are bounded by CHILDREN_LOOKED_UP alone (here 64 more
    requests than without sub-folders, for 5 names of one folder)."""
    from efile_mcp.client.walk import CHILDREN_LOOKED_UP, Listings

    counts = []
    for dirs in (0, 200):
        folder: dict[str, int] = {f"a{i:03d}.out": 1 for i in range(20)}
        folder.update({f"d{j:03d}/": 0 for j in range(dirs)})
        source = Source({ROOT: folder}, ignores_start=True, cap=3)
        found = await Listings(source).entries([f"{ROOT}/a{i:03d}.out" for i in range(15, 20)])  # type: ignore[arg-type]
        assert all(entry is not None and not isinstance(entry, Exception) for entry in found.values())
        counts.append(len(source.requests))
    assert counts[1] - counts[0] <= CHILDREN_LOOKED_UP, counts
