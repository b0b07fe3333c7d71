"""Red team: the walker's page edges (client/walk.py at 47c5bfc + 3b54223).

Every later page of a reading is asked from one entry before its offset and must hold the name handed last
(`_after_edge`); the pages of a large folder read in parallel are handed in order; a `FilesPage` (disk_usage)
keeps its first entry apart as `lead`; a reading resumed in a later call looks back RESUME_OVERLAP entries;
`children` recover only sub-folders no page listed.

Each test is one attempt; a held attempt is a passing test asserting the safe outcome. The 7 breaks found (14
tests: a link named in `children` planned and deleted through; readings ended early and whole on a server ignoring
`start` while the first file goes, or listing an edge name twice, in one call or resumed; a FilesPage's lead listed
twice counted twice; `children` recovered past the budget; a name listed twice inside a page handed twice) were
fixed after 0f95b02 and are passing tests now; the `_..._BREAK` texts below say what broke. Sandbox-level attacks use tests/test_removal.py's `world`; walker-level
ones an in-memory listing source (tests/test_walk_unit.py's MemoryListings).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import anyio
import pytest

from efile_mcp.sandbox.envelope import ok
from efile_mcp.sandbox.file_list import ListingRules, list_folder, parse_query

from ..test_removal import FakeClient, World, request
from ..test_removal import world as world  # the fixture
from .redteam_helpers import (
    _files,
    _listed,
    _read_on,
    _scratch,
    _select,
    _sent,
    _server,
    _start_of,
    _stored_paths,
    _twice,
    _virtual,
)

pytestmark = pytest.mark.anyio


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


# ---------------------------------------------------------------------------- helpers


async def _answer(world: World, request: Any, edit: Any = None) -> Any:
    """The sandbox's own answer to a file/list request, `edit`ed (data -> None) before it goes."""
    sandbox = world.sandbox.sandbox
    config = sandbox.config
    rules = ListingRules(config.list_max_limit, config.list_page_cap, config.list_ignores_start, config.list_children)
    query = parse_query(request.query_params, sandbox.home, rules)
    data = await anyio.to_thread.run_sync(list_folder, sandbox.fs, query, rules)
    if edit is not None:
        edit(data, query)
    return ok(data)


# ---------------------------------------------------------------------------- `children` naming a link after a cut


def _children_name_links_too(world: World, folder: Path) -> None:
    """A server whose `children` count a link to a folder among the sub-folders (a Java server's isDirectory
    follows links), as tests/e2e/test_redteam_resume.py plays it."""

    def with_links(data: Any, query: Any) -> None:
        base = _virtual(world, folder)
        links = sorted(p.name for p in folder.iterdir() if p.is_symlink() and p.is_dir())
        data["children"] += [{"id": f"{base}/{n}", "label": n, "path": f"{base}/{n}"} for n in links]

    async def fault(endpoint: str, request: Any) -> Any:
        if endpoint != "file/list" or _listed(request).rstrip("/") != _virtual(world, folder):
            return None
        return await _answer(world, request, with_links)

    world.sandbox.sandbox.fault = fault


def _logs_with_a_late_link(world: World) -> tuple[Path, Path]:
    logs, precious = _scratch(world) / "logs", _scratch(world) / "precious"
    for j in range(4):
        _files(logs / f"job-{j}", 5, prefix="o")
    _files(precious, 5, prefix="o")
    (logs / "z-link").symlink_to("../precious")  # sorts last: beyond the page a cut reading read
    return logs, precious


async def test_a_link_named_in_children_beyond_a_cut_page_is_not_planned_through(world: World) -> None:
    logs, _ = _logs_with_a_late_link(world)
    _server(world, ignores_start=True, page_cap=3)
    _children_name_links_too(world, logs)
    removal = world.removal(confirm="token")
    answer = await removal.preview(None, _select(world, "logs"))
    planned = await _stored_paths(world, answer.plan_id) if answer.plan_id else []
    assert [p for p in planned if "/z-link/" in p] == []


