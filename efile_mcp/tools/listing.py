"""`list_files`: read a directory page by page, so an agent can find what to remove."""

from typing import Annotated, Any, cast, get_args

from mcp.server.mcpserver import Context
from mcp.server.mcpserver.exceptions import ToolError
from pydantic import Field

from ..models.results import ListFilesResult
from ..models.wire import Order, OrderBy
from ..settings import Settings
from .arguments import OptionalDir
from .state import state_of
from .tool_errors import tool_errors

DESCRIPTION = """\
List one folder (default: home), a page at a time: name, path, type, size, modified. Page with \
start=next_start, filter with keyword, sort with order_by and order.
"""

#: The most entries one page asks for; output.render also cuts a page to the answer budget (next_start says where).
LIMIT_MAX = 200

ORDER_BY: tuple[str, ...] = get_args(OrderBy)
ORDER: tuple[str, ...] = get_args(Order)


def _one_of(name: str, value: str, valid: tuple[str, ...]) -> str:
    if value not in valid:
        raise ToolError(f"{name} must be one of {', '.join(valid)}")
    return value


def build(settings: Settings) -> Any:
    async def list_files(
        ctx: Context,
        path: OptionalDir = None,
        keyword: Annotated[str | None, Field(max_length=255, description="Names containing this text.")] = None,
        start: Annotated[int, Field(ge=0, description="First entry, 0-based.")] = 0,
        limit: Annotated[int, Field(ge=1, le=LIMIT_MAX)] = 100,
        # Checked in the body, not by pydantic: a wrong value answers one line naming the valid ones.
        order_by: Annotated[str, Field(json_schema_extra={"enum": list(ORDER_BY)})] = "name",
        order: Annotated[str, Field(json_schema_extra={"enum": list(ORDER)})] = "asc",
    ) -> ListFilesResult:
        state = state_of(ctx)
        sort_key = cast(OrderBy, _one_of("order_by", order_by, ORDER_BY))
        direction = cast(Order, _one_of("order", order, ORDER))
        async with tool_errors():
            page = await state.guard.list_page(
                path, keyword=keyword, start=start, limit=limit, order_by=sort_key, order=direction
            )
        return page

    return list_files
