"""`remove_paths`: the only destructive tool. Dry run by default; execution needs the dry run's token.

No `from __future__ import annotations` here: the schema's maxItems comes from the settings, so the
annotations are built at run time inside `build`.
"""

from typing import Annotated, Any

from mcp.server.mcpserver import Context, ElicitationResult, Resolve
from mcp.server.mcpserver.exceptions import ToolError
from pydantic import Field

from ..config import Settings
from ..models.results import RemovePathsResult
from .confirm import REFUSALS, DeletionConfirmation, ask_person, decision_of
from .errors import tool_errors
from .output import as_result
from .state import state_of

DESCRIPTION = """\
Remove files and folders on the person's SCNet storage, in two steps.

1. Call with dry_run=true (the default) and the absolute paths to remove. Nothing is deleted. Each item
   says would_remove, missing or refused (with the reason), with type and size. The answer carries a
   confirmation_token and confirm_paths.
2. Show the person what would be removed and get their agreement. Then call again with dry_run=false,
   paths = exactly confirm_paths, and the confirmation_token. The token expires after a few minutes and
   works once. Folders are removed with everything inside them.

Execution answers per path: removed, queued (a server task; follow it with get_task), missing, failed.
Paths must be absolute, inside the allowed roots, and name each file or folder exactly: no wildcards
(* ? [ ]), no '.' or '..'. Use list_files to find paths.
"""


def build(settings: Settings) -> Any:
    max_paths = settings.max_paths

    async def remove_paths(
        paths: Annotated[
            list[str],
            Field(
                description=f"Absolute paths of files or folders to remove (1 to {max_paths}).",
                json_schema_extra={"minItems": 1, "maxItems": max_paths},
            ),
        ],
        ctx: Context,
        dry_run: Annotated[
            bool, Field(description="true (default): preview only. false: delete, with confirmation_token.")
        ] = True,
        confirmation_token: Annotated[
            str | None, Field(description="The token from the dry run of exactly these paths (execution only).")
        ] = None,
        person: Annotated[ElicitationResult[DeletionConfirmation], Resolve(ask_person)] = None,  # type: ignore[assignment]
    ) -> RemovePathsResult:
        state = state_of(ctx)
        if state.guard is None:  # registered only when writes are allowed; defence in depth
            raise ToolError("efile-mcp runs read-only (EFILE_READ_ONLY): removal is disabled")
        async with tool_errors():
            if state.prepare is not None:
                await state.prepare()
            if dry_run:
                return as_result(await state.guard.dry_run(paths))  # type: ignore[return-value]
            decision = decision_of(person)
            if decision == "unavailable" and state.settings.confirm == "auto":
                decision = "not_needed"  # the confirmation token alone, as configured
            if decision in REFUSALS:
                code, message, spend = REFUSALS[decision]
                await state.guard.refuse_unconfirmed(paths, confirmation_token, code, message, burn=spend)
            done = await state.guard.execute(
                paths, confirmation_token, confirmed_by="person" if decision == "accepted" else "token"
            )
            return as_result(done)  # type: ignore[return-value]

    return remove_paths