async def test_a_link_named_in_children_beyond_a_cut_page_is_not_deleted_through(world: World) -> None:
    logs, precious = _logs_with_a_late_link(world)
    _server(world, ignores_start=True, page_cap=3)
    _children_name_links_too(world, logs)
    removal = world.removal(confirm="token")
    answer = await removal.preview(None, _select(world, "logs"))
    if answer.confirmation_token:
        await removal.execute(request(answer), FakeClient())
    assert len(list(precious.iterdir())) == 5
    assert [p for p in _sent(world) if "/z-link/" in p] == []


# Was a break: a folder read incompletely (a server ignoring `start`, pages of 3) whose `children` name a link to a
# folder that sorts after everything its one page listed: no page listed the link, so `_stream` recovers it from
# `children` as a folder (Entry(name, "directory")). The walk reads through it (the server lists the link's target),
# and the dry run's look-ups (a reader of their own, `read_dir`) recover it the same way, so no link is seen on the
# way: precious/'s files are planned as logs/z-link/*; execution's fresh check (`read_dir` again) recovers it too and
# sends them: 3 of precious/'s 5 files are deleted through the link.
_LINK_BREAK = (
    "BREAK: a link named in `children` that no page of a cut reading listed (it sorts after the cut) is recovered as a"
    " folder by _stream, by the walk and by read_dir alike: the dry run plans the link target's files as z-link/* and"
    " execution deletes them (3 of precious/'s 5 gone)"
)


# ---------------------------------------------------------------------------- the walker alone, timed changes
# An in-memory source (tests/test_walk_unit.py's model) answering pages in name order, with a change applied to the
# folder just before the n-th request is answered and page offsets answered late (parallel pages out of order).

ROOT = "/public/home/u"
STAMP = "2026-11-20 10:00:00"


class Source:
    """`file/list` over {name: size} for ROOT (and sub-folders {path: {name: size}}); a name ending in '/' is a folder.

    `changes`: {request index: f(names)} applied before that request is answered. `late`: {start: turns}. `cap`:
    the server's page cap. `ignores_start`. `edit`: f(items, start, limit) -> items, the server's own quirk."""

    def __init__(self, folders: dict[str, dict[str, int]], **options: Any) -> None:
        self.folders = folders
        self.cap: int | None = options.get("cap")
        self.ignores_start: bool = options.get("ignores_start", False)
        self.changes: dict[int, Any] = options.get("changes", {})
        self.late: dict[int, int] = options.get("late", {})
        self.edit: Any = options.get("edit")
        self.children_extra: dict[str, list[str]] = options.get("children_extra", {})
        self.requests: list[tuple[str, int, int]] = []

    async def list_dir_data(
        self, path: str | None = None, *, keyword: str | None = None, start: int = 0, limit: int = 100, **_: Any
    ) -> object:
        assert path is not None
        index = len(self.requests)
        self.requests.append((path, start, limit))
        await anyio.sleep(0)
        for _turn in range(self.late.get(start, 0)):
            await anyio.sleep(0)
        change = self.changes.pop(index, None)
        if change is not None:
            change(self.folders)
        folder = self.folders[path]
        names = sorted(n for n in folder if keyword is None or keyword in n.rstrip("/"))
        begin = 0 if self.ignores_start else start
        size = min(limit, self.cap or limit)
        items = [self._item(path, n, folder[n]) for n in names[begin : begin + size]]
        if self.edit is not None:
            items = self.edit(items, start, limit)
        children = [{"path": f"{path}/{n.rstrip('/')}"} for n in names if n.endswith("/")]
        children += [{"path": f"{path}/{n}"} for n in self.children_extra.get(path, [])]
        return {"total": len(names), "path": path, "fileList": items, "children": children}

    @staticmethod
    def _item(folder: str, name: str, size: int) -> dict[str, Any]:
        directory = name.endswith("/")
        return {
            "name": name.rstrip("/"),
            "path": f"{folder}/{name.rstrip('/')}",
            "size": size,
            "isDirectory": directory,
            "isRegularFile": not directory,
            "isSymbolicLink": False,
            "lastModifiedTime": STAMP,
        }

    async def list_dir(self, path: str | None = None, **arguments: Any) -> Any:
        from efile_mcp.models.wire import FileListResult

        return FileListResult.model_validate(await self.list_dir_data(path, **arguments))

    @staticmethod
    def parse_list(data: object) -> Any:
        from efile_mcp.models.wire import FileListResult

        return FileListResult.model_validate(data)


