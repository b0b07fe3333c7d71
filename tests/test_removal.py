"""The guard's Removal on its own: the confirmation policy, waiting without burning, sessions, leases, modes.

Built directly over the sandbox, with a fake client (`Asker`), fake review pages and a clock the test moves:
every refusal lives in the Removal, so each is exercised here without any MCP tool around it.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import anyio
import pytest

from efile_mcp.client import EfileTransport, RetryPolicy, StaticToken
from efile_mcp.errors import GuardRefusal
from efile_mcp.guard.audit import AuditLog
from efile_mcp.guard.guard import Guard
from efile_mcp.guard.paths import DEFAULT_PROTECTED
from efile_mcp.guard.ports import Decision, FormAnswer
from efile_mcp.guard.removal import REFUSALS, Removal
from efile_mcp.guard.requests import RemovalRequest
from efile_mcp.guard.sealing import ConfirmationSigner
from efile_mcp.guard.seen import SeenPath
from efile_mcp.guard.store import StateStore, open_store
from efile_mcp.models.results import RemoveItem, RemovePathsResult
from efile_mcp.models.units import quota_bytes
from efile_mcp.models.wire import QuotaEntry
from efile_mcp.sandbox import RunningSandbox

from .clocks import ManualClock
from .conftest import audit_lines

pytestmark = pytest.mark.anyio


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@dataclass
class FakeClient:
    """A client as the Removal sees it: its session, whether it declares a form, and how it answers."""

    session: str | None = "session-a"
    has_form: bool = False
    has_url: bool = False
    answer: FormAnswer = "no_answer"
    answered: bool = False
    asked: list[str] = field(default_factory=list)
    urls: list[str] = field(default_factory=list)

    async def ask(self, question: str, timeout: float) -> FormAnswer:
        self.asked.append(question)
        return self.answer

    async def open_url(self, message: str, url: str, timeout: float) -> bool:
        self.urls.append(url)
        return True


@dataclass
class FakePages:
    """The review page: a URL per plan; `show` says whether a browser opened it."""

    opens: bool = True
    shown: list[str] = field(default_factory=list)

    async def url_for(self, plan_id: str, expires_at: float) -> str:
        return f"http://127.0.0.1:9/review/secret-of-{plan_id}/"

    def show(self, url: str) -> bool:
        self.shown.append(url)
        return self.opens


@dataclass
class FakeQuarantine:
    sent: list[str] = field(default_factory=list)

    async def send(
        self, plan_id: str, paths: Sequence[SeenPath], progress: Any, *, batch: int | None = None
    ) -> dict[str, RemoveItem]:
        self.sent += [s.path for s in paths]
        return {s.path: RemoveItem(path=s.path, status="quarantined") for s in paths}


@dataclass
class World:
    guard: Guard
    store: StateStore
    clock: ManualClock
    sandbox: RunningSandbox
    audit_path: Path

    def removal(self, **options: Any) -> Removal:
        options = {"confirm_timeout": 0.05, "default_mode": "delete", "poll_seconds": 0.01, **options}
        return Removal(self.guard, **options)

    def exists(self, path: str) -> bool:
        return (self.sandbox.root / path.removeprefix(self.sandbox.home + "/")).exists()

    async def approve(self, plan_id: str, channel: Any = "review_page", **extra: Any) -> None:
        await self.store.decide(plan_id, self.clock() + 900, Decision("approved", channel, at=self.clock(), **extra))

    async def decline(self, plan_id: str) -> None:
        await self.store.decide(plan_id, self.clock() + 900, Decision("declined", "review_page", at=self.clock()))


@pytest.fixture
async def world(sandbox: RunningSandbox, tmp_path: Path) -> AsyncIterator[World]:
    clock = ManualClock()
    store = open_store(None, tmp_path / "state", clock=clock)
    transport = EfileTransport(
        sandbox.base_url, StaticToken(sandbox.token), retry=RetryPolicy(attempts=2, budget=2.0), concurrency=4
    )
    guard = Guard(
        transport=transport,
        signer=ConfirmationSigner(secret=b"k" * 32, ttl=900, clock=clock),
        store=store,
        audit=AuditLog(tmp_path / "audit.jsonl"),
        roots=(f"{sandbox.home}/scratch",),
        protected=DEFAULT_PROTECTED,
        max_paths=100,
        read_only=False,
        confirm_mode="auto",
        walk_max_entries=100_000,
        walk_max_seconds=30.0,
        concurrency=4,
        clock=clock,
    )
    try:
        yield World(guard, store, clock, sandbox, tmp_path / "audit.jsonl")
    finally:
        await transport.aclose()
        await store.aclose()


async def plan(removal: Removal, world: World, *names: str, mode: Any = None) -> RemovePathsResult:
    paths = [f"{world.sandbox.home}/scratch/{name}" for name in (names or ("run-001", "tmp.log"))]
    return await removal.preview(paths, None, mode=mode)


async def refused(call: Any) -> GuardRefusal:
    with pytest.raises(GuardRefusal) as caught:
        await call
    return caught.value


def request(preview: RemovePathsResult) -> RemovalRequest:
    return RemovalRequest(token=preview.confirmation_token)


def executions(world: World) -> list[dict[str, Any]]:
    return [line for line in audit_lines(world.audit_path) if line["event"] == "execution"]


# ------------------------------------------------------------------------------------- the policy


async def test_without_a_channel_to_the_person_auto_runs_on_the_token_and_human_refuses(world: World) -> None:
    nobody = FakeClient()
    auto = world.removal(confirm="auto", pages=FakePages(opens=False))
    done = await auto.execute(request(await plan(auto, world)), nobody)
    assert done.summary.removed == 2 and executions(world)[-1]["confirmed_by"] == "token"

    human = world.removal(confirm="human", pages=FakePages(opens=False))
    preview = await plan(human, world, "run-002")
    refusal = await refused(human.execute(request(preview), nobody))
    assert refusal.code == "person_unreachable" and "not spent" in str(refusal)
    assert world.exists(f"{world.sandbox.home}/scratch/run-002")
    # The person can still approve it in a terminal: the same token then runs.
    await world.approve(preview.plan_id or "", "terminal")
    await human.execute(request(preview), nobody)
    assert not world.exists(f"{world.sandbox.home}/scratch/run-002")
    assert executions(world)[-1]["confirmed_by"] == "terminal"


async def test_pending_is_not_spent_and_an_approval_elsewhere_lets_the_next_call_run(world: World) -> None:
    pages = FakePages(opens=True)
    removal = world.removal(confirm="auto", pages=pages)
    preview = await plan(removal, world)
    client = FakeClient()  # no form: the page is opened in the person's browser
    said: list[str | None] = []

    async def progress(done: float, total: float | None, message: str | None) -> None:
        said.append(message)

    waiting = await refused(removal.execute(request(preview), client, progress=progress))
    assert said and all("waiting for the person's decision" in (m or "") for m in said)  # progress while waiting
    assert waiting.code == "awaiting_person"
    assert "the page opened in their browser" in str(waiting) and "not spent" in str(waiting)
    assert "http" not in str(waiting)  # where to decide, never the URL
    assert pages.shown == [f"http://127.0.0.1:9/review/secret-of-{preview.plan_id}/"]
    assert world.exists(f"{world.sandbox.home}/scratch/tmp.log")
    assert (await world.store.plan_state(preview.plan_id or "")).status == "asked"

    await world.approve(preview.plan_id or "", "review_page")
    done = await removal.execute(request(preview), client)
    assert done.summary.removed == 2
    assert executions(world)[-1]["confirmed_by"] == "review_page"


async def test_a_decision_arriving_while_the_call_waits_is_taken_at_once(world: World) -> None:
    removal = world.removal(confirm="human", pages=FakePages(opens=True), confirm_timeout=30.0)
    preview = await plan(removal, world)

    async def person_clicks_approve() -> None:
        while (await world.store.plan_state(preview.plan_id or "")).status != "asked":
            await anyio.sleep(0.01)
        await world.approve(preview.plan_id or "")

    with anyio.fail_after(10):
        async with anyio.create_task_group() as group:
            group.start_soon(person_clicks_approve)
            done = await removal.execute(request(preview), FakeClient())
    assert done.summary.removed == 2


async def test_a_decline_spends_the_token_for_every_later_call(world: World) -> None:
    removal = world.removal(confirm="auto", pages=FakePages())
    preview = await plan(removal, world)
    await world.decline(preview.plan_id or "")
    for _ in range(2):
        refusal = await refused(removal.execute(request(preview), FakeClient()))
        assert refusal.code == "person_declined" and "spent" in str(refusal)
    assert world.exists(f"{world.sandbox.home}/scratch/run-001")


async def test_an_explicit_no_on_the_form_is_a_decline(world: World) -> None:
    removal = world.removal(confirm="auto", pages=FakePages())
    preview = await plan(removal, world)
    client = FakeClient(has_form=True, answer="declined")
    assert (await refused(removal.execute(request(preview), client))).code == "person_declined"
    assert (await world.store.plan_state(preview.plan_id or "")).status == "declined"


async def test_a_form_never_answered_spends_nothing_and_opens_the_page(world: World) -> None:
    """Claude Desktop: the form is declared, never drawn; the timeout is no decision."""
    pages = FakePages(opens=True)
    removal = world.removal(confirm="auto", pages=pages)
    preview = await plan(removal, world)
    silent = FakeClient(has_form=True, answer="no_answer")
    waiting = await refused(removal.execute(request(preview), silent))
    assert waiting.code == "awaiting_person" and len(silent.asked) == 1 and len(pages.shown) == 1
    assert world.exists(f"{world.sandbox.home}/scratch/tmp.log")
    # Called again: the form is not shown again (the page is where the person decides), the token still works.
    again = await refused(removal.execute(request(preview), silent))
    assert again.code == "awaiting_person" and len(silent.asked) == 1
    await world.approve(preview.plan_id or "", "review_page")
    assert (await removal.execute(request(preview), silent)).summary.removed == 2


async def test_a_self_answering_client_in_human_mode_is_recorded_as_a_client_not_a_person(world: World) -> None:
    removal = world.removal(confirm="human", pages=FakePages(opens=False))
    preview = await plan(removal, world)
    done = await removal.execute(request(preview), FakeClient(has_form=True, answer="approved"))
    assert done.summary.removed == 2
    assert executions(world)[-1]["confirmed_by"] == "client_form"


async def test_session_b_cannot_answer_or_execute_a_plan_pending_in_session_a(world: World) -> None:
    pages = FakePages(opens=True)
    removal = world.removal(confirm="auto", pages=pages)
    preview = await plan(removal, world)
    in_a = FakeClient(session="session-a", has_form=True, answer="no_answer")
    assert (await refused(removal.execute(request(preview), in_a))).code == "awaiting_person"
    # B answers its own form with yes, or has no form at all (auto mode): neither runs A's plan.
    for in_b in (FakeClient(session="session-b", has_form=True, answer="approved"), FakeClient(session="session-b")):
        refusal = await refused(removal.execute(request(preview), in_b))
        assert refusal.code == "other_session" and "nothing was deleted" in str(refusal)
        assert in_b.asked == []
    assert world.exists(f"{world.sandbox.home}/scratch/tmp.log") and executions(world) == []
    # A's page may have gone with A's process: B's try opens it again for the person, once.
    assert len(pages.shown) == 2 and pages.shown[0] == pages.shown[1]
    # The person's approval on the page is the plan's: now any session may carry it out.
    await world.approve(preview.plan_id or "")
    assert (await removal.execute(request(preview), FakeClient(session="session-b"))).summary.removed == 2


async def test_a_form_approval_is_bound_to_the_session_that_asked(world: World) -> None:
    removal = world.removal(confirm="human", pages=FakePages(opens=False))
    preview = await plan(removal, world)
    await world.store.mark_asked(preview.plan_id or "", world.clock() + 900, "session-a")
    await world.store.decide(
        preview.plan_id or "", world.clock() + 900, Decision("approved", "client_form", at=world.clock()), "session-a"
    )
    refusal = await refused(removal.execute(request(preview), FakeClient(session="session-b")))
    assert refusal.code == "other_session"


async def test_a_big_plan_links_its_page_in_the_form_and_opens_it(world: World) -> None:
    big = [f"{world.sandbox.home}/scratch/big-run/shard-{i % 3}/out-{i:04d}.dat" for i in range(30)]
    pages = FakePages(opens=True)
    removal = world.removal(confirm="auto", pages=pages)
    preview = await removal.preview(big, None)
    client = FakeClient(has_form=True, answer="approved")
    done = await removal.execute(request(preview), client)
    url = f"http://127.0.0.1:9/review/secret-of-{preview.plan_id}/"
    assert url in client.asked[0] and pages.shown == [url]
    assert url not in done.model_dump_json() and url not in preview.model_dump_json()


async def test_url_mode_opens_the_page_through_the_client_where_no_browser_can(world: World) -> None:
    url_of = "http://127.0.0.1:9/review/secret-of-{}/".format
    with_browser = world.removal(confirm="auto", pages=FakePages(opens=True), confirm_timeout=2.0, poll_seconds=0.5)
    first = await plan(with_browser, world, "run-002")
    client = FakeClient(has_url=True)
    await world.approve(first.plan_id or "", "terminal")  # (decided at once: only the channel matters here)
    await with_browser.execute(request(first), client)
    assert client.urls == []  # the person's own browser first: the address goes to no client

    pages = FakePages(opens=False)  # e.g. a server reached over HTTP, on a machine without a browser
    removal = world.removal(confirm="auto", pages=pages, confirm_timeout=2.0, poll_seconds=0.5)
    preview = await plan(removal, world)

    async def person_decides_on_the_page_the_client_opened() -> None:
        while not client.urls:
            await anyio.sleep(0.01)
        await world.approve(preview.plan_id or "", "review_page")

    async with anyio.create_task_group() as group:
        group.start_soon(person_decides_on_the_page_the_client_opened)
        await removal.execute(request(preview), client)
    assert client.urls == [url_of(preview.plan_id)] and pages.shown == [url_of(preview.plan_id)]
    # Whoever approves that page may be the client itself: the audit says a client, not the person.
    assert executions(world)[-1]["confirmed_by"] == "client_form"


async def test_read_only_refuses_both_steps(world: World) -> None:
    removal = world.removal()
    preview = await plan(removal, world)
    world.guard.read_only = True
    assert (await refused(plan(removal, world))).code == "read_only"
    assert (await refused(removal.execute(request(preview), FakeClient()))).code == "read_only"


async def test_every_refusal_code_has_its_words_here() -> None:
    for code in (
        "read_only",
        "reused",
        "person_declined",
        "already_executed",
        "running",
        "other_session",
        "awaiting_person",
        "person_unreachable",
    ):
        assert "nothing" in REFUSALS[code].lower() or code == "read_only", code


# ------------------------------------------------------------------------------------- executions


async def test_an_executed_plan_says_so_with_its_outcome(world: World) -> None:
    removal = world.removal(confirm="token")
    preview = await plan(removal, world)
    await removal.execute(request(preview), FakeClient())
    refusal = await refused(removal.execute(request(preview), FakeClient()))
    assert refusal.code == "already_executed" and "(2 removed)" in str(refusal)


async def test_an_interrupted_execution_is_resumed_once_its_lease_ran_out(world: World) -> None:
    removal = world.removal(confirm="token", lease_seconds=30.0)
    preview = await plan(removal, world)
    plan_id = preview.plan_id or ""
    # A replica redeemed it, removed tmp.log, and died before recording anything more.
    crashed = await world.store.redeem(plan_id, world.clock() + 900, token_alone=True, lease=30.0)
    assert crashed.won
    (world.sandbox.root / "scratch" / "tmp.log").unlink()
    running = await refused(removal.execute(request(preview), FakeClient()))
    assert running.code == "running"  # its lease still holds: it may be alive
    world.clock.advance(31)

    async def resume() -> RemovePathsResult | GuardRefusal:
        try:
            return await removal.execute(request(preview), FakeClient())
        except GuardRefusal as exc:
            return exc

    outcomes: list[RemovePathsResult | GuardRefusal] = []

    async def collect() -> None:
        outcomes.append(await resume())

    async with anyio.create_task_group() as group:
        group.start_soon(collect)
        group.start_soon(collect)
    done = [o for o in outcomes if isinstance(o, RemovePathsResult)]
    lost = [o for o in outcomes if isinstance(o, GuardRefusal)]
    assert len(done) == 1 and len(lost) == 1 and lost[0].code == "running"  # two resumptions, one winner
    result = done[0]
    assert result.next_step and result.next_step.startswith("Resumed")
    assert result.summary.removed == 1 and result.summary.missing == 1
    assert world.sandbox.sandbox.received_remove_paths == [f"{world.sandbox.home}/scratch/run-001"]
    assert any(line["event"] == "reconciled" for line in audit_lines(world.audit_path))
    after = await refused(removal.execute(request(preview), FakeClient()))
    assert after.code == "already_executed"


# ------------------------------------------------------------------------------------- modes


async def test_the_dry_run_names_its_mode_and_what_it_means_for_the_quota(world: World) -> None:
    quarantine = FakeQuarantine()
    removal = world.removal(confirm="token", default_mode="quarantine", quarantine=quarantine)
    preview = await plan(removal, world)
    assert (
        preview.next_step
        and "Mode quarantine" in preview.next_step
        and "counts against your quota" in preview.next_step
    )
    await removal.execute(request(preview), FakeClient())
    assert sorted(quarantine.sent) == [f"{world.sandbox.home}/scratch/{n}" for n in ("run-001", "tmp.log")]
    assert world.exists(f"{world.sandbox.home}/scratch/tmp.log")  # the fake moved nothing: nothing was deleted
    deleting = await plan(removal, world, "run-002", mode="delete")
    assert deleting.next_step and "Mode delete" in deleting.next_step and "permanent" in deleting.next_step


async def test_a_plan_inside_the_quarantine_is_a_purge(world: World) -> None:
    inside = world.sandbox.root / "scratch" / ".efile-quarantine" / "abc" / "old.log"
    inside.parent.mkdir(parents=True)
    inside.write_text("old\n")
    removal = world.removal(confirm="token", default_mode="quarantine", quarantine=FakeQuarantine())
    preview = await plan(removal, world, ".efile-quarantine/abc")
    assert preview.next_step and "purge" in preview.next_step and "permanent" in preview.next_step
    await removal.execute(request(preview), FakeClient())
    assert not inside.exists()


async def test_a_purge_approved_as_a_quarantine_is_not_carried_out_as_a_deletion(world: World) -> None:
    inside = world.sandbox.root / "scratch" / ".efile-quarantine" / "abc" / "old.log"
    inside.parent.mkdir(parents=True)
    inside.write_text("old\n")
    removal = world.removal(confirm="human", pages=FakePages(), quarantine=FakeQuarantine())
    preview = await plan(removal, world, ".efile-quarantine/abc")
    await world.approve(preview.plan_id or "", mode="quarantine")  # what the person chose cannot happen
    refusal = await refused(removal.execute(request(preview), FakeClient()))
    assert refusal.code == "mode_impossible" and "nothing was deleted" in str(refusal)
    assert inside.exists()
    assert (await refused(removal.execute(request(preview), FakeClient()))).code == "reused"


async def test_the_person_may_choose_the_quarantine_for_a_delete_plan_never_the_reverse(world: World) -> None:
    quarantine = FakeQuarantine()
    removal = world.removal(confirm="human", pages=FakePages(), quarantine=quarantine)
    deleting = await plan(removal, world, "tmp.log", mode="delete")
    await world.approve(deleting.plan_id or "", mode="quarantine")
    await removal.execute(request(deleting), FakeClient())
    assert quarantine.sent == [f"{world.sandbox.home}/scratch/tmp.log"]

    keeping = await plan(removal, world, "run-002", mode="quarantine")
    await world.approve(keeping.plan_id or "", mode="delete")
    await removal.execute(request(keeping), FakeClient())
    assert quarantine.sent[-1] == f"{world.sandbox.home}/scratch/run-002"
    assert world.exists(f"{world.sandbox.home}/scratch/run-002")


@dataclass
class FakeQuota:
    entries: list[QuotaEntry]
    error: str | None = None

    async def read(self) -> FakeQuota:
        return self


async def test_the_plan_keeps_the_dry_runs_totals_and_exceptions_for_the_page(world: World) -> None:
    from efile_mcp.guard.seen import Plan

    home = world.sandbox.home
    world.guard._quota = FakeQuota([QuotaEntry(path=home, threshold=1.0, usage=0.5)])
    removal = world.removal()
    preview = await plan(removal, world, "run-001", "no-such-file", ".ssh")
    data = await world.store.load_plan(preview.plan_id or "")
    assert data is not None
    stored = Plan.from_bytes(data)
    assert stored.summary == preview.summary.model_dump(exclude_none=True)
    assert stored.mode == "delete"
    statuses = {row[0].rsplit("/", 1)[-1]: row[1] for row in stored.exceptions}
    assert statuses == {"no-such-file": "missing", ".ssh": "refused"}
    # The quota before -> after, for the page: a deletion frees what it removes.
    (quota,) = stored.quota
    half = quota_bytes(0.5)
    assert quota == {
        "path": home,
        "limit_bytes": quota_bytes(1.0),
        "used_bytes": half,
        "after_bytes": half - preview.summary.total_size,
    }


async def test_an_execution_stopped_before_sending_gives_the_plan_back(world: World, monkeypatch: Any) -> None:
    from efile_mcp.errors import AuditUnavailable

    removal = world.removal(confirm="token")
    preview = await plan(removal, world)
    write = AuditLog.write

    async def refuse_the_intent(self: AuditLog, event: str, **fields: Any) -> None:
        if event == "intent":
            raise AuditUnavailable("audit", "the audit log's disk is full")
        await write(self, event, **fields)

    monkeypatch.setattr(AuditLog, "write", refuse_the_intent)
    with pytest.raises(AuditUnavailable):
        await removal.execute(request(preview), FakeClient())
    assert world.sandbox.sandbox.received_remove_paths == []  # fails closed: nothing was sent
    assert (await world.store.plan_state(preview.plan_id or "")).status == "open"  # and nothing was spent
    monkeypatch.setattr(AuditLog, "write", write)
    assert (await removal.execute(request(preview), FakeClient())).summary.removed == 2


@pytest.mark.parametrize("sandbox", [{"inline_max_entries": 0, "task_step_delay": 3.0}], indirect=True)
async def test_a_resumed_execution_follows_the_tasks_the_interrupted_one_left_queued(world: World) -> None:
    """The dead replica had sent run-001, whose server task is still emptying it: followed, never sent twice."""
    from efile_mcp.client.remover import RemovalRun
    from efile_mcp.guard.execution import keep_tasks
    from efile_mcp.guard.seen import Plan

    removal = world.removal(confirm="token", lease_seconds=30.0)
    preview = await plan(removal, world)
    plan_id = preview.plan_id or ""
    folder, tmp = (f"{world.sandbox.home}/scratch/{name}" for name in ("run-001", "tmp.log"))
    assert (await world.store.redeem(plan_id, world.clock() + 900, token_alone=True, lease=30.0)).won
    interrupted = RemovalRun(paths=(folder,))
    await world.guard._remover.remove(interrupted)
    task = interrupted.outcomes[folder].task
    assert task is not None and task.status in ("waiting", "processing")
    data = await world.store.load_plan(plan_id)
    assert data is not None
    # its checkpoint of the first batch before it died
    await keep_tasks(world.store, Plan.from_bytes(data), 0, {folder: task.task_id}, [task.task_id])
    world.clock.advance(31)

    result = await removal.execute(request(preview), FakeClient(), detail="full")
    by_path = {item.path: item for item in result.items or []}
    assert by_path[folder].status == "queued" and by_path[folder].task_id == task.task_id
    received = world.sandbox.sandbox.received_remove_paths
    assert received.count(folder) == 1 and received.count(tmp) == 1
    assert task.task_id in (result.task_ids or [])  # get_task follows both runs' tasks
    assert result.next_step and result.next_step.startswith("Resumed")


@dataclass
class FormNeverDrawn(FakeClient):
    """Declares a form and never answers it (the call would wait its whole timeout)."""

    async def ask(self, question: str, timeout: float) -> FormAnswer:
        self.asked.append(question)
        await anyio.sleep_forever()
        raise AssertionError("unreachable")


async def test_an_approval_on_the_page_ends_the_wait_for_an_unanswered_form(world: World) -> None:
    big = [f"{world.sandbox.home}/scratch/big-run/shard-{i % 3}/out-{i:04d}.dat" for i in range(30)]
    pages = FakePages(opens=True)
    removal = world.removal(confirm="human", pages=pages, confirm_timeout=60.0)
    preview = await removal.preview(big, None)
    client = FormNeverDrawn(has_form=True)

    async def person_clicks_approve_on_the_page() -> None:
        while not pages.shown or (await world.store.plan_state(preview.plan_id or "")).status != "asked":
            await anyio.sleep(0.01)
        await world.approve(preview.plan_id or "", "review_page")

    with anyio.fail_after(10):  # far less than the 60 s the form could hold the call
        async with anyio.create_task_group() as group:
            group.start_soon(person_clicks_approve_on_the_page)
            done = await removal.execute(request(preview), client)
    assert done.summary.removed == 30 and len(client.asked) == 1
    # The form's text carried the page's address, so its client held it: the audit cannot say it was the person.
    assert executions(world)[-1]["confirmed_by"] == "client_form"


async def test_a_form_left_unanswered_opens_the_page_beside_it_and_the_page_decides(world: World) -> None:
    """Claude Desktop's chat: the form is never drawn. After the grace the page opens; its Approve ends the call."""
    pages = FakePages(opens=True)
    removal = world.removal(confirm="human", pages=pages, confirm_timeout=60.0, form_grace=0.05)
    preview = await plan(removal, world)  # two paths: the form alone would do, had it been drawn
    client = FormNeverDrawn(has_form=True)

    async def person_approves_on_the_page() -> None:
        while not pages.shown:
            await anyio.sleep(0.01)
        await world.approve(preview.plan_id or "", "review_page")

    with anyio.fail_after(10):
        async with anyio.create_task_group() as group:
            group.start_soon(person_approves_on_the_page)
            done = await removal.execute(request(preview), client)
    assert done.summary.removed == 2 and len(pages.shown) == 1 and len(client.asked) == 1
    assert executions(world)[-1]["confirmed_by"] == "review_page"


@dataclass
class BrokenForm(FakeClient):
    async def ask(self, question: str, timeout: float) -> FormAnswer:
        raise RuntimeError("the client's form blew up")


async def test_a_form_that_fails_is_no_decision_and_no_crash(world: World) -> None:
    removal = world.removal(confirm="auto", pages=FakePages(opens=True))
    preview = await plan(removal, world)
    waiting = await refused(removal.execute(request(preview), BrokenForm(has_form=True)))
    assert waiting.code == "awaiting_person" and world.exists(f"{world.sandbox.home}/scratch/tmp.log")
