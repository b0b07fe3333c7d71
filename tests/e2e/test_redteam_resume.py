"""Red team: a folder read in part resumes after the last name it read (client/walk.py, 90410db), execution's
batch-wise dedup was removed, and a file selection's dry run looked its matches up in the listings its search had
just read (guard/selection.py, 535f42c).

Each test is one attempt: a path planned twice (sent twice, counted twice), a path planned that the dry run should
have refused, a path skipped while the search says it is complete, a walk that never ends, `disk_usage` /
`find_paths` resumes that hand entries twice or skip them. Each asserts the safe outcome. 16 breaks were found at
535f42c: 10 fixed by 47c5bfc (later pages asked from the entry before their offset), the other 6 by the commit
after 6521cdf (the look-ups have a reader of their own again, a resumed reading is checked like any, a reading
never resumes at an offset without a name, the last copy of a name, `children` never over a listed link, the
per-batch dedup back as a backstop). Each is a passing test with a comment saying what broke.

Built on the Removal over the sandbox (tests/test_removal.py's world). The sandbox plays the server variants:
`config.list_ignores_start`, `config.list_page_cap` (read per request, so they can change mid-test) and
`sandbox.fault`, a hook run before each request's handler.
"""

from __future__ import annotations

from collections import Counter
from pathlib import Path
from typing import Any

import anyio
import pytest

from efile_mcp.guard import selection
from efile_mcp.guard.removal import Removal
from efile_mcp.guard.seen import load_header, plan_rows
from efile_mcp.models.results import RemovePathsResult
from efile_mcp.sandbox.envelope import ok
from efile_mcp.sandbox.file_list import ListingQuery, ListingRules, list_folder, parse_query

