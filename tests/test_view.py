"""The review page's view of a plan stored as rows (efile_mcp.review.view): plans larger than one chunk of
rows (guard/seen.py reads 5,000 at a time) are shown whole, in path order, with the totals of every folder,
though the view never holds the plan's rows; and `efile-mcp approve` summarises them the same way.

Served through the ReviewSite's own ASGI app, as a browser reads it (JSON pages and the CSV download).
"""

from __future__ import annotations

import csv
import io
import random
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx2 as httpx
import pytest

from efile_mcp.guard.seen import ROWS_PER_CHUNK, Plan, SeenPath, load_header, save_plan
from efile_mcp.guard.store import StateStore, open_store
from efile_mcp.review import ReviewSite
from efile_mcp.review.terminal import describe
from efile_mcp.review.view import PlanView

from .clocks import ManualClock as Clock

HOME = "/public/home/alice"
BASE = "http://127.0.0.1:8765"
#: More rows than two chunks, not a multiple of one.
COUNT = 2 * ROWS_PER_CHUNK + 2_345


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
async def store(tmp_path: Path, clock: Clock) -> AsyncIterator[StateStore]:
    opened = open_store(None, tmp_path / "state", clock=clock)
    yield opened
    await opened.aclose()


@pytest.fixture
async def http(store: StateStore, clock: Clock) -> AsyncIterator[tuple[ReviewSite, httpx.AsyncClient]]:
    site = ReviewSite(store, clock=clock, browser="never", public_base=BASE)
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=site.app), base_url=BASE) as client:
        yield site, client
    await site.aclose()


def many_paths(now: float, count: int = COUNT) -> list[SeenPath]:
    """Files in 40 folders of two levels, in a shuffled plan order (a walk's order is not the names')."""
    paths = [
        SeenPath(
            f"{HOME}/runs/r{i % 8}/job{i % 5:02d}/out-{i:06d}.dat",
            "file",
            (i * 7919) % 100_003,
            now - 60 * i,
            (i * 7919) % 100_003,
        )
        for i in range(count)
    ]
    random.Random(15).shuffle(paths)
    return paths


async def stored(
    store: StateStore, paths: list[SeenPath], now: float, plan_id: str = "feedfacefeedfacefeedface", **more: Any
) -> Plan:
    plan = Plan(plan_id, now + 900, paths, created_at=now, **more)
    await save_plan(store, plan)
    return plan


async def page_url(site: ReviewSite, plan: Plan) -> str:
    return (await site.url_for(plan.plan_id, plan.expires_at)).removeprefix(BASE)


async def every_page(client: httpx.AsyncClient, url: str, **params: Any) -> tuple[int, list[dict[str, Any]]]:
    items: list[dict[str, Any]] = []
    while True:
        answer = await client.get(url, params={**params, "offset": len(items), "limit": 500})
        assert answer.status_code == 200, answer.text
        page = answer.json()
        assert page["offset"] == len(items)
        items += page["items"]
        if not page["items"] or len(items) >= page["total"]:
            return page["total"], items


async def test_a_plan_of_several_chunks_is_listed_whole_in_path_order_across_pages(
    store: StateStore, http: tuple[ReviewSite, httpx.AsyncClient], clock: Clock
) -> None:
    site, client = http
    paths = many_paths(clock.now)
    plan = await stored(store, paths, clock.now)
    url = await page_url(site, plan)
    page = await client.get(url)
    assert f'data-total="would_remove" data-value="{COUNT}"' in page.text
    assert f'data-total="total_size" data-value="{sum(s.size for s in paths)}"' in page.text
    total, items = await every_page(client, url + "api/paths")
    assert total == COUNT
    assert [row["path"] for row in items] == sorted(s.path for s in paths), "every path once, in path order"
    by_path = {s.path: s for s in paths}
    assert all(row["size"] == by_path[row["path"]].size for row in items)
    deep = (await client.get(url + "api/paths", params={"offset": COUNT - 7, "limit": 500})).json()
    assert [row["path"] for row in deep["items"]] == sorted(by_path)[-7:]


async def test_a_search_finds_a_path_in_the_last_chunk_and_pages_through_many_matches(
    store: StateStore, http: tuple[ReviewSite, httpx.AsyncClient], clock: Clock
) -> None:
    site, client = http
    paths = many_paths(clock.now)
    last = SeenPath(f"{HOME}/runs/Stray Result.TXT", "file", 5, clock.now, 5)
    plan = await stored(store, [*paths, last], clock.now)
    assert plan.count > 2 * ROWS_PER_CHUNK and plan.count % ROWS_PER_CHUNK == 2_346
    url = await page_url(site, plan)
    found = (await client.get(url + "api/paths", params={"q": "stray result.txt"})).json()
    assert (found["total"], [row["path"] for row in found["items"]]) == (1, [last.path])
    total, items = await every_page(client, url + "api/paths", q="JOB03/")
    expected = sorted(s.path for s in paths if "/job03/" in s.path)
    assert total == len(expected) > 500 and [row["path"] for row in items] == expected
    for typed in ("r3/", "R3/JOB0", "r3/job01/out-00"):  # typing on: each search within the one before
        total, items = await every_page(client, url + "api/paths", q=typed)
        expected = sorted(s.path for s in [*paths, last] if typed.lower() in s.path.lower())
        assert total == len(expected) > 0 and [row["path"] for row in items] == expected
    nothing = (await client.get(url + "api/paths", params={"q": "no such name"})).json()
    assert (nothing["total"], nothing["items"]) == (0, [])


