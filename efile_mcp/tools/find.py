"""`find_paths`: files and folders below a folder by name, type, size and age, largest first, paged."""

from typing import Annotated, Any

from mcp.server.mcpserver import Context
from pydantic import Field

from ..models.results import FindPathsResult, Selection, SelectType
from ..settings import Settings
from .arguments import OptionalDir
from .state import progress_of, state_of
from .tool_errors import tool_errors

DESCRIPTION = """\
Find files and folders below a folder (default: home) by name glob, type, size and age. Paged in the \
order the tree is read, each page largest first, totals so far: pass next_cursor as cursor. A folder's size \
is its whole tree, its age that of its newest entry. remove_paths' select takes the same filters.
"""

#: The most matches per page (a page of very long paths ends earlier, at the answer budget: see Guard.find).
LIMIT_MAX = 50


def build(settings: Settings) -> Any:
    async def find_paths(
        ctx: Context,
        path: OptionalDir = None,
        name: Annotated[str | None, Field(max_length=255, description="Glob on the final name, e.g. '*.log'.")] = None,
        type: SelectType = "any",
        min_size: Annotated[int | None, Field(ge=0, description="Bytes.")] = None,
        max_size: Annotated[int | None, Field(ge=0, description="Bytes.")] = None,
        older_than_days: Annotated[float | None, Field(ge=0, description="Modified more than N days ago.")] = None,
        newer_than_days: Annotated[float | None, Field(ge=0, description="Modified less than N days ago.")] = None,
        max_depth: Annotated[int | None, Field(ge=1, le=64, description="1: direct entries only.")] = None,
        limit: Annotated[int, Field(ge=1, le=LIMIT_MAX)] = 50,
        cursor: Annotated[str | None, Field(max_length=100)] = None,
    ) -> FindPathsResult:
        state = state_of(ctx)
        async with tool_errors():
            selection = Selection(
                path=path or await state.guard.home(),
                name=name,
                type=type,
                min_size=min_size,
                max_size=max_size,
                older_than_days=older_than_days,
                newer_than_days=newer_than_days,
                max_depth=max_depth,
            )
            return await state.guard.find(selection, limit=limit, cursor=cursor, progress=progress_of(ctx))

    return find_paths