from ..test_removal import FakeClient, World, request
from ..test_removal import world as world  # the fixture
from .redteam_helpers import (
    _children_name_links_too,
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


# ---------------------------------------------------------------------------- a server that ignores `start`
# The walker spots a server that ignores `start` by its answer: a later page that begins with the names the folder's
# first page began with. A resumed folder is trusted (`verified = bool(back)`) as soon as its page does not begin with
# the names recorded when its reading stopped. A folder whose first file went meanwhile (a log rotated away: the
# oldest name goes first) begins with other names on a server that ignores `start` too.


def _big_after_small(world: World, big: int = 400) -> tuple[Path, Path]:
    """sel/a-big (`big` files) and sel/z-small (60): the walk's stack reads z-small first, then a-big with the rest
    of a 100-entry budget (38 entries: 2 for sel's own listing, 60 for z-small)."""
    sel = _scratch(world) / "sel"
    _files(sel / "a-big", big)
    _files(sel / "z-small", 60, prefix="s")
    return sel / "a-big", sel / "z-small"


async def _first_call_stopped_in_a_big(world: World, removal: Removal) -> RemovePathsResult:
    world.guard.walk_max_entries = 100
    first: RemovePathsResult = await removal.preview(None, _select(world, "sel"))
    assert first.resume and first.summary.would_remove == 98, first.summary  # 60 of z-small, 38 of a-big
    return first


# Was a break until the resumed reading was no longer trusted to honour `start` (its second page is checked like any
# reading's), a placement with nothing new carried the name read last, and a reading never resumed at an offset
# without one: on a server that ignores `start` (pages capped at 60), a resumed folder whose first name changed
# (f000 rotated away) is trusted (`verified = bool(back)`: its page does not begin with the names recorded when it
# stopped). Still at 47c5bfc: the next page (the first page again) holds the last name read at its end, so nothing
# is placed and `hand([])` records no name for the offset it reaches; the reading is stopped there, resumes in the
# same call with a marker of None, at the bare offset, and the server's first page is handed whole: f001-f037,
# planned by the first call, are planned again (budget 100/cap 60: 37 rows twice; 200/150: 137), total_size counts
# them twice, the execution sends them twice (no batch dedup) and reports 'missing' files it removed itself",
@pytest.mark.parametrize("budget, cap", [(100, 60), (200, 150)])
async def test_a_resumed_folder_on_a_server_ignoring_start_whose_first_file_went_is_not_planned_twice(
    world: World, budget: int, cap: int
) -> None:
    big, _ = _big_after_small(world)
    _server(world, ignores_start=True, page_cap=cap)
    removal = world.removal(confirm="token")
    world.guard.walk_max_entries = budget
    first = await removal.preview(None, _select(world, "sel"))
    assert first.resume
    (big / "f000.out").unlink()  # rotated away between the calls
    answer, _ = await _read_on(removal, first)
    assert answer.resume is None and answer.plan_id
    planned = await _stored_paths(world, answer.plan_id)
    done = await removal.execute(request(answer), FakeClient())
    rotated = int(_virtual(world, big / "f000.out") in planned)  # planned by the first call, gone since: missing
    assert (len(_twice(planned)), len(_twice(_sent(world))), done.summary.missing) == (0, 0, rotated)
    if "incomplete" not in answer.next_step:  # a search reported whole holds every file that was there throughout
        expected = {_virtual(world, p) for p in big.iterdir()} | {
            _virtual(world, p) for p in (big.parent / "z-small").iterdir()
        }
        assert expected <= set(planned)


async def test_a_resumed_folder_on_a_server_ignoring_start_whose_first_file_went_does_not_stall_the_dry_run(
    world: World,
) -> None:
    """Held: the resumed page cut by the budget ends where the reading stopped, but the call still has room and reads
    the folder again at once, from a look-back the server answers from its start again: the last name is not there,
    the folder is marked incomplete, and the dry run ends (no call after call making the same request)."""
    big, _ = _big_after_small(world)
    _server(world, ignores_start=True, page_cap=None)
    removal = world.removal(confirm="token")
    first = await _first_call_stopped_in_a_big(world, removal)
    (big / "f000.out").unlink()
    answer, calls = await _read_on(removal, first, calls=30)
    # 400 files at 100 entries a call: a dozen calls at most, then a plan, or an answer saying what was not read.
    assert answer.resume is None, f"still resuming after {calls} calls: {answer.next_step}"


# Was a break at 535f42c/3884dc2, held since 47c5bfc (a later page is asked from the entry before its offset):
# disk_usage resumed with a larger max_entries on a server that ignores `start` and caps pages, after the folder's
# first file went: the resumed page is trusted (other first names), the pages after it are the first page again,
# counted each time; the totals count files twice and miss the rest, and the answer says complete
async def test_a_usage_resumed_on_a_server_ignoring_start_after_the_first_file_went_counts_each_file_once(
    world: World,
) -> None:
    folder = _scratch(world) / "usage"
    files = _files(folder, 400)
    _server(world, ignores_start=True, page_cap=150)
    path = _virtual(world, folder)
    first = await world.guard.usage(path, top=3, max_entries=100)
    assert first.resume and not first.complete
    files[0].unlink()  # rotated away between the calls
    answer = await world.guard.usage(None, top=3, max_entries=100_000, resume=first.resume)
    while answer.resume:
        answer = await world.guard.usage(None, top=3, max_entries=100_000, resume=answer.resume)
    if answer.complete:
        assert (answer.file_count, answer.total_size) == (399, sum(range(2, 401)))
    else:
        assert answer.file_count <= 399 and answer.total_size <= sum(range(2, 401))


# ---------------------------------------------------------------------------- a folder written to while it is read
# At 90410db only a resumed reading looked for the last name it read: the pages of one reading (a folder over a page,
# a server capping pages) were still asked at offsets. A file created before the offsets meanwhile moved every later
# entry one place on: the entry at a page's edge was handed again, and the last one never asked (the reading ended at
# the total its first page gave). Execution's batch-wise dedup is gone; within a round `_screen` dedups the matches.
# Since 47c5bfc every later page is asked from the entry before its offset and must begin with the name read last.


def _writes_once_at(world: World, folder: Path, start: int, name: str = "a0000.tmp") -> list[str]:
    written: list[str] = []

    async def a_job_writes_a_file(endpoint: str, request: Any) -> None:
        listed_here = endpoint == "file/list" and _listed(request).endswith(folder.name)
        # The page at `start` (or one asked from just before it, to see the name the previous page ended with).
        if listed_here and _start_of(request) in (start - 1, start) and not written:
            written.append(name)
            (folder / name).write_bytes(b"n" * 1000)  # sorts first: every later entry moves one place on

    world.sandbox.sandbox.fault = a_job_writes_a_file
    return written


# Was a break at 535f42c/3884dc2, held since 47c5bfc (a later page is asked from the entry before its offset): a
# file created while a capped folder's pages are read (one call, no resume) moves the later pages on: f019 is handed
# twice (deduped by the round's screen) and f059, there throughout, is never read, while the dry run's search says
# it is whole (no 'incomplete' note): a file skipped silently
async def test_a_dry_run_of_a_folder_written_to_while_its_pages_are_read_plans_every_file_or_says_incomplete(
    world: World,
) -> None:
    folder = _scratch(world) / "batch"
    _files(folder, 60)
    _server(world, page_cap=20)
    written = _writes_once_at(world, folder, 20)
    removal = world.removal(confirm="token")
    answer = await removal.preview(None, _select(world, "batch"))
    assert written and answer.resume is None and answer.plan_id
    planned = await _stored_paths(world, answer.plan_id)
    assert _twice(planned) == []
    if "incomplete" not in answer.next_step:
        assert {_virtual(world, folder / f"f{i:03d}.out") for i in range(60)} <= set(planned)


# Was a break at 535f42c/3884dc2, held since 47c5bfc (a later page is asked from the entry before its offset):
# disk_usage of a capped folder written to while its pages are read counts f019 twice and never f059, and says
# complete (1790 bytes: neither the 1830 before nor the 2830 after)
async def test_a_usage_of_a_folder_written_to_while_its_pages_are_read_is_right_or_incomplete(world: World) -> None:
    folder = _scratch(world) / "usage"
    _files(folder, 60)
    _server(world, page_cap=20)
    written = _writes_once_at(world, folder, 20)
    answer = await world.guard.usage(_virtual(world, folder), top=3, max_entries=100_000)
    assert written and answer.resume is None
    if answer.complete:
        assert answer.total_size in (sum(range(1, 61)), sum(range(1, 61)) + 1000), answer.total_size


# Was a break at 535f42c/3884dc2, held since 47c5bfc (a later page is asked from the entry before its offset):
# find_paths over a capped folder written to while its pages are read (read one after another for `want`) lists f019
# twice and never f059, and says complete
async def test_find_paths_over_a_folder_written_to_while_its_pages_are_read_lists_each_file_once(world: World) -> None:
    folder = _scratch(world) / "found"
    _files(folder, 60)
    _server(world, page_cap=20)
    written = _writes_once_at(world, folder, 20)
    listed: list[str] = []
    answer = await world.guard.find(_select(world, "found"), limit=500, cursor=None)
    listed += [m.path for m in answer.matches]
    while answer.next_cursor:
        answer = await world.guard.find(_select(world, "found"), limit=500, cursor=answer.next_cursor)
        listed += [m.path for m in answer.matches]
    assert written
    assert _twice(listed) == []
    if answer.complete:
        assert {_virtual(world, folder / f"f{i:03d}.out") for i in range(60)} <= set(listed)


# Was a break at 535f42c/3884dc2, held since 47c5bfc (a later page is asked from the entry before its offset): a
# folder entry at a page's edge handed twice (a file created while its parent's capped pages are read) puts the
# folder twice on the walk's frontier; read in different rounds (the first reading stopped by the budget), every
# file in it is planned twice: rows twice, sent twice (execution no longer dedups a batch), and those this execution
# removed reported 'missing'
async def test_a_folder_handed_twice_by_a_shifted_page_is_not_planned_twice(world: World) -> None:
    top = _scratch(world) / "tree"
    top.mkdir(parents=True)
    for i in range(60):
        if i == 19:  # the entry at the first page's edge: handed again by the second page once a file is created
            _files(top / "f019", 200, prefix="o")
        else:
            (top / f"f{i:03d}.dat").write_bytes(b"not matched")
    _server(world, page_cap=20)
    written = _writes_once_at(world, top, 20)
    world.guard.walk_max_entries = 160  # the parent's 60 entries, then f019 read in part
    removal = world.removal(confirm="token")
    first = await removal.preview(None, _select(world, "tree"))
    answer, _ = await _read_on(removal, first)
    assert written and answer.resume is None and answer.plan_id
    planned = await _stored_paths(world, answer.plan_id)
    done = await removal.execute(request(answer), FakeClient())
    sent = _sent(world)
    assert (len(_twice(planned)), len(_twice(sent)), done.summary.missing) == (0, 0, 0)
    assert answer.summary.would_remove <= 200


# ---------------------------------------------------------------------------- one reader for the search and its look-ups
# The dry run of a file selection looks its matches up in the listings its search read moments before (535f42c): a
# folder (or a file) swapped for a link after its parent was listed is still the folder (the file) the cache holds.
# A fresh listing, as before, sees the link and refuses every path through it. Execution's own check (fresh
# listings, a batch at a time) still refuses them: what breaks is what the dry run shows and the person approves.


def _logs_and_precious(world: World) -> tuple[Path, Path]:
    logs, precious = _scratch(world) / "logs", _scratch(world) / "precious"
    for j in range(4):
        _files(logs / f"job-{j}", 5, prefix="o")
    _files(precious, 5, prefix="o")  # the same names: what a link to it would show as job-1's files
    return logs, precious


def _swap_for_link_when_listed(world: World, listed: str, swapped: Path, target: str, *, nth: int = 1) -> list[str]:
    """When `listed` (a folder's virtual path) is asked for the `nth` time, `swapped` becomes a link to `target`."""
    done: list[str] = []
    asked = Counter[str]()

    async def swap(endpoint: str, request: Any) -> None:
        if endpoint != "file/list" or _listed(request).rstrip("/") != listed:
            return
        asked[listed] += 1
        if asked[listed] == nth and not done:
            done.append(listed)
            swapped.rename(swapped.with_name(swapped.name + ".moved"))
            swapped.symlink_to(target)

    world.sandbox.sandbox.fault = swap
    return done


# Was a break while the dry run's look-ups read the search's cached listings (535f42c): they have a reader of their
# own again: a sub-folder swapped for a link after the search listed its parent (and before the search listed it,
# through the link) is looked up in the search's cached listing of the parent, still a folder: the dry run plans
# (and shows for approval) precious/'s files as logs/job-1/*; a fresh look-up refuses them (link on the way)",
async def test_a_folder_swapped_for_a_link_after_its_parent_was_listed_is_not_planned_through_the_link(
    world: World,
) -> None:
    logs, _ = _logs_and_precious(world)
    job = logs / "job-1"
    swapped = _swap_for_link_when_listed(world, _virtual(world, job), job, "../precious")
    removal = world.removal(confirm="token")
    answer = await removal.preview(None, _select(world, "logs"))
    assert swapped and job.is_symlink()
    planned = await _stored_paths(world, answer.plan_id) if answer.plan_id else []
    through_link = [p for p in planned if p.startswith(_virtual(world, job) + "/")]
    assert through_link == [], through_link


async def test_a_folder_swapped_for_a_link_after_its_parent_was_listed_is_not_deleted_through_the_link(
    world: World,
) -> None:
    """Held: whatever the dry run planned, execution's check reads afresh and refuses every path through the link."""
    logs, precious = _logs_and_precious(world)
    job = logs / "job-1"
    _swap_for_link_when_listed(world, _virtual(world, job), job, "../precious")
    removal = world.removal(confirm="token")
    answer = await removal.preview(None, _select(world, "logs"))
    assert answer.confirmation_token
    done = await removal.execute(request(answer), FakeClient())
    assert len(list(precious.iterdir())) == 5
    assert not [p for p in _sent(world) if p.startswith(_virtual(world, job) + "/")]
    assert done.summary.removed == 15


# Was a break while the dry run's look-ups read the search's cached listings (535f42c): a matched file swapped for a
# link after the search listed its folder was planned from that listing. Since then the look-ups list every folder
# above a file afresh (a folder swapped for a link is refused: the tests above), but a file's own entry is taken from
# the search that listed it moments before (one listing a folder, not two: the 100,000-path ratio). The trade-off is
# deliberate and bounded: the plan shows the file as it was when listed, never the link nor what it points to, and
# execution, which looks every path up again, leaves the link alone (the next test).
async def test_a_file_swapped_for_a_link_after_its_folder_was_listed_is_planned_as_the_file_it_was(
    world: World,
) -> None:
    logs, _ = _logs_and_precious(world)
    leaf = logs / "job-0" / "o000.out"
    size = leaf.stat().st_size
    # scratch is listed once for the selection's root check, then for the look-ups (the search began below it).
    swapped = _swap_for_link_when_listed(
        world, _virtual(world, _scratch(world)), leaf, "../../precious/o000.out", nth=2
    )
    removal = world.removal(confirm="token")
    answer = await removal.preview(None, _select(world, "logs"))
    assert swapped and leaf.is_symlink()
    header = await load_header(world.store, answer.plan_id or "")
    assert header is not None
    rows = [seen async for chunk in plan_rows(world.store, header) for seen in chunk]
    as_planned = [seen for seen in rows if seen.path == _virtual(world, leaf)]
    assert [(seen.kind, seen.size) for seen in as_planned] == [("file", size)]


async def test_a_file_swapped_for_a_link_after_its_folder_was_listed_is_not_sent(world: World) -> None:
    """Held: execution's fresh check sees the link and does not send it."""
    logs, precious = _logs_and_precious(world)
    leaf = logs / "job-0" / "o000.out"
    _swap_for_link_when_listed(world, _virtual(world, _scratch(world)), leaf, "../../precious/o000.out", nth=2)
    removal = world.removal(confirm="token")
    answer = await removal.preview(None, _select(world, "logs"))
    assert leaf.is_symlink()
    done = await removal.execute(request(answer), FakeClient())
    assert _virtual(world, leaf) not in _sent(world) and leaf.is_symlink()
    assert (precious / "o000.out").exists() and done.summary.removed == 19


# ---------------------------------------------------------------------------- resume markers with awkward names
# Held: the last name read is found by exact comparison in the page asked from before the offset; names with commas,
# case twins, Unicode look-alikes (NFC and NFD), spaces and prefixes of each other resume exactly after themselves.

AWKWARD = [
    "a,b.out",
    "a,b,.out",
    "a.out",
    "A.out",
    "a .out",
    "a..out",
    "ab.out",
    "\u00e9.out",  # é, composed
    "e\u0301.out",  # é, decomposed: looks the same, another name
    "E\u0301.out",
    "\u00c9.out",
    "\u00df.out",  # ß
    "SS.out",
    "ss.out",
    "\u0131.out",  # dotless i
    "I.out",
    "i.out",
    "\uff41.out",  # fullwidth a
    "\u65e5\u672c.out",
    "\U0001f600.out",
    "z,.out",
    ",.out",
    " .out",
    "-.out",
]


async def test_a_selection_resumed_after_awkward_names_while_the_folder_changes_plans_each_file_once(
    world: World,
) -> None:
    folder = _scratch(world) / "odd"
    folder.mkdir()
    names = AWKWARD + [f"n{i:02d},x.out" for i in range(30)]
    for name in names:
        (folder / name).write_bytes(b"x")
    world.guard.walk_max_entries = 7
    removal = world.removal(confirm="token")
    answer = await removal.preview(None, _select(world, "odd"))
    calls, added, removed = 0, 0, []
    there = set(names)
    while answer.resume and calls < 60:
        # Between calls a co-user adds a file sorting first, and removes the first original name still there.
        (folder / f"  {added:02d}-new.out").write_bytes(b"new")
        added += 1
        first = sorted(there)[0]
        (folder / first).unlink()
        there.discard(first)
        removed.append(first)
        answer = await removal.preview(None, None, resume=answer.resume)
        calls += 1
    assert answer.resume is None and answer.plan_id
    planned = await _stored_paths(world, answer.plan_id)
    assert _twice(planned) == []
    if "incomplete" not in answer.next_step:
        assert {_virtual(world, folder / name) for name in there} <= set(planned)


async def test_a_selection_resumed_after_awkward_names_on_a_capped_server_plans_each_file_once(world: World) -> None:
    folder = _scratch(world) / "odd"
    folder.mkdir()
    names = AWKWARD + [f"n{i:02d},x.out" for i in range(30)]
    for name in names:
        (folder / name).write_bytes(b"x")
    _server(world, page_cap=5)
    world.guard.walk_max_entries = 12
    removal = world.removal(confirm="token")
    answer, _ = await _read_on(removal, await removal.preview(None, _select(world, "odd")), calls=60)
    assert answer.resume is None and answer.plan_id
    planned = await _stored_paths(world, answer.plan_id)
    assert _twice(planned) == [] and "incomplete" not in answer.next_step
    assert {_virtual(world, folder / name) for name in names} == set(planned)


# ---------------------------------------------------------------------------- find_paths read on across calls


async def test_find_paths_pages_while_files_come_and_go_before_the_marker_list_each_file_once(world: World) -> None:
    folder = _scratch(world) / "found"
    originals = _files(folder, 60)
    listed: list[str] = []
    answer = await world.guard.find(_select(world, "found"), limit=7, cursor=None)
    listed += [m.path for m in answer.matches]
    step = 0
    while answer.next_cursor and step < 40:
        (folder / f"a{step:03d}.out").write_bytes(b"n")  # sorts before everything: added before the marker
        if step < 20:
            originals[step].unlink()  # and the first originals go (read long ago or not)
        step += 1
        answer = await world.guard.find(_select(world, "found"), limit=7, cursor=answer.next_cursor)
        listed += [m.path for m in answer.matches]
    assert answer.next_cursor is None
    assert _twice(listed) == []
    if answer.complete:
        assert {_virtual(world, p) for p in originals[20:]} <= set(listed)


async def test_find_paths_whose_marker_file_went_between_pages_says_incomplete(world: World) -> None:
    """Held: the last name read is gone and nothing tells where the reading got to: the folder is not read on, and
    the answer says so (never complete, never an entry handed twice)."""
    folder = _scratch(world) / "found"
    originals = _files(folder, 60)
    world.guard.walk_max_entries = 100
    first = await world.guard.find(_select(world, "found"), limit=7, cursor=None)
    assert first.next_cursor
    # The first call read f000-f006 (7 matches wanted): f006 is the marker; it goes, with the files before and after.
    for path in originals[:40]:
        path.unlink()
    listed = [m.path for m in first.matches]
    answer = first
    while answer.next_cursor:
        answer = await world.guard.find(_select(world, "found"), limit=7, cursor=answer.next_cursor)
        listed += [m.path for m in answer.matches]
    assert _twice(listed) == []
    assert not answer.complete and answer.incomplete_reason


# ---------------------------------------------------------------------------- a server whose pages overlap


def _pages_overlap_by_one(world: World) -> None:
    """A server that answers `start` n from n-1 (an off-by-one): each later page begins with the previous page's last
    name. Its first names differ from the first page's, so nothing in the walker's ignored-`start` check sees it."""
    sandbox = world.sandbox.sandbox

    async def off_by_one(endpoint: str, request: Any) -> Any:
        if endpoint != "file/list" or _start_of(request) == 0:
            return None
        config = sandbox.config
        rules = ListingRules(config.list_max_limit, config.list_page_cap, False, config.list_children)
        query = parse_query(request.query_params, sandbox.home, rules)
        query = ListingQuery(query.path, query.start - 1, query.limit, query.order, query.order_by, query.keyword)
        return ok(await anyio.to_thread.run_sync(list_folder, sandbox.fs, query, rules))

    sandbox.fault = off_by_one


# Was a break at 535f42c/3884dc2, held since 47c5bfc (a later page is asked from the entry before its offset): a
# server whose pages overlap by a name (start n answered from n-1) has every page-edge entry counted twice by
# disk_usage and the last ones never read (the reading ends at the total), which says complete (100 files, 4970
# bytes of 5050): a later page is checked only against the first page's first names, never against the name the
# previous page ended with
async def test_a_usage_on_a_server_whose_pages_overlap_counts_each_file_once_or_says_incomplete(world: World) -> None:
    folder = _scratch(world) / "usage"
    _files(folder, 100)
    _server(world, page_cap=20)
    _pages_overlap_by_one(world)
    answer = await world.guard.usage(_virtual(world, folder), top=3, max_entries=100_000)
    if answer.complete:
        assert (answer.file_count, answer.total_size) == (100, sum(range(1, 101)))


@pytest.mark.parametrize("round_entries", [30, 100_000], ids=["rounds-of-30", "one-round"])
async def test_a_dry_run_on_a_server_whose_pages_overlap_plans_each_file_once(
    world: World, monkeypatch: pytest.MonkeyPatch, round_entries: int
) -> None:
    """Held for the plan: the overlap falls within one reading, so within one round, whose matches are screened
    distinct; across rounds the resumed reading begins after the last name read."""
    monkeypatch.setattr(selection, "ROUND_ENTRIES", round_entries)
    folder = _scratch(world) / "batch"
    _files(folder, 100)
    _server(world, page_cap=20)
    _pages_overlap_by_one(world)
    removal = world.removal(confirm="token")
    answer, _ = await _read_on(removal, await removal.preview(None, _select(world, "batch")))
    assert answer.plan_id
    planned = await _stored_paths(world, answer.plan_id)
    assert _twice(planned) == []
    done = await removal.execute(request(answer), FakeClient())
    assert _twice(_sent(world)) == [] and done.summary.missing == 0


# Was a break at 535f42c/3884dc2, held since 47c5bfc (a later page is asked from the entry before its offset): the
# same dry run plans 99 of the 100 files (the reading of the folder's pages ends at the total, one page-edge name
# having taken a place twice) and says nothing of it: no 'incomplete' note, a file skipped silently
@pytest.mark.parametrize("round_entries", [30, 100_000], ids=["rounds-of-30", "one-round"])
async def test_a_dry_run_on_a_server_whose_pages_overlap_plans_every_file_or_says_incomplete(
    world: World, monkeypatch: pytest.MonkeyPatch, round_entries: int
) -> None:
    monkeypatch.setattr(selection, "ROUND_ENTRIES", round_entries)
    folder = _scratch(world) / "batch"
    _files(folder, 100)
    _server(world, page_cap=20)
    _pages_overlap_by_one(world)
    removal = world.removal(confirm="token")
    answer, _ = await _read_on(removal, await removal.preview(None, _select(world, "batch")))
    assert answer.plan_id
    planned = await _stored_paths(world, answer.plan_id)
    if "incomplete" not in answer.next_step:
        assert len(set(planned)) == 100


# ---------------------------------------------------------------------------- the sandbox's inline removal in one hop


async def test_an_inline_removal_with_one_path_failing_reports_each_path_as_it_went(world: World) -> None:
    """Held: the sandbox now deletes an inline call's paths in one worker-thread hop; a path that fails there does
    not stop the others, and each gets its own outcome."""
    folder = _scratch(world) / "batch"
    files = _files(folder, 10)
    failing = _virtual(world, files[4])
    world.sandbox.sandbox.path_faults[failing] = ("911030", "permission denied")
    removal = world.removal(confirm="token")
    answer = await removal.preview(None, _select(world, "batch"))
    done = await removal.execute(request(answer), FakeClient())
    assert (done.summary.removed, done.summary.failed) == (9, 1)
    assert files[4].exists() and sum(p.exists() for p in files) == 1
    assert failing not in world.sandbox.sandbox.deleted_paths


# ---------------------------------------------------------------------------- the resume marker listed twice


def _lists_a_name_twice(world: World, folder: Path, name: str) -> list[int]:
    """A server that lists `name` twice in the pages after the first (an object store listing two versions of one
    key, a replica merging two views): the page asked from before the offset holds the marker twice."""
    sandbox = world.sandbox.sandbox
    served: list[int] = []

    async def twice(endpoint: str, request: Any) -> Any:
        if endpoint != "file/list" or _start_of(request) == 0 or not _listed(request).endswith(folder.name):
            return None
        config = sandbox.config
        rules = ListingRules(config.list_max_limit, config.list_page_cap, False, config.list_children)
        query = parse_query(request.query_params, sandbox.home, rules)
        data = await anyio.to_thread.run_sync(list_folder, sandbox.fs, query, rules)
        page = data["fileList"]
        for at, entry in enumerate(page):
            if entry["name"] == name:
                page.insert(at + 1, dict(entry))
                served.append(query.start)
                break
        return ok(data)

    sandbox.fault = twice
    return served


# Was a break until a reading resumed after the last copy of the name read last (and execution kept its per-batch
# dedup as a backstop): the resumed page holds the last name read twice; the reading resumes after its first
# occurrence, so the second is handed again: f029, planned by the first call, is planned by the second too (a row
# twice, sent twice, execution no longer dedups a batch)",
async def test_a_resume_marker_listed_twice_does_not_put_it_twice_in_the_plan(world: World) -> None:
    folder = _scratch(world) / "batch"
    _files(folder, 60)
    world.guard.walk_max_entries = 30  # the first call reads f000-f029
    removal = world.removal(confirm="token")
    first = await removal.preview(None, _select(world, "batch"))
    assert first.resume and first.summary.would_remove == 30
    served = _lists_a_name_twice(world, folder, "f029.out")
    answer, _ = await _read_on(removal, first)
    assert served and answer.plan_id
    planned = await _stored_paths(world, answer.plan_id)
    done = await removal.execute(request(answer), FakeClient())
    assert (_twice(planned), _twice(_sent(world)), done.summary.missing) == ([], [], 0)


# ---------------------------------------------------------------------------- rows twice, quarantined


# Was a break at 535f42c/3884dc2, held since 47c5bfc (a later page is asked from the entry before its offset): the
# folder handed twice (above), planned twice, in quarantine mode: each of the 200 files is moved once (and restored
# whole), but the dry run shows would_remove 400 (distinct 400, total_size doubled) for the person to approve, and
# the execution reports 400 quarantined
async def test_a_folder_handed_twice_in_quarantine_mode_is_planned_once(world: World) -> None:
    top = _scratch(world) / "tree"
    top.mkdir(parents=True)
    for i in range(60):
        if i == 19:
            _files(top / "f019", 200, prefix="o")
        else:
            (top / f"f{i:03d}.dat").write_bytes(b"not matched")
    _server(world, page_cap=20)
    written = _writes_once_at(world, top, 20)
    world.guard.walk_max_entries = 160
    removal = world.removal(confirm="token", quarantine=world.guard.quarantine)
    first = await removal.preview(None, _select(world, "tree"), mode="quarantine")
    answer, _ = await _read_on(removal, first)
    assert written and answer.plan_id
    done = await removal.execute(request(answer), FakeClient())
    moved = [record.source for record in world.sandbox.sandbox.moves]
    assert answer.summary.would_remove == 200, answer.summary
    assert _twice(moved) == [] and done.summary.quarantined == 200 and not done.summary.failed
    restored = await world.guard.quarantine.restore(answer.plan_id)
    assert restored.summary.restored == 200 and len(list((top / "f019").iterdir())) == 200


# ---------------------------------------------------------------------------- a short page before the stop
# At 90410db, in the pages of a large folder read together, a stop's resume marker was the last name of the page
# ending at the stop's offset (`ends[offset]`). A page that came back shorter than asked (the server skips a file
# deleted between its scan and its stat, as the sandbox does) ended elsewhere: the marker was None and the reading
# resumed at the bare offset, as before 90410db.


def _short_page_at(world: World, folder: Path, start: int, added: list[str]) -> list[str]:
    """At the first page asked from `start` or after (the third page of 20): its sixth name is deleted after the
    server's scan (the page comes back a name short), and `added` are created (sorting first) as that happens.
    Returns the name that went."""
    sandbox = world.sandbox.sandbox
    vanished: list[str] = []

    async def short(endpoint: str, request: Any) -> Any:
        if endpoint != "file/list" or _start_of(request) < start or vanished:
            return None
        if not _listed(request).endswith(folder.name):
            return None
        config = sandbox.config
        rules = ListingRules(config.list_max_limit, config.list_page_cap, False, config.list_children)
        query = parse_query(request.query_params, sandbox.home, rules)
        data = await anyio.to_thread.run_sync(list_folder, sandbox.fs, query, rules)
        gone = data["fileList"].pop(5)["name"]
        vanished.append(gone)
        (folder / gone).unlink()
        for name in added:
            (folder / name).write_bytes(b"new")
        return ok(data)

    sandbox.fault = short
    return vanished


# Was a break at 535f42c/3884dc2, held since 47c5bfc (a later page is asked from the entry before its offset): a
# page of the parallel reading came back a name short (f045 deleted between the server's scan and stat) just before
# the budget stopped the next page: no name ends at the stop's offset, the marker is None and the reading resumes
# (in the same call, with the room the short page left) at the bare offset 60, where f061 now is: f060, there
# throughout, is never read, and the dry run says nothing of it (no 'incomplete' note)
async def test_a_short_page_before_a_stop_does_not_skip_a_file_silently(world: World) -> None:
    folder = _scratch(world) / "batch"
    _files(folder, 100)
    _server(world, page_cap=20)
    world.guard.walk_max_entries = 70  # pages 0, 20, 40 read; 60 and 80 stopped (granted whole or not at all)
    served = _short_page_at(world, folder, 35, [])
    removal = world.removal(confirm="token")
    first = await removal.preview(None, _select(world, "batch"))
    assert served
    answer, _ = await _read_on(removal, first)
    assert answer.plan_id
    planned = await _stored_paths(world, answer.plan_id)
    assert _twice(planned) == []
    if "incomplete" not in answer.next_step:
        assert {_virtual(world, p) for p in folder.iterdir()} <= set(planned)


# Was a break at 535f42c/3884dc2, held since 47c5bfc (a later page is asked from the entry before its offset): the
# same short page read by disk_usage with two files created meanwhile: resumed at the bare offset 60 (marker None),
# where f059 (already counted) now is: f059 counted twice, and the answer says complete
async def test_a_usage_with_a_short_page_before_a_stop_counts_each_file_once(world: World) -> None:
    folder = _scratch(world) / "usage"
    _files(folder, 100)
    _server(world, page_cap=20)
    served = _short_page_at(world, folder, 35, ["a000.tmp", "a001.tmp"])
    path = _virtual(world, folder)
    answer = await world.guard.usage(path, top=3, max_entries=70)
    while answer.resume:
        answer = await world.guard.usage(None, top=3, max_entries=70, resume=answer.resume)
    assert served
    if answer.complete:
        counted = sum(range(1, 101)) - (int(served[0][1:4]) + 1)  # the file that went was never counted
        assert answer.total_size in (counted, counted + 6), answer.total_size  # with or without the two new files


# ---------------------------------------------------------------------------- `children` naming a link, in the cache
# A folder not read whole (a cut page, an ignored `start`) hands the sub-folders its `children` name and its pages did
# not show as folders: a link its page showed as a link too, when the server counts a link to a folder among its
# sub-folders (a Java server's isDirectory follows links by default). The walk's cached listing then takes the
# `children` entry (a folder, no time) over the link its page listed, and the look-ups read that cache; `read_dir`
# (a fresh reader, as before 535f42c) keeps the link (`known`).


def _logs_with_a_link(world: World) -> tuple[Path, Path]:
    logs, precious = _logs_and_precious(world)
    (logs / "a-link").symlink_to("../precious")  # sorts first: on the first page, listed as the link it is
    return logs, precious


# Was a break until a sub-folder recovered from `children` was only one no page had listed (as anything): a link
# stays a link: a folder read incompletely (server ignoring `start`, pages of 3) whose `children` name a link to a
# folder: the walk hands it as a folder and its cached listing takes that entry over the link its page listed; the
# look-ups read the cache: precious/'s files are planned as logs/a-link/* (a fresh reader keeps the link and refuses
# them)",
async def test_a_link_named_in_children_of_a_folder_read_in_part_is_not_planned_through(world: World) -> None:
    logs, _ = _logs_with_a_link(world)
    _server(world, ignores_start=True, page_cap=3)
    _children_name_links_too(world, logs)
    removal = world.removal(confirm="token")
    answer = await removal.preview(None, _select(world, "logs"))
    planned = await _stored_paths(world, answer.plan_id) if answer.plan_id else []
    assert [p for p in planned if "/a-link/" in p] == []


async def test_a_link_named_in_children_of_a_folder_read_in_part_is_not_deleted_through(world: World) -> None:
    """Held: execution's fresh check lists the folder with `read_dir`, which keeps the link, and refuses the paths."""
    logs, precious = _logs_with_a_link(world)
    _server(world, ignores_start=True, page_cap=3)
    _children_name_links_too(world, logs)
    removal = world.removal(confirm="token")
    answer = await removal.preview(None, _select(world, "logs"))
    if answer.confirmation_token:
        await removal.execute(request(answer), FakeClient())
    assert len(list(precious.iterdir())) == 5
    assert [p for p in _sent(world) if "/a-link/" in p] == []
