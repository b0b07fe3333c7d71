"""`storage_status`: what this server may do here, where, and how full the storage is."""

from typing import Any

from mcp.server.mcpserver import Context

from ..models.results import StorageStatusResult
from ..settings import Settings
from .state import state_of
from .tool_errors import tool_errors

DESCRIPTION = """\
Where removal is allowed (allowed roots, resolved), protected names, limits, confirmation mode, region, \
storage quota, and what is in quarantine (per plan: restorable with restore_paths until purged). Call it first: \
it gives the home directory.
"""


def build(settings: Settings) -> Any:
    async def storage_status(ctx: Context) -> StorageStatusResult:
        state = state_of(ctx)
        async with tool_errors():
            return await state.guard.status()

    return storage_status
