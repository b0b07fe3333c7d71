"""The review page (efile_mcp.review): a plan shown whole to the person, who approves or declines it there.

The page is driven in Debian's Chromium through Playwright (no browser download: the system chromium),
and attacked over plain HTTP. A missing chromium or playwright skips the browser tests with the reason;
CI sets EFILE_REQUIRE_BROWSER=1, and then a missing browser fails them instead.
"""

from __future__ import annotations

import csv
import hashlib
import io
import json
import os
import re
import shutil
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import anyio
import httpx2 as httpx
import pytest
from mcp import Client

from efile_mcp.guard.seen import Plan, SeenPath
from efile_mcp.guard.store import StateStore, open_store
from efile_mcp.review import ReviewSite
from efile_mcp.review.app import COOKIE, csrf_value
from efile_mcp.review.site import page_address_of
from efile_mcp.server import build_server

from ..clocks import ManualClock as Clock
from ..conftest import call_ok, recording_browser_script

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
REQUIRE_ENV = "EFILE_REQUIRE_BROWSER"


def require_browser() -> None:
    """Skip (or, with EFILE_REQUIRE_BROWSER=1, fail) when chromium or Playwright for Python is missing."""
    why = None
    try:
        import playwright.async_api  # noqa: F401
    except ImportError:
        why = "Playwright for Python is not installed (pip install playwright; no browser download is needed)"
    if why is None and not (Path(CHROMIUM).exists() or shutil.which("chromium")):
        why = f"chromium is not installed at {CHROMIUM} (apt-get install chromium)"
    if why is not None:
        if os.environ.get(REQUIRE_ENV):
            pytest.fail(f"{why}, and {REQUIRE_ENV} is set")
        pytest.skip(f"{why}; set {REQUIRE_ENV}=1 to fail instead")


@pytest.fixture
async def browser() -> AsyncIterator[Any]:
    require_browser()
    from playwright.async_api import async_playwright

    async with async_playwright() as playwright:
        launched = await playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            yield launched
        finally:
            await launched.close()


def keep_artifact(path: Path) -> None:
    """A test artifact stays in the test's directory and, when EFILE_ARTIFACTS is set, is copied there."""
    where = os.environ.get("EFILE_ARTIFACTS")
    if where:
        Path(where).mkdir(parents=True, exist_ok=True)
        shutil.copy(path, Path(where) / path.name)


# ---------------------------------------------------------------------------- plans to review

HOME = "/public/home/alice"


def sample_plan(
    count: int = 3000, *, plan_id: str = "0123456789abcdef01234567", now: float, mode: str = "delete"
) -> Plan:
    """`count` paths: files in 30 folders and a few whole folders, one refused and one missing path."""
    paths = []
    for i in range(count - 5):
        paths.append(
            SeenPath(f"{HOME}/scratch/run{i % 30:02d}/out-{i:05d}.dat", "file", 1000 + i, now - 3600 * i, 1000 + i)
        )
    for i in range(5):
        paths.append(
            SeenPath(
                f"{HOME}/scratch/old-{i}", "directory", 2**20 * (i + 1), now - 86400 * 40, 4096,
                file_count=100 + i, newest=now - 86400 * (30 + i),
            )
        )  # fmt: skip
    return Plan(
        plan_id=plan_id,
        expires_at=float(int(now + 900)),
        paths=paths,
        created_at=now,
        mode=mode,
        exceptions=[
            [f"{HOME}/.ssh", "refused", "protected name .ssh: never removed"],
            [f"{HOME}/scratch/gone.txt", "missing", "not found"],
        ],
        quota=[{"path": HOME, "limit_bytes": 100 * 2**30, "used_bytes": 99 * 2**30, "after_bytes": 98 * 2**30}],
    )


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
async def store(tmp_path: Path, clock: Clock) -> AsyncIterator[StateStore]:
    opened = open_store(None, tmp_path / "state", clock=clock)
    yield opened
    await opened.aclose()


@pytest.fixture
async def site(store: StateStore, clock: Clock) -> AsyncIterator[ReviewSite]:
    started = ReviewSite(store, clock=clock, browser="never")
    yield started
    await started.aclose()


async def saved(store: StateStore, plan: Plan) -> Plan:
    await store.save_plan(plan.plan_id, plan.to_bytes(), plan.expires_at)
    return plan


async def form_of(http: httpx.AsyncClient, url: str) -> dict[str, str]:
    """Load the page as a browser would: its cookie lands in `http`, its CSRF value is returned."""
    page = await http.get(url)
    assert page.status_code == 200, page.text
    match = re.search(r'name="csrf" value="([0-9a-f]+)"', page.text)
    assert match, "the page of a pending plan has a decision form"
    return {"csrf": match.group(1)}


def origin_of(url: str) -> str:
    return url.split("/review/")[0]


