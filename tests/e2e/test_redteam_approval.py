"""Red team: the approval attacked as an agent, another client or a web page in the person's browser would.

Each test is one attempt to get something deleted, moved or restored that the person did not approve, or to
make the person's approval count for something other than what they saw: a reused or replayed page, a
cross-site POST, a guessed or altered URL, another MCP session answering for the person, a self-answering
client, a timeout or cancel loop, a URL fished out of a tool result, a quarantine approval turned into a
delete, two executions racing one approval, a resumed execution after its lease expired. Each asserts the
safe outcome. A break found is marked `xfail(strict=True, reason="BREAK: ...")` until it is fixed.
"""

from __future__ import annotations

import ast
import json
import os
import re
import secrets
import shutil
import sys
from collections.abc import AsyncIterator, Callable
from datetime import datetime
from pathlib import Path
from typing import Any

import anyio
import httpx2 as httpx
import pytest
from mcp import Client, StdioServerParameters
from mcp.server.mcpserver import MCPServer
from mcp.types import ElicitResult

from efile_mcp.guard.ports import Decision
from efile_mcp.guard.quarantine import QUARANTINE_DIR
from efile_mcp.guard.seen import Plan
from efile_mcp.guard.store import StateStore
from efile_mcp.review import ReviewSite
from efile_mcp.review.app import COOKIE, csrf_value
from efile_mcp.review.site import page_address_of
from efile_mcp.review.terminal import describe
from efile_mcp.sandbox import RunningSandbox, seed_sample_tree
from efile_mcp.server import build_server, review_site_of
from efile_mcp.settings import Settings

from ..conftest import ERAS, HeldRequest, audit_lines, call_error, call_ok, recording_browser_script, wait_for_event
from .test_http import connect, http_process, settings_env
from .test_review_page import CHROMIUM, CHROMIUM_ARGS, require_browser

pytestmark = pytest.mark.anyio


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


# ---------------------------------------------------------------------------- helpers


def site_of(server: MCPServer[Any]) -> ReviewSite:
    site = review_site_of(server)
    assert site is not None
    return site


def store_of(server: MCPServer[Any]) -> StateStore:
    return site_of(server).store


def epoch(iso: str) -> float:
    return datetime.fromisoformat(iso).timestamp()


async def page_url(server: MCPServer[Any], plan: dict[str, Any]) -> str:
    """The plan's review page, as the person gets it (the same URL the server opens in their browser)."""
    return await site_of(server).url_for(plan["plan_id"], epoch(plan["expires_at"]))


async def page_form(http: httpx.AsyncClient, url: str) -> dict[str, str]:
    page = await http.get(url)
    assert page.status_code == 200, page.text
    match = re.search(r'name="csrf" value="([0-9a-f]+)"', page.text)
    assert match, "a pending plan's page has its decision form"
    return {"csrf": match.group(1)}


def origin(url: str) -> str:
    return url.split("/review/")[0]


async def post(
    http: httpx.AsyncClient,
    url: str,
    decision: str,
    form: dict[str, str],
    *,
    headers: dict[str, str] | None = None,
    same_origin: bool = True,
) -> httpx.Response:
    sent = {"content-type": "application/x-www-form-urlencoded"}
    if same_origin:
        sent["origin"] = origin(url)
    sent.update(headers or {})
    body = str(httpx.QueryParams({**form, "decision": decision}))
    return await http.post(url + "decide", content=body, headers=sent)


async def status_of(server: MCPServer[Any], plan: dict[str, Any]) -> str:
    return (await store_of(server).plan_state(plan["plan_id"])).status


def executions(audit: Path) -> list[dict[str, Any]]:
    return [line for line in audit_lines(audit) if line["event"] == "execution"]


def text_of(result: Any) -> str:
    return " ".join(getattr(b, "text", "") for b in result.content) + json.dumps(result.structured_content)


@pytest.fixture
def human_server(make_settings: Callable[..., Settings]) -> MCPServer[Any]:
    """EFILE_CONFIRM=human, no browser, no form: only the page (or a terminal) can let a removal run."""
    return build_server(make_settings(confirm="human", review_browser="never", confirm_timeout=0.2))


@pytest.fixture
async def agent(human_server: MCPServer[Any]) -> AsyncIterator[Client]:
    async with Client(human_server, mode="legacy") as connected:
        yield connected


# ---------------------------------------------------------------------------- the page over HTTP


async def test_a_cross_site_or_forged_post_decides_nothing(
    human_server: MCPServer[Any], agent: Client, sandbox: RunningSandbox, audit_path: Path
) -> None:
    target = f"{sandbox.home}/scratch/run-001"
    plan = await call_ok(agent, "remove_paths", {"paths": [target]})
    other = await call_ok(agent, "remove_paths", {"paths": [f"{sandbox.home}/scratch/tmp.log"]})
    url, other_url = await page_url(human_server, plan), await page_url(human_server, other)
    port = url.split("/review/")[0].rsplit(":", 1)[1]
    async with httpx.AsyncClient() as person, httpx.AsyncClient() as attacker:
        form = await page_form(person, url)
        other_form = await page_form(attacker, other_url)
        other_cookie = attacker.cookies.get(COOKIE)
        cookie = person.cookies.get(COOKIE)
        assert cookie and other_cookie
        attempts: dict[str, httpx.Response] = {
            "no Origin": await post(person, url, "approve", form, same_origin=False),
            "foreign Origin": await post(person, url, "approve", form, headers={"origin": "http://evil.example"}),
            "Origin null alone": await post(person, url, "approve", form, headers={"origin": "null"}),
            "Origin null, cross-site fetch": await post(
                person, url, "approve", form, headers={"origin": "null", "sec-fetch-site": "cross-site"}
            ),
            "localhost for 127.0.0.1": await post(
                person, url, "approve", form, headers={"origin": f"http://localhost:{port}"}
            ),
            "no cookie": await post(attacker, url, "approve", form),
            "wrong CSRF value": await post(person, url, "approve", {"csrf": "0" * 64}),
            "no CSRF value": await post(person, url, "approve", {}),
            "another page's cookie and CSRF": await post(
                httpx.AsyncClient(), url, "approve", other_form, headers={"cookie": f"{COOKIE}={other_cookie}"}
            ),
            "CSRF of another page's secret": await post(
                person, url, "approve", {"csrf": csrf_value(other_url.rstrip("/").rsplit("/", 1)[1], cookie)}
            ),
            "text/plain form": await post(person, url, "approve", form, headers={"content-type": "text/plain"}),
            "multipart form": await post(
                person, url, "approve", form, headers={"content-type": "multipart/form-data; boundary=x"}
            ),
            "DNS rebinding Host": await post(
                person,
                url,
                "approve",
                form,
                headers={"host": f"evil.example:{port}", "origin": f"http://evil.example:{port}"},
            ),
            "GET decide": await person.get(url + "decide", params={"decision": "approve", **form}),
            "PUT decide": await person.put(url + "decide", content="decision=approve"),
            "approve with an unknown mode": await post(person, url, "approve:everything", form),
            "neither approve nor decline": await post(person, url, "yes", form),
        }
        refused = {what: r.status_code for what, r in attempts.items() if r.status_code >= 400}
        assert set(refused) == set(attempts), {w: (r.status_code, r.text[:80]) for w, r in attempts.items()}
    assert await status_of(human_server, plan) == "open"
    assert await status_of(human_server, other) == "open"
    refusal = await call_error(
        agent, "remove_paths", {"dry_run": False, "confirmation_token": plan["confirmation_token"]}
    )
    assert "not spent" in refusal
    assert (sandbox.root / "scratch/run-001").is_dir() and executions(audit_path) == []


