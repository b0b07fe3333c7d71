"""`get_task` (follow server tasks, optionally waiting) and `cancel_tasks`."""

from typing import Annotated, Any

from mcp.server.mcpserver import Context
from pydantic import Field

from ..config import Settings
from ..models.results import CancelTasksResult, GetTaskResult
from ..models.wire import TASK_IDS_HARD_MAX
from .errors import tool_errors
from .output import as_result
from .state import progress_of, state_of

GET_DESCRIPTION = """\
Report the status of server tasks returned by remove_paths (queued items): waiting, processing,
complete, fail or cancel, with counts and sizes processed. Give task_ids, or the plan_id of a large
execution (its answer lists no ids then). With wait_seconds > 0 it waits (polling with backoff, sending
progress notifications) until every task has ended or the time is up; call it again to keep waiting.
Above 50 tasks the answer counts them by status and lists only those not complete. Ids the server does
not know are listed in not_found (it forgets tasks 24 h after they end).
"""

CANCEL_DESCRIPTION = """\
Cancel server tasks that are still waiting or processing (from remove_paths). Tasks that have already
ended are reported with their status and left alone. What a cancelled task already deleted stays deleted.
"""

TaskIds = Annotated[
    list[Annotated[str, Field(min_length=1, max_length=64)]],
    Field(min_length=1, max_length=TASK_IDS_HARD_MAX, description="Task ids from remove_paths (1-500)."),
]


def build_get_task(settings: Settings) -> Any:
    async def get_task(
        ctx: Context,
        task_ids: Annotated[
            list[Annotated[str, Field(min_length=1, max_length=64)]] | None,
            Field(max_length=TASK_IDS_HARD_MAX, description="Task ids from remove_paths (up to 500)."),
        ] = None,
        plan_id: Annotated[
            str | None, Field(max_length=64, description="The plan_id of an execution: follow all its tasks.")
        ] = None,
        wait_seconds: Annotated[
            float, Field(ge=0, le=55, description="Wait up to this many seconds for every task to end (0-55).")
        ] = 0,
    ) -> GetTaskResult:
        state = state_of(ctx)
        async with tool_errors():
            result = await state.guard.tasks(task_ids, plan_id, wait_seconds=wait_seconds, progress=progress_of(ctx))
        return as_result(result)  # type: ignore[return-value]

    return get_task


def build_cancel_tasks(settings: Settings) -> Any:
    async def cancel_tasks(task_ids: TaskIds, ctx: Context) -> CancelTasksResult:
        state = state_of(ctx)
        async with tool_errors():
            result = await state.guard.cancel(task_ids)
        return as_result(result)  # type: ignore[return-value]

    return cancel_tasks