async def post_decision(
    http: httpx.AsyncClient,
    url: str,
    decision: str,
    *,
    form: dict[str, str],
    origin: str | None = "same",
    **headers: str,
) -> httpx.Response:
    sent = {"content-type": "application/x-www-form-urlencoded", **headers}
    if origin == "same":
        sent["origin"] = origin_of(url)
    elif origin is not None:
        sent["origin"] = origin
    return await http.post(
        url + "decide", content=httpx.QueryParams({**form, "decision": decision}).__str__(), headers=sent
    )


# ---------------------------------------------------------------------------- what the page shows


async def test_the_page_and_its_json_give_every_path_the_totals_and_the_quota(
    store: StateStore, site: ReviewSite, clock: Clock
) -> None:
    plan = await saved(store, sample_plan(now=clock.now))
    url = await site.url_for(plan.plan_id, plan.expires_at)
    assert url == await site.url_for(plan.plan_id, plan.expires_at), "one page per plan: the same URL again"
    assert re.fullmatch(r"http://127\.0\.0\.1:\d+/review/[A-Za-z0-9_-]{43}/", url)
    async with httpx.AsyncClient() as http:
        page = await http.get(url)
        assert page.status_code == 200
        text = page.text
        for header, value in {
            "x-frame-options": "DENY",
            "referrer-policy": "no-referrer",
            "cache-control": "no-store",
        }.items():
            assert page.headers[header] == value
        assert "default-src 'self'" in page.headers["content-security-policy"]
        assert "<script>" not in text and "style=" not in text, "no inline script or style: the CSP allows none"
        assert f'data-total="would_remove" data-value="{len(plan.paths)}"' in text
        assert f'data-total="total_size" data-value="{sum(s.size for s in plan.paths)}"' in text
        assert "100.0 GiB" in text and "99.0 GiB &rarr; 98.0 GiB" in text, "the quota before and after"
        cookie = page.headers["set-cookie"]
        assert "HttpOnly" in cookie and "SameSite=strict" in cookie and f"Path=/review/{url.split('/')[-2]}/" in cookie

        seen: list[str] = []
        offset = 0
        while True:
            chunk = (await http.get(url + "api/paths", params={"offset": offset, "limit": 500})).json()
            seen += [row["path"] for row in chunk["items"]]
            offset += len(chunk["items"])
            if offset >= chunk["total"]:
                break
        assert sorted(seen) == sorted(plan.path_set)

        top = (await http.get(url + "api/children")).json()
        assert top["folder"]["path"] == f"{HOME}/scratch"
        assert top["folder"]["size"] == sum(s.size for s in plan.paths)
        run07 = next(row for row in top["items"] if row["path"].endswith("/run07"))
        inside = [s for s in plan.paths if "/run07/" in s.path]
        assert (run07["size"], run07["files"], run07["items"]) == (
            sum(s.size for s in inside),
            len(inside),
            len(inside),
        )
        assert run07["age"].endswith("ago")

        found = (await http.get(url + "api/paths", params={"q": "OUT-0004"})).json()
        assert found["total"] == 10 and all("out-0004" in row["path"] for row in found["items"])
        refused = (await http.get(url + "api/exceptions")).json()
        assert [row["status"] for row in refused["items"]] == ["refused", "missing"]

        download = await http.get(url + "plan.csv")
        assert download.headers["content-disposition"].startswith("attachment;")
        rows = list(csv.DictReader(io.StringIO(download.content.decode("utf-8-sig"))))
        assert sorted(r["path"] for r in rows if r["status"] == "remove") == sorted(plan.path_set)
        assert {r["status"] for r in rows} == {"remove", "refused", "missing"}


async def test_a_name_that_would_run_in_a_spreadsheet_or_hide_is_shown_as_text(
    store: StateStore, site: ReviewSite, clock: Clock
) -> None:
    sneaky = SeenPath(f"{HOME}/scratch/<img src=x onerror=alert(1)>\u202egnp.exe", "file", 10, clock.now, 10)
    plan = await saved(store, Plan("feedfacefeedfacefeedface", clock.now + 600, [sneaky], mode="quarantine"))
    plan.exceptions.append(['=HYPERLINK("http://x")', "refused", "not absolute"])
    await store.save_plan(plan.plan_id, plan.to_bytes(), plan.expires_at)
    url = await site.url_for(plan.plan_id, plan.expires_at)
    async with httpx.AsyncClient() as http:
        text = (await http.get(url)).text
        assert "<img src=x" not in text and "&lt;img src=x onerror=alert(1)&gt;" in text
        row = (await http.get(url + "api/paths")).json()["items"][0]
        assert "\\u{202e}" in row["shown"], "a right-to-left override is shown as an escape, not obeyed"
        rows = list(csv.DictReader(io.StringIO((await http.get(url + "plan.csv")).content.decode("utf-8-sig"))))
        assert [r["path"] for r in rows if r["status"] == "refused"] == ['\'=HYPERLINK("http://x")']


