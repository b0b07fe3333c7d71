"""One execution of a stored plan, a batch of its rows at a time: listed again, intent, sent, outcome.

A plan holds up to EFILE_MAX_PLAN_PATHS rows, and execution never holds them all. For each batch of
`BATCH_ROWS` rows, in stored order:

    re-check   the policy as it is now, then the same objects listed again (a folder read whole: its
               fingerprint); what changed, vanished or is refused now is set aside, never sent
    intent     the batch's paths written to the audit log (fsynced; it fails closed)
    send       moved into the quarantine, or deleted (100 paths a request, `client/remover.py`)
    outcome    the batch's `execution` record, with every path's state

then the next batch is read. A batch is re-checked just before it is sent, so a long execution never
sends what changed while earlier batches went out. The answer is a `Tally` (report.py): counts, totals,
the exceptions and the largest paths, the same size whatever the number of paths. The server tasks a
batch received are kept per batch in the state store: an execution whose process died is resumed by
the next call with the same token, which follows those tasks instead of sending their paths again.

A failure before a batch's intent stops the execution there: if nothing was sent yet, the plan is as it
was (`_NothingSent`: the caller gives it back); otherwise the rest is reported not sent and the plan is
done (its outcome recorded): a new dry run shows what is left.
"""

from __future__ import annotations

import json
import logging
from collections import Counter
from collections.abc import AsyncIterator, Awaitable, Callable, Coroutine, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, TypeVar

import anyio

from ..client.remover import RemovalRun, RemoveOutcome
from ..client.walk import Listings, WalkLimits
from ..errors import AuditUnavailable, AuthError, EfileMcpError, PlanRowsChanged, StateStoreError
from ..models.results import ITEMS_LISTED_MAX, RemoveItem, RemovePathsResult, Selection
from .audit import AuditLog
from .insight import FindWalk
from .paths import MAX_PATH_BYTES, collapse, display
from .ports import Channel, RemoveMode
from .report import Detail, Tally, item_of
from .requests import TOOL, GuardRefusal, Progress, RemovalRequest, ancestors_in, holds_any
from .seen import ROWS_PER_CHUNK, Plan, SeenPath, plan_rows, verified_units

if TYPE_CHECKING:
    from .removal import Removal
    from .store import StateStore

log = logging.getLogger("efile_mcp.guard")

T = TypeVar("T")

#: The least time an execution's re-check may take to read its planned folders whole (progress is reported).
RECHECK_SECONDS = 900.0
#: Rows re-checked, written down and sent together (several units of stored rows, each checked against the
#: token): the most paths an execution holds at once. Each batch is checked just before it is sent; fewer,
#: larger batches wait fewer checks' round trips, smaller ones leave less time for a change between check and send.
BATCH_ROWS = 4 * ROWS_PER_CHUNK
#: Above this many paths, matches of a selection that appeared since the dry run are not counted afterwards
#: (that would hold the plan's paths as a set).
NOT_PREVIEWED_MAX_ROWS = 200_000
#: Entries listed per round of a search, as a selection's dry run reads them (guard/selection.py).
ROUND_ENTRIES = 100_000
#: While a batch is being sent, what has a server task is written down this often: a replica that dies
#: mid-way leaves it for the one that resumes (queued tasks are followed, not sent again) and for get_task.
CHECKPOINT_SECONDS = 1.0
#: Task ids (by path) of a plan's executions are kept a day after the token expires, for get_task(plan_id).
TASKS_KEPT = 86400.0
#: get_task(plan_id) follows every task of a run up to this many; beyond, the tasks still at work when sent...
TASK_IDS_KEPT_ALL = 10_000
#: ...up to this many (every task id is in the audit log's execution records, a batch a line).
TASK_IDS_KEPT = 100_000
_TASK_IDS_IN_ERRORS = 50
_NO_ITEM = RemoveItem(path="/", status="failed")


class _NothingSent(Exception):
    """Stopped before anything of this execution went out (the storage or the audit failed): the plan is as it was."""

    def __init__(self, error: EfileMcpError) -> None:
        super().__init__(str(error))
        self.error = error


