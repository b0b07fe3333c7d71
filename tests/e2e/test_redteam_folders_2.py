"""Red team 2: selections planned as they are found, after the first red team's fixes (9fa46e8).

Attacks the fixes (the re-match of a path looked up afresh, `SelectionDryRun._no_longer_matching`; the policy key a
dry run read across calls keeps; `covered` counted when a folder is planned; execution's `not_previewed` skipping the
dry run's exceptions and folders around shown paths) and what tests/e2e/test_redteam_folders.py did not try. A held
attempt is a passing test with a comment saying what it attacks; a break is `xfail(strict=True, reason="BREAK: ...")`.
Built on tests/test_removal.py's `world` over the sandbox; clocks injected, never slept on.

Breaks found at 0386271 (xfail, each with its reason): the fresh reads of a round's matched folders each get the
call's whole remaining entry budget (a call reads N x EFILE_WALK_MAX_ENTRIES' remainder; the state keeps N frontiers);
a listed name holding '/' is taken as an entry, so a plan holds a folder and a path inside it (totals count it twice);
execution's not_previewed skips a folder the dry run showed as missing and that was made again with new matches; the
dry run's exceptions ride in the resume state bounded by count only (14 MB at 10,000 long refused paths); a file listed
without its size is 0 B to max_size, and a folder's age skips entries listed without a time (planned and deleted as
old with a file of today); a listed folder name holding '/' leaves the search's root open for good (every call answers
resume, endlessly); a folder named twice in a listing, out of name order, raises KeyError (a traceback); a folder listed under an empty
name does either (type "any"). Held: the re-match (min_size, newer_than_days, a folder's own mtime, max_depth at the limit
and against slashed names), the policy key (links_inside switched, names reordered or in another case, roots added),
quarantine resumed elsewhere, tiny execution batches in both modes with exact totals, quarantine parts restored,
not_previewed's prefix test, the selection folder swapped for a link (between calls, before execution), two resumes
racing, answer sizes, the plan bound, six hours of calls.

Fixed since (each such test passes, with a "Was a break (fixed)" comment): the folders' fresh reads share what is left
of the call's budget; a listed name no folder can hold (empty, holding "/") is kind "other" and a name listed twice
counts once (client/walk.py `_once_each`); not_previewed skips only the paths the dry run refused; exceptions are
bounded in characters too; a file listed without its size is of no kind a selection matches, and a tree holding
such an entry, or one listed without a time, matches no size or age filter (Totals.unknown).
"""

from __future__ import annotations

import os
import shutil
import time
from pathlib import Path
from typing import Any

import anyio
import pytest

from efile_mcp.errors import GuardRefusal
from efile_mcp.guard import execution, insight
from efile_mcp.guard.paths import DEFAULT_PROTECTED, PathPolicy
from efile_mcp.guard.quarantine import QUARANTINE_DIR
from efile_mcp.guard.removal import Removal
from efile_mcp.guard.seen import load_header
from efile_mcp.models.results import RemovePathsResult, Selection
from efile_mcp.sandbox.envelope import ok
from efile_mcp.sandbox.file_list import ListingRules, list_folder, parse_query

from ..test_removal import FakeClient, World, request
from ..test_removal import world as world  # the fixture
from .redteam_helpers import _listed, _read_on, _scratch, _sent, _stored_paths, _twice, _virtual
from .test_redteam_folders import (
    DAY,
    _age,
    _any,
    _gone_outside,
    _inside_another,
    _listing_of,
    _make,
    _rows,
    _snapshot,
    _state,
    _until_folder_walk,
    _whole,
)

pytestmark = pytest.mark.anyio


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


# ---------------------------------------------------------------------------- helpers


def _also_listed(world: World, folder: Path, inner: Path) -> list[int]:
    """`folder`'s listing also names `inner` (an entry below it, not a child) by its path below `folder`, slashes and
    all, as a hostile (or broken) server could: the entry's other fields are `inner`'s own. Returns [1] per serving."""
    sandbox = world.sandbox.sandbox
    served: list[int] = []

    async def with_slash(endpoint: str, req: Any) -> Any:
        if endpoint != "file/list" or _listed(req).rstrip("/") != _virtual(world, folder):
            return None
        config = sandbox.config
        rules = ListingRules(config.list_max_limit, config.list_page_cap, config.list_ignores_start, True)
        query = parse_query(req.query_params, sandbox.home, rules)
        data = await anyio.to_thread.run_sync(list_folder, sandbox.fs, query, rules)
        around = parse_query(
            {"path": _virtual(world, inner.parent), "start": "0", "limit": "1000"}, sandbox.home, rules
        )
        listed = await anyio.to_thread.run_sync(list_folder, sandbox.fs, around, rules)
        (item,) = [dict(i) for i in listed["fileList"] if i["name"] == inner.name]
        item["name"] = str(inner.relative_to(folder))
        if query.keyword and query.keyword not in item["name"].casefold():
            return ok(data)
        if query.start == 0:
            data["fileList"] = sorted([*data["fileList"], item], key=lambda i: i["name"])
        data["total"] += 1
        served.append(1)
        return ok(data)

    sandbox.fault = with_slash
    return served


def _entries_seen(walk: dict[str, Any] | None) -> int:
    """Entries a saved TreeWalk (`TreeWalk.to_json`) read so far."""
    return int(walk["s"][0]) if walk else 0


async def _exceptions(world: World, plan_id: str) -> list[list[str]]:
    header = await load_header(world.store, plan_id)
    assert header is not None
    return list(header.exceptions)


# ---------------------------------------------------------------------------- the call's reading budget


# Attacks: EFILE_WALK_MAX_ENTRIES as the call's budget ("one value per call, shared by every walk of the call") when a
# round hands out many matched folders at once: the Inspector starts every folder's fresh read together, each with
# `limits.less(self.entries_read)` taken before any of them read, so each gets the whole remainder.
# Was a break (fixed): (budget) the fresh reads of the matched folders of one round each get the call's whole
# remaining entry budget (Inspector.check starts every _size_folder at once with limits.less(entries_read),
# entries_read still 0), so a call reads N x the remainder: here 10 folders read 91 entries each where 91 were left
# (3,920 entries in a call of 3,101); in production a round of thousands of matched folders makes
# EFILE_WALK_MAX_ENTRIES no bound (only the deadline is), and the resume state keeps every folder's frontier (N x
# the remainder)
async def test_fresh_reads_of_many_matched_folders_in_one_call_stay_within_the_calls_entry_budget(
    world: World,
) -> None:
    top = _scratch(world) / "work"
    for j in range(10):
        _make(top / f"m{j}.tmp", [f"f{i:03d}" for i in range(300)])
    budget = 1 + 10 + 3_000 + 90  # the search (work, its 10 folders, their 3,000 files), then 90 entries to spare
    world.guard.walk_max_entries = budget
    removal = world.removal(confirm="token")
    first = await removal.preview(None, _any(world, "work", name="*.tmp"))
    assert first.resume
    state = await _state(world, first.resume)
    searched = _entries_seen(state["f"]["w"])
    fresh = sum(_entries_seen(walk) for walk, _ in state["fw"].values())
    fresh += 300 * first.summary.would_remove  # folders read whole in this call
    assert 3_000 <= searched <= 3_011, searched  # the search read everything, nothing more
    assert searched + fresh <= budget, (searched, fresh, budget)


# ---------------------------------------------------------------------------- entries the server names oddly