# ---------------------------------------------------------------------------- attacks, each kept


async def test_a_guessed_or_altered_url_finds_nothing_and_gives_no_hint(
    store: StateStore, site: ReviewSite, clock: Clock
) -> None:
    plan = await saved(store, sample_plan(50, now=clock.now))
    url = await site.url_for(plan.plan_id, plan.expires_at)
    secret = url.rstrip("/").rsplit("/", 1)[1]
    base = origin_of(url)
    altered = secret[:-1] + ("A" if secret[-1] != "A" else "B")
    async with httpx.AsyncClient() as http:
        answers = [
            await http.get(f"{base}/review/{altered}/"),
            await http.get(f"{base}/review/{'x' * 43}/"),
            await http.get(f"{base}/review/{secret[:20]}/"),
            await http.get(f"{base}/review/{plan.plan_id}/"),
            await http.get(f"{base}/review/{altered}/api/paths"),
            await http.get(f"{base}/review/{altered}/plan.csv"),
            await http.post(f"{base}/review/{altered}/decide", content="decision=approve", headers={"origin": base}),
            await http.get(f"{base}/"),
        ]
        assert {(a.status_code, a.text) for a in answers} == {(404, "Not found.")}
        assert (await store.plan_state(plan.plan_id)).pending


async def test_a_cross_site_post_decides_nothing(store: StateStore, site: ReviewSite, clock: Clock) -> None:
    plan = await saved(store, sample_plan(50, now=clock.now))
    url = await site.url_for(plan.plan_id, plan.expires_at)
    async with httpx.AsyncClient() as http:
        form = await form_of(http, url)
        cookie = http.cookies.get(COOKIE)
        attempts = {
            "another site's origin": await post_decision(
                http, url, "approve:delete", form=form, origin="http://evil.example"
            ),
            "another port on loopback": await post_decision(
                http, url, "approve:delete", form=form, origin="http://127.0.0.1:1"
            ),
            "no origin": await post_decision(http, url, "approve:delete", form=form, origin=None),
            "a null origin from elsewhere": await post_decision(
                http, url, "approve:delete", form=form, origin="null", **{"sec-fetch-site": "cross-site"}
            ),
            "no csrf value": await post_decision(http, url, "approve:delete", form={}),
            "a wrong csrf value": await post_decision(http, url, "approve:delete", form={"csrf": "0" * 64}),
        }
        http.cookies.clear()
        attempts["no cookie"] = await post_decision(http, url, "approve:delete", form=form)
        http.cookies.set(COOKIE, "A" * 43)
        attempts["another browser's cookie"] = await post_decision(http, url, "approve:delete", form=form)
        http.cookies.clear()
        port = url.split(":")[2].split("/")[0]
        attempts["a rebound host name"] = await http.get(url, headers={"host": f"evil.example:{port}"})
        attempts["a rebound host POST"] = await http.post(
            url + "decide",
            content=f"csrf={form['csrf']}&decision=approve:delete",
            headers={
                "host": f"evil.example:{port}",
                "origin": f"http://evil.example:{port}",
                "content-type": "application/x-www-form-urlencoded",
                "cookie": f"{COOKIE}={cookie}",
            },
        )
    refused = {why: a.status_code for why, a in attempts.items() if a.status_code not in (403, 421)}
    assert not refused, f"these were not refused: {refused}"
    state = await store.plan_state(plan.plan_id)
    assert state.pending and state.decision is None


async def test_an_approval_replayed_or_a_page_reused_after_a_decision_changes_nothing(
    store: StateStore, site: ReviewSite, clock: Clock
) -> None:
    plan = await saved(store, sample_plan(50, now=clock.now))
    url = await site.url_for(plan.plan_id, plan.expires_at)
    async with httpx.AsyncClient() as http:
        form = await form_of(http, url)
        first = await post_decision(http, url, "decline", form=form)
        assert first.status_code == 303
        declined = await store.plan_state(plan.plan_id)
        assert declined.status == "declined" and declined.decision is not None
        assert declined.decision.channel == "review_page"

        clock.now += 5
        replay = await post_decision(http, url, "approve:delete", form=form)
        again = await post_decision(http, url, "decline", form=form)
        assert replay.status_code == again.status_code == 303 and "already" in replay.headers["location"]
        assert await store.plan_state(plan.plan_id) == declined, "the first decision stands, unchanged"

        page = await http.get(url)
        assert 'data-status="declined"' in page.text and "Declined on this page" in page.text
        assert 'name="decision"' not in page.text, "a decided page offers no buttons"