def _limits(entries: int = 10**9) -> Any:
    from efile_mcp.client.walk import WalkLimits

    return WalkLimits(entries, anyio.current_time() + 3600)


class Names:
    """A summary whose floor makes every file an entry (all above it): the names a FilesPage counted."""

    def __init__(self) -> None:
        self.files: list[str] = []
        self.size = 0
        self.pages = 0

    def floor(self, depth: int) -> Any:
        return (-1.0, None)

    def on_files(self, folder: str, depth: int, page: Any) -> None:
        self.pages += 1
        self.files += [entry.name for entry in page.above]
        self.size += page.totals().size


async def _read(source: Source, mode: str, budgets: list[int]) -> tuple[list[str], Any, Any]:
    """Reads ROOT (flat) in `mode` ('entries' parallel, 'sequential', 'files': FilesPages), a call per budget then
    to the end: (names handed in order, the walk's stats, the walk)."""
    from efile_mcp.client.walk import Listings, TreeWalk

    handed: list[str] = []
    summary = Names() if mode == "files" else None

    def on_entries(folder: str, depth: int, batch: list[Any]) -> None:
        handed.extend(join_name(folder, entry.name) for entry in batch)

    walk = TreeWalk(ROOT, aggregate=False)
    stats = None
    for budget in [*budgets, 10**9]:
        stats = await Listings(source, keep=False).walk(  # type: ignore[arg-type]
            walk, on_entries, limits=_limits(budget), sequential=mode == "sequential", summary=summary
        )
        if walk.finished:
            break
    if summary is not None:
        handed += [f"{ROOT}/{name}" for name in summary.files]
    return handed, stats, walk


def join_name(folder: str, name: str) -> str:
    return f"{folder}/{name}"


# ---------------------------------------------------------------------------- offsets trusted after a placement
# `_hand_later` (and `drain` in `_parallel_pages`) place a page after the last copy of the name handed last, wherever
# it is in the page, then move the reading on by what the server answered (`read += raw - 1`) and end it when that
# offset reaches the total. The offset is only right when the page began exactly at the name; otherwise the reading
# ends early and says it is whole.


def _rotates_first_file_at_second_listing(world: World, folder: Path) -> list[str]:
    """A job removes the folder's first file just before its second page is answered (a log rotated away)."""
    done: list[str] = []

    async def rotate(endpoint: str, request: Any) -> None:
        here = endpoint == "file/list" and _listed(request).rstrip("/").endswith(folder.name)
        if here and _start_of(request) > 0 and not done:
            first = sorted(folder.iterdir())[0]
            first.unlink()
            done.append(first.name)

    world.sandbox.sandbox.fault = rotate
    return done


_IGNORED_START_BREAK = (
    "BREAK: a server ignoring `start` (pages capped at 7) while the folder's first file is removed: the second page"
    " (the first page again, one name on) does not begin with the first page's names, so it is trusted; the last name"
    " read (f006) is found 5 places in, f007 is handed, `read += raw - 1` jumps to 13 >= the total 8 and the reading"
    " ends whole: f008, there throughout, is never read and nothing says incomplete"
)


