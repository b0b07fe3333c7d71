"""Selections that may match folders (type "any", the default, or "directory"), planned as they are found.

A folder matches only once its tree is read; the matches inside it come first and are covered by it. The
search holds them back until the folder is done (`FindWalk(cover=True)`), so what it hands out is final and
goes straight into the plan's rows; the dry run reads on across calls like a file selection does.
"""

from __future__ import annotations

import os
import time
from pathlib import Path

import pytest

from efile_mcp.client.walk import ClosedDir, Entry, Totals
from efile_mcp.guard import insight
from efile_mcp.guard.insight import FindWalk
from efile_mcp.models.results import Selection

from .e2e.redteam_helpers import _read_on, _scratch, _sent, _stored_paths, _twice, _virtual
from .test_removal import FakeClient, World, request
from .test_removal import world as world  # the fixture

DAY = 86400.0
NOW = 1_800_000_000.0

# ------------------------------------------------------------------------------------------- the search alone


def _entries(walk: FindWalk, folder: str, depth: int, *entries: Entry) -> None:
    assert walk.on_entries(folder, depth, list(entries)) is None


def _close(walk: FindWalk, path: str, depth: int, size: int, newest: float) -> None:
    totals = Totals()
    totals.size, totals.newest = size, newest
    walk.on_closed(ClosedDir(path, depth, totals, 0, True))


def _file(name: str, size: int = 1, mtime: float = NOW - 10 * DAY) -> Entry:
    return Entry(name, "file", size, mtime)


def _dir(name: str, mtime: float = NOW - 10 * DAY) -> Entry:
    return Entry(name, "directory", 0, mtime)


def test_matches_inside_a_folder_that_may_match_are_held_until_it_is_done() -> None:
    walk = FindWalk(Selection(path="/r", name="*.tmp"), NOW, cover=True)
    _entries(walk, "/r", 0, _dir("a.tmp"), _file("b.tmp"), _dir("plain"))
    _entries(walk, "/r/a.tmp", 1, _file("x.tmp"), _dir("c.tmp"))
    _entries(walk, "/r/a.tmp/c.tmp", 2, _file("y.tmp"))
    _entries(walk, "/r/plain", 1, _file("z.tmp"))
    # b.tmp and plain/z.tmp are final; x.tmp and y.tmp wait for the folders around them.
    assert sorted(m.path for m in walk.found) == ["/r/b.tmp", "/r/plain/z.tmp"]
    walk.take(10)
    _close(walk, "/r/a.tmp/c.tmp", 2, 1, NOW - 10 * DAY)
    assert walk.found == []  # c.tmp matched, but a.tmp may still cover it
    _close(walk, "/r/a.tmp", 1, 2, NOW - 10 * DAY)
    assert [m.path for m in walk.take(10)] == ["/r/a.tmp"]
    # y.tmp (covered by c.tmp), then x.tmp and c.tmp (covered by a.tmp).
    assert (walk.covered, walk.held, walk.held_count) == (3, {}, 0)


def test_a_folder_that_does_not_match_lets_its_matches_go_on_to_the_folder_around_it() -> None:
    # Folders (and files) match when older than 5 days: the folder's age is its newest entry's.
    walk = FindWalk(Selection(path="/r", older_than_days=5), NOW, cover=True)
    _entries(walk, "/r", 0, _dir("outer"))
    _entries(walk, "/r/outer", 1, _dir("inner"), _file("old"))
    _entries(walk, "/r/outer/inner", 2, _file("old2"), _file("new", mtime=NOW - DAY))
    assert walk.found == []
    _close(walk, "/r/outer/inner", 2, 2, NOW - DAY)  # holds a new file: not a match; old2 goes to outer
    assert walk.found == [] and walk.held_count == 2
    _close(walk, "/r/outer", 1, 3, NOW - DAY)  # not a match either: its matches are final now
    assert sorted(m.path for m in walk.take(10)) == ["/r/outer/inner/old2", "/r/outer/old"]
    assert walk.covered == 0