async def test_an_approval_is_recorded_once_with_the_chosen_mode(
    store: StateStore, site: ReviewSite, clock: Clock
) -> None:
    plan = await saved(store, sample_plan(50, now=clock.now))
    url = await site.url_for(plan.plan_id, plan.expires_at)
    async with httpx.AsyncClient() as http:
        form = await form_of(http, url)
        answer = await post_decision(http, url, "approve:quarantine", form=form)
        assert answer.status_code == 303
        state = await store.plan_state(plan.plan_id)
        assert state.status == "approved"
        assert state.decision is not None
        assert (state.decision.channel, state.decision.mode, state.decision.at) == (
            "review_page",
            "quarantine",
            clock.now,
        )
        replay = await post_decision(http, url, "approve:quarantine", form=form)
        assert "already" in replay.headers["location"] and await store.plan_state(plan.plan_id) == state


async def test_a_quarantine_plan_cannot_be_approved_as_a_permanent_delete(
    store: StateStore, site: ReviewSite, clock: Clock
) -> None:
    plan = await saved(store, sample_plan(20, now=clock.now, mode="quarantine"))
    url = await site.url_for(plan.plan_id, plan.expires_at)
    async with httpx.AsyncClient() as http:
        form = await form_of(http, url)
        page = (await http.get(url)).text
        assert "approve:delete" not in page and "Approve: move to quarantine" in page
        answer = await post_decision(http, url, "approve:delete", form=form)
        assert answer.status_code == 400
        assert (await store.plan_state(plan.plan_id)).pending


async def test_the_confirmation_token_in_place_of_the_page_secret_finds_nothing(
    make_settings: Callable[..., Any], sandbox: Any, tmp_path: Path
) -> None:
    """A real dry run: its token is nowhere on the page, and used as the page's secret it opens nothing."""
    settings = make_settings(state_dir=tmp_path / "state")
    async with Client(build_server(settings)) as client:
        plan = await call_ok(client, "remove_paths", {"paths": [f"{sandbox.home}/scratch/run-001"]})
    token = plan["confirmation_token"]
    store = open_store(None, tmp_path / "state")
    site = ReviewSite(store, browser="never")
    try:
        expires = time.time() + 300
        url = await site.url_for(plan["plan_id"], expires)
        base = origin_of(url)
        async with httpx.AsyncClient() as http:
            form = await form_of(http, url)
            everything = " ".join(
                [
                    (await http.get(url)).text,
                    (await http.get(url + "api/paths")).text,
                    (await http.get(url + "api/children")).text,
                    (await http.get(url + "plan.csv")).text,
                ]
            )
            assert token not in everything
            for secret in (token, token.split(".")[0], token[:43]):
                answer = await http.post(
                    f"{base}/review/{secret}/decide",
                    content=f"csrf={form['csrf']}&decision=approve:delete",
                    headers={"origin": base, "content-type": "application/x-www-form-urlencoded"},
                )
                assert (answer.status_code, answer.text) == (404, "Not found.")
        assert (await store.plan_state(plan["plan_id"])).pending
    finally:
        await site.aclose()
        await store.aclose()


async def test_an_expired_plans_page_says_so_and_decides_nothing(
    store: StateStore, site: ReviewSite, clock: Clock
) -> None:
    plan = await saved(store, sample_plan(20, now=clock.now))
    url = await site.url_for(plan.plan_id, plan.expires_at)
    async with httpx.AsyncClient() as http:
        form = await form_of(http, url)
        clock.now = plan.expires_at + 1
        page = await http.get(url)
        assert page.status_code == 200 and 'data-status="expired"' in page.text and 'name="decision"' not in page.text
        answer = await post_decision(http, url, "approve:delete", form=form)
        assert answer.status_code == 410
        assert (await http.get(url + "api/paths")).status_code == 410
        clock.now = plan.expires_at + 2 * 3600
        assert (await http.get(url)).status_code == 404, "long after, the page is gone"
    assert (await store.plan_state(plan.plan_id)).decision is None


def test_csrf_value_is_bound_to_the_page_and_the_browser() -> None:
    a, b = "A" * 43, "B" * 43
    assert csrf_value(a, b) != csrf_value(b, b) and csrf_value(a, b) != csrf_value(a, a)
    assert len(csrf_value(a, b)) == 64


# ---------------------------------------------------------------------------- in a real browser


def bulk_tree(root: Path, files: int, folders: int) -> None:
    """`files` small files in 30 folders and `folders` folders of 3 files, under scratch/bulk of the sandbox."""
    bulk = root / "scratch" / "bulk"
    for i in range(files):
        target = bulk / f"run{i % 30:02d}" / f"out-{i:05d}.dat"
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(b"x" * (i % 97 + 1))
    for i in range(folders):
        for j in range(3):
            target = bulk / f"old-{i:02d}" / f"part-{j}.bin"
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_bytes(b"y" * (1000 * (i + 1) + j))


