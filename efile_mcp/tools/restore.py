"""`restore_paths`: put quarantined entries back where they were, never over anything that is there now."""

from typing import Annotated, Any

from mcp.server.mcpserver import Context
from pydantic import AfterValidator, Field

from ..models.quarantine_results import RestorePathsResult
from ..settings import Settings
from .arguments import absolute_path
from .state import state_of
from .tool_errors import tool_errors

DESCRIPTION = """\
Put back what a removal in mode 'quarantine' moved away, where it was, never overwriting. Give the plan_id \
(remove_paths answered it; storage_status lists the plans in quarantine) and optionally paths, the original \
absolute paths to restore (default: all of the plan). A path that exists again is reported as conflict and \
stays in quarantine: move what is there away, then restore it again. Nothing is deleted; every restore is \
audited. Plans purged after EFILE_QUARANTINE_DAYS (efile-mcp purge) cannot be restored.
"""

PlanId = Annotated[str, Field(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9_-]+$")]
OriginalPath = Annotated[str, AfterValidator(absolute_path), Field(min_length=1, max_length=4096)]


def build(settings: Settings) -> Any:
    async def restore_paths(
        ctx: Context,
        plan_id: Annotated[PlanId, Field(description="The plan whose quarantined entries to restore.")],
        paths: Annotated[
            list[OriginalPath] | None,
            Field(
                min_length=1,
                max_length=settings.max_paths,
                description="Original absolute paths to restore (default: all of the plan).",
            ),
        ] = None,
    ) -> RestorePathsResult:
        state = state_of(ctx)
        async with tool_errors():
            return await state.guard.quarantine.restore(plan_id, paths)

    return restore_paths