# Attacks: a server listing, in a folder, an entry whose name holds slashes ("a.tmp/x.tmp", the path of a real file
# below it): the walker takes names as they come (join), the search hands it out as a file match directly below
# `work` (no candidate holds it), while a.tmp matches and covers the real x.tmp: the plan holds a.tmp AND a.tmp/x.tmp.
# Was a break (fixed): (plan structure, totals) a listed name holding '/' ('a.tmp/x.tmp' in work's listing) is taken
# as an entry of work (client/walk.py never checks names): FindWalk hands it out as a match of its own (no candidate
# holds 'work'), the Inspector takes its entry from the search's listing, and the plan holds a.tmp and a.tmp/x.tmp,
# a path inside another; total_size 40 B and file_count 4 where execution removes 30 B, 3 files. Fix: refuse (or
# skip as unreadable) listed names that are empty, '.', '..' or hold '/'
async def test_a_listed_name_with_slashes_never_puts_a_path_inside_a_planned_folder(world: World) -> None:
    top = _scratch(world) / "work"
    _make(top / "a.tmp", ["x.tmp", "keep.dat"], size=10)
    _make(top, ["b.tmp"], size=10)
    served = _also_listed(world, top, top / "a.tmp" / "x.tmp")
    removal = world.removal(confirm="token")
    answer = await _whole(removal, world, _any(world, "work", name="*.tmp"))
    assert served
    planned = await _stored_paths(world, answer.plan_id or "")
    assert (_twice(planned), _inside_another(planned)) == ([], []), planned
    assert (answer.summary.total_size, answer.summary.file_count) == (30, 3), answer.summary


# Attacks: the same slashed name against max_depth=1 (only work's own entries): the search matches it at depth 1 (it
# sits in work's listing); the re-match of the path looked up afresh counts its depth from the path (2) and must not
# plan it; execution removes nothing below depth 1.
async def test_a_listed_name_with_slashes_is_not_planned_past_max_depth(world: World) -> None:
    top = _scratch(world) / "work"
    deep = _make(top / "sub", ["deep.tmp"], size=10)[0]
    _make(top, ["b.tmp"], size=10)
    served = _also_listed(world, top, deep)
    removal = world.removal(confirm="token")
    answer = await _whole(removal, world, _any(world, "work", name="*.tmp", max_depth=1, type="file"))
    assert served
    planned = await _stored_paths(world, answer.plan_id or "")
    assert planned == [_virtual(world, top / "b.tmp")]
    await removal.execute(request(answer), FakeClient())
    assert deep.exists()


# Attacks: a slashed name whose real object is a FOLDER, listed with a file's flags (name "keep/data.tmp" in work's
# listing, where keep/data.tmp is a folder of files): it was planned as a file (the search's entry) and execution
# left it as changed; since names holding "/" are no entries, it is not planned at all.
async def test_a_folder_listed_as_a_file_under_a_slashed_name_is_never_deleted(world: World) -> None:
    top = _scratch(world) / "work"
    inner = _make(top / "keep" / "data.tmp", ["precious-1", "precious-2"], size=50)
    _make(top / "keep", ["stand-in.tmp"], size=10)
    _make(top, ["b.tmp"], size=10)
    sandbox = world.sandbox.sandbox
    stand_in = top / "keep" / "stand-in.tmp"

    async def as_file(endpoint: str, req: Any) -> Any:
        if endpoint != "file/list" or _listed(req).rstrip("/") != _virtual(world, top):
            return None
        config = sandbox.config
        rules = ListingRules(config.list_max_limit, config.list_page_cap, config.list_ignores_start, True)
        query = parse_query(req.query_params, sandbox.home, rules)
        data = await anyio.to_thread.run_sync(list_folder, sandbox.fs, query, rules)
        around = parse_query(
            {"path": _virtual(world, top / "keep"), "start": "0", "limit": "1000"}, sandbox.home, rules
        )
        (item,) = [
            dict(i)
            for i in (await anyio.to_thread.run_sync(list_folder, sandbox.fs, around, rules))["fileList"]
            if i["name"] == stand_in.name
        ]
        item["name"] = "keep/data.tmp"
        if query.start == 0 and not query.keyword:
            data["fileList"] = sorted([*data["fileList"], item], key=lambda i: i["name"])
            data["total"] += 1
        return ok(data)

    sandbox.fault = as_file
    removal = world.removal(confirm="token")
    answer = await _whole(removal, world, _any(world, "work", name="*.tmp", type="file"))
    rows = {seen.path: seen.kind for seen in await _rows(world, answer.plan_id or "")}
    # A name holding "/" is no entry of work's (client/walk.py `_once_each` keeps it as kind "other"): never planned.
    assert _virtual(world, top / "keep" / "data.tmp") not in rows
    done = await removal.execute(request(answer), FakeClient())
    assert done.summary.changed == 0, done.summary
    assert all(path.exists() for path in inner) and not (top / "b.tmp").exists()


# ---------------------------------------------------------------------------- the re-match of what is looked up afresh


# Attacks: min_size on a FILE match, its entry taken from the search's listing (the deliberate trade-off): the file is
# truncated between the search and the plan; the plan shows the size the search saw; execution looks it up again and
# must leave it (type "file" and the default "any").
@pytest.mark.parametrize("kind", ["file", "any"])
async def test_a_file_matched_on_min_size_and_truncated_before_the_plan_is_never_deleted(
    world: World, kind: str
) -> None:
    top = _scratch(world) / "work"
    big = _make(top, ["big.log"], size=500)[0]
    _make(top, ["other.log"], size=400)
    # The search's listing of work is reading 1; the truncation lands right after it, before anything else.
    truncated = _listing_of(world, top, 2, lambda: big.write_bytes(b"tiny"))
    removal = world.removal(confirm="token")
    answer = await _whole(removal, world, _any(world, "work", name="*.log", min_size=300, type=kind))
    if not truncated:  # (the plan did not list work again: truncate before execution instead)
        big.write_bytes(b"tiny")
    done = await removal.execute(request(answer), FakeClient())
    assert big.exists() and big.read_bytes() == b"tiny" and done.summary.changed + done.summary.refused >= 1


# Attacks: min_size on a FOLDER (its tree's bytes): the folder is emptied down between the search closing it and its
# fresh read; the re-match must refuse it (not plan a 10 B folder under min_size=1,000).
async def test_a_folder_matched_on_min_size_and_emptied_before_its_fresh_read_is_not_planned(world: World) -> None:
    top = _scratch(world) / "work"
    _make(top / "run.tmp", ["a.bin", "b.bin"], size=800)
    shrunk = _listing_of(
        world, top, 2, lambda: [(top / "run.tmp" / n).write_bytes(b"x" * 5) for n in ("a.bin", "b.bin")]
    )
    removal = world.removal(confirm="token")
    answer = await _whole(removal, world, _any(world, "work", name="*.tmp", min_size=1_000))
    assert shrunk
    planned = await _stored_paths(world, answer.plan_id) if answer.plan_id else []
    assert planned == [] and answer.summary.refused == 1 and answer.confirmation_token is None


# Attacks: newer_than_days on a folder whose age is its newest entry, the folder's own mtime included: matched as new,
# then every entry and the folder itself dated back 40 days (`touch -d`) before its fresh read: no longer new.
async def test_a_folder_matched_as_new_and_dated_back_before_its_fresh_read_is_not_planned_as_new(
    world: World,
) -> None:
    top = _scratch(world) / "work"
    _make(top / "fresh.tmp", ["a", "b"], size=5)
    _make(top / "old.tmp", ["c"], size=5, age_days=40)
    _age(top / "old.tmp", 40)
    dated = _listing_of(world, top, 2, lambda: _age(top / "fresh.tmp", 40))
    removal = world.removal(confirm="token")
    answer = await _whole(removal, world, _any(world, "work", name="*.tmp", newer_than_days=7))
    assert dated
    planned = await _stored_paths(world, answer.plan_id) if answer.plan_id else []
    assert planned == [] and answer.summary.refused == 1, (planned, answer.summary)