async def test_the_page_of_a_3000_path_dry_run_lists_every_path_with_the_dry_runs_totals(
    make_settings: Callable[..., Any], sandbox: Any, tmp_path: Path, browser: Any
) -> None:
    bulk_tree(sandbox.root, 2990, 10)
    bulk = f"{sandbox.home}/scratch/bulk"
    paths = [f"{bulk}/run{i % 30:02d}/out-{i:05d}.dat" for i in range(2990)] + [
        f"{bulk}/old-{i:02d}" for i in range(10)
    ]
    settings = make_settings(state_dir=tmp_path / "state")
    async with Client(build_server(settings)) as client:
        dry = await call_ok(client, "remove_paths", {"paths": [*paths, f"{sandbox.home}/.ssh", f"{bulk}/gone.txt"]})
    summary = dry["summary"]
    assert summary["would_remove"] == 3000
    store = open_store(None, tmp_path / "state")
    site = ReviewSite(store, browser="never")
    try:
        url = await site.url_for(dry["plan_id"], time.time() + 300)
        context = await browser.new_context(viewport={"width": 1200, "height": 900})
        page = await context.new_page()
        problems: list[str] = []
        page.on("console", lambda message: problems.append(message.text) if message.type == "error" else None)
        await page.goto(url)
        await page.wait_for_selector("#tree-body tr[data-path]")

        totals = {
            key: await page.locator(f'[data-total="{key}"]').get_attribute("data-value")
            for key in ("would_remove", "total_size", "file_count", "folder_count")
        }
        assert totals == {k: str(summary[k]) for k in totals}, "the page's totals are the dry run's"

        bulk_row = page.locator(f'#tree-body tr[data-path="{bulk}"]')
        if await bulk_row.count():  # the tree starts above bulk/ when the plan spans more
            await bulk_row.get_by_role("button").click()
        run07 = page.locator(f'#tree-body tr[data-path="{bulk}/run07"]')
        await run07.wait_for()
        inside = [p for p in paths if "/run07/" in p]
        assert (await run07.locator("td").nth(3).inner_text()).replace(",", "") == str(len(inside))
        await run07.get_by_role("button", name="Open run07").click()
        await page.locator(f'#tree-body tr[data-path="{inside[-1]}"]').wait_for()

        await page.screenshot(path=str(tmp_path / "review-page.png"), full_page=False)
        keep_artifact(tmp_path / "review-page.png")

        await page.get_by_role("tab", name="All paths").click()
        listed: list[str] = []
        while True:
            await page.wait_for_function("() => document.querySelectorAll('#paths-body tr[data-path]').length > 0")
            rows = await page.locator("#paths-body tr[data-path]").evaluate_all("rows => rows.map(r => r.dataset.path)")
            listed += rows
            next_page = page.get_by_role("button", name="Next page")
            if await next_page.is_disabled():
                break
            first = rows[0]
            await next_page.click()
            await page.wait_for_function(
                "first => document.querySelector('#paths-body tr[data-path]')?.dataset.path !== first", arg=first
            )
        assert len(listed) == 3000 and set(listed) == set(paths), "every path, page by page"

        await page.get_by_role("searchbox", name="Search paths").fill("out-0123")
        await page.wait_for_function("() => document.getElementById('paths-range').textContent.includes('matching')")
        assert await page.locator("#paths-body tr[data-path]").evaluate_all("r => r.map(x => x.dataset.path)") == [
            p for p in sorted(paths) if "out-0123" in p
        ]

        await page.get_by_role("tab", name="Refused or missing").click()
        await page.locator("#exceptions-body tr[data-path]").first.wait_for()
        assert not problems, problems
        await context.close()
    finally:
        await site.aclose()
        await store.aclose()


async def open_page(browser: Any, url: str) -> Any:
    context = await browser.new_context()
    page = await context.new_page()
    await page.goto(url)
    return page


async def test_approve_in_the_browser_is_recorded_as_the_review_pages(
    store: StateStore, site: ReviewSite, clock: Clock, browser: Any, tmp_path: Path
) -> None:
    plan = await saved(store, sample_plan(200, now=clock.now))
    url = await site.url_for(plan.plan_id, plan.expires_at)
    page = await open_page(browser, url)
    await page.get_by_role("button", name="Approve: delete permanently").click()
    await page.wait_for_selector('#status[data-status="approved"]')
    state = await store.plan_state(plan.plan_id)
    assert state.status == "approved" and state.decision is not None
    assert (state.decision.kind, state.decision.channel, state.decision.mode) == ("approved", "review_page", "delete")
    assert await page.get_by_role("button", name=re.compile("Approve|Decline")).count() == 0, "decided: no buttons"
    await page.screenshot(path=str(tmp_path / "review-page-approved.png"))
    keep_artifact(tmp_path / "review-page-approved.png")