async def test_a_dry_run_on_a_server_ignoring_start_while_the_first_file_goes_plans_every_file_or_says_incomplete(
    world: World,
) -> None:
    folder = _scratch(world) / "batch"
    _files(folder, 9)
    _server(world, ignores_start=True, page_cap=7)
    rotated = _rotates_first_file_at_second_listing(world, folder)
    removal = world.removal(confirm="token")
    answer, _ = await _read_on(removal, await removal.preview(None, _select(world, "batch")))
    assert rotated and answer.plan_id
    planned = await _stored_paths(world, answer.plan_id)
    assert _twice(planned) == []
    if "incomplete" not in answer.next_step:
        assert {_virtual(world, p) for p in folder.iterdir()} <= set(planned), sorted(planned)


async def test_find_paths_on_a_server_ignoring_start_while_the_first_file_goes_lists_every_file_or_says_incomplete(
    world: World,
) -> None:
    folder = _scratch(world) / "found"
    _files(folder, 9)
    _server(world, ignores_start=True, page_cap=7)
    rotated = _rotates_first_file_at_second_listing(world, folder)
    answer = await world.guard.find(_select(world, "found"), limit=500, cursor=None)
    listed = [m.path for m in answer.matches]
    while answer.next_cursor:
        answer = await world.guard.find(_select(world, "found"), limit=500, cursor=answer.next_cursor)
        listed += [m.path for m in answer.matches]
    assert rotated and _twice(listed) == []
    if answer.complete:
        assert {_virtual(world, p) for p in folder.iterdir()} <= set(listed), sorted(listed)


async def test_a_usage_on_a_server_ignoring_start_while_the_first_file_goes_is_right_or_incomplete(
    world: World,
) -> None:
    """Held: disk_usage reads the later pages as FilesPages, whose lead (f000 again) is not the name read last."""
    folder = _scratch(world) / "usage"
    _files(folder, 9)
    _server(world, ignores_start=True, page_cap=7)
    rotated = _rotates_first_file_at_second_listing(world, folder)
    answer = await world.guard.usage(_virtual(world, folder), top=3, max_entries=100_000)
    assert rotated and answer.resume is None
    if answer.complete:
        assert (answer.file_count, answer.total_size) == (8, sum(range(2, 10)))


def _lists_a_name_twice(
    world: World, folder: Path, name: str, *, first: bool = False, first_page: bool = False
) -> list[int]:
    """A server that lists `name` twice in the pages after the first (an object store listing two versions of one key,
    a replica merging two views), as tests/e2e/test_redteam_resume.py plays it; `first`: only when `name` begins the
    page (a later page's lead)."""
    served: list[int] = []

    def twice(data: Any, query: Any) -> None:
        page = data["fileList"]
        for at, entry in enumerate(page):
            if entry["name"] == name and (at == 0 or not first):
                page.insert(at + 1, dict(entry))
                served.append(query.start)
                break

    async def fault(endpoint: str, request: Any) -> Any:
        if endpoint != "file/list" or not _listed(request).rstrip("/").endswith(folder.name):
            return None
        if (_start_of(request) == 0) != first_page:
            return None
        return await _answer(world, request, twice)

    world.sandbox.sandbox.fault = fault
    return served


_TWICE_BREAK = (
    "BREAK: a later page listing the name read last twice (the premise of test_redteam_resume's marker-twice test) is"
    " one entry longer than the offsets it covers: it is placed after the last copy, but `read += raw - 1` moves the"
    " reading one place too far (40 of 40 after f038): the reading ends whole and f039, the folder's last file, is"
    " never read; nothing says incomplete"
)


async def test_a_dry_run_whose_server_lists_an_edge_name_twice_plans_every_file_or_says_incomplete(
    world: World,
) -> None:
    folder = _scratch(world) / "batch"
    _files(folder, 40)
    _server(world, page_cap=20)
    served = _lists_a_name_twice(world, folder, "f019.out")
    removal = world.removal(confirm="token")
    answer, _ = await _read_on(removal, await removal.preview(None, _select(world, "batch")))
    assert served and answer.plan_id
    planned = await _stored_paths(world, answer.plan_id)
    assert _twice(planned) == []
    if "incomplete" not in answer.next_step:
        assert len(set(planned)) == 40, sorted({_virtual(world, p) for p in folder.iterdir()} - set(planned))


