"""`get_task` (follow server tasks, optionally waiting) and `cancel_tasks`."""

from typing import Annotated, Any

from mcp.server.mcpserver import Context
from pydantic import Field

from ..models.results import CancelTasksResult, GetTaskResult
from ..models.wire import TASK_IDS_HARD_MAX
from ..settings import Settings
from .state import progress_of, state_of
from .tool_errors import tool_errors

GET_DESCRIPTION = """\
Status of removal tasks, by task_ids or an execution's plan_id: waiting, processing, complete, fail or cancel. \
wait_seconds > 0 waits for all to end. all_terminal: every id known and ended; unknown ids go to not_found \
(tasks are forgotten 24 h after they end).
"""

CANCEL_DESCRIPTION = """\
Cancel removal tasks that are still waiting or processing; ended ones are reported and left alone. What a \
cancelled task already deleted stays deleted.
"""

TaskId = Annotated[str, Field(min_length=1, max_length=64)]


def build_get_task(settings: Settings) -> Any:
    async def get_task(
        ctx: Context,
        task_ids: Annotated[list[TaskId] | None, Field(max_length=TASK_IDS_HARD_MAX)] = None,
        plan_id: Annotated[str | None, Field(max_length=64)] = None,
        wait_seconds: Annotated[float, Field(ge=0, le=55)] = 0,
    ) -> GetTaskResult:
        state = state_of(ctx)
        async with tool_errors():
            return await state.guard.tasks(task_ids, plan_id, wait_seconds=wait_seconds, progress=progress_of(ctx))

    return get_task


def build_cancel_tasks(settings: Settings) -> Any:
    async def cancel_tasks(
        ctx: Context, task_ids: Annotated[list[TaskId], Field(min_length=1, max_length=TASK_IDS_HARD_MAX)]
    ) -> CancelTasksResult:
        state = state_of(ctx)
        async with tool_errors():
            return await state.guard.cancel(task_ids)

    return cancel_tasks
