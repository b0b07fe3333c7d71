"""Execution a batch of plan rows at a time (guard/execution.py): a plan bigger than a batch is re-checked,
written down, sent and given its outcome batch by batch, never held whole.

Built on the Removal over the sandbox (tests/test_removal.py's world), with the batch made small so that a
few hundred files span several batches.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import pytest

from efile_mcp.errors import AuditUnavailable
from efile_mcp.guard import execution, seen
from efile_mcp.guard.removal import Removal
from efile_mcp.models.results import Selection

from .conftest import audit_lines
from .test_removal import FakeClient, FakeQuarantine, World, request
from .test_removal import world as world  # the fixture

pytestmark = pytest.mark.anyio

BATCH = 100


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture(autouse=True)
def small_batches(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(execution, "BATCH_ROWS", BATCH)


@pytest.fixture
async def files(world: World) -> AsyncIterator[list[str]]:
    folder = world.sandbox.root / "scratch" / "batch"
    folder.mkdir()
    for i in range(250):
        (folder / f"f{i:03d}.out").write_bytes(b"x" * (i + 1))
    yield [f"{world.sandbox.home}/scratch/batch/f{i:03d}.out" for i in range(250)]


def _select(world: World) -> Selection:
    return Selection(path=f"{world.sandbox.home}/scratch/batch", name="*.out", type="file")


def _events(world: World, event: str) -> list[dict[str, Any]]:
    return [line for line in audit_lines(world.audit_path) if line["event"] == event]


async def test_a_plan_bigger_than_a_batch_is_sent_batch_by_batch_each_written_down_first(
    world: World, files: list[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    removal = world.removal(confirm="token")
    preview = await removal.preview(None, _select(world))
    assert preview.summary.would_remove == 250
    # Execution never loads the plan whole: its rows are read a batch at a time.
    monkeypatch.setattr(seen, "load_plan", None)
    done = await removal.execute(request(preview), FakeClient())
    assert done.summary.removed == 250 and done.items is None  # a summary, whatever the count
    intents, outcomes = _events(world, "intent"), _events(world, "execution")
    assert [(r["batch"], r["batches"]) for r in intents] == [(1, 3), (2, 3), (3, 3)]
    assert [len(r["paths"]) for r in intents] == [100, 100, 50]
    assert [len(r["items"]) for r in outcomes] == [100, 100, 50]
    assert "summary" not in outcomes[0] and outcomes[-1]["summary"]["removed"] == 250
    sent = world.sandbox.sandbox.received_remove_paths
    assert sorted(sent) == sorted(files) and len(sent) == len(set(sent))


async def test_each_batch_is_checked_again_just_before_it_is_sent(
    world: World, files: list[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """A file of the last batch that changes while the first batch is being sent is set aside, not sent."""
    removal = world.removal(confirm="token")
    preview = await removal.preview(None, _select(world))
    remover = world.guard._remover
    real_remove = remover.remove
    grown = world.sandbox.root / "scratch" / "batch" / "f005.out"  # the smallest: planned last

    async def remove_and_touch(run: Any) -> None:
        await real_remove(run)
        grown.write_bytes(b"y" * 5000)  # after the first batch went out, before the third is checked

    monkeypatch.setattr(remover, "remove", remove_and_touch)
    done = await removal.execute(request(preview), FakeClient())
    assert (done.summary.removed, done.summary.changed) == (249, 1)
    assert grown.exists() and f"{world.sandbox.home}/scratch/batch/f005.out" not in (
        world.sandbox.sandbox.received_remove_paths
    )


async def test_a_failure_before_a_later_batch_stops_there_and_says_what_was_not_sent(
    world: World, files: list[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    removal = world.removal(confirm="token")
    preview = await removal.preview(None, _select(world))
    audit = world.guard.audit
    real_write = audit.write
    intents = 0

    async def failing_second_intent(event: str, **fields: Any) -> None:
        nonlocal intents
        if event == "intent":
            intents += 1
            if intents == 2:
                raise AuditUnavailable("the audit disk is full")
        await real_write(event, **fields)

    monkeypatch.setattr(audit, "write", failing_second_intent)
    done = await removal.execute(request(preview), FakeClient())
    # The first batch went out (written down first); nothing after the failure was sent.
    assert (done.summary.removed, done.summary.failed) == (100, 150)
    assert sorted(world.sandbox.sandbox.received_remove_paths) == sorted(files[150:])  # the largest come first
    assert "stopped after 1 of 3 batches" in done.next_step and "new dry run" in done.next_step
    assert done.exceptions is not None and {e.error_code for e in done.exceptions} == {"not_sent"}
    # The plan is done: the same token does not send the rest behind the person's back.
    state = await world.store.plan_state(preview.plan_id or "")
    assert state.status == "done" and (state.outcome or {})["failed"] == 150


async def test_a_failure_before_anything_was_sent_gives_the_plan_back(
    world: World, files: list[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    removal = world.removal(confirm="token")
    preview = await removal.preview(None, _select(world))
    audit = world.guard.audit
    real_write = audit.write

    async def no_intent(event: str, **fields: Any) -> None:
        if event == "intent":
            raise AuditUnavailable("the audit disk is full")
        await real_write(event, **fields)

    monkeypatch.setattr(audit, "write", no_intent)
    with pytest.raises(AuditUnavailable):
        await removal.execute(request(preview), FakeClient())
    assert not world.sandbox.sandbox.received_remove_paths
    monkeypatch.setattr(audit, "write", real_write)
    again = await removal.execute(request(preview), FakeClient())  # the same token, once the disk is back
    assert again.summary.removed == 250


async def test_a_selection_with_no_match_left_counts_what_appeared_since_the_dry_run(
    world: World, files: list[str]
) -> None:
    removal: Removal = world.removal(confirm="token")
    preview = await removal.preview(None, _select(world))
    (world.sandbox.root / "scratch" / "batch" / "late.out").write_bytes(b"new")
    done = await removal.execute(request(preview), FakeClient())
    assert done.summary.removed == 250 and done.not_previewed == 1
    assert (world.sandbox.root / "scratch" / "batch" / "late.out").exists()


async def test_a_quarantine_bigger_than_a_batch_is_moved_batch_by_batch(world: World, files: list[str]) -> None:
    fake = FakeQuarantine()
    removal = world.removal(confirm="token", quarantine=fake)
    preview = await removal.preview(None, _select(world), mode="quarantine")
    done = await removal.execute(request(preview), FakeClient())
    assert done.summary.quarantined == 250 and sorted(fake.sent) == sorted(files)
    assert [len(r["paths"]) for r in _events(world, "intent")] == [100, 100, 50]


async def test_a_folder_read_in_several_calls_is_read_whole_again_by_the_execution(world: World) -> None:
    """The re-check has a time budget of its own: a folder whose dry run took several calls' budgets is not
    'changed' for want of time (helper-14's finding: nothing was sent)."""
    top = world.sandbox.root / "scratch" / "bulk"
    for d in range(20):
        (top / f"d{d:02d}").mkdir(parents=True)
        for i in range(50):
            (top / f"d{d:02d}" / f"f{i:02d}").write_bytes(b"x")
    removal = world.removal(confirm="token")
    world.guard.walk_max_seconds = 0.02  # a call reads a few listings at most
    preview = await removal.preview([f"{world.sandbox.home}/scratch/bulk"], None)
    calls = 1
    while preview.resume is not None:
        preview = await removal.preview(None, None, resume=preview.resume)
        calls += 1
    assert calls > 1 and preview.summary.file_count == 1_000
    done = await removal.execute(request(preview), FakeClient())
    assert done.summary.removed + done.summary.queued == 1, done  # sent (a big folder's removal may be queued)
    assert world.sandbox.sandbox.received_remove_paths == [f"{world.sandbox.home}/scratch/bulk"]


async def test_a_row_changed_in_the_store_after_the_token_is_never_sent(
    world: World, files: list[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Each unit of stored rows is checked against the digest the token binds just before it is sent: a row of a
    later unit rewritten in the store (another path, or the same path with another size) stops the run there."""
    import json

    from efile_mcp.guard.seen import SeenPath, load_header

    monkeypatch.setattr(seen, "ROWS_PER_CHUNK", BATCH)  # units of 100 rows
    removal = world.removal(confirm="token")
    preview = await removal.preview(None, _select(world))
    header = await load_header(world.store, preview.plan_id or "")
    assert header is not None and [n for n, _ in header.units] == [100, 100, 50]
    outsider = world.sandbox.root / "scratch" / "outsider.dat"
    outsider.write_bytes(b"o")
    row = SeenPath(f"{world.sandbox.home}/scratch/outsider.dat", "file", 1, outsider.stat().st_mtime, 1)
    await world.store.save_plan_rows(header.plan_id, 120, [json.dumps(row.to_row()).encode()], header.expires_at)
    done = await removal.execute(request(preview), FakeClient())
    assert outsider.exists() and row.path not in world.sandbox.sandbox.received_remove_paths
    assert len(world.sandbox.sandbox.received_remove_paths) == 100  # the first unit, checked, went out
    assert done.summary.failed == 150 and "not what the token binds" in done.next_step


async def test_a_big_plans_paths_follow_its_audit_record_a_line_a_unit(
    world: World, files: list[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    from efile_mcp.guard import selection

    monkeypatch.setattr(seen, "ROWS_PER_CHUNK", BATCH)
    monkeypatch.setattr(selection, "ROWS_PER_CHUNK", BATCH)
    removal = world.removal(confirm="token")
    preview = await removal.preview(None, _select(world))
    lines = [line for line in audit_lines(world.audit_path) if line["event"] in ("plan", "plan_paths")]
    assert [line["event"] for line in lines] == ["plan", "plan_paths", "plan_paths", "plan_paths"]
    assert lines[0]["removable_count"] == 250 and lines[0].get("removable") is None
    assert sorted(p for line in lines[1:] for p in line["paths"]) == sorted(files)
    assert {line["plan_id"] for line in lines} == {preview.plan_id}
