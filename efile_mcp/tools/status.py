"""`storage_status`: what this server may do here, where, and how full the storage is."""

from typing import Any

from mcp.server.mcpserver import Context

from ..config import Settings
from ..models.results import StorageStatusResult
from .errors import tool_errors
from .output import as_result
from .state import state_of

DESCRIPTION = """\
Where efile-mcp may remove (allowed roots, resolved), which names are protected, read-only or not, the
most paths per call, how deletions are confirmed, the region, and the storage quota (limit, used, percent;
usage above 100% is reported as is). Call it first in a clean-up: it tells where to look.
"""


def build(settings: Settings) -> Any:
    async def storage_status(ctx: Context) -> StorageStatusResult:
        state = state_of(ctx)
        async with tool_errors():
            result = await state.guard.status()
        return as_result(result)  # type: ignore[return-value]

    return storage_status