async def test_decline_in_the_browser_and_a_second_tab_then_decides_nothing(
    store: StateStore, site: ReviewSite, clock: Clock, browser: Any
) -> None:
    plan = await saved(store, sample_plan(200, now=clock.now))
    url = await site.url_for(plan.plan_id, plan.expires_at)
    first = await open_page(browser, url)
    second = await open_page(browser, url)  # the same page, opened earlier in another window
    await first.get_by_role("button", name="Decline").click()
    await first.wait_for_selector('#status[data-status="declined"]')
    declined = await store.plan_state(plan.plan_id)
    assert declined.status == "declined" and declined.decision is not None
    assert declined.decision.channel == "review_page"

    await second.get_by_role("button", name="Approve: delete permanently").click()
    await second.wait_for_selector('#status[data-status="declined"]')
    assert "yours was not recorded" in await second.locator("#status").inner_text()
    assert await store.plan_state(plan.plan_id) == declined


# ---------------------------------------------------------------------------- end to end: the real server


def recording_browser(tmp_path: Path) -> tuple[dict[str, str], Path]:
    """A $BROWSER that records the address it is asked to open (and opens nothing): the server's own way
    of reaching the person, seen from outside. Returns the environment to start the server with."""
    log = tmp_path / "browser-opened.txt"
    script = tmp_path / "record-browser.py"
    script.write_text(recording_browser_script(log))
    script.chmod(0o755)
    return {"BROWSER": str(script)}, log


async def address_opened(log: Path) -> str:
    """The address the server handed to $BROWSER (the browser starts in a child process: a moment later)."""
    for _ in range(400):
        if log.exists() and log.read_text().strip():
            (first, *_) = log.read_text().split()
            return page_address_of(first)  # the browser is given a private launcher file, not the address
        await anyio.sleep(0.05)
    raise AssertionError("the server opened no review page through $BROWSER")


async def never_answers(context: Any, params: Any) -> Any:
    """A client that declares form elicitation and never draws it (Claude Desktop's chat, late 2026)."""
    await anyio.sleep_forever()


def result_text(result: Any) -> str:
    return " ".join(getattr(block, "text", "") for block in result.content) + json.dumps(result.structured_content)


async def unanswered_form_then_the_page(client: Client, browser: Any, log: Path, root: Path, home: str) -> None:
    """The issue's scenario: the form goes unanswered, nothing is deleted, the token stays good, the page was
    opened; the person approves there in a real browser; the agent's next call with the same token proceeds."""
    target = f"{home}/scratch/run-001"
    plan = await call_ok(client, "remove_paths", {"paths": [target]})
    execute = {"dry_run": False, "confirmation_token": plan["confirmation_token"]}

    waiting = await client.call_tool("remove_paths", execute)
    assert waiting.is_error and "not spent" in result_text(waiting), result_text(waiting)
    assert (root / "scratch" / "run-001").is_dir(), "nothing is deleted while the person has not decided"
    url = await address_opened(log)
    assert url not in result_text(waiting) and "/review/" not in result_text(waiting), "the agent gets no link"

    page = await open_page(browser, url)
    assert await page.locator('[data-total="would_remove"]').get_attribute("data-value") == "1"
    await page.get_by_role("button", name=re.compile("^Approve")).first.click()
    await page.wait_for_selector('#status[data-status="approved"]')

    done = await call_ok(client, "remove_paths", execute)
    assert not (root / "scratch" / "run-001").exists(), done
    await page.reload()
    assert await page.locator("#status").get_attribute("data-status") in ("running", "done")
    assert await page.get_by_role("button", name=re.compile("Approve|Decline")).count() == 0


def audit_confirmations(audit: Path) -> list[str]:
    lines = [json.loads(line) for line in audit.read_text().splitlines()] if audit.exists() else []
    return [str(line.get("confirmed_by")) for line in lines if line.get("confirmed_by")]


async def test_over_stdio_an_unanswered_form_opens_the_page_and_its_approve_lets_the_token_run(
    tmp_path: Path, browser: Any
) -> None:
    from mcp import StdioServerParameters

    from efile_mcp.sandbox import seed_sample_tree

    root = seed_sample_tree(tmp_path / "home")
    env, log = recording_browser(tmp_path)
    audit = tmp_path / "audit.jsonl"
    params = StdioServerParameters(
        command=sys.executable,
        args=["-m", "efile_mcp", "--sandbox", str(root), "--audit-log", str(audit)],
        env={
            "PYTHONPATH": os.pathsep.join(sys.path),
            "EFILE_CONFIRM_TIMEOUT": "3",
            "EFILE_STATE_DIR": str(tmp_path / "state"),
            **env,
        },
    )
    async with Client(params, mode="legacy", elicitation_callback=never_answers) as client:
        await unanswered_form_then_the_page(client, browser, log, root, "/public/home/demo")
    assert "review_page" in audit_confirmations(audit)