async def test_find_paths_whose_server_lists_an_edge_name_twice_lists_every_file_or_says_incomplete(
    world: World,
) -> None:
    folder = _scratch(world) / "found"
    _files(folder, 40)
    _server(world, page_cap=20)
    served = _lists_a_name_twice(world, folder, "f019.out")
    answer = await world.guard.find(_select(world, "found"), limit=500, cursor=None)
    listed = [m.path for m in answer.matches]
    while answer.next_cursor:
        answer = await world.guard.find(_select(world, "found"), limit=500, cursor=answer.next_cursor)
        listed += [m.path for m in answer.matches]
    assert served and _twice(listed) == []
    if answer.complete:
        assert len(set(listed)) == 40


# ---------------------------------------------------------------------------- a FilesPage's lead listed twice


# Was a break (fixed after 0f95b02): disk_usage's FilesPage checked only its lead against the name read last and
# summed the rest whole: a last page listing its lead twice counted it twice and ended whole. A FilesPage whose lead
# is listed twice is read as entries now (placed after the last copy).
async def test_a_usage_whose_last_page_lists_its_lead_twice_counts_each_file_once(world: World) -> None:
    folder = _scratch(world) / "usage"
    _files(folder, 50)
    _server(world, page_cap=20)
    served = _lists_a_name_twice(world, folder, "f038.out", first=True)
    answer = await world.guard.usage(_virtual(world, folder), top=3, max_entries=100_000)
    assert served and answer.resume is None
    if answer.complete:
        assert (answer.file_count, answer.total_size) == (50, sum(range(1, 51)))


async def test_find_paths_whose_last_page_lists_its_lead_twice_lists_each_file_once(world: World) -> None:
    """Held: a page of entries is placed after the last copy of the name read last."""
    folder = _scratch(world) / "found"
    _files(folder, 50)
    _server(world, page_cap=20)
    served = _lists_a_name_twice(world, folder, "f038.out", first=True)
    answer = await world.guard.find(_select(world, "found"), limit=500, cursor=None)
    listed = [m.path for m in answer.matches]
    while answer.next_cursor:
        answer = await world.guard.find(_select(world, "found"), limit=500, cursor=answer.next_cursor)
        listed += [m.path for m in answer.matches]
    assert served and _twice(listed) == []
    if answer.complete:
        assert len(set(listed)) == 50


# ---------------------------------------------------------------------------- the walker alone: budgets, held grid


# Was a break (fixed after 0f95b02): sub-folders recovered from `children` after a cut reading were handed with no
# grant from the budget (500 recovered with max_entries 50). Now each is looked up by name first, at most
# CHILDREN_LOOKED_UP and never more than the budget's room.
async def test_sub_folders_recovered_from_children_stay_within_the_entry_budget() -> None:
    from efile_mcp.client.walk import Listings, TreeWalk

    folders = {ROOT: {f"d{i:03d}/": 0 for i in range(500)}}
    folders.update({f"{ROOT}/d{i:03d}": {"x": 1} for i in range(500)})
    source = Source(folders, cap=7, ignores_start=True)
    walk = TreeWalk(ROOT, aggregate=False)
    stats = await Listings(source, keep=False).walk(walk, limits=_limits(50))  # type: ignore[arg-type]
    assert stats.entries_seen <= 50 + 7 and len(walk.frontier) <= 50 + 7, (stats.entries_seen, len(walk.frontier))