def test_too_many_held_matches_give_up_the_folders_holding_them(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(insight, "HELD_MAX", 10)
    walk = FindWalk(Selection(path="/r", name="*.tmp"), NOW, cover=True)
    _entries(walk, "/r", 0, _dir("a.tmp"), _dir("b.tmp"))
    _entries(walk, "/r/a.tmp", 1, _dir("in.tmp"), *[_file(f"{i}.tmp") for i in range(3)])
    _entries(walk, "/r/a.tmp/in.tmp", 2, *[_file(f"{i}.tmp") for i in range(8)])
    # 11 held: in.tmp (the biggest holder) is given up, and a.tmp above it; b.tmp is untouched.
    assert walk.released == 2 and set(walk.candidates) == {"/r/b.tmp"}
    assert len(walk.found) == 11 and walk.held_count == 0
    _close(walk, "/r/a.tmp/in.tmp", 2, 8, NOW)
    _close(walk, "/r/a.tmp", 1, 11, NOW)
    # Neither becomes a match now: that would cover paths already handed out.
    assert not [m for m in walk.found if m.kind == "directory"]


def test_held_matches_are_bounded_by_their_paths_length_too(monkeypatch: pytest.MonkeyPatch) -> None:
    """Long paths: the bound in characters gives up a holder before the count would (the state stays small)."""
    monkeypatch.setattr(insight, "HELD_CHARS_MAX", 2_000)
    walk = FindWalk(Selection(path="/r", name="*.tmp"), NOW, cover=True)
    _entries(walk, "/r", 0, _dir("a.tmp"))
    _entries(walk, "/r/a.tmp", 1, *[_file(f"{i:03d}-{'x' * 200}.tmp") for i in range(9)])
    assert walk.released == 0 and walk.held_count == 9
    _entries(walk, "/r/a.tmp", 1, _file(f"999-{'x' * 200}.tmp"))
    assert walk.released == 1 and walk.held_count == 0 and walk.held_chars == 0 and len(walk.found) == 10


def test_a_folder_whose_tree_holds_an_entry_of_unknown_time_never_matches_an_age() -> None:
    walk = FindWalk(Selection(path="/r", older_than_days=5), NOW, cover=True)
    _entries(walk, "/r", 0, _dir("old"))
    _entries(walk, "/r/old", 1, _file("a"), Entry("b", "file", 1, None))
    totals = Totals()
    totals.size, totals.newest, totals.unknown = 2, NOW - 10 * DAY, 1
    walk.on_closed(ClosedDir("/r/old", 1, totals, 0, True))
    # Not the folder: only the file known to be old goes on.
    assert [m.path for m in walk.take(5)] == ["/r/old/a"]


def test_held_matches_ride_in_the_saved_state() -> None:
    walk = FindWalk(Selection(path="/r", name="*.tmp"), NOW, cover=True)
    _entries(walk, "/r", 0, _dir("a.tmp"))
    _entries(walk, "/r/a.tmp", 1, _file("x.tmp"))
    again = FindWalk.from_json(walk.to_json())
    assert again.cover and again.held_count == 1 and again.found == []
    _close(again, "/r/a.tmp", 1, 1, NOW)
    assert [m.path for m in again.take(5)] == ["/r/a.tmp"] and again.covered == 1


def test_find_paths_still_lists_a_folder_and_the_matches_inside_it() -> None:
    walk = FindWalk(Selection(path="/r", name="*.tmp"), NOW)  # not a removal: nothing covered
    _entries(walk, "/r", 0, _dir("a.tmp"))
    _entries(walk, "/r/a.tmp", 1, _file("x.tmp"))
    _close(walk, "/r/a.tmp", 1, 1, NOW)
    assert sorted(m.path for m in walk.take(5)) == ["/r/a.tmp", "/r/a.tmp/x.tmp"]


# ------------------------------------------------------------------------------------------- dry run and execution


def _make(folder: Path, names: list[str], size: int = 3, age_days: float = 0.0) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    when = time.time() - age_days * DAY
    for name in names:
        (folder / name).write_bytes(b"x" * size)
        os.utime(folder / name, (when, when))


def _any(world: World, relative: str, **filters: object) -> Selection:
    return Selection(path=f"{world.sandbox.home}/scratch/{relative}", **filters)  # type: ignore[arg-type]


async def test_a_matched_folder_is_planned_whole_and_what_it_covers_is_not_planned_apart(world: World) -> None:
    top = _scratch(world) / "work"
    _make(top / "a.tmp", ["x.tmp", "data.bin"])
    _make(top / "a.tmp" / "c.tmp", ["y.tmp"])
    _make(top / "plain", ["z.tmp", "keep.txt"])
    _make(top, ["b.tmp"])
    removal = world.removal(confirm="token")
    answer = await removal.preview(None, _any(world, "work", name="*.tmp"))
    planned = sorted(await _stored_paths(world, answer.plan_id or ""))
    assert planned == [_virtual(world, top / p) for p in ("a.tmp", "b.tmp", "plain/z.tmp")]
    assert answer.summary.covered == 3 and answer.summary.would_remove == 3
    assert answer.summary.file_count == 5  # a.tmp's three files, b.tmp, z.tmp
    done = await removal.execute(request(answer), FakeClient())
    assert done.summary.removed + done.summary.queued == 3
    assert not (top / "a.tmp").exists() and (top / "plain" / "keep.txt").exists()
    assert sorted(_sent(world)) == planned


async def test_a_folder_too_big_for_one_call_is_read_on_and_the_plan_waits_for_it(world: World) -> None:
    top = _scratch(world) / "work"
    _make(top / "big.tmp", [f"f{i:03d}" for i in range(300)])
    _make(top, ["loose.tmp"])
    world.guard.walk_max_entries = 120
    removal = world.removal(confirm="token")
    first = await removal.preview(None, _any(world, "work", name="*.tmp"))
    assert first.resume and first.confirmation_token is None
    answer, calls = await _read_on(removal, first)
    assert calls >= 4 and answer.confirmation_token, (calls, answer.next_step)
    planned = await _stored_paths(world, answer.plan_id or "")
    assert sorted(planned) == [_virtual(world, top / "big.tmp"), _virtual(world, top / "loose.tmp")]
    assert answer.summary.file_count == 301 and not _twice(planned)


async def test_a_folder_whose_tree_grew_past_a_size_filter_is_not_matched_and_its_files_are(world: World) -> None:
    """max_size: a folder matches only if its whole tree is small; one that is not lets its small files go on."""
    top = _scratch(world) / "work"
    _make(top / "small", ["a", "b"], size=10)
    _make(top / "large", ["c", "d"], size=10)
    _make(top / "large", ["huge"], size=5_000)
    removal = world.removal(confirm="token")
    answer = await removal.preview(None, _any(world, "work", max_size=1_000))
    planned = sorted(await _stored_paths(world, answer.plan_id or ""))
    assert planned == [_virtual(world, top / p) for p in ("large/c", "large/d", "small")]
    assert answer.summary.covered == 2


async def test_a_matched_folder_holding_a_protected_name_is_refused_with_what_it_covers(world: World) -> None:
    top = _scratch(world) / "work"
    _make(top / "old.tmp", ["x.tmp", ".bashrc"])
    _make(top, ["b.tmp"])
    removal = world.removal(confirm="token")
    answer = await removal.preview(None, _any(world, "work", name="*.tmp"))
    assert sorted(await _stored_paths(world, answer.plan_id or "")) == [_virtual(world, top / "b.tmp")]
    assert answer.summary.refused == 1
    refused = [item for item in answer.items or [] if item.status == "refused"]
    assert refused and ".bashrc" in (refused[0].reason or "")


async def test_a_folder_being_read_across_calls_swapped_for_a_link_is_not_planned(world: World) -> None:
    top = _scratch(world) / "work"
    _make(top / "big.tmp", [f"f{i:03d}" for i in range(300)])
    _make(_scratch(world) / "precious", [f"p{i}" for i in range(5)])
    world.guard.walk_max_entries = 120
    removal = world.removal(confirm="token")
    answer = await removal.preview(None, _any(world, "work", name="*.tmp"))
    assert answer.resume
    answer = await removal.preview(None, None, resume=answer.resume)
    # Between calls, the matched folder becomes a link to another folder.
    (top / "big.tmp").rename(top / "moved")
    (top / "big.tmp").symlink_to("../precious")
    answer, _ = await _read_on(removal, answer)
    assert answer.confirmation_token is None
    assert answer.summary.refused >= 1 and answer.summary.would_remove == 0
    assert len(list((_scratch(world) / "precious").iterdir())) == 5


async def test_a_directory_selection_plans_folders_only(world: World) -> None:
    top = _scratch(world) / "work"
    _make(top / "cache", ["x"])
    _make(top / "sub" / "cache", ["y"])
    _make(top, ["cache.txt"])
    removal = world.removal(confirm="token")
    answer = await removal.preview(None, _any(world, "work", name="cache*", type="directory"))
    planned = sorted(await _stored_paths(world, answer.plan_id or ""))
    assert planned == [_virtual(world, top / "cache"), _virtual(world, top / "sub" / "cache")]