@dataclass
class _Checked:
    items: dict[str, RemoveItem]  # what will not be sent (refused, missing, changed, still queued), by path
    to_send: list[SeenPath]
    listings: Listings


class PlanRun:
    """The execution of one redeemed plan (held under its lease by the caller): `run()` -> the answer."""

    def __init__(
        self,
        removal: Removal,
        plan: Plan,
        request: RemovalRequest,
        *,
        mode: RemoveMode,
        confirmed_by: Channel,
        resumed: bool,
        detail: Detail,
        progress: Progress | None,
    ) -> None:
        self.removal = removal
        self.host = removal.host
        self.plan = plan
        self.request = request
        self.mode = mode
        self.confirmed_by = confirmed_by
        self.resumed = resumed
        self.progress = progress
        self.tally = Tally(detail)
        self.batches = max(1, -(-plan.count // BATCH_ROWS))
        self._number = 0  # the batch being sent
        #: The reader of the batch being checked: each batch lists what it checks afresh (a listing from an earlier
        #: batch could hide what changed while that batch was sent); the last one serves the count afterwards.
        self.listings = self.host._listings()
        # The re-check reads every planned folder whole in this call, however many calls its dry run took: no
        # entry budget (a walk's memory does not grow with its entries) and a time budget of its own, at least
        # RECHECK_SECONDS: the person approved, and a folder a dry run read in several calls (millions of
        # entries) must not come out "changed" for want of time.
        seconds = max(RECHECK_SECONDS, self.host._walk_limits().remaining_seconds())
        self.whole = WalkLimits(1 << 62, anyio.current_time() + seconds)
        #: Server tasks kept for get_task(plan_id), in order: all of them up to TASK_IDS_KEPT_ALL, then those
        #: still at work when sent (what there is to follow), up to TASK_IDS_KEPT; `task_count` counts them all.
        self.task_ids: dict[str, None] = {}
        self.task_count = 0
        self.kinds: Counter[str] = Counter()  # the remover's outcome kinds, for a sign-in failure's account
        self.requests_sent = 0
        self.sent_any = False
        self.afterwards: list[str] = []
        self.auth_error: EfileMcpError | None = None
        self.stopped: str | None = None
        # Paths an execution names inside a folder of the plan: they share its fate and are listed with it.
        self._covered_by: dict[str, list[str]] = {}
        if request.paths is not None:
            for path, outer in collapse(dict.fromkeys(request.paths)).covered.items():
                self._covered_by.setdefault(outer, []).append(path)
        self.covered_listed = 0
        self.later_not_sent = 0  # paths of batches never reached (a stop before them)

    # ------------------------------------------------------------------------------------ the whole run

    async def run(self) -> tuple[RemovePathsResult, dict[str, int]]:
        """The answer (before the caller adds what follows it) and the outcome's counts, for the store."""
        plan = self.plan
        first = 0
        lost: LookupError | None = None
        batches = self._batches().__aiter__()
        while True:
            try:
                read = await anext(batches, None)
            except LookupError as exc:  # rows lost or changed: the batches before went out checked
                lost = exc
                break
            if read is None:
                break
            count, rows = read
            if self.stopped is not None or self.auth_error is not None:
                self._not_sent(rows, self.stopped or f"not sent: {self.auth_error}")
            else:
                # Checked just before it is sent, never beside the batch before: what changes while a batch goes
                # out (a folder swapped for a link to a same-looking copy) is seen by the next batch's check.
                try:
                    checked: _Checked | EfileMcpError = await self._check(self._number, rows)
                except EfileMcpError as exc:
                    checked = exc
                await self._send_batch(self._number, rows, checked)
            self._number += 1
            first += count
            if self.progress is not None and self.batches > 1:
                await self.progress(first, plan.count, f"{first} of {plan.count} path(s) checked and sent")
        if lost is not None:  # rows lost meanwhile (expired, flushed), or not what the token binds
            changed = isinstance(lost, PlanRowsChanged)
            why = (
                "the plan's rows in the state store are not what the token binds"
                if changed
                else "the state store lost the plan's rows meanwhile (expired or flushed)"
            )
            if not self.sent_any:
                raise _NothingSent(EfileMcpError(f"{why}: nothing was sent; run a new dry run.")) from lost
            self.stopped = f"not sent: {why}"
            left = plan.count - first
            self.tally.counts["failed"] += left  # their rows are not read (lost or not trusted): counted, not listed
            self.later_not_sent += left
            self.afterwards.append(f"{left} path(s) were not sent: {why}; run a new dry run to see what is left.")
        summary = self._summary()
        outcome = {status: n for status, n in self.tally.counts.items() if n}
        if self.auth_error is not None:
            raise GuardRefusal("auth", self._auth_stopped(self.auth_error))
        answer = RemovePathsResult(dry_run=False, plan_id=plan.plan_id, summary=summary, next_step="")
        return self.tally.shape(answer), outcome

    async def _batches(self) -> AsyncIterator[tuple[int, list[SeenPath]]]:
        """The plan's rows in batches of BATCH_ROWS (rows read, each unit checked against the token, and a path
        planned twice in a batch kept once)."""
        buffer: list[SeenPath] = []
        async for unit in verified_units(self.host.store, self.plan):
            buffer.extend(unit)
            while len(buffer) >= BATCH_ROWS:
                yield BATCH_ROWS, _first_of_each(buffer[:BATCH_ROWS])
                buffer = buffer[BATCH_ROWS:]
        if buffer:
            yield len(buffer), _first_of_each(buffer)

    def _summary(self) -> Any:
        plan, request = self.plan, self.request
        if request.paths is not None:
            return self.tally.summary(requested=len(request.paths), covered=self.covered_listed)
        return self.tally.summary(requested=plan.count + len(plan.covered), covered=len(plan.covered))

    def _not_sent(self, rows: Sequence[SeenPath], why: str) -> None:
        self.later_not_sent += len(rows)
        for seen in rows:
            self._add(RemoveItem(path=seen.path, status="failed", error_code="not_sent", reason=why), seen)

    def _add(self, item: RemoveItem, seen: SeenPath) -> None:
        self.tally.add(item)
        if item.status in ("removed", "queued", "quarantined"):
            self.tally.count_removed(seen)
        for path in self._covered_by.get(seen.path, ()):
            self.covered_listed += 1
            self.tally.add(
                item.model_copy(
                    update={
                        "path": path,
                        "reason": f"inside {display(seen.path)}, which this call removes; not sent separately",
                        "type": None,
                        "size": None,
                        "file_count": None,
                        "newest_modified": None,
                        "task_id": None,
                    }
                ),
                counts=False,
            )

    # ------------------------------------------------------------------------------------ one batch

    async def _check(self, number: int, rows: list[SeenPath]) -> _Checked:
        """What of a batch may go out: the policy as it is now (a name protected or a root added since the dry
        run), then what is there now: the same objects, folders read whole again (their contents may have changed
        without their own mtime), with listings of its own. A resumed run starts here too: what the interrupted one
        removed is gone, what it did not is still as seen, what it left queued is followed."""
        plan, removal = self.plan, self.removal
        listings = self.host._listings()
        paths = [seen.path for seen in rows]
        _, refused_now, _ = removal._screen(paths)
        checkable = [p for p in paths if p not in refused_now]
        now_seen = await removal._inspector(listings, plan.mode, self.whole).check(checkable, walk_folders=True)
        items: dict[str, RemoveItem] = {}
        to_send: list[SeenPath] = []
        for seen in rows:
            current = now_seen.seen.get(seen.path)
            if seen.path in refused_now:
                items[seen.path] = RemoveItem(path=seen.path, status="refused", reason=refused_now[seen.path])
            elif seen.path in now_seen.missing:
                why = " (the interrupted execution most likely removed it)" if self.resumed else ""
                items[seen.path] = RemoveItem(path=seen.path, status="missing", reason="already absent" + why)
            elif seen.path in now_seen.unfinished:  # not read whole in time: not known to be as it was seen
                items[seen.path] = RemoveItem(
                    path=seen.path,
                    status="failed",
                    error_code="not_rechecked",
                    reason="it could not be read whole again within this call's time, so it is not known to be as "
                    "the dry run saw it; nothing of it was sent. Remove its sub-folders in plans of their own.",
                )
            elif current is None:
                items[seen.path] = RemoveItem(
                    path=seen.path,
                    status="changed",
                    reason=_changed(now_seen.refused.get(seen.path, "it can no longer be checked")),
                )
            elif _identity(current) != _identity(seen):
                items[seen.path] = RemoveItem(
                    path=seen.path, status="changed", reason=_changed(_difference(seen, current))
                )
            else:
                to_send.append(seen)
        del now_seen
        sent_before = await self._sent_before(number) if self.resumed else {}
        if sent_before:
            to_send = await self._still_queued(rows, to_send, sent_before, items)
        return _Checked(items, to_send, listings)

    async def _send_batch(self, number: int, rows: list[SeenPath], checked: _Checked | EfileMcpError) -> None:
        host, plan = self.host, self.plan
        try:  # nothing of this batch goes out before its intent is on disk
            if isinstance(checked, EfileMcpError):
                raise checked
            items, to_send, self.listings = checked.items, checked.to_send, checked.listings
            where = {"batch": number + 1, "batches": self.batches} if self.batches > 1 else {}
            if self.resumed:
                await audit_quietly(
                    host.audit,
                    "reconciled",
                    tool=TOOL,
                    plan_id=plan.plan_id,
                    items=[audit_item(i) for i in items.values()],
                    still_there=[s.path for s in to_send],
                    **where,
                )
            await host.audit.write(  # fails closed: AuditUnavailable here means nothing of this batch is sent
                "intent",
                tool=TOOL,
                plan_id=plan.plan_id,
                confirmed_by=self.confirmed_by,
                mode=self.mode,
                resumed=self.resumed or None,
                paths=[s.path for s in to_send],
                changed=[p for p, i in items.items() if i.status == "changed"],
                **where,
            )
        except EfileMcpError as exc:
            if not self.sent_any:
                raise _NothingSent(exc) from exc
            self.stopped = f"not sent: the execution stopped before this batch ({exc}); run a new dry run for it"
            self.afterwards.append(
                f"The execution stopped after {number} of {self.batches} batches ({exc}): the rest was not sent; "
                "run a new dry run to see what is left."
            )
            self._not_sent(rows, self.stopped)
            return
        if to_send:
            self.sent_any = True
        if self.mode == "quarantine":
            try:
                await self._quarantine(rows, to_send, items)
            except BaseException as exc:
                # Stopped while moves were out (cancelled): the intent gets its record, what was not known is so.
                stopped = "cancelled" if isinstance(exc, anyio.get_cancelled_exc_class()) else type(exc).__name__
                with anyio.CancelScope(shield=True):
                    await audit_quietly(
                        host.audit,
                        "execution",
                        tool=TOOL,
                        dry_run=False,
                        decision=f"interrupted: {stopped}",
                        mode=self.mode,
                        plan_id=plan.plan_id,
                        items=[
                            audit_item(
                                items.get(s.path)
                                or RemoveItem(path=s.path, status="failed", error_code="outcome_unknown")
                            )
                            for s in rows
                        ],
                    )
                raise
            task_ids: list[str] = []
        else:
            task_ids = await self._delete(number, rows, to_send, items)
        with anyio.CancelScope(shield=True):
            await self._outcome(rows, items, task_ids, where, last=number + 1 == self.batches)

    async def _outcome(
        self,
        rows: Sequence[SeenPath],
        items: dict[str, RemoveItem],
        task_ids: list[str],
        where: dict[str, int],
        *,
        last: bool,
    ) -> None:
        for seen in rows:
            self._add(items[seen.path], seen)
        batch = [items[seen.path] for seen in rows]
        try:
            await self.host.audit.write(
                "execution",
                tool=TOOL,
                dry_run=False,
                decision="executed",
                confirmed_by=self.confirmed_by,
                mode=self.mode,
                resumed=self.resumed or None,
                plan_id=self.plan.plan_id,
                requests_sent=self.requests_sent if self.mode == "delete" else None,
                task_ids=task_ids,
                items=[audit_item(i) for i in batch],
                error=str(self.auth_error) if self.auth_error else None,
                **where,
                # The whole plan's summary closes its last batch's record (the only one of a small plan).
                **({"summary": self._summary().model_dump(exclude_none=True)} if last else {}),
            )
        except AuditUnavailable as exc:
            log.error("the execution of plan %s was sent but its audit record failed: %s", self.plan.plan_id, exc)
            self.afterwards.append(f"WARNING: the removal was sent, but its audit record could not be written ({exc})")

    async def _quarantine(
        self, rows: Sequence[SeenPath], to_send: list[SeenPath], items: dict[str, RemoveItem]
    ) -> None:
        quarantine = self.removal.quarantine
        assert quarantine is not None
        if not to_send:
            return
        # One batch: the quarantine tells its own progress; several: the run tells it per batch.
        # Keyed by the batch's number: a resumed execution sending it again replaces its part of the record.
        moved = await quarantine.send(
            self.plan.plan_id, to_send, self.progress if self.batches == 1 else None, batch=self._number
        )
        for seen in to_send:
            items[seen.path] = moved.get(seen.path) or RemoveItem(
                path=seen.path, status="failed", error_code="not_sent", reason="the quarantine reported nothing"
            )

    async def _delete(
        self, number: int, rows: Sequence[SeenPath], to_send: list[SeenPath], items: dict[str, RemoveItem]
    ) -> list[str]:
        """Send the batch's removals; every path of it ends with an item. Returns the batch's task ids."""
        run = RemovalRun(paths=tuple(s.path for s in to_send))
        interrupted: str | None = None
        sent_before = {p: i.task_id for p, i in items.items() if i.task_id}  # queued by an interrupted run

        def sent_now() -> dict[str, str]:
            tasks = {p: o.task.task_id for p, o in run.outcomes.items() if o.task is not None}
            return {**sent_before, **tasks}

        async def checkpoint() -> None:
            kept = len(sent_before)
            while True:
                await anyio.sleep(CHECKPOINT_SECONDS)
                sent = sent_now()
                if len(sent) != kept:
                    try:
                        await keep_batch_tasks(self.host.store, self.plan, number, sent)
                        kept = len(sent)
                    except EfileMcpError as exc:
                        log.warning("the tasks of plan %s could not be written down: %s", self.plan.plan_id, exc)

        async def send() -> None:
            await self.host._remover.remove(run)

        try:
            if to_send:
                await alongside(send, checkpoint)
        except AuthError as exc:
            self.auth_error = exc
        except BaseException as exc:
            interrupted = "cancelled" if isinstance(exc, anyio.get_cancelled_exc_class()) else type(exc).__name__
            raise
        finally:
            run.settle_unfinished()
            self.requests_sent += run.requests_sent
            self.kinds.update(outcome.kind for outcome in run.outcomes.values())
            for seen in to_send:
                items[seen.path] = _item_from_outcome(run.outcomes[seen.path], seen)
            task_ids = []
            for seen in rows:
                item = items[seen.path]
                if item.task_id:
                    task_ids.append(item.task_id)
                    self._count_task(item.task_id, str(item.task_status))
            # What was sent is sent: a record that cannot be kept now must not hide the per-path answer.
            with anyio.CancelScope(shield=True):
                if task_ids:
                    try:
                        await self._keep_tasks(number, sent_now())
                    except EfileMcpError as exc:
                        self.afterwards.append(
                            f"the task ids could not be kept for get_task by plan_id ({store_trouble(exc)}); "
                            "follow the task_ids of this answer"
                        )
                if interrupted:
                    await audit_quietly(
                        self.host.audit,
                        "execution",
                        tool=TOOL,
                        dry_run=False,
                        decision=f"interrupted: {interrupted}",
                        plan_id=self.plan.plan_id,
                        requests_sent=run.requests_sent,
                        task_ids=task_ids,
                        items=[audit_item(items[s.path]) for s in rows if s.path in items],
                    )
        return task_ids

    # ------------------------------------------------------------------------------------ server tasks

    def _count_task(self, task_id: str, status: str) -> None:
        if task_id in self.task_ids:
            return
        self.task_count += 1
        kept = len(self.task_ids)
        if kept < TASK_IDS_KEPT_ALL or (status not in ("complete", "failure", "cancel") and kept < TASK_IDS_KEPT):
            self.task_ids[task_id] = None

    async def _keep_tasks(self, number: int, sent: dict[str, str]) -> None:
        await keep_tasks(self.host.store, self.plan, number, sent, list(self.task_ids))

    async def _sent_before(self, number: int) -> dict[str, str]:
        data = await self.host.store.load_plan(sent_key(self.plan.plan_id, number))
        if not data:
            # An interrupted run may have written them all in one record (before execution went by batches).
            data = await self.host.store.load_plan("sent-" + self.plan.plan_id) if number == 0 else None
        return {str(p): str(t) for p, t in json.loads(data).items()} if data else {}

    async def _still_queued(
        self,
        rows: Sequence[SeenPath],
        to_send: list[SeenPath],
        sent_before: dict[str, str],
        items: dict[str, RemoveItem],
    ) -> list[SeenPath]:
        """Paths to which an interrupted run gave a server task that is still at work are followed (queued, with
        its task id), not sent again: whether still as seen or already changing (a folder being emptied)."""
        sending = {s.path for s in to_send}
        in_play = [
            s
            for s in rows
            if s.path in sent_before and (s.path in sending or items.get(s.path, _NO_ITEM).status == "changed")
        ]
        states = await self.host.task_states([sent_before[s.path] for s in in_play]) if in_play else {}
        at_work = set()
        for seen in in_play:
            task_id = sent_before[seen.path]
            status = states.get(task_id)
            if status in ("waiting", "processing"):
                at_work.add(seen.path)
                items[seen.path] = item_of(
                    seen,
                    "queued",
                    task_id=task_id,
                    task_status=status,
                    reason="the interrupted execution's server task is removing it; follow it with get_task",
                )
        return [s for s in to_send if s.path not in at_work]

    # ------------------------------------------------------------------------------------ afterwards

    async def not_previewed(self) -> int | None:
        """Matches of the plan's selection now present that the dry run did not show: left alone, and counted.
        The re-check's listings serve again (the folders it read whole are not listed again, H4). The search is
        read in rounds (selection.ROUND_ENTRIES), each round's matches checked against the plan's paths and
        dropped. None (not counted) for a plan too big to hold its paths as a set, or a search cut short."""
        host, plan = self.host, self.plan
        if plan.count > NOT_PREVIEWED_MAX_ROWS:
            return None
        # What the dry run showed: the planned paths, the typed paths inside them, and the paths it refused (what
        # they hold was shown refused with them). A path it found missing is new if it matches now.
        planned = set(plan.covered) | {row[0] for row in plan.exceptions if len(row) > 1 and row[1] == "refused"}
        try:
            async for rows in plan_rows(host.store, plan):
                planned.update(seen.path for seen in rows)
        except LookupError:
            return None
        ordered = sorted(planned)

        search = FindWalk(Selection.model_validate(plan.select), host.clock())
        limits = host._walk_limits()
        listings, count, read = self.listings, 0, 0
        try:
            while True:
                before = search.walk.stats.entries_seen
                rounds = WalkLimits(min(ROUND_ENTRIES, max(0, limits.max_entries - read)), limits.deadline)
                stats = await search.read_on(listings, rounds)
                read += stats.entries_seen - before
                for match in search.take(len(search.found)):
                    if match.path in planned or ancestors_in(match.path, planned):
                        continue
                    if match.kind == "directory" and holds_any(ordered, match.path):
                        continue  # a folder around a path the dry run showed (given up whole, its contents planned)
                    count += 1
                if search.walk.finished:
                    return count
                if (
                    stats.stopped in ("deadline", "caller")
                    or read >= limits.max_entries
                    or stats.entries_seen == before
                ):
                    return count or None
                listings = host._listings()  # a later round: its own bounded cache
        except EfileMcpError:
            return None

    def next_step(self, summary: Any, not_previewed: int | None) -> str:
        return _next_step_after_execution(summary, self.plan.plan_id, self.task_count, not_previewed)

    def _auth_stopped(self, error: EfileMcpError) -> str:
        kinds, task_ids = self.kinds, list(self.task_ids)
        shown = task_ids[:_TASK_IDS_IN_ERRORS]
        return (
            f"{error} The removal stopped: {kinds['submitted']} path(s) had already been submitted"
            + (
                f" (task ids: {', '.join(shown)}{' …' if len(task_ids) > len(shown) else ''}; follow them with "
                "get_task)"
                if task_ids
                else ""
            )
            + f", {kinds['not_sent'] + self.later_not_sent} were not sent"
            + (f", {kinds['unknown']} have an unknown outcome (an answer was lost)" if kinds["unknown"] else "")
            + (
                f", {kinds['missing'] + kinds['verified_absent']} were already absent"
                if kinds["missing"] + kinds["verified_absent"]
                else ""
            )
            + (f", {kinds['failed']} failed" if kinds["failed"] else "")
            + f". Every path's state is in the audit log ({self.host.audit.path}). Dry-run again after fixing the "
            "token."
        )


def _first_of_each(rows: list[SeenPath]) -> list[SeenPath]:
    """A path planned twice is checked and sent once, as first seen: a backstop (the walker hands an entry once,
    but a server may list a name twice), so a path is never sent twice and its outcome never overwritten."""
    seen: set[str] = set()
    return [row for row in rows if not (row.path in seen or seen.add(row.path))]  # type: ignore[func-returns-value]


def sent_key(plan_id: str, number: int) -> str:
    return f"sent-{plan_id}-{number}"


async def keep_batch_tasks(store: StateStore, plan: Plan, number: int, sent: dict[str, str]) -> None:
    """A batch's server tasks by path, as a resumed run follows them; kept a day after the token expires."""
    await store.save_plan(sent_key(plan.plan_id, number), json.dumps(sent).encode(), plan.expires_at + TASKS_KEPT)


async def keep_tasks(store: StateStore, plan: Plan, number: int, sent: dict[str, str], task_ids: list[str]) -> None:
    """A batch's server tasks by path, and the run's tasks kept so far as get_task(plan_id) reads them (written
    at each batch's end, not at every checkpoint: up to TASK_IDS_KEPT ids)."""
    await keep_batch_tasks(store, plan, number, sent)
    await store.save_plan("run-" + plan.plan_id, json.dumps(task_ids).encode(), plan.expires_at + TASKS_KEPT)


async def alongside(work: Callable[[], Awaitable[T]], background: Callable[[], Coroutine[Any, Any, None]]) -> T:
    """`work`'s result while `background` runs beside it (stopped when work ends); work's exception as it is."""
    done: list[T] = []
    failed: list[BaseException] = []
    async with anyio.create_task_group() as group:
        group.start_soon(background)
        try:
            done.append(await work())
        except BaseException as exc:  # re-raised below, outside the group (not as an ExceptionGroup)
            failed.append(exc)
        finally:
            group.cancel_scope.cancel()
    if failed:
        raise failed[0]
    return done[0]


def store_trouble(exc: EfileMcpError) -> str:
    """A store failure after sending, in a few words: the details (a Redis error's text) go to the log."""
    if isinstance(exc, StateStoreError):
        log.warning("the state store failed after a removal was sent: %s", exc)
        return "the state store is unreachable"
    return str(exc)


async def audit_quietly(audit: AuditLog, event: str, **fields: Any) -> None:
    try:
        await audit.write(event, **fields)
    except AuditUnavailable as exc:
        log.error("audit record %s failed: %s", event, exc)


def _changed(what: str) -> str:
    return f"it changed since the dry run ({what}); not sent. Run a new dry run to see it as it is now."


def _identity(seen: SeenPath) -> tuple[object, ...]:
    """What must be as the dry run saw it: type and own mtime; a file's size; a folder's whole tree."""
    if seen.kind == "directory":
        return (seen.kind, seen.mtime, seen.size, seen.file_count, seen.newest, seen.fingerprint)
    return (seen.kind, seen.mtime, seen.listed_size)


def _difference(before: SeenPath, now: SeenPath) -> str:
    if before.kind != now.kind:
        return f"was a {before.kind}, is now a {now.kind}"
    if before.kind != "directory" and before.listed_size != now.listed_size:
        return f"size {before.listed_size} B, now {now.listed_size} B"
    if before.kind == "directory" and (before.size, before.file_count) != (now.size, now.file_count):
        return f"it held {before.file_count} files, {before.size} B; now {now.file_count} files, {now.size} B"
    if before.kind == "directory" and before.newest != now.newest:
        return "something inside it was modified"
    if before.kind == "directory" and before.fingerprint != now.fingerprint:
        return "what it holds is not what was previewed (names or entries differ, with the same sizes and times)"
    return "its modification time changed"


def _item_from_outcome(outcome: RemoveOutcome, seen: SeenPath) -> RemoveItem:
    path = outcome.path
    sized: dict[str, Any] = {"type": seen.kind, "size": seen.size}
    if outcome.kind == "missing":
        return RemoveItem(path=path, status="missing", reason=outcome.message, error_code=outcome.error_code)
    if outcome.kind == "verified_absent":
        return RemoveItem(path=path, status="removed", reason=outcome.message, **sized)
    if outcome.kind == "failed":
        return RemoveItem(path=path, status="failed", reason=outcome.message, error_code=outcome.error_code)
    if outcome.kind == "unknown":
        return RemoveItem(
            path=path,
            status="failed",
            error_code=f"outcome_unknown:{outcome.error_code}" if outcome.error_code else "outcome_unknown",
            reason=f"outcome unknown: {outcome.message}. Run a dry run on it to see whether it is still there.",
        )
    if outcome.kind == "not_sent":
        return RemoveItem(path=path, status="failed", error_code="not_sent", reason=f"not sent: {outcome.message}")
    task = outcome.task
    assert task is not None
    common: dict[str, Any] = {"path": path, "task_id": task.task_id, "task_status": task.status}
    if task.status == "complete":
        return RemoveItem(status="removed", **common, **sized)
    if task.status in ("waiting", "processing"):
        return RemoveItem(
            status="queued", reason="a server task is removing it; follow it with get_task", **common, **sized
        )
    if task.error_code == "911020":
        return RemoveItem(status="missing", reason="already absent", error_code=task.error_code, **common)
    reason = task.error_msg or ("cancelled" if task.status == "cancel" else "the server reported a failure")
    return RemoveItem(status="failed", reason=reason, error_code=task.error_code, **common)


def _next_step_after_execution(summary: Any, plan_id: str, tasks: int, not_previewed: int | None) -> str:
    steps = []
    if summary.queued:
        how = "task_ids" if tasks <= ITEMS_LISTED_MAX else f"plan_id={plan_id!r}"
        steps.append(f"{summary.queued} path(s) are queued: call get_task with {how} and wait_seconds to follow them")
    if summary.failed:
        steps.append(f"{summary.failed} path(s) failed: see each item's reason")
    if summary.changed:
        steps.append(f"{summary.changed} path(s) changed since the dry run and were not sent: dry-run them again")
    if not_previewed:
        steps.append(
            f"{not_previewed} path(s) now match the selection that the dry run did not show; they were not "
            "removed (run a new dry run to see them)"
        )
    if not steps:
        return "Done: every confirmed path is removed or was already absent."
    return "; ".join(steps) + "."


def audit_item(item: RemoveItem) -> dict[str, object]:
    record: dict[str, object] = {"path": item.path[:MAX_PATH_BYTES], "status": item.status}
    if item.task_id:
        record["task_id"] = item.task_id
    if item.error_code:
        record["error_code"] = item.error_code
    if item.status in ("refused", "failed", "changed") and item.reason:
        record["reason"] = item.reason[:300]
    return record