async def test_over_http_an_unanswered_form_opens_the_page_and_its_approve_lets_the_token_run(
    tmp_path: Path, browser: Any
) -> None:
    from efile_mcp.sandbox import seed_sample_tree

    from .test_http import HTTP_TOKEN, connect, http_process

    root = seed_sample_tree(tmp_path / "home")
    env, log = recording_browser(tmp_path)
    audit = tmp_path / "audit.jsonl"
    with http_process(
        "--sandbox",
        str(root),
        "--audit-log",
        str(audit),
        env={
            "EFILE_HTTP_TOKEN": HTTP_TOKEN,
            "EFILE_CONFIRM_TIMEOUT": "3",
            "EFILE_STATE_DIR": str(tmp_path / "state"),
            **env,
        },
    ) as (endpoint, _stderr):
        async with connect(endpoint, mode="legacy", elicitation_callback=never_answers) as client:
            await unanswered_form_then_the_page(client, browser, log, root, "/public/home/demo")
        url = await address_opened(log)
        assert url.startswith(endpoint.rsplit("/mcp", 1)[0] + "/review/"), "the page is served by the same app"
        async with httpx.AsyncClient() as http:
            secret = url.rstrip("/").rsplit("/", 1)[1]
            altered = url.replace(secret, secret[::-1])
            assert ((await http.get(altered)).status_code, (await http.get(altered)).text) == (404, "Not found.")
            assert (await http.get(url)).status_code == 200, "a page needs its secret, not the bearer token"
            assert (await http.post(endpoint, json={})).status_code == 401, "the MCP endpoint still needs the token"
    assert "review_page" in audit_confirmations(audit)


async def test_over_stdio_decline_on_the_page_spends_the_token_and_deletes_nothing(
    tmp_path: Path, browser: Any
) -> None:
    from mcp import StdioServerParameters

    from efile_mcp.sandbox import seed_sample_tree

    root = seed_sample_tree(tmp_path / "home")
    env, log = recording_browser(tmp_path)
    params = StdioServerParameters(
        command=sys.executable,
        args=["-m", "efile_mcp", "--sandbox", str(root), "--audit-log", str(tmp_path / "audit.jsonl")],
        env={
            "PYTHONPATH": os.pathsep.join(sys.path),
            "EFILE_CONFIRM_TIMEOUT": "3",
            "EFILE_STATE_DIR": str(tmp_path / "state"),
            **env,
        },
    )
    async with Client(params, mode="legacy", elicitation_callback=never_answers) as client:
        plan = await call_ok(client, "remove_paths", {"paths": ["/public/home/demo/scratch/run-001"]})
        execute = {"dry_run": False, "confirmation_token": plan["confirmation_token"]}
        assert (await client.call_tool("remove_paths", execute)).is_error
        page = await open_page(browser, await address_opened(log))
        await page.get_by_role("button", name="Decline").click()
        await page.wait_for_selector('#status[data-status="declined"]')
        for _ in range(2):
            refused = await client.call_tool("remove_paths", execute)
            assert refused.is_error and "declin" in result_text(refused), result_text(refused)
    assert (root / "scratch" / "run-001").is_dir()


# ---------------------------------------------------------------------------- show(): the person's browser

SHOW = """
import sys
from efile_mcp.review import ReviewSite
site = ReviewSite(store=None, browser=sys.argv[1])  # type: ignore[arg-type]
print("shown" if site.show("http://127.0.0.1:1/review/" + "s" * 43 + "/") else "not shown", file=sys.stderr)
"""


