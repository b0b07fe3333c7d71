"""The guard's reading half (guard/guard.py `Guard.usage`, `Guard.find`) called directly, no MCP client:
the guard as the server builds it (its lifespan), over the sandbox, on a clock the test moves.

What is checked is what a person would see in disk_usage / find_paths answers: true totals, the biggest
children first, selections by age that follow the clock, and resume values and cursors that carry a walk
across calls until they expire.
"""

from __future__ import annotations

import os
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import pytest

from efile_mcp.guard.guard import Guard
from efile_mcp.guard.requests import GuardRefusal
from efile_mcp.models.results import Selection
from efile_mcp.sandbox import RunningSandbox
from efile_mcp.server import build_server
from efile_mcp.settings import Settings

from .clocks import ManualClock

DAY = 86400.0


@pytest.fixture
def clock() -> ManualClock:
    return ManualClock()


@pytest.fixture
async def guard(make_settings: Callable[..., Settings], clock: ManualClock) -> AsyncIterator[Guard]:
    server = build_server(make_settings(), clock=clock)
    lifespan = server.settings.lifespan
    assert lifespan is not None
    async with lifespan(server) as state:
        yield state.guard


def figures(root: Path) -> tuple[int, int, int]:
    """(bytes of regular files, regular files, folders) below `root`, as the storage has them."""
    size = files = dirs = 0
    for base, names, leaves in os.walk(root):
        dirs += len(names)
        files += len(leaves)
        size += sum((Path(base) / leaf).stat().st_size for leaf in leaves)
    return size, files, dirs


# ---------------------------------------------------------------------------------------------- usage


async def test_usage_gives_the_tree_s_true_totals_and_its_biggest_children_first(
    guard: Guard, sandbox: RunningSandbox
) -> None:
    scratch = f"{sandbox.home}/scratch"
    usage = await guard.usage(scratch, top=2, max_entries=None)
    assert (usage.total_size, usage.file_count, usage.dir_count) == figures(sandbox.root / "scratch")
    assert usage.complete and usage.resume is None
    assert [child.path for child in usage.children] == [f"{scratch}/big-run", f"{scratch}/run-001"]
    assert usage.children[0].size == figures(sandbox.root / "scratch" / "big-run")[0]
    assert usage.others is not None and usage.others.count == 2  # run-002 and tmp.log, summed
    assert usage.children[0].size >= usage.children[1].size


async def test_a_usage_cut_by_its_budget_resumes_to_the_same_totals_and_the_resume_value_expires(
    guard: Guard, sandbox: RunningSandbox, clock: ManualClock
) -> None:
    scratch = f"{sandbox.home}/scratch"
    first = await guard.usage(scratch, top=5, max_entries=40)
    assert not first.complete and first.resume is not None and first.entries_seen <= 40
    resume = first.resume
    calls = 1
    answer = first
    while answer.resume is not None:
        clock.advance(600)  # ten minutes between calls: well within the hour a walk is kept
        answer = await guard.usage(scratch, top=5, max_entries=40, resume=answer.resume)
        calls += 1
    assert calls > 2 and answer.complete
    assert (answer.total_size, answer.file_count, answer.dir_count) == figures(sandbox.root / "scratch")
    # A value a finished walk gave back is forgotten, and one left unused past its hour is refused.
    with pytest.raises(GuardRefusal) as caught:
        await guard.usage(scratch, top=5, max_entries=None, resume=resume)
    assert caught.value.code == "resume"
    stale = (await guard.usage(scratch, top=5, max_entries=40)).resume
    assert stale is not None
    clock.advance(3601)
    with pytest.raises(GuardRefusal) as caught:
        await guard.usage(scratch, top=5, max_entries=40, resume=stale)
    assert caught.value.code == "resume" and "again without it" in str(caught.value)


async def test_usage_of_a_folder_that_cannot_be_listed_is_a_refusal_naming_it(
    guard: Guard, sandbox: RunningSandbox
) -> None:
    with pytest.raises(GuardRefusal) as caught:
        await guard.usage(f"{sandbox.home}/no-such-folder", top=5, max_entries=None)
    assert caught.value.code == "unreadable"
    assert "no-such-folder" in str(caught.value) and "does not exist" in str(caught.value)


# ---------------------------------------------------------------------------------------------- find


def selection(sandbox: RunningSandbox, **fields: Any) -> Selection:
    return Selection(path=f"{sandbox.home}/scratch", **fields)


async def test_find_by_age_follows_the_guard_s_clock(guard: Guard, sandbox: RunningSandbox, clock: ManualClock) -> None:
    """The sample's big-run is 45 days old, the rest was written now: 'older than 30 days' is the big run's
    300 files; moved 60 days on, every file of scratch is older than 30 days."""
    old = await guard.find(selection(sandbox, type="file", older_than_days=30), limit=1000, cursor=None)
    assert old.total_matches == 300 and all("/big-run/" in m.path for m in old.matches)
    clock.advance(60 * DAY)
    later = await guard.find(selection(sandbox, type="file", older_than_days=30), limit=1000, cursor=None)
    assert later.total_matches == figures(sandbox.root / "scratch")[1]


async def test_find_by_name_and_size_matches_exactly_what_the_storage_holds(
    guard: Guard, sandbox: RunningSandbox
) -> None:
    logs = await guard.find(selection(sandbox, name="*.log", type="file"), limit=100, cursor=None)
    expected = sorted(str(p.relative_to(sandbox.root)) for p in (sandbox.root / "scratch").rglob("*.log"))
    assert sorted(m.path.removeprefix(sandbox.home + "/") for m in logs.matches) == expected
    assert logs.complete and logs.next_cursor is None
    assert logs.total_size == sum((sandbox.root / p).stat().st_size for p in expected)
    big = await guard.find(selection(sandbox, type="file", min_size=200), limit=100, cursor=None)
    assert all(m.size is not None and m.size >= 200 for m in big.matches) and big.total_matches >= 1


async def test_find_pages_through_a_cursor_each_match_once_and_the_cursor_expires(
    guard: Guard, sandbox: RunningSandbox, clock: ManualClock
) -> None:
    wanted = selection(sandbox, type="file", name="out-*.dat")
    seen: list[str] = []
    page = await guard.find(wanted, limit=70, cursor=None)
    first_cursor = page.next_cursor
    seen += [m.path for m in page.matches]
    while page.next_cursor is not None:
        clock.advance(60)
        page = await guard.find(wanted, limit=70, cursor=page.next_cursor)
        seen += [m.path for m in page.matches]
    assert len(seen) == len(set(seen)) == 300
    assert first_cursor is not None
    again = await guard.find(wanted, limit=70, cursor=None)
    assert again.next_cursor is not None
    clock.advance(3601)
    with pytest.raises(GuardRefusal) as caught:
        await guard.find(wanted, limit=70, cursor=again.next_cursor)
    assert caught.value.code == "resume"