async def test_the_csv_has_every_row_and_every_exception(
    store: StateStore, http: tuple[ReviewSite, httpx.AsyncClient], clock: Clock
) -> None:
    """In path order when the plan is in a walk's order (folder by folder); in the plan's order when its rows
    are scattered (reading them in path order would be a store request a row): every row once, either way."""
    site, client = http
    paths = many_paths(clock.now)
    folders = sorted({s.path.rsplit("/", 1)[0] for s in paths})
    random.Random(3).shuffle(folders)
    # A walk's order: folder by folder, each folder's files in its listing's order (not by name).
    walked = sorted(paths, key=lambda s: (folders.index(s.path.rsplit("/", 1)[0]), s.size, s.path))
    exceptions = [[f"{HOME}/.ssh", "refused", "protected name .ssh"], [f"{HOME}/gone", "missing", "not found"]]
    by_path = {s.path: s for s in paths}
    for plan_id, order, in_path_order in (("a" * 24, walked, True), ("b" * 24, paths, False)):
        plan = await stored(store, order, clock.now, plan_id, exceptions=exceptions)
        url = await page_url(site, plan)
        download = await client.get(url + "plan.csv")
        rows = list(csv.DictReader(io.StringIO(download.content.decode("utf-8-sig"))))
        removed = [r["path"] for r in rows if r["status"] == "remove"]
        assert sorted(removed) == sorted(by_path), "every row, once"
        assert removed == (sorted(by_path) if in_path_order else [s.path for s in paths])
        assert all(int(r["bytes"]) == by_path[r["path"]].size for r in rows[: len(removed)])
        assert [(r["status"], r["path"]) for r in rows[len(removed) :]] == [(e[1], e[0]) for e in exceptions]


async def test_the_tree_gives_every_folder_its_whole_trees_totals_and_pages_its_children_in_order(
    store: StateStore, http: tuple[ReviewSite, httpx.AsyncClient], clock: Clock
) -> None:
    site, client = http
    paths = many_paths(clock.now)
    # One folder that holds both plan files and a folder, so the two kinds of child are ordered together.
    mixed = [SeenPath(f"{HOME}/runs/r3/{name}", "file", size, clock.now, size) for name, size in
             [("a.log", 10**9), ("job01.txt", 7), ("zz.dat", 100_003 * 20)]]  # fmt: skip
    plan = await stored(store, [*paths[:6000], *mixed, *paths[6000:]], clock.now)
    everything = [*paths, *mixed]
    url = await page_url(site, plan)
    top = (await client.get(url + "api/children")).json()
    assert top["folder"]["path"] == f"{HOME}/runs" and top["folder"]["items"] == len(everything)
    assert top["folder"]["size"] == sum(s.size for s in everything)
    for row in top["items"]:
        inside = [s for s in everything if s.path.startswith(row["path"] + "/")]
        assert (row["size"], row["items"], row["files"]) == (sum(s.size for s in inside), len(inside), len(inside))
    assert [row["size"] for row in top["items"]] == sorted((row["size"] for row in top["items"]), reverse=True)

    folder = f"{HOME}/runs/r3"
    children = [s for s in everything if s.path.rsplit("/", 1)[0] == folder]
    below = {f"{folder}/job{j:02d}" for j in range(5)}
    sizes = {p: sum(s.size for s in everything if s.path.startswith(p + "/")) for p in below}
    sizes |= {s.path: s.size for s in children}
    total, by_size = await every_page(client, url + "api/children", folder=folder)
    assert total == len(sizes) == 8
    assert [row["path"] for row in by_size] == sorted(sizes, key=lambda p: (-sizes[p], p))
    assert [row["kind"] for row in by_size][:2] == ["file", "group"], "a 1 GB file first, then the largest folder"
    _, by_name = await every_page(client, url + "api/children", folder=folder, sort="name")
    assert [row["path"] for row in by_name] == sorted(sizes)
    assert [row["expandable"] for row in by_name] == [p in below for p in sorted(sizes)]

    leaf_folder = f"{HOME}/runs/r5/job00"
    files = sorted((s for s in everything if s.path.startswith(leaf_folder + "/")), key=lambda s: (-s.size, s.path))
    total, rows = await every_page(client, url + "api/children", folder=leaf_folder)
    assert total == len(files) > 200 and [row["path"] for row in rows] == [s.path for s in files]
    assert (await client.get(url + "api/children", params={"folder": f"{HOME}/nowhere"})).status_code == 404


