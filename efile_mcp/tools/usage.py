"""`disk_usage`: what is big below a folder, in one call (the top N children, the rest summed)."""

from typing import Annotated, Any

from mcp.server.mcpserver import Context
from pydantic import Field

from ..config import Settings
from ..models.results import DiskUsageResult
from .errors import tool_errors
from .output import as_result
from .paths import OptionalDir
from .state import progress_of, state_of

DESCRIPTION = """\
Disk usage below a folder (default: home): total bytes, files and folders of the whole tree, and its
largest direct children (a folder's size is its whole tree: regular files; links are not followed),
with the rest summed. Walks the tree itself within a budget of entries and seconds (complete=false
says it stopped early). Use it to find what is big, then find_paths to pick what to remove.
"""


def build(settings: Settings) -> Any:
    async def disk_usage(
        ctx: Context,
        path: OptionalDir = None,
        top: Annotated[int, Field(ge=1, le=200, description="How many of the largest direct children to list.")] = 20,
        max_entries: Annotated[
            int | None,
            Field(
                ge=100,
                le=settings.walk_max_entries,
                description=f"Most entries to read (default and maximum {settings.walk_max_entries}).",
            ),
        ] = None,
        resume: Annotated[
            str | None, Field(max_length=100, description="resume of an incomplete answer: reads on from there.")
        ] = None,
    ) -> DiskUsageResult:
        state = state_of(ctx)
        async with tool_errors():
            result = await state.guard.usage(
                path, top=top, max_entries=max_entries, resume=resume, progress=progress_of(ctx)
            )
        return as_result(result)  # type: ignore[return-value]

    return disk_usage