async def test_a_guessed_altered_or_truncated_url_finds_and_decides_nothing(
    human_server: MCPServer[Any], agent: Client, sandbox: RunningSandbox
) -> None:
    plan = await call_ok(agent, "remove_paths", {"paths": [f"{sandbox.home}/scratch/run-001"]})
    url = await page_url(human_server, plan)
    base, secret = url.rstrip("/").rsplit("/", 1)
    flipped = secret[:-1] + ("A" if secret[-1] != "A" else "B")
    guesses = {
        "random": secrets.token_urlsafe(32),
        "truncated": secret[:-1],
        "half": secret[:22],
        "extended": secret + "A",
        "one character changed": flipped,
        "upper-cased": secret.upper() if secret.upper() != secret else secret.lower(),
        "plan id": plan["plan_id"],
        "confirmation token": plan["confirmation_token"],
        "traversal": f"{secrets.token_urlsafe(32)}/..%2F{secret}",
    }
    async with httpx.AsyncClient() as http:
        form = await page_form(http, url)
        for what, guess in guesses.items():
            page = await http.get(f"{base}/{guess}/")
            assert (page.status_code, page.text) == (404, "Not found."), what
            decided = await post(http, f"{base}/{guess}/", "approve", form)
            assert decided.status_code == 404, what
            assert plan["confirmation_token"] not in page.text
        page = await http.get(url)
        assert plan["confirmation_token"] not in page.text, "the page never holds the token"
    assert await status_of(human_server, plan) == "open"
    assert (sandbox.root / "scratch/run-001").is_dir()


async def test_a_decided_page_reused_or_its_approval_replayed_changes_nothing(
    human_server: MCPServer[Any], agent: Client, sandbox: RunningSandbox, audit_path: Path
) -> None:
    plan = await call_ok(agent, "remove_paths", {"paths": [f"{sandbox.home}/scratch/run-001"]})
    execute = {"dry_run": False, "confirmation_token": plan["confirmation_token"]}
    url = await page_url(human_server, plan)
    async with httpx.AsyncClient() as http:
        form = await page_form(http, url)
        approved = await post(http, url, "approve", form)
        assert approved.status_code == 303 and approved.headers["location"] == "./"
        replayed = await post(http, url, "approve", form)
        assert replayed.headers["location"] == "./?already=1"
        declined_after = await post(http, url, "decline", form)
        assert declined_after.headers["location"] == "./?already=1"
        assert await status_of(human_server, plan) == "approved"
        sandbox.sandbox.reset_records()
        await call_ok(agent, "remove_paths", execute)
        # After the execution: the page offers nothing, a replay decides nothing, the token does nothing more.
        page = await http.get(url)
        assert 'name="decision"' not in page.text
        assert (await post(http, url, "approve", form)).headers["location"] == "./?already=1"
        again = await call_error(agent, "remove_paths", execute)
        assert "already executed" in again
    assert sandbox.sandbox.received_remove_paths == [f"{sandbox.home}/scratch/run-001"]
    assert [e["confirmed_by"] for e in executions(audit_path)] == ["review_page"]


async def test_approving_plan_x_does_not_let_plan_y_run(
    human_server: MCPServer[Any], agent: Client, sandbox: RunningSandbox, audit_path: Path
) -> None:
    """The same paths, two dry runs: the person approves X's page; the agent executes Y's token (and Y's token
    with X's paths, and X's token with more paths)."""
    paths = [f"{sandbox.home}/scratch/run-001"]
    x = await call_ok(agent, "remove_paths", {"paths": paths})
    y = await call_ok(agent, "remove_paths", {"paths": paths})
    wider = await call_ok(agent, "remove_paths", {"paths": [*paths, f"{sandbox.home}/scratch/run-002"]})
    url = await page_url(human_server, x)
    async with httpx.AsyncClient() as http:
        assert (await post(http, url, "approve", await page_form(http, url))).status_code == 303
    for token, given in ((y, None), (y, paths), (wider, None)):
        arguments: dict[str, Any] = {"dry_run": False, "confirmation_token": token["confirmation_token"]}
        if given:
            arguments["paths"] = given
        await call_error(agent, "remove_paths", arguments)
    refused = await call_error(
        agent,
        "remove_paths",
        {
            "dry_run": False,
            "confirmation_token": x["confirmation_token"],
            "paths": [*paths, f"{sandbox.home}/scratch/run-002"],
        },
    )
    assert "differ" in refused
    assert (sandbox.root / "scratch/run-001").is_dir() and (sandbox.root / "scratch/run-002").is_dir()
    assert executions(audit_path) == []
    await call_ok(agent, "remove_paths", {"dry_run": False, "confirmation_token": x["confirmation_token"]})
    assert not (sandbox.root / "scratch/run-001").exists() and (sandbox.root / "scratch/run-002").is_dir()


