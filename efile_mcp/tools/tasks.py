"""`get_task` (follow server tasks, optionally waiting) and `cancel_tasks`."""

from typing import Annotated, Any

import anyio
from mcp.server.mcpserver import Context
from pydantic import Field

from ..config import Settings
from ..models.results import CancelItem, CancelTasksResult, GetTaskResult, TaskInfo
from ..models.wire import TASK_IDS_HARD_MAX
from .errors import tool_errors
from .output import as_result
from .state import state_of

GET_DESCRIPTION = """\
Report the status of server tasks returned by remove_paths (queued items): waiting, processing,
complete, fail or cancel, with counts and sizes processed. With wait_seconds > 0 it waits (polling with
backoff, sending progress notifications) until every task has ended or the time is up; call it again
to keep waiting. Ids the server does not know are listed in not_found (it forgets tasks 24 h after
they end).
"""

CANCEL_DESCRIPTION = """\
Cancel server tasks that are still waiting or processing (from remove_paths). Tasks that have already
ended are reported with their status and left alone. What a cancelled task already deleted stays deleted.
"""

TaskIds = Annotated[
    list[Annotated[str, Field(min_length=1, max_length=64)]],
    Field(min_length=1, max_length=TASK_IDS_HARD_MAX, description="Task ids from remove_paths (1-500)."),
]

_FIRST_POLL = 0.5
_MAX_POLL = 5.0


def build_get_task(settings: Settings) -> Any:
    async def get_task(
        task_ids: TaskIds,
        ctx: Context,
        wait_seconds: Annotated[
            float, Field(ge=0, le=55, description="Wait up to this many seconds for every task to end (0-55).")
        ] = 0,
    ) -> GetTaskResult:
        state = state_of(ctx)
        wanted = list(dict.fromkeys(task_ids))
        started = anyio.current_time()
        deadline = started + wait_seconds
        interval = _FIRST_POLL
        async with tool_errors():
            while True:
                lookup = await state.api.tasks(wanted)
                ended = sum(1 for task in lookup.tasks.values() if task.terminal)
                all_terminal = ended == len(lookup.tasks)
                await ctx.report_progress(
                    ended + len(lookup.not_found), len(wanted), f"{ended} of {len(lookup.tasks)} tasks ended"
                )
                now = anyio.current_time()
                if all_terminal or now >= deadline:
                    break
                await anyio.sleep(min(interval, deadline - now))
                interval = min(interval * 1.5, _MAX_POLL)
        return as_result(GetTaskResult(  # type: ignore[return-value]
            tasks=[TaskInfo.from_wire(lookup.tasks[t]) for t in wanted if t in lookup.tasks],
            not_found=lookup.not_found,
            all_terminal=all_terminal,
            waited_seconds=round(anyio.current_time() - started, 3),
        ))

    return get_task


def build_cancel_tasks(settings: Settings) -> Any:
    async def cancel_tasks(task_ids: TaskIds, ctx: Context) -> CancelTasksResult:
        state = state_of(ctx)
        wanted = list(dict.fromkeys(task_ids))
        running: list[str] = []
        sent = False
        try:
            async with tool_errors():
                before = await state.api.tasks(wanted)
                running = [t for t in wanted if t in before.tasks and not before.tasks[t].terminal]
                if running:
                    sent = True
                    await state.api.cancel(running)
                after = await state.api.tasks(running) if running else before
        except BaseException as exc:
            if sent:  # the cancel went out (or may have): the audit says so even if the call then failed
                await state.audit.write(
                    "cancel", tool="cancel_tasks", decision=f"requested, then {type(exc).__name__}", task_ids=running
                )
            raise
        items: list[CancelItem] = []
        for task_id in wanted:
            if task_id in before.not_found:
                items.append(CancelItem(task_id=task_id, cancelled=False, reason="not found (unknown or expired id)"))
                continue
            if task_id not in running:
                status = before.tasks[task_id].status
                items.append(CancelItem(task_id=task_id, cancelled=False, status=status, reason=f"already {status}"))
                continue
            now = after.tasks.get(task_id)
            status = now.status if now else None
            if status == "cancel":
                items.append(CancelItem(task_id=task_id, cancelled=True, status=status))
            else:
                items.append(
                    CancelItem(
                        task_id=task_id,
                        cancelled=False,
                        status=status,
                        reason=f"the server reports {status or 'nothing'} after the cancel request; check with get_task",
                    )
                )
        await state.audit.write(
            "cancel",
            tool="cancel_tasks",
            decision="requested" if running else "nothing_to_cancel",
            task_ids=running,
            items=[item.model_dump(exclude_none=True) for item in items],
        )
        return as_result(CancelTasksResult(tasks=items))  # type: ignore[return-value]

    return cancel_tasks