async def test_a_plan_path_that_holds_other_plan_paths_is_one_folder_with_its_own_row_counted(
    store: StateStore, http: tuple[ReviewSite, httpx.AsyncClient], clock: Clock
) -> None:
    """A plan the dry run makes never nests paths; a stored one that does still shows each path once."""
    site, client = http
    outer = SeenPath(f"{HOME}/a", "directory", 1000, clock.now, 4096, file_count=3, newest=clock.now)
    inner = SeenPath(f"{HOME}/a/b.txt", "file", 20, clock.now, 20)
    other = SeenPath(f"{HOME}/c", "directory", 300, clock.now, 4096, file_count=1, newest=clock.now)
    nested = SeenPath(f"{HOME}/c/d.txt", "file", 4, clock.now, 4)
    plan = await stored(store, [outer, inner, nested, other], clock.now)  # a before, c after what it holds
    url = await page_url(site, plan)
    top = (await client.get(url + "api/children", params={"sort": "name"})).json()
    assert top["folder"]["path"] == HOME and top["folder"]["items"] == 4 and top["folder"]["size"] == 1324
    shown = {row["path"]: (row["kind"], row["in_plan"], row["size"], row["items"]) for row in top["items"]}
    assert shown == {outer.path: ("directory", True, 1020, 2), other.path: ("directory", True, 304, 2)}
    _, listed = await every_page(client, url + "api/paths")
    assert [row["path"] for row in listed] == [outer.path, inner.path, other.path, nested.path]


async def test_the_terminals_summary_of_a_plan_of_several_chunks_counts_every_row(
    store: StateStore, clock: Clock
) -> None:
    paths = many_paths(clock.now)
    biggest = SeenPath(f"{HOME}/runs/huge.tar", "file", 2**40, clock.now - 86400 * 3, 2**40)
    plan = await stored(store, [*paths, biggest], clock.now, mode="quarantine")
    header = await load_header(store, plan.plan_id)
    assert header is not None and not header.paths, "the header alone: the rows stay in the store"
    view = await PlanView.load(store, header, clock.now, ordered=False)
    lines = describe(view, clock.now)
    assert "move to quarantine" in lines[0]
    assert f"{COUNT + 1:,} paths" in lines[1] and f"{COUNT + 1:,} files in all" in lines[1]
    assert "huge.tar" in lines[lines.index("  largest:") + 1]
    assert f"and {COUNT + 1 - 8:,} more" in "\n".join(lines)


async def test_rows_lost_after_the_page_was_opened_are_told_as_an_expired_plan(
    store: StateStore, http: tuple[ReviewSite, httpx.AsyncClient], clock: Clock, tmp_path: Path
) -> None:
    """The page reads rows from the store while the person browses: rows gone meanwhile (the state file
    damaged, or replaced) say the plan expired, not a server error, and a CSV cut short says so."""
    import sqlite3

    site, client = http
    plan = await stored(store, many_paths(clock.now), clock.now)
    url = await page_url(site, plan)
    assert (await client.get(url)).status_code == 200  # the view is built: the rows were all there
    with sqlite3.connect(tmp_path / "state" / "state.sqlite3") as db:
        db.execute("DELETE FROM plan_rows WHERE plan_id = ? AND seq >= ?", (plan.plan_id, ROWS_PER_CHUNK))
    for params in ({"offset": COUNT - 10}, {"q": "out-0"}):
        gone = await client.get(url + "api/paths", params=params)
        assert gone.status_code == 410 and "expired" in gone.json()["error"]
    download = await client.get(url + "plan.csv")
    assert download.text.rstrip().endswith("incomplete: the plan expired while this file was written")
    assert download.text.count("\nremove,") < COUNT


async def test_without_a_writable_temporary_folder_the_page_still_lists_every_path_in_order(
    store: StateStore, http: tuple[ReviewSite, httpx.AsyncClient], clock: Clock, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The path order is merged from sorted runs in a temporary file; a login node whose temporary folder is
    full or read-only still gets its page (the runs kept in memory instead)."""
    import tempfile

    def no_room(*args: Any, **kwargs: Any) -> Any:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(tempfile, "TemporaryFile", no_room)
    site, client = http
    paths = many_paths(clock.now)
    url = await page_url(site, await stored(store, paths, clock.now))
    total, items = await every_page(client, url + "api/paths")
    assert total == COUNT and [row["path"] for row in items] == sorted(s.path for s in paths)