# ---------------------------------------------------------------------------- delete vs quarantine


async def test_the_agent_cannot_turn_a_quarantine_approval_into_a_permanent_delete(
    make_settings: Callable[..., Settings], sandbox: RunningSandbox, audit_path: Path
) -> None:
    server = build_server(
        make_settings(confirm="human", review_browser="never", confirm_timeout=0.2, remove_mode="quarantine")
    )
    async with Client(server, mode="legacy") as agent:
        plan = await call_ok(agent, "remove_paths", {"paths": [f"{sandbox.home}/scratch/run-001"]})
        assert "Mode quarantine" in plan["next_step"]
        execute = {"dry_run": False, "confirmation_token": plan["confirmation_token"]}
        assert "mode belongs to the dry run" in await call_error(agent, "remove_paths", {**execute, "mode": "delete"})
        url = await page_url(server, plan)
        async with httpx.AsyncClient() as http:
            form = await page_form(http, url)
            assert "approve:delete" not in (await http.get(url)).text
            assert (await post(http, url, "approve:delete", form)).status_code == 400
            assert await status_of(server, plan) == "open"
            assert (await post(http, url, "approve:quarantine", form)).status_code == 303
        # Approved as a quarantine: an execution that names delete is still refused, the token runs as approved.
        assert "mode belongs" in await call_error(agent, "remove_paths", {**execute, "mode": "delete"})
        await call_ok(agent, "remove_paths", execute)
    held = sandbox.root / "scratch" / QUARANTINE_DIR / plan["plan_id"] / "run-001"
    assert held.is_dir(), "quarantined, restorable"
    assert [(e["mode"], e["confirmed_by"]) for e in executions(audit_path)] == [("quarantine", "review_page")]


async def test_a_person_choosing_quarantine_for_a_delete_plan_gets_a_quarantine(
    human_server: MCPServer[Any], agent: Client, sandbox: RunningSandbox, audit_path: Path
) -> None:
    plan = await call_ok(agent, "remove_paths", {"paths": [f"{sandbox.home}/scratch/run-001"], "mode": "delete"})
    url = await page_url(human_server, plan)
    async with httpx.AsyncClient() as http:
        assert (await post(http, url, "approve:quarantine", await page_form(http, url))).status_code == 303
    await call_ok(agent, "remove_paths", {"dry_run": False, "confirmation_token": plan["confirmation_token"]})
    assert (sandbox.root / "scratch" / QUARANTINE_DIR / plan["plan_id"] / "run-001").is_dir()
    assert [e["mode"] for e in executions(audit_path)] == ["quarantine"]


async def test_a_purge_page_does_not_offer_a_quarantine_it_cannot_give(
    human_server: MCPServer[Any], agent: Client, sandbox: RunningSandbox, audit_path: Path
) -> None:
    first = await call_ok(agent, "remove_paths", {"paths": [f"{sandbox.home}/scratch/run-001"], "mode": "quarantine"})
    await store_of(human_server).decide(first["plan_id"], epoch(first["expires_at"]), Decision("approved", "terminal"))
    await call_ok(agent, "remove_paths", {"dry_run": False, "confirmation_token": first["confirmation_token"]})
    folder = f"{sandbox.home}/scratch/{QUARANTINE_DIR}/{first['plan_id']}"
    purge = await call_ok(agent, "remove_paths", {"paths": [folder]})
    assert "permanent" in purge["next_step"]
    url = await page_url(human_server, purge)
    async with httpx.AsyncClient() as http:
        form = await page_form(http, url)
        assert "approve:quarantine" not in (await http.get(url)).text, "the page offers what cannot happen"
        chosen = await post(http, url, "approve:quarantine", form)
        assert chosen.status_code == 400
    assert await status_of(human_server, purge) == "open"


async def test_a_purge_approved_as_a_quarantine_is_not_carried_out_as_a_permanent_delete(
    human_server: MCPServer[Any], agent: Client, sandbox: RunningSandbox, audit_path: Path
) -> None:
    """Whatever recorded it (a page of an older version, a store written by hand): a quarantine choice on a plan
    that can only be permanent never runs as the permanent delete the person did not choose."""
    first = await call_ok(agent, "remove_paths", {"paths": [f"{sandbox.home}/scratch/run-001"], "mode": "quarantine"})
    store = store_of(human_server)
    await store.decide(first["plan_id"], epoch(first["expires_at"]), Decision("approved", "terminal"))
    await call_ok(agent, "remove_paths", {"dry_run": False, "confirmation_token": first["confirmation_token"]})
    held = sandbox.root / "scratch" / QUARANTINE_DIR / first["plan_id"] / "run-001"
    purge = await call_ok(agent, "remove_paths", {"paths": [f"{sandbox.home}/scratch/{QUARANTINE_DIR}"]})
    await store.decide(
        purge["plan_id"], epoch(purge["expires_at"]), Decision("approved", "review_page", mode="quarantine")
    )
    await call_error(agent, "remove_paths", {"dry_run": False, "confirmation_token": purge["confirmation_token"]})
    assert held.is_dir(), "the quarantine was not purged for good"
    assert [e["mode"] for e in executions(audit_path)] == ["quarantine"]


# ---------------------------------------------------------------------------- other clients and sessions


def answering(action: str, confirm: bool = True, asked: list[str] | None = None) -> Any:
    async def callback(context: Any, params: Any) -> ElicitResult:
        if getattr(params, "mode", "form") == "url":
            return ElicitResult(action="decline")  # this client opens no page (see the URL-mode attack below)
        if asked is not None:
            asked.append(getattr(params, "message", ""))
        if action == "accept":
            return ElicitResult(action="accept", content={"confirm": confirm})
        return ElicitResult(action=action)  # type: ignore[arg-type]

    return callback


