"""Red team: plans kept as rows, executed a batch at a time, and file selections planned across calls.

Each test is one attempt to get something deleted that the dry run did not show (or the person did not
confirm), a path sent twice, a path's outcome lost, tampered or mixed rows executed, one call's resume
continuing another's plan, a policy change between resumed calls ignored, or a stop or crash turned into
unchecked sending. Each asserts the safe outcome. A break found is marked
`xfail(strict=True, reason="BREAK: ...")` until it is fixed, so the suite stays green and the break stays
visible.

Built on the Removal over the sandbox (tests/test_removal.py's world); a small walk budget makes a file
selection take several calls, and small batches make a plan span several.
"""

from __future__ import annotations

import contextlib
import itertools
import json
import os
import threading
import time
from pathlib import Path
from typing import Any

import anyio
import pytest

from efile_mcp.errors import AuditUnavailable, EfileMcpError, GuardRefusal
from efile_mcp.guard import execution, selection
from efile_mcp.guard.paths import DEFAULT_PROTECTED, PathPolicy
from efile_mcp.guard.requests import RemovalRequest
from efile_mcp.guard.seen import SeenPath, load_header
from efile_mcp.models.results import RemovePathsResult, Selection

from ..conftest import audit_lines, wait_for_event
from ..test_removal import FakeClient, World, request
from ..test_removal import world as world  # the fixture
from .redteam_helpers import _sent, _stored_paths, _virtual

pytestmark = pytest.mark.anyio


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


class HoldOne:
    """A sandbox fault hook: the first `endpoint` call after `armed` is set waits (on the sandbox's loop) until
    `released`; every other call passes. Lets a test start a call, park it mid-way, and run another meanwhile."""

    def __init__(self, endpoint: str) -> None:
        self.endpoint = endpoint
        self.armed = False
        self.arrived, self.released = threading.Event(), threading.Event()

    async def __call__(self, name: str, request: Any) -> None:
        if name != self.endpoint or not self.armed:
            return None
        self.armed = False
        self.arrived.set()
        while not self.released.is_set():
            await anyio.sleep(0.005)
        return None


def _files(world: World, count: int, folder: str = "batch") -> Path:
    """`count` files f000.out... sized 1, 2, ... bytes (so the plan's order, largest first, is known)."""
    where = world.sandbox.root / "scratch" / folder
    where.mkdir(parents=True)
    for i in range(count):
        (where / f"f{i:03d}.out").write_bytes(b"x" * (i + 1))
    return where


def _select(world: World, folder: str = "batch") -> Selection:
    return Selection(path=f"{world.sandbox.home}/scratch/{folder}", name="*.out", type="file")


async def _read_on(removal: Any, answer: RemovePathsResult) -> RemovePathsResult:
    while answer.resume:
        answer = await removal.preview(None, None, resume=answer.resume)
    return answer


async def _read_on_unless_refused(removal: Any, answer: RemovePathsResult) -> RemovePathsResult | None:
    """Call A of two continuations of one resume: its final answer, or None when the guard refuses to let a second
    call continue a resume another call holds (the safe outcome)."""
    try:
        return await _read_on(removal, answer)
    except GuardRefusal as refused:
        assert refused.code == "resume", refused
        return None


async def _quietly(call: Any) -> None:
    with contextlib.suppress(GuardRefusal):
        await call


# ---------------------------------------------------------------------------- a path twice in a plan
# Broken until the walker resumed a folder read in part after the last name it read, not at the page offset
# (client/walk.py, `Listings._stream`); execution's batch-wise dedup went with it.


@pytest.mark.parametrize("batch_rows", [5_000, 30], ids=["one-batch", "across-batches"])
async def test_a_folder_that_grows_between_resumed_calls_never_puts_a_path_twice_in_the_plan(
    world: World, monkeypatch: pytest.MonkeyPatch, batch_rows: int
) -> None:
    monkeypatch.setattr(execution, "BATCH_ROWS", batch_rows)
    folder = _files(world, 60)
    world.guard.walk_max_entries = 30  # the first call reads f000-f029, the folder's first half
    removal = world.removal(confirm="token")
    first = await removal.preview(None, _select(world))
    assert first.resume and first.summary.would_remove == 30
    (folder / "a000.out").write_bytes(b"new")  # a co-user's new file, sorting before everything read so far
    answer = await _read_on(removal, first)
    planned = await _stored_paths(world, answer.plan_id or "")
    done = await removal.execute(request(answer), FakeClient())
    sent = _sent(world)
    # Each planned path once: the dry run's total is the 60 files', and each is sent once and reported removed.
    assert len(planned) == len(set(planned))
    assert answer.summary.total_size == sum(range(1, 61))
    assert len(sent) == len(set(sent)), [p for p in sent if sent.count(p) > 1]
    assert (done.summary.removed, done.summary.missing) == (60, 0)


