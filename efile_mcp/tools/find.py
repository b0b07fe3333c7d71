"""`find_paths`: files and folders below a folder by name, type, size and age, largest first, paged."""

from typing import Annotated, Any

from mcp.server.mcpserver import Context
from pydantic import AfterValidator, Field

from ..config import Settings
from ..models.results import FindPathsResult, Selection, SelectType
from .errors import tool_errors
from .output import as_result
from .paths import absolute_path
from .state import progress_of, state_of

DESCRIPTION = """\
Find files and folders below path: name (a glob on the final name, e.g. '*.log'), type, size bounds in
bytes (a folder: its whole tree), age in days (a folder: its newest entry), max_depth. Matches come
largest first, limit per page, with next_cursor for the next page, plus the count and bytes of all
matches. Links are never followed. The same filters, as remove_paths' select, remove what matched.
"""


def build(settings: Settings) -> Any:
    async def find_paths(
        ctx: Context,
        path: Annotated[str, AfterValidator(absolute_path), Field(description="Absolute folder to search below.")],
        name: Annotated[str | None, Field(max_length=255, description="Glob on the final name, e.g. '*.log'.")] = None,
        type: Annotated[SelectType, Field(description="file, directory or any.")] = "any",
        min_size: Annotated[int | None, Field(ge=0, description="At least this many bytes.")] = None,
        max_size: Annotated[int | None, Field(ge=0, description="At most this many bytes.")] = None,
        older_than_days: Annotated[float | None, Field(ge=0, description="Modified more than N days ago.")] = None,
        newer_than_days: Annotated[float | None, Field(ge=0, description="Modified less than N days ago.")] = None,
        max_depth: Annotated[
            int | None, Field(ge=1, le=64, description="Levels below path (1: direct entries).")
        ] = None,
        limit: Annotated[int, Field(ge=1, le=200, description="Matches per page.")] = 50,
        cursor: Annotated[str | None, Field(max_length=100, description="next_cursor of the previous page.")] = None,
    ) -> FindPathsResult:
        state = state_of(ctx)
        selection = Selection(
            path=path,
            name=name,
            type=type,
            min_size=min_size,
            max_size=max_size,
            older_than_days=older_than_days,
            newer_than_days=newer_than_days,
            max_depth=max_depth,
        )
        async with tool_errors():
            result = await state.guard.find(selection, limit=limit, cursor=cursor, progress=progress_of(ctx))
        return as_result(result)  # type: ignore[return-value]

    return find_paths