@pytest.mark.parametrize("era", ERAS)
async def test_a_self_answering_client_in_human_mode_is_recorded_as_client_form(
    make_settings: Callable[..., Settings], sandbox: RunningSandbox, audit_path: Path, era: str
) -> None:
    """It can execute its own plan (EFILE_CONFIRM=human trusts a client's form, and says so), never as a person."""
    server = build_server(make_settings(confirm="human", review_browser="never", confirm_timeout=0.5))
    async with Client(server, mode=era, elicitation_callback=answering("accept")) as client:
        plan = await call_ok(client, "remove_paths", {"paths": [f"{sandbox.home}/scratch/run-001"]})
        await call_ok(client, "remove_paths", {"dry_run": False, "confirmation_token": plan["confirmation_token"]})
    assert [e["confirmed_by"] for e in executions(audit_path)] == ["client_form"]
    intents = [line for line in audit_lines(audit_path) if line["event"] == "intent"]
    assert [i["confirmed_by"] for i in intents] == ["client_form"]


@pytest.mark.parametrize("era", ERAS)
async def test_a_form_cancel_or_timeout_loop_never_spends_twice_nor_resumes(
    human_server: MCPServer[Any], sandbox: RunningSandbox, audit_path: Path, era: str
) -> None:
    asked: list[str] = []
    target = sandbox.root / "scratch/run-001"
    async with Client(human_server, mode=era, elicitation_callback=answering("cancel", asked=asked)) as client:
        plan = await call_ok(client, "remove_paths", {"paths": [f"{sandbox.home}/scratch/run-001"]})
        execute = {"dry_run": False, "confirmation_token": plan["confirmation_token"]}
        for _ in range(3):
            waiting = await call_error(client, "remove_paths", execute)
            assert "nothing was deleted" in waiting.lower() and target.is_dir()
        assert len(asked) == 1, "a form the client dismissed is not put again (the page decides now)"
        url = await page_url(human_server, plan)
        async with httpx.AsyncClient() as http:
            form = await page_form(http, url)
            assert (await post(http, url, "decline", form)).status_code == 303
            assert (await post(http, url, "approve", form)).headers["location"] == "./?already=1"
        for _ in range(2):
            assert "declined" in await call_error(client, "remove_paths", execute)
    assert target.is_dir() and executions(audit_path) == []


async def test_the_same_legacy_connection_is_one_session(human_server: MCPServer[Any], sandbox: RunningSandbox) -> None:
    async with Client(human_server, mode="legacy", elicitation_callback=answering("cancel")) as client:
        plan = await call_ok(client, "remove_paths", {"paths": [f"{sandbox.home}/scratch/run-001"]})
        execute = {"dry_run": False, "confirmation_token": plan["confirmation_token"]}
        await call_error(client, "remove_paths", execute)
        again = await call_error(client, "remove_paths", execute)
    assert "another session" not in again and "waiting for the person" in again, again


@pytest.mark.parametrize("era", ERAS)
async def test_a_form_decline_is_final_whatever_comes_after(
    human_server: MCPServer[Any], sandbox: RunningSandbox, audit_path: Path, era: str
) -> None:
    plan_holder: dict[str, Any] = {}
    async with Client(human_server, mode=era, elicitation_callback=answering("decline")) as client:
        plan_holder = await call_ok(client, "remove_paths", {"paths": [f"{sandbox.home}/scratch/run-001"]})
        execute = {"dry_run": False, "confirmation_token": plan_holder["confirmation_token"]}
        assert "declined" in await call_error(client, "remove_paths", execute)
    # A later session whose client says yes, and the page: nothing decides it again.
    async with Client(human_server, mode=era, elicitation_callback=answering("accept")) as other:
        assert "declined" in await call_error(other, "remove_paths", execute)
    url = await page_url(human_server, plan_holder)
    async with httpx.AsyncClient() as http:
        assert 'name="decision"' not in (await http.get(url)).text
    assert await status_of(human_server, plan_holder) == "declined"
    assert (sandbox.root / "scratch/run-001").is_dir() and executions(audit_path) == []


@pytest.mark.parametrize("b_client", ["self-answering", "no form"])
@pytest.mark.parametrize("era", ERAS)
async def test_another_http_session_cannot_answer_or_execute_while_the_person_is_asked(
    sandbox: RunningSandbox, tmp_path: Path, era: str, b_client: str
) -> None:
    """Session A's client shows the form to the person (who takes their time); session B, whose client answers
    its own forms (or shows none: in EFILE_CONFIRM=auto a pipeline runs on the token alone), executes the same
    token. Over a real HTTP server, two MCP sessions."""
    audit = tmp_path / "audit.jsonl"
    env = settings_env(
        sandbox, audit, EFILE_CONFIRM_TIMEOUT="1", EFILE_REVIEW_BROWSER="never", EFILE_REMOVE_MODE="delete"
    )
    person_asked, person_answers = anyio.Event(), anyio.Event()
    answer: dict[str, str] = {}

    async def the_person(context: Any, params: Any) -> ElicitResult:
        person_asked.set()
        await person_answers.wait()
        return ElicitResult(action="decline") if answer["is"] == "decline" else ElicitResult(action="cancel")

    target = f"{sandbox.home}/scratch/run-001"
    with http_process(env=env) as (endpoint, _stderr):
        async with connect(endpoint, mode=era, elicitation_callback=the_person) as a:
            plan = await call_ok(a, "remove_paths", {"paths": [target]})
            execute = {"dry_run": False, "confirmation_token": plan["confirmation_token"]}
            results: list[Any] = []
            async with anyio.create_task_group() as group:

                async def a_executes() -> None:
                    results.append(await a.call_tool("remove_paths", execute))

                group.start_soon(a_executes)
                with anyio.fail_after(20):
                    await person_asked.wait()
                b_asked: list[str] = []
                options = {"elicitation_callback": answering("accept", asked=b_asked)} if b_client != "no form" else {}
                async with connect(endpoint, mode=era, **options) as b:
                    refused = await b.call_tool("remove_paths", execute)
                    assert refused.is_error, text_of(refused)
                    assert (sandbox.root / "scratch/run-001").is_dir()
                    assert b_asked == [], "session B's client is never asked about a plan pending in session A"
                answer["is"] = "decline"
                person_answers.set()
            assert results and results[0].is_error and "declined" in text_of(results[0]), text_of(results[0])
    assert (sandbox.root / "scratch/run-001").is_dir()
    assert [line for line in audit_lines(audit) if line["event"] in ("intent", "execution")] == []