# Attacks: a folder whose own mtime alone decides the match (older_than_days: its files are old, the folder itself was
# touched today, e.g. a file created and removed in it): the search and the fresh read must agree it is new (not
# planned), and the old files inside it are planned each on their own.
async def test_a_folder_touched_today_holding_old_files_is_not_planned_as_old(world: World) -> None:
    top = _scratch(world) / "work"
    _make(top / "cache.tmp", ["x.tmp", "y.tmp"], size=5, age_days=40)
    _age(top, 40)
    (top / "cache.tmp" / "scratch-file").write_bytes(b"made and removed")
    (top / "cache.tmp" / "scratch-file").unlink()  # the folder's own mtime is now
    removal = world.removal(confirm="token")
    answer = await _whole(removal, world, _any(world, "work", name="*.tmp", older_than_days=30))
    planned = sorted(await _stored_paths(world, answer.plan_id or ""))
    assert planned == [_virtual(world, top / "cache.tmp" / n) for n in ("x.tmp", "y.tmp")]
    assert answer.summary.covered == 0


# Attacks: max_depth with a folder exactly at the depth limit whose tree is deeper: matched (its tree counts whole),
# covers nothing (deeper names are past the limit), and the totals shown are what execution removes.
async def test_a_folder_at_the_depth_limit_is_planned_whole_and_its_totals_are_what_goes(world: World) -> None:
    top = _scratch(world) / "work"
    _make(top / "sub" / "a.tmp" / "deep" / "deeper.tmp", ["f1", "f2"], size=7)
    _make(top / "sub" / "a.tmp", ["own.tmp"], size=3)
    _make(top / "sub" / "b.tmp", ["g"], size=11)
    removal = world.removal(confirm="token")
    answer = await _whole(removal, world, _any(world, "work", name="*.tmp", max_depth=2))
    planned = sorted(await _stored_paths(world, answer.plan_id or ""))
    assert planned == [_virtual(world, top / "sub" / n) for n in ("a.tmp", "b.tmp")]
    assert (answer.summary.total_size, answer.summary.file_count, answer.summary.covered) == (28, 4, 0)
    done = await removal.execute(request(answer), FakeClient())
    assert (done.summary.total_size, done.summary.file_count) == (28, 4)
    assert not (top / "sub" / "a.tmp").exists() and (top / "sub").exists()


# ---------------------------------------------------------------------------- execution's count of what was not shown


# Attacks: not_previewed skipping the dry run's exceptions and everything inside them: a matched folder the dry run
# found MISSING (removed between the search and its fresh read) is made again, with new matches, before execution:
# nothing of it was shown (it was shown as absent), yet it is not counted.
# Was a break (fixed): (minor, totals) execution's not_previewed skips every exception of the dry run and all below
# it (execution.py: planned = plan.covered | exceptions), 'missing' ones too: a matched folder shown as missing
# (gone between the search and its fresh read) and made again with new matches before execution is not counted
# ('Done: every confirmed path is removed'); the person is not told the selection now matches a folder and 2 files
# the dry run showed as absent. Fix: skip only 'refused' exceptions (what they hold was shown with them), never
# 'missing' ones
async def test_a_folder_shown_as_missing_and_made_again_is_counted_as_not_previewed(world: World) -> None:
    top = _scratch(world) / "work"
    _make(top / "a.tmp", ["x.tmp", "y.dat"], size=10)
    _make(top, ["b.tmp"], size=10)
    gone = _listing_of(world, top, 2, lambda: shutil.rmtree(top / "a.tmp"))
    removal = world.removal(confirm="token")
    answer = await _whole(removal, world, _any(world, "work", name="*.tmp"))
    assert gone and answer.summary.missing == 1 and answer.summary.would_remove == 1
    assert [row[:2] for row in await _exceptions(world, answer.plan_id or "")] == [
        [_virtual(world, top / "a.tmp"), "missing"]
    ]
    world.sandbox.sandbox.fault = None
    _make(top / "a.tmp", ["new1.tmp", "new2.tmp", "data.bin"], size=10)  # another job makes it again
    done = await removal.execute(request(answer), FakeClient())
    assert done.summary.removed + done.summary.queued == 1
    assert "did not show" in done.next_step, done.next_step