def run_show(setting: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    from ..conftest import child_env

    clean = {k: v for k, v in child_env().items() if k not in ("BROWSER", "DISPLAY", "WAYLAND_DISPLAY")}
    return subprocess.run(
        [sys.executable, "-c", SHOW, setting],
        capture_output=True,
        text=True,
        timeout=60,
        env={**clean, **env},
    )


def test_show_opens_the_page_through_browser_and_keeps_stdout_clean(tmp_path: Path) -> None:
    """$BROWSER is honoured, and whatever the browser command prints stays off stdout (the MCP stream)."""
    log = tmp_path / "opened.txt"
    noisy = tmp_path / "noisy-browser.py"
    script = recording_browser_script(log).splitlines(keepends=True)
    noisy.write_text("".join([script[0], "print('browser chatter on stdout')\n", *script[1:]]))
    noisy.chmod(0o755)
    done = run_show("auto", {"BROWSER": str(noisy)})
    assert done.stderr.splitlines()[0] == "shown", done.stderr
    for _ in range(200):
        if log.exists():
            break
        time.sleep(0.05)  # the browser runs in a child process of its own: wait for its file, not for a time
    # The browser was sent a private launcher file (the secret is on no command line) that leads to the page.
    assert log.read_text().strip() == "http://127.0.0.1:1/review/" + "s" * 43 + "/"
    assert done.stdout == "", "nothing but MCP messages on stdout"
    assert "browser chatter on stdout" in done.stderr, "the browser's output goes to stderr"


@pytest.mark.parametrize(
    ("setting", "env", "why"),
    [
        ("never", {"BROWSER": "/bin/false"}, "EFILE_REVIEW_BROWSER=never"),
        ("auto", {}, "no web browser found here"),
    ],
)
def test_without_a_browser_the_address_goes_to_stderr_in_one_line(setting: str, env: dict[str, str], why: str) -> None:
    done = run_show(setting, env)
    lines = done.stderr.strip().splitlines()
    assert lines[-1] == "not shown" and len(lines) == 2, done.stderr
    assert why in lines[0] and "http://127.0.0.1:1/review/" in lines[0] and "efile-mcp approve" in lines[0]
    assert done.stdout == ""


# ---------------------------------------------------------------------------- 100,000 paths


async def test_a_100000_path_plan_is_read_in_bounded_pieces(store: StateStore, site: ReviewSite, clock: Clock) -> None:
    """One folder of 100,000 files: the page stays small, every JSON answer is one bounded page, the CSV streams
    them all."""
    paths = [SeenPath(f"{HOME}/scratch/flat/f{i:06d}.txt", "file", i, clock.now - i, i) for i in range(100_000)]
    plan = await saved(store, Plan("abcdefabcdefabcdefabcdef", clock.now + 900, paths, created_at=clock.now))
    url = await site.url_for(plan.plan_id, plan.expires_at)
    async with httpx.AsyncClient(timeout=60) as http:
        page = await http.get(url)
        assert page.status_code == 200 and len(page.content) < 40_000
        top = await http.get(url + "api/children", params={"limit": 100_000})
        assert top.json()["total"] == 100_000 and len(top.json()["items"]) == 500 and len(top.content) < 400_000
        last = (await http.get(url + "api/paths", params={"offset": 99_990, "limit": 100})).json()
        assert [row["path"] for row in last["items"]] == [s.path for s in paths[-10:]]
        rows = 0
        async with http.stream("GET", url + "plan.csv") as download:
            async for line in download.aiter_lines():
                rows += 1 if line.startswith("remove,") else 0
        assert rows == 100_000


async def test_an_open_page_follows_a_decision_made_in_the_terminal(
    store: StateStore, site: ReviewSite, clock: Clock, browser: Any
) -> None:
    from efile_mcp.guard.ports import Decision

    plan = await saved(store, sample_plan(30, now=clock.now))
    page = await open_page(browser, await site.url_for(plan.plan_id, plan.expires_at))
    assert await page.get_by_role("button", name="Decline").count() == 1
    await store.decide(plan.plan_id, plan.expires_at, Decision("approved", "terminal", "delete", clock.now))
    await page.wait_for_selector('#status[data-status="approved"]', timeout=15_000)
    assert "in a terminal" in await page.locator("#status").inner_text()
    assert await page.get_by_role("button", name="Decline").count() == 0


async def test_replicas_sharing_a_redis_store_serve_and_decide_each_others_pages(tmp_path: Path, clock: Clock) -> None:
    """Only the secret's hash is stored, in the shared store: a page made by one replica opens on another."""
    from ..redis_server import start_redis

    server = start_redis(tmp_path / "redis")
    first = second = None
    try:
        first, second = open_store(server.url, None, clock=clock), open_store(server.url, None, clock=clock)
        plan = await saved(first, sample_plan(40, now=clock.now))
        made, serving = ReviewSite(first, clock=clock), ReviewSite(second, clock=clock)
        try:
            url = await made.url_for(plan.plan_id, plan.expires_at)
            secret_path = url.split("/review/", 1)[1]
            other = (await serving.url_for("0" * 24, plan.expires_at)).split("/review/", 1)[0]
            elsewhere = f"{other}/review/{secret_path}"
            async with httpx.AsyncClient() as http:
                form = await form_of(http, elsewhere)
                assert (await post_decision(http, elsewhere, "approve:delete", form=form)).status_code == 303
            state = await first.plan_state(plan.plan_id)
            assert state.status == "approved" and state.decision is not None
            assert state.decision.channel == "review_page"
            raw = await first.load_plan("review-" + hashlib.sha256(url.split("/")[-2].encode()).hexdigest())
            assert raw is not None and url.split("/")[-2].encode() not in raw, (
                "the store keeps the hash, not the secret"
            )
        finally:
            await made.aclose()
            await serving.aclose()
    finally:
        for opened in (first, second):
            if opened is not None:
                await opened.aclose()
        server.stop()
