"""`disk_usage`: what is big below a folder, in one call (the top N children, the rest summed)."""

from typing import Annotated, Any

from mcp.server.mcpserver import Context
from pydantic import Field

from ..models.results import DiskUsageResult
from ..settings import Settings
from .arguments import OptionalDir
from .state import progress_of, state_of
from .tool_errors import tool_errors

DESCRIPTION = """\
Disk usage below a folder (default: home): its whole tree's totals and its largest direct children, the rest \
summed. Sizes count regular files; links are not followed. complete=false: the walk hit its budget; \
call again with resume to read on.
"""

#: The most children listed (very long paths are summed into `others` earlier, at the answer budget: output.py).
TOP_MAX = 50


def build(settings: Settings) -> Any:
    async def disk_usage(
        ctx: Context,
        path: OptionalDir = None,
        top: Annotated[int, Field(ge=1, le=TOP_MAX, description="Largest children to list.")] = 20,
        max_entries: Annotated[
            int | None, Field(ge=100, le=settings.walk_max_entries, description="Most entries to read.")
        ] = None,
        resume: Annotated[
            str | None, Field(max_length=100, description="resume of an incomplete answer: reads on from there.")
        ] = None,
    ) -> DiskUsageResult:
        state = state_of(ctx)
        async with tool_errors():
            return await state.guard.usage(
                path, top=top, max_entries=max_entries, resume=resume, progress=progress_of(ctx)
            )

    return disk_usage