async def test_sub_folders_a_capped_reading_honouring_start_lists_stay_within_the_entry_budget() -> None:
    """Held: the same folder on a server that honours `start`: every page is granted, the walk stops at its budget."""
    from efile_mcp.client.walk import Listings, TreeWalk

    folders = {ROOT: {f"d{i:03d}/": 0 for i in range(500)}}
    folders.update({f"{ROOT}/d{i:03d}": {"x": 1} for i in range(500)})
    source = Source(folders, cap=7)
    walk = TreeWalk(ROOT, aggregate=False)
    stats = await Listings(source, keep=False).walk(walk, limits=_limits(50))  # type: ignore[arg-type]
    assert stats.entries_seen <= 50 and stats.stopped == "entry_budget"


def _name(i: int) -> str:
    return f"f{i:03d}"


def _change(kind: str, n: int) -> Any:
    folder = ROOT

    def apply(folders: dict[str, dict[str, int]]) -> None:
        names = folders[folder]
        if kind == "add before":
            names["a-new"] = 1
        elif kind == "add three before":
            names.update({f"a{i}": 1 for i in range(3)})
        elif kind == "remove before":
            names.pop(_name(2), None)
        elif kind == "rotate":
            names.pop(_name(0), None)
            names["z-new"] = 1
        elif kind == "remove at an edge":
            names.pop(_name(9), None)
            names.pop(_name(28), None)
        elif kind == "add at an edge":
            names[_name(9) + "x"] = 1
        elif kind == "remove the second half":
            for i in range(n // 2, n):
                names.pop(_name(i), None)
        elif kind == "add a page before":
            names.update({f"a{i:03d}": 1 for i in range(25)})

    return apply


CHANGES = [
    "add before",
    "add three before",
    "remove before",
    "rotate",
    "remove at an edge",
    "add at an edge",
    "remove the second half",
    "add a page before",
]


@pytest.mark.parametrize("mode", ["entries", "sequential", "files"])
@pytest.mark.parametrize("cap", [None, 2, 7])
async def test_a_folder_changed_between_its_pages_at_every_edge_hands_each_entry_once_or_says_incomplete(
    monkeypatch: pytest.MonkeyPatch, mode: str, cap: int | None
) -> None:
    """Held (a grid of ~1,400 readings per case, ~42,000 in an exploratory run): folders of a page less one, a page,
    a page and one, two pages... (LARGE_PAGE 10, HUGE_PAGE 20), a change timed at the 2nd, 3rd, 4th or 6th request,
    the first parallel page answered late (so a later one arrives first), budgets stopping the first call at 15 or
    27 entries (then read on): no entry handed twice (FilesPages as entries: a floor below every size), none there
    throughout left out of a reading that says it is whole, no walk that does not finish."""
    from efile_mcp.client import walk as walk_module

    monkeypatch.setattr(walk_module, "LARGE_PAGE", 10)
    monkeypatch.setattr(walk_module, "HUGE_PAGE", 20)
    problems = []
    for n in (1, 9, 10, 11, 19, 20, 21, 29, 30, 48, 125):
        for kind in CHANGES:
            for at in (1, 2, 3, 5):
                for late in ({}, {9: 8}) if mode != "sequential" else ({},):
                    for budgets in ([], [15], [27]):
                        before = {_name(i): 1 for i in range(n)}
                        source = Source({ROOT: dict(before)}, cap=cap, changes={at: _change(kind, n)}, late=dict(late))
                        with anyio.fail_after(10):
                            handed, stats, walk = await _read(source, mode, budgets)
                        names = [path.rsplit("/", 1)[1] for path in handed]
                        throughout = set(before) & set(source.folders[ROOT])
                        whole = stats.incomplete_dirs == 0 and not stats.stopped
                        if (
                            len(names) != len(set(names))
                            or not walk.finished
                            or (whole and not throughout <= set(names))
                        ):
                            problems.append((n, kind, at, late, budgets))
    assert problems == []


# ---------------------------------------------------------------------------- a resumed reading ended by its offset
# A reading resumed in a later call asks its first page from RESUME_OVERLAP entries back (`back`), places it after the
# last name read, and moves on to `back + len(first)`; when that reaches the total the reading ends whole. On a server
# ignoring `start` the page is the folder's first page: once the folder's first names changed (a file rotated away),
# nothing tells it from the page at `back`, the name read last is found further in, and the offset overshoots.

_RESUMED_BREAK = (
    "BREAK: resumed on a server ignoring `start` (pages capped at 93) after the first call read 70 and f000 went:"
    " the page asked from 6 is the folder's first page (f001..f093), its first names are not those recorded, f069 is"
    " found 68 places in, f070..f093 are handed and `read = back + len(first)` = 99 >= the total 99: the reading ends"
    " whole; f094..f099, there throughout, are never read. Fix: a resumed page whose name read last is not where the"
    " offset puts it (at != start - 1 - back) is not trusted to place offsets (read on from the name, or incomplete)"
)


async def test_a_usage_resumed_on_a_server_ignoring_start_after_a_rotation_is_right_or_incomplete(world: World) -> None:
    folder = _scratch(world) / "usage"
    files = _files(folder, 100)
    _server(world, ignores_start=True, page_cap=93)
    path = _virtual(world, folder)
    first = await world.guard.usage(path, top=3, max_entries=70)
    assert first.resume and not first.complete
    files[0].unlink()  # rotated away between the calls
    answer = await world.guard.usage(None, top=3, max_entries=100_000, resume=first.resume)
    while answer.resume:
        answer = await world.guard.usage(None, top=3, max_entries=100_000, resume=answer.resume)
    if answer.complete:
        assert (answer.file_count, answer.total_size) == (99, sum(range(2, 101))), (
            answer.file_count,
            answer.total_size,
        )


async def test_a_dry_run_resumed_on_a_server_ignoring_start_after_a_rotation_plans_every_file_or_says_incomplete(
    world: World,
) -> None:
    folder = _scratch(world) / "batch"
    files = _files(folder, 100)
    _server(world, ignores_start=True, page_cap=93)
    world.guard.walk_max_entries = 70
    removal = world.removal(confirm="token")
    first = await removal.preview(None, _select(world, "batch"))
    assert first.resume
    files[0].unlink()
    world.guard.walk_max_entries = 100_000
    answer, _ = await _read_on(removal, first)
    assert answer.plan_id
    planned = await _stored_paths(world, answer.plan_id)
    assert _twice(planned) == []
    if "incomplete" not in answer.next_step:
        missing = sorted({_virtual(world, p) for p in folder.iterdir()} - set(planned))
        assert missing == []


# Was a break (fixed after 0f95b02): the same in `_parallel_pages`: a page that does not begin with the first page's
# names was trusted, the name read last found 8 places in, and the reading ended early and whole. A page placed
# further in than the folder grew meanwhile is not read on from now (`_placed_fairly`).
@pytest.mark.parametrize("n", [25, 29])
async def test_parallel_pages_on_a_server_ignoring_start_while_the_first_file_goes_hand_all_or_say_incomplete(
    monkeypatch: pytest.MonkeyPatch, n: int
) -> None:
    from efile_mcp.client import walk as walk_module

    monkeypatch.setattr(walk_module, "LARGE_PAGE", 10)
    monkeypatch.setattr(walk_module, "HUGE_PAGE", 20)
    before = {_name(i): 1 for i in range(n)}
    source = Source({ROOT: dict(before)}, ignores_start=True, changes={1: _change("rotate", n)})
    handed, stats, walk = await _read(source, "entries", [])
    names = {path.rsplit("/", 1)[1] for path in handed}
    assert walk.finished
    if stats.incomplete_dirs == 0:
        assert set(before) & set(source.folders[ROOT]) <= names, sorted(set(before) - names)


@pytest.mark.parametrize("budget", [2, 3, 9, 10, 11, 19, 20, 21, 40, 77, 150])
async def test_a_walk_of_two_large_folders_with_late_pages_stays_within_each_calls_budget_and_finishes(
    monkeypatch: pytest.MonkeyPatch, budget: int
) -> None:
    """Held (an exploratory grid of 3,000 walks: sizes 11-301, caps, modes, changes at an edge, `start` ignored): two
    large folders read at once, a parallel page answered late (held pages reserved), call after call with the same
    budget: no call sees more entries than its budget, and the walk ends (a budget of 1 never does: the look-back
    alone fills it, and disk_usage's max_entries is at least 100)."""
    from efile_mcp.client.walk import Listings, TreeWalk

    monkeypatch.setattr(walk_module_of(), "LARGE_PAGE", 10)
    monkeypatch.setattr(walk_module_of(), "HUGE_PAGE", 20)
    for mode in ("entries", "files", "sequential"):
        for cap in (None, 7):
            folders = {ROOT: {"a/": 0, "b/": 0}}
            folders.update({f"{ROOT}/{d}": {_name(i): 1 for i in range(125)} for d in "ab"})
            source = Source(folders, cap=cap, late={28: 5, 9: 2}, changes={3: _edge_change})
            walk = TreeWalk(ROOT)
            summary = Names() if mode == "files" else None
            calls = 0
            while not walk.finished and calls < 1000:
                seen = walk.stats.entries_seen
                with anyio.fail_after(10):
                    stats = await Listings(source, keep=False).walk(  # type: ignore[arg-type]
                        walk, limits=_limits(budget), sequential=mode == "sequential", summary=summary
                    )
                assert stats.entries_seen - seen <= budget, (mode, cap, calls)
                calls += 1
            assert walk.finished, (mode, cap)


def walk_module_of() -> Any:
    from efile_mcp.client import walk as walk_module

    return walk_module


def _edge_change(folders: dict[str, dict[str, int]]) -> None:
    folders[f"{ROOT}/a"].pop(_name(9), None)  # the first page's last name, gone before the next pages are answered


# ---------------------------------------------------------------------------- a name listed twice inside one page

_WITHIN_BREAK = (
    "BREAK (low: a server listing one name twice, the premise test_redteam_resume accepts): a name repeated inside a"
    " page, away from its edges, is handed twice in every mode; only the dry run's round screen and execution's batch"
    " dedup catch it"
)


async def test_a_usage_whose_first_page_lists_a_name_twice_counts_it_once(world: World) -> None:
    folder = _scratch(world) / "usage"
    _files(folder, 50)
    served = _lists_a_name_twice(world, folder, "f005.out", first_page=True)
    answer = await world.guard.usage(_virtual(world, folder), top=3, max_entries=100_000)
    assert served and answer.resume is None
    if answer.complete:
        assert (answer.file_count, answer.total_size) == (50, sum(range(1, 51)))


async def test_find_paths_whose_first_page_lists_a_name_twice_lists_it_once(world: World) -> None:
    folder = _scratch(world) / "found"
    _files(folder, 50)
    served = _lists_a_name_twice(world, folder, "f005.out", first_page=True)
    answer = await world.guard.find(_select(world, "found"), limit=500, cursor=None)
    listed = [m.path for m in answer.matches]
    assert served and _twice(listed) == []


async def test_a_dry_run_whose_first_page_lists_a_name_twice_plans_it_once(world: World) -> None:
    """Held: the round's screen dedups the matches; execution sends each path once."""
    folder = _scratch(world) / "batch"
    _files(folder, 50)
    served = _lists_a_name_twice(world, folder, "f005.out", first_page=True)
    removal = world.removal(confirm="token")
    answer, _ = await _read_on(removal, await removal.preview(None, _select(world, "batch")))
    assert served and answer.plan_id
    planned = await _stored_paths(world, answer.plan_id)
    done = await removal.execute(request(answer), FakeClient())
    assert (_twice(planned), _twice(_sent(world)), done.summary.missing) == ([], [], 0)