async def test_a_client_given_the_page_by_url_mode_is_not_recorded_as_the_person(
    human_server: MCPServer[Any], sandbox: RunningSandbox, audit_path: Path
) -> None:
    async def self_answering(context: Any, params: Any) -> ElicitResult:
        if getattr(params, "mode", "form") != "url":
            return ElicitResult(action="cancel")  # the form: dismissed, so the page is next
        url = params.url
        async with httpx.AsyncClient() as http:  # what any program holding the URL can do
            await post(http, url, "approve", await page_form(http, url))
        return ElicitResult(action="accept")

    async with Client(human_server, mode="legacy", elicitation_callback=self_answering) as client:
        plan = await call_ok(client, "remove_paths", {"paths": [f"{sandbox.home}/scratch/run-001"]})
        await client.call_tool("remove_paths", {"dry_run": False, "confirmation_token": plan["confirmation_token"]})
    assert "review_page" not in [e["confirmed_by"] for e in executions(audit_path)]


@pytest.mark.parametrize("era", ERAS)
async def test_a_client_given_the_page_in_a_big_plans_form_is_not_recorded_as_the_person(
    human_server: MCPServer[Any], sandbox: RunningSandbox, audit_path: Path, era: str
) -> None:
    """A plan with more paths than the form lists carries the page's link in the form's text: a client that
    reads its own forms has the address, dismisses the form and approves the page itself."""
    folder = sandbox.root / "scratch/many"
    folder.mkdir()
    for i in range(60):
        (folder / f"f{i:02d}.log").write_text("x")
    approved_on_page: list[int] = []

    async def self_answering(context: Any, params: Any) -> ElicitResult:
        found = re.search(r"http://127\.0\.0\.1:\d+/review/[A-Za-z0-9_-]+/", getattr(params, "message", "") or "")
        url = getattr(params, "url", None) or (found.group(0) if found else None)
        if url is not None:
            async with httpx.AsyncClient() as http:
                approved_on_page.append((await post(http, url, "approve", await page_form(http, url))).status_code)
        return ElicitResult(action="cancel")

    async with Client(human_server, mode=era, elicitation_callback=self_answering) as client:
        plan = await call_ok(
            client, "remove_paths", {"paths": [f"{sandbox.home}/scratch/many/f{i:02d}.log" for i in range(60)]}
        )
        await client.call_tool("remove_paths", {"dry_run": False, "confirmation_token": plan["confirmation_token"]})
    assert approved_on_page, "the form's text carried the page's address"
    assert "review_page" not in [e["confirmed_by"] for e in executions(audit_path)]


# ---------------------------------------------------------------------------- the URL never reaches the agent


@pytest.mark.parametrize("era", ERAS)
async def test_the_review_url_is_in_no_tool_result_nor_error_over_stdio(tmp_path: Path, era: str) -> None:
    root = seed_sample_tree(tmp_path / "home")
    for i in range(60):  # more paths than the form lists: its text carries the page's link (for the person)
        (root / f"scratch/many/f{i:02d}.log").parent.mkdir(parents=True, exist_ok=True)
        (root / f"scratch/many/f{i:02d}.log").write_text("x")
    opened = tmp_path / "opened.txt"
    browser = tmp_path / "browser.py"
    browser.write_text(recording_browser_script(opened))
    browser.chmod(0o755)
    params = StdioServerParameters(
        command=sys.executable,
        args=["-m", "efile_mcp", "--sandbox", str(root), "--audit-log", str(tmp_path / "audit.jsonl")],
        env={
            "PYTHONPATH": os.pathsep.join(sys.path),
            "EFILE_CONFIRM_TIMEOUT": "1",
            "EFILE_CONFIRM": "human",
            "EFILE_STATE_DIR": str(tmp_path / "state"),
            "BROWSER": str(browser),
        },
    )
    home = "/public/home/demo"
    seen: list[str] = []
    forms: list[str] = []
    notified: list[str] = []

    async def on_log(params: Any) -> None:
        notified.append(repr(params))

    async def on_message(message: Any) -> None:
        notified.append(repr(message))

    async with Client(
        params,
        mode=era,
        elicitation_callback=answering("cancel", asked=forms),
        logging_callback=on_log,
        message_handler=on_message,
        log_level="debug",
    ) as client:

        async def call(name: str, arguments: dict[str, Any]) -> Any:
            result = await client.call_tool(name, arguments)
            seen.append(text_of(result))
            return result

        big = await call("remove_paths", {"paths": [f"{home}/scratch/many/f{i:02d}.log" for i in range(60)]})
        small = await call("remove_paths", {"paths": [f"{home}/scratch/run-001"]})
        for plan in (big.structured_content, small.structured_content):
            assert plan is not None
            execute = {"dry_run": False, "confirmation_token": plan["confirmation_token"]}
            await call("remove_paths", execute)
            await call("remove_paths", execute)
            await call("remove_paths", {**execute, "confirmation_token": plan["confirmation_token"][:-3] + "AAA"})
            await call("remove_paths", {**execute, "paths": [f"{home}/scratch/tmp.log"]})
            await call("get_task", {"plan_id": plan["plan_id"]})
        await call("storage_status", {})
        await call("list_files", {"path": f"{home}/scratch"})
        await call("find_paths", {"path": f"{home}/scratch", "name": "*review*"})
        await call("restore_paths", {"plan_id": big.structured_content["plan_id"]})
    addresses = [page_address_of(line) for line in opened.read_text().split()] if opened.exists() else []
    assert addresses, "the server opened the review page through $BROWSER"
    everything = "\n".join(seen + notified)  # results, and any log or other notification sent to the client
    for address in addresses:
        secret = address.rstrip("/").rsplit("/", 1)[1]
        assert secret not in everything
    assert "/review/" not in everything and "127.0.0.1:" not in everything


# ---------------------------------------------------------------------------- executions racing, resuming