async def test_a_folder_written_to_between_rounds_of_one_call_never_puts_a_path_twice_in_the_plan(
    world: World, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(selection, "ROUND_ENTRIES", 30)  # a folder of 60 spans two rounds, as 150,000 would
    folder = _files(world, 60)
    written: list[str] = []

    async def a_job_writes_a_file(name: str, request: Any) -> None:
        if name == "file/list" and int(request.query_params.get("start", "0")) > 0 and not written:
            written.append("a0000.out")
            (folder / "a0000.out").write_bytes(b"new")  # sorts first: every later entry moves one place on

    world.sandbox.sandbox.fault = a_job_writes_a_file
    removal = world.removal(confirm="token")
    answer = await removal.preview(None, _select(world))
    assert written and answer.confirmation_token and answer.resume is None
    planned = await _stored_paths(world, answer.plan_id or "")
    assert len(planned) == len(set(planned)) == answer.summary.would_remove


# ---------------------------------------------------------------------------- one resume continued twice
# Four breaks found here (a second continuation of one resume rewrote an issued plan's rows: a file created after
# the dry run deleted, a rewritten file laundered past the re-check, a second token redeemed under the person's
# approval, the same through two parallel tool calls) were fixed in 95b1b21 (a file selection's resume is taken
# by one call at a time); the tests stay, each accepting the refusal of the second call as the safe outcome.


async def test_a_resume_continued_twice_cannot_change_the_rows_an_issued_token_executes(
    world: World, monkeypatch: pytest.MonkeyPatch
) -> None:
    """An agent (or a client retrying a slow call) sends the same resume twice. Call A reads the search to its end
    and gets the token; call B, started from the same state, is still reading. B goes on while A's token
    executes, with the storage as it is then."""
    monkeypatch.setattr(execution, "BATCH_ROWS", 10)
    folder = _files(world, 60)
    world.guard.walk_max_entries = 30
    removal = world.removal(confirm="token")
    first = await removal.preview(None, _select(world))
    hold = HoldOne("file/list")
    world.sandbox.sandbox.fault = hold
    late = folder / "f0295.out"  # sorts between f029.out and f030.out: created after the dry run
    b_answers: list[RemovePathsResult] = []

    async def call_b() -> None:
        with contextlib.suppress(GuardRefusal):
            b_answers.append(await removal.preview(None, None, resume=first.resume))

    async with anyio.create_task_group() as group:
        hold.armed = True
        group.start_soon(call_b)
        await wait_for_event(hold.arrived, "call B's first listing (B has loaded the search's state)")
        answer = await _read_on_unless_refused(removal, first)  # call A
        if answer is None:  # only one call continues a resume at a time
            hold.released.set()
            return
        assert answer.confirmation_token and answer.summary.would_remove == 60
        remover = world.guard._remover
        real_remove = remover.remove
        calls = 0

        async def remove_while_b_reads_on(run: Any) -> None:
            nonlocal calls
            calls += 1
            if calls == 1:  # the first batch is being sent: the co-user writes a file, B reads on
                late.write_bytes(b"written after the dry run")
                hold.released.set()
                with anyio.fail_after(10):
                    while not b_answers:
                        await anyio.sleep(0.01)
            await real_remove(run)

        monkeypatch.setattr(remover, "remove", remove_while_b_reads_on)
        try:
            await removal.execute(request(answer), FakeClient())
        except GuardRefusal:
            pass  # refusing the execution is safe too
        hold.released.set()
    assert _virtual(world, late) not in _sent(world)
    assert late.exists()


async def test_rows_rewritten_with_the_same_paths_cannot_launder_a_file_changed_since_the_dry_run(
    world: World,
) -> None:
    folder = _files(world, 60)
    world.guard.walk_max_entries = 30
    removal = world.removal(confirm="token")
    first = await removal.preview(None, _select(world))
    hold = HoldOne("file/list")
    world.sandbox.sandbox.fault = hold
    rewritten = folder / "f040.out"
    async with anyio.create_task_group() as group:
        hold.armed = True
        group.start_soon(_quietly, removal.preview(None, None, resume=first.resume))  # call B, parked
        await wait_for_event(hold.arrived, "call B's first listing")
        answer = await _read_on_unless_refused(removal, first)  # call A: the plan and its token
        if answer is None:  # only one call continues a resume at a time
            hold.released.set()
            return
        # After the dry run, a job rewrites f040.out: same size, new content, new modification time.
        rewritten.write_bytes(b"y" * 41)
        later = time.time() + 100
        os.utime(rewritten, (later, later))
        hold.released.set()  # B reads on and stores the rows again, as it sees them now
    assert answer is not None
    done = await removal.execute(request(answer), FakeClient())
    # Without call B this is "changed" and not sent (tests/test_execution.py): it must stay so.
    assert rewritten.exists() and _virtual(world, rewritten) not in _sent(world)
    assert done.summary.changed == 1


async def test_an_approval_of_what_one_call_showed_is_not_spent_on_what_another_call_planned(world: World) -> None:
    folder = _files(world, 50)
    world.guard.walk_max_entries = 30
    removal = world.removal(confirm="human", confirm_timeout=0.05)
    first = await removal.preview(None, _select(world))
    hold = HoldOne("file/list")
    world.sandbox.sandbox.fault = hold
    late = folder / "f045b.out"
    b_answers: list[RemovePathsResult] = []

    async def call_b() -> None:
        with contextlib.suppress(GuardRefusal):
            b_answers.append(await removal.preview(None, None, resume=first.resume))

    async with anyio.create_task_group() as group:
        hold.armed = True
        group.start_soon(call_b)
        await wait_for_event(hold.arrived, "call B's first listing")
        answer = await _read_on_unless_refused(removal, first)  # call A: 50 files, shown to the person
        if answer is None:  # only one call continues a resume at a time: nothing was shown to the person twice
            hold.released.set()
            return
        assert answer.plan_id and answer.summary.would_remove == 50
        await world.approve(answer.plan_id, "review_page")  # the person approves the 50 files they saw
        late.write_bytes(b"written after the person's review")
        hold.released.set()
    if not b_answers:
        return  # B was refused: one plan, one set of rows
    assert answer is not None
    (b_answer,) = b_answers
    if b_answer.confirmation_token and b_answer.confirmation_token != answer.confirmation_token:
        try:
            await removal.execute(request(b_answer), FakeClient())
        except GuardRefusal:
            pass
    assert late.exists() and _virtual(world, late) not in _sent(world)
    # One plan id, one set of rows: a second token for the same plan is never minted.
    assert b_answer.plan_id is None or b_answer.confirmation_token in (None, answer.confirmation_token)


# ---------------------------------------------------------------------------- policy changes between calls


def _logs(world: World) -> None:
    top = world.sandbox.root / "scratch" / "logs"
    for j in range(4):
        (top / f"job-{j}").mkdir(parents=True)
        for i in range(20):
            (top / f"job-{j}" / f"o{i:02d}.out").write_bytes(b"x")


def _changed_policy(world: World, change: str) -> PathPolicy:
    home = world.sandbox.home
    if change == "root_removed":
        return PathPolicy([f"{home}/projects"], DEFAULT_PROTECTED)
    return PathPolicy([f"{home}/scratch"], DEFAULT_PROTECTED | {change})


POLICY_CHANGES = ["logs", "job-0", "job-1", "job-2", "job-3", "root_removed"]


@pytest.mark.parametrize("change", POLICY_CHANGES)
async def test_a_policy_change_between_resumed_calls_is_applied_when_the_plan_is_executed(
    world: World, change: str
) -> None:
    """The search began under one policy; the server restarts with a name protected (or the root withdrawn);
    the rows planned before the restart are not sent."""
    _logs(world)
    world.guard.walk_max_entries = 30
    removal = world.removal(confirm="token")
    answer = await removal.preview(None, _select(world, "logs"))
    assert answer.resume and answer.summary.would_remove > 0
    world.guard.policy = _changed_policy(world, change)
    try:
        answer = await _read_on(removal, answer)
    except GuardRefusal:  # the selection (or what it planned) is no longer allowed: refusing it is safe
        pass
    else:
        if answer.confirmation_token:
            await removal.execute(request(answer), FakeClient())
    refused_now = [p for p in _sent(world) if not isinstance(world.guard.policy.check(p), str)]
    assert refused_now == []


# Was a break (planned anyway after a policy change between resumed calls); fixed in 38ad895.
@pytest.mark.parametrize("change", ["logs", "root_removed"])
async def test_a_policy_change_between_resumed_calls_is_not_planned_anyway(world: World, change: str) -> None:
    _logs(world)
    world.guard.walk_max_entries = 30
    removal = world.removal(confirm="token")
    answer = await removal.preview(None, _select(world, "logs"))
    assert answer.resume and answer.summary.would_remove > 0
    world.guard.policy = _changed_policy(world, change)
    try:
        answer = await _read_on(removal, answer)
    except GuardRefusal:
        return  # refusing the selection (its folder is no longer allowed) is safe
    # Every file below logs/ is refused by the policy now: none may be shown as would_remove, none planned.
    assert answer.summary.would_remove == 0 and answer.confirmation_token is None


# ---------------------------------------------------------------------------- tampered, mixed or extra rows


async def _big_plan(world: World, monkeypatch: pytest.MonkeyPatch, count: int = 50) -> tuple[Any, RemovePathsResult]:
    monkeypatch.setattr(execution, "BATCH_ROWS", 10)
    _files(world, count)
    removal = world.removal(confirm="token")
    return removal, await removal.preview(None, _select(world))


async def _put_row(world: World, plan_id: str, index: int, seen: SeenPath) -> None:
    header = await load_header(world.store, plan_id)
    assert header is not None
    await world.store.save_plan_rows(plan_id, index, [json.dumps(seen.to_row()).encode()], header.expires_at)


@pytest.mark.parametrize("index", [0, 25, 49])
async def test_a_row_swapped_in_the_store_stops_the_execution_before_anything_is_sent(
    world: World, monkeypatch: pytest.MonkeyPatch, index: int
) -> None:
    removal, plan = await _big_plan(world, monkeypatch)
    victim = world.sandbox.root / "scratch" / "victim.dat"
    victim.write_bytes(b"precious")
    info = victim.stat()
    seen = SeenPath(_virtual(world, victim), "file", info.st_size, info.st_mtime, info.st_size)
    await _put_row(world, plan.plan_id or "", index, seen)
    with pytest.raises(EfileMcpError):  # refused before anything is sent (GuardRefusal or a stop)
        await removal.execute(request(plan), FakeClient())
    assert _sent(world) == [] and victim.exists()


async def test_rows_of_another_plan_mixed_in_stop_the_execution(world: World, monkeypatch: pytest.MonkeyPatch) -> None:
    removal, plan = await _big_plan(world, monkeypatch)
    other_folder = _files(world, 5, "other")
    other = await removal.preview(None, _select(world, "other"))
    header = await load_header(world.store, plan.plan_id or "")
    assert header is not None
    theirs = await world.store.load_plan_rows(other.plan_id or "", 0, 5)
    await world.store.save_plan_rows(plan.plan_id or "", 45, theirs, header.expires_at)
    with pytest.raises(EfileMcpError):
        await removal.execute(request(plan), FakeClient())
    assert _sent(world) == [] and len(list(other_folder.iterdir())) == 5


async def test_rows_appended_beyond_the_plan_are_never_sent(world: World, monkeypatch: pytest.MonkeyPatch) -> None:
    removal, plan = await _big_plan(world, monkeypatch)
    victim = world.sandbox.root / "scratch" / "victim.dat"
    victim.write_bytes(b"precious")
    info = victim.stat()
    await _put_row(
        world, plan.plan_id or "", 50, SeenPath(_virtual(world, victim), "file", info.st_size, info.st_mtime, 8)
    )
    done = await removal.execute(request(plan), FakeClient())
    assert done.summary.removed == 50 and victim.exists()
    assert _virtual(world, victim) not in _sent(world)


async def test_a_row_lost_from_the_store_gives_the_plan_back_without_sending(
    world: World, monkeypatch: pytest.MonkeyPatch
) -> None:
    removal, plan = await _big_plan(world, monkeypatch)
    header = await load_header(world.store, plan.plan_id or "")
    assert header is not None
    # Rows 0-39 kept, 40-49 gone (a chunk expired, a store flushed part-way).
    kept = await world.store.load_plan_rows(plan.plan_id or "", 0, 40)
    await world.store.save_plan_rows(plan.plan_id or "", 0, kept, header.expires_at)
    with pytest.raises(EfileMcpError):
        await removal.execute(request(plan), FakeClient())
    assert _sent(world) == []


# ---------------------------------------------------------------------------- stops and crashes


async def test_after_a_mid_way_stop_the_same_token_sends_nothing_more(
    world: World, monkeypatch: pytest.MonkeyPatch
) -> None:
    removal, plan = await _big_plan(world, monkeypatch)
    audit = world.guard.audit
    real_write = audit.write
    intents = 0

    async def second_intent_fails(event: str, **fields: Any) -> None:
        nonlocal intents
        if event == "intent":
            intents += 1
            if intents == 2:
                raise AuditUnavailable("the audit disk is full")
        await real_write(event, **fields)

    monkeypatch.setattr(audit, "write", second_intent_fails)
    done = await removal.execute(request(plan), FakeClient())
    assert (done.summary.removed, done.summary.failed) == (10, 40)
    monkeypatch.setattr(audit, "write", real_write)  # the disk is back
    with pytest.raises(GuardRefusal) as refused:
        await removal.execute(request(plan), FakeClient())
    assert refused.value.code == "already_executed"
    sent = _sent(world)
    assert len(sent) == 10 == len(set(sent))
    # Every sent path has its intent before it and an execution record after it.
    lines = audit_lines(world.audit_path)
    intended = {p for line in lines if line["event"] == "intent" for p in line["paths"]}
    recorded = {i["path"] for line in lines if line["event"] == "execution" for i in line["items"]}
    assert set(sent) <= intended and set(sent) <= recorded


async def test_a_crashed_execution_resumed_after_its_rows_were_tampered_sends_nothing(
    world: World, monkeypatch: pytest.MonkeyPatch
) -> None:
    removal, plan = await _big_plan(world, monkeypatch)
    # A process redeemed the plan and died (its lease is over) before sending anything.
    dead = await world.store.redeem(plan.plan_id or "", world.clock() + 900, token_alone=True, lease=0.0)
    assert dead.won
    victim = world.sandbox.root / "scratch" / "victim.dat"
    victim.write_bytes(b"precious")
    info = victim.stat()
    await _put_row(
        world, plan.plan_id or "", 30, SeenPath(_virtual(world, victim), "file", info.st_size, info.st_mtime, 8)
    )
    world.clock.advance(1)
    with pytest.raises(EfileMcpError):
        await removal.execute(request(plan), FakeClient())
    assert _sent(world) == [] and victim.exists()


# ---------------------------------------------------------------------------- resume values of other walks


async def test_a_find_cursor_or_a_usage_resume_is_not_a_dry_run_resume(world: World) -> None:
    _files(world, 60)
    world.guard.walk_max_entries = 30
    found = await world.guard.find(_select(world), limit=5, cursor=None)
    usage = await world.guard.usage(f"{world.sandbox.home}/scratch/batch", top=3, max_entries=30)
    removal = world.removal(confirm="token")
    for other in (found.next_cursor, usage.resume):
        assert other
        with pytest.raises(GuardRefusal) as refused:
            await removal.preview(None, None, resume=other)
        assert refused.value.code == "resume"
    assert _sent(world) == []


# ---------------------------------------------------------------------------- outcomes of an interrupted batch


@pytest.mark.parametrize(
    "mode",
    [
        "delete",
        "quarantine",  # was a break (no execution record for a cancelled quarantine batch); fixed in 38ad895
    ],
)
async def test_a_batch_interrupted_while_it_is_sent_still_has_an_execution_record(world: World, mode: str) -> None:
    """The client hangs up while a batch is out: what was intended must not be left without an outcome in the
    audit log (its paths may have been moved or deleted by the server meanwhile)."""
    _files(world, 20)
    removal = world.removal(confirm="token", quarantine=world.guard.quarantine)
    plan = await removal.preview(None, _select(world), mode=mode)  # type: ignore[arg-type]
    hold = HoldOne("move" if mode == "quarantine" else "async-remove")
    world.sandbox.sandbox.fault = hold
    async with anyio.create_task_group() as group:
        hold.armed = True
        group.start_soon(lambda: removal.execute(request(plan), FakeClient()))
        await wait_for_event(hold.arrived, "the batch's request on the wire")
        group.cancel_scope.cancel()  # the client hung up
    hold.released.set()
    lines = audit_lines(world.audit_path)
    intended = {p for line in lines if line["event"] == "intent" for p in line["paths"]}
    recorded = {i["path"] for line in lines if line["event"] == "execution" for i in line["items"]}
    assert len(intended) == 20 and intended <= recorded


# ---------------------------------------------------------------------------- what is kept between calls


# Was a break (the Tally kept one entry per parent folder); fixed in 38ad895. It then took 30 s a call: a walk whose
# budget was held by requests in flight started folders that were granted nothing, put back and started again, a
# busy loop starving the answers it waited for until the deadline (fixed in the walker's loop, client/walk.py).
async def test_what_a_file_selection_keeps_between_calls_does_not_grow_with_its_folders(world: World) -> None:
    """900 one-file folders (30 x 30, so the walk's own frontier stays small), read 200 entries a call."""
    top = world.sandbox.root / "scratch" / "tree"
    for a in range(30):
        for b in range(30):
            leaf = top / f"a{a:02d}" / f"b{b:02d}"
            leaf.mkdir(parents=True)
            (leaf / "x.out").write_bytes(b"x")
    world.guard.walk_max_entries = 200
    removal = world.removal(confirm="token")
    answer = await removal.preview(None, _select(world, "tree"))
    kept: list[int] = []
    while answer.resume:
        blob = await world.store.load_walk(answer.resume)
        assert blob is not None
        kept.append(len(blob))
        answer = await removal.preview(None, None, resume=answer.resume)
    assert answer.summary.would_remove == 900 and len(kept) >= 5
    # The answer shows 8 parents whatever the count: what is kept for it must not grow call after call.
    assert max(kept) < 2 * kept[1], kept


# ---------------------------------------------------------------------------- a later batch, swapped meanwhile


@pytest.mark.parametrize("into", ["folder", "link"])
async def test_a_file_of_a_later_batch_swapped_for_a_folder_or_a_link_is_not_sent(
    world: World, monkeypatch: pytest.MonkeyPatch, into: str
) -> None:
    """While the first batch is out, a co-user puts a folder of data (or a link to one) where a planned file of
    the last batch was: the batch's own check sees it, and it is not sent."""
    removal, plan = await _big_plan(world, monkeypatch)
    folder = world.sandbox.root / "scratch" / "batch"
    precious = world.sandbox.root / "scratch" / "precious"
    precious.mkdir()
    (precious / "data.bin").write_bytes(b"precious" * 100)
    swapped = folder / "f000.out"  # the smallest: planned last, in the fifth batch
    remover = world.guard._remover
    real_remove = remover.remove
    calls = 0

    async def remove_and_swap(run: Any) -> None:
        nonlocal calls
        calls += 1
        await real_remove(run)
        if calls == 1:
            swapped.unlink()
            if into == "folder":
                swapped.mkdir()
                (swapped / "data.bin").write_bytes(b"precious")
            else:
                swapped.symlink_to(precious)

    monkeypatch.setattr(remover, "remove", remove_and_swap)
    done = await removal.execute(request(plan), FakeClient())
    assert _virtual(world, swapped) not in _sent(world)
    assert (done.summary.removed, done.summary.changed) == (49, 1)
    assert (precious / "data.bin").exists() and (swapped.is_symlink() or (swapped / "data.bin").exists())


# ---------------------------------------------------------------------------- the person chooses quarantine


async def test_a_comma_path_planned_for_deletion_and_approved_as_quarantine_never_reaches_a_move(
    world: World,
) -> None:
    """Deletion allows a comma in a path; a move carries its sources comma-separated. The person picks the
    restorable way on the page for a delete plan: `a,f001.out` must never be moved as `a` and `f001.out`."""
    folder = _files(world, 3)
    (folder / "a,f001.out").write_bytes(b"comma")
    (folder / "a").write_bytes(b"not planned: only its name begins the comma path")
    removal = world.removal(confirm="human", quarantine=world.guard.quarantine)
    plan = await removal.preview(None, _select(world), mode="delete")
    assert plan.plan_id and plan.summary.would_remove == 4
    await world.approve(plan.plan_id, "review_page", mode="quarantine")
    done = await removal.execute(request(plan), FakeClient())
    moved = [record.source for record in world.sandbox.sandbox.moves]
    assert all("," not in source for source in moved)
    assert (folder / "a").exists() and (folder / "a,f001.out").exists()
    assert done.summary.quarantined == 3


# ---------------------------------------------------------------------------- typed paths against streamed rows


@pytest.mark.parametrize("change", ["one_left_out", "one_added", "one_swapped", "one_twice_as_folder"])
async def test_paths_given_with_the_token_must_be_exactly_the_rows(
    world: World, monkeypatch: pytest.MonkeyPatch, change: str
) -> None:
    removal, plan = await _big_plan(world, monkeypatch, count=40)
    rows = await _stored_paths(world, plan.plan_id or "")
    outsider = world.sandbox.root / "scratch" / "outsider.out"
    outsider.write_bytes(b"x")
    given = {
        "one_left_out": rows[:-1],
        "one_added": [*rows, _virtual(world, outsider)],
        "one_swapped": [*rows[:-1], _virtual(world, outsider)],
        "one_twice_as_folder": [f"{world.sandbox.home}/scratch/batch"],
    }[change]
    with pytest.raises(GuardRefusal) as refused:
        await removal.execute(RemovalRequest(token=plan.confirmation_token, paths=given), FakeClient())
    assert refused.value.code == "path_set_mismatch"
    assert _sent(world) == [] and outsider.exists()


# ---------------------------------------------------------------------------- rows lost while the plan runs


# Was a break (paths not reached counted nowhere, 'Done'); fixed in 38ad895.
async def test_rows_lost_while_the_plan_runs_are_accounted_for_as_not_sent(
    world: World, monkeypatch: pytest.MonkeyPatch
) -> None:
    removal, plan = await _big_plan(world, monkeypatch)  # 50 rows, batches of 10
    header = await load_header(world.store, plan.plan_id or "")
    assert header is not None
    remover = world.guard._remover
    real_remove = remover.remove
    calls = 0

    async def remove_then_lose_rows(run: Any) -> None:
        nonlocal calls
        calls += 1
        await real_remove(run)
        if calls == 1:  # the store keeps rows 0-29 only (evicted, flushed part-way)
            kept = await world.store.load_plan_rows(plan.plan_id or "", 0, 30)
            await world.store.save_plan_rows(plan.plan_id or "", 0, kept, header.expires_at)

    monkeypatch.setattr(remover, "remove", remove_then_lose_rows)
    planned = await _stored_paths(world, plan.plan_id or "")  # read before anything runs: all 50
    done = await removal.execute(request(plan), FakeClient())
    sent = _sent(world)
    assert set(sent) <= set(planned) and len(sent) == len(set(sent))  # only confirmed rows, each once
    summary = done.summary
    assert summary.removed + summary.failed == 50, summary  # every planned path accounted for
    if summary.failed:
        assert "Done" not in done.next_step
    state = await world.store.plan_state(plan.plan_id or "")
    assert state.status == "done" and sum((state.outcome or {}).values()) == 50


# ---------------------------------------------------------------------------- a plan quarantined in batches


async def test_a_plan_quarantined_in_batches_is_restored_whole(world: World, monkeypatch: pytest.MonkeyPatch) -> None:
    """Each batch rewrites the plan's quarantine record and manifest: none may drop what an earlier batch moved."""
    monkeypatch.setattr(execution, "BATCH_ROWS", 10)
    folder = _files(world, 35)
    before = {p.name: p.read_bytes() for p in folder.iterdir()}
    removal = world.removal(confirm="token", quarantine=world.guard.quarantine)
    plan = await removal.preview(None, _select(world), mode="quarantine")
    done = await removal.execute(request(plan), FakeClient())
    assert done.summary.quarantined == 35 and not any(folder.iterdir())
    restored = await world.guard.quarantine.restore(plan.plan_id or "")
    assert restored.summary.restored == 35
    assert {p.name: p.read_bytes() for p in folder.iterdir()} == before


# ---------------------------------------------------------------------------- a folder still being emptied


@pytest.mark.parametrize("sandbox", [{"inline_max_entries": 0, "task_step_delay": 0.002}], indirect=True)
async def test_a_batch_checked_while_the_server_still_empties_its_folder_reports_no_present_file_absent(
    world: World,
) -> None:
    """The server removes the first batch's 5,000 files in the background while the second batch is checked:
    the folder's pages shift under that listing. No file that is still there may be reported already absent
    (and left unsent)."""
    folder = world.sandbox.root / "scratch" / "batch"
    folder.mkdir()
    for i in range(6_000):  # two pages of a listing
        (folder / f"f{i:05d}.out").write_bytes(b"x")
    removal = world.removal(confirm="token")
    plan = await removal.preview(None, _select(world))
    assert plan.summary.would_remove == 6_000
    done = await removal.execute(request(plan), FakeClient())
    sent = _sent(world)
    assert done.summary.missing == 0, done.exceptions
    assert len(sent) == 6_000 == len(set(sent))


@pytest.mark.parametrize("sandbox", [{"inline_max_entries": 0, "task_step_delay": 0.002}], indirect=True)
async def test_a_folder_whose_count_holds_while_its_pages_shift_reports_no_present_file_absent(
    world: World,
) -> None:
    folder = world.sandbox.root / "scratch" / "batch"
    folder.mkdir()
    for i in range(6_000):
        (folder / f"f{i:05d}.out").write_bytes(b"x")
    removal = world.removal(confirm="token")
    plan = await removal.preview(None, _select(world))
    added = itertools.count()

    def co_user_writes_one(task: Any) -> None:  # one new file per entry the server deletes: the count holds
        (folder / f"zz{next(added):05d}.tmp").write_bytes(b"co-user")

    world.sandbox.sandbox.worker_step_hook = co_user_writes_one
    done = await removal.execute(request(plan), FakeClient())
    said_absent = [e.path for e in done.exceptions or () if e.status == "missing"]
    still_there = [p for p in said_absent if (world.sandbox.root / p.removeprefix(world.sandbox.home + "/")).exists()]
    assert still_there == [] and done.summary.missing == 0
    assert len(_sent(world)) == 6_000


async def test_a_planned_folder_swapped_for_a_link_to_a_same_looking_copy_between_batches_loses_nothing(
    world: World, monkeypatch: pytest.MonkeyPatch
) -> None:
    """After the first batch is out, a co-user moves the plan's folder away and puts a link to a copy in its
    place (same names, sizes and times): the later batches' paths now lead through the link."""
    removal, plan = await _big_plan(world, monkeypatch)
    scratch = world.sandbox.root / "scratch"
    precious = scratch / "precious"
    precious.mkdir()
    for original in (scratch / "batch").iterdir():
        copy = precious / original.name
        copy.write_bytes(original.read_bytes())
        info = original.stat()
        os.utime(copy, (info.st_atime, info.st_mtime))
    remover = world.guard._remover
    real_remove = remover.remove
    calls = 0

    async def remove_then_swap(run: Any) -> None:
        nonlocal calls
        calls += 1
        await real_remove(run)
        if calls == 1:
            (scratch / "batch").rename(scratch / "batch-moved")
            (scratch / "batch").symlink_to(precious)

    monkeypatch.setattr(remover, "remove", remove_then_swap)
    await removal.execute(request(plan), FakeClient())
    assert len(list(precious.iterdir())) == 50
    assert len(_sent(world)) == 10


# ---------------------------------------------------------------------------- a search read on for hours


# Was a break (a bare LookupError at the end); fixed in 38ad895.
async def test_a_selection_read_on_past_its_rows_life_is_refused_with_a_reason(world: World) -> None:
    _files(world, 100)
    world.guard.walk_max_entries = 10
    removal = world.removal(confirm="token")
    answer = await removal.preview(None, _select(world))
    with pytest.raises(GuardRefusal) as refused:
        while answer.resume:
            world.clock.advance(50 * 60)  # each call within the hour a resume is kept, for eight hours in all
            answer = await removal.preview(None, None, resume=answer.resume)
    assert refused.value.code in ("resume", "unknown_plan")
    assert _sent(world) == []


# ---------------------------------------------------------------------------- the same, through the tools


async def test_two_parallel_tool_calls_with_one_resume_cannot_launder_a_change(
    make_settings: Any, sandbox: Any
) -> None:
    from mcp import Client

    from efile_mcp.server import build_server

    from ..conftest import call_ok

    folder = sandbox.root / "scratch" / "batch"
    folder.mkdir()
    for i in range(200):
        (folder / f"f{i:03d}.out").write_bytes(b"x" * (i + 1))
    select = {"path": f"{sandbox.home}/scratch/batch", "name": "*.out", "type": "file"}
    hold = HoldOne("file/list")
    rewritten = folder / "f150.out"
    async with Client(build_server(make_settings(confirm="token", walk_max_entries=100))) as client:
        first = await call_ok(client, "remove_paths", {"select": select})
        assert first.get("resume")
        sandbox.sandbox.fault = hold
        async with anyio.create_task_group() as group:
            hold.armed = True
            group.start_soon(lambda: client.call_tool("remove_paths", {"resume": first["resume"]}))  # the retry
            await wait_for_event(hold.arrived, "the second call's first listing")
            answer = first
            while answer.get("resume"):
                result = await client.call_tool("remove_paths", {"resume": answer["resume"]})
                if result.is_error:  # only one call continues a resume at a time: the safe outcome
                    assert "continued by another call" in " ".join(getattr(b, "text", "") for b in result.content)
                    hold.released.set()
                    return
                answer = result.structured_content or {}
            rewritten.write_bytes(b"y" * 151)  # same size, new content and time, after the dry run
            later = time.time() + 100
            os.utime(rewritten, (later, later))
            hold.released.set()
        await client.call_tool("remove_paths", {"dry_run": False, "confirmation_token": answer["confirmation_token"]})
    assert rewritten.exists()
    assert f"{sandbox.home}/scratch/batch/f150.out" not in sandbox.sandbox.received_remove_paths


# ---------------------------------------------------------------------------- a continuation interrupted


async def test_a_continuation_interrupted_mid_way_can_be_resumed(world: World) -> None:
    """The client times out a slow continuation (it is cancelled), or the server restarts under it: the next call
    with the same resume reads on from the last state saved, as a restart could before."""
    _files(world, 90)
    world.guard.walk_max_entries = 30
    removal = world.removal(confirm="token")
    first = await removal.preview(None, _select(world))
    assert first.resume
    hold = HoldOne("file/list")
    world.sandbox.sandbox.fault = hold
    async with anyio.create_task_group() as group:
        hold.armed = True
        group.start_soon(_quietly, removal.preview(None, None, resume=first.resume))
        await wait_for_event(hold.arrived, "the continuation's first listing")
        group.cancel_scope.cancel()  # the client gave up on it
    hold.released.set()
    answer = await _read_on(removal, first)
    assert answer.confirmation_token and answer.summary.would_remove == 90
    assert len(await _stored_paths(world, answer.plan_id or "")) == 90


# ---------------------------------------------------------------------------- another mode on resume


async def test_a_search_begun_as_a_quarantine_is_never_planned_as_a_permanent_delete_on_resume(world: World) -> None:
    _files(world, 60)
    world.guard.walk_max_entries = 30
    restorable = world.removal(confirm="token", default_mode="quarantine", quarantine=world.guard.quarantine)
    first = await restorable.preview(None, _select(world))
    assert first.resume
    # The next call lands on a server configured to delete by default (restarted, or another replica).
    permanent = world.removal(confirm="token", default_mode="delete", quarantine=world.guard.quarantine)
    try:
        answer = await _read_on(permanent, first)
    except GuardRefusal:
        return  # refusing to change the mode mid-way is safe
    assert answer.next_step.startswith("Mode quarantine"), answer.next_step[:80]
    done = await permanent.execute(request(answer), FakeClient())
    assert done.summary.quarantined == 60 and done.summary.removed == 0


# ---------------------------------------------------------------------------- units of rows (d0ecdc8)


async def _unit_plan(world: World, monkeypatch: pytest.MonkeyPatch) -> tuple[Any, RemovePathsResult, Path]:
    """90 files planned over three calls of 30 entries: rows stored in several units."""
    monkeypatch.setattr(execution, "BATCH_ROWS", 10)
    folder = _files(world, 90)
    world.guard.walk_max_entries = 30
    removal = world.removal(confirm="token")
    answer = await _read_on(removal, await removal.preview(None, _select(world)))
    header = await load_header(world.store, answer.plan_id or "")
    assert header is not None and len(header.units) >= 3
    return removal, answer, folder


async def test_a_row_rewritten_in_a_later_unit_after_the_first_went_out_is_never_sent(
    world: World, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A file of the last unit is rewritten after the dry run (same size, new time), and its row in the store is
    rewritten to match (what a laundering writer would do) once the first batch is out."""
    removal, plan, _ = await _unit_plan(world, monkeypatch)
    rows = await _stored_paths(world, plan.plan_id or "")
    target = rows[-1]
    real = world.sandbox.root / target.removeprefix(world.sandbox.home + "/")
    index = len(rows) - 1
    remover = world.guard._remover
    real_remove = remover.remove
    calls = 0

    async def remove_then_launder(run: Any) -> None:
        nonlocal calls
        calls += 1
        await real_remove(run)
        if calls == 1:
            size = real.stat().st_size
            real.write_bytes(b"z" * size)
            later = time.time() + 100
            os.utime(real, (later, later))
            await _put_row(world, plan.plan_id or "", index, SeenPath(target, "file", size, later, size))

    monkeypatch.setattr(remover, "remove", remove_then_launder)
    try:
        done = await removal.execute(request(plan), FakeClient())
    except EfileMcpError:
        done = None
    assert real.exists() and target not in _sent(world)
    if done is not None:
        assert done.summary.removed < 90 and done.summary.removed + done.summary.failed == 90
    with contextlib.suppress(EfileMcpError):  # the same token again: it never sends the laundered row
        await removal.execute(request(plan), FakeClient())
    assert real.exists() and target not in _sent(world)


# ---------------------------------------------------------------------------- a folder read part-way, swapped


async def test_a_folder_read_part_way_and_swapped_for_a_link_between_calls_plans_nothing_through_the_link(
    world: World,
) -> None:
    """The first call reads half of jobs/batch/; before the next call a co-user moves it away and puts a link to a
    folder outside the selection (same names) in its place: the search reads on at its offset, through the link."""
    folder = _files(world, 60, "jobs/batch")
    scratch = world.sandbox.root / "scratch"
    precious = scratch / "keep"  # inside the root, outside the selection
    precious.mkdir()
    for original in folder.iterdir():
        (precious / original.name).write_bytes(original.read_bytes())
    world.guard.walk_max_entries = 30
    removal = world.removal(confirm="token")
    first = await removal.preview(None, _select(world, "jobs"))
    assert first.resume
    folder.rename(scratch / "jobs" / "batch-moved")
    folder.symlink_to(precious)
    try:
        answer: RemovePathsResult | None = await _read_on(removal, first)
    except GuardRefusal:
        answer = None
    if answer is not None and answer.confirmation_token:
        planned = await _stored_paths(world, answer.plan_id or "")
        assert not [p for p in planned if "/jobs/batch/" in p and int(p[-7:-4]) >= 30], "planned through the link"
        with contextlib.suppress(EfileMcpError):
            await removal.execute(request(answer), FakeClient())
    assert len(list(precious.iterdir())) == 60
