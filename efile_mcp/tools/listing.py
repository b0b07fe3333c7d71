"""`list_files`: read a directory page by page, so an agent can find what to remove."""

from typing import Annotated, Any, cast, get_args

from mcp.server.mcpserver import Context
from mcp.server.mcpserver.exceptions import ToolError
from pydantic import AfterValidator, Field

from ..config import Settings
from ..models.results import ListFilesResult
from ..models.wire import Order, OrderBy
from .errors import tool_errors
from .output import as_result
from .paths import absolute_path
from .state import state_of

DESCRIPTION = """\
List a directory on the person's SCNet storage (default: their home directory), one page at a time.
Each entry has name, absolute path, type (file, directory, symlink), size in bytes and modification time.
Use keyword to filter names (substring), start/limit to page (next_start gives the next page), and
order_by/order to sort. Use the paths it returns with remove_paths.
"""


ORDER_BY: tuple[str, ...] = get_args(OrderBy)
ORDER: tuple[str, ...] = get_args(Order)


def _one_of(name: str, value: str, valid: tuple[str, ...]) -> str:
    if value not in valid:
        raise ToolError(f"{name} must be one of {', '.join(valid)}")
    return value


def build(settings: Settings) -> Any:
    async def list_files(
        ctx: Context,
        path: Annotated[
            str | None,
            AfterValidator(absolute_path),
            Field(description="Absolute directory path; omit for the home directory."),
        ] = None,
        keyword: Annotated[str | None, Field(max_length=255, description="Only names containing this text.")] = None,
        start: Annotated[int, Field(ge=0, description="Index of the first entry (0-based).")] = 0,
        limit: Annotated[int, Field(ge=1, le=1000, description="Entries per page (1-1000).")] = 100,
        # Checked in the body, not by pydantic: a wrong value answers one line naming the valid ones.
        order_by: Annotated[str, Field(description="Sort key.", json_schema_extra={"enum": list(ORDER_BY)})] = "name",
        order: Annotated[str, Field(description="Sort direction.", json_schema_extra={"enum": list(ORDER)})] = "asc",
    ) -> ListFilesResult:
        state = state_of(ctx)
        sort_key = cast(OrderBy, _one_of("order_by", order_by, ORDER_BY))
        direction = cast(Order, _one_of("order", order, ORDER))
        async with tool_errors():
            page = await state.guard.list_page(
                path, keyword=keyword, start=start, limit=limit, order_by=sort_key, order=direction
            )
        return as_result(page)  # type: ignore[return-value]

    return list_files