async def test_two_executions_racing_one_approval_run_exactly_once(
    human_server: MCPServer[Any], sandbox: RunningSandbox, audit_path: Path
) -> None:
    paths = [f"{sandbox.home}/scratch/run-001", f"{sandbox.home}/scratch/run-002"]
    async with Client(human_server, mode="legacy") as one, Client(human_server, mode="auto") as two:
        plan = await call_ok(one, "remove_paths", {"paths": paths})
        await store_of(human_server).decide(
            plan["plan_id"], epoch(plan["expires_at"]), Decision("approved", "review_page")
        )
        execute = {"dry_run": False, "confirmation_token": plan["confirmation_token"]}
        sandbox.sandbox.reset_records()
        results: list[Any] = []
        async with anyio.create_task_group() as group:
            for client in (one, two, one, two):

                async def run(client: Client = client) -> None:
                    results.append(await client.call_tool("remove_paths", execute))

                group.start_soon(run)
    assert sum(not r.is_error for r in results) == 1, [text_of(r)[:200] for r in results]
    assert all(("already executed" in text_of(r) or "being executed" in text_of(r)) for r in results if r.is_error)
    assert sorted(sandbox.sandbox.received_remove_paths) == sorted(paths), "each path sent exactly once"
    assert len(executions(audit_path)) == 1


async def test_a_resumed_execution_sends_neither_twice_nor_what_changed(
    human_server: MCPServer[Any], agent: Client, sandbox: RunningSandbox, audit_path: Path
) -> None:
    """A replica redeemed the plan and died (its lease ran out): meanwhile one path was removed (by it) and one
    changed. The next call resumes: the removed one is missing, the changed one is not sent, the rest once."""
    home, root = sandbox.home, sandbox.root
    paths = [f"{home}/scratch/run-001", f"{home}/scratch/run-002", f"{home}/scratch/tmp.log"]
    plan = await call_ok(agent, "remove_paths", {"paths": paths})
    store, expires = store_of(human_server), epoch(plan["expires_at"])
    await store.decide(plan["plan_id"], expires, Decision("approved", "review_page"))
    dead = await store.redeem(plan["plan_id"], expires, lease=0.0)  # a replica that died right after
    assert dead.won
    shutil.rmtree(root / "scratch/run-001")  # what the dead replica removed
    with (root / "scratch/tmp.log").open("a") as log:  # changed since the dry run
        log.write("one more line\n")
    sandbox.sandbox.reset_records()
    done = await call_ok(agent, "remove_paths", {"dry_run": False, "confirmation_token": plan["confirmation_token"]})
    statuses = {item["path"]: item["status"] for item in done["items"]}
    assert statuses == {paths[0]: "missing", paths[1]: "removed", paths[2]: "changed"}, done
    assert sandbox.sandbox.received_remove_paths == [paths[1]]
    assert (root / "scratch/tmp.log").exists()
    assert "already executed" in await call_error(
        agent, "remove_paths", {"dry_run": False, "confirmation_token": plan["confirmation_token"]}
    )
    assert sandbox.sandbox.received_remove_paths == [paths[1]]


# ---------------------------------------------------------------------------- what the person sees


async def test_a_file_name_cannot_put_a_button_on_the_page(
    human_server: MCPServer[Any], agent: Client, sandbox: RunningSandbox, audit_path: Path
) -> None:
    """The agent names files so that the page would draw a 'Decline' that approves (a button of the decision
    form outside it), or an attribute that runs script. In Chromium the page has one Decline, and it declines."""
    require_browser()
    from playwright.async_api import async_playwright

    folder = sandbox.root / "scratch/bait"
    folder.mkdir()
    names = [
        "<button form=decide name=decision value=approve>Decline",
        '"><button form="decide" name="decision" value="approve:delete">Decline',
        "<img src=x onerror=document.forms[0].submit()>",
        "' autofocus onfocus='document.forms[0].submit()",
    ]
    for name in names:
        (folder / name).write_text("bait\n")
    paths = [f"{sandbox.home}/scratch/bait/{name}" for name in names]
    plan = await call_ok(agent, "remove_paths", {"paths": paths})
    url = await page_url(human_server, plan)
    async with async_playwright() as playwright:
        browser = await playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            page = await browser.new_page()
            await page.goto(url)
            await page.wait_for_load_state("networkidle")
            assert await status_of(human_server, plan) == "open", "nothing on the page decided by itself"
            assert await page.locator("button[form]").count() == 0
            assert await page.locator("img[src=x]").count() == 0
            declines = page.get_by_role("button", name="Decline")
            assert await declines.count() == 1
            await declines.click()
            await page.wait_for_selector('#status[data-status="declined"]')
        finally:
            await browser.close()
    assert await status_of(human_server, plan) == "declined"
    assert all((folder / name).exists() for name in names) and executions(audit_path) == []


async def test_the_page_cannot_be_framed_or_leak_its_address(
    human_server: MCPServer[Any], agent: Client, sandbox: RunningSandbox
) -> None:
    plan = await call_ok(agent, "remove_paths", {"paths": [f"{sandbox.home}/scratch/run-001"]})
    url = await page_url(human_server, plan)
    async with httpx.AsyncClient() as http:
        page = await http.get(url)
    assert page.headers["x-frame-options"] == "DENY"
    assert "frame-ancestors 'none'" in page.headers["content-security-policy"]
    assert page.headers["referrer-policy"] == "no-referrer", "the secret URL never goes out as a Referer"
    assert "samesite=strict" in page.headers["set-cookie"].lower()
    assert "httponly" in page.headers["set-cookie"].lower()


async def test_a_path_changed_after_the_approval_is_not_sent(
    human_server: MCPServer[Any], agent: Client, sandbox: RunningSandbox
) -> None:
    """The person approved what the page showed; what changed after is not what they approved."""
    paths = [f"{sandbox.home}/scratch/run-001", f"{sandbox.home}/scratch/tmp.log"]
    plan = await call_ok(agent, "remove_paths", {"paths": paths})
    url = await page_url(human_server, plan)
    async with httpx.AsyncClient() as http:
        assert (await post(http, url, "approve", await page_form(http, url))).status_code == 303
    (sandbox.root / "scratch/run-001/added-after.txt").write_text("new results\n")
    sandbox.sandbox.reset_records()
    done = await call_ok(agent, "remove_paths", {"dry_run": False, "confirmation_token": plan["confirmation_token"]})
    statuses = {item["path"]: item["status"] for item in done["items"]}
    assert statuses == {paths[0]: "changed", paths[1]: "removed"}
    assert sandbox.sandbox.received_remove_paths == [paths[1]]
    assert (sandbox.root / "scratch/run-001/added-after.txt").exists()