# Attacks: the bisect prefix test of not_previewed (a folder match around a shown path is skipped): a folder given up
# under HELD_MAX (a.tmp, its matches planned one by one) and NEW folders a.tmp.tmp, a.tmpx.tmp made beside it after
# the dry run, whose names a.tmp prefixes: they and their matches are new and must be counted; a.tmp must not be.
async def test_a_new_folder_whose_name_a_given_up_folder_prefixes_is_counted_as_not_previewed(
    world: World, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(insight, "HELD_MAX", 6)
    top = _scratch(world) / "work"
    _make(top / "a.tmp", [f"m{i}.tmp" for i in range(9)] + ["keep.dat"])
    _make(top, ["b.tmp"])
    removal = world.removal(confirm="token")
    answer = await _whole(removal, world, _any(world, "work", name="*.tmp"))
    assert "held more" in answer.next_step and answer.summary.would_remove == 10
    _make(top / "a.tmp.tmp", ["n1.tmp", "n2.tmp"])  # after the dry run; "." sorts before "/" (bisect on "a.tmp/")
    _make(top / "a.tmpx.tmp", ["n3.tmp"])  # and "x" after it
    done = await removal.execute(request(answer), FakeClient())
    assert done.summary.removed + done.summary.queued == 10
    # a.tmp.tmp, n1, n2, a.tmpx.tmp, n3 (counted as the search finds them, folders and their contents).
    assert "5 path(s) now match the selection that the dry run did not show" in done.next_step, done.next_step


# Attacks: not_previewed after a plan read in several calls whose matched folder was refused late (a link inside,
# found by a later call of its fresh read) while it covered matches: nothing new appeared, so nothing is counted, and
# the refused folder's covered matches are not in `covered`.
async def test_a_folder_refused_late_in_a_read_across_calls_counts_no_covered_and_nothing_new(world: World) -> None:
    top = _scratch(world) / "work"
    _make(top / "big.tmp", [f"f{i:03d}.tmp" for i in range(300)])
    precious = _make(_scratch(world) / "precious", ["p0"])[0]
    (top / "big.tmp" / "zzz-link").symlink_to("../../precious")
    _make(top, ["b.tmp"])
    world.guard.walk_max_entries = 120
    removal = world.removal(confirm="token")
    answer = await _whole(removal, world, _any(world, "work", name="*.tmp"))
    assert (answer.summary.refused, answer.summary.would_remove, answer.summary.covered) == (1, 1, 0), answer.summary
    assert answer.summary.requested == 2
    world.guard.walk_max_entries = 100_000
    done = await removal.execute(request(answer), FakeClient())
    assert "did not show" not in done.next_step and precious.exists()


# ---------------------------------------------------------------------------- the policy key across calls and processes


# Attacks: EFILE_LINKS_INSIDE switched to "remove" between the calls of a matched folder's fresh read (the server
# restarted with it): the part read before was checked for links under "refuse"; the resumed call must be refused.
async def test_links_inside_switched_between_calls_of_a_fresh_read_refuses_the_resume(world: World) -> None:
    top = _scratch(world) / "work"
    _make(top / "big.tmp", [f"f{i:03d}" for i in range(300)])
    world.guard.walk_max_entries = 120
    first = world.removal(confirm="token")
    answer = await _until_folder_walk(first, await first.preview(None, _any(world, "work", name="*.tmp")), world)
    with pytest.raises(GuardRefusal) as refused:
        await _read_on(world.removal(confirm="token", links_inside="remove"), answer)
    assert refused.value.code == "policy"


# Attacks: the policy key against a harmless difference: the same protected names given in another order (a set) on
# another process: the resume must read on, not be refused.
async def test_the_same_protected_names_in_another_order_on_another_process_read_on(world: World) -> None:
    top = _scratch(world) / "work"
    _make(top / "big.tmp", [f"f{i:03d}" for i in range(300)])
    world.guard.walk_max_entries = 120
    roots = world.guard.policy.allowed_roots
    world.guard.policy = PathPolicy(roots, [*sorted(DEFAULT_PROTECTED), "zz.key", "aa.key"])
    first = world.removal(confirm="token")
    answer = await _until_folder_walk(first, await first.preview(None, _any(world, "work", name="*.tmp")), world)
    world.guard.policy = PathPolicy(roots, ["aa.key", *sorted(DEFAULT_PROTECTED, reverse=True), "zz.key"])
    answer, _ = await _read_on(world.removal(confirm="token"), answer)
    assert await _stored_paths(world, answer.plan_id or "") == [_virtual(world, top / "big.tmp")]


# Attacks: a protected name given in another CASE on the resuming process (EFILE_PROTECTED=AAA.KEY where the first had
# aaa.key): the names fold alike, so protection is the same; whatever the key says, the folder holding aaa.key must
# never be planned (refused as policy, or read on and refused for the name).
async def test_a_protected_name_in_another_case_on_another_process_never_plans_the_folder(world: World) -> None:
    top = _scratch(world) / "work"
    _make(top / "big.tmp", [f"f{i:03d}" for i in range(300)])
    (top / "big.tmp" / "zzz").mkdir()
    (top / "big.tmp" / "zzz" / "aaa.key").write_bytes(b"key")
    world.guard.walk_max_entries = 120
    roots = world.guard.policy.allowed_roots
    world.guard.policy = PathPolicy(roots, DEFAULT_PROTECTED | {"aaa.key"})
    first = world.removal(confirm="token")
    answer = await _until_folder_walk(first, await first.preview(None, _any(world, "work", name="*.tmp")), world)
    world.guard.policy = PathPolicy(roots, DEFAULT_PROTECTED | {"AAA.KEY"})
    try:
        answer, _ = await _read_on(world.removal(confirm="token"), answer)
    except GuardRefusal as refused:
        assert refused.code == "policy"
        return
    planned = await _stored_paths(world, answer.plan_id) if answer.plan_id else []
    assert planned == [] and answer.summary.refused == 1


# Attacks: a root added INSIDE a matched folder while its fresh read is pending (roots change, names do not: the
# policy key stays the same): the folder now contains an allowed root and must not be planned (the selection's own
# folder contains it too: the resumed call is refused, and nothing is planned).
async def test_a_root_added_inside_a_matched_folder_while_it_is_read_across_calls_is_refused(world: World) -> None:
    top = _scratch(world) / "work"
    for j in range(3):
        _make(top / "big.tmp" / f"sub-{j}", [f"f{i:03d}" for i in range(100)])
    world.guard.walk_max_entries = 120
    removal = world.removal(confirm="token")
    answer = await _until_folder_walk(removal, await removal.preview(None, _any(world, "work", name="*.tmp")), world)
    roots = world.guard.policy.allowed_roots
    world.guard.policy = PathPolicy([*roots, _virtual(world, top / "big.tmp" / "sub-1")], DEFAULT_PROTECTED)
    with pytest.raises(GuardRefusal) as refused:
        await _read_on(removal, answer)
    assert refused.value.code == "select_path" and "contains the allowed root" in str(refused.value)


# Attacks: a dry run begun in quarantine mode, resumed by a process whose default is delete: it stays a quarantine
# (planned and executed as one); resumed by a process with no quarantine at all, it is refused, never deleted.
async def test_a_quarantine_dry_run_resumed_elsewhere_stays_a_quarantine_or_is_refused(world: World) -> None:
    top = _scratch(world) / "work"
    _make(top / "big.tmp", [f"f{i:03d}" for i in range(300)])
    world.guard.walk_max_entries = 120
    quarantine = world.guard.quarantine
    first = world.removal(confirm="token", quarantine=quarantine, default_mode="quarantine")
    answer = await _until_folder_walk(first, await first.preview(None, _any(world, "work", name="*.tmp")), world)
    bare = Removal(world.guard, confirm="token", default_mode="delete", quarantine=None, confirm_timeout=0.05)
    with pytest.raises(GuardRefusal) as refused:
        await _read_on(bare, answer)
    assert refused.value.code == "quarantine_unavailable"
    deleting = world.removal(confirm="token", quarantine=quarantine, default_mode="delete")
    answer, _ = await _read_on(deleting, answer)
    assert "quarantine" in answer.next_step.lower()
    world.guard.walk_max_entries = 100_000
    done = await deleting.execute(request(answer), FakeClient())
    assert done.summary.quarantined == 1 and not done.summary.removed, done.summary
    assert not (top / "big.tmp").exists() and _sent(world) == []


# ---------------------------------------------------------------------------- execution of what was planned


def _file_sizes(root: Path) -> dict[str, int]:
    return {str(p.relative_to(root)): p.stat().st_size for p in root.rglob("*") if p.is_file() and not p.is_symlink()}


# Attacks: the totals a person approves against what execution really removes, with folder rows and file rows
# interleaved across tiny execution batches (execution.BATCH_ROWS = 2), nested candidates given up under HELD_MAX,
# read across calls at a small budget, in delete and quarantine mode (the quarantine's record now in parts, one per
# batch): no row inside another or twice, each path sent once, nothing removed that was not planned, and the dry
# run's total_size / file_count are exactly the bytes and files that went.
@pytest.mark.parametrize("mode", ["delete", "quarantine"])
async def test_interleaved_folder_and_file_rows_in_tiny_batches_remove_exactly_the_totals_shown(
    world: World, monkeypatch: pytest.MonkeyPatch, mode: str
) -> None:
    from .test_redteam_folders import _nested_tree

    monkeypatch.setattr(insight, "HELD_MAX", 10)
    monkeypatch.setattr(execution, "BATCH_ROWS", 2)
    top = _nested_tree(world)
    _make(top / "big.tmp", [f"b{i:02d}.dat" for i in range(30)], size=4)
    _make(top / "loose", [f"l{i}.tmp" for i in range(3)], size=9)
    before, sizes = _snapshot(top), _file_sizes(top)
    world.guard.walk_max_entries = 13
    removal = world.removal(confirm="token", quarantine=world.guard.quarantine)
    answer = await _whole(removal, world, _any(world, "work", name="*.tmp"), mode=mode)
    rows = await _rows(world, answer.plan_id or "")
    planned = [seen.path for seen in rows]
    assert (_twice(planned), _inside_another(planned)) == ([], [])
    kinds = {seen.kind for seen in rows}
    assert kinds == {"file", "directory"}, kinds
    world.guard.walk_max_entries = 100_000
    done = await removal.execute(request(answer), FakeClient())
    went = [rel for rel in sizes if not (top / rel).exists()]
    assert _gone_outside(world, before, top, planned) == []
    assert (sum(sizes[rel] for rel in went), len(went)) == (answer.summary.total_size, answer.summary.file_count)
    assert (done.summary.total_size, done.summary.file_count) == (answer.summary.total_size, answer.summary.file_count)
    gone_count = done.summary.removed + done.summary.queued + done.summary.quarantined
    assert gone_count == len(planned) and not done.summary.changed, done.summary
    if mode == "delete":
        assert sorted(_sent(world)) == sorted(planned)
    else:
        assert _sent(world) == [] and (_scratch(world) / QUARANTINE_DIR).is_dir()


# Attacks: execution batches that split a plan's folder rows from the file rows of a candidate given up beside them,
# with a file made inside a planned folder between the dry run and execution (the folder's fingerprint changes): that
# folder is left (changed) in whatever batch it falls, the files beside it go, nothing else.
async def test_a_planned_folder_written_to_before_execution_is_left_whatever_batch_it_falls_in(
    world: World, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(execution, "BATCH_ROWS", 1)
    top = _scratch(world) / "work"
    for j in range(4):
        _make(top / f"job{j}.tmp", ["o1", "o2"], size=5)
    _make(top, [f"loose{i}.tmp" for i in range(4)], size=5)
    removal = world.removal(confirm="token")
    answer = await _whole(removal, world, _any(world, "work", name="*.tmp"))
    assert answer.summary.would_remove == 8
    (top / "job2.tmp" / "late-result").write_bytes(b"written after the dry run")
    done = await removal.execute(request(answer), FakeClient())
    assert done.summary.changed == 1 and done.summary.removed + done.summary.queued == 7, done.summary
    assert sorted(p.name for p in top.iterdir()) == ["job2.tmp"]
    assert (top / "job2.tmp" / "late-result").exists()


# ---------------------------------------------------------------------------- the selection's own folder


# Attacks: select.path (not itself an allowed root) swapped for a link to another folder of files between the calls
# of a dry run: the resumed search would list the link's target by path (the server follows it); the resumed call
# must be refused, and nothing of the target planned or deleted.
async def test_the_selection_folder_swapped_for_a_link_between_calls_is_refused(world: World) -> None:
    top = _scratch(world) / "work"
    for j in range(5):
        _make(top / f"d{j}", [f"f{i:02d}.tmp" for i in range(30)])
    precious = _scratch(world) / "precious"
    for j in range(5):
        _make(precious / f"d{j}", [f"f{i:02d}.tmp" for i in range(30)])
    world.guard.walk_max_entries = 40
    removal = world.removal(confirm="token")
    first = await removal.preview(None, _any(world, "work", name="*.tmp"))
    assert first.resume
    top.rename(top.with_name("work.moved"))
    top.symlink_to("precious")
    with pytest.raises(GuardRefusal) as refused:
        await _read_on(removal, first)
    assert refused.value.code == "select_path"
    assert len(list(precious.rglob("*.tmp"))) == 150 and _sent(world) == []


# Attacks: select.path written non-canonically (a trailing slash, a '..', a doubled slash) or as a glob: a clear
# refusal ("select_path"), never a traceback nor a search of another folder.
@pytest.mark.parametrize("suffix", ["work/", "work/../work", "work//sub", "wo*"])
async def test_a_non_canonical_selection_folder_is_refused_clearly(world: World, suffix: str) -> None:
    _make(_scratch(world) / "work" / "sub", ["a.tmp"])
    removal = world.removal(confirm="token")
    select = Selection(path=f"{world.sandbox.home}/scratch/{suffix}", name="*.tmp")
    with pytest.raises(GuardRefusal) as refused:
        await removal.preview(None, select)
    assert refused.value.code == "select_path"


# ---------------------------------------------------------------------------- resume raced, answers' sizes


# Attacks: two calls resuming the same dry run at once (an agent retrying while the first call is still at work, or two
# replicas): one claims the state, the other is refused clearly ("resume"); the one left reads on to a plan holding
# each path once, none inside another.
async def test_two_calls_resuming_one_dry_run_at_once_never_plan_a_path_twice(
    world: World, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(insight, "HELD_MAX", 10)
    top = _scratch(world) / "work"
    for j in range(6):
        _make(top / f"job{j}.tmp", [f"o{i:02d}.tmp" for i in range(25)] + ["keep.dat"])
        _make(top / f"run{j}", [f"r{i}.tmp" for i in range(5)])
    world.guard.walk_max_entries = 30
    removal = world.removal(confirm="token")
    answer = await removal.preview(None, _any(world, "work", name="*.tmp"))
    outcomes: list[RemovePathsResult | GuardRefusal] = []
    while answer.resume:
        outcomes.clear()

        async def one(resume: str = answer.resume) -> None:
            try:
                outcomes.append(await world.removal(confirm="token").preview(None, None, resume=resume))
            except GuardRefusal as refused:
                outcomes.append(refused)

        async with anyio.create_task_group() as group:
            group.start_soon(one)
            group.start_soon(one)
        answers = [o for o in outcomes if isinstance(o, RemovePathsResult)]
        refusals = [o for o in outcomes if isinstance(o, GuardRefusal)]
        assert len(answers) == 1 and [r.code for r in refusals] == ["resume"], outcomes
        answer = answers[0]
    planned = await _stored_paths(world, answer.plan_id or "")
    assert (_twice(planned), _inside_another(planned)) == ([], [])
    assert len(planned) == answer.summary.would_remove and answer.confirmation_token


# Attacks: the answers' sizes when the re-match refuses many matched folders with long names (every one written to
# between the search and its fresh read: the new "it changed while the selection was read" reason, with sizes and
# times), read across calls, detail auto and full: every answer within STRUCTURED_MAX / TEXT_MAX.
@pytest.mark.parametrize("detail", ["auto", "full"])
async def test_many_folders_refused_by_the_re_match_keep_every_answer_within_its_budget(
    world: World, detail: str
) -> None:
    from efile_mcp.models.results import STRUCTURED_MAX
    from efile_mcp.tools.output import TEXT_MAX

    from .test_redteam_folders import LONG, _fits

    top = _scratch(world) / "work"
    folders = [top / (LONG.format(i=i) + ".tmp") for i in range(80)]
    for folder in folders:
        _make(folder, ["a.tmp", "b.dat"], size=5)
    _age(top, 40)

    def write_all() -> None:
        for folder in folders:
            (folder / "fresh").write_bytes(b"now")

    written = _listing_of(world, top, 2, write_all)
    world.guard.walk_max_entries = 400
    removal = world.removal(confirm="token")
    select = _any(world, "work", name="*.tmp", older_than_days=30)
    answer = await removal.preview(None, select, detail=detail)  # type: ignore[arg-type]
    sizes = [_fits(answer)]
    while answer.resume:
        answer = await removal.preview(None, None, resume=answer.resume, detail=detail)  # type: ignore[arg-type]
        sizes.append(_fits(answer))
    assert written and answer.summary.refused == 80 and answer.confirmation_token is None, answer.summary
    assert max(s for s, _ in sizes) <= STRUCTURED_MAX and max(t for _, t in sizes) <= TEXT_MAX, sizes


# ---------------------------------------------------------------------------- the resume state's size


# Attacks: the resume state's size through the dry run's exceptions (kept for the review page, EXCEPTIONS_KEPT =
# 10,000, by count only): 10,000 matches the policy refuses (names holding '[', a wildcard character) with paths of
# ~1,000 characters, the refusal's reason repeating each path: the state saved (and read back) at every call's end
# holds them all, path and reason, as does the finished plan's header.
# Was a break (fixed): (state size) the dry run's exceptions ride in the resume state (and the plan's header)
# bounded by count only (EXCEPTIONS_KEPT 10,000), each [path, status, reason] with the policy's reason repeating the
# path: 10,000 refused paths of ~1,000 characters make a 14 MB resume state written and read at every call (~55 MB
# at 4,096-byte paths), the size HELD_CHARS_MAX (6fcac60) was added to prevent for held matches. Fix: bound the
# exceptions kept by characters too (the rest counted), and keep a short reason code
async def test_the_resume_state_with_many_long_refused_paths_stays_within_a_few_megabytes(world: World) -> None:
    top = _scratch(world) / "work"
    deep = top / ("a" * 240) / ("b" * 240) / ("c" * 240)
    deep.mkdir(parents=True)
    for i in range(10_000):
        (deep / (f"f[{i:05d}]" + "x" * 190 + ".tmp")).write_bytes(b"x")
    for i in range(300):
        (deep / f"z{i:03d}.dat").write_bytes(b"x")  # read by the next call: the first ends with a resume
    world.guard.walk_max_entries = 10_100
    removal = world.removal(confirm="token")
    answer = await removal.preview(None, _any(world, "work", name="*.tmp", type="file"))
    assert answer.resume and answer.summary.refused == 10_000
    blob = await world.store.load_walk(answer.resume)
    assert blob is not None
    assert len(blob) <= 2 * insight.HELD_CHARS_MAX, len(blob)


# ---------------------------------------------------------------------------- what the server leaves out


def _blanked(world: World, folder: Path, name: str, field: str) -> list[int]:
    """Every listing of `folder` gives `name` without `field` (a server that leaves out a file's size or time)."""
    sandbox = world.sandbox.sandbox
    served: list[int] = []

    async def without(endpoint: str, req: Any) -> Any:
        if endpoint != "file/list" or _listed(req).rstrip("/") != _virtual(world, folder):
            return None
        config = sandbox.config
        rules = ListingRules(config.list_max_limit, config.list_page_cap, config.list_ignores_start, True)
        query = parse_query(req.query_params, sandbox.home, rules)
        data = await anyio.to_thread.run_sync(list_folder, sandbox.fs, query, rules)
        for item in data["fileList"]:
            if item["name"] == name:
                item.pop(field, None)
                served.append(1)
        return ok(data)

    sandbox.fault = without
    return served


# Attacks: max_size against a file whose size the server leaves out (a 5,000 B file listed with no size): taken as
# 0 B by the walker (Entry.of: `size or 0`), it matches max_size=100, is planned as 0 B, and execution, which lists it
# the same way, finds it unchanged.
# Was a break (fixed): (filters) a file the server lists without its size is taken as 0 B (client/walk.py Entry:
# 'size if size and size > 0 else 0'), so max_size matches it: a 5,000 B file is planned (shown as 0 B) and deleted
# by a max_size=100 selection; a folder holding it is sized without it the same way. Fix: keep an unknown size as
# unknown (None) and let a size filter (or a folder's tree holding one) never match it
async def test_a_file_listed_without_its_size_is_not_matched_by_max_size(world: World) -> None:
    top = _scratch(world) / "work"
    _make(top, ["small.bin"], size=10)
    huge = _make(top, ["huge.bin"], size=5_000)[0]
    blanked = _blanked(world, top, "huge.bin", "size")
    removal = world.removal(confirm="token")
    answer = await _whole(removal, world, _any(world, "work", name="*.bin", max_size=100, type="file"))
    assert blanked
    if answer.confirmation_token:
        await removal.execute(request(answer), FakeClient())
    assert huge.exists() and huge.stat().st_size == 5_000


# Attacks: older_than_days on a folder holding a file the server lists without its time (written today): a FILE of
# unknown time never matches an age filter (Matcher.totals_match: mtime None), but a folder's newest entry is taken
# over the times known (Totals.see skips None), so the folder matches as old and goes with today's file.
# Was a break (fixed): (filters) a folder's age ignores entries listed without a time (Totals.see skips None, in the
# search, the Inspector and execution alike), while a file of unknown time never matches an age filter: a folder
# holding a file written today, listed with no lastModifiedTime, matches older_than_days=30 on its other entries and
# is planned and deleted with it. Fix: a tree holding an entry of unknown time has an unknown newest (no age filter
# matches it), as a file of unknown time does
async def test_a_folder_holding_a_file_listed_without_its_time_is_not_matched_as_old(world: World) -> None:
    top = _scratch(world) / "work"
    _make(top / "old.tmp", ["a.dat", "b.dat"], size=5)
    _age(top, 40)
    today = top / "old.tmp" / "result-of-today.dat"
    today.write_bytes(b"written today")
    # The folder's own time is dated back too (as after a `touch -d`); only today's file is new.
    _age_only(top / "old.tmp", 40)
    blanked = _blanked(world, top / "old.tmp", today.name, "lastModifiedTime")
    removal = world.removal(confirm="token")
    answer = await _whole(removal, world, _any(world, "work", name="*.tmp", older_than_days=30))
    assert blanked
    if answer.confirmation_token:
        await removal.execute(request(answer), FakeClient())
    assert today.exists()


def _age_only(path: Path, age_days: float) -> None:
    """`path` itself (not what it holds) dated `age_days` back."""
    when = time.time() - age_days * DAY
    os.utime(path, (when, when))


# ---------------------------------------------------------------------------- quarantine in parts, restored


# Attacks: a type "any" selection quarantined in tiny batches (a part per batch: folders and files in different parts),
# then restored whole: the tree is back exactly as it was (names and sizes), nothing left in the quarantine's plan.
async def test_a_folder_selection_quarantined_in_tiny_batches_is_restored_exactly(
    world: World, monkeypatch: pytest.MonkeyPatch
) -> None:
    from .test_redteam_folders import _nested_tree

    monkeypatch.setattr(insight, "HELD_MAX", 10)
    monkeypatch.setattr(execution, "BATCH_ROWS", 3)
    top = _nested_tree(world)
    before = _file_sizes(top)
    quarantine = world.guard.quarantine
    removal = world.removal(confirm="token", quarantine=quarantine)
    answer = await _whole(removal, world, _any(world, "work", name="*.tmp"), mode="quarantine")
    rows = await _rows(world, answer.plan_id or "")
    planned = [seen.path for seen in rows]
    assert {seen.kind for seen in rows} == {"file", "directory"} and _inside_another(planned) == []
    done = await removal.execute(request(answer), FakeClient())
    assert done.summary.quarantined == len(planned), done.summary
    assert _file_sizes(top) != before
    restored = await quarantine.restore(answer.plan_id or "")
    assert not restored.summary.conflict and not restored.summary.failed, restored.summary
    assert _file_sizes(top) == before


# Attacks: restoring one file that was covered by a quarantined folder (never a planned path of its own: inside
# a.tmp/b.tmp): it comes back alone, or the answer says clearly why not; never a traceback, never another path moved.
async def test_restoring_a_covered_file_of_a_quarantined_folder_moves_that_file_alone(world: World) -> None:
    top = _scratch(world) / "work"
    _make(top / "a.tmp" / "b.tmp", ["y.tmp", "z.dat"], size=10)
    _make(top / "a.tmp", ["x.tmp"], size=10)
    quarantine = world.guard.quarantine
    removal = world.removal(confirm="token", quarantine=quarantine)
    answer = await _whole(removal, world, _any(world, "work", name="*.tmp"), mode="quarantine")
    assert await _stored_paths(world, answer.plan_id or "") == [_virtual(world, top / "a.tmp")]
    assert answer.summary.covered == 3
    await removal.execute(request(answer), FakeClient())
    covered = top / "a.tmp" / "b.tmp" / "y.tmp"
    try:
        restored = await quarantine.restore(answer.plan_id or "", [_virtual(world, covered)])
    except GuardRefusal as refused:
        assert refused.code in ("restore_paths", "unknown_plan"), refused
        assert not (top / "a.tmp").exists()
        return
    back = sorted(str(p.relative_to(top)) for p in top.rglob("*") if p.is_file())
    assert back in ([], ["a.tmp/b.tmp/y.tmp"]), (back, restored.summary)


# ---------------------------------------------------------------------------- execution's answer, the plan bound


# Attacks: the EXECUTION answer's size when many planned folders with long names changed since the dry run (each
# written to: the "changed" reason with its difference), with not_previewed counting new matches too: within
# STRUCTURED_MAX / TEXT_MAX at detail auto and full.
@pytest.mark.parametrize("detail", ["auto", "full"])
async def test_many_changed_long_named_folders_keep_the_execution_answer_within_its_budget(
    world: World, detail: str
) -> None:
    from efile_mcp.models.results import STRUCTURED_MAX
    from efile_mcp.tools.output import TEXT_MAX

    from .test_redteam_folders import LONG, _fits

    top = _scratch(world) / "work"
    folders = [top / (LONG.format(i=i) + ".tmp") for i in range(90)]
    for folder in folders:
        _make(folder, ["a.tmp", "b.dat"], size=5)
    removal = world.removal(confirm="token")
    answer = await _whole(removal, world, _any(world, "work", name="*.tmp"), detail=detail)
    assert answer.summary.would_remove == 90
    for folder in folders[::2]:
        (folder / "late").write_bytes(b"written after the dry run")
    _make(top / (LONG.format(i=999) + ".tmp"), ["new.tmp"], size=5)
    done = await removal.execute(request(answer), FakeClient(), detail=detail)  # type: ignore[arg-type]
    assert done.summary.changed == 45 and done.summary.removed + done.summary.queued == 45, done.summary
    assert "did not show" in done.next_step
    structured, text = _fits(done)
    assert structured <= STRUCTURED_MAX and text <= TEXT_MAX, (structured, text)


# Attacks: EFILE_MAX_PLAN_PATHS (5 here) against a selection read across calls whose folders cover hundreds of matches
# (a folder counts once) and loose files beyond the bound: refused clearly ("too_many_paths"), nothing planned, and the
# refused call leaves the state as it was (a retry is refused the same way, never a token).
async def test_a_selection_past_the_plan_bound_is_refused_in_whatever_call_it_crosses_it(world: World) -> None:
    top = _scratch(world) / "work"
    for j in range(3):
        _make(top / f"job{j}.tmp", [f"o{i:03d}.tmp" for i in range(100)])
    _make(top, [f"loose{i}.tmp" for i in range(4)])
    world.guard.walk_max_entries = 90
    removal = Removal(world.guard, confirm="token", default_mode="delete", confirm_timeout=0.05, max_plan_paths=5)
    answer = await removal.preview(None, _any(world, "work", name="*.tmp"))
    refusals = []
    for _ in range(40):
        if not answer.resume:
            break
        try:
            answer = await removal.preview(None, None, resume=answer.resume)
        except GuardRefusal as refused:
            refusals.append(refused.code)
            if len(refusals) == 2:
                break
    assert refusals == ["too_many_paths", "too_many_paths"] and answer.confirmation_token is None
    assert len(list(top.rglob("*.tmp"))) == 307


# ---------------------------------------------------------------------------- time across calls (the injected clock)


# Attacks: a dry run read across calls 50 minutes apart for almost six hours (ROWS_KEPT_SECONDS), its first rows
# written at the start: finished just before the bound, its token is used a second before it expires: every row is
# still there (the token never outlives them), and the plan goes whole. One more gap past the bound: refused, clearly.
@pytest.mark.parametrize("past_the_bound", [False, True])
async def test_a_dry_run_read_for_almost_six_hours_keeps_its_rows_as_long_as_its_token(
    world: World, past_the_bound: bool
) -> None:
    from efile_mcp.guard.selection import ROWS_KEPT_SECONDS

    top = _scratch(world) / "work"
    for j in range(8):
        _make(top / f"job{j}.tmp", [f"o{i:02d}" for i in range(20)])
    _make(top, [f"loose{i}.tmp" for i in range(5)])
    world.guard.walk_max_entries = 25
    removal = world.removal(confirm="token")
    started = world.clock()
    answer = await removal.preview(None, _any(world, "work", name="*.tmp"))
    calls = 0
    while answer.resume:
        gap = 50 * 60.0
        if world.clock() + gap >= started + ROWS_KEPT_SECONDS - 60:
            gap = started + ROWS_KEPT_SECONDS - 60 - world.clock()
            if past_the_bound:
                world.clock.advance(gap + 120)
                with pytest.raises(GuardRefusal) as refused:
                    await removal.preview(None, None, resume=answer.resume)
                assert refused.value.code == "resume"
                return
        world.clock.advance(gap)
        answer = await removal.preview(None, None, resume=answer.resume)
        calls += 1
    assert calls > 3 and answer.confirmation_token and answer.expires_at
    assert not past_the_bound, "the dry run finished before the bound: make it slower"
    header = await load_header(world.store, answer.plan_id or "")
    assert header is not None
    world.clock.advance(header.expires_at - world.clock() - 1)
    done = await removal.execute(request(answer), FakeClient())
    assert done.summary.removed + done.summary.queued == 13 and not done.summary.failed, done.summary


# Attacks: the selection's folder swapped, after the dry run, for a link to an identical copy (`cp -a`, same names,
# sizes and times) of it: every planned path (folders and files) now leads through the link; execution must send
# none of them, and the copy (the link's target) keeps everything.
async def test_the_selection_folder_swapped_for_a_link_to_a_copy_after_the_dry_run_sends_nothing(world: World) -> None:
    top = _scratch(world) / "work"
    _make(top / "a.tmp", ["x.tmp", "y.dat"], size=10)
    _make(top / "plain", ["z.tmp", "keep.dat"], size=10)
    removal = world.removal(confirm="token")
    answer = await _whole(removal, world, _any(world, "work", name="*.tmp"))
    assert answer.summary.would_remove == 2
    copy = _scratch(world) / "copy"
    shutil.copytree(top, copy, symlinks=True, copy_function=shutil.copy2)
    for below in sorted(copy.rglob("*"), reverse=True):  # the folders' own times too, as `cp -a` keeps them
        original = top / below.relative_to(copy)
        stat = original.stat()
        os.utime(below, (stat.st_atime, stat.st_mtime))
    top.rename(top.with_name("work.old"))
    top.symlink_to("copy")
    done = await removal.execute(request(answer), FakeClient())
    assert _sent(world) == [] and done.summary.removed + done.summary.queued == 0, done.summary
    assert sorted(str(p.relative_to(copy)) for p in copy.rglob("*")) == [
        "a.tmp",
        "a.tmp/x.tmp",
        "a.tmp/y.dat",
        "plain",
        "plain/keep.dat",
        "plain/z.tmp",
    ]


# Attacks: a slashed name listed as a FOLDER ("keep/inner.tmp" in work's listing, the path of a real sub-folder): the
# walker walks it as a child of work, but it closes as keep's child, so work never closes: the search's frontier is
# empty, its walk never finished, and every call reads nothing and answers "resume" again, forever.
# Was a break (fixed): (liveness) a listed folder name holding '/' leaves the search's walk with an empty frontier
# and its root open for good (TreeWalk's open count of work waits for a child that closes under keep): every resumed
# call reads 0 entries and answers resume ('Not read whole yet: 15 entries searched so far'), endlessly; no token,
# no refusal, an agent loops. Fix: refuse slashed names in the listing (as above), and refuse a dry run whose call
# read nothing and is not whole (SelectionDryRun.plan: 'read == read_before' on the first round) instead of
# answering resume
async def test_a_listed_folder_name_with_slashes_never_leaves_the_dry_run_resuming_forever(world: World) -> None:
    top = _scratch(world) / "work"
    _make(top / "keep" / "inner.tmp", [f"f{i}" for i in range(5)], size=10)
    _make(top / "keep", ["k.dat"], size=10)
    _make(top, ["b.tmp"], size=10)
    served = _also_listed(world, top, top / "keep" / "inner.tmp")
    removal = world.removal(confirm="token")
    try:
        answer, _ = await _read_on(removal, await removal.preview(None, _any(world, "work", name="*.tmp")), calls=10)
    except GuardRefusal:
        return  # a clear refusal is an answer too
    assert served
    assert answer.resume is None, answer.next_step


def _folder_listed_twice(world: World, folder: Path, name: str) -> list[int]:
    """Every (unfiltered) listing of `folder` names its entry `name` a second time, at the page's end (out of name
    order, so not next to the first: a server merging two sources, or a hostile one)."""
    sandbox = world.sandbox.sandbox
    served: list[int] = []

    async def twice(endpoint: str, req: Any) -> Any:
        if endpoint != "file/list" or _listed(req).rstrip("/") != _virtual(world, folder):
            return None
        config = sandbox.config
        rules = ListingRules(config.list_max_limit, config.list_page_cap, config.list_ignores_start, True)
        query = parse_query(req.query_params, sandbox.home, rules)
        data = await anyio.to_thread.run_sync(list_folder, sandbox.fs, query, rules)
        again = [dict(item) for item in data["fileList"] if item["name"] == name]
        if again and not query.keyword:
            data["fileList"] = [*data["fileList"], *again]
            data["total"] += 1
            served.append(1)
        return ok(data)

    sandbox.fault = twice
    return served


# Attacks: a server naming a sub-folder twice in one listing, the second time out of name order (`_once_each` drops
# only a name repeated next to itself): the walk reads the folder twice at once, and the second reading's page finds
# the call's listing cache already given up by the first.
# Was a break (fixed): (traceback) a folder named twice in its parent's listing, not next to itself, is read twice
# at once; the dry run's listings keep pages for look-ups by folder (client/walk.py Listings.walk: held[folder]),
# the first reading pops the folder's flag and the second reading's page raises KeyError ('held[folder]' in take): a
# traceback for type 'any' and 'file' alike (any walk whose listings keep pages), no clear refusal. Fix: drop
# repeated names from a page whatever their place (a set of the page's names), or key the cache flag so a second
# reading cannot find it gone
@pytest.mark.parametrize("kind", ["any", "file"])
async def test_a_folder_named_twice_in_a_listing_gives_a_clear_answer(world: World, kind: str) -> None:
    top = _scratch(world) / "work"
    _make(top / "a.tmp" / "sub", [f"f{i}" for i in range(5)], size=10)
    _make(top / "a.tmp", ["x.tmp"], size=10)
    _make(top, ["b.tmp", "c.dat"], size=10)
    served = _folder_listed_twice(world, top, "a.tmp")
    removal = world.removal(confirm="token")
    try:
        answer = await _whole(removal, world, _any(world, "work", name="*.tmp", type=kind))
    except GuardRefusal:
        return
    assert served
    planned = await _stored_paths(world, answer.plan_id or "")
    assert (_twice(planned), _inside_another(planned)) == ([], [])


# Attacks: a server listing a folder's entry again under an EMPTY name (a copy of a.tmp's item, name "", first in
# the page): "." and ".." are dropped by the walk, an empty name is not: "work/" is walked as a child of work. Held for
# type "file" (a walk without folder totals); a break for type "any".
# Was a break (fixed) for type 'any' (liveness, traceback): a folder entry listed with an empty name was walked as
# 'work/' (join), which never closes as work's child: the dry run answered resume forever; a name no folder can hold
# is now kept as kind "other" (client/walk.py `_once_each`), never walked into.


@pytest.mark.parametrize("kind", ["any", "file"])
async def test_a_folder_listed_under_an_empty_name_gives_a_clear_answer(world: World, kind: str) -> None:
    top = _scratch(world) / "work"
    _make(top / "a.tmp", ["x.tmp"], size=10)
    _make(top, ["b.tmp"], size=10)
    sandbox = world.sandbox.sandbox

    async def empty_name(endpoint: str, req: Any) -> Any:
        if endpoint != "file/list" or _listed(req) != _virtual(world, top):
            return None
        config = sandbox.config
        rules = ListingRules(config.list_max_limit, config.list_page_cap, config.list_ignores_start, True)
        query = parse_query(req.query_params, sandbox.home, rules)
        data = await anyio.to_thread.run_sync(list_folder, sandbox.fs, query, rules)
        copies = [dict(item, name="") for item in data["fileList"] if item["name"] == "a.tmp"]
        if copies and not query.keyword:
            data["fileList"] = [*copies, *data["fileList"]]
            data["total"] += 1
        return ok(data)

    sandbox.fault = empty_name
    removal = world.removal(confirm="token")
    try:
        answer = await _whole(removal, world, _any(world, "work", name="*.tmp", type=kind))
    except GuardRefusal:
        return
    planned = await _stored_paths(world, answer.plan_id or "")
    assert (_twice(planned), _inside_another(planned)) == ([], [])


# Attacks: a type "directory" selection whose nested candidate folders are given up under HELD_MAX (only folders are
# held), read across calls, executed in tiny batches: only folders planned, none inside another, and nothing but what
# is planned goes (the files beside them stay).
async def test_a_directory_selection_under_held_pressure_plans_only_folders_none_inside_another(
    world: World, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(insight, "HELD_MAX", 4)
    monkeypatch.setattr(execution, "BATCH_ROWS", 2)
    top = _scratch(world) / "work"
    for j in range(3):
        for k in range(6):
            _make(top / "out.d" / f"run{j}.d" / f"step{k}.d", ["log.txt"], size=3)
        _make(top / "out.d" / f"run{j}.d", ["keep.d.txt"], size=3)
    _make(top, ["loose.d"], size=3)  # a file named like the folders: never planned by a directory selection
    before = _snapshot(top)
    world.guard.walk_max_entries = 9
    removal = world.removal(confirm="token")
    answer = await _whole(removal, world, _any(world, "work", name="*.d", type="directory"))
    rows = await _rows(world, answer.plan_id or "")
    planned = [seen.path for seen in rows]
    assert {seen.kind for seen in rows} == {"directory"} and "held more" in answer.next_step
    assert (_twice(planned), _inside_another(planned)) == ([], [])
    world.guard.walk_max_entries = 100_000
    done = await removal.execute(request(answer), FakeClient())
    assert done.summary.removed + done.summary.queued == len(planned), done.summary
    assert _gone_outside(world, before, top, planned) == [] and (top / "loose.d").is_file()
