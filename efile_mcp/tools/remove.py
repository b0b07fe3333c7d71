"""`remove_paths`: the only destructive tool. Dry run by default; execution needs the dry run's token.

No `from __future__ import annotations` here: the schema's maxItems comes from the settings, so the
annotations are built at run time inside `build`.
"""

from typing import Annotated, Any, Literal

from mcp.server.mcpserver import Context, ElicitationResult, Resolve
from pydantic import Field

from ..guard.guard import RemovalRequest
from ..models.results import RemovePathsResult, Selection
from ..settings import Settings
from .confirm import DeletionConfirmation, ask_person, asker_for
from .state import progress_of, state_of
from .tool_errors import tool_errors

DESCRIPTION = """\
Remove files and folders (by paths or a selection): a dry run first, then executed by its token alone. \
1. Dry run (default): absolute paths, or select (find_paths' filters); nothing is removed; each path \
would_remove, missing or refused (why); a folder's size is its whole tree. \
2. Show the person; get their agreement. \
3. dry_run=false with the confirmation_token alone (single use, expires): removes exactly what was shown, \
skipping what changed since. \
Paths are exact (no wildcards or '~'), inside the allowed roots; links and protected names are refused.
"""


def build(settings: Settings) -> Any:
    max_paths = settings.max_paths

    async def remove_paths(
        ctx: Context,
        paths: Annotated[
            Annotated[list[str], Field(json_schema_extra={"minItems": 1, "maxItems": max_paths})] | None,
            Field(description="Absolute paths (or use select)."),
        ] = None,
        select: Annotated[
            Selection | None, Field(description="Instead of paths: what matches below select.path.")
        ] = None,
        dry_run: Annotated[bool, Field(description="false: execute, with confirmation_token.")] = True,
        confirmation_token: Annotated[
            str | None, Field(max_length=2000, description="The dry run's token; enough on its own.")
        ] = None,
        detail: Annotated[
            Literal["auto", "full", "summary"],
            Field(description="auto: items up to 50 paths, else a summary; summary: always; full: all that fit."),
        ] = "auto",
        mode: Annotated[
            Literal["quarantine", "delete"] | None,
            Field(description="Dry run: quarantine (restorable; the default) or delete (permanent)."),
        ] = None,
        resume: Annotated[
            str | None, Field(max_length=100, description="A dry run's resume: reads on where it stopped.")
        ] = None,
        person: Annotated[ElicitationResult[DeletionConfirmation], Resolve(ask_person)] = None,  # type: ignore[assignment]
    ) -> RemovePathsResult:
        guard = state_of(ctx).guard
        async with tool_errors():
            if paths is not None and select is not None:
                raise_usage("give paths or select, not both")
            if dry_run:
                if resume is not None:
                    if paths is not None or select is not None or mode is not None:
                        raise_usage("resume carries the dry run's paths, select and mode; leave them out")
                    return await guard.removal.preview(
                        None, None, detail=detail, progress=progress_of(ctx), resume=resume
                    )
                if paths is None and select is None:
                    raise_usage("name the paths to preview, or give select (a folder and filters)")
                return await guard.removal.preview(paths, select, mode=mode, detail=detail, progress=progress_of(ctx))
            if resume is not None:
                raise_usage("resume belongs to the dry run; execute with the confirmation_token it ends with")
            if mode is not None:
                raise_usage("mode belongs to the dry run (the token carries it); leave it out when executing")
            request = RemovalRequest(token=confirmation_token, paths=paths, select=select)
            return await guard.removal.execute(
                request, asker_for(ctx, person), detail=detail, progress=progress_of(ctx)
            )

    return remove_paths


def raise_usage(message: str) -> None:
    from ..guard.guard import GuardRefusal

    raise GuardRefusal("usage", message + ".")