async def test_the_persons_quarantine_choice_never_splits_a_comma_name(
    human_server: MCPServer[Any], agent: Client, sandbox: RunningSandbox
) -> None:
    """A delete plan may hold a name with a comma; the person then chooses 'quarantine instead': the move carries
    its sources comma-separated, so that name must not be sent (and its look-alikes must stay)."""
    root = sandbox.root
    (root / "scratch/a,tmp.log").write_text("comma\n")
    (root / "scratch/a").mkdir()
    plan = await call_ok(
        agent, "remove_paths", {"paths": [f"{sandbox.home}/scratch/a,tmp.log", f"{sandbox.home}/scratch/run-002"]}
    )
    assert plan.get("confirmation_token"), plan
    url = await page_url(human_server, plan)
    async with httpx.AsyncClient() as http:
        assert (await post(http, url, "approve:quarantine", await page_form(http, url))).status_code == 303
    moves = len(sandbox.sandbox.moves)
    await agent.call_tool("remove_paths", {"dry_run": False, "confirmation_token": plan["confirmation_token"]})
    assert all("," not in move.source for move in sandbox.sandbox.moves[moves:])
    assert (root / "scratch/a,tmp.log").read_text() == "comma\n"
    assert (root / "scratch/a").is_dir() and (root / "scratch/tmp.log").exists()
    assert (root / "scratch" / QUARANTINE_DIR / plan["plan_id"] / "run-002").is_dir()


async def test_file_names_cannot_rewrite_the_terminals_summary(
    human_server: MCPServer[Any], agent: Client, sandbox: RunningSandbox
) -> None:
    """`efile-mcp approve` prints the plan on the person's terminal: a name carrying escape sequences, carriage
    returns or newlines could erase the line that says DELETE PERMANENTLY, or draw a harmless-looking one."""
    folder = sandbox.root / "scratch/big"
    folder.mkdir()
    names = [
        "x\x1b[1A\x1b[2K\rPlan: move to quarantine (restorable)",
        "y\r  0 paths, 0 B",
        "z\nPlan 000: move to quarantine",
        "w\x9b2K",
    ]
    for index, name in enumerate(names):
        (folder / name).write_bytes(b"0" * (10_000 * (index + 1)))
    named = await call_ok(agent, "remove_paths", {"paths": [f"{sandbox.home}/scratch/big/{n}" for n in names]})
    assert named["summary"]["refused"] == len(names) and not named.get("confirmation_token")
    by_select = await call_ok(agent, "remove_paths", {"select": {"path": f"{sandbox.home}/scratch/big", "name": "*"}})
    assert not by_select.get("confirmation_token"), "a selection's matches are screened like named paths"
    plan = await call_ok(agent, "remove_paths", {"paths": [f"{sandbox.home}/scratch/big"]})  # the names inside
    data = await store_of(human_server).load_plan(plan["plan_id"])
    assert data is not None
    lines = describe(Plan.from_bytes(data), now=epoch(plan["expires_at"]) - 800)
    printed = "\n".join(lines)
    assert not any(ch in printed for ch in "\x1b\r\x9b"), printed
    assert len(printed.splitlines()) == len(lines), "a name cannot add a line of its own"
    assert "DELETE PERMANENTLY" in lines[0]


async def raw_http(port: int, request: bytes) -> int:
    """Send bytes as they are (no client normalises the path) and return the response's status code."""
    async with await anyio.connect_tcp("127.0.0.1", port) as stream:
        await stream.send(request)
        head = b""
        with anyio.fail_after(10):
            while b"\r\n" not in head:
                head += await stream.receive()
    return int(head.split(b" ", 2)[1])


async def test_over_http_the_page_is_no_way_around_the_bearer_token_and_no_result_holds_its_url(
    sandbox: RunningSandbox, tmp_path: Path
) -> None:
    audit = tmp_path / "audit.jsonl"
    opened = tmp_path / "opened.txt"
    browser = tmp_path / "browser.py"
    browser.write_text(recording_browser_script(opened))
    browser.chmod(0o755)
    env = settings_env(
        sandbox,
        audit,
        EFILE_CONFIRM="human",
        EFILE_CONFIRM_TIMEOUT="1",
        EFILE_REMOVE_MODE="delete",
        BROWSER=str(browser),
    )
    body = json.dumps(
        {
            "jsonrpc": "2.0",
            "id": 1,
            "method": "tools/call",
            "params": {"name": "remove_paths", "arguments": {"paths": [f"{sandbox.home}/scratch/run-001"]}},
        }
    ).encode()
    with http_process(env=env) as (endpoint, _stderr):
        port = int(endpoint.rsplit(":", 1)[1].split("/")[0])
        for path in (b"/review/../mcp", b"/review/%2e%2e/mcp", b"/review/..%2fmcp", b"/review/assets/../../mcp"):
            request = (
                b"POST " + path + b" HTTP/1.1\r\nHost: 127.0.0.1:" + str(port).encode() + b"\r\n"
                b"Content-Type: application/json\r\nAccept: application/json, text/event-stream\r\n"
                b"Content-Length: " + str(len(body)).encode() + b"\r\nConnection: close\r\n\r\n" + body
            )
            assert await raw_http(port, request) in (401, 404, 405), path
        seen: list[str] = []
        async with connect(endpoint, mode="legacy") as agent:
            plan = await call_ok(agent, "remove_paths", {"paths": [f"{sandbox.home}/scratch/run-001"]})
            execute = {"dry_run": False, "confirmation_token": plan["confirmation_token"]}
            for arguments in (execute, execute, {**execute, "confirmation_token": "x" * 40}):
                seen.append(text_of(await agent.call_tool("remove_paths", arguments)))
            seen.append(text_of(await agent.call_tool("storage_status", {})))
            seen.append(text_of(await agent.call_tool("get_task", {"plan_id": plan["plan_id"]})))
        # Read while the server lives: its private launcher files go with it.
        assert opened.exists(), "the page was opened in the person's browser"
        secret = page_address_of(opened.read_text().split()[0]).rstrip("/").rsplit("/", 1)[1]
    assert not any(secret in text or "/review/" in text for text in seen)
    assert (sandbox.root / "scratch/run-001").is_dir()


