"""`remove_paths`: the only destructive tool. Dry run by default; execution needs the dry run's token.

No `from __future__ import annotations` here: the schema's maxItems comes from the settings, so the
annotations are built at run time inside `build`.
"""

from typing import Annotated, Any, Literal

from mcp.server.mcpserver import Context, ElicitationResult, Resolve
from pydantic import Field

from ..config import Settings
from ..guard.guard import RemovalRequest
from ..models.results import RemovePathsResult, Selection
from .confirm import REFUSALS, DeletionConfirmation, ask_person, decision_of
from .errors import tool_errors
from .output import as_result
from .state import progress_of, state_of

DESCRIPTION = """\
Remove files and folders on the person's SCNet storage, in two steps.

1. Dry run (dry_run=true, the default): name the absolute paths, or give select (a folder plus filters,
   as find_paths takes them) to remove what matches. Nothing is deleted. Each path says would_remove,
   missing or refused (with the reason); a folder's size is its whole tree, with file_count and
   newest_modified. Up to 50 paths are listed one by one; above that the answer is a summary (counts,
   bytes, every exception, the largest); detail='full' lists all. The answer carries a confirmation_token.
2. Show the person what would be removed and get their agreement. Then call with dry_run=false and the
   confirmation_token alone: it executes exactly the plan the dry run showed (paths or select, if given,
   must match it). The token expires after a few minutes and works once. A path that changed since the
   dry run is not sent (status changed); a new file matching select is not removed.

Execution answers per path: removed, queued (a server task; follow it with get_task), missing, failed,
changed. Paths must be absolute, inside the allowed roots, and name each file or folder exactly: no
wildcards, no '.' or '..'; symbolic links and folders holding links or protected names are refused.
"""


def build(settings: Settings) -> Any:
    max_paths = settings.max_paths

    async def remove_paths(
        ctx: Context,
        paths: Annotated[
            Annotated[list[str], Field(json_schema_extra={"minItems": 1, "maxItems": max_paths})] | None,
            Field(description=f"Absolute paths of files or folders to remove (1 to {max_paths}); or use select."),
        ] = None,
        select: Annotated[
            Selection | None,
            Field(description="Instead of paths: remove what matches below select.path (as find_paths)."),
        ] = None,
        dry_run: Annotated[
            bool, Field(description="true (default): preview only. false: delete, with confirmation_token.")
        ] = True,
        confirmation_token: Annotated[
            str | None, Field(max_length=2000, description="The dry run's token (execution only); enough on its own.")
        ] = None,
        detail: Annotated[
            Literal["auto", "full", "summary"],
            Field(description="auto (default): items listed up to 50 paths, else a summary; full: every item."),
        ] = "auto",
        person: Annotated[ElicitationResult[DeletionConfirmation], Resolve(ask_person)] = None,  # type: ignore[assignment]
    ) -> RemovePathsResult:
        state = state_of(ctx)
        guard = state.guard
        async with tool_errors():
            if paths is not None and select is not None:
                raise_usage("give paths or select, not both")
            if dry_run:
                if paths is None and select is None:
                    raise_usage("name the paths to preview, or give select (a folder and filters)")
                result = await guard.dry_run(paths, select, detail=detail, progress=progress_of(ctx))
                return as_result(result)  # type: ignore[return-value]
            request = RemovalRequest(token=confirmation_token, paths=paths, select=select)
            decision = decision_of(person)
            if decision == "unavailable" and state.settings.confirm == "auto":
                decision = "not_needed"  # the confirmation token alone, as configured
            if decision in REFUSALS:
                code, message, spend = REFUSALS[decision]
                await guard.refuse_unconfirmed(request, code, message, spend=spend)
            done = await guard.execute(
                request, person_confirmed=decision == "accepted", detail=detail, progress=progress_of(ctx)
            )
            return as_result(done)  # type: ignore[return-value]

    return remove_paths


def raise_usage(message: str) -> None:
    from ..guard.guard import GuardRefusal

    raise GuardRefusal("usage", message + ".")