async def test_a_web_page_in_the_persons_browser_cannot_decide_even_knowing_the_address_and_csrf(
    human_server: MCPServer[Any], agent: Client, sandbox: RunningSandbox
) -> None:
    """The person has the review page open; another page in the same browser (another site, another port of the
    same host) auto-submits the decision form to it with the right address and even the right CSRF value."""
    require_browser()
    from playwright.async_api import async_playwright

    plan = await call_ok(agent, "remove_paths", {"paths": [f"{sandbox.home}/scratch/run-001"]})
    url = await page_url(human_server, plan)
    async with async_playwright() as playwright:
        browser = await playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            context = await browser.new_context()
            answered: list[int] = []

            async def on_response(response: Any) -> None:
                if response.url == url + "decide":
                    answered.append(response.status)

            context.on("response", on_response)
            review = await context.new_page()
            await review.goto(url)
            csrf = await review.locator('input[name="csrf"]').get_attribute("value")
            attack = (
                f'<form id=f method=post action="{url}decide">'
                f'<input name=csrf value="{csrf}"><input name=decision value="approve:delete"></form>'
                "<script>document.getElementById('f').submit()</script>"
            )
            # Sites the person may have open: another site, and another port of the same loopback host (same-site
            # for cookies: the SameSite cookie goes along, only Origin and CSRF stand in the way).
            hostile_sites = ["http://evil.example/attack", "http://127.0.0.1:1/attack", "http://localhost:1/attack"]
            for hostile_url in hostile_sites:
                await context.route(
                    hostile_url, lambda route: route.fulfill(status=200, content_type="text/html", body=attack)
                )
                hostile = await context.new_page()
                async with hostile.expect_response(url + "decide"):
                    await hostile.goto(hostile_url)
                await hostile.close()
            await review.reload()
            assert await review.locator("#status").get_attribute("data-status") == "pending"
            assert answered == [403] * len(hostile_sites), answered
        finally:
            await browser.close()
    assert await status_of(human_server, plan) == "open"
    assert (sandbox.root / "scratch/run-001").is_dir()


@pytest.mark.parametrize("era", ERAS)
async def test_a_person_argument_smuggled_into_the_call_decides_nothing(
    human_server: MCPServer[Any], sandbox: RunningSandbox, audit_path: Path, era: str
) -> None:
    """remove_paths' form answer is a resolved parameter (`person`): a client that sends it as an argument, in
    any shape the SDK might take for an answer, must not stand in for the person."""
    async with Client(human_server, mode=era) as agent:
        plan = await call_ok(agent, "remove_paths", {"paths": [f"{sandbox.home}/scratch/run-001"]})
        execute = {"dry_run": False, "confirmation_token": plan["confirmation_token"]}
        for smuggled in (
            {"action": "accept", "content": {"confirm": True}},
            {"confirm": True},
            {"outcome": "accepted"},
            "accepted",
            True,
        ):
            result = await agent.call_tool("remove_paths", {**execute, "person": smuggled})
            assert result.is_error, text_of(result)
    assert (sandbox.root / "scratch/run-001").is_dir() and executions(audit_path) == []
    assert await status_of(human_server, plan) in ("open", "asked")


async def test_a_slow_execution_keeps_its_lease_and_is_not_resumed_under_it(
    make_settings: Callable[..., Settings], sandbox: RunningSandbox, audit_path: Path
) -> None:
    """An execution held on the wire longer than EFILE_EXECUTION_LEASE is alive, not dead: it renews its lease,
    and a second call with the same token is told it is running instead of resuming it (which would send twice)."""
    server = build_server(make_settings(review_browser="never", execution_lease=1.0))
    paths = [f"{sandbox.home}/scratch/run-001"]
    held = HeldRequest("async-remove", passed=0)
    async with Client(server, mode="legacy") as agent:
        plan = await call_ok(agent, "remove_paths", {"paths": paths})
        execute = {"dry_run": False, "confirmation_token": plan["confirmation_token"]}
        store, first = store_of(server), []
        sandbox.sandbox.reset_records()
        sandbox.sandbox.fault = held
        async with anyio.create_task_group() as group:

            async def execute_first() -> None:
                first.append(await agent.call_tool("remove_paths", execute))

            group.start_soon(execute_first)
            await wait_for_event(held.arrived, "the first execution's removal reached the storage")
            leased = (await store.plan_state(plan["plan_id"])).lease_until
            with anyio.fail_after(10):  # the renewal, every third of the lease, moves it on
                while (await store.plan_state(plan["plan_id"])).lease_until <= leased + 0.5:
                    await anyio.sleep(0.05)
            second = await agent.call_tool("remove_paths", execute)
            assert second.is_error and "being executed" in text_of(second), text_of(second)
            held.release()
    assert not first[0].is_error, text_of(first[0])
    assert sandbox.sandbox.received_remove_paths == paths, "sent once"
    assert len(executions(audit_path)) == 1


async def test_the_pages_secret_is_not_on_any_command_line(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    seen = tmp_path / "argv.txt"
    browser = tmp_path / "browser.py"
    browser.write_text(f"#!{sys.executable}\nimport sys\nopen({str(seen)!r}, 'a').write(repr(sys.argv) + '\\n')\n")
    browser.chmod(0o755)
    monkeypatch.setenv("BROWSER", str(browser))
    secret = secrets.token_urlsafe(32)
    site = ReviewSite(store=None, browser="auto")  # type: ignore[arg-type]  # show() needs no store
    assert site.show(f"http://127.0.0.1:1/review/{secret}/")
    with anyio.fail_after(20):
        while not seen.exists() or not seen.read_text():
            await anyio.sleep(0.05)
    assert secret not in seen.read_text(), "the browser's command line carries the secret"
    launcher = ast.literal_eval(seen.read_text().splitlines()[0])[1]  # the browser's argv: [browser, address]
    assert page_address_of(launcher) == f"http://127.0.0.1:1/review/{secret}/"
    private = Path(launcher.removeprefix("file://"))
    assert private.stat().st_mode & 0o777 == 0o600 and private.parent.stat().st_mode & 0o777 == 0o700
